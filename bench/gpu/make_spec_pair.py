"""A target/draft pair for the speculative-decoding benchmark, from a random-weight model made by
make_random_models.py. Random weights give a draft made of the target's first layers no reason to
agree with the target (acceptance ~0), unlike a trained model whose upper layers refine rather
than replace the early layers' prediction. To get that realistic regime the target's layers from
`--keep` on are damped: their residual-branch output projections (o_proj, down_proj) are scaled
by `--alpha`, so they nudge the prediction instead of overwriting it; `--alpha` sets how often
the draft (the first N layers + final norm + the shared tied embedding) agrees, and the benchmark
reports the acceptance it measures. The target keeps its full size and cost.

usage: python make_spec_pair.py <src_model_dir> <out_dir> --alpha 0.3 --keep 4 --drafts 4,8
"""
import argparse
import json
import shutil
from pathlib import Path

import mlx.core as mx


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--alpha", type=float, required=True)
    ap.add_argument("--keep", type=int, default=4, help="layers left undamped")
    ap.add_argument("--drafts", default="4,8", help="draft depths (layers kept)")
    a = ap.parse_args()
    src, out = Path(a.src), Path(a.out)
    cfg = json.loads((src / "config.json").read_text())
    w = mx.load(str(src / "model.safetensors"))
    tag = f"a{a.alpha:g}"
    target = out / f"target-{tag}"
    damped = dict(w)
    for i in range(a.keep, cfg["num_hidden_layers"]):
        for name in ("self_attn.o_proj.weight", "mlp.down_proj.weight"):
            k = f"model.layers.{i}.{name}"
            damped[k] = (w[k].astype(mx.float32) * a.alpha).astype(w[k].dtype)
    write(src, target, cfg, damped)
    for n in [int(x) for x in a.drafts.split(",")]:
        kept = {k: v for k, v in damped.items() if not k.startswith("model.layers.") or int(k.split(".")[2]) < n}
        write(src, out / f"draft-{tag}-L{n}", dict(cfg, num_hidden_layers=n), kept)
    print("made", target, "and drafts", a.drafts)


def write(src, dst, cfg, weights):
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.name not in ("config.json", "model.safetensors") and f.is_file():
            shutil.copy(f, dst / f.name)
    (dst / "config.json").write_text(json.dumps(cfg, indent=2))
    mx.eval(weights)
    mx.save_safetensors(str(dst / "model.safetensors"), weights, metadata={"format": "mlx"})


if __name__ == "__main__":
    main()
