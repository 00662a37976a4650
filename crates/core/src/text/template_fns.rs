//! The globals and filters that Hugging Face's `apply_chat_template` adds to its Jinja
//! environment and that chat templates call: `raise_exception(msg)`, `strftime_now(fmt)` and a
//! Python-compatible `tojson` (`json.dumps(x, ensure_ascii=False, indent=…)`: `", "`/`": "`
//! separators, no HTML escaping, unlike minijinja's built-in filter).

use std::time::{SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use minijinja::value::{Kwargs, Object, ObjectRepr, Value};
use minijinja::{Error, ErrorKind, State};

/// `raise_exception(message)`: templates use it to reject conversations they cannot render
/// (e.g. roles not alternating); rendering fails with that message.
pub(crate) fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// `strftime_now(format)`: the current date/time (UTC: no time-zone database here), used by
/// Llama-3.x templates for "Today Date: 26 Jul 2024". `now_unix` freezes the clock (tests).
pub(crate) fn strftime_now(format: String, now_unix: Option<i64>) -> String {
    let secs = now_unix.unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64));
    strftime_at(secs, &format)
}

/// `x | string`: Python's `str(x)` (dicts and lists as `{'k': 'v'}` / `[1, 2]`); undefined → ''.
pub(crate) fn string(value: &Value) -> Value {
    if value.is_undefined() {
        Value::from("")
    } else if value.kind() == minijinja::value::ValueKind::String {
        value.clone()
    } else {
        Value::from(super::pyrepr::py_str(value))
    }
}

/// `x is iterable` as in Jinja2 (`iter(x)` succeeds): `none` is not iterable (minijinja's own
/// test says it is, which sends `tools is iterable and tools | length > 0` into an error).
pub(crate) fn is_iterable(value: &Value) -> bool {
    !is_py_none(value) && value.try_iter().is_ok()
}

/// Python's `None` as HF passes it for `tools`/`documents` when a request has none. minijinja's
/// own `none` iterates as an empty list, where Python raises ("'NoneType' object is not
/// iterable"): templates that loop over `tools` unconditionally must fail as under transformers.
/// This value is falsy, prints `None`, is `none` for the `is none` test (overridden below), and
/// cannot be iterated, measured or indexed. (`tools == none` would be false; templates use `is`.)
#[derive(Debug)]
pub(crate) struct PyNone;

impl Object for PyNone {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }
    fn is_true(self: &Arc<Self>) -> bool {
        false
    }
    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("None")
    }
}

pub(crate) fn is_py_none(value: &Value) -> bool {
    value.is_none() || value.downcast_object_ref::<PyNone>().is_some()
}

/// `x is none`, counting [`PyNone`].
pub(crate) fn is_none(value: &Value) -> bool {
    is_py_none(value)
}

/// `x | length` as Jinja2's `len()`: undefined counts 0; lazy results (`map`, `select`, …:
/// generators in Python) have no length.
pub(crate) fn length(value: &Value) -> Result<usize, Error> {
    if value.is_undefined() {
        return Ok(0);
    }
    value.len().ok_or_else(|| {
        Error::new(ErrorKind::InvalidOperation, format!("object of type {} has no len()", value.kind()))
    })
}

/// Jinja2's `map`, `select`, `reject`, `selectattr` and `rejectattr` return generators, which
/// `tojson` and `length` reject and `list`/`join`/loops consume; minijinja's return lists. This
/// wraps minijinja's result as a lazy iterable so templates behave as under transformers.
pub(crate) fn lazy(items: Vec<Value>) -> Value {
    let items = std::sync::Arc::new(items);
    Value::make_iterable(move || {
        let items = items.clone();
        (0..items.len()).map(move |i| items[i].clone())
    })
}

/// Python methods templates call on values (`.strip()`, `.items()`, `.append()`, …):
/// minijinja-contrib's pycompat.
pub(crate) fn unknown_method(state: &State, value: &Value, method: &str, args: &[Value]) -> Result<Value, Error> {
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] =
    ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

/// Formats a Unix time with the common strftime directives (`%Y %y %m %d %e %H %I %M %S %p %B %b
/// %h %A %a %j %%`); unknown directives are kept verbatim.
pub(crate) fn strftime_at(unix_secs: i64, format: &str) -> String {
    let days = unix_secs.div_euclid(86_400);
    let secs_of_day = unix_secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60);
    let weekday = (days + 4).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    let day_of_year = days - days_from_civil(year, 1, 1) + 1;
    let hour12 = if hour % 12 == 0 { 12 } else { hour % 12 };

    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out += &year.to_string(),
            Some('y') => out += &format!("{:02}", year.rem_euclid(100)),
            Some('m') => out += &format!("{month:02}"),
            Some('d') => out += &format!("{day:02}"),
            Some('e') => out += &format!("{day:2}"),
            Some('H') => out += &format!("{hour:02}"),
            Some('I') => out += &format!("{hour12:02}"),
            Some('M') => out += &format!("{minute:02}"),
            Some('S') => out += &format!("{second:02}"),
            Some('p') => out += if hour < 12 { "AM" } else { "PM" },
            Some('B') => out += MONTHS[month as usize - 1],
            Some('b') | Some('h') => out += &MONTHS[month as usize - 1][..3],
            Some('A') => out += DAYS[weekday],
            Some('a') => out += &DAYS[weekday][..3],
            Some('j') => out += &format!("{day_of_year:03}"),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31), proleptic Gregorian
/// (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `json.dumps` fails on Jinja's Undefined and on generators; minijinja would write null / a list.
fn reject_non_json(value: &Value) -> Result<(), Error> {
    use minijinja::value::ValueKind;
    let bad = |what: &str| Err(Error::new(ErrorKind::InvalidOperation, format!("Object of type {what} is not JSON serializable")));
    match value.kind() {
        ValueKind::Undefined => bad("Undefined"),
        ValueKind::Iterable => bad("generator"),
        ValueKind::Seq => value.try_iter()?.try_for_each(|v| reject_non_json(&v)),
        ValueKind::Map => value.try_iter()?.try_for_each(|k| reject_non_json(&value.get_item(&k)?)),
        _ => Ok(()),
    }
}

/// Python's default `json.dumps` separators: `", "` between items, `": "` after keys.
struct PyCompactFormatter;

impl serde_json::ser::Formatter for PyCompactFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
}

/// `x | tojson` / `x | tojson(indent=4)` / `tojson(x, 2)`, as HF's filter renders it. Other
/// keyword arguments HF accepts (`ensure_ascii`, `separators`, `sort_keys`) are ignored.
pub(crate) fn tojson(
    value: &Value,
    indent: Option<Value>,
    kwargs: Kwargs,
) -> Result<String, Error> {
    let indent = match indent {
        Some(v) => Some(v),
        None => kwargs.get::<Option<Value>>("indent")?,
    };
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => Some(usize::try_from(v)?),
    };
    if value.downcast_object_ref::<PyNone>().is_some() {
        return Ok("null".into());
    }
    reject_non_json(value)?;
    let mut out = Vec::new();
    let result = match indent {
        Some(n) => {
            let pad = " ".repeat(n);
            let formatter = serde_json::ser::PrettyFormatter::with_indent(pad.as_bytes());
            serde::Serialize::serialize(
                value,
                &mut serde_json::Serializer::with_formatter(&mut out, formatter),
            )
        }
        None => serde::Serialize::serialize(
            value,
            &mut serde_json::Serializer::with_formatter(&mut out, PyCompactFormatter),
        ),
    };
    result.map_err(|e| {
        Error::new(ErrorKind::InvalidOperation, format!("cannot serialize to JSON: {e}"))
    })?;
    String::from_utf8(out).map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strftime_formats_known_instants() {
        // 2024-02-29 07:04:05 UTC, a Thursday (leap day).
        let t = 1_709_190_245;
        assert_eq!(strftime_at(t, "%d %b %Y"), "29 Feb 2024");
        assert_eq!(
            strftime_at(t, "%A %B %e, %y %H:%M:%S %I%p %j %%"),
            "Thursday February 29, 24 07:04:05 07AM 060 %"
        );
        assert_eq!(strftime_at(0, "%Y-%m-%d %a %Q"), "1970-01-01 Thu %Q");
        assert_eq!(strftime_at(951_782_400, "%Y-%m-%d %j"), "2000-02-29 060");
        assert_eq!(strftime_at(-1, "%Y-%m-%d %H:%M:%S"), "1969-12-31 23:59:59");
        for days in [-800_000i64, -1, 0, 59, 11_016, 19_782, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
