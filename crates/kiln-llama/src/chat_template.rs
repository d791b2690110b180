//! Rendering Hugging Face chat templates (Jinja) with minijinja, as transformers'
//! `apply_chat_template` does.

use kiln_core::{ChatMessage, ContentPart};
use minijinja::{Environment, ErrorKind, context};

use crate::{Error, Result};

/// A compiled chat template.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
}

/// The name under which the template is compiled (shown in errors).
const NAME: &str = "chat_template";

impl ChatTemplate {
    /// Compiles a template; a syntax error names the line.
    ///
    /// # Errors
    /// [`Error::ChatTemplate`].
    pub fn new(source: &str) -> Result<Self> {
        let mut env = Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned(NAME, source.to_string())
            .map_err(|e| Error::ChatTemplate(describe(&e)))?;
        Ok(Self { env })
    }

    /// Renders a conversation.
    ///
    /// # Errors
    /// [`Error::ChatTemplate`] when rendering fails (for example `raise_exception` in the template),
    /// or an image part for a text-only model.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        bos_token: Option<&str>,
        eos_token: Option<&str>,
    ) -> Result<String> {
        let msgs = messages
            .iter()
            .map(|m| {
                if m.content
                    .iter()
                    .any(|p| matches!(p, ContentPart::Image { .. }))
                {
                    return Err(Error::Invalid(
                        "this model takes text only; the message has an image part".into(),
                    ));
                }
                let mut v =
                    serde_json::json!({ "role": m.role.as_str(), "content": m.text_content() });
                if let Some(name) = &m.name {
                    v["name"] = serde_json::Value::String(name.clone());
                }
                Ok(v)
            })
            .collect::<Result<Vec<_>>>()?;
        let tmpl = self
            .env
            .get_template(NAME)
            .map_err(|e| Error::ChatTemplate(describe(&e)))?;
        tmpl.render(context! {
            messages => minijinja::Value::from_serialize(&msgs),
            add_generation_prompt => add_generation_prompt,
            bos_token => bos_token.unwrap_or(""),
            eos_token => eos_token.unwrap_or(""),
        })
        .map_err(|e| Error::ChatTemplate(describe(&e)))
    }
}

/// transformers' `strftime_now`: the local time formatted with a C `strftime` pattern.
fn strftime_now(fmt: String) -> std::result::Result<String, minijinja::Error> {
    use chrono::format::{Item, StrftimeItems};
    let items: Vec<Item<'_>> = StrftimeItems::new(&fmt).collect();
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("bad strftime format {fmt:?}"),
        ));
    }
    Ok(chrono::Local::now()
        .format_with_items(items.into_iter())
        .to_string())
}

fn describe(e: &minijinja::Error) -> String {
    let mut s = match e.line() {
        Some(line) => format!("line {line}: {}", e.kind()),
        None => e.kind().to_string(),
    };
    if let Some(detail) = e.detail() {
        s.push_str(": ");
        s.push_str(detail);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_chatml() {
        let t = ChatTemplate::new(
            "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
        )
        .unwrap();
        let out = t
            .render(&[ChatMessage::user("hi")], true, None, None)
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn errors_name_the_line() {
        let err = ChatTemplate::new("ok\n{% for m in messages %}\n{{ m.content ")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line"), "{err}");
        let t = ChatTemplate::new("{{ raise_exception('roles must alternate') }}").unwrap();
        let err = t.render(&[], false, None, None).unwrap_err().to_string();
        assert!(err.contains("roles must alternate"), "{err}");
    }

    #[test]
    fn python_string_methods_work() {
        let t = ChatTemplate::new("{{ messages[0].content.strip().upper() }}").unwrap();
        assert_eq!(
            t.render(&[ChatMessage::user("  a b ")], false, None, None)
                .unwrap(),
            "A B"
        );
    }
}
