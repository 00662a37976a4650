"""Reference dequantizations by the `gguf` Python package (gguf.quants.dequantize, llama.cpp's own
reference code) for crates/core/tests/gguf_quants.rs, which checks our GGUF block decoders
(crates/core/src/models/gguf_quants.rs) against them:

  real/<file>/<tensor>   f32 [rows, cols]: the first rows of one tensor of each stored type in the
                         real GGUF files (Gemma 3 270M Q4_K_M: Q5_0/Q4_K/Q6_K/Q8_0; SmolLM2 Q4_1:
                         Q4_1/Q8_0); the Rust test reads the same rows from the .gguf itself
  synthetic/<TYPE>.raw   uint8: 16 seeded random blocks of every supported type (block scales set
  synthetic/<TYPE>.values to finite f16 values), and their f32 values

Usage: .venv/bin/python scripts/parity/gguf_quants.py OUT.safetensors NAME=FILE.gguf ...
"""
import struct
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize
from safetensors.numpy import save_file

ROWS = 16
# Byte offsets of the f16 scale fields inside one block, per type.
F16_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}


def tensor_table(path):
    """{name: (type, dims innermost-first, absolute offset)} from the GGUF header."""
    with open(path, "rb") as f:
        head = f.read(64 << 20)
    at = 24
    magic, version, n_tensors, n_kv = struct.unpack_from("<4sIQQ", head, 0)
    assert magic == b"GGUF", path
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    align = 32

    def string():
        nonlocal at
        (n,) = struct.unpack_from("<Q", head, at)
        at += 8 + n
        return head[at - n:at].decode("utf-8", "replace")

    def skip(ty):
        nonlocal at
        if ty == 8:
            string()
        elif ty == 9:
            elem, n = struct.unpack_from("<IQ", head, at)
            at += 12
            for _ in range(n):
                skip(elem)
        else:
            at += sizes[ty]

    for _ in range(n_kv):
        key = string()
        (ty,) = struct.unpack_from("<I", head, at)
        at += 4
        if key == "general.alignment":
            (align,) = struct.unpack_from("<I", head, at)
        skip(ty)
    table = {}
    for _ in range(n_tensors):
        name = string()
        (nd,) = struct.unpack_from("<I", head, at)
        dims = struct.unpack_from(f"<{nd}Q", head, at + 4)
        ty, off = struct.unpack_from("<IQ", head, at + 4 + 8 * nd)
        at += 4 + 8 * nd + 12
        table[name] = (T(ty), dims, off)
    data_start = (at + align - 1) // align * align
    return {k: (ty, dims, data_start + off) for k, (ty, dims, off) in table.items()}


def real_rows(name, path, out):
    table = tensor_table(path)
    seen = set()
    for tensor, (ty, dims, offset) in table.items():
        if ty in seen or ty in (T.F32, T.F16) or len(dims) != 2:
            continue
        seen.add(ty)
        block, size = GGML_QUANT_SIZES[ty]
        cols = dims[0]
        row_bytes = cols // block * size
        with open(path, "rb") as f:
            f.seek(offset)
            raw = np.frombuffer(f.read(row_bytes * ROWS), dtype=np.uint8).reshape(ROWS, row_bytes)
        out[f"real/{name}/{tensor}"] = np.ascontiguousarray(dequantize(raw, ty).astype(np.float32))


def synthetic(out):
    rng = np.random.default_rng(7)
    for ty, fields in F16_FIELDS.items():
        block, size = GGML_QUANT_SIZES[ty]
        raw = rng.integers(0, 256, size=(16, size), dtype=np.uint8)
        for at in fields:
            scales = (rng.standard_normal(16) * 0.05).astype(np.float16)
            raw[:, at:at + 2] = scales.view(np.uint8).reshape(16, 2)
        out[f"synthetic/{ty.name}.raw"] = raw.reshape(-1)
        out[f"synthetic/{ty.name}.values"] = dequantize(raw, ty).astype(np.float32).reshape(-1)
    halfs = (rng.standard_normal(64) * 3).astype(np.float16)
    out["synthetic/F16.raw"] = halfs.view(np.uint8).copy()
    out["synthetic/F16.values"] = halfs.astype(np.float32)
    floats = (rng.standard_normal(64) * 3).astype(np.float32)
    bf = (floats.view(np.uint32) >> 16).astype(np.uint16)
    out["synthetic/BF16.raw"] = bf.view(np.uint8).copy()
    out["synthetic/BF16.values"] = dequantize(bf.view(np.uint8).reshape(1, -1), T.BF16).astype(np.float32).reshape(-1)


def main():
    out_path, files = sys.argv[1], sys.argv[2:]
    out = {}
    synthetic(out)
    for spec in files:
        name, path = spec.split("=", 1)
        real_rows(name, path, out)
    save_file(out, out_path + ".part", metadata={"rows": str(ROWS)})
    import os
    os.replace(out_path + ".part", out_path)
    print(f"[mlx-serving] gguf dequantization references: {len(out)} arrays -> {out_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
