"""The seeded tiny LLaVA fixture (model_type llava), written by make_vision_fixtures.py.

mlx-community layout: a CLIP vision tower (`vision_tower.vision_model.*`, 3 encoder layers,
56-px images in 14-px patches, the patch weight as [out, P, P, C]), the two-layer projector
(`multi_modal_projector.*`) and a llama language model (`language_model.*`, untied head);
feature layer -2 with the `default` strategy (class token dropped: 16 image tokens). The
tokenizer is the real Qwen one with an added `<image>` special token (LLaVA's image
placeholder); CLIPImageProcessor settings resize the shorter side to 56 and center-crop 56x56.

`siglip=True` (folder llava-siglip): a SigLIP tower instead (model_type siglip_vision_model: a
biased patch embedding, no class token, one position per patch, no LayerNorm before the
encoder), feature layer -1 with the `full` strategy (16 image tokens), a qwen2 language model
(q/k/v biases), and SiglipImageProcessor settings (resize straight to 56x56, mean/std 0.5).
"""
import json

import numpy as np
from safetensors.numpy import save_file

IMAGE_TOKEN = "<image>"

# Our own Jinja rendering: the Qwen-style turns, an image part rendered as LLaVA's placeholder.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>\n"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def write_tokenizer(out, tokdir):
    """Copies the Qwen tokenizer with `<image>` added after its last token; returns its id."""
    tok = json.loads((tokdir / "tokenizer.json").read_text())
    image_id = max(max(a["id"] for a in tok["added_tokens"]), max(tok["model"]["vocab"].values())) + 1
    entry = {"id": image_id, "content": IMAGE_TOKEN, "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": True}
    tok["added_tokens"].append(entry)
    (out / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False))
    tc = json.loads((tokdir / "tokenizer_config.json").read_text())
    tc["chat_template"] = CHAT_TEMPLATE
    tc.setdefault("added_tokens_decoder", {})[str(image_id)] = {k: v for k, v in entry.items() if k != "id"}
    (out / "tokenizer_config.json").write_text(json.dumps(tc, indent=2, ensure_ascii=False))
    return image_id


def config(image_id, eos, bos, siglip=False):
    cfg = {
        "architectures": ["LlavaForConditionalGeneration"], "model_type": "llava",
        "image_token_index": image_id, "vision_feature_layer": -2,
        "vision_feature_select_strategy": "default", "projector_hidden_act": "gelu",
        "eos_token_id": eos, "bos_token_id": bos,
        "text_config": {
            "model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 4096,
            "vocab_size": 151936, "tie_word_embeddings": False,
        },
        "vision_config": {
            "model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 3, "num_attention_heads": 2, "image_size": 56, "patch_size": 14,
            "projection_dim": 32, "num_channels": 3, "layer_norm_eps": 1e-5, "hidden_act": "quick_gelu",
        },
    }
    if siglip:
        cfg["vision_feature_layer"], cfg["vision_feature_select_strategy"] = -1, "full"
        cfg["text_config"]["model_type"] = "qwen2"
        cfg["vision_config"].update({"model_type": "siglip_vision_model", "layer_norm_eps": 1e-6,
                                     "hidden_act": "gelu_pytorch_tanh"})
    return cfg


def weights(cfg, seed):
    siglip = cfg["vision_config"]["model_type"] == "siglip_vision_model"
    rng = np.random.default_rng(seed)
    f32 = np.float32

    def normal(shape, std):
        return (rng.standard_normal(shape) * std).astype(f32)

    def near(shape, mean, std=0.1):
        return (mean + rng.standard_normal(shape) * std).astype(f32)

    v, t = cfg["vision_config"], cfg["text_config"]
    e, p, inter = v["hidden_size"], v["patch_size"], v["intermediate_size"]
    n = (v["image_size"] // p) ** 2 + (0 if siglip else 1)
    vm = "vision_tower.vision_model"
    w = {
        f"{vm}.embeddings.patch_embedding.weight": normal((e, p, p, 3), 1.0 / np.sqrt(p * p * 3)),
        f"{vm}.embeddings.position_embedding.weight": normal((n, e), 0.2),
    }
    if siglip:
        w[f"{vm}.embeddings.patch_embedding.bias"] = normal((e,), 0.05)
    else:
        w[f"{vm}.embeddings.class_embedding"] = normal((e,), 0.5)
    for ln in ("post_layernorm",) if siglip else ("pre_layrnorm", "post_layernorm"):
        w[f"{vm}.{ln}.weight"] = near((e,), 1.0)
        w[f"{vm}.{ln}.bias"] = normal((e,), 0.05)
    for i in range(v["num_hidden_layers"]):
        b = f"{vm}.encoder.layers.{i}"
        for ln in ("layer_norm1", "layer_norm2"):
            w[f"{b}.{ln}.weight"] = near((e,), 1.0)
            w[f"{b}.{ln}.bias"] = normal((e,), 0.05)
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            w[f"{b}.self_attn.{proj}.weight"] = normal((e, e), 1.0 / np.sqrt(e))
            w[f"{b}.self_attn.{proj}.bias"] = normal((e,), 0.05)
        w[f"{b}.mlp.fc1.weight"] = normal((inter, e), 1.0 / np.sqrt(e))
        w[f"{b}.mlp.fc1.bias"] = normal((inter,), 0.05)
        w[f"{b}.mlp.fc2.weight"] = normal((e, inter), 0.5 / np.sqrt(inter))
        w[f"{b}.mlp.fc2.bias"] = normal((e,), 0.05)
    h = t["hidden_size"]
    w["multi_modal_projector.linear_1.weight"] = normal((h, e), 1.0 / np.sqrt(e))
    w["multi_modal_projector.linear_1.bias"] = normal((h,), 0.05)
    # image features at the scale of the token embeddings (std ~0.5)
    w["multi_modal_projector.linear_2.weight"] = normal((h, h), 0.5 / np.sqrt(h))
    w["multi_modal_projector.linear_2.bias"] = normal((h,), 0.05)
    heads, kv, L = t["num_attention_heads"], t["num_key_value_heads"], t["num_hidden_layers"]
    hd, inter_t = h // heads, t["intermediate_size"]
    lm = "language_model.model"
    w[f"{lm}.embed_tokens.weight"] = normal((t["vocab_size"], h), 0.5)
    for i in range(L):
        b = f"{lm}.layers.{i}"
        w[f"{b}.input_layernorm.weight"] = near((h,), 1.0)
        w[f"{b}.post_attention_layernorm.weight"] = near((h,), 1.0)
        w[f"{b}.self_attn.q_proj.weight"] = normal((heads * hd, h), 0.25)
        w[f"{b}.self_attn.k_proj.weight"] = normal((kv * hd, h), 0.25)
        w[f"{b}.self_attn.v_proj.weight"] = normal((kv * hd, h), 0.25)
        if t["model_type"] == "qwen2":
            w[f"{b}.self_attn.q_proj.bias"] = normal((heads * hd,), 0.1)
            w[f"{b}.self_attn.k_proj.bias"] = normal((kv * hd,), 0.1)
            w[f"{b}.self_attn.v_proj.bias"] = normal((kv * hd,), 0.1)
        w[f"{b}.self_attn.o_proj.weight"] = normal((h, heads * hd), 0.25)
        w[f"{b}.mlp.gate_proj.weight"] = normal((inter_t, h), 0.25)
        w[f"{b}.mlp.up_proj.weight"] = normal((inter_t, h), 0.25)
        w[f"{b}.mlp.down_proj.weight"] = normal((h, inter_t), 0.25)
    # a large final norm gives clear top-2 margins in the logits
    w[f"{lm}.norm.weight"] = near((h,), 2.0)
    w["language_model.lm_head.weight"] = normal((t["vocab_size"], h), 0.5)
    return w


def preprocessor_config(siglip=False):
    if siglip:
        return {
            "image_processor_type": "SiglipImageProcessor", "processor_class": "LlavaProcessor",
            "do_resize": True, "size": {"height": 56, "width": 56}, "resample": 3,
            "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "do_convert_rgb": True,
            "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
        }
    return {
        "image_processor_type": "CLIPImageProcessor", "processor_class": "LlavaProcessor",
        "do_resize": True, "size": {"shortest_edge": 56}, "resample": 3,
        "do_center_crop": True, "crop_size": {"height": 56, "width": 56},
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "do_convert_rgb": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
    }


def write(out, tokdir, generation_config, siglip=False):
    out.mkdir(parents=True, exist_ok=True)
    image_id = write_tokenizer(out, tokdir)
    cfg = config(image_id, generation_config["eos_token_id"], generation_config["bos_token_id"], siglip)
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    save_file(weights(cfg, seed=7117 if siglip else 7007), str(out / "model.safetensors"), metadata={"format": "mlx"})
    (out / "preprocessor_config.json").write_text(json.dumps(preprocessor_config(siglip), indent=2))
    (out / "processor_config.json").write_text(json.dumps(
        {"processor_class": "LlavaProcessor", "patch_size": 14,
         "vision_feature_select_strategy": "full" if siglip else "default",
         "image_token": IMAGE_TOKEN, "num_additional_image_tokens": 0 if siglip else 1}, indent=2))
    (out / "generation_config.json").write_text(json.dumps(generation_config))
