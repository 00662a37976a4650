//! Request normalization and validation (spec §5, §6, §7.5, §15, §2.5 validators).
//!
//! The napi layer hands each raw JS option object over as a `serde_json::Value` (function-valued
//! properties removed); these functions normalize snake_case/camelCase, validate, and return a
//! typed request or an `InvalidParams` `EngineError`. The JS `validate*` exports call the
//! validators here, so every rule lives once, in `fields.rs`.
//!
//! Files: `rules` (rule machinery + issue collector), `fields` (the rule table), `prompt`
//! (prompt forms), `template` (`{{ name }}` rendering), `defaults` (engine and per-model
//! defaults), `generator`, `load_options`, `tokenize`, `validators`.

mod defaults;
mod fields;
mod generator;
mod load_options;
mod prompt;
mod rules;
mod stream_options;
mod template;
mod tokenize;
mod validators;

pub use defaults::{
    apply_model_defaults, ModelDefaults, DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE, DEFAULT_TOP_P,
    MAX_GENERATION_TOKENS, MAX_PROMPT_CHARS,
};
pub use generator::{normalize_generator_params, GeneratorParams, StructuredOutput};
pub use load_options::{normalize_load_options, LoadModelOptions};
pub use prompt::{check_prompt_length, ChatMessage, Prompt};
pub use stream_options::{normalize_stream_options, StreamOptions};
pub use template::render_prompt_template;
pub use tokenize::{normalize_tokenize_request, TokenizeRequest};
pub use validators::{
    clamp, is_valid_model_id_format, normalize_temperature, normalize_top_p, sanitize_model_id,
    validate_generator_params, validate_load_model_options, validate_tokenize_request,
    ValidationResult,
};
