"""Reference renderings of real chat templates by Hugging Face transformers (apply_chat_template's
renderer, `transformers.utils.chat_template_utils.render_jinja_template`), for
crates/core/tests/chat_templates.rs, which renders the same cases with our minijinja setup and
requires byte-identical output (or an error where transformers raises).

Templates: llama.cpp's models/templates/*.jinja (scripts/models/fetch_llama_cpp_models.sh).
`strftime_now` is frozen at FROZEN_NOW on both sides so date-stamping templates are deterministic.

Usage: .venv/bin/python scripts/parity/chat_templates.py TEMPLATES_DIR OUT.json
"""
import datetime as _dt
import json
import sys
from pathlib import Path

import transformers
from transformers.utils import chat_template_utils as ctu

# 2024-07-26 13:05:09, a Friday (the Llama-3.1 templates' own default date is 26 Jul 2024).
FROZEN_NOW = _dt.datetime(2024, 7, 26, 13, 5, 9)
FROZEN_UNIX = int(FROZEN_NOW.replace(tzinfo=_dt.timezone.utc).timestamp())


class _FrozenDatetime(_dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return FROZEN_NOW


ctu.datetime = _FrozenDatetime  # the module's strftime_now calls datetime.now()

# Special tokens by template family (what the model's tokenizer_config would pass as
# bos_token/eos_token); templates that print them must get the model's own texts.
TOKENS = [
    ("llama-3", "<|begin_of_text|>", "<|eot_id|>"),
    ("Llama-3", "<|begin_of_text|>", "<|eot_id|>"),
    ("Hermes", "<|begin_of_text|>", "<|im_end|>"),
    ("firefunction", "<|begin_of_text|>", "<|eot_id|>"),
    ("functionary", "<|begin_of_text|>", "<|eot_id|>"),
    ("DeepSeek-R1-Distill-Llama", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    ("DeepSeek", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    ("deepseek", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    ("gemma", "<bos>", "<eos>"),
    ("Mistral", "<s>", "</s>"),
    ("mistral", "<s>", "</s>"),
    ("Ministral", "<s>", "</s>"),
    ("Qwen", None, "<|im_end|>"),
    ("Phi-3", "<s>", "<|endoftext|>"),
    ("SmolLM3", None, "<|im_end|>"),
    ("Cohere", "<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>"),
    ("granite", None, "<|end_of_text|>"),
    ("gpt-oss", "<|startoftext|>", "<|return|>"),
]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
TOOL_CALL = {
    "id": "call12345",
    "type": "function",
    "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}},
}

CASES = {
    "user": dict(messages=[{"role": "user", "content": "What is the capital of France?"}]),
    "system_user": dict(
        messages=[
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "Hi there!"},
        ]
    ),
    "multi_turn": dict(
        messages=[
            {"role": "system", "content": "Answer in one word."},
            {"role": "user", "content": "Capital of Italy?"},
            {"role": "assistant", "content": "Rome."},
            {"role": "user", "content": "And of Spain?"},
        ]
    ),
    "no_generation_prompt": dict(
        messages=[
            {"role": "user", "content": "Say hi."},
            {"role": "assistant", "content": "Hi!"},
        ],
        add_generation_prompt=False,
    ),
    "unicode_whitespace": dict(
        messages=[{"role": "user", "content": "  Héllo — 世界 \"quoted\" <b>tag</b> & 'apos'\n\n"}]
    ),
    "roles_not_alternating": dict(
        messages=[
            {"role": "user", "content": "First."},
            {"role": "user", "content": "Second."},
        ]
    ),
    "assistant_first": dict(
        messages=[
            {"role": "assistant", "content": "I start."},
            {"role": "user", "content": "Fine."},
        ]
    ),
    "tools_available": dict(
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],
    ),
    "tool_call_round_trip": dict(
        messages=[
            {"role": "system", "content": "Use tools when useful."},
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [TOOL_CALL]},
            {"role": "tool", "tool_call_id": "call12345", "name": "get_weather", "content": "{\"temperature\": 22}"},
            {"role": "assistant", "content": "It is 22 °C in Paris."},
            {"role": "user", "content": "Thanks!"},
        ],
        tools=[WEATHER_TOOL],
    ),
    # OpenAI-style clients send content=None with tool calls; HF drops None-valued keys.
    "tool_call_content_none": dict(
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},
            {"role": "tool", "tool_call_id": "call12345", "name": "get_weather", "content": "22"},
        ],
        tools=[WEATHER_TOOL],
    ),
}


def tokens_for(name):
    for key, bos, eos in TOKENS:
        if key in name:
            return bos, eos
    return "<s>", "</s>"


def render(template, case, bos, eos):
    kwargs = {}
    if bos is not None:
        kwargs["bos_token"] = bos
    if eos is not None:
        kwargs["eos_token"] = eos
    # As tokenizer.apply_chat_template: None-valued message keys are dropped first.
    out, _ = ctu.render_jinja_template(
        conversations=[ctu._normalize_chat_messages(case["messages"])],
        tools=case.get("tools"),
        chat_template=template,
        add_generation_prompt=case.get("add_generation_prompt", True),
        **kwargs,
    )
    return out[0]


def main():
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    entries = []
    for path in sorted(src.glob("*.jinja")):
        template = path.read_text(encoding="utf-8")
        bos, eos = tokens_for(path.stem)
        for case_name, case in CASES.items():
            e = {
                "template": path.name,
                "case": case_name,
                "messages": case["messages"],
                "tools": case.get("tools"),
                "add_generation_prompt": case.get("add_generation_prompt", True),
                "bos_token": bos,
                "eos_token": eos,
            }
            try:
                e["expected"] = render(template, case, bos, eos)
            except Exception as x:  # the template (or Jinja) rejected the case
                e["error"] = f"{type(x).__name__}: {x}"
            entries.append(e)
    doc = {
        "transformers_version": transformers.__version__,
        "frozen_now": FROZEN_NOW.isoformat(),
        "frozen_unix": FROZEN_UNIX,
        "templates": {p.name: p.read_text(encoding="utf-8") for p in sorted(src.glob("*.jinja"))},
        "cases": entries,
    }
    tmp = out.with_suffix(".part")
    tmp.write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")
    tmp.replace(out)
    ok = sum("expected" in e for e in entries)
    print(f"[mlx-serving] chat template references: {len(entries)} cases ({ok} rendered, {len(entries) - ok} raise)", file=sys.stderr)


if __name__ == "__main__":
    main()
