//! Stop strings over streamed text: text that might be the start of a stop string is held back
//! until it is known not to be one.

/// Accumulates generated text and finds stop strings in it.
#[derive(Debug, Clone, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    text: String,
    emitted: usize,
    hit: bool,
}

impl StopMatcher {
    /// A matcher for these stop strings (empty strings are ignored).
    #[must_use]
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            ..Self::default()
        }
    }

    /// Adds decoded text; returns the text now safe to emit and whether a stop string was found
    /// (the stop string and everything after it are dropped).
    pub fn push(&mut self, piece: &str) -> (String, bool) {
        if self.hit {
            return (String::new(), true);
        }
        let search_from = self
            .emitted
            .saturating_sub(self.stops.iter().map(String::len).max().unwrap_or(0));
        self.text.push_str(piece);
        let found = self
            .stops
            .iter()
            .filter_map(|s| {
                let from = (search_from..=self.emitted)
                    .find(|&i| self.text.is_char_boundary(i))
                    .unwrap_or(0);
                self.text[from..].find(s.as_str()).map(|p| p + from)
            })
            .min();
        if let Some(pos) = found {
            self.text.truncate(pos);
            self.hit = true;
            let ready = self
                .text
                .get(self.emitted..)
                .unwrap_or_default()
                .to_string();
            self.emitted = self.text.len();
            return (ready, true);
        }
        let hold = self.held_back();
        let safe = self.text.len() - hold;
        let ready = self
            .text
            .get(self.emitted..safe)
            .unwrap_or_default()
            .to_string();
        self.emitted = self.emitted.max(safe);
        (ready, false)
    }

    /// Length of the longest suffix of the text that is a proper prefix of a stop string.
    fn held_back(&self) -> usize {
        let mut best = 0;
        for s in &self.stops {
            for (i, _) in s.char_indices().skip(1) {
                if i > best && self.text.ends_with(&s[..i]) {
                    best = i;
                }
            }
        }
        best
    }

    /// Releases whatever is held back (the stream ended without the stop string completing).
    pub fn finish(&mut self) -> String {
        let rest = self
            .text
            .get(self.emitted..)
            .unwrap_or_default()
            .to_string();
        self.emitted = self.text.len();
        rest
    }

    /// Whether a stop string was found.
    #[must_use]
    pub fn hit(&self) -> bool {
        self.hit
    }

    /// All accepted text so far.
    #[must_use]
    pub fn text(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut m = StopMatcher::new(&stops);
        let mut out = Vec::new();
        for p in pieces {
            let (r, hit) = m.push(p);
            out.push(r);
            if hit {
                break;
            }
        }
        out.push(m.finish());
        (out, m.text().to_string(), m.hit())
    }

    #[test]
    fn stop_string_split_across_pieces_is_never_emitted() {
        let (out, text, hit) = run(&["\nUser:"], &["Hello", "\nUs", "er:", " more"]);
        assert!(hit);
        assert_eq!(text, "Hello");
        assert_eq!(out.concat(), "Hello");
        assert_eq!(out[1], "", "the partial stop string is held back");
    }

    #[test]
    fn false_alarm_is_released() {
        let (out, text, hit) = run(&["STOP"], &["ST", "ART", "!"]);
        assert!(!hit);
        assert_eq!(text, "START!");
        assert_eq!(out.concat(), "START!");
    }

    #[test]
    fn multibyte_text_is_safe() {
        let (out, text, hit) = run(&["é!"], &["café", " ok é", "!"]);
        assert!(hit);
        assert_eq!(text, "café ok ");
        assert_eq!(out.concat(), "café ok ");
    }
}
