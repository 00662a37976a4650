#!/usr/bin/env python3
"""Seeded random-weight fixtures for the phi3 and mixture-of-experts families (run with the
project's .venv python, after make_fixtures.py, whose helpers and tokenizer files it shares).

Writes HF-style folders under <repo>/.cache/fixtures/<name>/:
  phi3            model_type phi3: fused qkv_proj and gate_up_proj, GQA (4 heads, 2 KV heads),
                  longrope scaling (long/short factors, original context 64 of 512 so the
                  attention scale sqrt(1 + ln 8 / ln 64) applies), partial_rotary_factor 0.75
                  (12 of 16 head dims rotated, as Phi-4-mini), untied lm_head
  qwen3_moe       model_type qwen3_moe in the Hugging Face layout (one tensor per expert:
                  mlp.experts.N.{gate,up,down}_proj), 8 experts, top-3 with norm_topk_prob,
                  layer 1 a dense MLP (mlp_only_layers), q/k RMSNorm, head_dim 32, untied
  qwen3_moe-4bit  qwen3_moe quantized by mlx-lm's own converter: experts stacked as
                  mlp.switch_mlp.* [E, out, in] (4 bits, group 32), router 8-bit (its predicate)
  mixtral         model_type mixtral in the HF layout (block_sparse_moe.experts.N.w1/w2/w3),
                  4 experts, top-2 (softmax over the selected logits), tied embeddings

Idempotent: .cache/fixtures/.stamp-arch holds VERSION; regenerated when VERSION changes, a
folder is missing, or --force is given. The shared fixtures (.stamp) are not touched.

Usage: .venv/bin/python scripts/models/make_arch_fixtures.py [--force]
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as base  # noqa: E402  (shared helpers: tokenizer copy, shards, quantize)

VERSION = "arch-fixtures-v1"
STAMP = base.OUT / ".stamp-arch"

COMMON = dict(hidden=64, heads=4, kv_heads=2, intermediate=128, emb_std=0.5, proj_std=0.25,
              norm_mean=1.0, final_norm_mean=2.0)

FIXTURES = {
    "phi3": dict(COMMON, seed=6006, model_type="phi3", arch="Phi3ForCausalLM", layers=3),
    "qwen3_moe": dict(COMMON, seed=7007, model_type="qwen3_moe", arch="Qwen3MoeForCausalLM",
                      layers=3, head_dim=32, experts=8, top_k=3, moe_intermediate=64,
                      mlp_only_layers=[1]),
    "mixtral": dict(COMMON, seed=8008, model_type="mixtral", arch="MixtralForCausalLM",
                    layers=2, experts=4, top_k=2),
}
QUANTIZED = {"qwen3_moe-4bit": dict(source="qwen3_moe", bits=4, group_size=32)}


def common_config(spec):
    return {
        "architectures": [spec["arch"]],
        "model_type": spec["model_type"],
        "vocab_size": base.VOCAB,
        "hidden_size": spec["hidden"],
        "intermediate_size": spec["intermediate"],
        "num_hidden_layers": spec["layers"],
        "num_attention_heads": spec["heads"],
        "num_key_value_heads": spec["kv_heads"],
        "hidden_act": "silu",
        "bos_token_id": base.BOS,
        "eos_token_id": base.EOS,
        "torch_dtype": "float32",
        "initializer_range": 0.02,
        "use_cache": True,
    }


def make_config(spec):
    c = common_config(spec)
    mt = spec["model_type"]
    if mt == "phi3":
        rng = np.random.default_rng(spec["seed"] + 1)
        half = int(spec["hidden"] // spec["heads"] * 0.75) // 2
        c.update(rms_norm_eps=1e-5, rope_theta=10000.0, max_position_embeddings=512,
                 original_max_position_embeddings=64, partial_rotary_factor=0.75,
                 tie_word_embeddings=False, sliding_window=2047, attention_dropout=0.0,
                 rope_scaling={"type": "longrope",
                               "long_factor": [round(float(x), 4) for x in np.sort(rng.uniform(1, 12, half))],
                               "short_factor": [round(float(x), 4) for x in np.sort(rng.uniform(1, 2, half))]})
    elif mt == "qwen3_moe":
        c.update(rms_norm_eps=1e-6, rope_theta=1e6, max_position_embeddings=32768,
                 head_dim=spec["head_dim"], num_experts=spec["experts"],
                 num_experts_per_tok=spec["top_k"], moe_intermediate_size=spec["moe_intermediate"],
                 decoder_sparse_step=1, mlp_only_layers=spec["mlp_only_layers"],
                 norm_topk_prob=True, tie_word_embeddings=False, attention_bias=False,
                 rope_scaling=None, use_sliding_window=False, sliding_window=None,
                 output_router_logits=False, router_aux_loss_coef=0.001)
    elif mt == "mixtral":
        c.update(rms_norm_eps=1e-5, rope_theta=1e6, max_position_embeddings=32768,
                 num_local_experts=spec["experts"], num_experts_per_tok=spec["top_k"],
                 tie_word_embeddings=True, sliding_window=None, router_aux_loss_coef=0.02)
    return c


def head_dim(spec):
    return spec.get("head_dim", spec["hidden"] // spec["heads"])


def make_weights(spec):
    rng = np.random.default_rng(spec["seed"])

    def normal(shape, std, mean=0.0):
        return (mean + std * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)

    h, hd, inter, p = spec["hidden"], head_dim(spec), spec["intermediate"], spec["proj_std"]
    nq, nkv = spec["heads"] * hd, spec["kv_heads"] * hd
    mt = spec["model_type"]
    w = {"model.embed_tokens.weight": normal((base.VOCAB, h), spec["emb_std"])}
    for i in range(spec["layers"]):
        pre = f"model.layers.{i}."
        w[pre + "input_layernorm.weight"] = normal((h,), 0.1, spec["norm_mean"])
        w[pre + "post_attention_layernorm.weight"] = normal((h,), 0.1, spec["norm_mean"])
        if mt == "phi3":
            w[pre + "self_attn.qkv_proj.weight"] = normal((nq + 2 * nkv, h), p)
        else:
            w[pre + "self_attn.q_proj.weight"] = normal((nq, h), p)
            w[pre + "self_attn.k_proj.weight"] = normal((nkv, h), p)
            w[pre + "self_attn.v_proj.weight"] = normal((nkv, h), p)
        w[pre + "self_attn.o_proj.weight"] = normal((h, nq), p)
        if mt == "qwen3_moe":
            w[pre + "self_attn.q_norm.weight"] = normal((hd,), 0.1, 1.0)
            w[pre + "self_attn.k_norm.weight"] = normal((hd,), 0.1, 1.0)
        if mt == "phi3":
            w[pre + "mlp.gate_up_proj.weight"] = normal((2 * inter, h), p)
            w[pre + "mlp.down_proj.weight"] = normal((h, inter), p)
        elif mt == "qwen3_moe" and i in spec["mlp_only_layers"]:
            w[pre + "mlp.gate_proj.weight"] = normal((inter, h), p)
            w[pre + "mlp.up_proj.weight"] = normal((inter, h), p)
            w[pre + "mlp.down_proj.weight"] = normal((h, inter), p)
        elif mt == "qwen3_moe":
            mi = spec["moe_intermediate"]
            w[pre + "mlp.gate.weight"] = normal((spec["experts"], h), p)
            for e in range(spec["experts"]):
                w[pre + f"mlp.experts.{e}.gate_proj.weight"] = normal((mi, h), p)
                w[pre + f"mlp.experts.{e}.up_proj.weight"] = normal((mi, h), p)
                w[pre + f"mlp.experts.{e}.down_proj.weight"] = normal((h, mi), p)
        elif mt == "mixtral":
            w[pre + "block_sparse_moe.gate.weight"] = normal((spec["experts"], h), p)
            for e in range(spec["experts"]):
                w[pre + f"block_sparse_moe.experts.{e}.w1.weight"] = normal((inter, h), p)
                w[pre + f"block_sparse_moe.experts.{e}.w2.weight"] = normal((h, inter), p)
                w[pre + f"block_sparse_moe.experts.{e}.w3.weight"] = normal((inter, h), p)
    w["model.norm.weight"] = normal((h,), 0.1, spec["final_norm_mean"])
    if not make_config(spec)["tie_word_embeddings"]:
        w["lm_head.weight"] = normal((base.VOCAB, h), spec["emb_std"])
    return w


def build_random(name, spec):
    final, tmp = base.OUT / name, base.OUT / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "config.json").write_text(json.dumps(make_config(spec), indent=2) + "\n")
    base.write_weights(tmp, make_weights(spec), 1)
    base.copy_tokenizer(tmp)
    base.make_readable(tmp)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


def main():
    ap = argparse.ArgumentParser(description="make the phi3 / MoE random-weight fixtures")
    ap.add_argument("--force", action="store_true", help="regenerate even if up to date")
    args = ap.parse_args()
    names = list(FIXTURES) + list(QUANTIZED)
    if (not args.force and STAMP.exists() and STAMP.read_text() == VERSION
            and all((base.OUT / n / "config.json").exists() for n in names)):
        base.log(f"arch fixtures up to date ({VERSION})")
        return
    for f in base.TOKENIZER_FILES:
        if not (base.DEFAULT_MODEL / f).exists():
            sys.exit(f"missing {base.DEFAULT_MODEL / f}: run scripts/models/fetch_default_model.sh first")
    base.OUT.mkdir(parents=True, exist_ok=True)
    if STAMP.exists():
        STAMP.unlink()
    for name, spec in FIXTURES.items():
        base.log(f"generating fixture {name} (seed {spec['seed']})")
        build_random(name, spec)
    for name, spec in QUANTIZED.items():
        base.log(f"quantizing fixture {name} from {spec['source']} with mlx_lm.convert "
                 f"({spec['bits']} bits, group {spec['group_size']})")
        base.build_quantized(name, spec)
    STAMP.write_text(VERSION)
    for n in names:
        base.log(f"  {n}: {base.folder_size(base.OUT / n) / 1e6:.1f} MB")
    base.log(f"arch fixtures ready ({VERSION})")


if __name__ == "__main__":
    main()
