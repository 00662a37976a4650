#!/usr/bin/env python3
"""A random-weight Qwen2-VL model folder of a real shape for the vision benchmark, made with MLX.

Shapes:
  qwen2-vl-2b     Qwen2-VL-2B-Instruct's dimensions: vision tower depth 32, embed 1280, 16 heads,
                  MLP ratio 4, patch 14, temporal patch 2, merge 2; LM hidden 1536, 28 layers,
                  12 heads / 2 KV heads (head dim 128, M-RoPE sections 16/24/24), MLP 8960,
                  vocab 151936, tied embeddings.
  qwen2-vl-2b-l4  the same widths with 4 vision blocks and 4 LM layers (per-layer work as in the
                  2B model; for hosts where the full depth is too slow, e.g. a 2-core CPU).

Weights are seeded normal draws (std 0.02, norms at 1) in the mlx-community layout
(`vision_tower.*`, `language_model.model.*`, Conv3d patch weight as [out, T, P, P, C]), stored
as bf16 (what GPU checkpoints carry) or f32 (`--dtype float32`: the CPU form both engines compute
in, so neither side pays a bf16 conversion). Tokenizer, chat template and generation config are
copied from the tiny Qwen2-VL fixture (the real Qwen tokenizer with the vision special tokens);
the preprocessor config is Qwen2-VL's own (min 56x56, max 28*28*16384 pixels), so a 1024x768
image becomes 74x54 patches / 999 image tokens.

usage: python make_random_vlm.py OUT [--shape qwen2-vl-2b] [--dtype bfloat16|float32]
                                 [--tokenizer-dir DIR] [--seed 0]
Idempotent: skips when OUT/model.safetensors exists with the same stamp (shape, dtype, seed).
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

import mlx.core as mx

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TOKDIR = ROOT / ".cache" / "fixtures" / "vision" / "qwen2-vl"

VISION_START, VISION_END, VISION_PAD, IMAGE_PAD, VIDEO_PAD = 151652, 151653, 151654, 151655, 151656
ENDOFTEXT, IM_END = 151643, 151645

VISION_2B = dict(depth=32, embed_dim=1280, hidden_size=1536, num_heads=16, mlp_ratio=4, in_chans=3,
                 patch_size=14, spatial_patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
                 hidden_act="quick_gelu")
LM_2B = dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
             num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=1000000.0, max_position_embeddings=32768,
             vocab_size=151936, tie_word_embeddings=True, sliding_window=32768, max_window_layers=28,
             use_sliding_window=False, rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]})
SHAPES = {
    "qwen2-vl-2b": (LM_2B, VISION_2B),
    "qwen2-vl-2b-l4": ({**LM_2B, "num_hidden_layers": 4, "max_window_layers": 4}, {**VISION_2B, "depth": 4}),
}

PREPROCESSOR = {
    "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2VLProcessor",
    "do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "do_convert_rgb": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
    "min_pixels": 56 * 56, "max_pixels": 28 * 28 * 16384,
    "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
}


def config(shape, dtype):
    lm, vision = SHAPES[shape]
    return {
        "architectures": ["Qwen2VLForConditionalGeneration"], "model_type": "qwen2_vl", **lm,
        "image_token_id": IMAGE_PAD, "video_token_id": VIDEO_PAD, "vision_token_id": VISION_PAD,
        "vision_start_token_id": VISION_START, "vision_end_token_id": VISION_END,
        "bos_token_id": ENDOFTEXT, "eos_token_id": IM_END, "torch_dtype": dtype,
        "vision_config": dict(vision),
    }


def tensors(cfg, dtype):
    """Yields (name, array) layer by layer, so each group is materialized before the next."""
    rnd = lambda *s: (mx.random.normal(s) * 0.02).astype(dtype)
    zero = lambda n: mx.zeros((n,), dtype=dtype)
    one = lambda n: mx.ones((n,), dtype=dtype)
    v = cfg["vision_config"]
    e, p, t, c = v["embed_dim"], v["patch_size"], v["temporal_patch_size"], v["in_chans"]
    mlp = int(e * v["mlp_ratio"])
    vt = "vision_tower"
    yield {f"{vt}.patch_embed.proj.weight": rnd(e, t, p, p, c)}
    for i in range(v["depth"]):
        b = f"{vt}.blocks.{i}"
        yield {f"{b}.norm1.weight": one(e), f"{b}.norm1.bias": zero(e),
               f"{b}.norm2.weight": one(e), f"{b}.norm2.bias": zero(e),
               f"{b}.attn.qkv.weight": rnd(3 * e, e), f"{b}.attn.qkv.bias": zero(3 * e),
               f"{b}.attn.proj.weight": rnd(e, e), f"{b}.attn.proj.bias": zero(e),
               f"{b}.mlp.fc1.weight": rnd(mlp, e), f"{b}.mlp.fc1.bias": zero(mlp),
               f"{b}.mlp.fc2.weight": rnd(e, mlp), f"{b}.mlp.fc2.bias": zero(e)}
    m4 = e * v["spatial_merge_size"] ** 2
    yield {f"{vt}.merger.ln_q.weight": one(e), f"{vt}.merger.ln_q.bias": zero(e),
           f"{vt}.merger.mlp.0.weight": rnd(m4, m4), f"{vt}.merger.mlp.0.bias": zero(m4),
           f"{vt}.merger.mlp.2.weight": rnd(v["hidden_size"], m4), f"{vt}.merger.mlp.2.bias": zero(v["hidden_size"])}
    h, inter = cfg["hidden_size"], cfg["intermediate_size"]
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = h // heads
    lm = "language_model.model"
    yield {f"{lm}.embed_tokens.weight": rnd(cfg["vocab_size"], h), f"{lm}.norm.weight": one(h)}
    for i in range(cfg["num_hidden_layers"]):
        b = f"{lm}.layers.{i}"
        yield {f"{b}.input_layernorm.weight": one(h), f"{b}.post_attention_layernorm.weight": one(h),
               f"{b}.self_attn.q_proj.weight": rnd(heads * hd, h), f"{b}.self_attn.q_proj.bias": zero(heads * hd),
               f"{b}.self_attn.k_proj.weight": rnd(kv * hd, h), f"{b}.self_attn.k_proj.bias": zero(kv * hd),
               f"{b}.self_attn.v_proj.weight": rnd(kv * hd, h), f"{b}.self_attn.v_proj.bias": zero(kv * hd),
               f"{b}.self_attn.o_proj.weight": rnd(h, heads * hd),
               f"{b}.mlp.gate_proj.weight": rnd(inter, h), f"{b}.mlp.up_proj.weight": rnd(inter, h),
               f"{b}.mlp.down_proj.weight": rnd(h, inter)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--shape", default="qwen2-vl-2b", choices=sorted(SHAPES))
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32", "float16"])
    ap.add_argument("--tokenizer-dir", default=str(DEFAULT_TOKDIR),
                    help="folder with tokenizer.json, tokenizer_config.json (chat template) and generation_config.json")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out, tokdir = Path(args.out), Path(args.tokenizer_dir)
    stamp = f"{args.shape} {args.dtype} seed={args.seed}"
    if (out / "model.safetensors").exists() and (out / ".stamp").exists() and (out / ".stamp").read_text() == stamp:
        print(f"[mlx-serving] {out} up to date ({stamp})", file=sys.stderr)
        return
    out.mkdir(parents=True, exist_ok=True)
    (out / ".stamp").unlink(missing_ok=True)
    cfg = config(args.shape, args.dtype)
    mx.random.seed(args.seed)
    weights = {}
    for group in tensors(cfg, getattr(mx, args.dtype)):
        mx.eval(group)
        weights.update(group)
    n = sum(a.size for a in weights.values())
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    (out / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR, indent=2))
    for f in ["tokenizer.json", "tokenizer_config.json", "generation_config.json"]:
        shutil.copyfile(tokdir / f, out / f)
    (out / ".stamp").write_text(stamp)
    print(f"[mlx-serving] {out}: {args.shape}, {n / 1e9:.3f} B parameters, {args.dtype}", file=sys.stderr)


if __name__ == "__main__":
    main()
