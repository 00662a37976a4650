//! Where a model's files come from: a local folder/GGUF (the id as a path, `localPath`, or a
//! descriptor's `path`), or the Hugging Face hub for an id shaped `org/name` that is not a local
//! path. Hub ids are resolved on a thread of their own, so the engine thread keeps serving
//! streams while files download; the load command is sent once the files are local.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::error::{EngineError, EngineResult};
use crate::hub::{self, HubOptions, HubRef, HubSettings, LoadProgress, ProgressFn, ResolvedModel};
use crate::params::LoadModelOptions;

/// The hub model a load refers to, or `None` for local files (including ids that are neither:
/// the registry then reports the missing folder).
pub fn hub_ref_for(opts: &LoadModelOptions) -> Option<HubRef> {
    if opts.local_path.is_some() || opts.descriptor_path.is_some() || Path::new(&opts.id).exists() {
        return None;
    }
    hub::parse_hub_ref(&opts.id)
}

/// Resolves a hub model on a dedicated thread; `Ok(None)` for local models.
pub async fn resolve_source(
    hub_options: &HubOptions,
    opts: &LoadModelOptions,
    progress: Option<ProgressFn>,
    cancelled: Arc<dyn Fn() -> bool + Send + Sync>,
) -> EngineResult<Option<ResolvedModel>> {
    let Some(hub_ref) = hub_ref_for(opts) else { return Ok(None) };
    let settings = HubSettings::resolve(hub_options);
    let revision = opts.revision.clone();
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("mlx-serving-hub".into())
        .spawn(move || {
            let sink = |p: &LoadProgress| {
                if let Some(f) = &progress {
                    f(p)
                }
            };
            let cancel = || cancelled();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                hub::resolve(&settings, &hub_ref, revision.as_deref(), &sink, &cancel)
            }));
            let _ = tx.send(r.unwrap_or_else(|_| Err(EngineError::model_load("internal error while downloading the model"))));
        })
        .map_err(|e| EngineError::model_load(format!("cannot start the download thread: {e}")))?;
    let resolved = rx.await.map_err(|_| EngineError::model_load("the download thread ended without a result"))??;
    Ok(Some(resolved))
}
