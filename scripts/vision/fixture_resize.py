"""Pillow bicubic resize cases for the resampling parity test, written by make_vision_fixtures.py.

Random RGB noise (noise makes every rounding difference visible) at random sizes, each resized
with Pillow's `Image.resize(size, BICUBIC)` (what the image processors call) to a random target:
shrinking, enlarging, and mixed (one side shrinks, the other grows), with the pairs near Pillow's
pass-order boundary over-represented. Stored as cases.safetensors (u8 `in.N` [h0, w0, 3] and
`out.N` [h1, w1, 3]) + cases.json (the sizes).
"""
import json

import numpy as np
from PIL import Image
from safetensors.numpy import save_file

CASES = 400


def sizes(rng):
    w0, h0 = (int(v) for v in rng.integers(1, 97, 2))
    if rng.random() < 0.3:
        # near the boundary between the two pass orders: h0 - h1 close to 2 * (w0 - w1)
        w1 = int(rng.integers(1, 97))
        h1 = h0 - 2 * (w0 - w1) + int(rng.integers(-1, 2))
        if not 1 <= h1 <= 96:
            h1 = int(rng.integers(1, 97))
    else:
        w1, h1 = (int(v) for v in rng.integers(1, 97, 2))
    return w0, h0, w1, h1


def write(out, seed=1313):
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tensors, meta = {}, []
    for n in range(CASES):
        w0, h0, w1, h1 = sizes(rng)
        src = rng.integers(0, 256, (h0, w0, 3), dtype=np.uint8)
        dst = np.asarray(Image.fromarray(src, "RGB").resize((w1, h1), Image.BICUBIC))
        tensors[f"in.{n}"] = src
        tensors[f"out.{n}"] = np.ascontiguousarray(dst)
        meta.append({"in": [w0, h0], "out": [w1, h1]})
    save_file(tensors, str(out / "cases.safetensors"))
    (out / "cases.json").write_text(json.dumps(meta))
