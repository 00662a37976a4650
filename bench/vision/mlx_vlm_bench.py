"""The mlx-vlm side of bench/vision/run.sh: the same measurements as
crates/core/examples/bench_vision.rs with mlx-vlm 0.7.6's own API (`load`, `apply_chat_template`,
`stream_generate`): the same model folder, image file, prompt, token count, warm-up (one request
of 2 tokens, skipped with BENCH_WARMUP=0) and runs. Greedy (temperature 0), EOS ignored (the tokenizer's stopping criteria get
an empty EOS list). TTFT is measured from the `stream_generate` call, so it includes loading and
preprocessing the image, the vision tower and the prompt prefill, as on our side.

usage: python mlx_vlm_bench.py <model_dir> <image.png> <tokens> <runs> [prompt]
Prints one JSON object on stdout.
"""
import json
import os
import resource
import sys
import time

import mlx.core as mx
from mlx.utils import tree_flatten
from mlx_vlm import load, stream_generate
from mlx_vlm.prompt_utils import apply_chat_template

DEFAULT_PROMPT = "Describe this image in detail."


def request(model, processor, prompt, image, tokens):
    start = time.perf_counter()
    first, n = None, 0
    for res in stream_generate(model, processor, prompt, image=[image], max_tokens=tokens, temperature=0.0):
        if res.finish_reason is not None:
            continue  # the closing result repeats the last token (no new computation)
        n += 1
        if first is None:
            first = time.perf_counter() - start
    total = time.perf_counter() - start
    return first, total, n


def main():
    model_dir, image, tokens, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    text = sys.argv[5] if len(sys.argv) > 5 else DEFAULT_PROMPT
    t = time.perf_counter()
    model, processor = load(model_dir)
    load_s = time.perf_counter() - t
    tok = processor.tokenizer if hasattr(processor, "tokenizer") else processor
    tok.stopping_criteria.additional_eos_token_ids = []
    tok.stopping_criteria.eos_token_ids = []  # ignore EOS, as `ignoreEos` does on our side
    prompt = apply_chat_template(processor, model.config, text, num_images=1)
    warmup = os.environ.get("BENCH_WARMUP", "1") != "0"  # as bench_vision.rs reads it
    if warmup:
        request(model, processor, prompt, image, 2)
    per_run = []
    for _ in range(runs):
        ttft, total, n = request(model, processor, prompt, image, tokens)
        if n != tokens:
            raise SystemExit(f"mlx-vlm yielded {n} tokens, expected {tokens}")
        per_run.append({"ttft_s": ttft, "decode_tps": (n - 1) / (total - ttft), "total_s": total, "tokens": n})
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({
        "engine": "mlx-vlm",
        "load_s": load_s,
        "warmup": warmup,
        "runs": per_run,
        "peak_rss_bytes": rss,
        "weights_dtype": sorted({str(v.dtype) for _, v in tree_flatten(model.parameters())}),
        "device": str(mx.default_device()),
    }))


if __name__ == "__main__":
    main()
