//! The fused decode path (`models::fused_decode`, the GPU's path for decode steps, stacked rows,
//! speculative verification and short chunks) has kernels only on CUDA. Here it runs on the CPU
//! with each kernel replaced by its reference MLX operations (`set_reference_ops`), so what is
//! tested is the path itself — row layouts, per-row rotary positions, the short-chunk causal
//! attention, stacked rows of unequal lengths, the caches — against the unfused path and against
//! single-stream decoding on the same fixtures. (The kernels against their references:
//! `examples/cuda_kernels_check.rs` on a GPU.)

mod common;

use common::{drain, fixture, run};
use mlx_rs::Array;
use mlx_serving_core::models::{fused_decode, load_language_model, CausalModel, Segment};
use mlx_serving_core::Engine;
use serde_json::{json, Value};

/// One sequence through the pass shapes the fused path takes: a 7-token prompt chunk (all
/// logits), one decoded token, a 5-token verification-like chunk (all logits), a 3-token chunk
/// through `forward_segments` (last logits), then one more token.
fn passes(model: &CausalModel) -> Vec<Array> {
    let mut cache = model.new_cache();
    let prompt: Vec<u32> = (0..7).map(|i| 100 + 37 * i).collect();
    let mut out = vec![model.forward_all(&prompt, None, &mut cache).unwrap()];
    out.push(model.forward_segments(&mut [Segment::ids(&[321], &mut cache, true)]).unwrap());
    out.push(model.forward_all(&[5, 900, 17, 4000, 33], None, &mut cache).unwrap());
    out.push(model.forward_segments(&mut [Segment::ids(&[12, 13, 14], &mut cache, true)]).unwrap());
    out.push(model.forward_segments(&mut [Segment::ids(&[77], &mut cache, true)]).unwrap());
    out
}

/// One test (the reference switch is process-wide): llama (Llama-3 rotary frequencies, tied
/// head) and qwen3 (q/k norms, plain base; heads the range-attention kernel takes).
#[tokio::test]
async fn fused_path_matches_the_unfused_path() {
    passes_match();
    stacked_rows_match_single_streams().await;
}

/// Streams of unequal prompt lengths started together decode as stacked rows with a mask (the
/// fused stacked path, `range_attention::stacked`'s reference): each gets the ids it gets alone.
async fn stacked_rows_match_single_streams() {
    fused_decode::set_reference_ops(true);
    let e = Engine::new();
    e.load_model(&json!({"model": "qwen3", "localPath": fixture("qwen3")})).await.unwrap();
    let params: Vec<Value> = [3usize, 11, 6]
        .iter()
        .map(|&n| json!({"model": "qwen3", "prompt": "word ".repeat(n), "maxTokens": 8, "temperature": 0}))
        .collect();
    let mut solo = Vec::new();
    for p in &params {
        solo.push(run(&e, p.clone()).await.ids);
    }
    let before = fused_decode::reference_head_calls();
    e.reset_batch_stats();
    let starts = futures_util::future::join_all(params.iter().map(|p| e.create_stream(p, &Value::Null))).await;
    let handles: Vec<_> = starts.into_iter().map(|s| tokio::spawn(drain(s.unwrap()))).collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.await.unwrap().ids, solo[i], "row {i}");
    }
    assert!(e.stacked_rows() > 0, "the rows were not stacked");
    assert!(fused_decode::reference_head_calls() > before, "the stacked steps did not take the fused path");
    e.shutdown().await;
    fused_decode::set_reference_ops(false);
}

fn passes_match() {
    for (name, layers) in [("llama", 2), ("qwen3", 3)] {
        let (model, _) = load_language_model(std::path::Path::new(&fixture(name))).unwrap();
        fused_decode::set_reference_ops(false);
        let plain = passes(&model);
        let before = fused_decode::reference_head_calls();
        fused_decode::set_reference_ops(true);
        let fused = passes(&model);
        fused_decode::set_reference_ops(false);
        // every one of the five passes took the fused path, through every layer
        assert_eq!(fused_decode::reference_head_calls() - before, 5 * layers, "{name}: passes that took the fused path");
        for (i, (f, p)) in fused.iter().zip(&plain).enumerate() {
            assert_eq!(f.shape(), p.shape(), "{name} pass {i}");
            let d = fused_decode::relative_error(f, p).unwrap();
            assert!(d < 1e-5, "{name} pass {i}: max rel diff {d}");
        }
        // and the logits are not all alike (a pass that ignored its input would show here)
        assert!(fused_decode::relative_error(&fused[1], &fused[4]).unwrap() > 1e-3, "{name}: distinct tokens, distinct logits");
    }
}
