//! The §2.5 pure validators behind the JS `validate*` / `assertValid*` / `sanitizeModelId` /
//! `isValidModelIdFormat` / `normalizeTemperature` / `normalizeTopP` exports.
//!
//! They run the same parse as the engine (same rule table, same snake/camel normalization) in
//! the validator stage: every problem is collected as a short English sentence; blank model and
//! prompt strings and empty tokenize text are also rejected; the runtime limits are not applied
//! (they are engine configuration, and the original validators never had them).

use serde::Serialize;
use serde_json::{json, Value};

use super::fields::{TEMPERATURE, TOP_P};
use super::generator::parse_generator;
use super::load_options::parse_load_options;
use super::rules::{Issues, Kind, Stage};
use super::tokenize::parse_tokenize;
use crate::error::{EngineError, EngineResult};

/// `{valid, errors}` (§2.5); serializes to exactly that JS shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValidationResult {
    pub valid: bool,
    pub errors: Vec<String>,
}

impl ValidationResult {
    fn from_issues(issues: Issues) -> Self {
        let errors = issues.sentences();
        ValidationResult {
            valid: errors.is_empty(),
            errors,
        }
    }

    /// What `assertValid*` throws: `InvalidParams`, `'<prefix>: ' + errors.join(', ')`,
    /// details `{errors}`. `prefix` is e.g. `Invalid GeneratorParams`. `Ok` when valid.
    pub fn into_assert(self, prefix: &str) -> EngineResult<()> {
        if self.valid {
            return Ok(());
        }
        Err(
            EngineError::invalid_params(format!("{prefix}: {}", self.errors.join(", ")))
                .with_detail("errors", json!(self.errors)),
        )
    }
}

pub fn validate_load_model_options(raw: &Value) -> ValidationResult {
    let mut issues = Issues::default();
    parse_load_options(raw, Stage::Validator, &mut issues);
    ValidationResult::from_issues(issues)
}

pub fn validate_generator_params(raw: &Value) -> ValidationResult {
    let mut issues = Issues::default();
    parse_generator(raw, Stage::Validator, &mut issues);
    ValidationResult::from_issues(issues)
}

pub fn validate_tokenize_request(raw: &Value) -> ValidationResult {
    let mut issues = Issues::default();
    parse_tokenize(raw, Stage::Validator, &mut issues);
    ValidationResult::from_issues(issues)
}

/// Trimmed id; `InvalidParams` when blank or when it contains `..`, `/` or `\` (§2.5).
pub fn sanitize_model_id(id: &str) -> EngineResult<String> {
    if id.trim().is_empty() {
        return Err(EngineError::invalid_params(
            "Model identifier cannot be empty",
        ));
    }
    if id.contains("..") || id.contains('/') || id.contains('\\') {
        return Err(EngineError::invalid_params(
            "Model identifier cannot contain path separators or traversal sequences",
        )
        .with_detail("modelId", id));
    }
    Ok(id.trim().to_owned())
}

/// `/^[a-zA-Z0-9._-]+$/` (§2.5).
pub fn is_valid_model_id_format(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// `Math.max(min, Math.min(max, value))`.
pub fn clamp(value: f64, min: f64, max: f64) -> f64 {
    value.min(max).max(min)
}

/// Clamps into the temperature rule's range (0..2); `None` passes through.
pub fn normalize_temperature(t: Option<f64>) -> Option<f64> {
    t.map(|t| clamp_to_rule(t, TEMPERATURE.kind))
}

/// Clamps into the topP rule's range (0..1); `None` passes through.
pub fn normalize_top_p(p: Option<f64>) -> Option<f64> {
    p.map(|p| clamp_to_rule(p, TOP_P.kind))
}

fn clamp_to_rule(v: f64, kind: Kind) -> f64 {
    match kind {
        Kind::Num { min, max, .. } => clamp(v, min, max),
        _ => unreachable!("numeric rule expected"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn gen(extra: Value) -> ValidationResult {
        let mut v = json!({"model": "test-model", "prompt": "test"});
        for (k, x) in extra.as_object().unwrap() {
            v.as_object_mut().unwrap().insert(k.clone(), x.clone());
        }
        validate_generator_params(&v)
    }

    fn has(r: &ValidationResult, msg: &str) -> bool {
        !r.valid && r.errors.iter().any(|e| e == msg)
    }

    // ---- validateLoadModelOptions ----

    #[test]
    fn load_valid() {
        assert_eq!(
            validate_load_model_options(&json!({"model": "test-model"})),
            ValidationResult {
                valid: true,
                errors: vec![]
            }
        );
        for q in ["none", "int8", "int4"] {
            assert!(
                validate_load_model_options(&json!({"model": "test-model", "quantization": q}))
                    .valid
            );
        }
        assert!(validate_load_model_options(&json!("test-model")).valid);
    }

    #[test]
    fn load_rejections() {
        assert!(has(
            &validate_load_model_options(&json!({"model": "  "})),
            "model identifier cannot be empty"
        ));
        assert!(has(
            &validate_load_model_options(&json!({"model": ""})),
            "model is required"
        ));
        assert!(has(
            &validate_load_model_options(&json!({})),
            "model is required"
        ));
        let r =
            validate_load_model_options(&json!({"model": "test-model", "quantization": "invalid"}));
        assert!(has(&r, "quantization must be one of: none, int8, int4"));
        let r = validate_load_model_options(
            &json!({"model": {"id": " ", "source": "local", "modality": "text", "family": "mlx-lm"}}),
        );
        assert!(has(&r, "model descriptor must have a valid id"));
        let r = validate_load_model_options(
            &json!({"model": {"source": "local", "modality": "text", "family": "mlx-lm"}}),
        );
        assert!(has(&r, "model descriptor must have a valid id"));
        let r = validate_load_model_options(
            &json!({"model": {"id": "x", "source": "ftp", "modality": "text", "family": "mlx-lm"}}),
        );
        assert!(has(&r, "model.source must be one of: huggingface, local"));
        assert!(!validate_load_model_options(&json!(null)).valid);
        assert!(has(
            &validate_load_model_options(&json!({"model": "a", "draft": 1})),
            "draft must be a boolean"
        ));
    }

    #[test]
    fn load_collects_every_error() {
        let r = validate_load_model_options(
            &json!({"model": "", "quantization": "q", "draft": "x", "parameters": {"maxTokens": 0}}),
        );
        assert_eq!(
            r.errors,
            vec![
                "model is required",
                "quantization must be one of: none, int8, int4",
                "draft must be a boolean",
                "parameters.maxTokens must be a positive integer",
            ]
        );
    }

    // ---- validateGeneratorParams ----

    #[test]
    fn gen_valid() {
        let r = gen(json!({"maxTokens": 100, "temperature": 0.7, "topP": 0.9}));
        assert_eq!(
            r,
            ValidationResult {
                valid: true,
                errors: vec![]
            }
        );
        assert!(gen(json!({"structured": {"schema": {"type": "object"}, "format": "json"}})).valid);
        // No runtime limits in the validator stage.
        assert!(gen(json!({"maxTokens": 5000, "topP": 0, "seed": 4294967296u64})).valid);
    }

    #[test]
    fn gen_messages_match_original() {
        assert!(has(
            &validate_generator_params(&json!({"model": "", "prompt": "test"})),
            "model is required"
        ));
        assert!(has(
            &validate_generator_params(&json!({"model": "  ", "prompt": "test"})),
            "model identifier cannot be empty"
        ));
        assert!(has(
            &validate_generator_params(&json!({"model": "m", "prompt": ""})),
            "prompt is required"
        ));
        assert!(has(
            &validate_generator_params(&json!({"model": "m", "prompt": " \n"})),
            "prompt cannot be empty"
        ));
        assert!(has(
            &validate_generator_params(&json!({"model": "m"})),
            "prompt is required"
        ));
        assert!(has(
            &gen(json!({"maxTokens": -1})),
            "maxTokens must be a positive integer"
        ));
        assert!(has(
            &gen(json!({"maxTokens": 1.5})),
            "maxTokens must be a positive integer"
        ));
        assert!(has(
            &gen(json!({"maxTokens": 200000})),
            "maxTokens cannot exceed 100000"
        ));
        assert!(has(
            &gen(json!({"temperature": 3.0})),
            "temperature must be a number between 0 and 2"
        ));
        assert!(has(
            &gen(json!({"topP": 1.5})),
            "topP must be a number between 0 and 1"
        ));
        let r = gen(json!({"presencePenalty": 5.0, "frequencyPenalty": -3.0}));
        assert!(has(&r, "presencePenalty must be a number between -2 and 2"));
        assert!(has(
            &r,
            "frequencyPenalty must be a number between -2 and 2"
        ));
        assert!(has(
            &gen(json!({"repetitionPenalty": -1.0})),
            "repetitionPenalty must be a non-negative number"
        ));
        assert!(has(
            &gen(json!({"seed": -1})),
            "seed must be a non-negative integer"
        ));
        assert!(has(
            &gen(json!({"stopSequences": "END"})),
            "stopSequences must be an array"
        ));
        assert_eq!(
            gen(json!({"stopSequences": [1, 2]})).errors,
            vec!["all stopSequences must be strings"]
        );
        assert!(has(
            &gen(json!({"stopTokenIds": 3})),
            "stopTokenIds must be an array"
        ));
        assert!(has(
            &gen(json!({"stopTokenIds": [-1]})),
            "all stopTokenIds must be non-negative integers"
        ));
        let r = gen(json!({"structured": {"schema": {"type": "object"}, "format": "invalid"}}));
        assert!(has(&r, "structured.format must be \"json\" or \"yaml\""));
        let r = gen(json!({"structured": {}}));
        assert_eq!(
            r.errors,
            vec![
                "structured.schema is required when using structured output",
                "structured.format is required when using structured output",
            ]
        );
    }

    #[test]
    fn gen_additions_and_snake_case() {
        assert!(has(
            &gen(json!({"topK": -1})),
            "topK must be a non-negative integer"
        ));
        assert!(has(
            &gen(json!({"min_p": 2})),
            "minP must be a number between 0 and 1"
        ));
        assert!(has(
            &gen(json!({"numDraftTokens": 0})),
            "numDraftTokens must be an integer between 1 and 16"
        ));
        assert!(has(
            &gen(json!({"max_tokens": 0})),
            "maxTokens must be a positive integer"
        ));
        let r = validate_generator_params(
            &json!({"model": "m", "prompt": {"messages": [{"role": "bot", "content": 1}]}}),
        );
        assert_eq!(
            r.errors,
            vec![
                "prompt.messages.0.role must be one of: system, user, assistant, tool",
                "prompt.messages.0.content must be a string"
            ]
        );
        assert!(!validate_generator_params(&json!("nope")).valid);
    }

    // ---- validateTokenizeRequest ----

    #[test]
    fn tokenize_validator() {
        assert_eq!(
            validate_tokenize_request(&json!({"model": "test-model", "text": "Hello, world!"})),
            ValidationResult {
                valid: true,
                errors: vec![]
            }
        );
        assert!(has(
            &validate_tokenize_request(&json!({"model": "", "text": "test"})),
            "model is required"
        ));
        assert!(has(
            &validate_tokenize_request(&json!({"model": "  ", "text": "test"})),
            "model identifier cannot be empty"
        ));
        assert!(has(
            &validate_tokenize_request(&json!({"model": "m", "text": ""})),
            "text is required"
        ));
        assert!(has(
            &validate_tokenize_request(&json!({"model": "m"})),
            "text is required"
        ));
        assert!(has(
            &validate_tokenize_request(&json!({"model": "m", "text": 1})),
            "text must be a string"
        ));
    }

    // ---- assert* ----

    #[test]
    fn assert_shape() {
        assert!(
            validate_generator_params(&json!({"model": "m", "prompt": "t"}))
                .into_assert("Invalid GeneratorParams")
                .is_ok()
        );
        let e = validate_generator_params(&json!({"model": "m", "prompt": "", "maxTokens": 0}))
            .into_assert("Invalid GeneratorParams")
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidParams);
        assert_eq!(
            e.message,
            "Invalid GeneratorParams: prompt is required, maxTokens must be a positive integer"
        );
        assert_eq!(
            e.details["errors"],
            json!(["prompt is required", "maxTokens must be a positive integer"])
        );
    }

    // ---- model ids, clamps ----

    #[test]
    fn sanitize() {
        assert_eq!(sanitize_model_id("test-model").unwrap(), "test-model");
        assert_eq!(sanitize_model_id("  test-model  ").unwrap(), "test-model");
        for bad in [
            "",
            "   ",
            "../etc/passwd",
            "test/model",
            "test\\model",
            "a..b",
        ] {
            let e = sanitize_model_id(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidParams, "{bad}");
        }
        assert_eq!(
            sanitize_model_id("a/b").unwrap_err().details["modelId"],
            "a/b"
        );
    }

    #[test]
    fn id_format() {
        for good in ["test-model", "test_model", "test.model", "TestModel123"] {
            assert!(is_valid_model_id_format(good), "{good}");
        }
        for bad in ["test/model", "test model", "test@model", "", "modèle"] {
            assert!(!is_valid_model_id_format(bad), "{bad}");
        }
    }

    #[test]
    fn clamps() {
        assert_eq!(
            (
                clamp(5.0, 0.0, 10.0),
                clamp(-1.0, 0.0, 10.0),
                clamp(15.0, 0.0, 10.0)
            ),
            (5.0, 0.0, 10.0)
        );
        assert_eq!(normalize_temperature(None), None);
        assert_eq!(normalize_temperature(Some(0.7)), Some(0.7));
        assert_eq!(normalize_temperature(Some(-1.0)), Some(0.0));
        assert_eq!(normalize_temperature(Some(3.0)), Some(2.0));
        assert_eq!(normalize_top_p(None), None);
        assert_eq!(normalize_top_p(Some(0.9)), Some(0.9));
        assert_eq!(normalize_top_p(Some(-0.5)), Some(0.0));
        assert_eq!(normalize_top_p(Some(1.5)), Some(1.0));
    }
}
