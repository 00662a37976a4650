//! The rule table itself: every request field the engine validates, written once (spec §6,
//! §15), plus the model-id rule that several requests share. Both the engine's `normalize_*`
//! functions and the §2.5 validators read these constants; nothing else restates a bound.
//!
//! Zod-style messages repeat the original schemas' texts (`types/schemas/common.ts`), so errors
//! look like the original's; `describe` texts give the §2.5 sentences (`validators.ts`).

use serde_json::Value;

use super::defaults::MAX_GENERATION_TOKENS;
use super::rules::{js_type, FieldRule, Issues, Kind};

/// JavaScript's `Number.MAX_SAFE_INTEGER`: the largest integer a caller can pass exactly.
const MAX_SAFE_INTEGER: i64 = 9_007_199_254_740_991;
const U32_MAX: i64 = u32::MAX as i64;

// ---- GeneratorParams (§6.1, §15) ----

pub(crate) const MODEL: FieldRule =
    FieldRule::new("model", &["model_id"], Kind::Str, "a string").required();

pub(crate) const MAX_TOKENS: FieldRule = FieldRule::new(
    "maxTokens",
    &["max_tokens"],
    Kind::Int {
        min: 1,
        max: 100_000,
        runtime_max: Some(MAX_GENERATION_TOKENS as i64),
    },
    "a positive integer",
)
.msgs(
    "Must be a positive integer",
    "maxTokens cannot exceed 100000",
)
.big_sentence("cannot exceed 100000");

pub(crate) const TEMPERATURE: FieldRule = FieldRule::new(
    "temperature",
    &[],
    Kind::Num {
        min: 0.0,
        max: 2.0,
        runtime_above_min: false,
    },
    "a number between 0 and 2",
)
.msgs(
    "Temperature must be at least 0",
    "Temperature cannot exceed 2",
);

/// topP: `0..=1` in the schema, but the runtime required `(0, 1]` (§6.1 second stage).
pub(crate) const TOP_P: FieldRule = FieldRule::new(
    "topP",
    &["top_p"],
    Kind::Num {
        min: 0.0,
        max: 1.0,
        runtime_above_min: true,
    },
    "a number between 0 and 1",
)
.msgs("Top-p must be at least 0", "Top-p cannot exceed 1");

/// §15: 0 = off.
pub(crate) const TOP_K: FieldRule = FieldRule::new(
    "topK",
    &["top_k"],
    Kind::Int {
        min: 0,
        max: U32_MAX,
        runtime_max: None,
    },
    "a non-negative integer",
)
.msgs(
    "Must be non-negative",
    "Number must be less than or equal to 4294967295",
);

/// §15: 0 = off.
pub(crate) const MIN_P: FieldRule = FieldRule::new(
    "minP",
    &["min_p"],
    Kind::Num {
        min: 0.0,
        max: 1.0,
        runtime_above_min: false,
    },
    "a number between 0 and 1",
)
.msgs("minP must be at least 0", "minP cannot exceed 1");

pub(crate) const PRESENCE_PENALTY: FieldRule = FieldRule::new(
    "presencePenalty",
    &["presence_penalty"],
    Kind::Num {
        min: -2.0,
        max: 2.0,
        runtime_above_min: false,
    },
    "a number between -2 and 2",
)
.msgs("Penalty must be at least -2", "Penalty cannot exceed 2");

pub(crate) const FREQUENCY_PENALTY: FieldRule = FieldRule::new(
    "frequencyPenalty",
    &["frequency_penalty"],
    Kind::Num {
        min: -2.0,
        max: 2.0,
        runtime_above_min: false,
    },
    "a number between -2 and 2",
)
.msgs("Penalty must be at least -2", "Penalty cannot exceed 2");

pub(crate) const REPETITION_PENALTY: FieldRule = FieldRule::new(
    "repetitionPenalty",
    &["repetition_penalty"],
    Kind::Num {
        min: 0.0,
        max: f64::INFINITY,
        runtime_above_min: false,
    },
    "a non-negative number",
)
.msgs("Must be non-negative", "");

pub(crate) const STOP_SEQUENCES: FieldRule = FieldRule::new(
    "stopSequences",
    &["stop_sequences"],
    Kind::StrList {
        max_items: Some(10),
        max_chars: Some(100),
    },
    "an array",
);

pub(crate) const STOP_TOKEN_IDS: FieldRule = FieldRule::new(
    "stopTokenIds",
    &["stop_token_ids"],
    Kind::IdList {
        max_items: Some(100),
        max_value: Some(1_000_000),
    },
    "an array",
);

/// Schema: any non-negative integer; runtime: it seeds a 32-bit RNG state (≤ 2^32−1).
pub(crate) const SEED: FieldRule = FieldRule::new(
    "seed",
    &[],
    Kind::Int {
        min: 0,
        max: MAX_SAFE_INTEGER,
        runtime_max: Some(U32_MAX),
    },
    "a non-negative integer",
)
.msgs(
    "Must be non-negative",
    "Number must be less than or equal to 9007199254740991",
);

/// EXT: keep generating past EOS (benchmarks that need equal token counts across engines).
pub(crate) const IGNORE_EOS: FieldRule =
    FieldRule::new("ignoreEos", &["ignore_eos"], Kind::Bool, "a boolean");
pub(crate) const STREAMING: FieldRule =
    FieldRule::new("streaming", &["stream"], Kind::Bool, "a boolean");

pub(crate) const DRAFT_MODEL: FieldRule =
    FieldRule::new("draftModel", &["draft_model"], Kind::Str, "a string");

/// §15: speculative proposal length.
pub(crate) const NUM_DRAFT_TOKENS: FieldRule = FieldRule::new(
    "numDraftTokens",
    &["num_draft_tokens"],
    Kind::Int {
        min: 1,
        max: 16,
        runtime_max: None,
    },
    "an integer between 1 and 16",
)
.msgs(
    "numDraftTokens must be at least 1",
    "numDraftTokens cannot exceed 16",
);

pub(crate) const PROMPT_TOKENS: FieldRule = FieldRule::new(
    "promptTokens",
    &["prompt_tokens"],
    Kind::IdList {
        max_items: None,
        max_value: None,
    },
    "an array",
);

/// The sampling fields a model may carry defaults for (`LoadModelOptions.parameters`, §5.2).
pub(crate) const SAMPLING_RULES: [FieldRule; 11] = [
    MAX_TOKENS,
    TEMPERATURE,
    TOP_P,
    PRESENCE_PENALTY,
    FREQUENCY_PENALTY,
    REPETITION_PENALTY,
    STOP_SEQUENCES,
    STOP_TOKEN_IDS,
    SEED,
    TOP_K,
    MIN_P,
];

pub(crate) const STRUCTURED: FieldRule =
    FieldRule::new("structured", &[], Kind::Object, "an object");
pub(crate) const STRUCTURED_SCHEMA: FieldRule =
    FieldRule::new("schema", &[], Kind::Object, "an object")
        .required()
        .missing_sentence("is required when using structured output");
pub(crate) const STRUCTURED_FORMAT: FieldRule = FieldRule::new(
    "format",
    &[],
    Kind::OneOf(&["json", "yaml"]),
    "\"json\" or \"yaml\"",
)
.required()
.missing_sentence("is required when using structured output")
.msgs("Format must be either json or yaml", "");

/// Validated, then ignored by text generation (§7.12).
pub(crate) const MULTIMODAL: FieldRule =
    FieldRule::new("multimodal", &[], Kind::Object, "an object");
pub(crate) const MULTIMODAL_IMAGES: FieldRule = FieldRule::new(
    "images",
    &[],
    Kind::StrList {
        max_items: None,
        max_chars: None,
    },
    "an array",
)
.required();
pub(crate) const MULTIMODAL_IMAGE_FORMAT: FieldRule = FieldRule::new(
    "imageFormat",
    &[],
    Kind::OneOf(&["base64", "url", "path"]),
    "one of: base64, url, path",
)
.msgs("Image format must be one of: base64, url, path", "");

// ---- Prompt forms (§6.1, §7.5, §15) ----

pub(crate) const PROMPT_UNION_MESSAGE: &str =
    "Prompt must be a string, PromptTemplate, or TokenizedPrompt object";
pub(crate) const PROMPT_TEMPLATE: FieldRule =
    FieldRule::new("template", &[], Kind::Str, "a string").required();
/// Any object: §7.5 stringifies numbers/booleans and fails rendering for other values, so the
/// value types are checked when rendering, not here.
pub(crate) const PROMPT_VARIABLES: FieldRule =
    FieldRule::new("variables", &[], Kind::Object, "an object").required();
pub(crate) const PROMPT_TOKENS_FORM: FieldRule = FieldRule::new(
    "tokens",
    &[],
    Kind::IdList {
        max_items: None,
        max_value: None,
    },
    "an array",
)
.required();
pub(crate) const MESSAGES: FieldRule =
    FieldRule::new("messages", &[], Kind::Object, "a non-empty array");
pub(crate) const MESSAGE_ROLE: FieldRule = FieldRule::new(
    "role",
    &[],
    Kind::OneOf(&["system", "user", "assistant", "tool"]),
    "one of: system, user, assistant, tool",
)
.required()
.msgs(
    "Invalid enum value. Expected 'system' | 'user' | 'assistant' | 'tool'",
    "",
);
pub(crate) const MESSAGE_CONTENT: FieldRule =
    FieldRule::new("content", &[], Kind::Str, "a string").required();
pub(crate) const ADD_GENERATION_PROMPT: FieldRule = FieldRule::new(
    "addGenerationPrompt",
    &["add_generation_prompt"],
    Kind::Bool,
    "a boolean",
);

// ---- LoadModelOptions (§5.2, §6.2) ----

pub(crate) const QUANTIZATION: FieldRule = FieldRule::new(
    "quantization",
    &[],
    Kind::OneOf(&["none", "int8", "int4"]),
    "one of: none, int8, int4",
)
.msgs("Quantization must be one of: none, int8, int4", "");
pub(crate) const DRAFT: FieldRule = FieldRule::new("draft", &[], Kind::Bool, "a boolean");
pub(crate) const TRUST_REMOTE_CODE: FieldRule = FieldRule::new(
    "trustRemoteCode",
    &["trust_remote_code"],
    Kind::Bool,
    "a boolean",
);
pub(crate) const REVISION: FieldRule = FieldRule::new("revision", &[], Kind::Str, "a string");
pub(crate) const LOCAL_PATH: FieldRule =
    FieldRule::new("localPath", &["local_path"], Kind::Str, "a string");
pub(crate) const CONTEXT_LENGTH: FieldRule = FieldRule::new(
    "contextLength",
    &["context_length"],
    Kind::Int {
        min: 1,
        max: U32_MAX,
        runtime_max: None,
    },
    "a positive integer",
)
.msgs(
    "Context length must be positive",
    "Number must be less than or equal to 4294967295",
);
pub(crate) const PARAMETERS: FieldRule =
    FieldRule::new("parameters", &["params"], Kind::Object, "an object");
/// EXT: the weights' compute form (`auto`: f32 on the CPU backend, as stored on GPUs).
pub(crate) const COMPUTE_DTYPE: FieldRule = FieldRule::new(
    "computeDtype",
    &["compute_dtype"],
    Kind::OneOf(&["auto", "float32", "as-stored"]),
    "one of: auto, float32, as-stored",
)
.msgs("Invalid enum value. Expected 'auto' | 'float32' | 'as-stored'", "");

// ModelDescriptor (`model` given as an object).
pub(crate) const DESC_VARIANT: FieldRule = FieldRule::new("variant", &[], Kind::Str, "a string");
pub(crate) const DESC_SOURCE: FieldRule = FieldRule::new(
    "source",
    &[],
    Kind::OneOf(&["huggingface", "local"]),
    "one of: huggingface, local",
)
.required()
.msgs("Source must be either huggingface or local", "");
pub(crate) const DESC_PATH: FieldRule = FieldRule::new("path", &[], Kind::Str, "a string");
pub(crate) const DESC_MODALITY: FieldRule = FieldRule::new(
    "modality",
    &[],
    Kind::OneOf(&["text", "vision", "multimodal"]),
    "one of: text, vision, multimodal",
)
.required()
.msgs("Modality must be one of: text, vision, multimodal", "");
pub(crate) const DESC_FAMILY: FieldRule = FieldRule::new(
    "family",
    &[],
    Kind::OneOf(&["mlx-lm", "mlx-vlm"]),
    "one of: mlx-lm, mlx-vlm",
)
.required()
.msgs("Family must be either mlx-lm or mlx-vlm", "");
pub(crate) const DESC_TOKENIZER: FieldRule =
    FieldRule::new("tokenizer", &[], Kind::Object, "an object");
pub(crate) const TOKENIZER_TYPE: FieldRule =
    FieldRule::new("type", &[], Kind::Str, "a string").required();
pub(crate) const TOKENIZER_VOCAB_SIZE: FieldRule = FieldRule::new(
    "vocabSize",
    &[],
    Kind::Int {
        min: 1,
        max: MAX_SAFE_INTEGER,
        runtime_max: None,
    },
    "a positive integer",
)
.required()
.msgs(
    "Vocabulary size must be positive",
    "Number must be less than or equal to 9007199254740991",
);
pub(crate) const TOKENIZER_SPECIAL_TOKENS: FieldRule =
    FieldRule::new("specialTokens", &[], Kind::Object, "an object");

// ---- TokenizeRequest (§5.3, §6.3) ----

pub(crate) const TEXT: FieldRule = FieldRule::new("text", &[], Kind::Str, "a string").required();
/// `add_special_tokens` outranks `add_bos` as in the original normalizer; camelCase wins over both.
pub(crate) const ADD_BOS: FieldRule = FieldRule::new(
    "addBos",
    &["add_special_tokens", "add_bos"],
    Kind::Bool,
    "a boolean",
);

/// The model-id rule shared by every request: a required non-empty string; whitespace-only is
/// also rejected where `reject_blank` (the §2.5 validators; `loadModel`). `sentence` replaces
/// every §2.5 sentence when given (the descriptor's `'model descriptor must have a valid id'`).
pub(crate) fn take_model_id(
    value: Option<&Value>,
    path: &[Value],
    reject_blank: bool,
    sentence: Option<&str>,
    issues: &mut Issues,
) -> Option<String> {
    let label = super::rules::dot_path(path);
    let say = |default: String| sentence.map(str::to_owned).unwrap_or(default);
    match value {
        None => issues.push(
            path.to_vec(),
            "invalid_type",
            "Required",
            say(format!("{label} is required")),
        ),
        Some(Value::String(s)) if s.is_empty() => {
            // The original validators said "is required" for '' (`!options.model`).
            issues.push(
                path.to_vec(),
                "too_small",
                "Cannot be empty",
                say(format!("{label} is required")),
            )
        }
        Some(Value::String(s)) if reject_blank && s.trim().is_empty() => issues.push(
            path.to_vec(),
            "custom",
            "Cannot be blank",
            say("model identifier cannot be empty".to_owned()),
        ),
        Some(Value::String(s)) => return Some(s.clone()),
        Some(other) => issues.push(
            path.to_vec(),
            "invalid_type",
            format!("Expected string, received {}", js_type(other)),
            say(format!("{label} must be a string")),
        ),
    }
    None
}
