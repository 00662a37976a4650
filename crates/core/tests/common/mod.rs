//! Helpers shared by the integration tests: the seeded fixtures made by
//! `scripts/models/make_fixtures.py` (npm test prepares them) and draining a stream into its ids,
//! text and single terminal chunk.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::Path;
use std::time::Duration;

use mlx_serving_core::generation::Chunk;
use mlx_serving_core::{Engine, StreamHandle};
use serde_json::Value;

/// Absolute path of `.cache/fixtures/<name>`; fails with the set-up command when missing.
pub fn fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/fixtures").join(name);
    assert!(p.join("config.json").is_file(), "fixture {name} missing: run scripts/parity/run_all.sh (npm test does)");
    p.canonicalize().unwrap().to_string_lossy().into_owned()
}

pub struct Run {
    pub ids: Vec<u32>,
    pub text: String,
    pub terminal: Chunk,
}

/// Reads a stream to its end, asserting the chunk protocol: tokens, then exactly one terminal.
pub async fn drain(mut s: StreamHandle) -> Run {
    let (mut ids, mut text, mut terminal) = (vec![], String::new(), None);
    loop {
        let batch = tokio::time::timeout(Duration::from_secs(120), s.next_batch()).await.expect("stream stalled");
        if batch.is_empty() {
            break;
        }
        for c in batch {
            match c {
                Chunk::Token { token, token_id, .. } => {
                    assert!(terminal.is_none(), "token after terminal chunk");
                    ids.push(token_id);
                    text.push_str(&token);
                }
                other => {
                    assert!(terminal.is_none(), "two terminal chunks");
                    terminal = Some(other);
                }
            }
        }
    }
    Run { ids, text, terminal: terminal.expect("no terminal chunk") }
}

pub async fn run(e: &Engine, params: Value) -> Run {
    drain(e.create_stream(&params, &Value::Null).await.expect("create stream")).await
}
