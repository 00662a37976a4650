//! mlx-serving-core: the in-process LLM engine behind the `mlx-serving` Node addon. No napi here:
//! everything is testable with `cargo test`. The napi layer (`src/` at the repo root) only
//! converts values and errors.

pub mod engine;
pub mod error;
pub mod generation;
pub mod hub;
pub mod models;
pub mod params;
pub mod services;
pub mod text;
pub mod vision;

#[cfg(test)]
mod test_arrays;

pub use engine::{Engine, EngineConfig, StreamControl, StreamHandle};
pub use error::{EngineError, EngineResult, ErrorCode};
