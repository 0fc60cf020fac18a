//! Backbone features for training, computed once and cached for all epochs (the backbone is
//! frozen, so only the descriptor's 1×1 conv changes between epochs).

use ndarray::{Array2, Axis, Ix4};
use ort::session::Session;
use ort::value::TensorRef;

use crate::cfa::descriptor::descriptor_input;
use crate::cfa::preprocess::Normalisation;
use crate::model::scorer::{ImageBatch, ScoreError};

/// Images per backbone run while extracting features.
const FEATURE_BATCH: usize = 8;

/// Each image's descriptor input, patch-major `[h·w, C + 2]` (pooled f1, f2, f3, row, col).
pub struct FeatureCache {
    pub inputs: Vec<Array2<f32>>,
    pub grid: (usize, usize),
}

impl FeatureCache {
    /// Runs the backbone over `images` (already at model size) and pools the features.
    /// `progress` is called with the number of images done so far.
    pub fn extract(
        backbone: &mut Session,
        images: &[image::RgbImage],
        norm: &Normalisation,
        mut progress: impl FnMut(usize),
    ) -> Result<FeatureCache, ScoreError> {
        let mut inputs = Vec::with_capacity(images.len());
        let mut grid = (0, 0);
        for chunk in images.chunks(FEATURE_BATCH) {
            let (w, h) = chunk[0].dimensions();
            let batch = ImageBatch::from_images(chunk, w, h, norm);
            let feats = run_backbone(backbone, &batch)?;
            for b in 0..chunk.len() {
                let x = descriptor_input(
                    feats[0].index_axis(Axis(0), b),
                    feats[1].index_axis(Axis(0), b),
                    feats[2].index_axis(Axis(0), b),
                );
                grid = (feats[0].dim().2, feats[0].dim().3);
                inputs.push(x.reversed_axes().as_standard_layout().to_owned());
            }
            progress(inputs.len());
        }
        Ok(FeatureCache { inputs, grid })
    }

    /// Patches per image (h·w).
    pub fn patches(&self) -> usize {
        self.grid.0 * self.grid.1
    }
}

fn run_backbone(backbone: &mut Session, batch: &ImageBatch) -> Result<[ndarray::Array4<f32>; 3], ScoreError> {
    let fail = |e: ort::Error| ScoreError::Inference { stage: "backbone", reason: e.to_string() };
    let shape = [batch.count, 3, batch.height, batch.width];
    let image = TensorRef::from_array_view((shape, batch.data.as_slice())).map_err(fail)?;
    let out = backbone.run(ort::inputs!["image" => image]).map_err(fail)?;
    let get = |name: &str| -> Result<ndarray::Array4<f32>, ScoreError> {
        let view = out[name].try_extract_array::<f32>().map_err(fail)?;
        view.into_dimensionality::<Ix4>()
            .map(|v| v.to_owned())
            .map_err(|e| ScoreError::Inference { stage: "backbone", reason: e.to_string() })
    };
    Ok([get("f1")?, get("f2")?, get("f3")?])
}
