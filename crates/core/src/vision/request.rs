//! `createVisionGenerator` / `loadVisionModel` arguments (spec §7.12): checked on the caller's
//! thread in the spec's order (an empty image array first, then more than one image), and
//! turned into the text engine's own option objects so every shared rule (maxTokens,
//! temperature, topP, seed, stops, …) is validated once, by the same code.

use serde_json::{json, Map, Value};

use crate::error::{EngineError, EngineResult};

/// Spec §7.12 defaults of a vision request (they differ from text generation's).
pub const DEFAULT_VISION_MAX_TOKENS: u64 = 100;
/// Images per request the models accept (the handle's `maxBatchSize`).
pub const MAX_IMAGES: usize = 1;

pub struct VisionRequest {
    pub model: String,
    pub prompt: String,
    /// The image sources (strings: path, URL, data URI or base64; the JS layer passes bytes
    /// as a data URI).
    pub images: Vec<String>,
    /// Text-generation params for the shared validation: `{model, prompt, maxTokens, …}`.
    pub generator_params: Value,
}

fn invalid(field: &str, msg: &str) -> EngineError {
    EngineError::invalid_params(format!("Validation error on field '{field}': {msg}")).with_detail("field", field)
}

fn image_source(v: &Value, field: &str) -> EngineResult<String> {
    let src = match v {
        Value::String(s) => s,
        Value::Object(o) => match o.get("source") {
            Some(Value::String(s)) => s,
            _ => return Err(invalid(&format!("{field}.source"), "must be a file path, URL, data URI, base64 string or Buffer")),
        },
        _ => return Err(invalid(field, "must be an ImageInput ({source})")),
    };
    Ok(src.clone())
}

pub fn parse_vision_request(raw: &Value) -> EngineResult<VisionRequest> {
    let obj = raw.as_object().ok_or_else(|| invalid("root", "expected an object"))?;
    let images = match obj.get("image").or_else(|| obj.get("images")) {
        Some(Value::Array(a)) => a.clone(),
        Some(Value::Null) | None => vec![],
        Some(single) => vec![single.clone()],
    };
    if images.is_empty() {
        return Err(EngineError::runtime("At least one image is required for vision generation"));
    }
    if images.len() > MAX_IMAGES {
        return Err(EngineError::runtime(format!(
            "Vision generation accepts at most {MAX_IMAGES} image per request, got {}",
            images.len()
        ))
        .with_detail("images", images.len()));
    }
    let sources = images.iter().enumerate().map(|(i, v)| image_source(v, &format!("image.{i}"))).collect::<EngineResult<Vec<_>>>()?;
    let model = match obj.get("model") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => return Err(invalid("model", "must be a non-empty string")),
    };
    let prompt = match obj.get("prompt") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(invalid("prompt", "must be a string")),
    };
    let mut gp: Map<String, Value> = obj.iter().filter(|(k, _)| !matches!(k.as_str(), "image" | "images" | "prompt")).map(|(k, v)| (k.clone(), v.clone())).collect();
    // A placeholder prompt for the shared checks; the real one is built with the chat template.
    gp.insert("prompt".into(), json!("x"));
    if !gp.contains_key("maxTokens") && !gp.contains_key("max_tokens") {
        gp.insert("maxTokens".into(), json!(DEFAULT_VISION_MAX_TOKENS));
    }
    if !gp.contains_key("temperature") {
        gp.insert("temperature".into(), json!(0.0));
    }
    Ok(VisionRequest { model, prompt, images: sources, generator_params: Value::Object(gp) })
}

/// `loadVisionModel({model, revision?, quantization?: {bits, groupSize?}, preprocessing?,
/// config?})` → `loadModel` options. The weights' quantization is read from the checkpoint, so
/// the object form is only checked; `localPath`/`computeDtype` pass through.
pub fn load_options_of(raw: &Value) -> EngineResult<Value> {
    let obj = match raw {
        Value::String(s) => return Ok(json!({"model": s})),
        Value::Object(o) => o,
        _ => return Err(invalid("root", "expected {model}")),
    };
    if let Some(q) = obj.get("quantization").filter(|v| !v.is_null()) {
        let bits = q.get("bits").and_then(Value::as_u64);
        if !matches!(bits, Some(4) | Some(8)) {
            return Err(invalid("quantization.bits", "must be 4 or 8"));
        }
    }
    let mut out = Map::new();
    for k in ["model", "revision", "localPath", "local_path", "computeDtype", "compute_dtype", "contextLength"] {
        if let Some(v) = obj.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn image_count_errors_come_first() {
        let e = parse_vision_request(&json!({"image": []})).err().unwrap();
        assert_eq!(e.code, ErrorCode::RuntimeError);
        assert_eq!(e.message, "At least one image is required for vision generation");
        let e = parse_vision_request(&json!({"model": "m", "prompt": "p", "image": [{"source": "a"}, {"source": "b"}]})).err().unwrap();
        assert_eq!(e.code, ErrorCode::RuntimeError);
        let e = parse_vision_request(&json!({"model": "m", "image": {"source": "a"}})).err().unwrap();
        assert_eq!(e.code, ErrorCode::InvalidParams);
    }

    #[test]
    fn defaults_and_passthrough() {
        let r = parse_vision_request(&json!({"model": "m", "prompt": "p", "image": {"source": "a.png"}, "seed": 3})).unwrap();
        assert_eq!(r.images, vec!["a.png"]);
        assert_eq!(r.generator_params["maxTokens"], 100);
        assert_eq!(r.generator_params["temperature"], 0.0);
        assert_eq!(r.generator_params["seed"], 3);
        let r = parse_vision_request(&json!({"model": "m", "prompt": "p", "image": "b.png", "max_tokens": 5})).unwrap();
        assert!(r.generator_params.get("maxTokens").is_none());
        assert!(load_options_of(&json!({"model": "m", "quantization": {"bits": 3}})).is_err());
        assert_eq!(load_options_of(&json!({"model": "m", "quantization": {"bits": 4}, "preprocessing": {}})).unwrap(), json!({"model": "m"}));
    }
}
