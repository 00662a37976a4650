//! The `prompt` field: its four forms (spec §6.1, §7.5, §15) parsed into [`Prompt`], with
//! issues at `prompt…` paths (`prompt.messages.0.role`).

use serde::Serialize;
use serde_json::{Map, Value};

use super::defaults::MAX_PROMPT_CHARS;
use super::fields::{
    ADD_GENERATION_PROMPT, MESSAGES, MESSAGE_CONTENT, MESSAGE_ROLE, PROMPT_TEMPLATE,
    PROMPT_TOKENS_FORM, PROMPT_UNION_MESSAGE, PROMPT_VARIABLES,
};
use super::rules::{child, js_type, to_ids, to_string, Issues, Stage};

/// A validated prompt.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// Plain text, encoded like `tokenize({text, addBos: true})` (§7.5).
    Text(String),
    /// `{template, variables}`: render with [`super::render_prompt_template`] (§7.5).
    Template {
        template: String,
        variables: Map<String, Value>,
    },
    /// `{tokens}`: ids used verbatim (§7.5 [fix]); the engine checks them against the vocabulary.
    Tokens(Vec<u32>),
    /// `{messages, addGenerationPrompt?}` (§15): rendered with the model's chat template.
    Messages {
        messages: Vec<ChatMessage>,
        add_generation_prompt: bool,
    },
}

/// One chat turn; `Serialize` so it can be handed to the chat template as-is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// Parses and checks `prompt`. `None` (absent) and JSON `null` are both invalid here: the spec
/// lists `null` as a rejected prompt (§6.1), unlike optional fields where `null` = absent.
pub(crate) fn parse_prompt(
    value: Option<&Value>,
    stage: Stage,
    issues: &mut Issues,
) -> Option<Prompt> {
    let path = vec![Value::from("prompt")];
    let union_error = |issues: &mut Issues, sentence: &str| {
        issues.push(
            path.clone(),
            "invalid_union",
            PROMPT_UNION_MESSAGE,
            sentence,
        );
    };
    let Some(v) = value.filter(|v| !v.is_null()) else {
        union_error(issues, "prompt is required");
        return None;
    };
    match v {
        Value::String(s) => {
            if stage == Stage::Validator {
                // §2.5: the validators reject blank prompts (the engine accepts '').
                if s.is_empty() {
                    union_error(issues, "prompt is required");
                    return None;
                }
                if s.trim().is_empty() {
                    issues.push(
                        path,
                        "custom",
                        "Prompt cannot be blank",
                        "prompt cannot be empty",
                    );
                    return None;
                }
            }
            check_length(s.chars().count(), &path, stage, issues).then(|| Prompt::Text(s.clone()))
        }
        // Zod's union order: template form, then tokens form; messages is our addition (§15).
        Value::Object(obj) if obj.contains_key("template") => {
            parse_template(obj, &path, stage, issues)
        }
        Value::Object(obj) if obj.contains_key("tokens") => PROMPT_TOKENS_FORM
            .take(obj, &path, stage, issues)
            .map(|t| Prompt::Tokens(to_ids(t))),
        Value::Object(obj) if obj.contains_key("messages") => {
            parse_messages(obj, &path, stage, issues)
        }
        _ => {
            union_error(
                issues,
                &format!("prompt must be a string or a {{template, variables}}, {{tokens}} or {{messages}} object, not {}", js_type(v)),
            );
            None
        }
    }
}

fn parse_template(
    obj: &Map<String, Value>,
    path: &[Value],
    stage: Stage,
    issues: &mut Issues,
) -> Option<Prompt> {
    let template = PROMPT_TEMPLATE.take(obj, path, stage, issues);
    let variables = PROMPT_VARIABLES.take(obj, path, stage, issues);
    let (template, variables) = (template?, variables?);
    let template = to_string(template);
    check_length(
        template.chars().count(),
        &child(path, "template"),
        stage,
        issues,
    )
    .then(|| Prompt::Template {
        template,
        variables: variables.as_object().cloned().unwrap_or_default(),
    })
}

fn parse_messages(
    obj: &Map<String, Value>,
    path: &[Value],
    stage: Stage,
    issues: &mut Issues,
) -> Option<Prompt> {
    let list_path = child(path, MESSAGES.name);
    let before = issues.0.len();
    let add_generation_prompt = ADD_GENERATION_PROMPT
        .take(obj, path, stage, issues)
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let items = match obj.get(MESSAGES.name) {
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(Value::Array(_)) => {
            let sentence = format!(
                "{} must be {}",
                super::rules::dot_path(&list_path),
                MESSAGES.describe
            );
            issues.push(
                list_path,
                "too_small",
                "Array must contain at least 1 element(s)",
                sentence,
            );
            return None;
        }
        other => {
            let got = other.map_or("undefined", js_type);
            let sentence = format!(
                "{} must be {}",
                super::rules::dot_path(&list_path),
                MESSAGES.describe
            );
            issues.push(
                list_path,
                "invalid_type",
                format!("Expected array, received {got}"),
                sentence,
            );
            return None;
        }
    };
    let mut messages = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let item_path = child(&list_path, i);
        let Some(m) = item.as_object() else {
            let sentence = format!("{} must be an object", super::rules::dot_path(&item_path));
            issues.push(
                item_path,
                "invalid_type",
                format!("Expected object, received {}", js_type(item)),
                sentence,
            );
            continue;
        };
        let role = MESSAGE_ROLE.take(m, &item_path, stage, issues);
        let content = MESSAGE_CONTENT.take(m, &item_path, stage, issues);
        if let (Some(role), Some(content)) = (role, content) {
            messages.push(ChatMessage {
                role: to_string(role),
                content: to_string(content),
            });
        }
    }
    if issues.0.len() != before {
        return None;
    }
    let total: usize = messages.iter().map(|m| m.content.chars().count()).sum();
    check_length(total, &list_path, stage, issues).then_some(Prompt::Messages {
        messages,
        add_generation_prompt,
    })
}

/// The §6.1 runtime cap on prompt length (engine stage only). Returns whether it passed.
fn check_length(chars: usize, path: &[Value], stage: Stage, issues: &mut Issues) -> bool {
    if stage == Stage::Engine && chars > MAX_PROMPT_CHARS {
        let msg = format!("Prompt cannot exceed {MAX_PROMPT_CHARS} characters (runtime limit)");
        issues.push(path.to_vec(), "too_big", msg.clone(), msg);
        return false;
    }
    true
}

/// The §6.1 prompt-length cap for text produced later (a rendered template or chat), as
/// `InvalidParams` like every other limit.
pub fn check_prompt_length(text: &str) -> crate::error::EngineResult<()> {
    let mut issues = Issues::default();
    check_length(
        text.chars().count(),
        &[Value::from("prompt")],
        Stage::Engine,
        &mut issues,
    );
    issues.to_error().map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::EngineError;
    use crate::params::generator::normalize_generator_params;
    use serde_json::json;

    fn parse(prompt: Value) -> Result<Prompt, EngineError> {
        normalize_generator_params(&json!({"model": "m", "prompt": prompt})).map(|p| p.prompt)
    }

    fn field(prompt: Value) -> String {
        let e = parse(prompt.clone()).expect_err(&format!("{prompt} accepted"));
        e.details["field"].as_str().unwrap().to_owned()
    }

    #[test]
    fn template_form() {
        let p =
            parse(json!({"template": "Hi {{name}}", "variables": {"name": "A", "n": 1}})).unwrap();
        let Prompt::Template {
            template,
            variables,
        } = p
        else {
            panic!("not a template")
        };
        assert_eq!(template, "Hi {{name}}");
        assert_eq!(
            variables,
            json!({"name": "A", "n": 1}).as_object().unwrap().clone()
        );
        assert_eq!(
            field(json!({"template": 1, "variables": {}})),
            "prompt.template"
        );
        assert_eq!(field(json!({"template": "t"})), "prompt.variables");
        assert_eq!(
            field(json!({"template": "t", "variables": ["a"]})),
            "prompt.variables"
        );
        assert_eq!(
            field(json!({"template": "x".repeat((1 << 20) + 1), "variables": {}})),
            "prompt.template"
        );
    }

    #[test]
    fn tokens_form() {
        assert_eq!(
            parse(json!({"tokens": [1, 2, 3]})).unwrap(),
            Prompt::Tokens(vec![1, 2, 3])
        );
        assert_eq!(
            parse(json!({"tokens": []})).unwrap(),
            Prompt::Tokens(vec![])
        );
        assert_eq!(field(json!({"tokens": [1, -2]})), "prompt.tokens.1");
        assert_eq!(field(json!({"tokens": [0.5]})), "prompt.tokens.0");
        assert_eq!(field(json!({"tokens": "1 2"})), "prompt.tokens");
        assert_eq!(field(json!({"tokens": [4294967296u64]})), "prompt.tokens.0");
    }

    #[test]
    fn template_takes_precedence_like_zod_union_order() {
        let p = parse(json!({"template": "t", "variables": {}, "tokens": [1]})).unwrap();
        assert!(matches!(p, Prompt::Template { .. }));
    }

    #[test]
    fn messages_form() {
        let p = parse(json!({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
                                          {"role": "assistant", "content": ""}, {"role": "tool", "content": "{}", "name": "x"}]}))
        .unwrap();
        let Prompt::Messages {
            messages,
            add_generation_prompt,
        } = p
        else {
            panic!("not messages")
        };
        assert!(add_generation_prompt, "default true");
        assert_eq!(messages.len(), 4);
        assert_eq!(
            messages[1],
            ChatMessage {
                role: "user".into(),
                content: "hi".into()
            }
        );
        assert_eq!(
            serde_json::to_value(&messages[0]).unwrap(),
            json!({"role": "system", "content": "be brief"})
        );

        let p = parse(
            json!({"messages": [{"role": "user", "content": "x"}], "addGenerationPrompt": false}),
        )
        .unwrap();
        assert!(matches!(
            p,
            Prompt::Messages {
                add_generation_prompt: false,
                ..
            }
        ));
        let p = parse(
            json!({"messages": [{"role": "user", "content": "x"}], "add_generation_prompt": false}),
        )
        .unwrap();
        assert!(matches!(
            p,
            Prompt::Messages {
                add_generation_prompt: false,
                ..
            }
        ));
    }

    #[test]
    fn messages_form_errors_have_field_paths() {
        assert_eq!(field(json!({"messages": []})), "prompt.messages");
        assert_eq!(field(json!({"messages": "hi"})), "prompt.messages");
        assert_eq!(field(json!({"messages": null})), "prompt.messages");
        assert_eq!(field(json!({"messages": ["hi"]})), "prompt.messages.0");
        assert_eq!(
            field(
                json!({"messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]})
            ),
            "prompt.messages.1.role"
        );
        assert_eq!(
            field(json!({"messages": [{"content": "a"}]})),
            "prompt.messages.0.role"
        );
        assert_eq!(
            field(json!({"messages": [{"role": 1, "content": "a"}]})),
            "prompt.messages.0.role"
        );
        assert_eq!(
            field(json!({"messages": [{"role": "user", "content": 5}]})),
            "prompt.messages.0.content"
        );
        assert_eq!(
            field(json!({"messages": [{"role": "user"}]})),
            "prompt.messages.0.content"
        );
        assert_eq!(
            field(json!({"messages": [{"role": "user", "content": [{"type": "text"}]}]})),
            "prompt.messages.0.content"
        );
        assert_eq!(
            field(
                json!({"messages": [{"role": "user", "content": "a"}], "addGenerationPrompt": "yes"})
            ),
            "prompt.addGenerationPrompt"
        );
        assert_eq!(
            field(json!({"messages": [{"role": "user", "content": "x".repeat((1 << 20) + 1)}]})),
            "prompt.messages"
        );

        let e = parse(json!({"messages": [{"role": "bot", "content": 1}]})).unwrap_err();
        assert_eq!(
            e.message,
            "Validation error on field 'prompt.messages.0.role': Invalid enum value. Expected 'system' | 'user' | 'assistant' | 'tool'"
        );
        assert_eq!(
            e.details["issues"],
            json!([
                {"path": ["prompt", "messages", 0, "role"], "message": "Invalid enum value. Expected 'system' | 'user' | 'assistant' | 'tool'", "code": "invalid_enum_value"},
                {"path": ["prompt", "messages", 0, "content"], "message": "Expected string, received number", "code": "invalid_type"}
            ])
        );
        let e = parse(json!({"messages": []})).unwrap_err();
        assert_eq!(e.details["issues"][0]["code"], "too_small");
    }

    #[test]
    fn prompt_length_helper() {
        assert!(check_prompt_length(&"x".repeat(1 << 20)).is_ok());
        let e = check_prompt_length(&"é".repeat((1 << 20) + 1)).unwrap_err();
        assert_eq!(e.details["field"], "prompt");
    }
}
