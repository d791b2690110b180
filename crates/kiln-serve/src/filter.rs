//! Output filtering by policies: block lists (case-insensitive phrases) and regular expressions,
//! each policy either blocking the rest of the answer (finish reason `content_filter`) or
//! redacting the match. [`StreamFilter`] applies the same policies to streamed output by holding
//! back a tail window long enough for any match to complete across chunks.

use std::sync::Arc;

use regex::{Regex, RegexBuilder};

use crate::config::{FilterAction, FilterConfig};
use crate::error::{Result, ServeError};

/// What redacted matches are replaced with.
pub const REDACTED: &str = "[REDACTED]";

#[derive(Debug, Clone)]
struct Policy {
    name: String,
    patterns: Vec<Regex>,
    action: FilterAction,
}

/// The compiled policies.
#[derive(Debug, Clone, Default)]
pub struct OutputFilter {
    policies: Vec<Policy>,
    window: usize,
}

/// The outcome of filtering a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filtered {
    /// The text to show.
    pub text: String,
    /// The policy that blocked the rest of the answer, if one did.
    pub blocked_by: Option<String>,
    /// Names of the policies that redacted something, once per match.
    pub redactions: Vec<String>,
}

impl OutputFilter {
    /// Compiles the configured policies.
    ///
    /// # Errors
    /// [`ServeError::Config`] naming a regex that does not compile.
    pub fn new(configs: &[FilterConfig]) -> Result<Self> {
        let mut policies = Vec::new();
        let mut window = 0;
        for (i, c) in configs.iter().enumerate() {
            let mut patterns = Vec::new();
            for (j, phrase) in c.block.iter().enumerate() {
                let re = RegexBuilder::new(&regex::escape(phrase))
                    .case_insensitive(true)
                    .build()
                    .map_err(|e| {
                        ServeError::config(format!("filters[{i}].block[{j}]"), e.to_string())
                    })?;
                window = window.max(phrase.len());
                patterns.push(re);
            }
            for (j, r) in c.regex.iter().enumerate() {
                let re = Regex::new(r).map_err(|e| {
                    ServeError::config(format!("filters[{i}].regex[{j}]"), e.to_string())
                })?;
                window = window.max(if c.max_match_bytes > 0 {
                    c.max_match_bytes
                } else {
                    64
                });
                patterns.push(re);
            }
            let name = if c.name.is_empty() {
                format!("filter{i}")
            } else {
                c.name.clone()
            };
            policies.push(Policy {
                name,
                patterns,
                action: c.action,
            });
        }
        Ok(Self { policies, window })
    }

    /// Whether there is no policy.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// Filters a complete text.
    #[must_use]
    pub fn apply(&self, text: &str) -> Filtered {
        let mut out = Filtered {
            text: text.to_owned(),
            blocked_by: None,
            redactions: Vec::new(),
        };
        // Blocks first: the earliest blocking match cuts the text.
        let mut cut: Option<(usize, &str)> = None;
        for p in self
            .policies
            .iter()
            .filter(|p| p.action == FilterAction::Block)
        {
            for re in &p.patterns {
                if let Some(m) = re.find(&out.text)
                    && cut.is_none_or(|(at, _)| m.start() < at)
                {
                    cut = Some((m.start(), &p.name));
                }
            }
        }
        if let Some((at, name)) = cut {
            out.text.truncate(at);
            out.blocked_by = Some(name.to_owned());
        }
        for p in self
            .policies
            .iter()
            .filter(|p| p.action == FilterAction::Redact)
        {
            for re in &p.patterns {
                let n = re.find_iter(&out.text).count();
                if n > 0 {
                    out.text = re.replace_all(&out.text, REDACTED).into_owned();
                    out.redactions
                        .extend(std::iter::repeat_n(p.name.clone(), n));
                }
            }
        }
        out
    }

    /// A filter for one streamed answer.
    #[must_use]
    pub fn stream(self: &Arc<Self>) -> StreamFilter {
        StreamFilter {
            filter: self.clone(),
            pending: String::new(),
            done: false,
        }
    }
}

/// Filters a streamed answer: text is released once it is more than the policies' longest match
/// behind the end, so a match split across chunks is still found.
#[derive(Debug)]
pub struct StreamFilter {
    filter: Arc<OutputFilter>,
    pending: String,
    done: bool,
}

impl StreamFilter {
    /// Adds a chunk; returns the text that can be shown now. After a block, returns the blocking
    /// result and nothing more (the caller should stop generating).
    pub fn push(&mut self, chunk: &str) -> Filtered {
        if self.done {
            return Filtered {
                text: String::new(),
                blocked_by: None,
                redactions: Vec::new(),
            };
        }
        if self.filter.is_empty() {
            return Filtered {
                text: chunk.to_owned(),
                blocked_by: None,
                redactions: Vec::new(),
            };
        }
        self.pending.push_str(chunk);
        let mut f = self.filter.apply(&self.pending);
        if f.blocked_by.is_some() {
            self.done = true;
            self.pending.clear();
            return f;
        }
        // Keep the last `window` bytes of the (filtered) text; release the rest.
        let mut keep_from = f.text.len().saturating_sub(self.filter.window);
        while !f.text.is_char_boundary(keep_from) {
            keep_from -= 1;
        }
        // Never release part of a redaction marker.
        if let Some(i) = f.text[..keep_from].rfind('[')
            && f.text[i..].starts_with(REDACTED)
            && i + REDACTED.len() > keep_from
        {
            keep_from = i + REDACTED.len();
        }
        self.pending = f.text.split_off(keep_from);
        f
    }

    /// Releases the held-back tail at the end of the stream.
    pub fn finish(&mut self) -> Filtered {
        if self.done {
            return self.push("");
        }
        let rest = std::mem::take(&mut self.pending);
        self.done = true;
        self.filter.apply(&rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter() -> Arc<OutputFilter> {
        Arc::new(
            OutputFilter::new(&[
                FilterConfig {
                    name: "secret".into(),
                    block: vec!["Project Falcon".into()],
                    ..FilterConfig::default()
                },
                FilterConfig {
                    name: "keys".into(),
                    regex: vec![r"sk-[A-Za-z0-9]{8}".into()],
                    action: FilterAction::Redact,
                    max_match_bytes: 11,
                    ..FilterConfig::default()
                },
            ])
            .unwrap(),
        )
    }

    #[test]
    fn blocks_and_redacts_whole_text() {
        let f = filter();
        let r = f.apply("ok. project falcon launches");
        assert_eq!(r.text, "ok. ");
        assert_eq!(r.blocked_by.as_deref(), Some("secret"));
        let r = f.apply("key sk-abcdefgh here");
        assert_eq!(r.text, "key [REDACTED] here");
        assert_eq!(r.redactions, vec!["keys".to_owned()]);
    }

    #[test]
    fn stream_catches_matches_split_across_chunks() {
        let f = filter();
        let mut s = f.stream();
        let mut shown = String::new();
        let mut blocked = None;
        for chunk in ["The Pro", "ject Fal", "con is", " next"] {
            let r = s.push(chunk);
            shown += &r.text;
            if r.blocked_by.is_some() {
                blocked = r.blocked_by;
                break;
            }
        }
        assert_eq!(blocked.as_deref(), Some("secret"));
        assert_eq!(shown, "The ");

        let mut s = f.stream();
        let mut shown = String::new();
        for chunk in ["use sk-ab", "cdefgh now", " please, thanks a lot"] {
            shown += &s.push(chunk).text;
        }
        shown += &s.finish().text;
        assert_eq!(shown, "use [REDACTED] now please, thanks a lot");
    }
}
