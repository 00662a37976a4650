//! Hugging Face hub models: turns a model id such as `org/name` (or `org/name/<file>.gguf`)
//! into a local snapshot in the standard HF cache, downloading what is missing.
//!
//! Order of resolution (one blocking call, run on a download thread, never the engine thread):
//! 1. the cache: when `refs/<revision>` (or the commit itself) names a snapshot that already
//!    holds a loadable model, it is used without any network request;
//! 2. offline mode (`HF_HUB_OFFLINE=1` or `hub.offline`) stops here with a ModelLoadError;
//! 3. otherwise the revision's listing is fetched, the needed files are downloaded (resumable,
//!    verified, see `download.rs`) and linked into `snapshots/<commit>/`, and `refs/<revision>`
//!    is written.
//!
//! A cached branch is not re-checked against the hub: loading a newer commit of `main` needs
//! `revision: '<commit>'` or removing the cached ref.

mod api;
mod cache;
mod download;
pub mod progress;
mod repo_id;
mod select;
pub mod settings;

use std::path::PathBuf;

pub use progress::{LoadProgress, ProgressFn};
pub use repo_id::{check_revision, parse_hub_ref, HubRef};
pub use settings::{HubOptions, HubSettings};

use crate::error::{EngineError, EngineResult};
use api::HubClient;
use cache::RepoCache;
use download::Fetch;
use progress::DownloadReporter;

pub const DEFAULT_REVISION: &str = "main";

/// A hub model made local.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedModel {
    /// The snapshot folder, or the `.gguf` file inside it.
    pub path: PathBuf,
    pub repo: String,
    pub revision: String,
    pub commit: String,
}

/// Resolves `hub_ref` at `revision` (default `main`) to a local snapshot; see the module doc.
pub fn resolve(
    settings: &HubSettings,
    hub_ref: &HubRef,
    revision: Option<&str>,
    progress: &dyn Fn(&LoadProgress),
    cancelled: &(dyn Fn() -> bool + Sync),
) -> EngineResult<ResolvedModel> {
    let rev = revision.unwrap_or(DEFAULT_REVISION);
    check_revision(rev)?;
    let repo = hub_ref.repo.as_str();
    let cache = RepoCache::new(&settings.cache_dir, repo);
    let resolved = |commit: String, path: PathBuf| ResolvedModel { path, repo: repo.to_owned(), revision: rev.to_owned(), commit };
    if let Some(commit) = cache.cached_commit(rev) {
        if let Some(path) = select::local_target(&cache.snapshot_dir(&commit), hub_ref) {
            return Ok(resolved(commit, path));
        }
    }
    if settings.offline {
        return Err(EngineError::model_load(format!(
            "model '{}' (revision '{rev}') is not in the local Hugging Face cache and offline mode is on \
             (HF_HUB_OFFLINE); load it once online or give a local folder",
            display_id(hub_ref)
        ))
        .with_detail("model", repo)
        .with_detail("revision", rev)
        .with_detail("offline", true));
    }
    let client = HubClient::new(settings);
    let info = client.repo_info(repo, rev)?;
    let files = select::select_files(&info, hub_ref)?;
    let snapshot = cache.snapshot_dir(&info.commit);
    // Files already linked in this snapshot cost nothing; the rest make up the progress total.
    let missing: Vec<_> = files.into_iter().filter(|f| !snapshot.join(&f.name).is_file()).collect();
    let total = missing.iter().map(|f| f.size).sum();
    let mut reporter = DownloadReporter::new(progress, total);
    let fetch = Fetch { client: &client, cache: &cache, repo, commit: &info.commit, cancelled };
    for f in &missing {
        fetch.blob(f, &mut reporter)?;
        cache.link(&info.commit, &f.name, &f.blob).map_err(|e| cache_error(repo, &f.name, &e))?;
    }
    if rev != info.commit {
        cache.write_ref(rev, &info.commit).map_err(|e| cache_error(repo, "refs", &e))?;
    }
    let path = select::local_target(&snapshot, hub_ref).ok_or_else(|| {
        EngineError::model_load(format!(
            "model '{}' (revision '{rev}') was downloaded but is not loadable: it needs config.json, tokenizer.json \
             and safetensors weights, or one GGUF file",
            display_id(hub_ref)
        ))
        .with_detail("model", repo)
    })?;
    Ok(resolved(info.commit, path))
}

fn display_id(r: &HubRef) -> String {
    match &r.gguf {
        Some(g) => format!("{}/{g}", r.repo),
        None => r.repo.clone(),
    }
}

fn cache_error(repo: &str, file: &str, e: &std::io::Error) -> EngineError {
    EngineError::model_load(format!("cannot write '{file}' of model '{repo}' into the Hugging Face cache: {e}"))
        .with_detail("model", repo)
        .with_detail("file", file)
}
