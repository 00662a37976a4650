#!/usr/bin/env python3
"""Convert a llama.cpp GGUF of the `llama` architecture into a Hugging Face-style model folder:

  config.json              LlamaForCausalLM / model_type llama (values from the GGUF metadata)
  generation_config.json   bos/eos/pad ids
  model.safetensors        all tensors dequantized, HF names, HF [out, in] layout (float32 default)
  tokenizer.json           rebuilt from GGUF metadata (gpt2-style byte-level BPE)
  tokenizer_config.json    bos/eos/pad tokens + chat_template from the GGUF metadata

Also the `gemma3` architecture (→ Gemma3ForCausalLM / gemma3_text; llama.cpp stores Gemma's
RMSNorm weights as 1 + w, so 1 is subtracted; no q/k permutation). Its SentencePiece tokenizer is
not rebuilt: pass --tokenizer-dir with tokenizer.json + tokenizer_config.json.

Usage: convert_gguf_to_hf.py IN.gguf OUT_DIR [--dtype f32|f16] [--tokenizer-dir DIR]
Needs: gguf numpy safetensors (all in the project's .venv).
"""
import argparse
import json
import os
import shutil
import sys

import gguf
import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize
from safetensors.numpy import save_file


def meta(reader, key, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def f32_clean(x):
    """GGUF stores these floats as f32; print e.g. 1e-05 instead of 9.999999747378752e-06."""
    return float(str(np.float32(x)))


def undo_rope_permute(w, n_heads):
    """llama.cpp's converter reorders each head's q/k rows from HF's "rotate_half" layout
    (first half / second half of the head) to interleaved pairs. Invert that reordering."""
    rows, cols = w.shape
    return w.reshape(n_heads, rows // n_heads // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


def tensor_f32(t):
    shape = tuple(int(d) for d in reversed(t.shape))  # GGUF lists dims innermost first
    if t.tensor_type in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
        a = np.asarray(t.data, dtype=np.float32)
    else:
        a = dequantize(t.data, t.tensor_type).astype(np.float32)
    return a.reshape(shape)


def tokenizer_json(reader):
    kind = meta(reader, "tokenizer.ggml.model")
    if kind != "gpt2":
        sys.exit(f"tokenizer.ggml.model={kind!r}: only gpt2-style byte-level BPE can be rebuilt")
    pre = meta(reader, "tokenizer.ggml.pre")
    tokens = meta(reader, "tokenizer.ggml.tokens")
    types = meta(reader, "tokenizer.ggml.token_type")
    merges = meta(reader, "tokenizer.ggml.merges")
    added = [
        {"id": i, "content": tok, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": tt == 4, "special": tt == 3}
        for i, (tok, tt) in enumerate(zip(tokens, types))
        if tt in (3, 4)  # 3 = CONTROL, 4 = USER_DEFINED
    ]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                  "use_regex": True}
    if pre == "smollm":  # SmolLM splits every digit on its own before the byte-level regex
        pre_tok = {"type": "Sequence",
                   "pretokenizers": [{"type": "Digits", "individual_digits": True}, byte_level]}
    else:
        pre_tok = byte_level
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": pre_tok,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                           "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": {tok: i for i, tok in enumerate(tokens)},
                  "merges": [m.split(" ", 1) for m in merges]},
    }


GLOBAL_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm",
                "output": "lm_head"}
BLOCK_NAMES = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
               "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
               "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
               "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}

GEMMA3_BLOCK_NAMES = dict(BLOCK_NAMES, ffn_norm="pre_feedforward_layernorm",
                          post_attention_norm="post_attention_layernorm",
                          post_ffw_norm="post_feedforward_layernorm",
                          attn_q_norm="self_attn.q_norm", attn_k_norm="self_attn.k_norm")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("gguf")
    ap.add_argument("out")
    ap.add_argument("--dtype", default="f32", choices=["f32", "f16"])
    ap.add_argument("--tokenizer-dir", help="copy tokenizer.json/tokenizer_config.json from here")
    args = ap.parse_args()

    r = GGUFReader(args.gguf)
    arch = meta(r, "general.architecture")
    if arch not in ("llama", "gemma3"):
        sys.exit(f"unsupported GGUF architecture {arch!r} (llama, gemma3)")
    a = lambda k, d=None: meta(r, f"{arch}.{k}", d)  # noqa: E731
    n_head = a("attention.head_count")
    n_kv = a("attention.head_count_kv", n_head)
    hidden = a("embedding_length")
    tokens = meta(r, "tokenizer.ggml.tokens")
    bos = meta(r, "tokenizer.ggml.bos_token_id")
    eos = meta(r, "tokenizer.ggml.eos_token_id")
    pad = meta(r, "tokenizer.ggml.padding_token_id")
    unk = meta(r, "tokenizer.ggml.unknown_token_id")
    tied = "output.weight" not in {t.name for t in r.tensors}
    dtype_name = {"f32": "float32", "f16": "float16"}[args.dtype]

    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": a("feed_forward_length"),
        "num_hidden_layers": a("block_count"),
        "num_attention_heads": n_head,
        "num_key_value_heads": n_kv,
        "head_dim": a("rope.dimension_count", hidden // n_head),
        "rms_norm_eps": f32_clean(a("attention.layer_norm_rms_epsilon")),
        "rope_theta": f32_clean(a("rope.freq_base", 10000.0)),
        "rope_scaling": None,
        "max_position_embeddings": a("context_length"),
        "vocab_size": len(tokens),
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": tied,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": pad,
        "initializer_range": 0.02,
        "use_cache": True,
        "torch_dtype": dtype_name,
    }

    if arch == "gemma3":
        layers = a("block_count")
        config.update({
            "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text",
            "head_dim": a("attention.key_length"), "hidden_act": "gelu_pytorch_tanh",
            "hidden_activation": "gelu_pytorch_tanh",
            "rope_local_base_freq": 10000.0, "sliding_window": a("attention.sliding_window"),
            "sliding_window_pattern": 6,
            "layer_types": ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention"
                            for i in range(layers)],
            "query_pre_attn_scalar": a("attention.key_length"),
            "final_logit_softcapping": None, "attn_logit_softcapping": None})
        del config["mlp_bias"], config["initializer_range"]

    np_dtype = np.float32 if args.dtype == "f32" else np.float16
    weights = {}
    for t in r.tensors:
        base, suffix = t.name.rsplit(".", 1)
        w = tensor_f32(t)
        if base.startswith("blk."):
            _, layer, kind = base.split(".", 2)
            if arch == "llama" and kind == "attn_q":
                w = undo_rope_permute(w, n_head)
            elif arch == "llama" and kind == "attn_k":
                w = undo_rope_permute(w, n_kv)
            names = GEMMA3_BLOCK_NAMES if arch == "gemma3" else BLOCK_NAMES
            name = f"model.layers.{layer}.{names[kind]}.{suffix}"
        else:
            name = f"{GLOBAL_NAMES[base]}.{suffix}"
        if arch == "gemma3" and "norm" in base:
            w = w - 1.0  # llama.cpp stores Gemma RMSNorm weights as 1 + w
        weights[name] = np.ascontiguousarray(w.astype(np_dtype))

    os.makedirs(args.out, exist_ok=True)
    out = lambda f: os.path.join(args.out, f)  # noqa: E731
    save_file(weights, out("model.safetensors"), metadata={"format": "pt"})
    os.chmod(out("model.safetensors"), 0o644)
    with open(out("config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(out("generation_config.json"), "w") as f:
        json.dump({"bos_token_id": bos, "eos_token_id": eos, "pad_token_id": pad}, f, indent=2)
    if args.tokenizer_dir:
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copyfile(os.path.join(args.tokenizer_dir, f), out(f))
        print(f"[mlx-serving] wrote {args.out} (tokenizer from {args.tokenizer_dir})", file=sys.stderr)
        return
    with open(out("tokenizer.json"), "w") as f:
        json.dump(tokenizer_json(r), f, ensure_ascii=False)
    name_of = lambda i: tokens[i] if i is not None else None  # noqa: E731
    tok_cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "clean_up_tokenization_spaces": False,
        "model_max_length": config["max_position_embeddings"],
        "add_bos_token": bool(meta(r, "tokenizer.ggml.add_bos_token", False)),
        "bos_token": name_of(bos),
        "eos_token": name_of(eos),
        "pad_token": name_of(pad),
        "unk_token": name_of(unk),
    }
    chat_template = meta(r, "tokenizer.chat_template")
    if chat_template:
        tok_cfg["chat_template"] = chat_template
    with open(out("tokenizer_config.json"), "w") as f:
        json.dump(tok_cfg, f, indent=2, ensure_ascii=False)
    n_params = sum(v.size for v in weights.values())
    print(f"[mlx-serving] wrote {args.out}: tensors={len(weights)} params={n_params} "
          f"tied={tied} dtype={dtype_name}", file=sys.stderr)


if __name__ == "__main__":
    main()
