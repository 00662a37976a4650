//! Times what the structured-output mask thread does per token (llguidance `commit` +
//! `compute_mask` + conversion to a bool mask) with a real tokenizer, for every schema of
//! `tests/data/structured_schemas.json`, walking random valid paths through each grammar; then
//! the cost that stays on the decode path (mask array + masked sampling vs plain sampling).
//! Usage: cargo run --release -p mlx-serving-core --example guidance_mask [model_dir]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mlx_rs::Array;
use mlx_serving_core::generation::constraint::{Guidance, JsonConstraint};
use mlx_serving_core::generation::sampler::{Sampler, SamplingParams};
use mlx_serving_core::text::TextTokenizer;
use serde_json::Value;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| root.join("../../.cache/models/SmolLM2-135M-Instruct"));
    let tok = TextTokenizer::from_dir(&dir).expect("tokenizer");
    let t = Instant::now();
    let guidance = Arc::new(Guidance::new(&tok, tok.vocab_size()).expect("guidance"));
    println!("tokenizer state (trie + slices), once per model: {:.1} ms, vocab {}", ms(t.elapsed()), guidance.vocab());

    let schemas: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(root.join("tests/data/structured_schemas.json")).unwrap()).unwrap();
    let (mut compile, mut masks, mut commits) = (vec![], vec![], vec![]);
    let mut rng = 0x2545F4914F6CDD1Du64;
    for case in &schemas {
        for _ in 0..3 {
            let t = Instant::now();
            let mut c = JsonConstraint::with_guidance(&case["schema"], guidance.clone()).expect("schema");
            compile.push(t.elapsed());
            for _ in 0..400 {
                let t = Instant::now();
                let mask = c.compute_mask().expect("mask");
                masks.push(t.elapsed());
                if mask.only_eos {
                    break;
                }
                let allowed: Vec<u32> = (0..mask.allowed.len() as u32).filter(|&i| mask.allowed[i as usize] && !guidance.eos_ids().contains(&i)).collect();
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let token = allowed[(rng % allowed.len() as u64) as usize];
                let t = Instant::now();
                c.commit(token).expect("commit");
                commits.push(t.elapsed());
                if c.is_finished() {
                    break;
                }
            }
        }
    }
    report("schema compile", &mut compile);
    report("compute_mask (incl. bool mask)", &mut masks);
    report("commit", &mut commits);
    sampling_cost(guidance.vocab(), "greedy", SamplingParams::default());
    sampling_cost(guidance.vocab(), "temperature 1, top-p 0.95", SamplingParams { temperature: 1.0, top_p: 0.95, seed: Some(1), ..Default::default() });
}

/// The part that stays on the decode path: building the mask array and applying it in the
/// sampler, vs the same sampling without a mask.
fn sampling_cost(vocab: usize, what: &str, params: SamplingParams) {
    let logits: Vec<f32> = (0..vocab).map(|i| ((i * 7919) % 1000) as f32 / 100.0).collect();
    let allowed: Vec<bool> = (0..vocab).map(|i| i % 3 == 0).collect();
    let (mut plain, mut masked) = (vec![], vec![]);
    let mut sampler = Sampler::new(params, &[]).unwrap();
    for i in 0..400 {
        let l = Array::from_slice(&logits, &[vocab as i32]);
        l.eval().unwrap();
        let t = Instant::now();
        if i % 2 == 0 {
            sampler.sample(&l, None).unwrap();
            plain.push(t.elapsed());
        } else {
            let mask = Array::from_slice(&allowed, &[vocab as i32]);
            let s = sampler.sample(&l, Some(&mask)).unwrap();
            assert!(allowed[s.token as usize]);
            masked.push(t.elapsed());
        }
    }
    report(&format!("sample, {what}, no mask"), &mut plain);
    report(&format!("sample, {what}, mask array + -inf select"), &mut masked);
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn report(what: &str, xs: &mut [Duration]) {
    xs.sort();
    let mean = xs.iter().map(|d| ms(*d)).sum::<f64>() / xs.len() as f64;
    let pct = |p: f64| ms(xs[((xs.len() - 1) as f64 * p) as usize]);
    println!("{what}: n={} mean {mean:.3} ms, p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms", xs.len(), pct(0.5), pct(0.9), pct(0.99), pct(1.0));
}
