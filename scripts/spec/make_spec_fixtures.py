#!/usr/bin/env python3
"""Fixtures for speculative decoding (issue 5), written under OUT_DIR (default <repo>/.cache-spec):

  tiny-target/   seeded random-weight llama, vocabulary of 32 word tokens (own WordLevel
                 tokenizer.json), 3 layers — for the statistical losslessness test at temperature > 0
  tiny-draft/    the same model truncated to its first layer (+ final norm): a realistic,
                 partially agreeing draft
  tiny-wide/     a 33-token variant (vocabulary mismatch → InvalidParams)

  --truncate SRC N   additionally write <OUT_DIR>/<basename(SRC)>-L<N>: SRC (an HF llama folder,
                     e.g. .cache/models/SmolLM2-135M-Instruct) keeping its first N decoder layers
                     and the final norm, tokenizer files copied (the benchmark's draft models).

Usage: .venv/bin/python scripts/spec/make_spec_fixtures.py [OUT_DIR] [--truncate SRC N]...
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

ROOT = Path(__file__).resolve().parents[2]
WORDS = ["<s>", "</s>"] + [chr(ord("a") + i) for i in range(26)] + ["x1", "x2", "x3", "x4"]


def tokenizer_json(words):
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [
            {"id": 0, "content": "<s>", "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True},
            {"id": 1, "content": "</s>", "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True},
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": None,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": {w: i for i, w in enumerate(words)}, "unk_token": "a"},
    }


def tiny(folder, words, layers, seed, keep_layers=None):
    v, h, heads, kvh, hd, inter = len(words), 32, 2, 1, 16, 64
    rng = np.random.default_rng(seed)

    def normal(shape, std, mean=0.0):
        return (mean + std * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)

    w = {"model.embed_tokens.weight": normal((v, h), 0.35)}
    for i in range(layers):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = normal((h,), 0.1, 1.0)
        w[p + "self_attn.q_proj.weight"] = normal((heads * hd, h), 0.3)
        w[p + "self_attn.k_proj.weight"] = normal((kvh * hd, h), 0.3)
        w[p + "self_attn.v_proj.weight"] = normal((kvh * hd, h), 0.3)
        # Later layers write less into the residual stream, so a draft truncated to the first
        # layer agrees with the target often but not always (acceptance around 0.5).
        out_std = 0.3 if i == 0 else 0.08
        w[p + "self_attn.o_proj.weight"] = normal((h, heads * hd), out_std)
        w[p + "post_attention_layernorm.weight"] = normal((h,), 0.1, 1.0)
        w[p + "mlp.gate_proj.weight"] = normal((inter, h), 0.3)
        w[p + "mlp.up_proj.weight"] = normal((inter, h), 0.3)
        w[p + "mlp.down_proj.weight"] = normal((h, inter), out_std)
    w["model.norm.weight"] = normal((h,), 0.1, 1.0)
    n = layers if keep_layers is None else keep_layers
    w = {k: a for k, a in w.items() if not k.startswith("model.layers.") or int(k.split(".")[2]) < n}
    cfg = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": v,
        "hidden_size": h, "intermediate_size": inter, "num_hidden_layers": n,
        "num_attention_heads": heads, "num_key_value_heads": kvh, "head_dim": hd,
        "hidden_act": "silu", "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "max_position_embeddings": 512, "tie_word_embeddings": True, "bos_token_id": 0,
        "torch_dtype": "float32", "attention_bias": False, "mlp_bias": False,
    }
    write(folder, cfg, w)
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer_json(words)))
    # No EOS id on purpose: the statistical test compares full-length samples.
    (folder / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "add_bos_token": False}))


def write(folder, cfg, weights):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})


def truncate(src, n, out_dir):
    src = Path(src)
    dst = out_dir / f"{src.name}-L{n}"
    cfg = json.loads((src / "config.json").read_text())
    assert 0 < n <= cfg["num_hidden_layers"], (n, cfg["num_hidden_layers"])
    weights = {}
    files = sorted(src.glob("*.safetensors"))
    for f in files:
        for k, a in load_file(str(f)).items():
            if k.startswith("model.layers.") and int(k.split(".")[2]) >= n:
                continue
            weights[k] = a
    cfg["num_hidden_layers"] = n
    write(dst, cfg, weights)
    for f in src.iterdir():
        if f.is_file() and not f.name.endswith(".safetensors") and f.name not in ("config.json", "model.safetensors.index.json"):
            shutil.copyfile(f, dst / f.name)
    print(f"wrote {dst}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out", nargs="?", default=str(ROOT / ".cache-spec"))
    ap.add_argument("--truncate", nargs=2, action="append", default=[], metavar=("SRC", "N"))
    a = ap.parse_args()
    out = Path(a.out)
    tiny(out / "tiny-target", WORDS, 3, seed=505)
    tiny(out / "tiny-draft", WORDS, 3, seed=505, keep_layers=1)
    tiny(out / "tiny-wide", WORDS + ["x5"], 1, seed=606)
    for src, n in a.truncate:
        truncate(src, int(n), out)
    print(f"wrote fixtures under {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
