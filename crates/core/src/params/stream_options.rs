//! `CreateGeneratorOptions` fields that reach the engine (spec §7.9): `streamId` and
//! `timeoutMs`. The signal and priority stay in JavaScript.

use serde_json::Value;

use crate::error::{EngineError, EngineResult};

/// `stream_registry.default_timeout_ms` of the original: a whole-stream deadline by default.
pub const DEFAULT_TIMEOUT_MS: u64 = 300_000;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamOptions {
    pub stream_id: Option<String>,
    pub timeout_ms: Option<u64>,
}

pub fn normalize_stream_options(raw: &Value) -> EngineResult<StreamOptions> {
    let obj = match raw {
        Value::Null => return Ok(StreamOptions { stream_id: None, timeout_ms: Some(DEFAULT_TIMEOUT_MS) }),
        Value::Object(o) => o,
        _ => return Err(invalid("root", "options must be an object")),
    };
    let stream_id = match obj.get("streamId").or_else(|| obj.get("stream_id")) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(_) => return Err(invalid("streamId", "streamId must be a non-empty string")),
    };
    let timeout_ms = match obj.get("timeoutMs").or_else(|| obj.get("timeout_ms")) {
        None | Some(Value::Null) => Some(DEFAULT_TIMEOUT_MS),
        Some(v) => match v.as_f64() {
            Some(ms) if ms.is_finite() && ms > 0.0 => Some(ms.ceil() as u64),
            _ => return Err(invalid("timeoutMs", "timeoutMs must be a positive number of milliseconds")),
        },
    };
    Ok(StreamOptions { stream_id, timeout_ms })
}

fn invalid(field: &str, msg: &str) -> EngineError {
    EngineError::invalid_params(format!("Validation error on field '{field}': {msg}")).with_detail("field", field)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_and_rejects() {
        assert_eq!(normalize_stream_options(&json!(null)).unwrap().timeout_ms, Some(DEFAULT_TIMEOUT_MS));
        assert_eq!(normalize_stream_options(&json!({})).unwrap().timeout_ms, Some(DEFAULT_TIMEOUT_MS));
        let o = normalize_stream_options(&json!({"streamId": "s1", "timeoutMs": 1500.5})).unwrap();
        assert_eq!((o.stream_id.as_deref(), o.timeout_ms), (Some("s1"), Some(1501)));
        for bad in [json!({"timeoutMs": "soon"}), json!({"timeoutMs": -1}), json!({"timeoutMs": 0}), json!({"streamId": 5}), json!(3)] {
            let e = normalize_stream_options(&bad).unwrap_err();
            assert_eq!(e.code, crate::error::ErrorCode::InvalidParams, "{bad}");
        }
    }
}
