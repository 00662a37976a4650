//! `createGenerator` params: snake_case/camelCase normalization (spec §5.1) and validation
//! (§6.1 incl. its second-stage runtime limits, §15) into a typed [`GeneratorParams`].
//!
//! The JS layer passes the caller's raw object (function-valued properties removed); nothing
//! is validated there.

use serde_json::{Map, Value};

use super::defaults::parse_sampling;
use super::fields::{
    take_model_id, DRAFT_MODEL, MODEL, MULTIMODAL, MULTIMODAL_IMAGES, MULTIMODAL_IMAGE_FORMAT,
    IGNORE_EOS, NUM_DRAFT_TOKENS, PROMPT_TOKENS, STREAMING, STRUCTURED, STRUCTURED_FORMAT, STRUCTURED_SCHEMA,
};
use super::prompt::{parse_prompt, Prompt};
use super::rules::{child, lookup, to_ids, to_string, to_u32, Issues, Stage};
use crate::error::EngineResult;

/// A validated generation request. `None` = not given (see the `effective_*` methods and
/// [`super::apply_model_defaults`] for what applies then). Unknown keys are dropped (§5.1
/// passthrough: accepted, ignored); `multimodal` is validated but not carried (§7.12).
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorParams {
    pub model: String,
    pub prompt: Prompt,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<u32>,
    pub min_p: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub stop_sequences: Vec<String>,
    pub stop_token_ids: Vec<u32>,
    pub seed: Option<u64>,
    /// Default true (§7.6).
    pub streaming: bool,
    /// EXT `ignoreEos`: EOS does not end the stream (it is yielded like any token).
    pub ignore_eos: bool,
    pub structured: Option<StructuredOutput>,
    pub draft_model: Option<String>,
    pub num_draft_tokens: Option<u32>,
    pub prompt_tokens: Option<Vec<u32>>,
}

/// `structured: {schema, format}` (§7.7). `schema` is a JSON object; `format` is `json`|`yaml`.
#[derive(Debug, Clone, PartialEq)]
pub struct StructuredOutput {
    pub schema: Value,
    pub format: String,
}

/// Normalizes and validates raw `createGenerator`/`create_generator` params (§5.1, §6.1, §15).
/// Errors: `InvalidParams` with `details {field, issues}`; non-object input → field `root`.
pub fn normalize_generator_params(raw: &Value) -> EngineResult<GeneratorParams> {
    let mut issues = Issues::default();
    let parsed = parse_generator(raw, Stage::Engine, &mut issues);
    match (issues.to_error(), parsed) {
        (None, Some(params)) => Ok(params),
        (Some(e), _) => Err(e),
        (None, None) => unreachable!("parse_generator returns None only after recording an issue"),
    }
}

/// The shared parse behind [`normalize_generator_params`] and `validate_generator_params`.
/// Returns `Some` only when no issue was recorded.
pub(crate) fn parse_generator(
    raw: &Value,
    stage: Stage,
    issues: &mut Issues,
) -> Option<GeneratorParams> {
    let Some(obj) = raw.as_object() else {
        // The original normalizer turned non-objects into `undefined`, which Zod reports as
        // `Required` at the root.
        issues.push(
            vec![],
            "invalid_type",
            "Required",
            "params must be an object",
        );
        return None;
    };
    let before = issues.0.len();
    // §5.1: `model` wins over `model_id` (unlike loadModel/tokenize, §14.3).
    let model = take_model_id(
        lookup(obj, &MODEL.spellings()),
        &[Value::from(MODEL.name)],
        stage == Stage::Validator,
        None,
        issues,
    );
    let prompt = parse_prompt(obj.get("prompt"), stage, issues);
    let sampling = parse_sampling(&[(obj, vec![])], stage, issues);
    let streaming = STREAMING
        .take(obj, &[], stage, issues)
        .and_then(Value::as_bool);
    let ignore_eos = IGNORE_EOS.take(obj, &[], stage, issues).and_then(Value::as_bool).unwrap_or(false);
    let structured = parse_structured(obj, stage, issues);
    check_multimodal(obj, stage, issues);
    let draft_model = DRAFT_MODEL.take(obj, &[], stage, issues).map(to_string);
    let prompt_tokens = PROMPT_TOKENS.take(obj, &[], stage, issues).map(to_ids);
    let num_draft_tokens = NUM_DRAFT_TOKENS.take(obj, &[], stage, issues).map(to_u32);
    if issues.0.len() != before {
        return None;
    }
    Some(GeneratorParams {
        model: model?,
        prompt: prompt?,
        max_tokens: sampling.max_tokens,
        temperature: sampling.temperature,
        top_p: sampling.top_p,
        top_k: sampling.top_k,
        min_p: sampling.min_p,
        presence_penalty: sampling.presence_penalty,
        frequency_penalty: sampling.frequency_penalty,
        repetition_penalty: sampling.repetition_penalty,
        stop_sequences: sampling.stop_sequences.unwrap_or_default(),
        stop_token_ids: sampling.stop_token_ids.unwrap_or_default(),
        seed: sampling.seed,
        streaming: streaming.unwrap_or(true),
        ignore_eos,
        structured,
        draft_model,
        num_draft_tokens,
        prompt_tokens,
    })
}

fn parse_structured(
    obj: &Map<String, Value>,
    stage: Stage,
    issues: &mut Issues,
) -> Option<StructuredOutput> {
    let s = STRUCTURED.take(obj, &[], stage, issues)?.as_object()?;
    let path = [Value::from(STRUCTURED.name)];
    let schema = STRUCTURED_SCHEMA.take(s, &path, stage, issues);
    let format = STRUCTURED_FORMAT.take(s, &path, stage, issues);
    Some(StructuredOutput {
        schema: schema?.clone(),
        format: to_string(format?),
    })
}

fn check_multimodal(obj: &Map<String, Value>, stage: Stage, issues: &mut Issues) {
    if let Some(m) = MULTIMODAL
        .take(obj, &[], stage, issues)
        .and_then(Value::as_object)
    {
        let path = child(&[], MULTIMODAL.name);
        MULTIMODAL_IMAGES.take(m, &path, stage, issues);
        MULTIMODAL_IMAGE_FORMAT.take(m, &path, stage, issues);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{EngineError, ErrorCode};
    use serde_json::json;

    fn ok(v: Value) -> GeneratorParams {
        normalize_generator_params(&v).unwrap_or_else(|e| panic!("{v} rejected: {}", e.message))
    }

    fn err(v: Value) -> EngineError {
        match normalize_generator_params(&v) {
            Ok(p) => panic!("{v} accepted: {p:?}"),
            Err(e) => e,
        }
    }

    /// Base valid params with `key: value` added.
    fn with(key: &str, value: Value) -> Value {
        let mut v = json!({"model": "m", "prompt": "hi"});
        v.as_object_mut().unwrap().insert(key.to_owned(), value);
        v
    }

    fn field_of(e: &EngineError) -> &str {
        e.details["field"].as_str().unwrap()
    }

    fn assert_rejects(key: &str, value: Value, field: &str) {
        let e = err(with(key, value.clone()));
        assert_eq!(e.code, ErrorCode::InvalidParams, "{key}={value}");
        assert_eq!(field_of(&e), field, "{key}={value}: {}", e.message);
        assert!(
            e.message
                .starts_with(&format!("Validation error on field '{field}': ")),
            "{}",
            e.message
        );
    }

    #[test]
    fn minimal_params_and_defaults() {
        let p = ok(json!({"model": "m", "prompt": "hello"}));
        assert_eq!(p.model, "m");
        assert_eq!(p.prompt, Prompt::Text("hello".into()));
        assert!(p.streaming);
        assert_eq!(p.max_tokens, None);
        assert!(p.stop_sequences.is_empty() && p.stop_token_ids.is_empty());
        assert_eq!(
            (p.structured, p.draft_model, p.prompt_tokens, p.seed),
            (None, None, None, None)
        );
    }

    #[test]
    fn all_fields_camel_case() {
        let p = ok(json!({
            "model": "m", "prompt": "", "maxTokens": 4096, "temperature": 2, "topP": 1, "topK": 0, "minP": 1,
            "presencePenalty": -2, "frequencyPenalty": 2, "repetitionPenalty": 0, "stopSequences": ["a", ""],
            "stopTokenIds": [0, 1_000_000], "seed": 4294967295u64, "streaming": false,
            "structured": {"schema": {"type": "object"}, "format": "yaml"}, "multimodal": {"images": ["x"], "imageFormat": "url"},
            "draftModel": "d", "numDraftTokens": 16, "promptTokens": [1, 2]
        }));
        assert_eq!(
            p.prompt,
            Prompt::Text(String::new()),
            "empty prompt allowed (§6.1)"
        );
        assert_eq!(p.max_tokens, Some(4096));
        assert_eq!(p.temperature, Some(2.0));
        assert_eq!(p.top_p, Some(1.0));
        assert_eq!(p.top_k, Some(0));
        assert_eq!(p.min_p, Some(1.0));
        assert_eq!(p.presence_penalty, Some(-2.0));
        assert_eq!(p.frequency_penalty, Some(2.0));
        assert_eq!(p.repetition_penalty, Some(0.0));
        assert_eq!(p.stop_sequences, vec!["a".to_string(), String::new()]);
        assert_eq!(p.stop_token_ids, vec![0, 1_000_000]);
        assert_eq!(p.seed, Some(4_294_967_295));
        assert!(!p.streaming);
        assert_eq!(
            p.structured,
            Some(StructuredOutput {
                schema: json!({"type": "object"}),
                format: "yaml".into()
            })
        );
        assert_eq!(p.draft_model.as_deref(), Some("d"));
        assert_eq!(p.num_draft_tokens, Some(16));
        assert_eq!(p.prompt_tokens, Some(vec![1, 2]));
    }

    #[test]
    fn snake_case_aliases_are_normalized() {
        let p = ok(json!({
            "model_id": "m", "prompt": "x", "max_tokens": 10, "top_p": 0.5, "top_k": 3, "min_p": 0.1,
            "presence_penalty": 0.5, "frequency_penalty": -0.5, "repetition_penalty": 1.2, "stop_sequences": ["s"],
            "stop_token_ids": [7], "stream": false, "draft_model": "d", "num_draft_tokens": 4, "prompt_tokens": [3]
        }));
        assert_eq!(p.model, "m");
        assert_eq!(p.max_tokens, Some(10));
        assert_eq!(p.top_p, Some(0.5));
        assert_eq!(p.top_k, Some(3));
        assert_eq!(p.min_p, Some(0.1));
        assert_eq!(p.presence_penalty, Some(0.5));
        assert_eq!(p.frequency_penalty, Some(-0.5));
        assert_eq!(p.repetition_penalty, Some(1.2));
        assert_eq!(p.stop_sequences, vec!["s".to_string()]);
        assert_eq!(p.stop_token_ids, vec![7]);
        assert!(!p.streaming);
        assert_eq!(p.draft_model.as_deref(), Some("d"));
        assert_eq!(p.num_draft_tokens, Some(4));
        assert_eq!(p.prompt_tokens, Some(vec![3]));
    }

    #[test]
    fn camel_case_wins_and_snake_is_not_validated_when_shadowed() {
        let p = ok(
            json!({"model": "m", "prompt": "x", "maxTokens": 5, "max_tokens": "garbage", "topP": 0.3, "top_p": 0.9,
                          "streaming": true, "stream": false}),
        );
        assert_eq!(p.max_tokens, Some(5));
        assert_eq!(p.top_p, Some(0.3));
        assert!(p.streaming);
    }

    #[test]
    fn model_wins_over_model_id() {
        assert_eq!(
            ok(json!({"model": "a", "model_id": "b", "prompt": "x"})).model,
            "a"
        );
    }

    #[test]
    fn null_counts_as_absent_for_optional_fields() {
        let p = ok(
            json!({"model": "m", "prompt": "x", "maxTokens": null, "max_tokens": 9, "temperature": null,
                          "structured": null, "streaming": null}),
        );
        assert_eq!(p.max_tokens, Some(9));
        assert_eq!(p.temperature, None);
        assert!(p.streaming);
        assert_eq!(
            ok(json!({"model": null, "model_id": "b", "prompt": "x"})).model,
            "b"
        );
    }

    #[test]
    fn unknown_keys_pass_through() {
        ok(json!({"model": "m", "prompt": "x", "foo": {"bar": 1}, "logprobs": true}));
    }

    #[test]
    fn integral_floats_count_as_integers() {
        assert_eq!(ok(with("maxTokens", json!(10.0))).max_tokens, Some(10));
    }

    #[test]
    fn non_object_input_is_root() {
        for raw in [json!(null), json!("x"), json!(3), json!([1])] {
            let e = err(raw);
            assert_eq!(field_of(&e), "root");
            assert_eq!(e.message, "Validation error on field 'root': Required");
            assert_eq!(
                e.details["issues"],
                json!([{"path": [], "message": "Required", "code": "invalid_type"}])
            );
        }
    }

    #[test]
    fn model_rejections() {
        let e = err(json!({"model": "", "prompt": "x"}));
        assert_eq!(
            e.message,
            "Validation error on field 'model': Cannot be empty"
        );
        let e = err(json!({"prompt": "x"}));
        assert_eq!(e.message, "Validation error on field 'model': Required");
        let e = err(json!({"model": 123, "prompt": "x"}));
        assert_eq!(
            e.message,
            "Validation error on field 'model': Expected string, received number"
        );
    }

    #[test]
    fn prompt_rejections() {
        for bad in [
            json!(42),
            json!(null),
            json!({"foo": 1}),
            json!(true),
            json!(["a"]),
        ] {
            let e = err(json!({"model": "m", "prompt": bad}));
            assert_eq!(field_of(&e), "prompt", "{bad}");
            assert_eq!(e.message, "Validation error on field 'prompt': Prompt must be a string, PromptTemplate, or TokenizedPrompt object");
            assert_eq!(e.details["issues"][0]["code"], "invalid_union");
        }
        assert_eq!(field_of(&err(json!({"model": "m"}))), "prompt");
    }

    #[test]
    fn table_6_1_example_rejections() {
        for v in [json!(0), json!(-1), json!(1.5), json!("10"), json!(100001)] {
            assert_rejects("maxTokens", v, "maxTokens");
        }
        for v in [json!(-0.1), json!(2.5), json!("0.7")] {
            assert_rejects("temperature", v, "temperature");
        }
        for v in [json!(1.01), json!(-1)] {
            assert_rejects("topP", v, "topP");
        }
        assert_rejects("presencePenalty", json!(3), "presencePenalty");
        assert_rejects("frequencyPenalty", json!(3), "frequencyPenalty");
        assert_rejects("frequencyPenalty", json!(-3), "frequencyPenalty");
        assert_rejects("repetitionPenalty", json!(-1), "repetitionPenalty");
        assert_rejects("stopSequences", json!("END"), "stopSequences");
        assert_rejects("stopSequences", json!([1]), "stopSequences.0");
        assert_rejects("stopTokenIds", json!([-1]), "stopTokenIds.0");
        assert_rejects("stopTokenIds", json!([1.5]), "stopTokenIds.0");
        assert_rejects("seed", json!(-1), "seed");
        assert_rejects("seed", json!(0.5), "seed");
        assert_rejects("streaming", json!("yes"), "streaming");
        assert_rejects(
            "structured",
            json!({"format": "xml", "schema": {}}),
            "structured.format",
        );
        assert_rejects("structured", json!({"format": "json"}), "structured.schema");
        assert_rejects("structured", json!("json"), "structured");
        assert_rejects(
            "structured",
            json!({"format": "json", "schema": [1]}),
            "structured.schema",
        );
        assert_rejects(
            "multimodal",
            json!({"images": "a.png"}),
            "multimodal.images",
        );
        assert_rejects("multimodal", json!({}), "multimodal.images");
        assert_rejects(
            "multimodal",
            json!({"images": [], "imageFormat": "jpeg"}),
            "multimodal.imageFormat",
        );
        assert_rejects("draftModel", json!(1), "draftModel");
        assert_rejects("promptTokens", json!([-1]), "promptTokens.0");
        assert_rejects("promptTokens", json!("1,2"), "promptTokens");
    }

    #[test]
    fn zod_messages_follow_original_schemas() {
        let msg = |k: &str, v: Value| err(with(k, v)).message;
        assert_eq!(
            msg("maxTokens", json!(0)),
            "Validation error on field 'maxTokens': Must be a positive integer"
        );
        assert_eq!(
            msg("maxTokens", json!(1.5)),
            "Validation error on field 'maxTokens': Must be an integer"
        );
        assert_eq!(
            msg("maxTokens", json!(100001)),
            "Validation error on field 'maxTokens': maxTokens cannot exceed 100000"
        );
        assert_eq!(
            msg("temperature", json!(2.5)),
            "Validation error on field 'temperature': Temperature cannot exceed 2"
        );
        assert_eq!(
            msg("temperature", json!("0.7")),
            "Validation error on field 'temperature': Expected number, received string"
        );
        assert_eq!(
            msg("topP", json!(-1)),
            "Validation error on field 'topP': Top-p must be at least 0"
        );
        assert_eq!(
            msg("presencePenalty", json!(3)),
            "Validation error on field 'presencePenalty': Penalty cannot exceed 2"
        );
        assert_eq!(
            msg("structured", json!({"format": "xml", "schema": {}})),
            "Validation error on field 'structured.format': Format must be either json or yaml"
        );
        assert_eq!(
            msg("structured", json!({"format": "json"})),
            "Validation error on field 'structured.schema': Required"
        );
    }

    #[test]
    fn issue_codes() {
        let code = |k: &str, v: Value| {
            err(with(k, v)).details["issues"][0]["code"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(code("maxTokens", json!(0)), "too_small");
        assert_eq!(code("maxTokens", json!(100001)), "too_big");
        assert_eq!(code("maxTokens", json!("1")), "invalid_type");
        assert_eq!(
            code("structured", json!({"format": "xml", "schema": {}})),
            "invalid_enum_value"
        );
    }

    #[test]
    fn all_issues_are_collected_first_names_the_error() {
        let e = err(
            json!({"model": "", "prompt": 1, "maxTokens": 0, "temperature": 9, "stopSequences": [1, 2]}),
        );
        assert_eq!(field_of(&e), "model");
        let paths: Vec<Value> = e.details["issues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["path"].clone())
            .collect();
        assert_eq!(
            paths,
            vec![
                json!(["model"]),
                json!(["prompt"]),
                json!(["maxTokens"]),
                json!(["temperature"]),
                json!(["stopSequences", 0]),
                json!(["stopSequences", 1])
            ]
        );
        for issue in e.details["issues"].as_array().unwrap() {
            assert!(issue["message"].is_string() && issue["code"].is_string());
        }
    }

    #[test]
    fn section_15_additions() {
        for v in [json!(-1), json!(1.5), json!("3")] {
            assert_rejects("topK", v, "topK");
        }
        for v in [json!(-0.01), json!(1.01), json!("0.1")] {
            assert_rejects("minP", v, "minP");
        }
        for v in [json!(0), json!(17), json!(2.5)] {
            assert_rejects("numDraftTokens", v, "numDraftTokens");
        }
        assert_rejects("top_k", json!(-1), "topK");
        assert_eq!(
            ok(with("numDraftTokens", json!(1))).num_draft_tokens,
            Some(1)
        );
    }

    #[test]
    fn runtime_limits() {
        assert_eq!(ok(with("maxTokens", json!(4096))).max_tokens, Some(4096));
        let e = err(with("maxTokens", json!(4097)));
        assert_eq!(
            e.message,
            "Validation error on field 'maxTokens': maxTokens cannot exceed 4096 (runtime limit)"
        );
        assert_eq!(e.details["issues"][0]["code"], "too_big");
        assert_rejects("topP", json!(0), "topP");
        assert_eq!(ok(with("topP", json!(0.0001))).top_p, Some(0.0001));
        assert_rejects("stopSequences", json!(vec!["s"; 11]), "stopSequences");
        ok(with("stopSequences", json!(vec!["s"; 10])));
        assert_rejects(
            "stopSequences",
            json!(["ok", "x".repeat(101)]),
            "stopSequences.1",
        );
        ok(with("stopSequences", json!(["é".repeat(100)])));
        assert_rejects("stopTokenIds", json!(vec![1; 101]), "stopTokenIds");
        ok(with("stopTokenIds", json!(vec![1; 100])));
        assert_rejects("stopTokenIds", json!([1, 1_000_001]), "stopTokenIds.1");
        assert_rejects("seed", json!(4294967296u64), "seed");
        assert_rejects("prompt", json!("x".repeat((1 << 20) + 1)), "prompt");
        ok(with("prompt", json!("x".repeat(1 << 20))));
    }

    #[test]
    fn structured_requires_both_fields() {
        let e = err(with("structured", json!({})));
        let issues = e.details["issues"].as_array().unwrap();
        assert_eq!(issues.len(), 2);
        assert_eq!(issues[0]["path"], json!(["structured", "schema"]));
        assert_eq!(issues[1]["path"], json!(["structured", "format"]));
    }
}
