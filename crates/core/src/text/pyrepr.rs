//! Python's `str()` of template values, which Jinja2 prints where minijinja would print its own
//! JSON-like form: `{{ tool }}` for a dict is `{'type': 'function', 'name': 'f'}` under
//! transformers (several tool-calling templates print schemas this way), `[1, 'a']` for a list,
//! `1.0` / `1e-05` for floats. Only lists and dicts (and what they contain) differ; scalars
//! printed alone already match.

use std::fmt::Write;

use minijinja::value::{Value, ValueKind};

/// `str(value)` as Python prints it: strings bare, containers and their items as `repr`.
pub(crate) fn py_str(v: &Value) -> String {
    match v.kind() {
        ValueKind::String => v.as_str().unwrap_or_default().to_owned(),
        _ => {
            let mut out = String::new();
            py_repr(v, &mut out);
            out
        }
    }
}

/// Whether `{{ v }}` must be printed the Python way rather than by minijinja.
pub(crate) fn needs_py_format(v: &Value) -> bool {
    matches!(v.kind(), ValueKind::Seq | ValueKind::Map | ValueKind::Number) && !is_plain_number(v)
}

fn is_plain_number(v: &Value) -> bool {
    v.is_integer()
}

pub(crate) fn py_repr(v: &Value, out: &mut String) {
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if v.is_true() { "True" } else { "False" }),
        ValueKind::String => repr_str(v.as_str().unwrap_or_default(), out),
        ValueKind::Number if v.is_integer() => {
            let _ = write!(out, "{v}");
        }
        ValueKind::Number => repr_float(f64::try_from(v.clone()).unwrap_or(f64::NAN), out),
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            for (i, item) in v.try_iter().into_iter().flatten().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(&item, out);
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            for (i, key) in v.try_iter().into_iter().flatten().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(&key, out);
                out.push_str(": ");
                py_repr(&v.get_item(&key).unwrap_or_default(), out);
            }
            out.push('}');
        }
        _ => {
            let _ = write!(out, "{v}");
        }
    }
}

/// Python's `repr(float)`: shortest round-trip digits, positional for exponents in [-4, 16),
/// otherwise `1e-05` / `1.5e+16` style; whole numbers keep a `.0`.
fn repr_float(x: f64, out: &mut String) {
    if x.is_nan() {
        out.push_str("nan");
    } else if x.is_infinite() {
        out.push_str(if x > 0.0 { "inf" } else { "-inf" });
    } else {
        let sci = format!("{x:e}");
        let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        if (-4..16).contains(&exp) {
            let s = format!("{x}");
            out.push_str(&s);
            if !s.contains('.') {
                out.push_str(".0");
            }
        } else {
            let _ = write!(out, "{mantissa}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
        }
    }
}

/// Python's `repr(str)`: single quotes unless the text has `'` and no `"`; backslash escapes
/// for the quote, `\\`, `\n`/`\r`/`\t` and other non-printable characters.
fn repr_str(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if !is_printable(c) => {
                let n = c as u32;
                let _ = match n {
                    0..=0xff => write!(out, "\\x{n:02x}"),
                    0x100..=0xffff => write!(out, "\\u{n:04x}"),
                    _ => write!(out, "\\U{n:08x}"),
                };
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// Python's `str.isprintable` for the characters that occur in practice: controls (Cc),
/// separators other than the ASCII space (Zs, Zl, Zp) and the common format characters (Cf).
fn is_printable(c: char) -> bool {
    !matches!(c as u32,
        0..=0x1f | 0x7f..=0xa0 | 0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x1680
        | 0x180e | 0x2000..=0x200f | 0x2028..=0x202f | 0x205f..=0x2064 | 0x2066..=0x206f
        | 0x3000 | 0xd800..=0xf8ff | 0xfeff | 0xfff9..=0xfffb | 0xe0001 | 0xe0020..=0xe007f
        | 0xf0000..)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: Value) -> String {
        py_str(&v)
    }

    #[test]
    fn containers_print_like_python() {
        let v = Value::from_serialize(serde_json::json!({"a": [1, 2.5, "x'y", "q\"", true, null], "b": {"c": "é\n"}}));
        assert_eq!(s(v), r#"{'a': [1, 2.5, "x'y", 'q"', True, None], 'b': {'c': 'é\n'}}"#);
        assert_eq!(s(Value::from_serialize(Vec::<i32>::new())), "[]");
        assert_eq!(s(Value::from_serialize(serde_json::json!(["both'\"", "\u{7}\u{a0}\u{2028}😀\\"]))), r#"['both\'"', '\x07\xa0\u2028😀\\']"#);
    }

    #[test]
    fn floats_print_like_python() {
        for (x, want) in [(1.0, "1.0"), (0.1, "0.1"), (1e-5, "1e-05"), (1.5e16, "1.5e+16"), (-2.25, "-2.25"), (1e15, "1000000000000000.0"), (0.0001, "0.0001")] {
            assert_eq!(s(Value::from(x)), want, "{x}");
        }
        assert_eq!(s(Value::from(7)), "7");
        assert!(!needs_py_format(&Value::from(7)) && needs_py_format(&Value::from(1.0)));
    }
}
