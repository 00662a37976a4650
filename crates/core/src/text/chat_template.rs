//! Chat-template rendering for the `{messages}` prompt form (spec §15): a model's own Jinja
//! template (from tokenizer_config.json) rendered with minijinja, set up the way Hugging Face's
//! `apply_chat_template` sets up Jinja2, so templates written for transformers render the same:
//! `trim_blocks` + `lstrip_blocks`, loop controls, Python string/dict methods (`.strip()`,
//! `.startswith()`, `.items()`, … via minijinja-contrib's pycompat), the `raise_exception` and
//! `strftime_now` globals, HF's `tojson`, and the variables HF passes.

use std::borrow::Cow;

use minijinja::value::{Rest, Value};
use minijinja::{Environment, State};
use serde::{Deserialize, Serialize};

use super::{pyrepr, template_fns};
use crate::error::{EngineError, EngineResult};

/// One conversation turn, as the template sees it (`message['role']`, `message.content`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage { role: role.into(), content: content.into() }
    }
}

fn render_error(e: minijinja::Error) -> EngineError {
    // The full chain (e.g. "invalid operation: Conversation roles must alternate… (in chat:1)")
    // is what a template author needs to see.
    let mut message = format!("Template rendering failed: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    EngineError::generation(message)
}

/// Everything a chat template sees besides its source, as HF's `apply_chat_template` passes it:
/// the messages (any JSON objects: `tool_calls`, `name`, … pass through), the tool schemas,
/// the generation-prompt flag and the tokenizer's special-token texts.
#[derive(Debug, Clone, Default)]
pub struct ChatRequest<'a> {
    /// Array of message objects; keys holding `null` are dropped first, as HF does.
    pub messages: serde_json::Value,
    /// Tool (function) JSON schemas, or `None` (the template sees `tools = none`).
    pub tools: Option<serde_json::Value>,
    pub add_generation_prompt: bool,
    /// Undefined in the template (renders as '') when `None`, as with HF.
    pub bos_token: Option<&'a str>,
    pub eos_token: Option<&'a str>,
    /// Unix seconds `strftime_now` formats (UTC); `None` = the current time. Tests freeze it.
    pub now_unix: Option<i64>,
}

/// Renders `messages` with `template`. `bos_token` / `eos_token` are the tokenizer's special
/// token texts; when absent they are undefined in the template (render as ''), as with HF.
/// Template syntax and runtime errors (including `raise_exception`) → `GenerationError`
/// "Template rendering failed: …".
pub fn render_chat(
    template: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    bos_token: Option<&str>,
    eos_token: Option<&str>,
) -> EngineResult<String> {
    render_chat_values(template, messages, add_generation_prompt, bos_token, eos_token)
}

/// [`render_chat`] for messages of any serializable shape, e.g. multimodal turns whose
/// `content` is a list of `{type: 'text', text}` / `{type: 'image'}` parts.
pub fn render_chat_values<M: Serialize + ?Sized>(
    template: &str,
    messages: &M,
    add_generation_prompt: bool,
    bos_token: Option<&str>,
    eos_token: Option<&str>,
) -> EngineResult<String> {
    let messages = serde_json::to_value(messages).map_err(|e| EngineError::generation(e.to_string()))?;
    render_chat_request(
        template,
        &ChatRequest { messages, tools: None, add_generation_prompt, bos_token, eos_token, now_unix: None },
    )
}

/// The environment HF builds: Jinja2's `ImmutableSandboxedEnvironment(trim_blocks=True,
/// lstrip_blocks=True)` + loop controls, Python methods on str/dict/list, and HF's globals.
fn environment(now_unix: Option<i64>) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(template_fns::unknown_method);
    env.add_function("raise_exception", template_fns::raise_exception);
    env.add_function("strftime_now", move |format: String| template_fns::strftime_now(format, now_unix));
    env.add_filter("tojson", template_fns::tojson);
    env.add_filter("string", template_fns::string);
    env.add_test("iterable", template_fns::is_iterable);
    env.add_test("none", template_fns::is_none);
    env.add_filter("length", template_fns::length);
    env.add_filter("count", template_fns::length);
    // Jinja2's versions skip a falsy input (`if value:`): `none | selectattr(…)` is empty.
    let lazy = template_fns::lazy;
    let falsy_empty = |v: Value| if v.is_true() { v } else { Value::from(Vec::<Value>::new()) };
    use minijinja::filters as f;
    env.add_filter("map", move |s: &State, v: Value, a: Rest<Value>| f::map(s, falsy_empty(v), a).map(lazy));
    env.add_filter("select", move |s: &State, v: Value, t: Option<Cow<'_, str>>, a: Rest<Value>| f::select(s, falsy_empty(v), t, a).map(lazy));
    env.add_filter("reject", move |s: &State, v: Value, t: Option<Cow<'_, str>>, a: Rest<Value>| f::reject(s, falsy_empty(v), t, a).map(lazy));
    env.add_filter("selectattr", move |s: &State, v: Value, at: Cow<'_, str>, t: Option<Cow<'_, str>>, a: Rest<Value>| {
        f::selectattr(s, falsy_empty(v), at, t, a).map(lazy)
    });
    env.add_filter("rejectattr", move |s: &State, v: Value, at: Cow<'_, str>, t: Option<Cow<'_, str>>, a: Rest<Value>| {
        f::rejectattr(s, falsy_empty(v), at, t, a).map(lazy)
    });
    // Lists, dicts and floats print as Python's str() prints them.
    env.set_formatter(|out, state, value| {
        if pyrepr::needs_py_format(value) {
            out.write_str(&pyrepr::py_str(value)).map_err(|e| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, e.to_string()))
        } else {
            minijinja::escape_formatter(out, state, value)
        }
    });
    env
}

/// HF's `{% generation %}…{% endgeneration %}` tag (its AssistantTracker extension, used for
/// assistant-token masks in training) renders its body unchanged; minijinja has no custom tags,
/// so it becomes the equivalent `{% if true %}…{% endif %}`, whitespace-control marks kept.
fn rewrite_generation_tags(template: &str) -> std::borrow::Cow<'_, str> {
    if !template.contains("generation") {
        return template.into();
    }
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(at) = rest.find("{%") {
        out.push_str(&rest[..at]);
        let tag = &rest[at..];
        let Some(end) = tag.find("%}") else { break };
        let inner = &tag[2..end];
        let (open_mark, body) = split_mark(inner, true);
        let (close_mark, body) = split_mark(body, false);
        match body.trim() {
            "generation" => out.push_str(&format!("{{%{open_mark} if true {close_mark}%}}")),
            "endgeneration" => out.push_str(&format!("{{%{open_mark} endif {close_mark}%}}")),
            _ => out.push_str(&tag[..end + 2]),
        }
        rest = &tag[end + 2..];
    }
    out.push_str(rest);
    out.into()
}

/// Splits a leading (or trailing) `-`/`+` whitespace-control mark off a tag's inside.
fn split_mark(s: &str, leading: bool) -> (&str, &str) {
    let mark = |c: char| c == '-' || c == '+';
    if leading && s.starts_with(mark) {
        (&s[..1], &s[1..])
    } else if !leading && s.ends_with(mark) {
        (&s[s.len() - 1..], &s[..s.len() - 1])
    } else {
        ("", s)
    }
}

/// Renders a [`ChatRequest`] with `template` (errors as [`render_chat`]).
pub fn render_chat_request(template: &str, req: &ChatRequest<'_>) -> EngineResult<String> {
    let mut env = environment(req.now_unix);
    env.add_template_owned("chat", rewrite_generation_tags(template).into_owned()).map_err(render_error)?;
    let tmpl = env.get_template("chat").map_err(render_error)?;

    let token = |t: Option<&str>| t.map_or(Value::UNDEFINED, Value::from);
    let messages = match &req.messages {
        serde_json::Value::Array(items) => items.iter().map(drop_null_keys).collect(),
        other => other.clone(),
    };
    let ctx = minijinja::context! {
        messages => Value::from_serialize(&messages),
        add_generation_prompt => req.add_generation_prompt,
        bos_token => token(req.bos_token),
        eos_token => token(req.eos_token),
        // HF passes tools=None and documents=None when the request has none.
        tools => req.tools.as_ref().map_or_else(|| Value::from_object(template_fns::PyNone), Value::from_serialize),
        documents => Value::from_object(template_fns::PyNone),
    };
    tmpl.render(ctx).map_err(render_error)
}

/// HF drops message keys whose value is None (`content=None` from OpenAI-style clients), since
/// templates handle a missing key but print a present None as "None".
fn drop_null_keys(m: &serde_json::Value) -> serde_json::Value {
    match m {
        serde_json::Value::Object(o) => {
            serde_json::Value::Object(o.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect())
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::text::test_fixtures::smollm2_dir;

    /// SmolLM2-Instruct's ChatML template (tokenizer_config.json `chat_template`).
    const SMOLLM2_CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    /// Meta-Llama-3-Instruct's template: `bos_token`, the `trim` filter.
    const LLAMA3: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

    /// Llama-2/Mistral style: `.strip()`, `raise_exception`, `bos_token`/`eos_token`.
    const LLAMA2_STYLE: &str = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'].strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'].strip() + eos_token }}{% endif %}{% endfor %}";

    fn msgs(pairs: &[(&str, &str)]) -> Vec<ChatMessage> {
        pairs.iter().map(|(r, c)| ChatMessage::new(*r, *c)).collect()
    }

    #[test]
    fn chatml_one_user_message() {
        let m = msgs(&[("user", "What is the capital of France?")]);
        let out = render_chat(SMOLLM2_CHATML, &m, true, None, Some("<|im_end|>")).unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
             <|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
        );
        let no_prompt = render_chat(SMOLLM2_CHATML, &m, false, None, None).unwrap();
        assert!(no_prompt.ends_with("France?<|im_end|>\n"), "{no_prompt:?}");
        // An explicit system message replaces the default one.
        let m = msgs(&[("system", "Be brief."), ("user", "Hi")]);
        let out = render_chat(SMOLLM2_CHATML, &m, true, None, None).unwrap();
        assert_eq!(out, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn llama3_uses_bos_and_trim() {
        let m = msgs(&[("system", " sys "), ("user", "Hi\n")]);
        let out =
            render_chat(LLAMA3, &m, true, Some("<|begin_of_text|>"), Some("<|eot_id|>")).unwrap();
        assert_eq!(
            out,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nsys<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        );
    }

    #[test]
    fn python_methods_and_raise_exception() {
        let m = msgs(&[("user", "  Hello  "), ("assistant", " Hi! "), ("user", "Bye")]);
        let out = render_chat(LLAMA2_STYLE, &m, true, Some("<s>"), Some("</s>")).unwrap();
        assert_eq!(out, "<s>[INST] Hello [/INST] Hi!</s>[INST] Bye [/INST]");
        // Missing special tokens are undefined → render as nothing (not "none").
        let out = render_chat(LLAMA2_STYLE, &m[..1], true, None, None).unwrap();
        assert_eq!(out, "[INST] Hello [/INST]");

        let bad = msgs(&[("assistant", "first")]);
        let err = render_chat(LLAMA2_STYLE, &bad, true, Some("<s>"), Some("</s>")).unwrap_err();
        assert_eq!(err.code, ErrorCode::GenerationError);
        assert!(err.message.starts_with("Template rendering failed: "), "{}", err.message);
        assert!(err.message.contains("Conversation roles must alternate"), "{}", err.message);
    }

    #[test]
    fn block_whitespace_control_like_hf() {
        // trim_blocks drops the newline after a block tag, lstrip_blocks the indentation before it.
        let t = "{% for message in messages %}\n    {% if message.role == 'user' %}\n[U] {{ message.content }}\n    {% else %}\n[{{ message.role | upper }}] {{ message.content }}\n    {% endif %}\n{% endfor %}\n{% if add_generation_prompt %}\n[A]\n{% endif %}\n";
        let out =
            render_chat(t, &msgs(&[("user", "a"), ("assistant", "b")]), true, None, None).unwrap();
        assert_eq!(out, "[U] a\n[ASSISTANT] b\n[A]\n");
    }

    #[test]
    fn pycompat_namespace_loop_controls_tojson_strftime() {
        let t = "{%- set ns = namespace(sys='') -%}\
            {%- for m in messages -%}\
              {%- if m.role == 'system' -%}{%- set ns.sys = m.content -%}{%- continue -%}{%- endif -%}\
              {%- if m.content.startswith('STOP') -%}{%- break -%}{%- endif -%}\
              {{ m.role.title() }}:{{ m.content.split(',') | join('|') }};\
            {%- endfor -%}\
            [{{ ns.sys.lstrip('# ') }}]{{ {'a': [1, 'é<'], 'b': none} | tojson }}\
            {{ tools is none }}/{{ documents is none }}/{{ strftime_now('%Y') | length }}";
        let m = msgs(&[
            ("system", "# rules"),
            ("user", "x,y"),
            ("assistant", "z"),
            ("user", "STOP now"),
            ("user", "never"),
        ]);
        let out = render_chat(t, &m, false, None, None).unwrap();
        assert_eq!(
            out, "User:x|y;Assistant:z;[rules]{\"a\": [1, \"é<\"], \"b\": null}True/True/4",
            "booleans print like Python"
        );
        let pretty =
            render_chat("{{ {'k': [1]} | tojson(indent=2) }}", &[], false, None, None).unwrap();
        assert_eq!(pretty, "{\n  \"k\": [\n    1\n  ]\n}");
    }

    #[test]
    fn absent_tools_behave_like_python_none() {
        let r = |t: &str| render_chat(t, &[], false, None, None);
        assert_eq!(r("{{ tools }}|{{ tools | tojson }}|{{ tools is none }}|{{ tools is not none }}|{{ 'y' if tools else 'n' }}|{{ tools is iterable }}").unwrap(), "None|null|True|False|n|False");
        // Python raises iterating or measuring None; minijinja's own none would give "".
        assert!(r("{% for t in tools %}{{ t }}{% endfor %}").is_err());
        assert!(r("{{ tools | length }}").is_err());
        assert_eq!(r("{{ (tools or []) | length }}|{{ undefined_name | length }}").unwrap(), "0|0");
    }

    #[test]
    fn syntax_error_is_generation_error() {
        let err = render_chat("{% for m in messages %}{{ m.content }", &[], true, None, None)
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::GenerationError);
        assert!(err.message.starts_with("Template rendering failed: "), "{}", err.message);
    }

    #[test]
    fn real_smollm2_template() {
        let Some(dir) = smollm2_dir() else { return };
        let t = crate::text::TextTokenizer::from_dir(&dir).unwrap();
        let template = t.chat_template().expect("SmolLM2 ships a chat template");
        let m = msgs(&[("user", "What is the capital of France?")]);
        let out = render_chat(template, &m, true, t.bos_token(), t.eos_token()).unwrap();
        assert!(out.starts_with("<|im_start|>system\n"), "{out:?}");
        assert!(out.ends_with("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"), "{out:?}");
        // The rendered prompt tokenizes without a second BOS and keeps the markers as single ids.
        let ids = t.encode(&out, false).unwrap();
        let im_start = t.token_to_id("<|im_start|>").unwrap();
        assert_eq!(ids[0], im_start);
        assert_eq!(ids.iter().filter(|&&i| i == im_start).count(), 3);
    }
}
