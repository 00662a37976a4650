//! `loadModel` options: normalization (spec §5.2) and validation (§6.2) into a typed
//! [`LoadModelOptions`], including the per-model default generation parameters.

use serde_json::{Map, Value};

use super::defaults::{parse_sampling, ModelDefaults};
use super::fields::{
    take_model_id, COMPUTE_DTYPE, CONTEXT_LENGTH, DESC_FAMILY, DESC_MODALITY, DESC_PATH, DESC_SOURCE,
    DESC_TOKENIZER, DESC_VARIANT, DRAFT, LOCAL_PATH, PARAMETERS, QUANTIZATION, REVISION,
    TOKENIZER_SPECIAL_TOKENS, TOKENIZER_TYPE, TOKENIZER_VOCAB_SIZE, TRUST_REMOTE_CODE,
};
use super::rules::{child, js_type, lookup, to_string, to_u32, Issues, Stage};
use crate::error::EngineResult;
use crate::models::ComputeDtype;

/// Validated `loadModel` options.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadModelOptions {
    /// The id the handle gets: the `model` string exactly as given (a path stays a path, an alias
    /// with `localPath` stays the alias), or the descriptor's `id` (§8.1).
    pub id: String,
    /// `localPath`/`local_path`: load from this directory; `id` is then only an alias (§5.2).
    /// An empty string counts as not given.
    pub local_path: Option<String>,
    /// `model.path` when `model` was a descriptor object.
    pub descriptor_path: Option<String>,
    pub revision: Option<String>,
    /// `none` | `int8` | `int4`.
    pub quantization: Option<String>,
    pub draft: bool,
    pub trust_remote_code: bool,
    /// `parameters`/`params` merged with inline generation keys (inline wins) (§5.2).
    pub defaults: ModelDefaults,
    /// `contextLength`/`context_length`: used when config.json names none (§8.1).
    pub context_length: Option<u32>,
    /// EXT `computeDtype`/`compute_dtype`: `auto` (default) | `float32` | `as-stored`.
    pub compute_dtype: ComputeDtype,
}

/// Normalizes and validates raw `loadModel`/`load_model` options (§5.2, §6.2). A string is
/// `{model: s}`; `null`/non-objects fail at field `root`, `{}` at `model`. Whitespace-only ids
/// are rejected. Per-model defaults are checked with the same rules (and runtime limits) as a
/// generation request, so a bad default fails here rather than on every later request.
pub fn normalize_load_options(raw: &Value) -> EngineResult<LoadModelOptions> {
    let mut issues = Issues::default();
    let parsed = parse_load_options(raw, Stage::Engine, &mut issues);
    match (issues.to_error(), parsed) {
        (None, Some(options)) => Ok(options),
        (Some(e), _) => Err(e),
        (None, None) => {
            unreachable!("parse_load_options returns None only after recording an issue")
        }
    }
}

fn has_parent_segment(p: &str) -> bool {
    p.split(['/', '\\']).any(|seg| seg == "..")
}

/// The shared parse behind [`normalize_load_options`] and `validate_load_model_options`.
pub(crate) fn parse_load_options(
    raw: &Value,
    stage: Stage,
    issues: &mut Issues,
) -> Option<LoadModelOptions> {
    let wrapped;
    let obj = match raw {
        Value::String(s) => {
            wrapped = Map::from_iter([("model".to_owned(), Value::String(s.clone()))]);
            &wrapped
        }
        Value::Object(obj) => obj,
        _ => {
            issues.push(
                vec![],
                "invalid_type",
                "Required",
                "options must be an object or a model id string",
            );
            return None;
        }
    };
    let before = issues.0.len();
    let model_path = [Value::from("model")];
    // §5.2 / §14.3: `model_id` overrides `model` here.
    let (id, descriptor_path) = match lookup(obj, &["model_id", "model"]) {
        Some(Value::Object(desc)) => parse_descriptor(desc, &model_path, stage, issues),
        other => (take_model_id(other, &model_path, true, None, issues), None),
    };
    let quantization = QUANTIZATION.take(obj, &[], stage, issues).map(to_string);
    let draft = DRAFT
        .take(obj, &[], stage, issues)
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let trust_remote_code = TRUST_REMOTE_CODE
        .take(obj, &[], stage, issues)
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let revision = REVISION.take(obj, &[], stage, issues).map(to_string);
    let local_path = LOCAL_PATH
        .take(obj, &[], stage, issues)
        .map(to_string)
        .filter(|p| !p.is_empty());
    let context_length = CONTEXT_LENGTH.take(obj, &[], stage, issues).map(to_u32);
    let compute_dtype = COMPUTE_DTYPE
        .take(obj, &[], stage, issues)
        .and_then(Value::as_str)
        .and_then(ComputeDtype::parse)
        .unwrap_or_default();
    let defaults = parse_defaults(obj, stage, issues);
    // §10.2: `..` in a model path is a parameter error (no escaping a trusted directory).
    for (field, value) in [("model", id.as_deref()), ("localPath", local_path.as_deref()), ("model.path", descriptor_path.as_deref())] {
        if value.is_some_and(has_parent_segment) {
            let path: Vec<Value> = field.split('.').map(Value::from).collect();
            issues.push(path, "custom", "Path must not contain '..' segments", &format!("{field} must not contain '..'"));
        }
    }
    if issues.0.len() != before {
        return None;
    }
    Some(LoadModelOptions {
        id: id?,
        local_path,
        descriptor_path,
        revision,
        quantization,
        draft,
        trust_remote_code,
        defaults,
        context_length,
        compute_dtype,
    })
}

/// Inline generation keys (either spelling) win over `parameters` (or `params`), whose keys
/// may be camelCase or snake_case (§5.2).
fn parse_defaults(obj: &Map<String, Value>, stage: Stage, issues: &mut Issues) -> ModelDefaults {
    let nested_key = PARAMETERS
        .spellings()
        .into_iter()
        .find(|k| lookup(obj, &[k]).is_some());
    let nested = PARAMETERS
        .take(obj, &[], stage, issues)
        .and_then(Value::as_object);
    let mut sources = vec![(obj, vec![])];
    if let (Some(nested), Some(key)) = (nested, nested_key) {
        // Issues inside it are reported under the key the caller used.
        sources.push((nested, vec![Value::from(key)]));
    }
    parse_sampling(&sources, stage, issues)
}

/// `model` given as a `ModelDescriptor` (§6.2). Returns `(id, path)`.
fn parse_descriptor(
    desc: &Map<String, Value>,
    path: &[Value],
    stage: Stage,
    issues: &mut Issues,
) -> (Option<String>, Option<String>) {
    let id = take_model_id(
        desc.get("id").filter(|v| !v.is_null()),
        &child(path, "id"),
        true,
        Some("model descriptor must have a valid id"),
        issues,
    );
    DESC_VARIANT.take(desc, path, stage, issues);
    DESC_SOURCE.take(desc, path, stage, issues);
    let descriptor_path = DESC_PATH.take(desc, path, stage, issues).map(to_string);
    DESC_MODALITY.take(desc, path, stage, issues);
    DESC_FAMILY.take(desc, path, stage, issues);
    if let Some(tok) = DESC_TOKENIZER
        .take(desc, path, stage, issues)
        .and_then(Value::as_object)
    {
        let tok_path = child(path, DESC_TOKENIZER.name);
        TOKENIZER_TYPE.take(tok, &tok_path, stage, issues);
        TOKENIZER_VOCAB_SIZE.take(tok, &tok_path, stage, issues);
        if let Some(special) = TOKENIZER_SPECIAL_TOKENS
            .take(tok, &tok_path, stage, issues)
            .and_then(Value::as_object)
        {
            // Record<string, number>.
            let special_path = child(&tok_path, TOKENIZER_SPECIAL_TOKENS.name);
            for (name, v) in special.iter().filter(|(_, v)| !v.is_number()) {
                let p = child(&special_path, name.as_str());
                let sentence = format!("{} must be a number", super::rules::dot_path(&p));
                issues.push(
                    p,
                    "invalid_type",
                    format!("Expected number, received {}", js_type(v)),
                    sentence,
                );
            }
        }
    }
    (id, descriptor_path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{EngineError, ErrorCode};
    use serde_json::json;

    fn ok(v: Value) -> LoadModelOptions {
        normalize_load_options(&v).unwrap_or_else(|e| panic!("{v} rejected: {}", e.message))
    }

    fn err(v: Value) -> EngineError {
        match normalize_load_options(&v) {
            Ok(o) => panic!("{v} accepted: {o:?}"),
            Err(e) => e,
        }
    }

    fn field(v: Value) -> String {
        let e = err(v);
        assert_eq!(e.code, ErrorCode::InvalidParams);
        e.details["field"].as_str().unwrap().to_owned()
    }

    fn descriptor() -> Value {
        json!({"id": "my-model", "source": "local", "modality": "text", "family": "mlx-lm", "path": "/models/x",
               "variant": "4bit", "tokenizer": {"type": "bpe", "vocabSize": 32000, "specialTokens": {"bos": 1}}})
    }

    #[test]
    fn string_means_model() {
        let o = ok(json!("/path/to/dir"));
        assert_eq!(o.id, "/path/to/dir");
        assert_eq!(ok(json!("org/name")).id, "org/name");
        assert_eq!(
            (
                o.local_path,
                o.descriptor_path,
                o.revision,
                o.quantization,
                o.draft,
                o.trust_remote_code,
                o.context_length
            ),
            (None, None, None, None, false, false, None)
        );
        assert_eq!(o.defaults, ModelDefaults::default());
    }

    #[test]
    fn model_id_overrides_model() {
        assert_eq!(ok(json!({"model": "a", "model_id": "b"})).id, "b");
        assert_eq!(ok(json!({"model_id": "b"})).id, "b");
        assert_eq!(ok(json!({"model": "a", "model_id": null})).id, "a");
    }

    #[test]
    fn parent_segments_are_invalid_params() {
        for raw in [json!({"model": "../x"}), json!({"model": "a", "localPath": "/m/../etc"}), json!("/a/../b")] {
            let e = normalize_load_options(&raw).unwrap_err();
            assert_eq!(e.code, crate::error::ErrorCode::InvalidParams, "{raw}");
        }
        assert!(normalize_load_options(&json!({"model": "a..b", "localPath": "/m/x..y"})).is_ok());
    }

    #[test]
    fn local_path_keeps_alias_as_id() {
        let o = ok(json!({"model": "my-alias", "localPath": "/models/x"}));
        assert_eq!(
            (o.id.as_str(), o.local_path.as_deref()),
            ("my-alias", Some("/models/x"))
        );
        let o = ok(json!({"model": "my-alias", "local_path": "/models/y"}));
        assert_eq!(o.local_path.as_deref(), Some("/models/y"));
        let o = ok(json!({"model": "a", "localPath": "/c", "local_path": "/s"}));
        assert_eq!(o.local_path.as_deref(), Some("/c"), "camelCase wins");
        assert_eq!(ok(json!({"model": "a", "localPath": ""})).local_path, None);
        assert_eq!(field(json!({"model": "a", "localPath": 1})), "localPath");
    }

    #[test]
    fn scalar_options() {
        let o = ok(
            json!({"model": "a", "revision": "main", "quantization": "int4", "draft": true, "trustRemoteCode": true, "contextLength": 2048}),
        );
        assert_eq!(o.revision.as_deref(), Some("main"));
        assert_eq!(o.quantization.as_deref(), Some("int4"));
        assert!(o.draft && o.trust_remote_code);
        assert_eq!(o.context_length, Some(2048));
        let o = ok(json!({"model": "a", "trust_remote_code": true, "context_length": 10}));
        assert!(o.trust_remote_code);
        assert_eq!(o.context_length, Some(10));
        for q in ["none", "int8", "int4"] {
            assert_eq!(
                ok(json!({"model": "a", "quantization": q}))
                    .quantization
                    .as_deref(),
                Some(q)
            );
        }
    }

    #[test]
    fn compute_dtype_option() {
        assert_eq!(ok(json!("a")).compute_dtype, ComputeDtype::Auto);
        assert_eq!(ok(json!({"model": "a", "computeDtype": "float32"})).compute_dtype, ComputeDtype::Float32);
        assert_eq!(ok(json!({"model": "a", "compute_dtype": "as-stored"})).compute_dtype, ComputeDtype::AsStored);
        assert_eq!(field(json!({"model": "a", "computeDtype": "f16"})), "computeDtype");
    }

    #[test]
    fn scalar_option_rejections() {
        let e = err(json!({"model": "a", "quantization": "int2"}));
        assert_eq!(e.message, "Validation error on field 'quantization': Quantization must be one of: none, int8, int4");
        assert_eq!(e.details["issues"][0]["code"], "invalid_enum_value");
        assert_eq!(
            field(json!({"model": "a", "quantization": {"bits": 4}})),
            "quantization"
        );
        assert_eq!(field(json!({"model": "a", "draft": "yes"})), "draft");
        assert_eq!(
            field(json!({"model": "a", "trustRemoteCode": 1})),
            "trustRemoteCode"
        );
        assert_eq!(
            field(json!({"model": "a", "trust_remote_code": "no"})),
            "trustRemoteCode"
        );
        assert_eq!(field(json!({"model": "a", "revision": 3})), "revision");
        assert_eq!(
            field(json!({"model": "a", "contextLength": 0})),
            "contextLength"
        );
        assert_eq!(
            field(json!({"model": "a", "context_length": 1.5})),
            "contextLength"
        );
        assert_eq!(
            field(json!({"model": "a", "parameters": "x"})),
            "parameters"
        );
        assert_eq!(field(json!({"model": "a", "params": [1]})), "parameters");
    }

    #[test]
    fn missing_or_bad_model() {
        for raw in [json!(null), json!(42), json!(true), json!([])] {
            let e = err(raw);
            assert_eq!(e.details["field"], "root");
            assert_eq!(e.message, "Validation error on field 'root': Required");
        }
        assert_eq!(
            err(json!({})).message,
            "Validation error on field 'model': Required"
        );
        assert_eq!(field(json!({"model": ""})), "model");
        assert_eq!(field(json!({"model": "   "})), "model");
        assert_eq!(field(json!("  \t")), "model");
        assert_eq!(field(json!({"model": 5})), "model");
        assert_eq!(field(json!({"model": ["a"]})), "model");
        assert_eq!(field(json!({"model": null})), "model");
        assert_eq!(field(json!({"model": "ok", "model_id": ""})), "model");
    }

    #[test]
    fn descriptor_model() {
        let o = ok(json!({"model": descriptor()}));
        assert_eq!(o.id, "my-model");
        assert_eq!(o.descriptor_path.as_deref(), Some("/models/x"));
        ok(
            json!({"model": {"id": "x", "source": "huggingface", "modality": "multimodal", "family": "mlx-vlm"}}),
        );
    }

    #[test]
    fn descriptor_rejections() {
        let bad = |k: &str, v: Value| {
            let mut d = descriptor();
            d.as_object_mut().unwrap().insert(k.into(), v);
            field(json!({"model": d}))
        };
        assert_eq!(bad("id", json!("")), "model.id");
        assert_eq!(bad("id", json!("  ")), "model.id");
        assert_eq!(bad("id", json!(null)), "model.id");
        assert_eq!(bad("id", json!(7)), "model.id");
        assert_eq!(bad("source", json!("s3")), "model.source");
        assert_eq!(bad("source", json!(null)), "model.source");
        assert_eq!(bad("modality", json!("audio")), "model.modality");
        assert_eq!(bad("family", json!("llama.cpp")), "model.family");
        assert_eq!(bad("variant", json!(1)), "model.variant");
        assert_eq!(bad("path", json!(false)), "model.path");
        assert_eq!(bad("tokenizer", json!("bpe")), "model.tokenizer");
        assert_eq!(
            bad("tokenizer", json!({"vocabSize": 10})),
            "model.tokenizer.type"
        );
        assert_eq!(
            bad("tokenizer", json!({"type": "bpe", "vocabSize": 0})),
            "model.tokenizer.vocabSize"
        );
        assert_eq!(
            bad("tokenizer", json!({"type": "bpe"})),
            "model.tokenizer.vocabSize"
        );
        assert_eq!(
            bad(
                "tokenizer",
                json!({"type": "bpe", "vocabSize": 5, "specialTokens": {"bos": "1"}})
            ),
            "model.tokenizer.specialTokens.bos"
        );
        let e = err(
            json!({"model": {"id": "x", "source": "local", "modality": "text", "family": "mlx-lm", "tokenizer": {"type": "t", "vocabSize": -1}}}),
        );
        assert_eq!(e.message, "Validation error on field 'model.tokenizer.vocabSize': Vocabulary size must be positive");
    }

    #[test]
    fn nested_parameters_camel_or_snake() {
        let o = ok(
            json!({"model": "a", "parameters": {"maxTokens": 100, "top_p": 0.9, "stop_sequences": ["END"], "seed": 3}}),
        );
        assert_eq!(o.defaults.max_tokens, Some(100));
        assert_eq!(o.defaults.top_p, Some(0.9));
        assert_eq!(o.defaults.stop_sequences, Some(vec!["END".to_string()]));
        assert_eq!(o.defaults.seed, Some(3));
        let o = ok(
            json!({"model": "a", "params": {"temperature": 0.2, "repetition_penalty": 1.1, "top_k": 5, "min_p": 0.05,
                          "presence_penalty": 0.1, "frequency_penalty": 0.2, "stop_token_ids": [2]}}),
        );
        assert_eq!(o.defaults.temperature, Some(0.2));
        assert_eq!(o.defaults.repetition_penalty, Some(1.1));
        assert_eq!(o.defaults.top_k, Some(5));
        assert_eq!(o.defaults.min_p, Some(0.05));
        assert_eq!(o.defaults.presence_penalty, Some(0.1));
        assert_eq!(o.defaults.frequency_penalty, Some(0.2));
        assert_eq!(o.defaults.stop_token_ids, Some(vec![2]));
        // `parameters` wins over `params`.
        assert_eq!(
            ok(json!({"model": "a", "parameters": {"seed": 1}, "params": {"seed": 2}}))
                .defaults
                .seed,
            Some(1)
        );
    }

    #[test]
    fn inline_generation_keys_win_over_nested() {
        let o = ok(
            json!({"model": "a", "max_tokens": 50, "temperature": 0.1, "parameters": {"maxTokens": 100, "temperature": 0.9, "topP": 0.5}}),
        );
        assert_eq!(o.defaults.max_tokens, Some(50));
        assert_eq!(o.defaults.temperature, Some(0.1));
        assert_eq!(o.defaults.top_p, Some(0.5));
        let o = ok(json!({"model": "a", "maxTokens": 60, "max_tokens": 50}));
        assert_eq!(
            o.defaults.max_tokens,
            Some(60),
            "inline camel wins over inline snake"
        );
        // A shadowed nested value is not validated.
        assert_eq!(
            ok(json!({"model": "a", "seed": 1, "parameters": {"seed": "bad"}}))
                .defaults
                .seed,
            Some(1)
        );
    }

    #[test]
    fn bad_defaults_are_rejected_with_paths() {
        assert_eq!(
            field(json!({"model": "a", "parameters": {"maxTokens": 0}})),
            "parameters.maxTokens"
        );
        assert_eq!(
            field(json!({"model": "a", "params": {"top_p": 2}})),
            "params.topP"
        );
        assert_eq!(
            field(json!({"model": "a", "temperature": "hot"})),
            "temperature"
        );
        assert_eq!(
            field(json!({"model": "a", "parameters": {"maxTokens": 5000}})),
            "parameters.maxTokens"
        );
        assert_eq!(
            field(json!({"model": "a", "stop_sequences": [1]})),
            "stopSequences.0"
        );
    }

    #[test]
    fn unknown_keys_and_functions_removed_are_fine() {
        ok(json!({"model": "a", "foo": 1, "quantization": null, "streaming": "x"}));
    }
}
