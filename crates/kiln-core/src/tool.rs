//! Tools an agent can call.

use serde_json::Value;

use crate::Result;

/// A function a model can call: a name, a description and a JSON schema of its arguments, as
/// OpenAI-style tool definitions and chat templates' `tools` describe them.
///
/// ```
/// use kiln_core::{Result, Tool};
/// use serde_json::{Value, json};
///
/// struct Add;
/// impl Tool for Add {
///     fn name(&self) -> &str { "add" }
///     fn description(&self) -> &str { "Add two numbers." }
///     fn parameters(&self) -> Value {
///         json!({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
///                "required": ["a", "b"]})
///     }
///     fn call(&self, args: &Value) -> Result<String> {
///         Ok((args["a"].as_f64().unwrap_or(0.0) + args["b"].as_f64().unwrap_or(0.0)).to_string())
///     }
/// }
/// assert_eq!(Add.call(&json!({"a": 2, "b": 3}))?, "5");
/// assert_eq!(Add.schema()["function"]["name"], "add");
/// # Ok::<(), kiln_core::Error>(())
/// ```
pub trait Tool: Send + Sync {
    /// The name the model calls it by.
    fn name(&self) -> &str;
    /// What it does, for the model.
    fn description(&self) -> &str;
    /// The JSON schema of its arguments (an `object` schema).
    fn parameters(&self) -> Value;
    /// Runs the tool. The result is shown to the model as an observation.
    ///
    /// # Errors
    /// Invalid arguments or a failure; agents show the error to the model so it can recover.
    fn call(&self, args: &Value) -> Result<String>;
    /// The definition in the form chat templates and OpenAI's API take:
    /// `{"type": "function", "function": {"name", "description", "parameters"}}`.
    fn schema(&self) -> Value {
        serde_json::json!({
            "type": "function",
            "function": {
                "name": self.name(),
                "description": self.description(),
                "parameters": self.parameters(),
            }
        })
    }
}
