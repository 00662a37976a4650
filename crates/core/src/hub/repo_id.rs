//! Which model ids name a Hugging Face repository: `org/name` (a folder-style model: config,
//! tokenizer, safetensors) or `org/name/<file>.gguf` (one GGUF file of a repository), and which
//! revisions are safe to use as cache paths and URL parts.

use crate::error::{EngineError, EngineResult};

/// A model on the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubRef {
    /// `org/name`
    pub repo: String,
    /// A `.gguf` file at the repository root, when the id named one.
    pub gguf: Option<String>,
}

/// The hub's limit on a repository name's length.
const MAX_NAME: usize = 96;

/// `Some` when `id` has the shape of a hub id. Callers check first that it is not a local path.
pub fn parse_hub_ref(id: &str) -> Option<HubRef> {
    let parts: Vec<&str> = id.split('/').collect();
    let (org, name, file) = match parts.as_slice() {
        [org, name] => (*org, *name, None),
        [org, name, file] if file.to_ascii_lowercase().ends_with(".gguf") && safe_file(file) => (*org, *name, Some(file.to_string())),
        _ => return None,
    };
    (valid_segment(org) && valid_segment(name)).then(|| HubRef { repo: format!("{org}/{name}"), gguf: file })
}

/// The hub's rule for user/org and repository names: letters, digits, `-`, `_`, `.`; no
/// leading/trailing `-` or `.`, no `--` or `..`.
fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !s.starts_with(['-', '.'])
        && !s.ends_with(['-', '.'])
        && !s.contains("--")
        && !s.contains("..")
}

/// A file name from the id or a hub listing that is safe to join under a snapshot folder.
pub fn safe_file(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && !name.contains('\\')
        && !name.chars().any(char::is_control)
        && name.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

/// `revision` (a branch, tag or commit) becomes a `refs/` path and a URL part: no empty or
/// `..` segments, no backslashes or control characters. Otherwise InvalidParams on `revision`.
pub fn check_revision(rev: &str) -> EngineResult<()> {
    if safe_file(rev) {
        return Ok(());
    }
    Err(EngineError::invalid_params(format!("Validation error on field 'revision': '{rev}' is not a valid revision"))
        .with_detail("field", "revision"))
}

/// A full commit hash (what `snapshots/` folders are named by).
pub fn is_commit_hash(rev: &str) -> bool {
    rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids() {
        assert_eq!(
            parse_hub_ref("mlx-community/SmolLM2-135M-Instruct"),
            Some(HubRef { repo: "mlx-community/SmolLM2-135M-Instruct".into(), gguf: None })
        );
        assert_eq!(
            parse_hub_ref("org/name/model.Q4_0.gguf"),
            Some(HubRef { repo: "org/name".into(), gguf: Some("model.Q4_0.gguf".into()) })
        );
        for bad in [
            "name", "/abs/path", "./rel/x", "org/", "/org/name", "org//name", "a/b/c", "a/b/c/d.gguf", "-org/name",
            "org/name.", "org/na--me", "org/na..me", "org/na me", "~/models", "org/name/../x.gguf", "../a/b",
        ] {
            assert_eq!(parse_hub_ref(bad), None, "{bad}");
        }
        assert_eq!(parse_hub_ref(&format!("org/{}", "n".repeat(97))), None);
    }

    #[test]
    fn revisions() {
        for ok in ["main", "v1.0", "refs/pr/1", "0123456789abcdef0123456789abcdef01234567"] {
            assert!(check_revision(ok).is_ok(), "{ok}");
        }
        for bad in ["", "../x", "/main", "a\\b", "a//b", "x\n"] {
            assert_eq!(check_revision(bad).unwrap_err().details["field"], "revision", "{bad:?}");
        }
        assert!(is_commit_hash("0123456789abcdef0123456789abcdef01234567"));
        assert!(!is_commit_hash("main"));
        assert!(!is_commit_hash("0123456789ABCDEF0123456789abcdef01234567"));
    }
}
