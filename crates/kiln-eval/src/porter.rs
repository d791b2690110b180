//! The Porter stemmer exactly as NLTK's `PorterStemmer()` (mode `NLTK_EXTENSIONS`), which
//! rouge-score applies with `use_stemmer=True`. It works on ASCII lowercase words; rouge-score
//! only passes it `[a-z0-9]+` tokens longer than three characters.

fn is_vowel(c: u8) -> bool {
    matches!(c, b'a' | b'e' | b'i' | b'o' | b'u')
}

/// Consonant flags for every position ('y' is a consonant at the start or after a vowel).
fn consonant_flags(w: &[u8]) -> Vec<bool> {
    let mut flags: Vec<bool> = Vec::with_capacity(w.len());
    for (i, &c) in w.iter().enumerate() {
        let f = if is_vowel(c) {
            false
        } else if c == b'y' {
            i == 0 || !flags[i - 1]
        } else {
            true
        };
        flags.push(f);
    }
    flags
}

fn is_consonant(w: &[u8], i: usize) -> bool {
    consonant_flags(&w[..=i])[i]
}

/// The measure m: number of vowel→consonant transitions.
fn measure(stem: &[u8]) -> usize {
    let f = consonant_flags(stem);
    f.windows(2).filter(|p| !p[0] && p[1]).count()
}

fn contains_vowel(stem: &[u8]) -> bool {
    consonant_flags(stem).iter().any(|&c| !c)
}

fn ends_double_consonant(w: &[u8]) -> bool {
    let n = w.len();
    n >= 2 && w[n - 1] == w[n - 2] && is_consonant(w, n - 1)
}

fn ends_cvc(w: &[u8]) -> bool {
    let n = w.len();
    (n >= 3
        && is_consonant(w, n - 3)
        && !is_consonant(w, n - 2)
        && is_consonant(w, n - 1)
        && !matches!(w[n - 1], b'w' | b'x' | b'y'))
        || (n == 2 && !is_consonant(w, 0) && is_consonant(w, 1))
}

type Cond<'a> = Option<&'a dyn Fn(&[u8]) -> bool>;

/// A rule: suffix (or `None` for the `*d` double-consonant pseudo-suffix), replacement, condition.
type Rule<'a> = (Option<&'a [u8]>, &'a [u8], Cond<'a>);

/// `_apply_rule_list`: the first rule whose suffix matches decides (even when its condition fails).
fn apply_rules(word: &[u8], rules: &[Rule<'_>]) -> Vec<u8> {
    for (suffix, replacement, cond) in rules {
        match suffix {
            None => {
                if ends_double_consonant(word) {
                    let stem = &word[..word.len() - 2];
                    return if cond.is_none_or(|c| c(stem)) {
                        [stem, replacement].concat()
                    } else {
                        word.to_vec()
                    };
                }
            }
            Some(sfx) => {
                if word.ends_with(sfx) {
                    let stem = &word[..word.len() - sfx.len()];
                    return if cond.is_none_or(|c| c(stem)) {
                        [stem, replacement].concat()
                    } else {
                        word.to_vec()
                    };
                }
            }
        }
    }
    word.to_vec()
}

fn positive_measure(stem: &[u8]) -> bool {
    measure(stem) > 0
}

fn step1a(w: &[u8]) -> Vec<u8> {
    if w.ends_with(b"ies") && w.len() == 4 {
        return [&w[..1], b"ie"].concat();
    }
    apply_rules(
        w,
        &[
            (Some(b"sses"), b"ss", None),
            (Some(b"ies"), b"i", None),
            (Some(b"ss"), b"ss", None),
            (Some(b"s"), b"", None),
        ],
    )
}

fn step1b(w: &[u8]) -> Vec<u8> {
    if w.ends_with(b"ied") {
        let stem = &w[..w.len() - 3];
        return if w.len() == 4 {
            [stem, b"ie"].concat()
        } else {
            [stem, b"i"].concat()
        };
    }
    if w.ends_with(b"eed") {
        let stem = &w[..w.len() - 3];
        return if measure(stem) > 0 {
            [stem, b"ee"].concat()
        } else {
            w.to_vec()
        };
    }
    let mut inter: Option<&[u8]> = None;
    for sfx in [&b"ed"[..], b"ing"] {
        if w.ends_with(sfx) {
            let s = &w[..w.len() - sfx.len()];
            if contains_vowel(s) {
                inter = Some(s);
                break;
            }
        }
    }
    let Some(stem) = inter else {
        return w.to_vec();
    };
    let last = stem.last().copied();
    let last_byte = last.map(|c| vec![c]).unwrap_or_default();
    let not_lsz = move |_: &[u8]| !matches!(last, Some(b'l' | b's' | b'z'));
    let m1_cvc = |s: &[u8]| measure(s) == 1 && ends_cvc(s);
    apply_rules(
        stem,
        &[
            (Some(b"at"), b"ate", None),
            (Some(b"bl"), b"ble", None),
            (Some(b"iz"), b"ize", None),
            (None, &last_byte, Some(&not_lsz)),
            (Some(b""), b"e", Some(&m1_cvc)),
        ],
    )
}

fn step1c(w: &[u8]) -> Vec<u8> {
    let cond = |s: &[u8]| s.len() > 1 && is_consonant(s, s.len() - 1);
    apply_rules(w, &[(Some(b"y"), b"i", Some(&cond))])
}

fn step2(w: &[u8]) -> Vec<u8> {
    if w.ends_with(b"alli") && positive_measure(&w[..w.len() - 4]) {
        return step2(&[&w[..w.len() - 4], b"al"].concat());
    }
    let pm: &dyn Fn(&[u8]) -> bool = &positive_measure;
    let logi_stem = &w[..w.len().saturating_sub(3)];
    let logi = move |_: &[u8]| positive_measure(logi_stem);
    let rules: [Rule<'_>; 22] = [
        (Some(b"ational"), b"ate", Some(pm)),
        (Some(b"tional"), b"tion", Some(pm)),
        (Some(b"enci"), b"ence", Some(pm)),
        (Some(b"anci"), b"ance", Some(pm)),
        (Some(b"izer"), b"ize", Some(pm)),
        (Some(b"bli"), b"ble", Some(pm)),
        (Some(b"alli"), b"al", Some(pm)),
        (Some(b"entli"), b"ent", Some(pm)),
        (Some(b"eli"), b"e", Some(pm)),
        (Some(b"ousli"), b"ous", Some(pm)),
        (Some(b"ization"), b"ize", Some(pm)),
        (Some(b"ation"), b"ate", Some(pm)),
        (Some(b"ator"), b"ate", Some(pm)),
        (Some(b"alism"), b"al", Some(pm)),
        (Some(b"iveness"), b"ive", Some(pm)),
        (Some(b"fulness"), b"ful", Some(pm)),
        (Some(b"ousness"), b"ous", Some(pm)),
        (Some(b"aliti"), b"al", Some(pm)),
        (Some(b"iviti"), b"ive", Some(pm)),
        (Some(b"biliti"), b"ble", Some(pm)),
        (Some(b"fulli"), b"ful", Some(pm)),
        (Some(b"logi"), b"log", Some(&logi)),
    ];
    apply_rules(w, &rules)
}

fn step3(w: &[u8]) -> Vec<u8> {
    let pm: &dyn Fn(&[u8]) -> bool = &positive_measure;
    apply_rules(
        w,
        &[
            (Some(b"icate"), b"ic", Some(pm)),
            (Some(b"ative"), b"", Some(pm)),
            (Some(b"alize"), b"al", Some(pm)),
            (Some(b"iciti"), b"ic", Some(pm)),
            (Some(b"ical"), b"ic", Some(pm)),
            (Some(b"ful"), b"", Some(pm)),
            (Some(b"ness"), b"", Some(pm)),
        ],
    )
}

fn step4(w: &[u8]) -> Vec<u8> {
    let gt1 = |s: &[u8]| measure(s) > 1;
    let g: &dyn Fn(&[u8]) -> bool = &gt1;
    let ion = |s: &[u8]| measure(s) > 1 && matches!(s.last(), Some(b's' | b't'));
    apply_rules(
        w,
        &[
            (Some(b"al"), b"", Some(g)),
            (Some(b"ance"), b"", Some(g)),
            (Some(b"ence"), b"", Some(g)),
            (Some(b"er"), b"", Some(g)),
            (Some(b"ic"), b"", Some(g)),
            (Some(b"able"), b"", Some(g)),
            (Some(b"ible"), b"", Some(g)),
            (Some(b"ant"), b"", Some(g)),
            (Some(b"ement"), b"", Some(g)),
            (Some(b"ment"), b"", Some(g)),
            (Some(b"ent"), b"", Some(g)),
            (Some(b"ion"), b"", Some(&ion)),
            (Some(b"ou"), b"", Some(g)),
            (Some(b"ism"), b"", Some(g)),
            (Some(b"ate"), b"", Some(g)),
            (Some(b"iti"), b"", Some(g)),
            (Some(b"ous"), b"", Some(g)),
            (Some(b"ive"), b"", Some(g)),
            (Some(b"ize"), b"", Some(g)),
        ],
    )
}

fn step5a(w: &[u8]) -> Vec<u8> {
    if let Some(stem) = w.strip_suffix(b"e") {
        let m = measure(stem);
        if m > 1 || (m == 1 && !ends_cvc(stem)) {
            return stem.to_vec();
        }
    }
    w.to_vec()
}

fn step5b(w: &[u8]) -> Vec<u8> {
    let whole = &w[..w.len().saturating_sub(1)];
    let cond = move |_: &[u8]| measure(whole) > 1;
    apply_rules(w, &[(Some(b"ll"), b"l", Some(&cond))])
}

/// Stems one word as NLTK's `PorterStemmer().stem(word)` does (NLTK extensions, lowercasing).
///
/// Words with non-ASCII characters are returned lowercased but otherwise unchanged (rouge-score
/// never passes such words).
///
/// ```
/// use kiln_eval::porter_stem;
/// assert_eq!(porter_stem("running"), "run");
/// assert_eq!(porter_stem("generalizations"), "gener");
/// assert_eq!(porter_stem("skies"), "sky");
/// ```
pub fn porter_stem(word: &str) -> String {
    let lower = word.to_lowercase();
    let irregular = match lower.as_str() {
        "sky" | "skies" => Some("sky"),
        "dying" => Some("die"),
        "lying" => Some("lie"),
        "tying" => Some("tie"),
        "news" => Some("news"),
        "innings" | "inning" => Some("inning"),
        "outings" | "outing" => Some("outing"),
        "cannings" | "canning" => Some("canning"),
        "howe" => Some("howe"),
        "proceed" => Some("proceed"),
        "exceed" => Some("exceed"),
        "succeed" => Some("succeed"),
        _ => None,
    };
    if let Some(s) = irregular {
        return s.to_string();
    }
    // NLTK checks the length of the word as given (in code points).
    if word.chars().count() <= 2 || !lower.is_ascii() {
        return lower;
    }
    let mut w = step1a(lower.as_bytes());
    w = step1b(&w);
    w = step1c(&w);
    w = step2(&w);
    w = step3(&w);
    w = step4(&w);
    w = step5a(&w);
    w = step5b(&w);
    // Only ASCII bytes were moved around, so this cannot fail.
    String::from_utf8(w).unwrap_or(lower)
}
