#!/usr/bin/env python3
"""mlx-lm's speculative generation on the same pair and prompts as bench/speculative.rs
(greedy, EOS ignored, same token budget): generation tok/s with and without the draft, and the
fraction of emitted tokens that came from the draft.

  .venv/bin/python bench/speculative_mlx_lm.py --target .cache/models/SmolLM2-135M-Instruct \
      --draft .cache-spec/SmolLM2-135M-Instruct-L8 [--draft DIR]... [--k 4]... [--tokens 128] [--runs 3]

mlx-lm's `acceptance` here = draft tokens accepted / draft tokens proposed, estimated like ours:
accepted = tokens flagged `from_draft`; proposed = accepted + number of verification rounds that
rejected (each round proposes up to k tokens; mlx-lm does not expose the exact proposal count, so
the rounds are reconstructed from the from_draft flags: a round ends at a non-draft token).
"""
import argparse
import json
import platform
import statistics
import time

import mlx.core as mx
from mlx_lm import load, stream_generate
from mlx_lm.sample_utils import make_sampler

PROMPTS = [
    "Write a detailed explanation of how a transformer language model generates text, step by step.",
    "The history of the Roman Empire begins with",
    'def quicksort(arr):\n    """Sort a list using quicksort."""\n',
]


def run(model, tok, prompt, tokens, draft=None, k=None):
    ids = tok.encode(prompt)
    kw = {}
    if draft is not None:
        kw = dict(draft_model=draft, num_draft_tokens=k)
    last, flags = None, []
    for r in stream_generate(model, tok, ids, max_tokens=tokens, sampler=make_sampler(0.0), **kw):
        last = r
        flags.append(bool(r.from_draft))
    assert last.generation_tokens == tokens, (last.generation_tokens, "EOS should be ignored")
    accepted = sum(flags)
    # rounds: each non-draft token closes a round (the correction/bonus token)
    proposed = None
    if draft is not None:
        proposed = 0
        run_len = 0
        for f in flags[1:]:  # the first token comes from the prefill
            if f:
                run_len += 1
            else:
                proposed += k if run_len < k else run_len
                run_len = 0
    return last.generation_tps, (accepted / proposed if proposed else None), len(ids)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True)
    ap.add_argument("--draft", action="append", default=[])
    ap.add_argument("--k", type=int, action="append", default=[])
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json")
    a = ap.parse_args()
    ks = a.k or [4]
    model, tok = load(a.target)
    tok._eos_token_ids = set()  # ignore EOS, as the Rust bench does
    drafts = [(d, load(d)[0]) for d in a.draft]
    configs = [("plain", None, None)] + [(f"{d.rstrip('/').split('/')[-1]} k={k}", m, k) for d, m in drafts for k in ks]
    for _, m, k in configs:  # warm-up
        run(model, tok, PROMPTS[0], 8, m, k)
    print(f"Machine: {platform.processor() or platform.machine()}, mlx {mx.__version__}, device {mx.default_device()}; "
          f"{a.tokens} tokens per run, greedy, EOS ignored, {len(PROMPTS)} prompts x {a.runs} runs per row\n")
    print("| mlx-lm config | generation tok/s min | median | max | acceptance median |")
    print("|---|---|---|---|---|")
    rows = []
    for name, m, k in configs:
        tps, acc = [], []
        for _ in range(a.runs):
            for p in PROMPTS:
                t, rate, _ = run(model, tok, p, a.tokens, m, k)
                tps.append(t)
                if rate is not None:
                    acc.append(rate)
        print(f"| {name} | {min(tps):.2f} | {statistics.median(tps):.2f} | {max(tps):.2f} | "
              f"{statistics.median(acc):.3f} |" if acc else
              f"| {name} | {min(tps):.2f} | {statistics.median(tps):.2f} | {max(tps):.2f} | — |", flush=True)
        rows.append({"config": name, "tps": tps, "acceptance": acc})
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
