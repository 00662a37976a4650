//! Vision benchmark of the Rust engine core (no Node), the counterpart of
//! `bench/vision/mlx_vlm_bench.py`: through the public Engine API (`load_vision_model`,
//! `create_vision_stream`) one 1024×768 PNG, a short prompt, greedy, EOS ignored. One warm-up
//! request (same image and prompt, 2 tokens; `BENCH_WARMUP=0` skips it), then `runs` measured
//! requests of `tokens` tokens.
//! TTFT is measured from the request call, so it includes reading, decoding and preprocessing
//! the image, the vision tower and the prompt prefill.
//!
//! usage: bench_vision <model_dir> <image.png> <tokens> <runs> [prompt]
//!        bench_vision --write-image <image.png>
//! The image is written (deterministically) when the path does not exist yet.
//! Prints one JSON object on stdout.

use std::path::Path;
use std::time::Instant;

use mlx_serving_core::vision::image_input::load_rgb;
use mlx_serving_core::vision::{ImageLimits, ImageProcessor, ImageSource, ProcessorConfig};
use mlx_serving_core::{Engine, EngineConfig};
use serde_json::json;

#[path = "common/bench.rs"]
mod bench;
use bench::{peak_rss_bytes, timed, Timing};

const WIDTH: u32 = 1024;
const HEIGHT: u32 = 768;
const DEFAULT_PROMPT: &str = "Describe this image in detail.";

/// A deterministic picture with gradients, hard edges and texture (so no resampling shortcut
/// applies); mlx_vlm_bench.py reads the same file.
fn write_image(path: &Path) {
    let img = image::RgbImage::from_fn(WIDTH, HEIGHT, |x, y| {
        let block = ((x / 64) + (y / 48)) % 2 == 0;
        let r = (x * 255 / (WIDTH - 1)) as u8;
        let g = (y * 255 / (HEIGHT - 1)) as u8;
        let b = if block { ((x ^ y) * 7 % 256) as u8 } else { ((x + 2 * y) % 256) as u8 };
        image::Rgb([r, g, b])
    });
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("image folder");
    }
    img.save_with_format(path, image::ImageFormat::Png).expect("write image");
}

async fn request(engine: &Engine, image: &str, prompt: &str, tokens: u64) -> Timing {
    let params = json!({"model": "bench-vlm", "prompt": prompt, "image": {"source": image},
                        "maxTokens": tokens, "temperature": 0, "ignoreEos": true});
    // No whole-stream deadline: a full-size model's request on a small CPU host takes minutes.
    let options = json!({"timeoutMs": 24 * 3600 * 1000});
    let start = Instant::now();
    let stream = engine.create_vision_stream(&params, &options).await.expect("vision stream");
    timed(stream, start).await
}

/// `BENCH_WARMUP=0` skips the warm-up request (both sides read it; for runs where one request
/// takes minutes and first-use costs are noise).
fn warmup() -> bool {
    std::env::var("BENCH_WARMUP").map_or(true, |v| v != "0")
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 3 && args[1] == "--write-image" {
        write_image(Path::new(&args[2]));
        return;
    }
    if args.len() < 5 {
        eprintln!("usage: bench_vision <model_dir> <image.png> <tokens> <runs> [prompt]");
        std::process::exit(2);
    }
    let (dir, image) = (&args[1], &args[2]);
    let tokens: u64 = args[3].parse().expect("tokens");
    let runs: usize = args[4].parse().expect("runs");
    let prompt = args.get(5).map(String::as_str).unwrap_or(DEFAULT_PROMPT);
    if !Path::new(image).exists() {
        write_image(Path::new(image));
    }
    let engine = Engine::with_config(EngineConfig { prompt_cache_max_entries: 0, ..Default::default() });
    let t = Instant::now();
    engine.load_vision_model(&json!({"model": "bench-vlm", "localPath": dir})).await.expect("load");
    let load_s = t.elapsed().as_secs_f64();
    if warmup() {
        request(&engine, image, prompt, 2).await; // warm-up (first-use allocations)
    }
    // The CPU part of TTFT alone: read, decode and preprocess the image (Qwen-VL processors)
    let preprocess_s: Vec<f64> = match ProcessorConfig::from_dir(Path::new(dir)) {
        Ok(cfg) => (0..3)
            .map(|_| {
                let t = Instant::now();
                let img = load_rgb(&ImageSource::parse(image).expect("image source"), &ImageLimits::default()).expect("image");
                ImageProcessor::Qwen(cfg.clone()).preprocess(&img).expect("preprocess");
                t.elapsed().as_secs_f64()
            })
            .collect(),
        Err(_) => vec![],
    };
    let mut per_run = Vec::new();
    for _ in 0..runs {
        let r = request(&engine, image, prompt, tokens).await;
        assert_eq!(r.tokens as u64, tokens, "EOS is ignored, so every run yields all tokens");
        per_run.push(json!({"ttft_s": r.ttft, "decode_tps": (r.tokens as f64 - 1.0) / (r.total - r.ttft),
                            "total_s": r.total, "tokens": r.tokens}));
    }
    let out = json!({
        "engine": "mlx-serving (Rust core)",
        "load_s": load_s,
        "warmup": warmup(),
        "runs": per_run,
        "peak_rss_bytes": peak_rss_bytes(),
        "preprocess_s": preprocess_s,
    });
    println!("{out}");
    engine.shutdown().await;
}
