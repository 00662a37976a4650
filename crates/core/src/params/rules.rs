//! The one rule table of request validation, and the issue collector both validation paths share.
//!
//! DESIGN rule: each validation rule exists once. A [`FieldRule`] says what a field accepts; the
//! checker turns a failure into one [`Issue`] that carries *both* renderings of it:
//! * the Zod-style `message`/`code`/`path` the engine puts into `EngineError` (spec §6: the
//!   original built its errors from Zod issues, so messages follow its schemas' texts), and
//! * the short English `sentence` the §2.5 `validate*` functions return (`'maxTokens must be a
//!   positive integer'`).
//!
//! [`Stage`] picks the extra rules of each path: the engine also enforces the §6.1 second-stage
//! runtime limits; the validators also reject blank strings (§2.5).

use serde_json::{json, Map, Value};

use crate::error::EngineError;

/// Which validation path is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// `createGenerator`/`loadModel`/`tokenize`: §6 rules plus the §6.1 runtime limits.
    Engine,
    /// The §2.5 `validate*` exports: §6 rules plus blank-string rejection, no runtime limits
    /// (those depend on engine configuration, and the original validators never had them).
    Validator,
}

/// One problem found in a request, in both renderings (see module docs).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Issue {
    /// Zod-style path: object keys as strings, array indices as numbers.
    pub path: Vec<Value>,
    /// Zod issue code: `invalid_type`, `too_small`, `too_big`, `invalid_enum_value`,
    /// `invalid_union`, `custom`.
    pub code: &'static str,
    pub message: String,
    pub sentence: String,
}

/// Collects issues in field order; the first one names the error (as `zodErrorToEngineError` did).
#[derive(Debug, Default)]
pub(crate) struct Issues(pub Vec<Issue>);

impl Issues {
    pub fn push(
        &mut self,
        path: Vec<Value>,
        code: &'static str,
        message: impl Into<String>,
        sentence: impl Into<String>,
    ) {
        self.0.push(Issue {
            path,
            code,
            message: message.into(),
            sentence: sentence.into(),
        });
    }

    /// `InvalidParams` with `message: "Validation error on field '<path>': <msg>"` and
    /// `details: {field, issues: [{path, message, code}]}` (spec §6), or `None` when clean.
    pub fn to_error(&self) -> Option<EngineError> {
        let first = self.0.first()?;
        let field = dot_path(&first.path);
        let issues: Vec<Value> = self
            .0
            .iter()
            .map(|i| json!({"path": i.path, "message": i.message, "code": i.code}))
            .collect();
        Some(
            EngineError::invalid_params(format!(
                "Validation error on field '{field}': {}",
                first.message
            ))
            .with_detail("field", field)
            .with_detail("issues", Value::Array(issues)),
        )
    }

    /// The §2.5 sentences, each once, in order (several array items failing the same way
    /// produce one sentence, as the original's `some(...)` checks did).
    pub fn sentences(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for issue in &self.0 {
            if !out.contains(&issue.sentence) {
                out.push(issue.sentence.clone());
            }
        }
        out
    }
}

/// `a.b.0.c`, or `root` for the empty path (spec §6 `details.field`).
pub(crate) fn dot_path(path: &[Value]) -> String {
    if path.is_empty() {
        return "root".to_owned();
    }
    path.iter()
        .map(|seg| match seg {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// `prefix` + one more segment.
pub(crate) fn child(prefix: &[Value], seg: impl Into<Value>) -> Vec<Value> {
    let mut p = prefix.to_vec();
    p.push(seg.into());
    p
}

/// JavaScript `typeof`-like name used in Zod's `Expected X, received Y` messages.
pub(crate) fn js_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// First present spelling of a field. JSON `null` counts as absent: the napi layer turns an
/// explicit JS `undefined` into `null`, and the spec treats `undefined` as absent (§5.1).
pub(crate) fn lookup<'a>(obj: &'a Map<String, Value>, names: &[&str]) -> Option<&'a Value> {
    names
        .iter()
        .find_map(|n| obj.get(*n).filter(|v| !v.is_null()))
}

/// A JSON number that is a whole number, as `Number.isInteger` sees it (`3.0` is an integer:
/// the napi layer may hand integral JS numbers over as floats). Saturates outside `i64`.
pub(crate) fn as_integer(v: &Value) -> Option<i64> {
    if let Some(i) = v.as_i64() {
        return Some(i);
    }
    if v.as_u64().is_some() {
        return Some(i64::MAX);
    }
    let f = v.as_f64()?;
    (f.is_finite() && f.fract() == 0.0).then(|| f.clamp(i64::MIN as f64, i64::MAX as f64) as i64)
}

/// What a field accepts. Bounds are inclusive.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// Whole number in `min..=max`; `runtime_max` is the §6.1 second-stage cap (engine only).
    Int {
        min: i64,
        max: i64,
        runtime_max: Option<i64>,
    },
    /// Number in `min..=max`; `runtime_above_min` makes the lower bound exclusive at run time
    /// (topP: the runtime required `(0, 1]`).
    Num {
        min: f64,
        max: f64,
        runtime_above_min: bool,
    },
    Bool,
    /// Any string, empty allowed (Zod `z.string()`).
    Str,
    OneOf(&'static [&'static str]),
    /// Any JSON object, arrays excluded (Zod `z.record(...)`).
    Object,
    /// `string[]`, with optional runtime limits on item count and item length (chars).
    StrList {
        max_items: Option<usize>,
        max_chars: Option<usize>,
    },
    /// Array of token ids (non-negative integers that fit `u32`), with optional runtime limits.
    IdList {
        max_items: Option<usize>,
        max_value: Option<i64>,
    },
}

/// One field: its spellings, what it accepts, and the wording of failures.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FieldRule {
    /// Canonical camelCase name; issue paths always use it (validation runs after normalization).
    pub name: &'static str,
    /// Other accepted spellings, in precedence order after `name`.
    pub aliases: &'static [&'static str],
    pub kind: Kind,
    pub required: bool,
    /// Zod-style messages: below the minimum (also: not in the enum), above the maximum.
    pub msg_small: &'static str,
    pub msg_big: &'static str,
    /// §2.5 sentence tail: `"<label> must be <describe>"`.
    pub describe: &'static str,
    /// §2.5 sentence tail above the maximum, where the original had its own (`cannot exceed 100000`).
    pub describe_big: Option<&'static str>,
    /// §2.5 sentence tail when a required field is missing (default `is required`).
    pub describe_missing: Option<&'static str>,
}

impl FieldRule {
    pub const fn new(
        name: &'static str,
        aliases: &'static [&'static str],
        kind: Kind,
        describe: &'static str,
    ) -> Self {
        FieldRule {
            name,
            aliases,
            kind,
            required: false,
            msg_small: "",
            msg_big: "",
            describe,
            describe_big: None,
            describe_missing: None,
        }
    }
    pub const fn msgs(mut self, small: &'static str, big: &'static str) -> Self {
        self.msg_small = small;
        self.msg_big = big;
        self
    }
    pub const fn big_sentence(mut self, describe_big: &'static str) -> Self {
        self.describe_big = Some(describe_big);
        self
    }
    pub const fn missing_sentence(mut self, describe_missing: &'static str) -> Self {
        self.describe_missing = Some(describe_missing);
        self
    }
    pub const fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// The canonical name followed by its aliases, in precedence order.
    pub fn spellings(&self) -> Vec<&'static str> {
        let mut v = vec![self.name];
        v.extend_from_slice(self.aliases);
        v
    }

    /// Looks the field up in `obj` (any spelling) and checks it. Returns the value when it is
    /// present and valid; pushes issues (paths under `prefix`) otherwise.
    pub fn take<'a>(
        &self,
        obj: &'a Map<String, Value>,
        prefix: &[Value],
        stage: Stage,
        issues: &mut Issues,
    ) -> Option<&'a Value> {
        let value = lookup(obj, &self.spellings());
        self.check_opt(value, &child(prefix, self.name), stage, issues)
    }

    /// Checks an already looked-up value at `path` (absent → `Required` when the rule says so).
    pub fn check_opt<'a>(
        &self,
        value: Option<&'a Value>,
        path: &[Value],
        stage: Stage,
        issues: &mut Issues,
    ) -> Option<&'a Value> {
        let label = dot_path(path);
        let Some(v) = value else {
            if self.required {
                let tail = self.describe_missing.unwrap_or("is required");
                issues.push(
                    path.to_vec(),
                    "invalid_type",
                    "Required",
                    format!("{label} {tail}"),
                );
            }
            return None;
        };
        let before = issues.0.len();
        self.check(v, path, &label, stage, issues);
        (issues.0.len() == before).then_some(v)
    }

    fn sentence(&self, label: &str) -> String {
        format!("{label} must be {}", self.describe)
    }

    fn sentence_big(&self, label: &str) -> String {
        match self.describe_big {
            Some(d) => format!("{label} {d}"),
            None => self.sentence(label),
        }
    }

    fn wrong_type(
        &self,
        expected: &str,
        v: &Value,
        path: &[Value],
        label: &str,
        issues: &mut Issues,
    ) {
        issues.push(
            path.to_vec(),
            "invalid_type",
            format!("Expected {expected}, received {}", js_type(v)),
            self.sentence(label),
        );
    }

    fn check(&self, v: &Value, path: &[Value], label: &str, stage: Stage, issues: &mut Issues) {
        match self.kind {
            Kind::Int {
                min,
                max,
                runtime_max,
            } => {
                if !v.is_number() {
                    return self.wrong_type("number", v, path, label, issues);
                }
                let Some(n) = as_integer(v) else {
                    return issues.push(
                        path.to_vec(),
                        "invalid_type",
                        "Must be an integer",
                        self.sentence(label),
                    );
                };
                if n < min {
                    issues.push(
                        path.to_vec(),
                        "too_small",
                        self.msg_small,
                        self.sentence(label),
                    );
                } else if n > max {
                    issues.push(
                        path.to_vec(),
                        "too_big",
                        self.msg_big,
                        self.sentence_big(label),
                    );
                } else if let (Stage::Engine, Some(cap)) = (stage, runtime_max) {
                    if n > cap {
                        let msg = format!("{} cannot exceed {cap} (runtime limit)", self.name);
                        issues.push(path.to_vec(), "too_big", msg.clone(), msg);
                    }
                }
            }
            Kind::Num {
                min,
                max,
                runtime_above_min,
            } => {
                let Some(n) = v.as_f64() else {
                    return self.wrong_type("number", v, path, label, issues);
                };
                if n < min {
                    issues.push(
                        path.to_vec(),
                        "too_small",
                        self.msg_small,
                        self.sentence(label),
                    );
                } else if n > max {
                    issues.push(
                        path.to_vec(),
                        "too_big",
                        self.msg_big,
                        self.sentence_big(label),
                    );
                } else if stage == Stage::Engine && runtime_above_min && n == min {
                    let msg = format!("{} must be greater than {min} (runtime limit)", self.name);
                    issues.push(path.to_vec(), "too_small", msg.clone(), msg);
                }
            }
            Kind::Bool => {
                if !v.is_boolean() {
                    self.wrong_type("boolean", v, path, label, issues);
                }
            }
            Kind::Str => {
                if !v.is_string() {
                    self.wrong_type("string", v, path, label, issues);
                }
            }
            Kind::OneOf(options) => match v.as_str() {
                Some(s) if options.contains(&s) => {}
                Some(_) => issues.push(
                    path.to_vec(),
                    "invalid_enum_value",
                    self.msg_small,
                    self.sentence(label),
                ),
                None => self.wrong_type("string", v, path, label, issues),
            },
            Kind::Object => {
                if !v.is_object() {
                    self.wrong_type("object", v, path, label, issues);
                }
            }
            Kind::StrList {
                max_items,
                max_chars,
            } => {
                let Some(items) = v.as_array() else {
                    return self.wrong_type("array", v, path, label, issues);
                };
                let item_sentence = format!("all {label} must be strings");
                for (i, item) in items.iter().enumerate() {
                    if !item.is_string() {
                        let msg = format!("Expected string, received {}", js_type(item));
                        issues.push(child(path, i), "invalid_type", msg, item_sentence.clone());
                    }
                }
                if stage != Stage::Engine || issues_since_path(issues, path) {
                    return;
                }
                if let Some(max) = max_items.filter(|m| items.len() > *m) {
                    let msg = format!("Array must contain at most {max} element(s)");
                    issues.push(
                        path.to_vec(),
                        "too_big",
                        msg,
                        format!("{label} must have at most {max} items"),
                    );
                }
                if let Some(max) = max_chars {
                    for (i, item) in items.iter().enumerate() {
                        if item.as_str().is_some_and(|s| s.chars().count() > max) {
                            let msg = format!("String must contain at most {max} character(s)");
                            issues.push(
                                child(path, i),
                                "too_big",
                                msg,
                                format!("each of {label} must be at most {max} characters"),
                            );
                        }
                    }
                }
            }
            Kind::IdList {
                max_items,
                max_value,
            } => {
                let Some(items) = v.as_array() else {
                    return self.wrong_type("array", v, path, label, issues);
                };
                let item_sentence = format!("all {label} must be non-negative integers");
                for (i, item) in items.iter().enumerate() {
                    let (code, msg) = if !item.is_number() {
                        (
                            "invalid_type",
                            format!("Expected number, received {}", js_type(item)),
                        )
                    } else {
                        match as_integer(item) {
                            None => ("invalid_type", "Must be an integer".to_owned()),
                            Some(n) if n < 0 => ("too_small", "Must be non-negative".to_owned()),
                            Some(n) if n > u32::MAX as i64 => {
                                ("too_big", format!("Must be at most {}", u32::MAX))
                            }
                            Some(_) => continue,
                        }
                    };
                    issues.push(child(path, i), code, msg, item_sentence.clone());
                }
                if stage != Stage::Engine || issues_since_path(issues, path) {
                    return;
                }
                if let Some(max) = max_items.filter(|m| items.len() > *m) {
                    let msg = format!("Array must contain at most {max} element(s)");
                    issues.push(
                        path.to_vec(),
                        "too_big",
                        msg,
                        format!("{label} must have at most {max} items"),
                    );
                }
                if let Some(max) = max_value {
                    for (i, item) in items.iter().enumerate() {
                        if as_integer(item).is_some_and(|n| n > max) {
                            let msg = format!("Number must be less than or equal to {max}");
                            issues.push(
                                child(path, i),
                                "too_big",
                                msg,
                                format!("each of {label} must be at most {max}"),
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Whether an issue at or under `path` is already recorded (runtime limits only apply to
/// values that passed the first stage, as the runtime only ever saw those).
fn issues_since_path(issues: &Issues, path: &[Value]) -> bool {
    issues.0.iter().any(|i| i.path.starts_with(path))
}

// ---- Typed extraction of values a rule has accepted (infallible after a successful check). ----

pub(crate) fn to_u32(v: &Value) -> u32 {
    as_integer(v).unwrap_or(0).clamp(0, u32::MAX as i64) as u32
}
pub(crate) fn to_u64(v: &Value) -> u64 {
    as_integer(v).unwrap_or(0).max(0) as u64
}
pub(crate) fn to_f32(v: &Value) -> f32 {
    v.as_f64().unwrap_or(0.0) as f32
}
pub(crate) fn to_string(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}
pub(crate) fn to_strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(to_string).collect())
        .unwrap_or_default()
}
pub(crate) fn to_ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .map(|a| a.iter().map(to_u32).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INT: FieldRule = FieldRule::new(
        "n",
        &["n_alias"],
        Kind::Int {
            min: 1,
            max: 10,
            runtime_max: Some(5),
        },
        "a small integer",
    )
    .msgs("too small", "too big")
    .big_sentence("cannot exceed 10");

    fn run(rule: &FieldRule, raw: Value, stage: Stage) -> Issues {
        let mut issues = Issues::default();
        rule.take(raw.as_object().unwrap(), &[], stage, &mut issues);
        issues
    }

    #[test]
    fn dot_path_joins_keys_and_indices() {
        assert_eq!(dot_path(&[]), "root");
        assert_eq!(
            dot_path(&[json!("prompt"), json!("messages"), json!(0), json!("role")]),
            "prompt.messages.0.role"
        );
    }

    #[test]
    fn integer_detection_follows_number_is_integer() {
        assert_eq!(as_integer(&json!(3)), Some(3));
        assert_eq!(as_integer(&json!(3.0)), Some(3));
        assert_eq!(as_integer(&json!(-2)), Some(-2));
        assert_eq!(as_integer(&json!(1.5)), None);
        assert_eq!(as_integer(&json!(u64::MAX)), Some(i64::MAX));
        assert_eq!(as_integer(&json!("3")), None);
    }

    #[test]
    fn lookup_prefers_first_spelling_and_skips_null() {
        let o = json!({"a": null, "b": 2, "c": 3});
        assert_eq!(
            lookup(o.as_object().unwrap(), &["a", "b", "c"]),
            Some(&json!(2))
        );
        assert_eq!(lookup(o.as_object().unwrap(), &["x"]), None);
    }

    #[test]
    fn int_rule_stages() {
        assert!(run(&INT, json!({"n": 5}), Stage::Engine).0.is_empty());
        assert!(run(&INT, json!({"n_alias": 4}), Stage::Engine).0.is_empty());
        let i = run(&INT, json!({"n": 6}), Stage::Engine);
        assert_eq!(i.0[0].code, "too_big");
        assert_eq!(i.0[0].message, "n cannot exceed 5 (runtime limit)");
        // The validator stage has no runtime limits.
        assert!(run(&INT, json!({"n": 6}), Stage::Validator).0.is_empty());
        let i = run(&INT, json!({"n": 11}), Stage::Validator);
        assert_eq!(i.sentences(), vec!["n cannot exceed 10"]);
        let i = run(&INT, json!({"n": 0}), Stage::Validator);
        assert_eq!(
            (i.0[0].code, i.0[0].message.as_str()),
            ("too_small", "too small")
        );
        assert_eq!(i.sentences(), vec!["n must be a small integer"]);
        let i = run(&INT, json!({"n": "3"}), Stage::Engine);
        assert_eq!(i.0[0].message, "Expected number, received string");
        assert_eq!(i.0[0].path, vec![json!("n")]);
    }

    #[test]
    fn required_field_missing() {
        let rule = FieldRule::new("x", &[], Kind::Str, "a string").required();
        let i = run(&rule, json!({"x": null}), Stage::Engine);
        assert_eq!(
            (
                i.0[0].code,
                i.0[0].message.as_str(),
                i.0[0].sentence.as_str()
            ),
            ("invalid_type", "Required", "x is required")
        );
    }

    #[test]
    fn error_shape() {
        let mut issues = Issues::default();
        issues.push(vec![json!("a"), json!(1)], "too_big", "big", "a too big");
        issues.push(vec![], "custom", "other", "other");
        let e = issues.to_error().unwrap();
        assert_eq!(e.code, crate::error::ErrorCode::InvalidParams);
        assert_eq!(e.message, "Validation error on field 'a.1': big");
        assert_eq!(e.details["field"], json!("a.1"));
        assert_eq!(
            e.details["issues"],
            json!([{"path": ["a", 1], "message": "big", "code": "too_big"}, {"path": [], "message": "other", "code": "custom"}])
        );
        assert!(Issues::default().to_error().is_none());
    }

    #[test]
    fn sentences_are_deduplicated_in_order() {
        let rule = FieldRule::new(
            "s",
            &[],
            Kind::StrList {
                max_items: None,
                max_chars: None,
            },
            "an array",
        );
        let i = run(&rule, json!({"s": [1, "ok", true]}), Stage::Validator);
        assert_eq!(i.0.len(), 2);
        assert_eq!(i.0[1].path, vec![json!("s"), json!(2)]);
        assert_eq!(i.sentences(), vec!["all s must be strings"]);
    }
}
