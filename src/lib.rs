//! The napi boundary ("EngineFacade") of mlx-serving: JS values ⇄ Rust values and errors. No
//! model or generation logic lives here; everything delegates to `mlx_serving_core`.

mod convert;
mod native_engine;
mod native_stream;
mod validators;
