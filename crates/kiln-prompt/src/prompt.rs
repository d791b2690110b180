//! Prompt templates with declared, typed variables.
//!
//! Two syntaxes:
//! - [`Syntax::Braces`]: Python `str.format` style, `{name}` placeholders and `{{` / `}}` for
//!   literal braces. Every placeholder is a variable (a string unless declared otherwise).
//! - [`Syntax::Jinja`]: a Jinja template (minijinja, strict undefined). Variables the template
//!   reads are found by analysis; each is `json` (any value) unless declared otherwise.
//!
//! Rendering checks the values: a variable that is neither given nor defaulted is
//! [`Error::MissingVariable`], a value for an undeclared name is [`Error::UnknownVariable`], a
//! value of the wrong JSON type is [`Error::VariableType`].

use std::collections::{BTreeMap, HashSet};

use minijinja::{Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, Result};

/// The type of a prompt variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum VarType {
    /// A JSON string.
    String,
    /// A JSON number.
    Number,
    /// A JSON boolean.
    Boolean,
    /// A JSON array (in braces syntax rendered one item per line).
    List,
    /// Any JSON value (in braces syntax rendered as compact JSON unless it is a string).
    Json,
}

impl VarType {
    /// The type's name as written in prompt files.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            VarType::String => "string",
            VarType::Number => "number",
            VarType::Boolean => "boolean",
            VarType::List => "list",
            VarType::Json => "json",
        }
    }

    fn accepts(self, v: &Value) -> bool {
        match self {
            VarType::String => v.is_string(),
            VarType::Number => v.is_number(),
            VarType::Boolean => v.is_boolean(),
            VarType::List => v.is_array(),
            VarType::Json => true,
        }
    }
}

fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

/// A declared variable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variable {
    /// The name used in the template.
    pub name: String,
    /// Its type.
    #[serde(rename = "type", default = "default_type")]
    pub ty: VarType,
    /// What it is for (documentation only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The value used when none is given; without one the variable is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
}

fn default_type() -> VarType {
    VarType::String
}

/// The placeholder syntax of a [`PromptTemplate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Syntax {
    /// `{name}` placeholders, `{{` and `}}` for literal braces.
    #[default]
    Braces,
    /// Jinja (`{{ name }}`, `{% for %}`, ...).
    Jinja,
}

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Var(String),
}

/// A prompt with typed variables.
///
/// ```
/// use kiln_prompt::{PromptTemplate, VarType};
/// use serde_json::json;
///
/// let t = PromptTemplate::braces("classify", "Classify {text} into one of: {labels}.")?
///     .declare("labels", VarType::List)?;
/// let out = t.render(&json!({"text": "\"where is my parcel\"", "labels": ["shipping", "refund"]}))?;
/// assert_eq!(out, "Classify \"where is my parcel\" into one of: shipping\nrefund.");
/// assert!(t.render(&json!({"labels": []})).unwrap_err().to_string().contains("missing variable `text`"));
/// # Ok::<(), kiln_prompt::Error>(())
/// ```
#[derive(Debug)]
pub struct PromptTemplate {
    name: String,
    source: String,
    syntax: Syntax,
    variables: Vec<Variable>,
    pieces: Vec<Piece>,
    env: Option<Environment<'static>>,
}

impl PromptTemplate {
    /// A template in [`Syntax::Braces`]; every placeholder is declared as a string variable.
    ///
    /// # Errors
    /// [`Error::Template`] for an unclosed `{`, a lone `}` or an empty or non-identifier
    /// placeholder.
    pub fn braces(name: impl Into<String>, source: impl Into<String>) -> Result<Self> {
        Self::new(name, source, Syntax::Braces)
    }

    /// A template in [`Syntax::Jinja`]; every variable the template reads is declared as `json`.
    ///
    /// # Errors
    /// [`Error::Template`] with the line of a syntax error.
    pub fn jinja(name: impl Into<String>, source: impl Into<String>) -> Result<Self> {
        Self::new(name, source, Syntax::Jinja)
    }

    /// A template in the given syntax.
    ///
    /// # Errors
    /// As [`Self::braces`] and [`Self::jinja`].
    pub fn new(name: impl Into<String>, source: impl Into<String>, syntax: Syntax) -> Result<Self> {
        let (name, source) = (name.into(), source.into());
        let (pieces, env, found, default_ty) = match syntax {
            Syntax::Braces => {
                let pieces = parse_braces(&name, &source)?;
                let mut found = Vec::new();
                for p in &pieces {
                    if let Piece::Var(v) = p
                        && !found.contains(v)
                    {
                        found.push(v.clone());
                    }
                }
                (pieces, None, found, VarType::String)
            }
            Syntax::Jinja => {
                let mut env = Environment::new();
                minijinja_contrib::add_to_environment(&mut env);
                env.set_unknown_method_callback(
                    minijinja_contrib::pycompat::unknown_method_callback,
                );
                env.set_undefined_behavior(UndefinedBehavior::Strict);
                env.set_trim_blocks(true);
                env.set_lstrip_blocks(true);
                env.add_template_owned(name.clone(), source.clone())
                    .map_err(|e| Error::from_jinja(&name, &e))?;
                let tmpl = env
                    .get_template(&name)
                    .map_err(|e| Error::from_jinja(&name, &e))?;
                let mut found: Vec<String> = tmpl.undeclared_variables(false).into_iter().collect();
                found.sort();
                (Vec::new(), Some(env), found, VarType::Json)
            }
        };
        let variables = found
            .into_iter()
            .map(|name| Variable {
                name,
                ty: default_ty,
                description: None,
                default: None,
            })
            .collect();
        Ok(Self {
            name,
            source,
            syntax,
            variables,
            pieces,
            env,
        })
    }

    /// Declares (or re-declares) a variable's type.
    ///
    /// # Errors
    /// [`Error::UnknownVariable`] when the template does not use the variable.
    pub fn declare(self, name: &str, ty: VarType) -> Result<Self> {
        self.with_variable(Variable {
            name: name.to_string(),
            ty,
            description: None,
            default: None,
        })
    }

    /// Declares a variable with its type, description and default.
    ///
    /// # Errors
    /// [`Error::UnknownVariable`] when the template does not use the variable;
    /// [`Error::VariableType`] when the default does not have the type.
    pub fn with_variable(mut self, var: Variable) -> Result<Self> {
        if let Some(d) = &var.default {
            self.check_type(&var, d)?;
        }
        match self.variables.iter_mut().find(|v| v.name == var.name) {
            Some(slot) => *slot = var,
            None => {
                return Err(Error::UnknownVariable {
                    prompt: self.name,
                    variable: var.name,
                });
            }
        }
        Ok(self)
    }

    /// The template's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The template source.
    #[must_use]
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The syntax.
    #[must_use]
    pub fn syntax(&self) -> Syntax {
        self.syntax
    }

    /// The variables, in order of first use (braces) or by name (Jinja).
    #[must_use]
    pub fn variables(&self) -> &[Variable] {
        &self.variables
    }

    fn check_type(&self, var: &Variable, v: &Value) -> Result<()> {
        if var.ty.accepts(v) {
            Ok(())
        } else {
            Err(Error::VariableType {
                prompt: self.name.clone(),
                variable: var.name.clone(),
                expected: var.ty.as_str(),
                got: json_type_name(v),
            })
        }
    }

    /// Checks `values` (a JSON object, or `null` for none) against the declarations and returns
    /// every variable's value, defaults filled in.
    fn resolve(&self, values: &Value) -> Result<BTreeMap<String, Value>> {
        let given = match values {
            Value::Object(m) => m.clone(),
            Value::Null => serde_json::Map::new(),
            other => {
                return Err(Error::InvalidParameter {
                    name: "values",
                    message: format!("must be a JSON object, got {}", json_type_name(other)),
                });
            }
        };
        let declared: HashSet<&str> = self.variables.iter().map(|v| v.name.as_str()).collect();
        if let Some(unknown) = given.keys().find(|k| !declared.contains(k.as_str())) {
            return Err(Error::UnknownVariable {
                prompt: self.name.clone(),
                variable: unknown.clone(),
            });
        }
        let mut out = BTreeMap::new();
        for var in &self.variables {
            let value = match given.get(&var.name).or(var.default.as_ref()) {
                Some(v) => v.clone(),
                None => {
                    return Err(Error::MissingVariable {
                        prompt: self.name.clone(),
                        variable: var.name.clone(),
                    });
                }
            };
            self.check_type(var, &value)?;
            out.insert(var.name.clone(), value);
        }
        Ok(out)
    }

    /// Renders with the variables of a JSON object.
    ///
    /// # Errors
    /// [`Error::MissingVariable`], [`Error::UnknownVariable`], [`Error::VariableType`], or
    /// [`Error::Template`] when a Jinja template fails.
    pub fn render(&self, values: &Value) -> Result<String> {
        let values = self.resolve(values)?;
        match &self.env {
            Some(env) => {
                let tmpl = env
                    .get_template(&self.name)
                    .map_err(|e| Error::from_jinja(&self.name, &e))?;
                tmpl.render(minijinja::Value::from_serialize(&values))
                    .map_err(|e| Error::from_jinja(&self.name, &e))
            }
            None => {
                let mut out = String::with_capacity(self.source.len());
                for piece in &self.pieces {
                    match piece {
                        Piece::Text(t) => out.push_str(t),
                        Piece::Var(v) => {
                            out.push_str(&display(values.get(v).unwrap_or(&Value::Null)))
                        }
                    }
                }
                Ok(out)
            }
        }
    }

    /// Renders with `(name, value)` pairs.
    ///
    /// # Errors
    /// As [`Self::render`].
    pub fn render_with<'a, I, V>(&self, values: I) -> Result<String>
    where
        I: IntoIterator<Item = (&'a str, V)>,
        V: Into<Value>,
    {
        let map: serde_json::Map<String, Value> = values
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.into()))
            .collect();
        self.render(&Value::Object(map))
    }
}

/// How a value appears in a braces template: strings as they are, lists one item per line, anything
/// else as compact JSON.
fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(display).collect::<Vec<_>>().join("\n"),
        other => other.to_string(),
    }
}

fn parse_braces(name: &str, source: &str) -> Result<Vec<Piece>> {
    let err = |line: usize, message: String| Error::Template {
        name: name.to_string(),
        line: Some(line),
        message,
    };
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = source.chars().peekable();
    let mut line = 1;
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '}' => {
                return Err(err(
                    line,
                    "single `}` (write `}}` for a literal brace)".into(),
                ));
            }
            '{' => {
                let mut var = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => var.push(c),
                        None => return Err(err(line, format!("unclosed placeholder `{{{var}`"))),
                    }
                }
                let var = var.trim().to_string();
                let ident = var
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_alphabetic() || c == '_')
                    && var.chars().all(|c| c.is_alphanumeric() || c == '_');
                if !ident {
                    return Err(err(
                        line,
                        format!("placeholder `{{{var}}}` is not a variable name"),
                    ));
                }
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Var(var));
            }
            c => {
                if c == '\n' {
                    line += 1;
                }
                text.push(c);
            }
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn braces_render_and_escape() {
        let t = PromptTemplate::braces("t", "{{literal}} {a} and {a}, n={n}")
            .unwrap()
            .declare("n", VarType::Number)
            .unwrap();
        assert_eq!(t.variables().len(), 2);
        assert_eq!(
            t.render(&json!({"a": "x", "n": 3})).unwrap(),
            "{literal} x and x, n=3"
        );
        assert_eq!(
            t.render_with([("a", json!("y")), ("n", json!(1.5))])
                .unwrap(),
            "{literal} y and y, n=1.5"
        );
    }

    #[test]
    fn missing_unknown_and_mistyped_variables_are_named() {
        let t = PromptTemplate::braces("greet", "Hello {who}").unwrap();
        assert!(
            matches!(t.render(&json!({})), Err(Error::MissingVariable { variable, .. }) if variable == "who")
        );
        let err = t.render(&json!({"who": "a", "whom": "b"})).unwrap_err();
        assert!(
            matches!(&err, Error::UnknownVariable { variable, .. } if variable == "whom"),
            "{err}"
        );
        let err = t.render(&json!({"who": 3})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "prompt `greet`: variable `who` must be string, got number"
        );
        assert!(matches!(
            t.declare("nobody", VarType::String),
            Err(Error::UnknownVariable { .. })
        ));
    }

    #[test]
    fn defaults_fill_in() {
        let t = PromptTemplate::braces("t", "{a}-{b}")
            .unwrap()
            .with_variable(Variable {
                name: "b".into(),
                ty: VarType::String,
                description: None,
                default: Some(json!("d")),
            })
            .unwrap();
        assert_eq!(t.render(&json!({"a": "x"})).unwrap(), "x-d");
    }

    #[test]
    fn bad_braces_name_the_line() {
        let err = PromptTemplate::braces("t", "ok\n{oops")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("unclosed"), "{err}");
        assert!(PromptTemplate::braces("t", "a } b").is_err());
        assert!(PromptTemplate::braces("t", "{1x}").is_err());
    }

    #[test]
    fn jinja_variables_are_found_and_checked() {
        let t = PromptTemplate::jinja(
            "j",
            "{% for e in examples %}Q: {{ e.q }}\n{% endfor %}Q: {{ question }}",
        )
        .unwrap()
        .declare("examples", VarType::List)
        .unwrap();
        let names: Vec<_> = t.variables().iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["examples", "question"]);
        let out = t
            .render(&json!({"examples": [{"q": "1+1"}], "question": "2+2"}))
            .unwrap();
        assert_eq!(out, "Q: 1+1\nQ: 2+2");
        assert!(matches!(
            t.render(&json!({"examples": "x", "question": 1})),
            Err(Error::VariableType { .. })
        ));
        let err = PromptTemplate::jinja("j", "a\n{% if %}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
    }
}
