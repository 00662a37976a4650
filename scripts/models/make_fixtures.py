#!/usr/bin/env python3
"""Seeded random-weight tiny model fixtures for parity tests (run with the project's .venv python).

Writes HF-style folders under <repo>/.cache/fixtures/<name>/:
  config.json, model.safetensors (float32; `mistral` is sharded in 2 files + index),
  tokenizer.json, tokenizer_config.json, generation_config.json (copied from the default model
  folder .cache/models/SmolLM2-135M-Instruct, vocab 49152).

Fixtures: llama (llama3 rope scaling, tied), mistral (untied, sharded), qwen2 (q/k/v bias),
qwen3 (explicit head_dim, q_norm/k_norm), gemma3 (gemma3_text: sliding window 16 on layers 0, 1, 3
and global attention on layer 2, local/global rope bases, linear rope scaling on the global layer,
query_pre_attn_scalar != head_dim, 1+w norms, tied), llama-4bit (the llama fixture quantized by mlx-lm's own
converter: 4 bits, group size 32, float32 scales/biases).

Idempotent: .cache/fixtures/.stamp holds VERSION; everything is regenerated when VERSION changes,
a fixture folder is missing, or --force is given.

Usage: .venv/bin/python scripts/models/make_fixtures.py [--force]
"""
import argparse
import contextlib
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

# Bump whenever shapes, init, configs or seeds change: fixtures and parity outputs get rebuilt.
VERSION = "fixtures-v3"

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct"
OUT = ROOT / ".cache" / "fixtures"
STAMP = OUT / ".stamp"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "generation_config.json")
VOCAB = 49152
BOS, EOS = 1, 2

COMMON = dict(hidden=64, heads=4, kv_heads=2, intermediate=128, head_dim=16, layers=2,
              tied=True, qkv_bias=False, qk_norm=False, shards=1,
              emb_std=0.5, proj_std=0.25, norm_mean=1.0, final_norm_mean=2.0)

FIXTURES = {
    "llama": dict(
        COMMON, seed=1001, model_type="llama", arch="LlamaForCausalLM", rope_theta=10000.0,
        max_pos=512,
        # head_dim 16, base 1e4: wavelengths 2*pi*1e4^(i/16) = 6.3, 19.9, 62.8, 199, 628, ...
        # With original_max_position_embeddings 64 the cut-offs are 64/4 = 16 and 64/1 = 64:
        # one pair stays, two pairs are smoothly interpolated, five are divided by 8.
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 64}),
    "mistral": dict(
        COMMON, seed=2002, model_type="mistral", arch="MistralForCausalLM", rope_theta=1e6,
        max_pos=2048, layers=3, tied=False, shards=2),
    "qwen2": dict(
        COMMON, seed=3003, model_type="qwen2", arch="Qwen2ForCausalLM", rope_theta=1e6,
        max_pos=32768, qkv_bias=True),
    "qwen3": dict(
        COMMON, seed=4004, model_type="qwen3", arch="Qwen3ForCausalLM", rope_theta=1e6,
        max_pos=32768, layers=3, head_dim=32, qk_norm=True),
    "gemma3": dict(
        COMMON, seed=5005, model_type="gemma3_text", arch="Gemma3ForCausalLM", rope_theta=1e6,
        max_pos=32768, layers=4, kv_heads=1, qk_norm=True, norm_mean=4.0, final_norm_mean=1.0,
        # norms scale by 1 + w ~ 5 so the blocks are not drowned by the sqrt(hidden)-scaled embedding
        # window 16 < the ~30-token prompt: prefill needs the banded mask, decode rotates
        sliding_window=16, sliding_window_pattern=3, rope_local_base_freq=10000.0,
        query_pre_attn_scalar=24, rope_scaling={"rope_type": "linear", "factor": 8.0}),
}
QUANTIZED = {"llama-4bit": dict(source="llama", bits=4, group_size=32)}


def log(msg):
    print(f"[mlx-serving] {msg}", file=sys.stderr, flush=True)


def make_config(spec):
    c = {
        "architectures": [spec["arch"]],
        "model_type": spec["model_type"],
        "vocab_size": VOCAB,
        "hidden_size": spec["hidden"],
        "intermediate_size": spec["intermediate"],
        "num_hidden_layers": spec["layers"],
        "num_attention_heads": spec["heads"],
        "num_key_value_heads": spec["kv_heads"],
        "head_dim": spec["head_dim"],
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5 if spec["model_type"] in ("llama", "mistral") else 1e-6,
        "rope_theta": spec["rope_theta"],
        "rope_scaling": spec.get("rope_scaling"),
        "max_position_embeddings": spec["max_pos"],
        "tie_word_embeddings": spec["tied"],
        "bos_token_id": BOS,
        "eos_token_id": EOS,
        "torch_dtype": "float32",
        "initializer_range": 0.02,
        "use_cache": True,
    }
    mt = spec["model_type"]
    if mt == "llama":
        c.update(attention_bias=False, mlp_bias=False)
    elif mt == "mistral":
        c.update(sliding_window=None)
    elif mt == "qwen2":
        assert spec["head_dim"] == spec["hidden"] // spec["heads"], "qwen2 derives head_dim"
        del c["head_dim"]
        c.update(use_sliding_window=False, sliding_window=None, max_window_layers=spec["layers"])
    elif mt == "qwen3":
        c.update(attention_bias=False, use_sliding_window=False, sliding_window=None,
                 max_window_layers=spec["layers"])
    elif mt == "gemma3_text":
        pat = spec["sliding_window_pattern"]
        c.update(hidden_act="gelu_pytorch_tanh", hidden_activation="gelu_pytorch_tanh",
                 sliding_window=spec["sliding_window"], sliding_window_pattern=pat,
                 layer_types=["full_attention" if (i + 1) % pat == 0 else "sliding_attention"
                              for i in range(spec["layers"])],
                 rope_local_base_freq=spec["rope_local_base_freq"],
                 query_pre_attn_scalar=spec["query_pre_attn_scalar"],
                 attention_bias=False, final_logit_softcapping=None, attn_logit_softcapping=None)
    return c


def make_weights(spec):
    rng = np.random.default_rng(spec["seed"])

    def normal(shape, std, mean=0.0):
        return (mean + std * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)

    h, hd, inter = spec["hidden"], spec["head_dim"], spec["intermediate"]
    nq, nkv = spec["heads"] * hd, spec["kv_heads"] * hd
    p = spec["proj_std"]
    w = {"model.embed_tokens.weight": normal((VOCAB, h), spec["emb_std"])}
    for i in range(spec["layers"]):
        pre = f"model.layers.{i}."
        w[pre + "input_layernorm.weight"] = normal((h,), 0.1, spec["norm_mean"])
        w[pre + "self_attn.q_proj.weight"] = normal((nq, h), p)
        w[pre + "self_attn.k_proj.weight"] = normal((nkv, h), p)
        w[pre + "self_attn.v_proj.weight"] = normal((nkv, h), p)
        w[pre + "self_attn.o_proj.weight"] = normal((h, nq), p)
        if spec["qkv_bias"]:
            w[pre + "self_attn.q_proj.bias"] = normal((nq,), 0.2)
            w[pre + "self_attn.k_proj.bias"] = normal((nkv,), 0.2)
            w[pre + "self_attn.v_proj.bias"] = normal((nkv,), 0.2)
        if spec["qk_norm"]:
            w[pre + "self_attn.q_norm.weight"] = normal((hd,), 0.1, 1.0)
            w[pre + "self_attn.k_norm.weight"] = normal((hd,), 0.1, 1.0)
        w[pre + "post_attention_layernorm.weight"] = normal((h,), 0.1, spec["norm_mean"])
        w[pre + "mlp.gate_proj.weight"] = normal((inter, h), p)
        w[pre + "mlp.up_proj.weight"] = normal((inter, h), p)
        w[pre + "mlp.down_proj.weight"] = normal((h, inter), p)
        if spec["model_type"] == "gemma3_text":  # norms are offsets from 1 (scale = 1 + w)
            w[pre + "pre_feedforward_layernorm.weight"] = normal((h,), 0.1, spec["norm_mean"])
            w[pre + "post_feedforward_layernorm.weight"] = normal((h,), 0.1, spec["norm_mean"])
    w["model.norm.weight"] = normal((h,), 0.1, spec["final_norm_mean"])
    if not spec["tied"]:
        w["lm_head.weight"] = normal((VOCAB, h), spec["emb_std"])
    return w


def write_weights(folder, weights, shards):
    names = list(weights)
    if shards == 1:
        save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
        return
    # Split by tensor order (embeddings + early layers first) into `shards` files of similar size.
    total = sum(weights[n].nbytes for n in names)
    groups, acc = [[] for _ in range(shards)], 0
    for n in names:
        groups[min(shards - 1, acc * shards // total)].append(n)
        acc += weights[n].nbytes
    weight_map = {}
    for k, group in enumerate(groups):
        fname = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        save_file({n: weights[n] for n in group}, str(folder / fname), metadata={"format": "pt"})
        weight_map.update({n: fname for n in group})
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def copy_tokenizer(folder):
    for f in TOKENIZER_FILES:
        shutil.copyfile(DEFAULT_MODEL / f, folder / f)


def build_random(name, spec):
    final = OUT / name
    tmp = OUT / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "config.json").write_text(json.dumps(make_config(spec), indent=2) + "\n")
    write_weights(tmp, make_weights(spec), spec["shards"])
    copy_tokenizer(tmp)
    make_readable(tmp)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


def build_quantized(name, spec):
    from mlx_lm import convert  # heavy import, only when needed

    final = OUT / name
    tmp = OUT / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    with contextlib.redirect_stdout(sys.stderr):  # mlx-lm prints its [INFO] lines on stdout
        convert(str(OUT / spec["source"]), str(tmp), quantize=True, q_bits=spec["bits"],
                q_group_size=spec["group_size"], dtype="float32")
    # Keep the fixture layout uniform: the exact tokenizer files of the default model, no card.
    for f in ("README.md", "special_tokens_map.json", "chat_template.jinja"):
        if (tmp / f).exists():
            (tmp / f).unlink()
    copy_tokenizer(tmp)
    cfg = json.loads((tmp / "config.json").read_text())
    q = cfg.get("quantization")
    assert q and q["bits"] == spec["bits"] and q["group_size"] == spec["group_size"], q
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


def make_readable(folder):
    for f in folder.iterdir():
        f.chmod(0o644)  # safetensors writes 0600


def folder_size(folder):
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())


def main():
    ap = argparse.ArgumentParser(description="make the tiny random-weight parity fixtures")
    ap.add_argument("--force", action="store_true", help="regenerate even if up to date")
    args = ap.parse_args()

    all_names = list(FIXTURES) + list(QUANTIZED)
    up_to_date = (STAMP.exists() and STAMP.read_text() == VERSION
                  and all((OUT / n / "config.json").exists() for n in all_names))
    if up_to_date and not args.force:
        log(f"fixtures up to date ({VERSION})")
        return
    for f in TOKENIZER_FILES:
        if not (DEFAULT_MODEL / f).exists():
            sys.exit(f"missing {DEFAULT_MODEL / f}: run scripts/models/fetch_default_model.sh first")
    OUT.mkdir(parents=True, exist_ok=True)
    if STAMP.exists():
        STAMP.unlink()
    for name, spec in FIXTURES.items():
        log(f"generating fixture {name} (seed {spec['seed']})")
        build_random(name, spec)
    for name, spec in QUANTIZED.items():
        log(f"quantizing fixture {name} from {spec['source']} with mlx_lm.convert "
            f"({spec['bits']} bits, group {spec['group_size']})")
        build_quantized(name, spec)
    STAMP.write_text(VERSION)
    for n in all_names:
        log(f"  {n}: {folder_size(OUT / n) / 1e6:.1f} MB")
    log(f"fixtures ready ({VERSION})")


if __name__ == "__main__":
    main()
