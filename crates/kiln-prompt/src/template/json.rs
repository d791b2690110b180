//! `tojson` as transformers defines it: Python's `json.dumps(x, ensure_ascii=False, indent=indent,
//! separators=separators, sort_keys=sort_keys)`, byte for byte (separators `", "` and `": "`, or
//! `","` and `": "` with an indent; no HTML escaping; keys in insertion order; Python float
//! spelling).

use std::fmt::Write as _;

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Error, ErrorKind, Value};

/// Options of Python's `json.dumps` that templates use.
#[derive(Debug, Clone, Default)]
pub(crate) struct DumpOptions {
    /// `None`: one line. `Some(s)`: newline and `s` repeated per level.
    pub indent: Option<String>,
    /// Escape every non-ASCII character as `\uXXXX`.
    pub ensure_ascii: bool,
    /// Sort object keys.
    pub sort_keys: bool,
    /// `(item_separator, key_separator)`; `None` picks Python's defaults for the indent.
    pub separators: Option<(String, String)>,
}

/// The `tojson` filter: `value | tojson(indent=2, ensure_ascii=false, sort_keys=false,
/// separators=...)`.
pub(crate) fn tojson_filter(value: &Value, kwargs: Kwargs) -> Result<String, Error> {
    let mut opts = DumpOptions::default();
    if let Some(indent) = kwargs
        .get::<Option<Value>>("indent")?
        .filter(|v| !v.is_none())
    {
        opts.indent = Some(if let Some(s) = indent.as_str() {
            s.to_string()
        } else {
            let n = i64::try_from(indent.clone()).map_err(|_| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: indent must be an integer or a string",
                )
            })?;
            " ".repeat(usize::try_from(n).unwrap_or(0))
        });
    }
    opts.ensure_ascii = kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false);
    opts.sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    if let Some(seps) = kwargs
        .get::<Option<Value>>("separators")?
        .filter(|v| !v.is_none())
    {
        let parts: Vec<String> = seps
            .try_iter()?
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: separators must be two strings",
                )
            })?;
        let [item, key]: [String; 2] = parts.try_into().map_err(|_| {
            Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be two strings",
            )
        })?;
        opts.separators = Some((item, key));
    }
    kwargs.assert_all_used()?;
    dumps(value, &opts)
}

/// Serializes a template value as Python's `json.dumps` would.
pub(crate) fn dumps(value: &Value, opts: &DumpOptions) -> Result<String, Error> {
    let (item_sep, key_sep) = match &opts.separators {
        Some((i, k)) => (i.clone(), k.clone()),
        None if opts.indent.is_some() => (",".to_string(), ": ".to_string()),
        None => (", ".to_string(), ": ".to_string()),
    };
    let mut out = String::new();
    let w = Writer {
        opts,
        item_sep: &item_sep,
        key_sep: &key_sep,
    };
    w.write(&mut out, value, 0)?;
    Ok(out)
}

struct Writer<'a> {
    opts: &'a DumpOptions,
    item_sep: &'a str,
    key_sep: &'a str,
}

impl Writer<'_> {
    fn newline(&self, out: &mut String, level: usize) {
        if let Some(indent) = &self.opts.indent {
            out.push('\n');
            for _ in 0..level {
                out.push_str(indent);
            }
        }
    }

    fn write(&self, out: &mut String, value: &Value, level: usize) -> Result<(), Error> {
        match value.kind() {
            ValueKind::Undefined | ValueKind::None => out.push_str("null"),
            ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
            ValueKind::Number => write_number(out, value),
            ValueKind::String => write_string(
                out,
                value.as_str().unwrap_or_default(),
                self.opts.ensure_ascii,
            ),
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = value.try_iter()?.collect();
                self.write_seq(out, &items, level)?;
            }
            ValueKind::Map => {
                let mut entries = Vec::new();
                for key in value.try_iter()? {
                    let item = value.get_item(&key)?;
                    let key = match key.as_str() {
                        Some(s) => s.to_string(),
                        None if key.is_none() => "null".to_string(),
                        None => key.to_string(),
                    };
                    entries.push((key, item));
                }
                if self.opts.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(&b.0));
                }
                self.write_map(out, &entries, level)?;
            }
            ValueKind::Bytes => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: bytes are not JSON serializable",
                ));
            }
            _ => {
                // Plain objects (namespaces, callables) are not JSON in Python either.
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!(
                        "tojson: object of kind {} is not JSON serializable",
                        value.kind()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn write_seq(&self, out: &mut String, items: &[Value], level: usize) -> Result<(), Error> {
        if items.is_empty() {
            out.push_str("[]");
            return Ok(());
        }
        out.push('[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push_str(self.item_sep);
            }
            self.newline(out, level + 1);
            self.write(out, item, level + 1)?;
        }
        self.newline(out, level);
        out.push(']');
        Ok(())
    }

    fn write_map(
        &self,
        out: &mut String,
        entries: &[(String, Value)],
        level: usize,
    ) -> Result<(), Error> {
        if entries.is_empty() {
            out.push_str("{}");
            return Ok(());
        }
        out.push('{');
        for (i, (key, item)) in entries.iter().enumerate() {
            if i > 0 {
                out.push_str(self.item_sep);
            }
            self.newline(out, level + 1);
            write_string(out, key, self.opts.ensure_ascii);
            out.push_str(self.key_sep);
            self.write(out, item, level + 1)?;
        }
        self.newline(out, level);
        out.push('}');
        Ok(())
    }
}

fn write_number(out: &mut String, value: &Value) {
    if value.is_integer() {
        // Integers (up to i128) print in decimal, as Python's int.
        let _ = write!(out, "{value}");
        return;
    }
    match f64::try_from(value.clone()) {
        Ok(f) => out.push_str(&python_float_repr(f)),
        Err(_) => {
            let _ = write!(out, "{value}");
        }
    }
}

/// Python's `repr(float)` (what `json.dumps` writes): shortest round-trip digits, positional for
/// exponents in `[-4, 16)`, scientific with a signed two-digit exponent otherwise.
pub(crate) fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    // `{:e}` gives the shortest round-trip digits: "1.2345e-5", "1e16".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if negative { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let body = if exp >= 0 {
            let int_len = (exp + 1) as usize;
            if digits.len() <= int_len {
                format!("{digits}{}.0", "0".repeat(int_len - digits.len()))
            } else {
                format!("{}.{}", &digits[..int_len], &digits[int_len..])
            }
        } else {
            format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
        };
        format!("{sign}{body}")
    } else {
        let m = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{m}e{esign}{:02}", exp.abs())
    }
}

fn write_string(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if ensure_ascii && (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(v: serde_json::Value, opts: &DumpOptions) -> String {
        dumps(&Value::from_serialize(&v), opts).unwrap()
    }

    #[test]
    fn matches_python_json_dumps() {
        let v = serde_json::json!({"b": [1, 2.5, "é\n\"", null, true], "a": {}, "c": []});
        // json.dumps(v, ensure_ascii=False)
        assert_eq!(
            dump(v.clone(), &DumpOptions::default()),
            r#"{"b": [1, 2.5, "é\n\"", null, true], "a": {}, "c": []}"#
        );
        // json.dumps(v, ensure_ascii=False, indent=2)
        let opts = DumpOptions {
            indent: Some("  ".into()),
            ..DumpOptions::default()
        };
        assert_eq!(
            dump(v.clone(), &opts),
            "{\n  \"b\": [\n    1,\n    2.5,\n    \"é\\n\\\"\",\n    null,\n    true\n  ],\n  \"a\": {},\n  \"c\": []\n}"
        );
        let opts = DumpOptions {
            ensure_ascii: true,
            sort_keys: true,
            ..DumpOptions::default()
        };
        assert_eq!(
            dump(v, &opts),
            r#"{"a": {}, "b": [1, 2.5, "\u00e9\n\"", null, true], "c": []}"#
        );
    }

    #[test]
    fn floats_are_spelled_as_python() {
        for (f, s) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1e16, "1e+16"),
            (1234567.5, "1234567.5"),
            (-2.5e-7, "-2.5e-07"),
            (123456789012345.0, "123456789012345.0"),
        ] {
            assert_eq!(python_float_repr(f), s, "{f}");
        }
    }
}
