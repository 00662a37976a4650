//! `{template, variables}` prompt rendering (spec §7.5): `{{ name }}` placeholders, matched
//! exactly like the original's regex `\{\{\s*(\w+)\s*\}\}` (global, leftmost-first), but by
//! hand so the crate needs no regex engine.

use serde_json::{Map, Value};

use crate::error::{EngineError, EngineResult};

/// Replaces every placeholder with its variable: missing → `''`; strings as-is; numbers and
/// booleans as JavaScript's `String(v)` prints them. Any other value (object, array, `null`,
/// whose `typeof` is `'object'`) fails with `GenerationError` `Template rendering failed: …`.
/// Text that is not a complete placeholder is kept verbatim.
pub fn render_prompt_template(
    template: &str,
    variables: &Map<String, Value>,
) -> EngineResult<String> {
    let chars: Vec<char> = template.chars().collect();
    let mut out = String::with_capacity(template.len());
    let mut i = 0;
    while i < chars.len() {
        if let Some((name, end)) = match_placeholder(&chars, i) {
            out.push_str(&stringify(&name, variables.get(&name))?);
            i = end;
        } else {
            // Like a regex scan: no match here, so this char is literal; retry from the next one.
            out.push(chars[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// Matches `{{\s*(\w+)\s*}}` at `start`; returns the name and the index after the match.
/// Backtracking is never needed: `\s*`, `\w+`, `\s*` are greedy over disjoint classes.
fn match_placeholder(chars: &[char], start: usize) -> Option<(String, usize)> {
    let at = |i: usize, c: char| chars.get(i) == Some(&c);
    if !(at(start, '{') && at(start + 1, '{')) {
        return None;
    }
    let mut i = start + 2;
    while chars.get(i).is_some_and(|c| is_js_space(*c)) {
        i += 1;
    }
    let name_start = i;
    while chars
        .get(i)
        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
    {
        i += 1;
    }
    if i == name_start {
        return None;
    }
    let name: String = chars[name_start..i].iter().collect();
    while chars.get(i).is_some_and(|c| is_js_space(*c)) {
        i += 1;
    }
    (at(i, '}') && at(i + 1, '}')).then_some((name, i + 2))
}

/// JavaScript's `\s` (ECMAScript WhiteSpace + LineTerminator), which differs from Unicode
/// `White_Space` (`char::is_whitespace`) in U+FEFF (in) and U+0085 (out).
fn is_js_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r' | ' ' | '\u{A0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200A}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202F}'
                | '\u{205F}'
                | '\u{3000}'
                | '\u{FEFF}'
    )
}

fn stringify(name: &str, value: Option<&Value>) -> EngineResult<String> {
    match value {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Bool(b)) => Ok(b.to_string()),
        Some(Value::Number(n)) => Ok(if let Some(i) = n.as_i64() {
            i.to_string()
        } else if let Some(u) = n.as_u64() {
            u.to_string()
        } else {
            js_number_to_string(n.as_f64().unwrap_or(f64::NAN))
        }),
        Some(other) => {
            let kind = if other.is_array() {
                "an array"
            } else if other.is_null() {
                "null"
            } else {
                "an object"
            };
            Err(EngineError::generation(format!(
                "Template rendering failed: variable '{name}' is {kind}; only strings, numbers and booleans can be substituted"
            )))
        }
    }
}

/// JavaScript `Number.prototype.toString()` for a finite double (ECMAScript Number::toString):
/// shortest round-trip digits, plain notation for exponents in `-7 < e < 21`, else `1.5e+21`.
fn js_number_to_string(x: f64) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "NaN".into()
        } else if x > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    if x == 0.0 {
        return "0".into(); // also -0
    }
    let sign = if x < 0.0 { "-" } else { "" };
    // Rust's `{:e}` gives the shortest round-trip digits: "d.ddddde<exp>".
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` always has an exponent");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let k = digits.len() as i32;
    let n = exp.parse::<i32>().expect("integer exponent") + 1; // decimal point position
    let body = if k <= n && n <= 21 {
        format!("{digits}{}", "0".repeat((n - k) as usize))
    } else if 0 < n && n <= 21 {
        format!("{}.{}", &digits[..n as usize], &digits[n as usize..])
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat((-n) as usize))
    } else {
        let e = n - 1;
        let e = if e >= 0 {
            format!("+{e}")
        } else {
            e.to_string()
        };
        if k == 1 {
            format!("{digits}e{e}")
        } else {
            format!("{}.{}e{e}", &digits[..1], &digits[1..])
        }
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use serde_json::json;

    fn render(t: &str, vars: Value) -> EngineResult<String> {
        render_prompt_template(t, vars.as_object().unwrap())
    }

    #[test]
    fn replaces_placeholders_with_optional_spaces() {
        let out = render(
            "Hi {{name}}, {{ greeting }}! {{\tname\n}}",
            json!({"name": "Ann", "greeting": "hello"}),
        )
        .unwrap();
        assert_eq!(out, "Hi Ann, hello! Ann");
    }

    #[test]
    fn missing_variable_is_empty() {
        assert_eq!(render("a{{x}}b", json!({})).unwrap(), "ab");
    }

    #[test]
    fn non_placeholders_stay_verbatim() {
        let vars = json!({"a": "A"});
        assert_eq!(
            render("{{}} {{ }} {{a-b}} {a} {{a} }}", vars.clone()).unwrap(),
            "{{}} {{ }} {{a-b}} {a} {{a} }}"
        );
        // Leftmost scan: `{{{a}}}` matches at index 1, keeping the outer braces.
        assert_eq!(render("{{{a}}}", vars.clone()).unwrap(), "{A}");
        assert_eq!(render("{{a}}{{a}}", vars.clone()).unwrap(), "AA");
        assert_eq!(render("", vars).unwrap(), "");
    }

    #[test]
    fn word_chars_are_ascii_only() {
        // JS `\w` without the `u` flag is [A-Za-z0-9_].
        assert_eq!(
            render("{{ é }}{{a_1}}", json!({"é": "x", "a_1": "y"})).unwrap(),
            "{{ é }}y"
        );
    }

    #[test]
    fn unicode_text_around_placeholders() {
        assert_eq!(
            render("日本{{ x }}語\u{FEFF}", json!({"x": "✓"})).unwrap(),
            "日本✓語\u{FEFF}"
        );
        // U+FEFF counts as \s in JS.
        assert_eq!(
            render("{{\u{FEFF}x\u{FEFF}}}", json!({"x": "1"})).unwrap(),
            "1"
        );
        // U+0085 does not.
        assert_eq!(
            render("{{\u{85}x}}", json!({"x": "1"})).unwrap(),
            "{{\u{85}x}}"
        );
    }

    #[test]
    fn numbers_and_booleans_like_js_string() {
        let out = render(
            "{{i}} {{n}} {{f}} {{b}} {{c}} {{big}} {{small}} {{tiny}} {{e21}} {{neg}}",
            json!({"i": 42, "n": -7, "f": 1.5, "b": true, "c": false, "big": 1e21, "small": 0.000001, "tiny": 1e-7, "e21": 123456789012345680000.0, "neg": -0.25}),
        )
        .unwrap();
        assert_eq!(
            out,
            "42 -7 1.5 true false 1e+21 0.000001 1e-7 123456789012345680000 -0.25"
        );
    }

    #[test]
    fn js_number_formatting_edge_cases() {
        assert_eq!(js_number_to_string(0.1), "0.1");
        assert_eq!(js_number_to_string(100.0), "100");
        assert_eq!(js_number_to_string(-0.0), "0");
        assert_eq!(js_number_to_string(1.2345e-7), "1.2345e-7");
        assert_eq!(js_number_to_string(2.5e25), "2.5e+25");
        assert_eq!(js_number_to_string(123.456), "123.456");
        assert_eq!(js_number_to_string(f64::MAX), "1.7976931348623157e+308");
    }

    #[test]
    fn objects_arrays_null_fail_with_generation_error() {
        for bad in [
            json!({"x": {"a": 1}}),
            json!({"x": [1]}),
            json!({"x": null}),
        ] {
            let e = render("v={{x}}", bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::GenerationError);
            assert!(
                e.message.starts_with("Template rendering failed: "),
                "{}",
                e.message
            );
        }
        // A bad variable the template never references is harmless.
        assert_eq!(render("plain", json!({"x": {"a": 1}})).unwrap(), "plain");
    }
}
