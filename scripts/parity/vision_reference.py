#!/usr/bin/env python3
"""mlx-vlm reference outputs for the vision parity tests (run with the .venv-vlm python).

For the fixture model folder given, writes <repo>/.cache/parity/vision/<name>.safetensors + .json:
  * per test image (.cache/fixtures/vision/images/*): mlx-vlm's preprocessed `pixel_values`
    (Qwen-VL: float32 [patches, C*T*P*P] and `image_grid_thw`; LLaVA: [1, 3, H, W]), exactly as `mlx_vlm.prepare_inputs`
    produces them from the file (PIL decode, EXIF transpose, RGB, the processor's smart resize
    and normalization);
  * per generation case: the prompt rendered by `mlx_vlm.prompt_utils.apply_chat_template`, the
    expanded `input_ids`, the first-step logits (float32 [vocab]) and 32 greedy token ids from
    `mlx_vlm.generate.generate_step` (temperature 0), with each step's top-2 logit gap.

Usage: .venv-vlm/bin/python scripts/parity/vision_reference.py NAME=MODEL_DIR [...]
"""
import json
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np
from safetensors.numpy import save_file

from mlx_vlm import load
from mlx_vlm.generate.ar import generate_step
from mlx_vlm.prompt_utils import apply_chat_template
from mlx_vlm.utils import load_image, prepare_inputs

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / ".cache" / "fixtures" / "vision" / "images"
OUT = ROOT / ".cache" / "parity" / "vision"
IMAGE_FILES = ["scene.png", "scene.jpg", "scene.webp", "big.png", "tiny.png", "gray.png", "rgba.png"]
CASES = [
    {"name": "scene", "image": "scene.png", "prompt": "Describe this image."},
    {"name": "big", "image": "big.png", "prompt": "What is in the picture?"},
]
STEPS = 32


def llava_inputs(processor, image, text):
    """What mlx-vlm's LlavaProcessor.__call__ computes, minus the tokenizer kwargs that
    `prepare_inputs` also forwards to the image processor (transformers 5 rejects them there,
    so mlx-vlm 0.7.6's llava path fails before the model runs): the image loaded by mlx-vlm,
    the processor's own image processor, and its image-token expansion."""
    pv = np.array(processor.image_processor([load_image(str(IMAGES / image))])["pixel_values"], dtype=np.float32)
    n = (pv.shape[2] // processor.patch_size) * (pv.shape[3] // processor.patch_size) + processor.num_additional_image_tokens
    if processor.vision_feature_select_strategy == "default":
        n -= 1
    ids = processor.tokenizer(text.replace(processor.image_token, processor.image_token * n), add_special_tokens=False)["input_ids"]
    return {"input_ids": mx.array([ids]), "pixel_values": mx.array(pv)}


def model_inputs(processor, config, image, prompt):
    text = apply_chat_template(processor, config, prompt, num_images=1)
    if config.model_type == "llava":
        return text, llava_inputs(processor, image, text)
    inputs = prepare_inputs(processor, images=[str(IMAGES / image)], prompts=text)
    return text, inputs


def greedy(model, inputs):
    kwargs = {k: v for k, v in inputs.items() if k not in ("input_ids", "pixel_values", "attention_mask")}
    ids, gaps = [], []
    gen = generate_step(inputs["input_ids"], model, inputs["pixel_values"], inputs.get("attention_mask"),
                        max_tokens=STEPS, temperature=0.0, **kwargs)
    for token, logprobs in gen:
        lp = np.array(logprobs.astype(mx.float32)).reshape(-1)
        top2 = np.sort(lp)[-2:]
        gaps.append(float(top2[1] - top2[0]))
        ids.append(int(token.item() if hasattr(token, "item") else token))
        if len(ids) >= STEPS:
            break
    return ids, gaps


def first_logits(model, inputs):
    kwargs = {k: v for k, v in inputs.items() if k not in ("input_ids", "pixel_values", "attention_mask")}
    model.language_model._position_ids = None
    model.language_model._rope_deltas = None
    out = model(inputs["input_ids"], inputs["pixel_values"], mask=None, **kwargs)
    logits = out.logits if hasattr(out, "logits") else out
    return np.array(logits[0, -1].astype(mx.float32))


def run(name, model_dir):
    model, processor = load(model_dir)
    config = model.config
    tensors, meta = {}, {"model": name, "images": {}, "cases": []}
    for f in IMAGE_FILES:
        _, inputs = model_inputs(processor, config, f, "x")
        pv = np.array(inputs["pixel_values"].astype(mx.float32))
        tensors[f"pixels.{f}"] = pv
        meta["images"][f] = {"shape": list(pv.shape)}
        if "image_grid_thw" in inputs:  # Qwen-VL families; LLaVA's pixels are one fixed-size crop
            meta["images"][f]["grid_thw"] = np.array(inputs["image_grid_thw"]).astype(np.int64).reshape(-1).tolist()
    for case in CASES:
        text, inputs = model_inputs(processor, config, case["image"], case["prompt"])
        ids, gaps = greedy(model, inputs)
        tensors[f"logits.{case['name']}"] = first_logits(model, inputs)
        meta["cases"].append({**case, "rendered_prompt": text,
                              "input_ids": np.array(inputs["input_ids"]).reshape(-1).tolist(),
                              "greedy_ids": ids, "top2_gaps": gaps})
        print(f"[mlx-serving] {name}/{case['name']}: {len(ids)} ids, min top-2 gap {min(gaps):.4g}",
              file=sys.stderr)
    OUT.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(OUT / f"{name}.safetensors"))
    (OUT / f"{name}.json").write_text(json.dumps(meta, indent=1))


def main():
    for arg in sys.argv[1:]:
        name, model_dir = arg.split("=", 1)
        run(name, model_dir)


if __name__ == "__main__":
    main()
