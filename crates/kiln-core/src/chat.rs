//! Chat messages with text and image parts.

use serde::{Deserialize, Serialize};

/// Who wrote a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions for the assistant.
    System,
    /// The user.
    User,
    /// The model.
    Assistant,
    /// The result of a tool call.
    Tool,
}

impl Role {
    /// The name chat templates use for this role.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ImageSource {
    /// Encoded image bytes (PNG, JPEG, ...).
    Bytes {
        /// The encoded file content.
        #[serde(with = "bytes_as_vec")]
        data: Vec<u8>,
    },
    /// A path on the local file system.
    Path {
        /// The file.
        path: String,
    },
    /// A URL (`data:` or remote); whether remote URLs are fetched is the consumer's policy.
    Url {
        /// The URL.
        url: String,
    },
}

mod bytes_as_vec {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        Vec::<u8>::deserialize(d)
    }
}

/// One part of a message's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// Plain text.
    Text {
        /// The text.
        text: String,
    },
    /// An image.
    Image {
        /// Where the image comes from.
        source: ImageSource,
    },
}

fn content_parts<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ContentPart>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Content {
        Text(String),
        Parts(Vec<ContentPart>),
        Null(()),
    }
    Ok(match Content::deserialize(d)? {
        Content::Text(text) => vec![ContentPart::Text { text }],
        Content::Parts(p) => p,
        Content::Null(()) => Vec::new(),
    })
}

/// A chat message: a role and one or more content parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: Role,
    /// The content, in order. Reads OpenAI's forms too: a plain string, a list of parts, or
    /// `null`.
    #[serde(deserialize_with = "content_parts")]
    pub content: Vec<ContentPart>,
    /// Optional author name (OpenAI's `name`, or the tool name for [`Role::Tool`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ChatMessage {
    /// A message with a single text part.
    #[must_use]
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Self {
            role,
            content: vec![ContentPart::Text { text: text.into() }],
            name: None,
        }
    }
    /// A system message.
    #[must_use]
    pub fn system(text: impl Into<String>) -> Self {
        Self::text(Role::System, text)
    }
    /// A user message.
    #[must_use]
    pub fn user(text: impl Into<String>) -> Self {
        Self::text(Role::User, text)
    }
    /// An assistant message.
    #[must_use]
    pub fn assistant(text: impl Into<String>) -> Self {
        Self::text(Role::Assistant, text)
    }
    /// Adds an image part.
    #[must_use]
    pub fn with_image(mut self, source: ImageSource) -> Self {
        self.content.push(ContentPart::Image { source });
        self
    }
    /// The concatenated text parts.
    #[must_use]
    pub fn text_content(&self) -> String {
        self.content
            .iter()
            .filter_map(|p| match p {
                ContentPart::Text { text } => Some(text.as_str()),
                ContentPart::Image { .. } => None,
            })
            .collect::<Vec<_>>()
            .join("")
    }
    /// Whether any part is an image.
    #[must_use]
    pub fn has_images(&self) -> bool {
        self.content
            .iter()
            .any(|p| matches!(p, ContentPart::Image { .. }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_content_joins_text_parts_and_skips_images() {
        let m = ChatMessage::user("a photo: ").with_image(ImageSource::Path {
            path: "x.png".into(),
        });
        assert_eq!(m.text_content(), "a photo: ");
        assert!(m.has_images());
        let json = serde_json::to_string(&m).unwrap();
        let back: ChatMessage = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        let plain: ChatMessage = serde_json::from_str(r#"{"role":"user","content":"hi"}"#).unwrap();
        assert_eq!(plain, ChatMessage::user("hi"));
        assert!(serde_json::from_str::<ChatMessage>(r#"{"role":"user","content":5}"#).is_err());
    }
}
