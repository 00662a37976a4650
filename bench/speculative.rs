//! Speculative decoding benchmark (issue 5): greedy decode tok/s of the target alone and with
//! each draft, and the acceptance rate, through the engine's public Rust API.
//!
//!   cargo run --release -p mlx-serving-core --example speculative -- \
//!       --target .cache/models/SmolLM2-135M-Instruct \
//!       --draft .cache-spec/SmolLM2-135M-Instruct-L8 [--draft DIR]... \
//!       [--k 4]... [--tokens 128] [--runs 3] [--out .cache-spec/bench] [--json FILE]
//!
//! EOS is ignored (as `bench/speculative_mlx_lm.py` does for mlx-lm): every model folder is used
//! through a view under --out whose config/tokenizer files name no EOS id (weights symlinked), so
//! each run decodes exactly --tokens tokens. Decode tok/s = the metadata chunk's tokensPerSecond
//! (tokens / (totalTime − timeToFirstToken)). Prints a Markdown table (min / median / max over
//! --runs runs per prompt) and optionally writes the raw numbers as JSON.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mlx_serving_core::generation::{Chunk, GenerationStats};
use mlx_serving_core::Engine;
use serde_json::{json, Value};

const PROMPTS: [&str; 3] = [
    "Write a detailed explanation of how a transformer language model generates text, step by step.",
    "The history of the Roman Empire begins with",
    "def quicksort(arr):\n    \"\"\"Sort a list using quicksort.\"\"\"\n",
];

struct Args {
    target: PathBuf,
    drafts: Vec<PathBuf>,
    ks: Vec<u32>,
    tokens: u32,
    runs: usize,
    out: PathBuf,
    json: Option<PathBuf>,
}

fn parse() -> Args {
    let mut a = Args { target: PathBuf::new(), drafts: vec![], ks: vec![], tokens: 128, runs: 3, out: PathBuf::from(".cache-spec/bench"), json: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--target" => a.target = val().into(),
            "--draft" => a.drafts.push(val().into()),
            "--k" => a.ks.push(val().parse().expect("--k")),
            "--tokens" => a.tokens = val().parse().expect("--tokens"),
            "--runs" => a.runs = val().parse().expect("--runs"),
            "--out" => a.out = val().into(),
            "--json" => a.json = Some(val().into()),
            other => panic!("unknown argument {other} (see the header of bench/speculative.rs)"),
        }
    }
    assert!(a.target.join("config.json").is_file(), "--target must be a model folder");
    if a.ks.is_empty() {
        a.ks.push(4);
    }
    a
}

/// A view of `src` without EOS ids: JSON configs rewritten, everything else symlinked.
fn no_eos_view(src: &Path, out: &Path) -> PathBuf {
    let src = src.canonicalize().expect("model folder");
    let dst = out.join(format!("{}-noeos", src.file_name().unwrap().to_string_lossy()));
    let _ = std::fs::remove_dir_all(&dst);
    std::fs::create_dir_all(&dst).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if !p.is_file() {
            continue;
        }
        if matches!(name.as_str(), "config.json" | "generation_config.json" | "tokenizer_config.json") {
            let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            if let Some(o) = v.as_object_mut() {
                o.remove("eos_token_id");
                o.remove("eos_token");
            }
            std::fs::write(dst.join(&name), v.to_string()).unwrap();
        } else {
            std::os::unix::fs::symlink(&p, dst.join(&name)).unwrap();
        }
    }
    dst
}

/// One configuration's results over all runs and prompts.
#[derive(Default)]
struct Row {
    tps: Vec<f64>,
    acceptance: Vec<f64>,
    /// Runs whose ids differ from the first plain run of the same prompt.
    ids_differ: usize,
}

/// A greedy request to the target, with the configuration's draft and proposal length if any.
fn request(prompt: &str, max_tokens: u32, draft: &Option<(String, u32)>) -> Value {
    let mut p = json!({"model": "target", "prompt": prompt, "maxTokens": max_tokens, "temperature": 0});
    if let Some((d, k)) = draft {
        p["draftModel"] = json!(d);
        p["numDraftTokens"] = json!(k);
    }
    p
}

/// One request to its end: its stats and the ids it emitted.
async fn run(e: &Engine, params: Value) -> (GenerationStats, Vec<u32>) {
    let mut s = e.create_stream(&params, &Value::Null).await.expect("create stream");
    let mut stats = None;
    let mut ids = Vec::new();
    loop {
        let batch = tokio::time::timeout(Duration::from_secs(600), s.next_batch()).await.expect("stalled");
        if batch.is_empty() {
            break;
        }
        for c in batch {
            match c {
                Chunk::Metadata(m) => stats = Some(m),
                Chunk::Error(err) => panic!("generation failed: {err}"),
                Chunk::Token { token_id, .. } => ids.push(token_id),
            }
        }
    }
    (stats.expect("no metadata chunk"), ids)
}

fn summary(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!("{cpu}, {cores} cores available")
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a = parse();
    let e = Engine::new();
    let target = no_eos_view(&a.target, &a.out);
    e.load_model(&json!({"model": "target", "localPath": target.to_string_lossy()})).await.expect("load target");
    let mut draft_ids = Vec::new();
    for (i, d) in a.drafts.iter().enumerate() {
        let id = format!("draft{i}:{}", d.file_name().unwrap().to_string_lossy());
        let view = no_eos_view(d, &a.out);
        e.load_model(&json!({"model": id, "localPath": view.to_string_lossy(), "draft": true})).await.expect("load draft");
        draft_ids.push(id);
    }
    let runtime = json!({"machine": machine(), "tokens": a.tokens, "runs": a.runs});
    eprintln!("{runtime}");
    // configurations: plain, then every (draft, k)
    let mut configs: Vec<(String, Option<(String, u32)>)> = vec![("plain".into(), None)];
    for d in &draft_ids {
        for &k in &a.ks {
            configs.push((format!("{d} k={k}"), Some((d.clone(), k))));
        }
    }
    // warm-up (weights paged in, kernels built)
    for (_, c) in &configs {
        run(&e, request(PROMPTS[0], 8, c)).await;
    }
    // Runs interleaved (run r of every configuration before run r + 1 of any), so drifting host
    // speed weighs on all configurations alike. Each speculative run's ids are compared with the
    // plain run of the same prompt (greedy: lossless means identical, up to the device's
    // different arithmetic for one row and for several — reported, not asserted).
    let mut rows: Vec<Row> = configs.iter().map(|_| Row::default()).collect();
    let mut plain_ids: Vec<Vec<u32>> = vec![Vec::new(); PROMPTS.len()];
    for r in 0..a.runs {
        for ((name, c), row) in configs.iter().zip(&mut rows) {
            for (pi, prompt) in PROMPTS.iter().enumerate() {
                let (s, ids) = run(&e, request(prompt, a.tokens, c)).await;
                assert_eq!(s.tokens_generated, a.tokens, "EOS should be ignored");
                if c.is_none() && r == 0 {
                    plain_ids[pi] = ids;
                } else if ids != plain_ids[pi] {
                    row.ids_differ += 1;
                }
                row.tps.push(s.tokens_per_second);
                row.acceptance.extend(s.acceptance_rate);
                eprintln!("{name} run {r}: {:.2} tok/s{}", s.tokens_per_second, s.acceptance_rate.map(|x| format!(", acceptance {x:.3}")).unwrap_or_default());
            }
        }
    }
    let base = summary(rows[0].tps.clone()).1;
    println!("Machine: {}; {} tokens per run, greedy, EOS ignored, {} prompts × {} runs per row\n", machine(), a.tokens, PROMPTS.len(), a.runs);
    println!("| config | decode tok/s min | median | max | speedup (median) | acceptance median | runs with ids ≠ plain |");
    println!("|---|---|---|---|---|---|---|");
    let mut out = Vec::new();
    for ((name, _), Row { tps, acceptance: acc, ids_differ: differ }) in configs.iter().zip(&rows) {
        let (lo, med, hi) = summary(tps.clone());
        let acc_med = if acc.is_empty() { None } else { Some(summary(acc.clone()).1) };
        println!(
            "| {name} | {lo:.2} | {med:.2} | {hi:.2} | {:.2}× | {} | {differ} of {} |",
            med / base,
            acc_med.map(|x| format!("{x:.3}")).unwrap_or_else(|| "—".into()),
            tps.len()
        );
        out.push(json!({"config": name, "tps": tps, "acceptance": acc, "runs_ids_differ_from_plain": differ}));
    }
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_string_pretty(&json!({"runtime": runtime, "rows": out})).unwrap()).unwrap();
    }
    e.shutdown().await;
}
