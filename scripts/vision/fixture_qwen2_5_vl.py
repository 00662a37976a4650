"""The seeded tiny Qwen2.5-VL fixture (model_type qwen2_5_vl), written by make_vision_fixtures.py.

Same language model and tokenizer as the tiny Qwen2-VL fixture; the vision tower is Qwen2.5-VL's:
RMSNorm (weight only) + SwiGLU blocks with biases, an RMSNorm patch merger, and window attention
(window_size 56 px = 2 x 2 merged tokens with 14-px patches and 2 x 2 merging, so the test images
split into several windows, some cut at the image edge) in every block but block 1.
"""
import json

import numpy as np
from safetensors.numpy import save_file


def config(base):
    """`base`: the tiny Qwen2-VL config; the language-model part is shared."""
    cfg = {k: v for k, v in base.items() if k != "vision_config"}
    cfg["architectures"] = ["Qwen2_5_VLForConditionalGeneration"]
    cfg["model_type"] = "qwen2_5_vl"
    cfg["vision_config"] = {
        "model_type": "qwen2_5_vl", "depth": 3, "hidden_size": 32, "intermediate_size": 48,
        "out_hidden_size": base["hidden_size"], "num_heads": 2, "in_chans": 3,
        "patch_size": 14, "spatial_patch_size": 14, "spatial_merge_size": 2,
        "temporal_patch_size": 2, "window_size": 56, "fullatt_block_indexes": [1],
        "tokens_per_second": 2, "hidden_act": "silu",
    }
    return cfg


def weights(cfg, lm_weights, seed):
    """Vision-tower weights for `cfg` plus the language-model tensors of `lm_weights`."""
    rng = np.random.default_rng(seed)
    f32 = np.float32

    def normal(shape, std):
        return (rng.standard_normal(shape) * std).astype(f32)

    def near(shape, mean, std=0.1):
        return (mean + rng.standard_normal(shape) * std).astype(f32)

    v = cfg["vision_config"]
    e, p, t, c, inter = v["hidden_size"], v["patch_size"], v["temporal_patch_size"], v["in_chans"], v["intermediate_size"]
    vt = "vision_tower"
    w = {f"{vt}.patch_embed.proj.weight": normal((e, t, p, p, c), 1.0 / np.sqrt(t * p * p * c))}
    for i in range(v["depth"]):
        b = f"{vt}.blocks.{i}"
        w[f"{b}.norm1.weight"] = near((e,), 1.0)
        w[f"{b}.norm2.weight"] = near((e,), 1.0)
        w[f"{b}.attn.qkv.weight"] = normal((3 * e, e), 1.0 / np.sqrt(e))
        w[f"{b}.attn.qkv.bias"] = normal((3 * e,), 0.05)
        w[f"{b}.attn.proj.weight"] = normal((e, e), 0.5 / np.sqrt(e))
        w[f"{b}.attn.proj.bias"] = normal((e,), 0.05)
        for n, shape in (("gate_proj", (inter, e)), ("up_proj", (inter, e))):
            w[f"{b}.mlp.{n}.weight"] = normal(shape, 1.0 / np.sqrt(e))
            w[f"{b}.mlp.{n}.bias"] = normal((inter,), 0.05)
        w[f"{b}.mlp.down_proj.weight"] = normal((e, inter), 0.5 / np.sqrt(inter))
        w[f"{b}.mlp.down_proj.bias"] = normal((e,), 0.05)
    m4 = e * v["spatial_merge_size"] ** 2
    w[f"{vt}.merger.ln_q.weight"] = near((e,), 1.0)
    w[f"{vt}.merger.mlp.0.weight"] = normal((m4, m4), 1.0 / np.sqrt(m4))
    w[f"{vt}.merger.mlp.0.bias"] = normal((m4,), 0.05)
    w[f"{vt}.merger.mlp.2.weight"] = normal((v["out_hidden_size"], m4), 0.5 / np.sqrt(m4))
    w[f"{vt}.merger.mlp.2.bias"] = normal((v["out_hidden_size"],), 0.05)
    w.update({k: x for k, x in lm_weights.items() if not k.startswith(vt + ".")})
    return w


def preprocessor_config(base):
    return {**base, "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2_5_VLProcessor"}


def write(out, base_cfg, lm_weights, base_preprocessor, copy_tokenizer):
    """Writes the fixture folder `out`; `copy_tokenizer(out)` adds the tokenizer files."""
    out.mkdir(parents=True, exist_ok=True)
    cfg = config(base_cfg)
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    save_file(weights(cfg, lm_weights, seed=2525), str(out / "model.safetensors"), metadata={"format": "mlx"})
    copy_tokenizer(out)
    (out / "preprocessor_config.json").write_text(json.dumps(preprocessor_config(base_preprocessor), indent=2))
