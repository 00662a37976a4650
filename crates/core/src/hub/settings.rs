//! Where the hub is and how to reach it — endpoint, cache folder, token, offline mode — taken
//! from the engine's `hub` option first, then from the environment variables the Python
//! `huggingface_hub` library reads, so both share one cache and one login.

use std::path::PathBuf;

use serde_json::Value;

use crate::error::{EngineError, EngineResult};

pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// `EngineOptions.hub` (EXT): `{endpoint?, cacheDir?, token?, offline?}`; each overrides its
/// environment variable for this engine only (tests point several engines at different hubs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HubOptions {
    pub endpoint: Option<String>,
    /// The hub cache folder itself (what `HF_HUB_CACHE` names), not `HF_HOME`.
    pub cache_dir: Option<String>,
    pub token: Option<String>,
    pub offline: Option<bool>,
}

impl HubOptions {
    /// Parses `hub` from the engine options; a wrong type is InvalidParams naming `hub.<key>`.
    pub fn from_json(raw: &Value) -> EngineResult<Self> {
        let Some(hub) = raw.get("hub").filter(|v| !v.is_null()) else { return Ok(Self::default()) };
        let obj = hub.as_object().ok_or_else(|| bad("hub", "must be an object"))?;
        let text = |k: &str| -> EngineResult<Option<String>> {
            match obj.get(k).filter(|v| !v.is_null()) {
                None => Ok(None),
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_owned())),
                Some(_) => Err(bad(&format!("hub.{k}"), "must be a non-empty string")),
            }
        };
        let offline = match obj.get("offline").filter(|v| !v.is_null()) {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => return Err(bad("hub.offline", "must be a boolean")),
        };
        let endpoint = text("endpoint")?;
        if let Some(e) = &endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(bad("hub.endpoint", "must be an http:// or https:// URL"));
            }
        }
        Ok(HubOptions { endpoint, cache_dir: text("cacheDir")?, token: text("token")?, offline })
    }
}

fn bad(field: &str, msg: &str) -> EngineError {
    EngineError::invalid_params(format!("Validation error on field '{field}': {msg}")).with_detail("field", field)
}

/// The settings one hub resolution uses.
#[derive(Debug, Clone, PartialEq)]
pub struct HubSettings {
    /// Base URL without a trailing slash.
    pub endpoint: String,
    pub cache_dir: PathBuf,
    pub token: Option<String>,
    pub offline: bool,
}

impl HubSettings {
    /// Options over the process environment, read at each load (a changed `HF_HUB_OFFLINE`
    /// takes effect without a new engine).
    pub fn resolve(opts: &HubOptions) -> Self {
        Self::resolve_with(opts, |k| std::env::var(k).ok())
    }

    pub fn resolve_with(opts: &HubOptions, env: impl Fn(&str) -> Option<String>) -> Self {
        let var = |k: &str| env(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let hf_home = var("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            let cache = var("XDG_CACHE_HOME").map(PathBuf::from).unwrap_or_else(|| home(&var).join(".cache"));
            cache.join("huggingface")
        });
        let cache_dir = opts
            .cache_dir
            .clone()
            .or_else(|| var("HF_HUB_CACHE"))
            .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("hub"));
        let endpoint = opts.endpoint.clone().or_else(|| var("HF_ENDPOINT")).unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        let offline = opts.offline.unwrap_or_else(|| {
            var("HF_HUB_OFFLINE").or_else(|| var("TRANSFORMERS_OFFLINE")).is_some_and(|v| truthy(&v))
        });
        let token = opts.token.clone().or_else(|| implicit_token(&var, &hf_home));
        HubSettings { endpoint: endpoint.trim_end_matches('/').to_owned(), cache_dir, token, offline }
    }
}

/// huggingface_hub's reading of boolean variables.
fn truthy(v: &str) -> bool {
    matches!(v.to_ascii_uppercase().as_str(), "1" | "ON" | "YES" | "TRUE")
}

fn home(var: &impl Fn(&str) -> Option<String>) -> PathBuf {
    var("HOME").or_else(|| var("USERPROFILE")).map(PathBuf::from).unwrap_or_else(std::env::temp_dir)
}

/// `HF_TOKEN`, the legacy `HUGGING_FACE_HUB_TOKEN`, then the file `huggingface-cli login`
/// writes (`HF_TOKEN_PATH`, default `$HF_HOME/token`); none with `HF_HUB_DISABLE_IMPLICIT_TOKEN`.
fn implicit_token(var: &impl Fn(&str) -> Option<String>, hf_home: &std::path::Path) -> Option<String> {
    if var("HF_HUB_DISABLE_IMPLICIT_TOKEN").is_some_and(|v| truthy(&v)) {
        return None;
    }
    var("HF_TOKEN").or_else(|| var("HUGGING_FACE_HUB_TOKEN")).or_else(|| {
        let path = var("HF_TOKEN_PATH").map(PathBuf::from).unwrap_or_else(|| hf_home.join("token"));
        std::fs::read_to_string(path).ok().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    fn with_env(pairs: &[(&str, &str)], opts: &HubOptions) -> HubSettings {
        let env: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        HubSettings::resolve_with(opts, |k| env.get(k).cloned())
    }

    #[test]
    fn defaults_follow_huggingface_hub() {
        let s = with_env(&[("HOME", "/home/u")], &HubOptions::default());
        assert_eq!(s.endpoint, DEFAULT_ENDPOINT);
        assert_eq!(s.cache_dir, PathBuf::from("/home/u/.cache/huggingface/hub"));
        assert!(!s.offline);
        let s = with_env(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x")], &HubOptions::default());
        assert_eq!(s.cache_dir, PathBuf::from("/x/huggingface/hub"));
        let s = with_env(&[("HF_HOME", "/hf")], &HubOptions::default());
        assert_eq!(s.cache_dir, PathBuf::from("/hf/hub"));
        let s = with_env(&[("HF_HOME", "/hf"), ("HF_HUB_CACHE", "/c")], &HubOptions::default());
        assert_eq!(s.cache_dir, PathBuf::from("/c"));
        let s = with_env(&[("HUGGINGFACE_HUB_CACHE", "/legacy")], &HubOptions::default());
        assert_eq!(s.cache_dir, PathBuf::from("/legacy"));
        let s = with_env(&[("HF_ENDPOINT", "http://127.0.0.1:9/")], &HubOptions::default());
        assert_eq!(s.endpoint, "http://127.0.0.1:9");
    }

    #[test]
    fn offline_flags() {
        for v in ["1", "true", "ON", "yes"] {
            assert!(with_env(&[("HF_HUB_OFFLINE", v)], &HubOptions::default()).offline, "{v}");
        }
        for v in ["0", "false", "", "no"] {
            assert!(!with_env(&[("HF_HUB_OFFLINE", v)], &HubOptions::default()).offline, "{v}");
        }
        assert!(with_env(&[("TRANSFORMERS_OFFLINE", "1")], &HubOptions::default()).offline);
        let opts = HubOptions { offline: Some(false), ..Default::default() };
        assert!(!with_env(&[("HF_HUB_OFFLINE", "1")], &opts).offline, "the option wins");
    }

    #[test]
    fn tokens() {
        let d = HubOptions::default();
        assert_eq!(with_env(&[("HF_TOKEN", "a"), ("HUGGING_FACE_HUB_TOKEN", "b")], &d).token.as_deref(), Some("a"));
        assert_eq!(with_env(&[("HUGGING_FACE_HUB_TOKEN", "b")], &d).token.as_deref(), Some("b"));
        assert_eq!(with_env(&[("HF_TOKEN", "a"), ("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")], &d).token, None);
        let dir = std::env::temp_dir().join(format!("mlx-serving-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), "hf_file\n").unwrap();
        let home = dir.to_string_lossy().into_owned();
        assert_eq!(with_env(&[("HF_HOME", &home)], &d).token.as_deref(), Some("hf_file"));
        let opts = HubOptions { token: Some("explicit".into()), ..Default::default() };
        assert_eq!(with_env(&[("HF_HOME", &home), ("HF_TOKEN", "a")], &opts).token.as_deref(), Some("explicit"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn options_parse_and_reject() {
        assert_eq!(HubOptions::from_json(&json!({})).unwrap(), HubOptions::default());
        let o = HubOptions::from_json(&json!({"hub": {"endpoint": "http://127.0.0.1:1", "cacheDir": "/c", "token": "t", "offline": true}})).unwrap();
        assert_eq!(o.endpoint.as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!((o.cache_dir.as_deref(), o.token.as_deref(), o.offline), (Some("/c"), Some("t"), Some(true)));
        for (raw, field) in [
            (json!({"hub": 1}), "hub"),
            (json!({"hub": {"offline": "yes"}}), "hub.offline"),
            (json!({"hub": {"endpoint": "ftp://x"}}), "hub.endpoint"),
            (json!({"hub": {"cacheDir": ""}}), "hub.cacheDir"),
            (json!({"hub": {"token": 5}}), "hub.token"),
        ] {
            let e = HubOptions::from_json(&raw).unwrap_err();
            assert_eq!(e.details["field"], field, "{raw}");
        }
    }
}
