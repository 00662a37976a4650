"""Random-weight models of real shapes for the GPU benchmark (generated on the GPU machine with
MLX itself): Llama-3.2-1B- and Qwen3-4B-shaped, bf16, plus 4-bit conversions by mlx-lm's own
converter. Tokenizer files are copied from a given folder (token-id prompts are used, so any
tokenizer whose ids fit the vocabulary will do).

usage: python make_random_models.py <tokenizer_dir> <out_dir>
"""
import json
import os
import shutil
import sys
from pathlib import Path

import mlx.core as mx

SHAPES = {
    "llama-3.2-1b-shaped": dict(model_type="llama", hidden_size=2048, num_hidden_layers=16, intermediate_size=8192,
                                num_attention_heads=32, num_key_value_heads=8, head_dim=64, vocab_size=128256,
                                rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=True,
                                max_position_embeddings=131072,
                                rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                              "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
    "qwen3-4b-shaped": dict(model_type="qwen3", hidden_size=2560, num_hidden_layers=36, intermediate_size=9728,
                            num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=151936,
                            rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True,
                            max_position_embeddings=40960),
}


def weights(c):
    h, hd, nh, kv, inter = c["hidden_size"], c["head_dim"], c["num_attention_heads"], c["num_key_value_heads"], c["intermediate_size"]
    rnd = lambda *s: (mx.random.normal(s) * 0.02).astype(mx.bfloat16)
    one = lambda n: mx.ones((n,), dtype=mx.bfloat16)
    w = {"model.embed_tokens.weight": rnd(c["vocab_size"], h), "model.norm.weight": one(h)}
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "self_attn.q_proj.weight"] = rnd(nh * hd, h)
        w[p + "self_attn.k_proj.weight"] = rnd(kv * hd, h)
        w[p + "self_attn.v_proj.weight"] = rnd(kv * hd, h)
        w[p + "self_attn.o_proj.weight"] = rnd(h, nh * hd)
        w[p + "mlp.gate_proj.weight"] = rnd(inter, h)
        w[p + "mlp.up_proj.weight"] = rnd(inter, h)
        w[p + "mlp.down_proj.weight"] = rnd(h, inter)
        w[p + "input_layernorm.weight"] = one(h)
        w[p + "post_attention_layernorm.weight"] = one(h)
        if c["model_type"] == "qwen3":
            w[p + "self_attn.q_norm.weight"] = one(hd)
            w[p + "self_attn.k_norm.weight"] = one(hd)
        mx.eval(w)
    return w


def main():
    tok_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
    from mlx_lm import convert
    only = [n for n in os.environ.get("BENCH_GPU_ONLY", "").split(",") if n]
    for name, cfg in SHAPES.items():
        if only and name not in only:
            continue
        d = out / name
        if not (d / "model.safetensors").exists():
            d.mkdir(parents=True, exist_ok=True)
            mx.random.seed(0)
            mx.save_safetensors(str(d / "model.safetensors"), weights(cfg), metadata={"format": "mlx"})
            (d / "config.json").write_text(json.dumps({**cfg, "torch_dtype": "bfloat16"}, indent=1))
            for f in ["tokenizer.json", "tokenizer_config.json"]:
                shutil.copy(tok_dir / f, d / f)
        q = out / (name + "-4bit")
        if not (q / "config.json").exists() and not os.environ.get("BENCH_GPU_NO_4BIT"):
            convert(hf_path=str(d), mlx_path=str(q), quantize=True, q_group_size=64, q_bits=4)
        print(name, "ready", flush=True)


if __name__ == "__main__":
    main()
