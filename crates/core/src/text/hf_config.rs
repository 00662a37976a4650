//! Reading the optional JSON side files of a Hugging Face model folder
//! (`tokenizer_config.json`, `generation_config.json`, `config.json`) and the loosely typed
//! fields the tokenizer needs from them: special tokens given as text or `{content}` objects,
//! token ids given as an int or a list, chat templates given as a string or a named list.

use std::path::Path;

use serde_json::Value;

use crate::error::{EngineError, EngineResult};

/// Reads an optional JSON file: absent → `None`; unreadable or not JSON → `ModelLoadError`
/// naming the file (a broken config silently ignored would give wrong EOS/BOS handling).
pub(crate) fn read_optional_json(dir: &Path, name: &str) -> EngineResult<Option<Value>> {
    let path = dir.join(name);
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| {
        EngineError::model_load(format!("Failed to read {}: {e}", path.display()))
            .with_detail("file", name)
    })?;
    serde_json::from_str(&text).map(Some).map_err(|e| {
        EngineError::model_load(format!("Failed to parse {}: {e}", path.display()))
            .with_detail("file", name)
    })
}

/// A special token in `tokenizer_config.json` is either `"<s>"` or `{"content": "<s>", ...}`.
pub(crate) fn token_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

/// `eos_token_id` / `bos_token_id` are an int or a list of ints.
pub(crate) fn token_ids(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => {
            n.as_u64().and_then(|x| u32::try_from(x).ok()).into_iter().collect()
        }
        Some(Value::Array(a)) => {
            a.iter().filter_map(|x| x.as_u64().and_then(|x| u32::try_from(x).ok())).collect()
        }
        _ => Vec::new(),
    }
}

/// `chat_template` is a string, or a list of `{name, template}` (HF multi-template form):
/// take the one named "default", else the first.
pub(crate) fn chat_template_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Array(list) => {
            let named = |item: &Value| item.get("name").and_then(Value::as_str) == Some("default");
            list.iter()
                .find(|item| named(item))
                .or_else(|| list.first())
                .and_then(|item| item.get("template"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        }
        _ => None,
    }
}
