//! `inspectd demo-data`: writes synthetic defect datasets in MVTec-AD layout for trying
//! inspectd without a camera.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use anyhow::Context;

use crate::synth::frames::{write_frame_set, FrameSetSpec};
use crate::synth::photo::{photo_source, write_photo_category, Level, PhotoSource, PhotoSpec, PHOTOS};
use crate::synth::video::{write_video, VideoPlan};
use crate::synth::{write_category, Category, SynthSpec};

#[derive(Debug, Args)]
pub struct DemoDataArgs {
    /// Output root; each category becomes a folder inside it.
    #[arg(long, short, value_name = "DIR")]
    pub out: PathBuf,
    /// Categories to write (default: all).
    #[arg(long, value_delimiter = ',')]
    pub category: Vec<Category>,
    /// Image size in pixels (square).
    #[arg(long, default_value_t = 256)]
    pub size: u32,
    /// Good training images per category.
    #[arg(long, default_value_t = 120)]
    pub train: usize,
    /// Good test images per category.
    #[arg(long, default_value_t = 30)]
    pub test_good: usize,
    /// Test images per defect type (scratch, stain, hole, foreign).
    #[arg(long, default_value_t = 10)]
    pub defects: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also write a demo video (MJPEG; .avi or .mkv) of the first category: good parts with a
    /// defect episode every 40 frames, and its labels next to it (FILE.labels.json).
    #[arg(long, value_name = "FILE")]
    pub video: Option<PathBuf>,
    /// Frames in the demo video.
    #[arg(long, default_value_t = 200)]
    pub video_frames: usize,
    /// Write the real-photo benchmark instead: defects painted on skimage's bundled photographs
    /// found in DIR (scripts/setup puts them in .local/data), as OUT/<level>/<category>.
    #[arg(long, value_name = "DIR")]
    pub photos: Option<PathBuf>,
    /// Real-photo categories to write (default: all of brick, grass, gravel, coffee, astronaut).
    #[arg(long, value_delimiter = ',', requires = "photos")]
    pub photo_category: Vec<String>,
    /// Defect strengths for the real-photo benchmark (default: both).
    #[arg(long, value_enum, value_delimiter = ',', requires = "photos")]
    pub level: Vec<Level>,
    /// Write camera-sized frames of WIDTHxHEIGHT instead (textures, or a part cut at the frame's
    /// edge), each test defect 3–15 px across (one type, `small`), as OUT/<category>_<W>x<H>:
    /// the case tiling (`train --tile`) is for.
    #[arg(long, value_name = "WxH", value_parser = super::train::parse_frame_size, conflicts_with = "photos")]
    pub frames: Option<(u32, u32)>,
}

pub fn run(args: DemoDataArgs) -> anyhow::Result<ExitCode> {
    if let Some(dir) = &args.photos {
        return write_photos(&args, dir);
    }
    let categories = if args.category.is_empty() { Category::all().to_vec() } else { args.category.clone() };
    if let Some((width, height)) = args.frames {
        for category in categories {
            let spec = FrameSetSpec {
                category,
                width,
                height,
                train_good: args.train,
                test_good: args.test_good,
                test_defect: args.defects,
                seed: args.seed,
            };
            eprintln!("wrote {}", write_frame_set(&spec, &args.out)?.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(path) = &args.video {
        write_demo_video(&args, categories[0], path)?;
    }
    for category in categories {
        let spec = SynthSpec {
            category,
            size: args.size,
            train_good: args.train,
            test_good: args.test_good,
            test_defect_per_type: args.defects,
            seed: args.seed,
        };
        let summary = write_category(&spec, &args.out)?;
        eprintln!("wrote {} ({} files)", summary.category_dir.display(), summary.files_written);
    }
    Ok(ExitCode::SUCCESS)
}

/// Good parts with a defect episode of 4 frames starting at frame 30 and every 40 frames after.
fn write_demo_video(args: &DemoDataArgs, category: Category, path: &std::path::Path) -> anyhow::Result<()> {
    let defects = (30..args.video_frames).step_by(40).map(|start| (start, 4)).collect();
    let plan =
        VideoPlan { category, size: args.size, seed: args.seed, frames: args.video_frames, fps: 10, defects };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    write_video(&plan, path)?;
    let labels = path.with_extension(format!(
        "{}.labels.json",
        path.extension().and_then(|e| e.to_str()).unwrap_or("video")
    ));
    std::fs::write(&labels, serde_json::to_vec_pretty(&plan.labels())?)?;
    eprintln!("wrote {} ({} frames) and {}", path.display(), plan.frames, labels.display());
    Ok(())
}

/// The real-photo benchmark: every requested category at every requested level.
fn write_photos(args: &DemoDataArgs, dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let sources: Vec<PhotoSource> = if args.photo_category.is_empty() {
        PHOTOS.to_vec()
    } else {
        let known = || PHOTOS.iter().map(|p| p.name).collect::<Vec<_>>().join(", ");
        args.photo_category
            .iter()
            .map(|n| {
                photo_source(n).ok_or_else(|| {
                    anyhow::anyhow!("unknown photo category '{n}'; expected one of {}", known())
                })
            })
            .collect::<anyhow::Result<_>>()?
    };
    let levels = if args.level.is_empty() { vec![Level::Clear, Level::Subtle] } else { args.level.clone() };
    let load = |p: &PhotoSource| -> anyhow::Result<image::RgbImage> {
        let path = dir.join(p.file);
        Ok(image::open(&path)
            .with_context(|| {
                format!(
                    "cannot read {}: run scripts/setup, which extracts skimage's bundled photos there",
                    path.display()
                )
            })?
            .to_rgb8())
    };
    for source in &sources {
        // Foreign patches are cut from the next photo in the list: real content, not ours.
        let i = PHOTOS.iter().position(|p| p.name == source.name).unwrap_or(0);
        let donor = load(&PHOTOS[(i + 1) % PHOTOS.len()])?;
        let photo = load(source)?;
        for &level in &levels {
            let spec = PhotoSpec {
                source: *source,
                photo: photo.clone(),
                donor: donor.clone(),
                level,
                size: args.size,
                train_good: args.train,
                test_good: args.test_good,
                test_defect_per_type: args.defects,
                seed: args.seed,
            };
            let summary = write_photo_category(&spec, &args.out.join(level.name()))?;
            eprintln!("wrote {} ({} files)", summary.category_dir.display(), summary.files_written);
        }
    }
    Ok(ExitCode::SUCCESS)
}
