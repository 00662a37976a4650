//! `tokenize` requests: normalization (spec §5.3) and validation (§6.3).

use serde_json::Value;

use super::fields::{take_model_id, ADD_BOS, TEXT};
use super::rules::{lookup, to_string, Issues, Stage};
use crate::error::EngineResult;

/// A validated tokenize request.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenizeRequest {
    pub model: String,
    /// Empty allowed (§6.3).
    pub text: String,
    /// Add the tokenizer's special tokens (`encode(text, add_special_tokens=True)`); default true.
    pub add_bos: bool,
}

/// Normalizes and validates a raw tokenize request: `model_id` overrides `model`; `addBos`
/// wins over `add_special_tokens`, which wins over `add_bos` (§5.3).
pub fn normalize_tokenize_request(raw: &Value) -> EngineResult<TokenizeRequest> {
    let mut issues = Issues::default();
    let parsed = parse_tokenize(raw, Stage::Engine, &mut issues);
    match (issues.to_error(), parsed) {
        (None, Some(request)) => Ok(request),
        (Some(e), _) => Err(e),
        (None, None) => unreachable!("parse_tokenize returns None only after recording an issue"),
    }
}

/// The shared parse behind [`normalize_tokenize_request`] and `validate_tokenize_request`.
pub(crate) fn parse_tokenize(
    raw: &Value,
    stage: Stage,
    issues: &mut Issues,
) -> Option<TokenizeRequest> {
    let Some(obj) = raw.as_object() else {
        issues.push(
            vec![],
            "invalid_type",
            "Required",
            "request must be an object",
        );
        return None;
    };
    let before = issues.0.len();
    let model = take_model_id(
        lookup(obj, &["model_id", "model"]),
        &[Value::from("model")],
        stage == Stage::Validator,
        None,
        issues,
    );
    let text_value = lookup(obj, &TEXT.spellings());
    let text = match text_value {
        // §2.5: the validator rejects empty text; the engine tokenizes it (§6.3).
        Some(Value::String(s)) if s.is_empty() && stage == Stage::Validator => {
            issues.push(
                vec![Value::from("text")],
                "too_small",
                "Cannot be empty",
                "text is required",
            );
            None
        }
        _ => TEXT
            .check_opt(text_value, &[Value::from(TEXT.name)], stage, issues)
            .map(to_string),
    };
    let add_bos = ADD_BOS
        .take(obj, &[], stage, issues)
        .and_then(Value::as_bool)
        .unwrap_or(true);
    if issues.0.len() != before {
        return None;
    }
    Some(TokenizeRequest {
        model: model?,
        text: text?,
        add_bos,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use serde_json::json;

    fn ok(v: Value) -> TokenizeRequest {
        normalize_tokenize_request(&v).unwrap_or_else(|e| panic!("{v} rejected: {}", e.message))
    }

    fn field(v: Value) -> String {
        let e = normalize_tokenize_request(&v).expect_err("should be rejected");
        assert_eq!(e.code, ErrorCode::InvalidParams);
        e.details["field"].as_str().unwrap().to_owned()
    }

    #[test]
    fn basic_and_defaults() {
        let r = ok(json!({"model": "m", "text": "hello"}));
        assert_eq!(
            r,
            TokenizeRequest {
                model: "m".into(),
                text: "hello".into(),
                add_bos: true
            }
        );
        assert_eq!(
            ok(json!({"model": "m", "text": ""})).text,
            "",
            "empty text allowed"
        );
    }

    #[test]
    fn model_id_overrides_model() {
        assert_eq!(
            ok(json!({"model": "a", "model_id": "b", "text": "x"})).model,
            "b"
        );
        assert_eq!(ok(json!({"model_id": "b", "text": "x"})).model, "b");
    }

    #[test]
    fn add_bos_aliases_and_precedence() {
        assert!(!ok(json!({"model": "m", "text": "x", "addBos": false})).add_bos);
        assert!(!ok(json!({"model": "m", "text": "x", "add_bos": false})).add_bos);
        assert!(!ok(json!({"model": "m", "text": "x", "add_special_tokens": false})).add_bos);
        assert!(ok(json!({"model": "m", "text": "x", "addBos": true, "add_bos": false, "add_special_tokens": false})).add_bos);
        assert!(
            !ok(json!({"model": "m", "text": "x", "add_special_tokens": false, "add_bos": true}))
                .add_bos
        );
        assert!(ok(json!({"model": "m", "text": "x", "addBos": null})).add_bos);
    }

    #[test]
    fn rejections() {
        assert_eq!(field(json!(null)), "root");
        assert_eq!(field(json!("text")), "root");
        assert_eq!(field(json!({"text": "x"})), "model");
        assert_eq!(field(json!({"model": "", "text": "x"})), "model");
        assert_eq!(field(json!({"model": 1, "text": "x"})), "model");
        assert_eq!(field(json!({"model": "m"})), "text");
        assert_eq!(field(json!({"model": "m", "text": null})), "text");
        assert_eq!(field(json!({"model": "m", "text": 5})), "text");
        assert_eq!(
            field(json!({"model": "m", "text": "x", "addBos": "yes"})),
            "addBos"
        );
        assert_eq!(
            field(json!({"model": "m", "text": "x", "add_special_tokens": 1})),
            "addBos"
        );
        let e = normalize_tokenize_request(&json!({"model": "m", "text": 5})).unwrap_err();
        assert_eq!(
            e.message,
            "Validation error on field 'text': Expected string, received number"
        );
    }
}
