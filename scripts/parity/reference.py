#!/usr/bin/env python3
"""Reference greedy generations from mlx-lm (the correctness oracle, DESIGN.md decision 6).

For each model folder: encode a fixed English prompt with the folder's tokenizer (mlx-lm's
tokenizer wrapper, no chat template), then run the mlx-lm model on the CPU in float32 with its KV
cache for GREEDY_TOKENS greedy steps, ignoring EOS. Writes

  .cache/parity/<name>.safetensors   prompt int32 [P], tokens int32 [N], logits float32 [N, V],
                                     top2_gap float32 [N]   (N = 64)
  .cache/parity/<name>.json          model_dir (relative to the repo root), prompt, tokens,
                                     min_top2_gap, n_distinct_tokens, mlx_version, mlx_lm_version

Row 0 of `logits` is the last-position logits of the prompt forward pass; row i (i >= 1) is the
logits of the decode step that consumed tokens[i-1] and produced tokens[i].

The reference must run under the same BLAS as the engine (summation order changes the last
bits): the engine links Debian's OpenBLAS on Linux, so run_all.sh starts this script with
LD_PRELOAD=<libopenblas.so.0> (a test tool only; the addon itself never uses LD_PRELOAD). The BLAS
that served `cblas_sgemm` is recorded as `blas` in the outputs.

Usage: .venv/bin/python scripts/parity/reference.py NAME=MODEL_DIR [NAME=MODEL_DIR ...]
       (MODEL_DIR relative to the repo root or absolute)
"""
import ctypes
import json
import sys
import time
from pathlib import Path

import mlx.core as mx
import numpy as np
from safetensors.numpy import save_file

import mlx_lm
from mlx_lm.models.cache import make_prompt_cache

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / ".cache" / "parity"
GREEDY_TOKENS = 64
BLAS = "unknown"
PROMPT_TEXT = ("The quick brown fox jumps over the lazy dog. "
               "In 1969, astronauts first walked on the Moon, and the whole world watched.")


def log(msg):
    print(f"[mlx-serving] {msg}", file=sys.stderr, flush=True)


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def blas_in_use():
    """'openblas (libopenblas.so.0)' when an OpenBLAS was preloaded (then libmlx binds to it),
    else 'reference (bundled)': the mlx-cpu wheel's own libblas, loaded RTLD_LOCAL by Python."""
    try:
        fn = ctypes.CDLL(None).cblas_sgemm
    except (AttributeError, OSError):
        return "reference (bundled)"
    info = _DlInfo()
    libc = ctypes.CDLL(None)
    if not libc.dladdr(ctypes.cast(fn, ctypes.c_void_p), ctypes.byref(info)) or not info.dli_fname:
        return "unknown"
    name = info.dli_fname.decode().rsplit("/", 1)[-1]
    kind = "openblas" if "openblas" in name else ("reference" if "blas" in name else "unknown")
    return f"{kind} ({name})"


def patch_gather_qmm():
    """mlx-lm 0.32.2's QuantizedSwitchLinear (quantized mixture-of-experts layers) passes
    `global_scale=` to mx.gather_qmm, an argument MLX 0.32.2 does not have yet. For affine
    quantization it is always None, so drop it then (and refuse anything else): the computation
    is still MLX 0.32.2's own gather_qmm."""
    if "global_scale" in (mx.gather_qmm.__doc__ or ""):
        return
    original = mx.gather_qmm

    def gather_qmm(*args, global_scale=None, **kwargs):
        if global_scale is not None:
            raise SystemExit("gather_qmm with a global scale needs a newer MLX")
        return original(*args, **kwargs)

    mx.gather_qmm = gather_qmm


def top2_gap(row):
    a, b = np.partition(row, -2)[-2:]
    return float(abs(b - a))


def run(name, model_dir):
    t0 = time.time()
    model, tokenizer = mlx_lm.load(str(model_dir))
    # Every floating parameter must be float32 (quantized weights are packed uint32).
    for k, v in mlx_lm.utils.tree_flatten(model.parameters()):
        if mx.issubdtype(v.dtype, mx.floating) and v.dtype != mx.float32:
            raise SystemExit(f"{name}: parameter {k} is {v.dtype}, expected float32")
    prompt = list(tokenizer.encode(PROMPT_TEXT))

    cache = make_prompt_cache(model)
    logits = model(mx.array(prompt, dtype=mx.int32)[None], cache=cache)[0, -1, :]
    rows, tokens = [], []
    for i in range(GREEDY_TOKENS):
        row = np.array(logits.astype(mx.float32))
        tok = int(np.argmax(row))
        rows.append(row)
        tokens.append(tok)
        if i + 1 < GREEDY_TOKENS:
            logits = model(mx.array([[tok]], dtype=mx.int32), cache=cache)[0, -1, :]

    logits_np = np.stack(rows).astype(np.float32)
    gaps = np.array([top2_gap(r) for r in rows], dtype=np.float32)
    OUT.mkdir(parents=True, exist_ok=True)
    save_file({"prompt": np.array(prompt, dtype=np.int32),
               "tokens": np.array(tokens, dtype=np.int32),
               "logits": logits_np,
               "top2_gap": gaps},
              str(OUT / f"{name}.safetensors"),
              metadata={"mlx_version": mx.__version__, "mlx_lm_version": mlx_lm.__version__,
                        "blas": BLAS})
    try:
        rel = model_dir.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        rel = str(model_dir)
    meta = {
        "model_dir": rel,
        "prompt_text": PROMPT_TEXT,
        "prompt": prompt,
        "tokens": tokens,
        "text": tokenizer.decode(tokens),
        "min_top2_gap": float(gaps.min()),
        "n_distinct_tokens": len(set(tokens)),
        "vocab_size": int(logits_np.shape[1]),
        "mlx_version": mx.__version__,
        "mlx_lm_version": mlx_lm.__version__,
        "blas": BLAS,
    }
    (OUT / f"{name}.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    log(f"{name}: prompt {len(prompt)} tokens, {len(set(tokens))} distinct of {GREEDY_TOKENS}, "
        f"min top-2 gap {gaps.min():.4g} (step {int(gaps.argmin())}), blas {BLAS}, "
        f"{time.time() - t0:.1f}s")


def main():
    args = sys.argv[1:]
    if not args or any("=" not in a for a in args):
        sys.exit(__doc__)
    global BLAS
    BLAS = blas_in_use()
    patch_gather_qmm()
    mx.set_default_device(mx.cpu)
    for a in args:
        name, d = a.split("=", 1)
        p = Path(d)
        run(name, p if p.is_absolute() else ROOT / p)


if __name__ == "__main__":
    main()
