//! Conversions at the boundary: domain errors → JS errors carrying a JSON payload (re-wrapped
//! into `EngineClientError` by js/errors.js), chunks → plain JS objects.

use mlx_serving_core::generation::Chunk;
use mlx_serving_core::EngineError;
use serde_json::{json, Map, Value};

/// The one place a domain error becomes a JS error.
pub fn to_napi(e: EngineError) -> napi::Error {
    napi::Error::new(napi::Status::GenericFailure, e.to_json().to_string())
}

pub fn chunk_to_json(c: Chunk) -> Value {
    match c {
        Chunk::Token { token, token_id, logprob, is_final } => {
            let mut o = Map::new();
            o.insert("type".into(), json!("token"));
            o.insert("token".into(), json!(token));
            o.insert("tokenId".into(), json!(token_id));
            if let Some(lp) = logprob {
                o.insert("logprob".into(), json!(lp));
            }
            o.insert("isFinal".into(), json!(is_final));
            Value::Object(o)
        }
        Chunk::Metadata(stats) => json!({"type": "metadata", "stats": stats}),
        Chunk::Error(e) => {
            let mut err = Map::new();
            err.insert("code".into(), json!(e.code.as_str()));
            err.insert("message".into(), json!(e.message));
            if !e.details.is_empty() {
                err.insert("details".into(), Value::Object(e.details));
            }
            json!({"type": "error", "error": err})
        }
    }
}
