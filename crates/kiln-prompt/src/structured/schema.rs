//! JSON schema to grammar nodes: the subset of JSON schema that constrained decoding supports.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::{Error, Result};

/// Index of a [`Node`] in a [`Grammar`].
pub(crate) type NodeId = u32;

/// The most properties an object schema may declare, and the most values of an `enum`.
pub(crate) const MAX_ALTERNATIVES: usize = 64;

/// One property of an object node: its key as JSON text (with quotes) and its value's node.
#[derive(Debug, Clone)]
pub(crate) struct Prop {
    pub key: Vec<u8>,
    pub node: NodeId,
}

/// A compiled schema node.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// An object with declared properties (`required` as a bit mask), or with free string keys whose
    /// values follow `additional` when no properties are declared.
    Object {
        props: Vec<Prop>,
        required: u64,
        additional: Option<NodeId>,
    },
    /// An array.
    Array {
        items: NodeId,
        min: u32,
        max: Option<u32>,
    },
    /// A string with a length range in characters.
    String { min: u32, max: Option<u32> },
    /// A number (`integer`: no fraction or exponent).
    Number { integer: bool },
    /// One of these JSON texts (`enum`, `const`, `true`/`false`, `null`).
    Literals(Vec<Vec<u8>>),
    /// Any of these nodes (`anyOf`, `oneOf`, a list of types, any value).
    Union(Vec<NodeId>),
}

/// A compiled schema: nodes and the root.
#[derive(Debug, Clone)]
pub(crate) struct Grammar {
    pub nodes: Vec<Node>,
    pub root: NodeId,
}

/// Keywords that only annotate and do not constrain.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "default",
    "examples",
    "$schema",
    "$id",
    "$comment",
    "$defs",
    "definitions",
    "deprecated",
    "readOnly",
    "writeOnly",
];

struct Compiler<'a> {
    nodes: Vec<Node>,
    root: &'a Value,
    refs: HashMap<String, NodeId>,
    any: Option<NodeId>,
}

fn unsupported(path: &str, message: impl std::fmt::Display) -> Error {
    Error::Schema {
        path: if path.is_empty() {
            "#".into()
        } else {
            format!("#{path}")
        },
        message: message.to_string(),
    }
}

impl Grammar {
    /// Compiles a JSON schema.
    pub(crate) fn from_schema(schema: &Value) -> Result<Self> {
        let mut c = Compiler {
            nodes: Vec::new(),
            root: schema,
            refs: HashMap::new(),
            any: None,
        };
        let root = c.compile(schema, "")?;
        Ok(Grammar {
            nodes: c.nodes,
            root,
        })
    }

    /// Any JSON object (OpenAI's `json_object` mode).
    pub(crate) fn any_object() -> Self {
        let mut c = Compiler {
            nodes: Vec::new(),
            root: &Value::Null,
            refs: HashMap::new(),
            any: None,
        };
        let any = c.any();
        let root = c.push(Node::Object {
            props: Vec::new(),
            required: 0,
            additional: Some(any),
        });
        Grammar {
            nodes: c.nodes,
            root,
        }
    }

    pub(crate) fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id as usize]
    }
}

impl Compiler<'_> {
    fn push(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        (self.nodes.len() - 1) as NodeId
    }

    /// The node of any JSON value (built once).
    fn any(&mut self) -> NodeId {
        if let Some(id) = self.any {
            return id;
        }
        let id = self.push(Node::Union(Vec::new()));
        self.any = Some(id);
        let object = self.push(Node::Object {
            props: Vec::new(),
            required: 0,
            additional: Some(id),
        });
        let array = self.push(Node::Array {
            items: id,
            min: 0,
            max: None,
        });
        let string = self.push(Node::String { min: 0, max: None });
        let number = self.push(Node::Number { integer: false });
        let boolean = self.push(Node::Literals(vec![b"true".to_vec(), b"false".to_vec()]));
        let null = self.push(Node::Literals(vec![b"null".to_vec()]));
        self.nodes[id as usize] = Node::Union(vec![object, array, string, number, boolean, null]);
        id
    }

    fn compile(&mut self, schema: &Value, path: &str) -> Result<NodeId> {
        let obj = match schema {
            Value::Bool(true) => return Ok(self.any()),
            Value::Bool(false) => return Err(unsupported(path, "`false` accepts no value")),
            Value::Object(o) => o,
            _ => return Err(unsupported(path, "a schema must be an object or a boolean")),
        };
        if let Some(r) = obj.get("$ref") {
            return self.reference(r, path);
        }
        if let Some(v) = obj.get("const") {
            return Ok(self.push(Node::Literals(vec![literal(v)])));
        }
        if let Some(v) = obj.get("enum") {
            let values = v
                .as_array()
                .filter(|a| !a.is_empty())
                .ok_or_else(|| unsupported(path, "`enum` must be a non-empty array"))?;
            if values.len() > MAX_ALTERNATIVES {
                return Err(unsupported(
                    path,
                    format!(
                        "`enum` has {} values, at most {MAX_ALTERNATIVES} are supported",
                        values.len()
                    ),
                ));
            }
            return Ok(self.push(Node::Literals(values.iter().map(literal).collect())));
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(v) = obj.get(key) {
                let branches = v.as_array().filter(|a| !a.is_empty()).ok_or_else(|| {
                    unsupported(path, format!("`{key}` must be a non-empty array"))
                })?;
                let mut ids = Vec::with_capacity(branches.len());
                for (i, b) in branches.iter().enumerate() {
                    ids.push(self.compile(b, &format!("{path}/{key}/{i}"))?);
                }
                return Ok(self.push(Node::Union(ids)));
            }
        }
        let types: Vec<&str> = match obj.get("type") {
            None if obj.contains_key("properties") => vec!["object"],
            None if obj.contains_key("items") => vec!["array"],
            None => {
                check_keywords(obj, path, &[])?;
                return Ok(self.any());
            }
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts
                .iter()
                .map(|t| {
                    t.as_str()
                        .ok_or_else(|| unsupported(path, "`type` entries must be strings"))
                })
                .collect::<Result<_>>()?,
            Some(_) => return Err(unsupported(path, "`type` must be a string or an array")),
        };
        let mut allowed: Vec<&str> = Vec::new();
        let mut ids = Vec::new();
        for t in types {
            let (keys, id): (&[&str], NodeId) = match t {
                "object" => (
                    &["properties", "required", "additionalProperties"],
                    self.object(obj, path)?,
                ),
                "array" => (&["items", "minItems", "maxItems"], self.array(obj, path)?),
                "string" => {
                    let min = count(obj, "minLength", path)?.unwrap_or(0);
                    let max = count(obj, "maxLength", path)?;
                    if max.is_some_and(|m| m < min) {
                        return Err(unsupported(path, "`maxLength` is below `minLength`"));
                    }
                    (
                        &["minLength", "maxLength"],
                        self.push(Node::String { min, max }),
                    )
                }
                "number" => (&[], self.push(Node::Number { integer: false })),
                "integer" => (&[], self.push(Node::Number { integer: true })),
                "boolean" => (
                    &[],
                    self.push(Node::Literals(vec![b"true".to_vec(), b"false".to_vec()])),
                ),
                "null" => (&[], self.push(Node::Literals(vec![b"null".to_vec()]))),
                other => return Err(unsupported(path, format!("unknown type `{other}`"))),
            };
            allowed.extend(keys);
            ids.push(id);
        }
        check_keywords(obj, path, &allowed)?;
        Ok(if ids.len() == 1 {
            ids[0]
        } else {
            self.push(Node::Union(ids))
        })
    }

    fn reference(&mut self, r: &Value, path: &str) -> Result<NodeId> {
        let r = r
            .as_str()
            .ok_or_else(|| unsupported(path, "`$ref` must be a string"))?;
        if let Some(&id) = self.refs.get(r) {
            return Ok(id);
        }
        let target = r
            .strip_prefix('#')
            .and_then(|p| self.root.pointer(p))
            .filter(|_| r.starts_with("#/$defs/") || r.starts_with("#/definitions/") || r == "#")
            .ok_or_else(|| {
                unsupported(
                    path,
                    format!("`$ref` `{r}`: only local `#/$defs/...` references are supported"),
                )
            })?;
        // A placeholder first, so recursive schemas refer to themselves.
        let id = self.push(Node::Union(Vec::new()));
        self.refs.insert(r.to_string(), id);
        let inner = self.compile(target, &r[1..])?;
        self.nodes[id as usize] = Node::Union(vec![inner]);
        Ok(id)
    }

    fn object(&mut self, obj: &Map<String, Value>, path: &str) -> Result<NodeId> {
        let mut props = Vec::new();
        let mut names = Vec::new();
        if let Some(p) = obj.get("properties") {
            let p = p
                .as_object()
                .ok_or_else(|| unsupported(path, "`properties` must be an object"))?;
            if p.len() > MAX_ALTERNATIVES {
                return Err(unsupported(
                    path,
                    format!(
                        "{} properties, at most {MAX_ALTERNATIVES} are supported",
                        p.len()
                    ),
                ));
            }
            for (name, sub) in p {
                let node = self.compile(sub, &format!("{path}/properties/{name}"))?;
                props.push(Prop {
                    key: literal(&Value::String(name.clone())),
                    node,
                });
                names.push(name.as_str());
            }
        }
        let mut required = 0u64;
        if let Some(r) = obj.get("required") {
            let r = r
                .as_array()
                .ok_or_else(|| unsupported(path, "`required` must be an array"))?;
            for name in r {
                let name = name
                    .as_str()
                    .ok_or_else(|| unsupported(path, "`required` entries must be strings"))?;
                let i = names.iter().position(|n| *n == name).ok_or_else(|| {
                    unsupported(
                        path,
                        format!("required property `{name}` is not in `properties`"),
                    )
                })?;
                required |= 1 << i;
            }
        }
        let additional = match obj.get("additionalProperties") {
            None | Some(Value::Bool(false)) => None,
            Some(extra) if props.is_empty() => {
                Some(self.compile(extra, &format!("{path}/additionalProperties"))?)
            }
            Some(_) => {
                return Err(unsupported(
                    path,
                    "`additionalProperties` other than `false` is only supported on objects without `properties`",
                ));
            }
        };
        // An object schema without properties and without `additionalProperties: false` takes any keys.
        let additional = if props.is_empty() && obj.get("additionalProperties").is_none() {
            Some(self.any())
        } else {
            additional
        };
        Ok(self.push(Node::Object {
            props,
            required,
            additional,
        }))
    }

    fn array(&mut self, obj: &Map<String, Value>, path: &str) -> Result<NodeId> {
        let items = match obj.get("items") {
            None => self.any(),
            Some(s @ (Value::Object(_) | Value::Bool(_))) => {
                self.compile(s, &format!("{path}/items"))?
            }
            Some(_) => {
                return Err(unsupported(
                    path,
                    "`items` must be a schema (tuple `items` are not supported)",
                ));
            }
        };
        let min = count(obj, "minItems", path)?.unwrap_or(0);
        let max = count(obj, "maxItems", path)?;
        if max.is_some_and(|m| m < min) {
            return Err(unsupported(path, "`maxItems` is below `minItems`"));
        }
        Ok(self.push(Node::Array { items, min, max }))
    }
}

/// A value as compact JSON text.
fn literal(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

fn count(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<u32>> {
    match obj.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| unsupported(path, format!("`{key}` must be a non-negative integer"))),
    }
}

/// Refuses keywords the grammar cannot enforce, so that output never silently fails validation.
fn check_keywords(obj: &Map<String, Value>, path: &str, allowed: &[&str]) -> Result<()> {
    for key in obj.keys() {
        if key == "type" || ANNOTATIONS.contains(&key.as_str()) || allowed.contains(&key.as_str()) {
            continue;
        }
        return Err(unsupported(
            path,
            format!("keyword `{key}` is not supported by constrained decoding"),
        ));
    }
    Ok(())
}
