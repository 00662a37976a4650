//! Loading models by Hugging Face hub id, against a mock hub on loopback (`mock_hub/`) that
//! serves the `llama` fixture: the cache layout, cache-only second loads, offline mode, missing
//! repositories, interrupted and resumed downloads, corrupt partial files, progress events.
//! Each test has its own cache folder and its own engine pointed at its own mock hub through the
//! engine's `hub` option, so tests run in parallel without touching the environment.

mod common;
mod mock_hub;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::{fixture, run};
use mlx_serving_core::hub::{LoadProgress, ProgressFn};
use mlx_serving_core::{Engine, EngineConfig, EngineError, ErrorCode};
use mock_hub::MockHub;
use serde_json::{json, Value};

const REPO: &str = "test-org/tiny-llama";
const COMMIT: &str = "3f2c1a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a";
const WEIGHTS: &str = "model.safetensors";

fn temp_cache(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mlx-serving-hub-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn engine(hub: &MockHub, cache: &Path, offline: bool) -> Engine {
    let opts = json!({"hub": {"endpoint": hub.url, "cacheDir": cache, "offline": offline, "token": "hf_test"}});
    Engine::with_config(EngineConfig::from_options(&opts).unwrap())
}

fn hub_with_llama() -> MockHub {
    let hub = MockHub::start();
    hub.add_repo(REPO, Path::new(&fixture("llama")), COMMIT);
    hub
}

fn repo_dir(cache: &Path) -> PathBuf {
    cache.join("models--test-org--tiny-llama")
}

fn fixture_bytes(file: &str) -> Vec<u8> {
    std::fs::read(Path::new(&fixture("llama")).join(file)).unwrap()
}

fn recorder() -> (ProgressFn, Arc<Mutex<Vec<LoadProgress>>>) {
    let seen = Arc::new(Mutex::new(vec![]));
    let s = seen.clone();
    (Arc::new(move |p: &LoadProgress| s.lock().unwrap().push(p.clone())), seen)
}

async fn load_err(e: &Engine, raw: Value) -> EngineError {
    e.load_model(&raw).await.expect_err("load should fail")
}

const GEN: &str = "The quick brown fox";

async fn greedy_ids(e: &Engine, model: &str) -> Vec<u32> {
    run(e, json!({"model": model, "prompt": GEN, "maxTokens": 8, "temperature": 0})).await.ids
}

#[tokio::test]
async fn first_download_fills_the_cache_layout_and_generates_like_the_folder() {
    let (hub, cache) = (hub_with_llama(), temp_cache("first"));
    let e = engine(&hub, &cache, false);
    let (progress, seen) = recorder();
    let reply = e.load_model_with_progress(&json!(REPO), Some(progress)).await.expect("hub load");
    let h = &reply.handle;
    assert_eq!(h["descriptor"]["id"], REPO);
    assert_eq!(h["descriptor"]["source"], "huggingface");
    assert_eq!(h["metadata"]["commit"], COMMIT);
    assert_eq!(h["metadata"]["revision"], "main");

    let repo = repo_dir(&cache);
    assert_eq!(std::fs::read_to_string(repo.join("refs/main")).unwrap(), COMMIT);
    let snap = repo.join("snapshots").join(COMMIT);
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json", WEIGHTS] {
        let link = std::fs::read_link(snap.join(f)).unwrap_or_else(|_| panic!("{f} is not a link"));
        assert!(link.starts_with("../../blobs"), "{f} → {link:?}");
        assert_eq!(std::fs::read(snap.join(f)).unwrap(), fixture_bytes(f), "{f} differs");
    }
    let blobs: Vec<String> = std::fs::read_dir(repo.join("blobs")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(blobs.iter().all(|b| !b.ends_with(".incomplete")), "{blobs:?}");

    // The weights went through the redirect with the token kept on the same host.
    let reqs = hub.requests();
    assert!(reqs.iter().any(|r| r.path.starts_with("/cdn/")), "LFS file not redirected: {reqs:?}");
    assert!(reqs.iter().all(|r| r.authorization.as_deref() == Some("Bearer hf_test")), "{reqs:?}");

    // Progress: download events with a non-decreasing count ending at the total, then `load`.
    let seen = seen.lock().unwrap().clone();
    let (last, downloads) = seen.split_last().unwrap();
    assert_eq!(last, &LoadProgress::load());
    assert!(downloads.iter().all(|p| p.phase == "download"));
    let total: u64 = ["config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json", WEIGHTS]
        .iter()
        .map(|f| fixture_bytes(f).len() as u64)
        .sum();
    assert!(downloads.iter().all(|p| p.total_bytes == Some(total)));
    let counts: Vec<u64> = downloads.iter().map(|p| p.loaded_bytes.unwrap()).collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    assert_eq!(counts.last(), Some(&total));
    assert!(downloads.iter().any(|p| p.file.as_deref() == Some(WEIGHTS)));
    assert!(downloads.len() > 5, "too few progress events for a 14 MB download: {}", downloads.len());

    // Same ids as the folder loaded directly.
    e.load_model(&json!({"model": "direct", "localPath": fixture("llama")})).await.unwrap();
    assert_eq!(greedy_ids(&e, REPO).await, greedy_ids(&e, "direct").await);
    e.shutdown().await;
    std::fs::remove_dir_all(cache).unwrap();
}

#[tokio::test]
async fn cached_model_loads_without_requests_online_and_offline() {
    let (hub, cache) = (hub_with_llama(), temp_cache("cached"));
    let first = engine(&hub, &cache, false);
    first.load_model(&json!(REPO)).await.expect("first load");
    let ids = greedy_ids(&first, REPO).await;
    first.shutdown().await;
    hub.clear_requests();

    for offline in [false, true] {
        let e = engine(&hub, &cache, offline);
        let (progress, seen) = recorder();
        let h = e.load_model_with_progress(&json!(REPO), Some(progress)).await.expect("cached load").handle;
        assert_eq!(h["metadata"]["commit"], COMMIT);
        assert_eq!(hub.requests().len(), 0, "offline={offline}: {:?}", hub.requests());
        assert_eq!(*seen.lock().unwrap(), vec![LoadProgress::load()], "nothing to download");
        assert_eq!(greedy_ids(&e, REPO).await, ids);
        e.shutdown().await;
    }
    // Loading by commit hash uses the same snapshot, also without requests.
    let e = engine(&hub, &cache, true);
    e.load_model(&json!({"model": REPO, "revision": COMMIT})).await.expect("by commit");
    assert_eq!(hub.requests().len(), 0);
    std::fs::remove_dir_all(cache).unwrap();
}

#[tokio::test]
async fn offline_and_not_cached_is_a_model_load_error_naming_the_id() {
    let (hub, cache) = (hub_with_llama(), temp_cache("offline"));
    let e = engine(&hub, &cache, true);
    let err = load_err(&e, json!(REPO)).await;
    assert_eq!(err.code, ErrorCode::ModelLoadError);
    assert!(err.message.contains(REPO) && err.message.contains("offline"), "{}", err.message);
    assert_eq!(err.details["offline"], true);
    assert!(hub.requests().is_empty(), "offline mode made requests");
    // A gguf id is named in full.
    let err = load_err(&e, json!("test-org/tiny-llama/x.Q4_0.gguf")).await;
    assert!(err.message.contains("test-org/tiny-llama/x.Q4_0.gguf"), "{}", err.message);
    e.shutdown().await;
}

#[tokio::test]
async fn missing_repo_revision_and_server_errors_leave_the_engine_usable() {
    let (hub, cache) = (hub_with_llama(), temp_cache("missing"));
    let e = engine(&hub, &cache, false);
    let err = load_err(&e, json!("test-org/no-such-model")).await;
    assert_eq!(err.code, ErrorCode::ModelLoadError);
    assert!(err.message.contains("test-org/no-such-model") && err.message.contains("not found"), "{}", err.message);
    assert!(!err.retryable);

    let err = load_err(&e, json!({"model": REPO, "revision": "v9"})).await;
    assert!(err.message.contains("revision 'v9'") && err.message.contains(REPO), "{}", err.message);

    let err = load_err(&e, json!("test-org/tiny-llama/absent.gguf")).await;
    assert!(err.message.contains("absent.gguf") && err.message.contains(REPO), "{}", err.message);
    assert_eq!(err.details["file"], "absent.gguf");

    let err = load_err(&e, json!({"model": REPO, "revision": "../escape"})).await;
    assert_eq!((err.code, err.details["field"].as_str()), (ErrorCode::InvalidParams, Some("revision")));

    hub.set_listing_status(Some(503));
    let err = load_err(&e, json!(REPO)).await;
    assert_eq!(err.code, ErrorCode::ModelLoadError);
    assert!(err.retryable && err.message.contains("503"), "{}", err.message);
    hub.set_listing_status(None);

    // Nothing half-made is left behind as a loadable snapshot, and the engine still works.
    assert!(!repo_dir(&cache).join("refs").exists());
    e.load_model(&json!({"model": "direct", "localPath": fixture("llama")})).await.expect("engine usable");
    assert_eq!(greedy_ids(&e, "direct").await.len(), 8);
    e.load_model(&json!(REPO)).await.expect("hub load after errors");
    e.shutdown().await;
    std::fs::remove_dir_all(cache).unwrap();
}

#[tokio::test]
async fn unreachable_hub_is_a_retryable_model_load_error() {
    // A port nobody listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cache = temp_cache("unreachable");
    let opts = json!({"hub": {"endpoint": format!("http://127.0.0.1:{port}"), "cacheDir": cache, "offline": false}});
    let e = Engine::with_config(EngineConfig::from_options(&opts).unwrap());
    let err = load_err(&e, json!(REPO)).await;
    assert_eq!(err.code, ErrorCode::ModelLoadError);
    assert!(err.retryable && err.message.contains("could not be reached") && err.message.contains(REPO), "{}", err.message);
    e.shutdown().await;
}

#[tokio::test]
async fn interrupted_download_keeps_the_partial_and_resumes_with_range() {
    let (hub, cache) = (hub_with_llama(), temp_cache("resume"));
    let e = engine(&hub, &cache, false);
    const CUT: usize = 3_000_000;
    hub.cut_next(WEIGHTS, CUT);
    let err = load_err(&e, json!(REPO)).await;
    assert_eq!(err.code, ErrorCode::ModelLoadError);
    assert!(err.message.contains(WEIGHTS) && err.message.contains(REPO) && err.message.contains("interrupted"), "{}", err.message);
    assert_eq!(err.details["file"], WEIGHTS);
    assert!(err.retryable);

    let blobs = repo_dir(&cache).join("blobs");
    let partials: Vec<PathBuf> =
        std::fs::read_dir(&blobs).unwrap().map(|e| e.unwrap().path()).filter(|p| p.to_string_lossy().ends_with(".incomplete")).collect();
    assert_eq!(partials.len(), 1, "{partials:?}");
    assert_eq!(std::fs::metadata(&partials[0]).unwrap().len(), CUT as u64);
    assert!(!repo_dir(&cache).join("snapshots").join(COMMIT).join(WEIGHTS).exists(), "partial linked as complete");
    // Not loadable offline: the partial is not taken for the file.
    let offline = engine(&hub, &cache, true);
    assert_eq!(load_err(&offline, json!(REPO)).await.code, ErrorCode::ModelLoadError);

    hub.clear_requests();
    let (progress, seen) = recorder();
    e.load_model_with_progress(&json!(REPO), Some(progress)).await.expect("resumed load");
    // One transfer of the weights (the resolve URL redirects to /cdn/, the Range travels along).
    let transfers: Vec<Option<String>> = hub.requests().iter().filter(|r| r.path.starts_with("/cdn/")).map(|r| r.range.clone()).collect();
    assert_eq!(transfers, vec![Some(format!("bytes={CUT}-"))]);
    let snap_weights = repo_dir(&cache).join("snapshots").join(COMMIT).join(WEIGHTS);
    assert_eq!(std::fs::read(snap_weights).unwrap(), fixture_bytes(WEIGHTS), "resumed file differs");
    assert!(!partials[0].exists());
    // Only the weights were missing; the resumed bytes count as loaded from the start.
    let seen = seen.lock().unwrap().clone();
    let total = fixture_bytes(WEIGHTS).len() as u64;
    assert!(seen.iter().filter(|p| p.phase == "download").all(|p| p.total_bytes == Some(total)));
    assert_eq!(seen[seen.len() - 2].loaded_bytes, Some(total));
    assert_eq!(greedy_ids(&e, REPO).await.len(), 8);
    e.shutdown().await;
    std::fs::remove_dir_all(cache).unwrap();
}

#[tokio::test]
async fn corrupt_partials_are_never_used_as_complete() {
    let (hub, cache) = (hub_with_llama(), temp_cache("corrupt"));
    let e = engine(&hub, &cache, false);
    // Learn the weights' blob name and place a wrong partial before the download.
    e.load_model(&json!(REPO)).await.expect("load");
    e.shutdown().await;
    let snap_weights = repo_dir(&cache).join("snapshots").join(COMMIT).join(WEIGHTS);
    let blob_name = std::fs::read_link(&snap_weights).unwrap().file_name().unwrap().to_owned();
    let blobs = repo_dir(&cache).join("blobs");
    let real = fixture_bytes(WEIGHTS);

    for (label, partial) in [("garbage prefix", vec![7u8; 1_000_000]), ("full size, wrong bytes", vec![0u8; real.len()])] {
        std::fs::remove_file(blobs.join(&blob_name)).unwrap();
        std::fs::remove_file(&snap_weights).unwrap();
        std::fs::write(blobs.join(format!("{}.incomplete", blob_name.to_string_lossy())), &partial).unwrap();
        hub.clear_requests();
        e.load_model(&json!(REPO)).await.unwrap_or_else(|err| panic!("{label}: {err}"));
        assert_eq!(std::fs::read(&snap_weights).unwrap(), real, "{label}: wrong bytes kept");
        let weight_reqs: Vec<Option<String>> = hub.requests().iter().filter(|r| r.path.starts_with("/cdn/")).map(|r| r.range.clone()).collect();
        let expected = if partial.len() < real.len() { vec![Some(format!("bytes={}-", partial.len())), None] } else { vec![None] };
        assert_eq!(weight_reqs, expected, "{label}: resume, detect, then download from the start");
        e.shutdown().await;
    }
    std::fs::remove_dir_all(cache).unwrap();
}

#[tokio::test]
async fn shutdown_stops_a_download_and_the_next_load_resumes() {
    let (hub, cache) = (hub_with_llama(), temp_cache("shutdown"));
    let e = Arc::new(engine(&hub, &cache, false));
    hub.slow_next(WEIGHTS);
    let loading = tokio::spawn({
        let e = e.clone();
        async move { e.load_model(&json!(REPO)).await }
    });
    // Wait until the weights are partly on disk (more bytes than any other file has), then
    // shut down.
    let blobs = repo_dir(&cache).join("blobs");
    let partial_len = || -> u64 {
        std::fs::read_dir(&blobs)
            .map(|d| d.filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().ends_with(".incomplete")).map(|e| e.metadata().unwrap().len()).sum())
            .unwrap_or(0)
    };
    const STARTED: u64 = 2_000_000;
    for _ in 0..4000 {
        if partial_len() > STARTED {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(partial_len() > STARTED, "weights download never started");
    e.shutdown().await;
    let err = loading.await.unwrap().expect_err("load must not finish after shutdown");
    assert_eq!(err.code, ErrorCode::RuntimeError, "{err}");
    assert!(e.list_models().is_empty());
    let kept = partial_len();
    assert!(kept > STARTED && kept < fixture_bytes(WEIGHTS).len() as u64, "partial kept: {kept}");

    hub.clear_requests();
    e.load_model(&json!(REPO)).await.expect("load after shutdown");
    let transfers: Vec<Option<String>> = hub.requests().iter().filter(|r| r.path.starts_with("/cdn/")).map(|r| r.range.clone()).collect();
    assert_eq!(transfers.len(), 1);
    assert!(transfers[0].as_deref().is_some_and(|r| r.starts_with("bytes=") && r != "bytes=0-"), "{transfers:?}");
    assert_eq!(std::fs::read(repo_dir(&cache).join("snapshots").join(COMMIT).join(WEIGHTS)).unwrap(), fixture_bytes(WEIGHTS));
    e.shutdown().await;
    std::fs::remove_dir_all(cache).unwrap();
}
