//! PII masking: e-mail addresses, phone numbers (international forms and Chinese mobile numbers
//! `1[3-9]` + 9 digits), 18-digit Chinese resident ID numbers (only when their ISO 7064 MOD 11-2
//! check character is right) and bank card numbers (13-19 digits, only when the Luhn check
//! passes) are replaced by placeholders such as `[EMAIL_1]` before the text reaches the model or
//! a log line. A [`Restorer`] puts the originals back into the reply.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

/// A kind of personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PiiKind {
    /// An e-mail address.
    Email,
    /// A phone number.
    Phone,
    /// An 18-digit Chinese resident ID number with a valid check character.
    CnId,
    /// A bank card number that passes the Luhn check.
    BankCard,
    /// A US social security number written `AAA-GG-SSSS` (area not 000, 666 or 9xx; group and
    /// serial not zero).
    UsSsn,
}

impl PiiKind {
    /// Every kind.
    pub const ALL: [PiiKind; 5] = [
        PiiKind::Email,
        PiiKind::Phone,
        PiiKind::CnId,
        PiiKind::BankCard,
        PiiKind::UsSsn,
    ];

    /// The name used in the configuration and metrics.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            PiiKind::Email => "email",
            PiiKind::Phone => "phone",
            PiiKind::CnId => "cn_id",
            PiiKind::BankCard => "bank_card",
            PiiKind::UsSsn => "us_ssn",
        }
    }

    /// The kind with this configuration name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    fn tag(self) -> &'static str {
        match self {
            PiiKind::Email => "EMAIL",
            PiiKind::Phone => "PHONE",
            PiiKind::CnId => "CN_ID",
            PiiKind::BankCard => "BANK_CARD",
            PiiKind::UsSsn => "SSN",
        }
    }
}

static EMAIL: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}").ok()
});
/// Maximal runs of ASCII digits, an ID's trailing X included, optionally after +86.
static DIGITS: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?:\+86[ -]?)?[0-9]+[Xx]?").ok());
/// Card numbers written in groups of four.
static GROUPED_CARD: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"[0-9]{4}(?:[ -][0-9]{4}){2,3}(?:[ -][0-9]{1,3})?").ok());
/// Phone numbers with separators: `+1 (555) 123-4567`, `555-123-4567`, `+44 20 7946 0958`, and
/// a local number after a country code, `+1-555-0187`.
static PHONE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(?:\+[0-9]{1,3}[ .-]?)?(?:\([0-9]{2,4}\)|[0-9]{2,4})[ .-][0-9]{3,4}[ .-][0-9]{4}|\+[0-9]{1,3}[ .-]?[0-9]{3}[ .-][0-9]{4}",
    )
    .ok()
});
/// US social security numbers.
static SSN: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"\b([0-9]{3})-([0-9]{2})-([0-9]{4})\b").ok());

/// Whether `digits` passes the Luhn check.
#[must_use]
pub fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0u32;
    let mut n = 0;
    for (i, c) in digits.bytes().rev().enumerate() {
        if !c.is_ascii_digit() {
            return false;
        }
        let mut d = u32::from(c - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
        n += 1;
    }
    n > 0 && sum.is_multiple_of(10)
}

/// Whether `id` is an 18-character Chinese resident ID number whose last character is the
/// ISO 7064 MOD 11-2 check of the first 17 digits.
#[must_use]
pub fn cn_id_valid(id: &str) -> bool {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    let b = id.as_bytes();
    if b.len() != 18 || !b[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = b[..17]
        .iter()
        .zip(WEIGHTS)
        .map(|(c, w)| u32::from(c - b'0') * w)
        .sum();
    b[17].to_ascii_uppercase() == CHECK[(sum % 11) as usize]
}

fn classify_digits(run: &str) -> Option<PiiKind> {
    let digits = run
        .strip_prefix("+86")
        .map(|r| r.trim_start_matches([' ', '-']));
    if let Some(d) = digits {
        return (d.len() == 11 && is_cn_mobile(d)).then_some(PiiKind::Phone);
    }
    if run.len() == 18 && cn_id_valid(run) {
        return Some(PiiKind::CnId);
    }
    if run.ends_with(['X', 'x']) {
        return None;
    }
    if run.len() == 11 && is_cn_mobile(run) {
        return Some(PiiKind::Phone);
    }
    if (13..=19).contains(&run.len()) && luhn_valid(run) {
        return Some(PiiKind::BankCard);
    }
    None
}

fn is_cn_mobile(d: &str) -> bool {
    let b = d.as_bytes();
    b.len() == 11
        && b[0] == b'1'
        && (b'3'..=b'9').contains(&b[1])
        && b.iter().all(u8::is_ascii_digit)
}

/// Whether the digits at `range` continue on either side (directly or after one separator).
fn continues_digits(text: &str, range: std::ops::Range<usize>) -> bool {
    let b = text.as_bytes();
    let sep = |c: u8| matches!(c, b' ' | b'-' | b'.');
    let before = |k: usize| range.start.checked_sub(k).map(|i| b[i]);
    let after = |k: usize| b.get(range.end + k - 1).copied();
    let digitish = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    digitish(before(1))
        || digitish(after(1))
        || (before(1).is_some_and(sep) && before(2).is_some_and(|c| c.is_ascii_digit()))
        || (after(1).is_some_and(sep) && after(2).is_some_and(|c| c.is_ascii_digit()))
}

/// A found piece of personal data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// Byte range in the text.
    pub range: std::ops::Range<usize>,
    /// What it is.
    pub kind: PiiKind,
}

/// Finds personal data of the enabled kinds, without overlaps, in text order.
#[must_use]
pub fn find(text: &str, kinds: &[PiiKind]) -> Vec<Span> {
    let mut spans: Vec<Span> = Vec::new();
    let add = |range: std::ops::Range<usize>, kind: PiiKind, spans: &mut Vec<Span>| {
        if kinds.contains(&kind)
            && !spans
                .iter()
                .any(|s| s.range.start < range.end && range.start < s.range.end)
        {
            spans.push(Span { range, kind });
        }
    };
    if let Some(re) = EMAIL.as_ref() {
        for m in re.find_iter(text) {
            add(m.range(), PiiKind::Email, &mut spans);
        }
    }
    if let Some(re) = GROUPED_CARD.as_ref() {
        for m in re.find_iter(text) {
            let digits: String = m.as_str().chars().filter(char::is_ascii_digit).collect();
            if (13..=19).contains(&digits.len()) && luhn_valid(&digits) {
                add(m.range(), PiiKind::BankCard, &mut spans);
            }
        }
    }
    if let Some(re) = DIGITS.as_ref() {
        for m in re.find_iter(text) {
            // A run glued to letters or more digits (an order number like A123...) is not PII.
            let before = text[..m.start()].chars().next_back();
            let after = text[m.end()..].chars().next();
            if before.is_some_and(|c| c.is_ascii_alphanumeric())
                || after.is_some_and(|c| c.is_ascii_alphanumeric())
            {
                continue;
            }
            if let Some(kind) = classify_digits(m.as_str()) {
                add(m.range(), kind, &mut spans);
            }
        }
    }
    if let Some(re) = SSN.as_ref() {
        for c in re.captures_iter(text) {
            let (area, group, serial) = (&c[1], &c[2], &c[3]);
            let whole = c.get(0).map_or(0..0, |m| m.range());
            if area != "000"
                && area != "666"
                && !area.starts_with('9')
                && group != "00"
                && serial != "0000"
                && !continues_digits(text, whole.clone())
            {
                add(whole, PiiKind::UsSsn, &mut spans);
            }
        }
    }
    if let Some(re) = PHONE.as_ref() {
        for m in re.find_iter(text) {
            // Part of a longer digit group (a card written in fours) is not a phone number.
            if !continues_digits(text, m.range()) {
                add(m.range(), PiiKind::Phone, &mut spans);
            }
        }
    }
    spans.sort_by_key(|s| s.range.start);
    spans
}

/// Masks text and remembers the originals so the reply can be restored.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    kinds: Vec<PiiKind>,
    /// Original to placeholder.
    placeholders: HashMap<String, String>,
    /// Placeholder to original.
    originals: HashMap<String, String>,
    counts: HashMap<PiiKind, usize>,
}

impl Masker {
    /// A masker for these kinds.
    #[must_use]
    pub fn new(kinds: Vec<PiiKind>) -> Self {
        Self {
            kinds,
            ..Self::default()
        }
    }

    /// Replaces every piece of personal data with its placeholder; the same value gets the same
    /// placeholder throughout a request.
    pub fn mask(&mut self, text: &str) -> String {
        let spans = find(text, &self.kinds);
        if spans.is_empty() {
            return text.to_owned();
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for s in spans {
            out.push_str(&text[at..s.range.start]);
            let original = &text[s.range.clone()];
            let placeholder = match self.placeholders.get(original) {
                Some(p) => p.clone(),
                None => {
                    let n = self.counts.entry(s.kind).or_insert(0);
                    *n += 1;
                    let p = format!("[{}_{}]", s.kind.tag(), n);
                    self.placeholders.insert(original.to_owned(), p.clone());
                    self.originals.insert(p.clone(), original.to_owned());
                    p
                }
            };
            out.push_str(&placeholder);
            at = s.range.end;
        }
        out.push_str(&text[at..]);
        out
    }

    /// How many distinct values of each kind were masked.
    #[must_use]
    pub fn counts(&self) -> Vec<(PiiKind, usize)> {
        let mut v: Vec<_> = self.counts.iter().map(|(k, n)| (*k, *n)).collect();
        v.sort_by_key(|(k, _)| k.name());
        v
    }

    /// The restorer for this request's placeholders.
    #[must_use]
    pub fn restorer(&self) -> Restorer {
        Restorer {
            originals: self.originals.clone(),
            pending: String::new(),
        }
    }
}

/// Puts masked values back into model output, also across streamed chunks (an incomplete
/// placeholder at a chunk's end is held back).
#[derive(Debug, Clone, Default)]
pub struct Restorer {
    originals: HashMap<String, String>,
    pending: String,
}

/// Longest placeholder held back while streaming.
const MAX_PLACEHOLDER: usize = 24;

impl Restorer {
    /// Whether there is nothing to restore.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.originals.is_empty()
    }

    /// Restores a complete text.
    #[must_use]
    pub fn restore(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (p, o) in &self.originals {
            out = out.replace(p, o);
        }
        out
    }

    /// Restores a streamed chunk; returns what can be released now.
    pub fn push(&mut self, chunk: &str) -> String {
        if self.originals.is_empty() {
            return chunk.to_owned();
        }
        self.pending.push_str(chunk);
        let hold = match self.pending.rfind('[') {
            Some(i)
                if !self.pending[i..].contains(']') && self.pending.len() - i < MAX_PLACEHOLDER =>
            {
                i
            }
            _ => self.pending.len(),
        };
        let ready: String = self.pending.drain(..hold).collect();
        self.restore(&ready)
    }

    /// Releases what is held back at the end of a stream.
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        self.restore(&rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(text: &str) -> String {
        Masker::new(PiiKind::ALL.to_vec()).mask(text)
    }

    #[test]
    fn checksums() {
        assert!(cn_id_valid("11010519491231002X"));
        assert!(!cn_id_valid("110105194912310021"));
        assert!(luhn_valid("4111111111111111"));
        assert!(!luhn_valid("4111111111111112"));
    }

    #[test]
    fn masks_each_kind() {
        assert_eq!(mask("mail bob@example.com now"), "mail [EMAIL_1] now");
        assert_eq!(mask("手机13812345678，谢谢"), "手机[PHONE_1]，谢谢");
        assert_eq!(mask("call +86 13812345678"), "call [PHONE_1]");
        assert_eq!(mask("身份证11010519491231002X"), "身份证[CN_ID_1]");
        assert_eq!(mask("card 4111 1111 1111 1111."), "card [BANK_CARD_1].");
        assert_eq!(mask("card 4111111111111111"), "card [BANK_CARD_1]");
        assert_eq!(mask("call +1 (555) 123-4567"), "call [PHONE_1]");
        assert_eq!(
            mask("at +1-555-0187 or 555-867-5309."),
            "at [PHONE_1] or [PHONE_2]."
        );
        assert_eq!(mask("SSN 123-45-6789, ok"), "SSN [SSN_1], ok");
        // Not an SSN: impossible area, or part of a longer number.
        assert_eq!(mask("ref 900-12-3456"), "ref 900-12-3456");
        assert_eq!(mask("KO-123-45-6789-1"), "KO-123-45-6789-1");
        assert_eq!(
            mask("a@x.io b@y.io a@x.io"),
            "[EMAIL_1] [EMAIL_2] [EMAIL_1]"
        );
    }

    #[test]
    fn false_positives_are_left_alone() {
        // Bad check character: not an ID, and 18 digits failing Luhn: not a card either.
        assert_eq!(mask("id 110105194912310021"), "id 110105194912310021");
        // A card-length number failing Luhn.
        assert_eq!(mask("no 4111111111111112"), "no 4111111111111112");
        assert_eq!(mask("no 4111 1111 1111 1112"), "no 4111 1111 1111 1112");
        // 11 digits not starting 1[3-9]; an order number glued to letters.
        assert_eq!(mask("n 12345678901"), "n 12345678901");
        assert_eq!(mask("order A13812345678"), "order A13812345678");
        assert_eq!(mask("year 2024 and 3.14159"), "year 2024 and 3.14159");
    }

    #[test]
    fn restores_across_chunks() {
        let mut m = Masker::new(PiiKind::ALL.to_vec());
        let masked = m.mask("to bob@example.com");
        assert_eq!(masked, "to [EMAIL_1]");
        let mut r = m.restorer();
        let mut out = r.push("Sent to [EMA");
        out += &r.push("IL_1] today [");
        out += &r.finish();
        assert_eq!(out, "Sent to bob@example.com today [");
    }
}
