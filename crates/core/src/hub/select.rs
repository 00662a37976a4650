//! Which files of a repository a model load needs, and whether a cached snapshot already holds
//! them (then the load needs no network at all).
//!
//! A folder-style model needs its root `*.json` files (config, tokenizer, generation config,
//! safetensors index), chat-template and tokenizer side files, and its weights: the
//! `model*.safetensors` files (the mlx-lm convention, which skips duplicate exports such as
//! `consolidated.safetensors`), else every root `*.safetensors`. A repository without
//! safetensors but with one root `.gguf` loads that file; with several, the id must name one
//! (`org/name/<file>.gguf`).

use std::path::{Path, PathBuf};

use super::api::{RemoteFile, RepoInfo};
use super::repo_id::HubRef;
use crate::error::{EngineError, EngineResult};

const SIDE_FILES: [&str; 3] = ["tokenizer.model", "merges.txt", "vocab.txt"];

fn ext(name: &str, e: &str) -> bool {
    name.len() > e.len() && name.to_ascii_lowercase().ends_with(e)
}

/// The files to fetch for `hub_ref`, smallest first (config and tokenizer problems surface
/// before the weights are downloaded).
pub fn select_files<'a>(info: &'a RepoInfo, hub_ref: &HubRef) -> EngineResult<Vec<&'a RemoteFile>> {
    let repo = &hub_ref.repo;
    if let Some(g) = &hub_ref.gguf {
        let f = info.files.iter().find(|f| &f.name == g).ok_or_else(|| {
            EngineError::model_load(format!("file '{g}' of model '{repo}' not found on the Hugging Face hub"))
                .with_detail("model", repo.as_str())
                .with_detail("file", g.as_str())
        })?;
        return Ok(vec![f]);
    }
    let root: Vec<&RemoteFile> = info.files.iter().filter(|f| !f.name.contains('/')).collect();
    let safetensors: Vec<&RemoteFile> = root.iter().copied().filter(|f| ext(&f.name, ".safetensors")).collect();
    let mut weights: Vec<&RemoteFile> = safetensors.iter().copied().filter(|f| f.name.starts_with("model")).collect();
    if weights.is_empty() {
        weights = safetensors;
    }
    if weights.is_empty() {
        let ggufs: Vec<&RemoteFile> = root.iter().copied().filter(|f| ext(&f.name, ".gguf")).collect();
        return match ggufs.as_slice() {
            [one] => Ok(vec![*one]),
            [] => Err(EngineError::model_load(format!(
                "model '{repo}' on the Hugging Face hub has no safetensors or GGUF weights (files: {})",
                listing(&root)
            ))
            .with_detail("model", repo.as_str())),
            many => Err(EngineError::model_load(format!(
                "model '{repo}' has several GGUF files; name one as '{repo}/<file>.gguf' (files: {})",
                listing(many)
            ))
            .with_detail("model", repo.as_str())),
        };
    }
    let side = root.iter().copied().filter(|f| {
        ext(&f.name, ".json") || ext(&f.name, ".jinja") || ext(&f.name, ".tiktoken") || SIDE_FILES.contains(&f.name.as_str())
    });
    let mut files: Vec<&RemoteFile> = side.chain(weights).collect();
    files.sort_by_key(|f| (f.size, f.name.clone()));
    Ok(files)
}

fn listing(files: &[&RemoteFile]) -> String {
    let mut names: Vec<&str> = files.iter().take(12).map(|f| f.name.as_str()).collect();
    if files.len() > names.len() {
        names.push("…");
    }
    names.join(", ")
}

/// The path to load from when the snapshot folder already holds a loadable model: the named
/// GGUF; or config.json, tokenizer.json and every weights file (all shards of an index); or a
/// snapshot whose only weights are one GGUF. `None` sends the load to the network.
pub fn local_target(snapshot: &Path, hub_ref: &HubRef) -> Option<PathBuf> {
    if let Some(g) = &hub_ref.gguf {
        let p = snapshot.join(g);
        return p.is_file().then_some(p);
    }
    let names: Vec<String> = std::fs::read_dir(snapshot)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file()) // follows the link: a dangling one does not count
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    let has = |n: &str| names.iter().any(|x| x == n);
    if has("config.json") && has("tokenizer.json") && weights_present(snapshot, &names) {
        return Some(snapshot.to_path_buf());
    }
    let ggufs: Vec<&String> = names.iter().filter(|n| ext(n, ".gguf")).collect();
    match (ggufs.as_slice(), names.iter().any(|n| ext(n, ".safetensors"))) {
        ([one], false) => Some(snapshot.join(one)),
        _ => None,
    }
}

fn weights_present(snapshot: &Path, names: &[String]) -> bool {
    let index = snapshot.join("model.safetensors.index.json");
    if index.is_file() {
        let Some(map) = std::fs::read(&index).ok().and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok()) else {
            return false;
        };
        let Some(weight_map) = map["weight_map"].as_object() else { return false };
        return !weight_map.is_empty()
            && weight_map.values().all(|v| v.as_str().is_some_and(|f| names.iter().any(|n| n == f)));
    }
    names.iter().any(|n| ext(n, ".safetensors"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, size: u64) -> RemoteFile {
        RemoteFile { name: name.into(), size, blob: "0".repeat(40), sha256: None }
    }

    fn info(names: &[(&str, u64)]) -> RepoInfo {
        RepoInfo { commit: "0".repeat(40), files: names.iter().map(|(n, s)| f(n, *s)).collect() }
    }

    fn names(files: Vec<&RemoteFile>) -> Vec<&str> {
        files.into_iter().map(|f| f.name.as_str()).collect()
    }

    fn r(repo: &str, gguf: Option<&str>) -> HubRef {
        HubRef { repo: repo.into(), gguf: gguf.map(Into::into) }
    }

    #[test]
    fn folder_models() {
        let i = info(&[
            ("config.json", 5), (".gitattributes", 1), ("README.md", 2), ("model-00002-of-00002.safetensors", 900),
            ("model-00001-of-00002.safetensors", 1000), ("model.safetensors.index.json", 50), ("tokenizer.json", 300),
            ("consolidated.safetensors", 5000), ("chat_template.jinja", 7), ("pytorch_model.bin", 9000), ("sub/config.json", 1),
            ("tokenizer.model", 40),
        ]);
        assert_eq!(
            names(select_files(&i, &r("o/n", None)).unwrap()),
            ["config.json", "chat_template.jinja", "tokenizer.model", "model.safetensors.index.json", "tokenizer.json",
             "model-00002-of-00002.safetensors", "model-00001-of-00002.safetensors"]
        );
        let only_other = info(&[("config.json", 1), ("weights.safetensors", 2)]);
        assert_eq!(names(select_files(&only_other, &r("o/n", None)).unwrap()), ["config.json", "weights.safetensors"]);
    }

    #[test]
    fn gguf_models() {
        let one = info(&[("README.md", 1), ("m.Q4_0.gguf", 10)]);
        assert_eq!(names(select_files(&one, &r("o/n", None)).unwrap()), ["m.Q4_0.gguf"]);
        let two = info(&[("a.gguf", 1), ("b.gguf", 2)]);
        let e = select_files(&two, &r("o/n", None)).unwrap_err();
        assert!(e.message.contains("o/n/<file>.gguf") && e.message.contains("a.gguf"), "{}", e.message);
        assert_eq!(names(select_files(&two, &r("o/n", Some("b.gguf"))).unwrap()), ["b.gguf"]);
        let e = select_files(&two, &r("o/n", Some("c.gguf"))).unwrap_err();
        assert_eq!(e.details["file"], "c.gguf");
        let none = info(&[("pytorch_model.bin", 1)]);
        assert!(select_files(&none, &r("o/n", None)).unwrap_err().message.contains("no safetensors or GGUF"));
    }

    #[test]
    fn snapshot_completeness() {
        let d = std::env::temp_dir().join(format!("mlx-serving-select-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let w = |n: &str, s: &str| std::fs::write(d.join(n), s).unwrap();
        let folder = r("o/n", None);
        assert_eq!(local_target(&d, &folder), None);
        w("config.json", "{}");
        w("tokenizer.json", "{}");
        assert_eq!(local_target(&d, &folder), None, "no weights yet");
        w("model.safetensors.index.json", r#"{"weight_map": {"a": "model-1.safetensors", "b": "model-2.safetensors"}}"#);
        w("model-1.safetensors", "");
        assert_eq!(local_target(&d, &folder), None, "one shard missing");
        #[cfg(unix)]
        std::os::unix::fs::symlink("../nowhere", d.join("model-2.safetensors")).unwrap();
        #[cfg(unix)]
        assert_eq!(local_target(&d, &folder), None, "a dangling link is not a file");
        let _ = std::fs::remove_file(d.join("model-2.safetensors"));
        w("model-2.safetensors", "");
        assert_eq!(local_target(&d, &folder), Some(d.clone()));
        assert_eq!(local_target(&d, &r("o/n", Some("x.gguf"))), None);
        w("x.gguf", "");
        assert_eq!(local_target(&d, &r("o/n", Some("x.gguf"))), Some(d.join("x.gguf")));
        std::fs::remove_dir_all(&d).unwrap();
        std::fs::create_dir_all(&d).unwrap();
        w("only.gguf", "");
        assert_eq!(local_target(&d, &folder), Some(d.join("only.gguf")));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
