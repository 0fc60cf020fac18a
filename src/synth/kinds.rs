//! The dataset categories and defect types, with their on-disk names.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::SynthError;
use crate::util::rng::tag;

/// A kind of product surface or part; each becomes one MVTec-style category
/// directory named by [`Category::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Brushed steel sheet (texture).
    BrushedMetal,
    /// Plain-sawn wood board (texture).
    Wood,
    /// Denim-like twill weave (texture).
    Fabric,
    /// Granite-like stone (texture).
    Stone,
    /// A steel washer on a conveyor belt (object).
    Washer,
    /// A gold contact pad on a PCB (object).
    PcbPad,
}

const CATEGORIES: [Category; 6] = [
    Category::BrushedMetal,
    Category::Wood,
    Category::Fabric,
    Category::Stone,
    Category::Washer,
    Category::PcbPad,
];

impl Category {
    /// Every category, in a fixed order.
    pub fn all() -> &'static [Category] {
        &CATEGORIES
    }

    /// Directory / CLI name, e.g. `"brushed_metal"`.
    pub fn name(self) -> &'static str {
        match self {
            Category::BrushedMetal => "brushed_metal",
            Category::Wood => "wood",
            Category::Fabric => "fabric",
            Category::Stone => "stone",
            Category::Washer => "washer",
            Category::PcbPad => "pcb_pad",
        }
    }

    /// Whether this is a single part on a background (vs. a full-frame texture).
    pub fn is_object(self) -> bool {
        matches!(self, Category::Washer | Category::PcbPad)
    }

    /// Random-stream id, derived from the name so reordering the enum never
    /// changes generated images.
    pub(crate) fn stream_id(self) -> u64 {
        tag(self.name())
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Category {
    type Err = SynthError;

    /// Accepts the [`Category::name`] spelling, case-insensitively, with `-`
    /// allowed for `_`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase().replace('-', "_");
        CATEGORIES
            .into_iter()
            .find(|c| c.name() == wanted)
            .ok_or_else(|| SynthError::UnknownCategory(s.to_string()))
    }
}

/// A defect type; each becomes `test/<name>/` and `ground_truth/<name>/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefectKind {
    /// Thin bright or dark polyline stroke.
    Scratch,
    /// Soft-edged, irregular coloured blob.
    Stain,
    /// Dark elliptical hole with a bright burr rim.
    Hole,
    /// Pasted patch of a foreign texture or colour.
    Foreign,
}

const DEFECTS: [DefectKind; 4] =
    [DefectKind::Scratch, DefectKind::Stain, DefectKind::Hole, DefectKind::Foreign];

impl DefectKind {
    /// Every defect type, in a fixed order.
    pub fn all() -> &'static [DefectKind] {
        &DEFECTS
    }

    /// Directory name, e.g. `"scratch"`.
    pub fn name(self) -> &'static str {
        match self {
            DefectKind::Scratch => "scratch",
            DefectKind::Stain => "stain",
            DefectKind::Hole => "hole",
            DefectKind::Foreign => "foreign",
        }
    }

    pub(crate) fn stream_id(self) -> u64 {
        tag(self.name())
    }
}

impl fmt::Display for DefectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DefectKind {
    type Err = SynthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        DEFECTS
            .into_iter()
            .find(|d| d.name() == wanted)
            .ok_or_else(|| SynthError::UnknownDefect(s.to_string()))
    }
}
