//! A registry of versioned prompt templates, loaded from a directory of JSON files and selected by
//! name or by task type (the latest version unless one is asked for).
//!
//! A prompt file holds one prompt or a list of them:
//!
//! ```json
//! {
//!   "name": "intent-classifier",
//!   "version": 2,
//!   "task": "classification",
//!   "description": "Retail customer-service intents.",
//!   "syntax": "braces",
//!   "template": "Classify the message into one of: {labels}.\nMessage: {text}\nIntent:",
//!   "variables": [
//!     {"name": "text", "type": "string"},
//!     {"name": "labels", "type": "list", "default": ["refund", "shipping", "other"]}
//!   ]
//! }
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::{Error, PromptTemplate, Result, Syntax, Variable};

/// A prompt with its registry metadata.
#[derive(Debug)]
pub struct RegisteredPrompt {
    /// The prompt name.
    pub name: String,
    /// Its version (higher is newer).
    pub version: u32,
    /// The task type it serves (`classification`, `qa`, ...).
    pub task: String,
    /// A description for people.
    pub description: Option<String>,
    /// The compiled template.
    pub template: PromptTemplate,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PromptFile {
    name: String,
    version: u32,
    task: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    syntax: Syntax,
    template: String,
    #[serde(default)]
    variables: Vec<Variable>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(Box<PromptFile>),
    Many(Vec<PromptFile>),
}

/// Versioned prompts by name and task.
///
/// ```
/// use kiln_prompt::{PromptRegistry, PromptTemplate};
///
/// let mut registry = PromptRegistry::new();
/// registry.register("qa", 1, "qa", None, PromptTemplate::braces("qa", "Q: {q}\nA:")?)?;
/// registry.register("qa", 2, "qa", None, PromptTemplate::braces("qa", "Question: {q}\nAnswer:")?)?;
/// assert_eq!(registry.for_task("qa", None)?.version, 2);
/// assert_eq!(registry.get("qa", Some(1))?.template.render_with([("q", "hi")])?, "Q: hi\nA:");
/// # Ok::<(), kiln_prompt::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct PromptRegistry {
    /// By (name, version).
    prompts: BTreeMap<(String, u32), RegisteredPrompt>,
}

impl PromptRegistry {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads every `*.json` file of a directory (not recursive), in file-name order.
    ///
    /// # Errors
    /// [`Error::Io`] for an unreadable directory or file, [`Error::PromptFile`] for malformed JSON
    /// or a template or variable declaration that does not compile, [`Error::Duplicate`] for a name
    /// and version defined twice.
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let io = |e| Error::Io {
            path: dir.display().to_string(),
            source: e,
        };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.is_file() && path.extension().is_some_and(|e| e == "json") {
                paths.push(path);
            }
        }
        paths.sort();
        let mut registry = Self::new();
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|e| Error::Io {
                path: path.display().to_string(),
                source: e,
            })?;
            registry.load_str(&text, &path.display().to_string())?;
        }
        Ok(registry)
    }

    /// Loads prompts from the JSON text of a prompt file; `origin` names it in errors.
    ///
    /// # Errors
    /// As [`Self::load_dir`].
    pub fn load_str(&mut self, json: &str, origin: &str) -> Result<()> {
        let bad = |message: String| Error::PromptFile {
            path: origin.to_string(),
            message,
        };
        let files = match serde_json::from_str::<OneOrMany>(json) {
            Ok(OneOrMany::One(f)) => vec![*f],
            Ok(OneOrMany::Many(v)) => v,
            Err(e) => {
                // The untagged error says little; report the single-prompt parse error.
                let detail = serde_json::from_str::<PromptFile>(json).err().unwrap_or(e);
                return Err(bad(detail.to_string()));
            }
        };
        for f in files {
            let mut template = PromptTemplate::new(f.name.clone(), f.template, f.syntax)
                .map_err(|e| bad(format!("prompt `{}` version {}: {e}", f.name, f.version)))?;
            for var in f.variables {
                template = template
                    .with_variable(var)
                    .map_err(|e| bad(format!("prompt `{}` version {}: {e}", f.name, f.version)))?;
            }
            self.register(f.name, f.version, f.task, f.description, template)?;
        }
        Ok(())
    }

    /// Adds a prompt.
    ///
    /// # Errors
    /// [`Error::Duplicate`] when this name and version is already registered.
    pub fn register(
        &mut self,
        name: impl Into<String>,
        version: u32,
        task: impl Into<String>,
        description: Option<String>,
        template: PromptTemplate,
    ) -> Result<()> {
        let name = name.into();
        let key = (name.clone(), version);
        if self.prompts.contains_key(&key) {
            return Err(Error::Duplicate { name, version });
        }
        self.prompts.insert(
            key,
            RegisteredPrompt {
                name,
                version,
                task: task.into(),
                description,
                template,
            },
        );
        Ok(())
    }

    /// A prompt by name: the given version, or the latest.
    ///
    /// # Errors
    /// [`Error::NotFound`].
    pub fn get(&self, name: &str, version: Option<u32>) -> Result<&RegisteredPrompt> {
        let found = match version {
            Some(v) => self.prompts.get(&(name.to_string(), v)),
            None => self
                .prompts
                .values()
                .filter(|p| p.name == name)
                .max_by_key(|p| p.version),
        };
        found.ok_or_else(|| Error::NotFound {
            what: describe("prompt", name, version),
        })
    }

    /// The prompt for a task type: the given version, or the latest. When several prompt names
    /// serve the task, the highest version wins, then the first name in alphabetical order.
    ///
    /// # Errors
    /// [`Error::NotFound`].
    pub fn for_task(&self, task: &str, version: Option<u32>) -> Result<&RegisteredPrompt> {
        self.prompts
            .values()
            .filter(|p| p.task == task && version.is_none_or(|v| p.version == v))
            // max_by_key keeps the last maximum; iterate names in reverse so the first name wins ties.
            .rev()
            .max_by_key(|p| p.version)
            .ok_or_else(|| Error::NotFound {
                what: describe("task", task, version),
            })
    }

    /// The task types, sorted.
    #[must_use]
    pub fn tasks(&self) -> Vec<&str> {
        let mut tasks: Vec<&str> = self.prompts.values().map(|p| p.task.as_str()).collect();
        tasks.sort_unstable();
        tasks.dedup();
        tasks
    }

    /// Every registered prompt, by name then version.
    pub fn iter(&self) -> impl Iterator<Item = &RegisteredPrompt> {
        self.prompts.values()
    }

    /// The number of registered prompts (all versions).
    #[must_use]
    pub fn len(&self) -> usize {
        self.prompts.len()
    }

    /// Whether the registry is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.prompts.is_empty()
    }
}

fn describe(kind: &str, name: &str, version: Option<u32>) -> String {
    match version {
        Some(v) => format!("{kind} `{name}` version {v}"),
        None => format!("{kind} `{name}`"),
    }
}
