//! The pure validators of spec §2.5, exported so the JS `validate*` functions run the same
//! Rust rules as the engine.

use mlx_serving_core::params;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use serde_json::{json, Value};

use crate::convert::to_napi;

fn result(r: params::ValidationResult) -> Value {
    json!({"valid": r.valid, "errors": r.errors})
}

#[napi]
pub fn validate_generator_params(raw: Value) -> Value {
    result(params::validate_generator_params(&raw))
}

#[napi]
pub fn validate_load_model_options(raw: Value) -> Value {
    result(params::validate_load_model_options(&raw))
}

#[napi]
pub fn validate_tokenize_request(raw: Value) -> Value {
    result(params::validate_tokenize_request(&raw))
}

#[napi]
pub fn sanitize_model_id(id: String) -> Result<String> {
    params::sanitize_model_id(&id).map_err(to_napi)
}

#[napi]
pub fn is_valid_model_id_format(id: String) -> bool {
    params::is_valid_model_id_format(&id)
}

/// The engine's own LoadModelOptions normalization + validation (spec §5.2, §6.2) without
/// loading anything: throws the InvalidParams `loadModel` would throw, else returns the model
/// id. The facade runs it before announcing a load (`onProgress` / `model:progress`).
#[napi]
pub fn check_load_model_options(raw: Value) -> Result<String> {
    params::normalize_load_options(&raw).map(|o| o.id).map_err(to_napi)
}
