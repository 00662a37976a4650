"""The mlx-lm side of bench/run.mjs: the same measurements as crates/core/examples/bench_engine.rs,
with mlx-lm's own generation loop (generate_step) for one stream and its continuous-batching
BatchGenerator for N streams. Greedy, EOS ignored. Prints one JSON object.

usage: python mlx_lm_bench.py <model_dir> <prompts.json> <gen_tokens> <concurrency,...>
"""
import json
import os
import resource
import sys
import time

import mlx.core as mx
from mlx_lm import load
from mlx_lm.generate import BatchGenerator, generate_step


def single(model, ids, gen):
    start = time.perf_counter()
    first = None
    n = 0
    for _tok, _lp in generate_step(mx.array(ids), model, max_tokens=gen):
        n += 1
        if first is None:
            first = time.perf_counter() - start
    total = time.perf_counter() - start
    return first, total, n


def batched(model, prompts, gen):
    start = time.perf_counter()
    g = BatchGenerator(model, max_tokens=gen, stop_tokens=None, completion_batch_size=max(32, len(prompts)),
                       prefill_batch_size=max(8, len(prompts)))
    g.insert(prompts, [gen] * len(prompts))
    tokens = 0
    while responses := g.next_generated():
        tokens += len(responses)
    wall = time.perf_counter() - start
    g.close()
    return tokens / wall


def main():
    model_dir, prompts_path, gen = sys.argv[1], sys.argv[2], int(sys.argv[3])
    concurrency = [int(x) for x in sys.argv[4].split(",")]
    prompts = json.load(open(prompts_path))
    t = time.perf_counter()
    model, _tok = load(model_dir)
    load_s = time.perf_counter() - t
    single(model, prompts["chat"], 2)  # warm-up
    # the long-prompt stream BENCH_DECODE_REPEAT times (default 1), medians reported, as
    # bench_engine does
    repeat = max(1, int(os.environ.get("BENCH_DECODE_REPEAT", "1")))
    longs = [single(model, prompts["long"], gen) for _ in range(repeat)]
    med = lambda v: sorted(v)[len(v) // 2]
    decodes = [(n - 1) / (total - ttft) for ttft, total, n in longs]
    chat_ttft, _, _ = single(model, prompts["chat"], 1)
    aggregate = {}
    # warm-up of the batched path (first-use kernels), as bench_engine does: widest batch, 4 tokens
    widest = max(concurrency)
    batched(model, [prompts["batch"][i % len(prompts["batch"])] for i in range(widest)], 4)
    for c in concurrency:
        ps = [prompts["batch"][i % len(prompts["batch"])] for i in range(c)]
        aggregate[str(c)] = batched(model, ps, gen)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({
        "engine": "mlx-lm",
        "load_s": load_s,
        "prefill_tps": med([len(prompts["long"]) / ttft for ttft, _, _ in longs]),
        "decode_tps": med(decodes),
        "ttft_long_s": med([ttft for ttft, _, _ in longs]),
        "decode_tps_runs": decodes,
        "ttft_chat_s": chat_ttft,
        "aggregate_tps": aggregate,
        "peak_rss_bytes": rss,
    }))


if __name__ == "__main__":
    main()
