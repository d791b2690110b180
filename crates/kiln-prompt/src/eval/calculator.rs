//! A calculator tool: evaluates arithmetic expressions (`+ - * / ^`, parentheses, decimals).

use kiln_core::Tool;
use serde_json::{Value, json};

/// Evaluates an arithmetic expression given as `{"expression": "..."}`.
///
/// ```
/// use kiln_core::Tool;
/// use kiln_prompt::eval::Calculator;
/// assert_eq!(Calculator.call(&serde_json::json!({"expression": "(94 - 2*35) / 2"}))?, "12");
/// # Ok::<(), kiln_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Calculator;

impl Tool for Calculator {
    fn name(&self) -> &str {
        "calculator"
    }
    fn description(&self) -> &str {
        "Evaluates an arithmetic expression with + - * / ^ and parentheses, e.g. (94 - 2*35) / 2."
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]})
    }
    fn call(&self, args: &Value) -> kiln_core::Result<String> {
        let expr = args
            .get("expression")
            .and_then(Value::as_str)
            .or_else(|| args.as_str())
            .ok_or_else(|| kiln_core::Error::InvalidParameter {
                name: "expression",
                message: "give {\"expression\": \"...\"}".into(),
            })?;
        let v = evaluate(expr).map_err(|message| kiln_core::Error::InvalidParameter {
            name: "expression",
            message,
        })?;
        Ok(format_number(v))
    }
}

/// Formats a result: whole numbers without a fraction, others with up to 6 decimals.
fn format_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        let s = format!("{v:.6}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Evaluates an expression.
///
/// # Errors
/// A message saying what is wrong and where.
pub(crate) fn evaluate(expr: &str) -> std::result::Result<f64, String> {
    let cleaned: String = expr
        .chars()
        .map(|c| match c {
            '×' | 'x' | 'X' => '*',
            '÷' => '/',
            c => c,
        })
        .filter(|c| !c.is_whitespace() && *c != ',')
        .collect();
    let mut p = Parser {
        s: cleaned.as_bytes(),
        i: 0,
    };
    let v = p.sum()?;
    if p.i != p.s.len() {
        return Err(format!("unexpected `{}` at {}", p.s[p.i] as char, p.i));
    }
    if v.is_finite() {
        Ok(v)
    } else {
        Err("the result is not a finite number (division by zero?)".into())
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn sum(&mut self) -> std::result::Result<f64, String> {
        let mut v = self.product()?;
        while let Some(op @ (b'+' | b'-')) = self.peek() {
            self.i += 1;
            let r = self.product()?;
            v = if op == b'+' { v + r } else { v - r };
        }
        Ok(v)
    }
    fn product(&mut self) -> std::result::Result<f64, String> {
        let mut v = self.power()?;
        while let Some(op @ (b'*' | b'/')) = self.peek() {
            self.i += 1;
            let r = self.power()?;
            v = if op == b'*' { v * r } else { v / r };
        }
        Ok(v)
    }
    fn power(&mut self) -> std::result::Result<f64, String> {
        let base = self.unary()?;
        if self.peek() == Some(b'^') {
            self.i += 1;
            let exp = self.power()?;
            return Ok(base.powf(exp));
        }
        Ok(base)
    }
    fn unary(&mut self) -> std::result::Result<f64, String> {
        match self.peek() {
            // A sign binds looser than `^`: -2^2 is -(2^2).
            Some(b'-') => {
                self.i += 1;
                Ok(-self.power()?)
            }
            Some(b'+') => {
                self.i += 1;
                self.power()
            }
            Some(b'(') => {
                self.i += 1;
                let v = self.sum()?;
                if self.peek() != Some(b')') {
                    return Err("missing `)`".into());
                }
                self.i += 1;
                Ok(v)
            }
            Some(c) if c.is_ascii_digit() || c == b'.' => {
                let start = self.i;
                while self.peek().is_some_and(|c| c.is_ascii_digit() || c == b'.') {
                    self.i += 1;
                }
                let text = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
                text.parse().map_err(|_| format!("bad number `{text}`"))
            }
            Some(c) => Err(format!("unexpected `{}` at {}", c as char, self.i)),
            None => Err("the expression ends too early".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluates_with_precedence() {
        assert_eq!(evaluate("2 + 3 * 4").ok(), Some(14.0));
        assert_eq!(evaluate("(2 + 3) * 4").ok(), Some(20.0));
        assert_eq!(evaluate("-2^2").ok(), Some(-4.0));
        assert_eq!(evaluate("2^3^2").ok(), Some(512.0));
        assert_eq!(evaluate("1,000 / 8").ok(), Some(125.0));
        assert_eq!(evaluate("3 x 4").ok(), Some(12.0));
        assert!(evaluate("2 +").is_err() && evaluate("(1").is_err() && evaluate("1/0").is_err());
        assert!(evaluate("2 apples").is_err());
        assert_eq!(format_number(2.5), "2.5");
        assert_eq!(format_number(1.0 / 3.0), "0.333333");
    }
}
