//! Plan problems, each located to file:line:column with a hint, reported all together; and the
//! two ways every message shows a value the plan wrote: quoted, and, when it nearly matches a
//! known name, with the difference spelt out.

use std::{fmt, path::PathBuf};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no single place (an unreadable file, say).
    pub line: usize,
    pub column: usize,
    /// Where in the document, e.g. `nodes[0].legacy_networks[1].netmap[0].to`.
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: error: {}", self.file.display(), self.message)?;
        } else {
            write!(f, "{}:{}:{}: error: {}", self.file.display(), self.line, self.column, self.message)?;
        }
        if !self.path.is_empty() {
            write!(f, " (at {})", self.path)?;
        }
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

/// A non-empty list of problems.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        write!(f, "{} error(s)", self.0.len())
    }
}

impl std::error::Error for Diagnostics {}

/// `text` in double quotes, with everything a reader could not see or tell apart escaped:
/// control characters, invisible and format characters (zero-width space, BOM, bidi marks),
/// and spaces other than U+0020. Letters of other scripts stay as they are; [`near_miss`] names
/// them when they matter.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(QUOTED_CHARS * 4) + 2);
    out.push('"');
    let count = text.chars().count();
    for c in text.chars().take(if count > QUOTED_CHARS { QUOTED_CHARS - 20 } else { count }) {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if invisible(c) => out.push_str(&format!("\\u{{{:04X}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    if count > QUOTED_CHARS {
        // A value that long is not a name mistyped: enough of it to recognise, never a whole file.
        out.insert(out.len() - 1, '…');
        out.push_str(&format!(" ({count} characters)"));
    }
    out
}

/// The most characters of a value a message quotes.
pub const QUOTED_CHARS: usize = 100;

/// Characters that print as nothing, or as something indistinguishable from a plain space.
fn invisible(c: char) -> bool {
    c.is_control()
        || (c.is_whitespace() && c != ' ')
        || matches!(c as u32, 0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180E
            | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F
            | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFF8)
}

/// When `wrong` is not one of `known` but nearly is (the same after trimming or case folding,
/// a look-alike letter of another script, one or two edits apart), a hint naming the close
/// one and exactly where the two differ.
pub fn near_miss<'a>(wrong: &str, known: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let len = wrong.chars().count();
    // Names are short (ids at most 64 characters); comparing long text costs its length squared.
    if wrong.len() > NEAR_MISS_LONGEST {
        return None;
    }
    let folded = skeleton(wrong);
    let best = known
        .into_iter()
        .filter(|k| *k != wrong && k.len().abs_diff(wrong.len()) <= 3 * 4)
        // Bounded work: a plan with thousands of wrong references against thousands of names
        // must not take quadratic time to suggest; the first candidates of a plausible length
        // are enough to catch a typo.
        .take(NEAR_MISS_CANDIDATES)
        .map(|k| (distance(wrong, k), k))
        .filter(|(d, k)| {
            *d <= 2.min(k.chars().count().saturating_sub(1)).max(1).min(len) || skeleton(k) == folded
        })
        .min_by_key(|(d, k)| (*d, *k))?
        .1;
    Some(format!("did you mean {}? {}", quote(best), difference(wrong, best)))
}

/// How many known names [`near_miss`] compares at most.
const NEAR_MISS_CANDIDATES: usize = 512;

/// The longest name (in bytes) [`near_miss`] looks for a near miss of.
const NEAR_MISS_LONGEST: usize = 256;

/// Where `a` (written) first differs from `b` (meant), in words: "character 7 is 'а' (U+0430
/// CYRILLIC), not 'a' (U+0061)", "it ends in a space", ...
pub fn difference(a: &str, b: &str) -> String {
    let (ac, bc): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let first = ac.iter().zip(&bc).position(|(x, y)| x != y);
    let name = |c: char| {
        let script = if c.is_ascii() { "" } else { non_ascii_name(c) };
        format!(
            "{} (U+{:04X}{}{})",
            quote(&c.to_string()).replace('"', "'"),
            c as u32,
            if script.is_empty() { "" } else { " " },
            script
        )
    };
    match first {
        Some(i) => format!("character {} is {}, not {}", i + 1, name(ac[i]), name(bc[i])),
        None if ac.len() > bc.len() => {
            let extra: String = ac[bc.len()..].iter().collect();
            if extra.trim().is_empty() {
                format!("it ends in {} extra whitespace character(s)", extra.chars().count())
            } else {
                format!("it has {} after the end", quote(&extra))
            }
        }
        None => {
            let missing: String = bc[ac.len()..].iter().collect();
            format!("it lacks the final {}", quote(&missing))
        }
    }
}

/// A rough script name for a character outside ASCII: enough to say why two names that look
/// the same are not.
fn non_ascii_name(c: char) -> &'static str {
    match c as u32 {
        0x0080..=0x024F => "Latin",
        0x0370..=0x03FF => "Greek",
        0x0400..=0x052F => "Cyrillic",
        0x2000..=0x206F => "punctuation",
        0x3000..=0x303F => "CJK punctuation",
        0x4E00..=0x9FFF => "CJK",
        0xFF00..=0xFFEF => "full-width",
        _ => "non-ASCII",
    }
}

/// Look-alike folding: what a name reads as, so that "сity" (Cyrillic с) and "city" compare
/// equal and a near-miss is reported even when the edit distance is not small.
fn skeleton(s: &str) -> String {
    s.trim()
        .chars()
        .map(|c| match c {
            'а' => 'a',
            'в' => 'b',
            'е' => 'e',
            'к' => 'k',
            'м' => 'm',
            'н' => 'h',
            'о' => 'o',
            'р' => 'p',
            'с' => 'c',
            'т' => 't',
            'у' => 'y',
            'х' => 'x',
            'і' => 'i',
            'ј' => 'j',
            'ѕ' => 's',
            'А' => 'A',
            'В' => 'B',
            'Е' => 'E',
            'К' => 'K',
            'М' => 'M',
            'Н' => 'H',
            'О' => 'O',
            'Р' => 'P',
            'С' => 'C',
            'Т' => 'T',
            'Х' => 'X',
            'І' => 'I',
            'ο' => 'o',
            'α' => 'a',
            'ε' => 'e',
            'ι' => 'i',
            'ν' => 'v',
            'ρ' => 'p',
            'τ' => 't',
            '‐' | '‑' | '‒' | '–' | '—' | '−' => '-',
            c if ('\u{FF01}'..='\u{FF5E}').contains(&c) => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            c => c,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// Levenshtein distance in characters, bounded: names are short, and anything over 3 apart is
/// not a near miss.
fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > 3 || a.len() > 128 || b.len() > 128 {
        return usize::MAX;
    }
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_shows_what_cannot_be_seen() {
        assert_eq!(quote("city-hall "), "\"city-hall \"");
        assert_eq!(quote("a\u{200B}b\u{A0}c\td"), "\"a\\u{200B}b\\u{00A0}c\\td\"");
        assert_eq!(quote("сity"), "\"сity\"", "other scripts stay readable");
    }

    #[test]
    fn long_text_is_not_compared_for_a_near_miss() {
        let long = "x".repeat(10_000);
        let known: Vec<String> = (0..512).map(|i| format!("{long}{i}")).collect();
        assert_eq!(near_miss(&long, known.iter().map(|k| k.as_str())), None);
    }

    #[test]
    fn a_long_value_is_quoted_in_part() {
        let x = "x".repeat(QUOTED_CHARS);
        assert_eq!(quote(&x), format!("\"{x}\""));
        let long = "root:x:0:0:root:/root:/bin/bash ".repeat(100);
        let q = quote(&long);
        assert!(q.ends_with("…\" (3200 characters)"), "{q}");
        assert!(q.chars().count() < QUOTED_CHARS + 20, "{q}");
    }

    #[test]
    fn near_misses_name_the_difference() {
        let known = ["city-hall", "county-hall"];
        let h = near_miss("city-hаll", known).unwrap(); // Cyrillic а
        assert!(h.starts_with("did you mean \"city-hall\"? character 7 is 'а' (U+0430 Cyrillic)"), "{h}");
        let h = near_miss("city-hall ", known).unwrap();
        assert!(h.contains("ends in 1 extra whitespace"), "{h}");
        let h = near_miss("city-hal", known).unwrap();
        assert!(h.contains("lacks the final \"l\""), "{h}");
        assert_eq!(near_miss("tax-office", known), None);
        // A whole name in look-alikes is still found.
        assert!(near_miss("сіту-hall", known).is_some());
    }
}
