//! The `VisionModelHandle` (spec §7.12): the text handle of the language model, with the
//! vision descriptor fields and metadata the original API reports.

use serde_json::{json, Value};

use super::qwen2_vl::Qwen2Vl;
use crate::params::LoadModelOptions;

/// Rewrites a model handle built for the language model into a vision handle.
pub fn make_vision_handle(handle: &mut Value, opts: &LoadModelOptions, v: &Qwen2Vl) {
    let d = &mut handle["descriptor"];
    d["modality"] = json!("vision");
    d["family"] = json!("mlx-vlm");
    d["imageEncoder"] = json!(v.config.model_type);
    // The largest square side that fits the processor's pixel budget.
    d["maxImageSize"] = json!((v.processor.max_pixels as f64).sqrt().floor() as u64);
    d["imagePreprocessing"] = json!({
        "minPixels": v.processor.min_pixels,
        "maxPixels": v.processor.max_pixels,
        "patchSize": v.processor.patch_size,
        "mergeSize": v.processor.merge_size,
        "temporalPatchSize": v.processor.temporal_patch_size,
        "imageMean": v.processor.image_mean,
        "imageStd": v.processor.image_std,
    });
    let m = &mut handle["metadata"];
    m["isVisionModel"] = json!(true);
    m["supportedFormats"] = json!(["png", "jpg", "jpeg", "webp"]);
    m["maxBatchSize"] = json!(1);
    m["processorType"] = json!(format!("{}-image-processor", v.config.model_type));
    m["modelType"] = json!(v.config.model_type);
    if opts.quantization.is_none() && m["quantization"].is_null() {
        m["quantization"] = json!("none");
    }
}
