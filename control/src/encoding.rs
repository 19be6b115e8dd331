//! From a plan file's bytes to the text the YAML parser reads. A leading byte-order mark is
//! dropped; every invalid UTF-8 sequence and every character YAML does not allow is reported at
//! its line and column, all of them at once, and the file is then not parsed: the parser would
//! stop at the first, and it takes a NUL for the end of the file and reads on as if nothing
//! followed.

use crate::position::{Pos, Problem};

/// Reports beyond this many are summed up in one last line: a binary file has thousands.
pub(crate) const MAX_REPORTS: usize = 20;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// `bytes` as text, without a leading byte-order mark, or every problem that keeps it from
/// being YAML text.
pub(crate) fn text(bytes: &[u8]) -> Result<&str, Vec<Problem>> {
    let bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(text) if text.chars().all(allowed) => Ok(text),
        _ => Err(problems(bytes)),
    }
}

/// YAML 1.2's c-printable: tab, line breaks, and printable characters.
fn allowed(c: char) -> bool {
    matches!(c as u32, 0x09 | 0x0A | 0x0D | 0x20..=0x7E | 0x85 | 0xA0..=0xD7FF | 0xE000..=0xFFFD | 0x10000..)
}

/// Walks the whole of `bytes`, counting lines and columns as the YAML parser does (LF, CR LF and a
/// lone CR each end a line), and reports what is wrong.
fn problems(bytes: &[u8]) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut found = 0usize;
    let mut report = |pos: Pos, message: String, hint: &str| {
        found += 1;
        if found <= MAX_REPORTS {
            out.push(Problem::new(pos, message, Some(hint.to_string())));
        } else if found == MAX_REPORTS + 1 {
            // Placed at the first one not shown; its message is filled in once all are counted.
            out.push(Problem::new(pos, String::new(), None));
        }
    };
    let mut pos = Pos::START;
    let mut after_cr = false;
    let mut rest = bytes;
    loop {
        let (valid, bad) = match std::str::from_utf8(rest) {
            Ok(all) => (all, None),
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                let len = e.error_len().unwrap_or(after.len());
                // The prefix was just checked, so this cannot fail.
                (
                    std::str::from_utf8(valid).unwrap_or_default(),
                    Some((&after[..len], e.error_len().is_none())),
                )
            }
        };
        for c in valid.chars() {
            if !allowed(c) {
                report(
                    pos,
                    format!("the character {} is not allowed in YAML", name(c)),
                    "YAML text holds tabs, line breaks and printable characters only; delete it",
                );
            }
            match c {
                '\n' if after_cr => {}
                '\n' | '\r' => pos = Pos { line: pos.line + 1, column: 1 },
                _ => pos.column += 1,
            }
            after_cr = c == '\r';
        }
        let Some((seq, at_end)) = bad else { break };
        let shown: Vec<String> = seq.iter().map(|b| format!("0x{b:02X}")).collect();
        let message = if at_end {
            format!("the file ends inside a UTF-8 sequence (bytes {})", shown.join(" "))
        } else if seq.len() == 1 {
            format!("invalid UTF-8 (byte {})", shown[0])
        } else {
            format!("invalid UTF-8 (bytes {})", shown.join(" "))
        };
        report(pos, message, "save the file as UTF-8");
        // The bad sequence stands for one character, as an editor shows a replacement mark.
        pos.column += 1;
        after_cr = false;
        rest = &rest[valid.len() + seq.len()..];
    }
    if found > MAX_REPORTS {
        if let Some(last) = out.last_mut() {
            last.message =
                format!("and {} more invalid bytes or characters not allowed in YAML", found - MAX_REPORTS);
        }
    }
    out
}

/// `U+0000 (NUL)`: the code point, and a name where one helps.
fn name(c: char) -> String {
    let what = match c as u32 {
        0x00 => " (NUL)",
        0x1B => " (ESC)",
        0x7F => " (DEL)",
        0x01..=0x1F | 0x80..=0x9F => " (a control character)",
        0xFFFE | 0xFFFF => " (a noncharacter)",
        _ => "",
    };
    format!("U+{:04X}{what}", c as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(p: &Problem) -> (usize, usize) {
        (p.pos.line, p.pos.column)
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        assert_eq!(text(b"\xEF\xBB\xBFplan: x\n").unwrap(), "plan: x\n");
        assert_eq!(text(b"plan: x\n").unwrap(), "plan: x\n");
    }

    #[test]
    fn invalid_utf8_is_located_by_characters() {
        // Line 3: three characters ("  é", é two bytes) before the bad byte.
        let bytes = b"plan: x\nnodes:\n  \xC3\xA9\xFFz\n";
        let errs = text(bytes).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(at(&errs[0]), (3, 4));
        assert_eq!(errs[0].message, "invalid UTF-8 (byte 0xFF)");
        // The brief's case: four characters before it on line 3.
        let errs = text(b"a: 1\nb: 2\nc: \xE4\x80\n").unwrap_err();
        assert_eq!(at(&errs[0]), (3, 4));
        let errs = text(b"a: 1\nb: 2\nc: \"\xE4\x80\"\n").unwrap_err();
        assert_eq!(at(&errs[0]), (3, 5));
        assert_eq!(errs[0].message, "invalid UTF-8 (bytes 0xE4 0x80)");
        assert_eq!(errs[0].hint.as_deref(), Some("save the file as UTF-8"));
    }

    #[test]
    fn every_bad_sequence_is_reported_then_summed_up() {
        let mut bytes = b"plan: x\r\n".to_vec();
        bytes.extend(std::iter::repeat_n(0xFFu8, 25));
        bytes.extend(b"\r\xE2\x82");
        let errs = text(&bytes).unwrap_err();
        assert_eq!(errs.len(), MAX_REPORTS + 1);
        assert_eq!(at(&errs[0]), (2, 1), "CR LF is one line break");
        assert_eq!(at(&errs[19]), (2, 20));
        assert_eq!(errs[20].message, "and 6 more invalid bytes or characters not allowed in YAML");
        assert_eq!(at(&errs[20]), (2, 21));
        // The last, alone: after a lone CR, at the end of the file.
        let errs = text(b"a\r\xE2\x82").unwrap_err();
        assert_eq!(at(&errs[0]), (2, 1));
        assert!(errs[0].message.starts_with("the file ends inside a UTF-8 sequence"), "{errs:?}");
    }

    #[test]
    fn characters_yaml_forbids_are_named_and_located() {
        let errs = text("plan: x\nnodes:\n  - code: \"43\u{0}100\"\u{7}\n".as_bytes()).unwrap_err();
        let got: Vec<_> = errs.iter().map(|p| (at(p), p.message.as_str())).collect();
        assert_eq!(
            got,
            [
                ((3, 14), "the character U+0000 (NUL) is not allowed in YAML"),
                ((3, 19), "the character U+0007 (a control character) is not allowed in YAML"),
            ]
        );
        // What YAML allows passes: tab, CR, NEL, CJK, emoji, a BOM inside.
        assert!(text("a:\t\"\u{85}长沙\u{1F600}\u{FEFF}\"\r\n".as_bytes()).is_ok());
    }
}
