//! The `VisionModelHandle` (spec §7.12): the text handle of the language model, with the
//! vision descriptor fields and metadata the original API reports.

use serde_json::{json, Value};

use super::model::VisionModel;
use crate::params::LoadModelOptions;

/// Rewrites a model handle built for the language model into a vision handle.
pub fn make_vision_handle(handle: &mut Value, opts: &LoadModelOptions, v: &VisionModel) {
    let d = &mut handle["descriptor"];
    d["modality"] = json!("vision");
    d["family"] = json!("mlx-vlm");
    d["imageEncoder"] = json!(v.model_type());
    match v {
        VisionModel::Qwen2Vl(q) => {
            let p = &q.processor;
            // The largest square side that fits the processor's pixel budget.
            d["maxImageSize"] = json!((p.max_pixels as f64).sqrt().floor() as u64);
            d["imagePreprocessing"] = json!({
                "minPixels": p.min_pixels,
                "maxPixels": p.max_pixels,
                "patchSize": p.patch_size,
                "mergeSize": p.merge_size,
                "temporalPatchSize": p.temporal_patch_size,
                "imageMean": p.image_mean,
                "imageStd": p.image_std,
            });
        }
        VisionModel::Llava(l) => {
            let p = &l.processor;
            // every image becomes one crop of the tower's input size
            d["maxImageSize"] = json!(p.crop.0.max(p.crop.1));
            d["imagePreprocessing"] = json!({
                "shortestEdge": p.shortest_edge,
                "cropSize": {"height": p.crop.0, "width": p.crop.1},
                "patchSize": p.patch_size,
                "imageMean": p.image_mean,
                "imageStd": p.image_std,
            });
        }
    }
    let m = &mut handle["metadata"];
    m["isVisionModel"] = json!(true);
    m["supportedFormats"] = json!(["png", "jpg", "jpeg", "webp"]);
    m["maxBatchSize"] = json!(1);
    m["processorType"] = json!(format!("{}-image-processor", v.model_type()));
    m["modelType"] = json!(v.model_type());
    if opts.quantization.is_none() && m["quantization"].is_null() {
        m["quantization"] = json!("none");
    }
}
