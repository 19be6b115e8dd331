//! `hutong audit verify`: every line's signature by the key in force, the chain of hashes and
//! numbers, and the signed head; the first line that fails is named, with why.

use std::path::Path;

use anyhow::{Context, Result};

use crate::{
    entry::{Entry, GENESIS, Head, Line},
    key::PublicKey,
    log::head_path,
    sm3_hex,
};

/// What a verification found.
#[derive(Clone, Debug, PartialEq)]
pub struct Verified {
    /// Entries that verified, from the first.
    pub good: u64,
    /// The first bad one: its line number (1-based; one past the end for a cut-off file) and why.
    pub bad: Option<(usize, String)>,
    /// Said, not failed: a head one entry behind (a crash between a line and its head).
    pub notes: Vec<String>,
    /// The key that signs the next entry.
    pub key: Option<String>,
}

impl Verified {
    pub fn ok(&self) -> bool {
        self.bad.is_none()
    }
}

/// Verifies the file at `path` from `trusted`, the public key its first entry is signed with.
pub fn verify(path: &Path, trusted: &PublicKey) -> Result<Verified> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut v = Verified { good: 0, bad: None, notes: Vec::new(), key: Some(trusted.id.clone()) };
    let mut key = trusted.clone();
    let mut prev = GENESIS.to_string();
    let mut lines = bytes.split(|b| *b == b'\n').peekable();
    let mut n = 0;
    while let Some(raw) = lines.next() {
        if raw.is_empty() && lines.peek().is_none() {
            break;
        }
        n += 1;
        if lines.peek().is_none() {
            v.bad = Some((n, "incomplete line (no end): a write was cut off, or the file was cut".into()));
            return Ok(v);
        }
        match check(raw, &key, &prev, v.good + 1) {
            Ok(entry) => {
                if let Some(next) = &entry.next_key {
                    match PublicKey::from_hex(next) {
                        Ok(k) => key = k,
                        Err(e) => {
                            v.bad = Some((n, format!("its next key does not read: {e}")));
                            return Ok(v);
                        }
                    }
                }
                prev = sm3_hex(raw);
                v.good += 1;
            }
            Err(why) => {
                v.bad = Some((n, why));
                return Ok(v);
            }
        }
    }
    v.key = Some(key.id.clone());
    // The head: the file must not end before the last entry ever written.
    let head_file = head_path(path);
    let head = match std::fs::read(&head_file) {
        Ok(h) => h,
        Err(_) if v.good == 0 => return Ok(v),
        Err(e) => {
            v.bad = Some((n + 1, format!("{}: {e}: the file's end cannot be checked", head_file.display())));
            return Ok(v);
        }
    };
    let head = match read_head(&head, &key) {
        Ok(h) => h,
        Err(why) => {
            v.bad = Some((n + 1, format!("{}: {why}", head_file.display())));
            return Ok(v);
        }
    };
    if head.seq > v.good {
        v.bad = Some((
            n + 1,
            format!(
                "entries {}..={} are missing: the signed head says the log ends at entry {}",
                v.good + 1,
                head.seq,
                head.seq
            ),
        ));
    } else if head.seq == v.good && head.hash != prev {
        v.bad = Some((n, format!("entry {} is not the one the signed head names", head.seq)));
    } else if head.seq + 1 == v.good {
        v.notes.push(format!(
            "the head names entry {} of {}: the last append was interrupted before its head was written",
            head.seq, v.good
        ));
    } else if head.seq < v.good {
        v.bad = Some((
            n,
            format!(
                "the signed head names entry {} of {}: the head was replaced by an older one",
                head.seq, v.good
            ),
        ));
    }
    Ok(v)
}

/// One line: well formed, signed by `key`, numbered `seq`, chained to `prev`.
fn check(raw: &[u8], key: &PublicKey, prev: &str, seq: u64) -> Result<Entry, String> {
    let line: Line = serde_json::from_slice(raw).map_err(|e| format!("not an audit line: {e}"))?;
    if line.key != key.id {
        return Err(format!("signed by key {}, but the key in force is {}", line.key, key.id));
    }
    if !key.verifies(line.entry.get().as_bytes(), &line.sig) {
        return Err("its signature does not verify: the entry was changed".into());
    }
    let entry: Entry = serde_json::from_str(line.entry.get()).map_err(|e| format!("not an entry: {e}"))?;
    if entry.seq != seq {
        return Err(format!(
            "it is entry {}, where entry {seq} belongs: entries were removed or moved",
            entry.seq
        ));
    }
    if entry.prev != prev {
        return Err(
            "it does not follow the line before it: a line before it was removed, changed or moved".into()
        );
    }
    Ok(entry)
}

fn read_head(bytes: &[u8], key: &PublicKey) -> Result<Head, String> {
    #[derive(serde::Deserialize)]
    struct Signed<'a> {
        #[serde(borrow)]
        head: &'a serde_json::value::RawValue,
        key: String,
        sig: String,
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "not text".to_string())?.trim_end();
    let s: Signed = serde_json::from_str(text).map_err(|e| format!("not a head: {e}"))?;
    if s.key != key.id || !key.verifies(s.head.get().as_bytes(), &s.sig) {
        return Err("its signature does not verify".into());
    }
    serde_json::from_str(s.head.get()).map_err(|e| format!("not a head: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Log, Record, Signer, Who};

    fn record(action: &str, n: u32) -> Record {
        Record {
            who: Who { subject: "CN=op-430100".into(), serial: "1f".into() },
            from: "198.51.100.7".into(),
            action: action.into(),
            summary: format!("{action} {n}"),
            diff_sm3: Some(crate::sm3_hex(format!("diff {n}").as_bytes())),
            result: "ok".into(),
        }
    }

    /// Six entries: four by the first key, a rotation, one by the second key.
    fn sample(dir: &Path) -> (Log, Signer, Signer) {
        let log = Log::new(dir.join("audit.log"));
        let (k1, k2) = (Signer::generate().unwrap(), Signer::generate().unwrap());
        for (i, a) in ["push", "rollout", "apply", "refused"].iter().enumerate() {
            log.append(&k1, record(a, i as u32)).unwrap();
        }
        log.rotate(&k1, &k2, record("key-rotate", 0)).unwrap();
        log.append(&k2, record("rollback", 5)).unwrap();
        (log, k1, k2)
    }

    fn lines(log: &Log) -> Vec<String> {
        std::fs::read_to_string(log.path()).unwrap().lines().map(String::from).collect()
    }

    fn write(log: &Log, lines: &[String]) {
        std::fs::write(log.path(), lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    }

    fn bad(log: &Log, k1: &Signer) -> (usize, String) {
        let v = verify(log.path(), k1.public()).unwrap();
        v.bad.clone().unwrap_or_else(|| panic!("verified although tampered: {v:?}"))
    }

    #[test]
    fn an_untouched_log_verifies_across_a_key_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let (log, k1, k2) = sample(dir.path());
        let v = verify(log.path(), k1.public()).unwrap();
        assert!(v.ok(), "{v:?}");
        assert_eq!((v.good, v.key.as_deref()), (6, Some(k2.public().id.as_str())));
        // The old key no longer writes; from another starting key nothing verifies.
        let err = format!("{:#}", log.append(&k1, record("push", 9)).unwrap_err());
        assert!(err.contains("rotate"), "{err}");
        assert_eq!(bad(&log, &k2).0, 1);
        let entries = crate::log::read(log.path()).unwrap();
        assert_eq!(entries.iter().map(|(e, _)| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6]);
        assert_eq!(entries[4].0.record.action, "key-rotate");
    }

    #[test]
    fn an_edited_byte_a_removed_or_swapped_entry_and_a_cut_fail_at_the_right_line() {
        let dir = tempfile::tempdir().unwrap();
        let (log, k1, _) = sample(dir.path());
        let orig = lines(&log);
        // One byte of entry 3's summary.
        let mut edited = orig.clone();
        edited[2] = edited[2].replacen("apply 2", "apply 3", 1);
        write(&log, &edited);
        let (line, why) = bad(&log, &k1);
        assert_eq!(line, 3, "{why}");
        assert!(why.contains("signature"), "{why}");
        // Entry 2 removed.
        let mut removed = orig.clone();
        removed.remove(1);
        write(&log, &removed);
        assert_eq!(bad(&log, &k1).0, 2);
        // Entries 3 and 4 swapped.
        let mut swapped = orig.clone();
        swapped.swap(2, 3);
        write(&log, &swapped);
        assert_eq!(bad(&log, &k1).0, 3);
        // The last entry cut off, whole: the signed head says it existed.
        write(&log, &orig[..5]);
        let (line, why) = bad(&log, &k1);
        assert_eq!(line, 6, "{why}");
        assert!(why.contains("missing"), "{why}");
        // Cut in the middle of a line.
        let whole = orig.iter().map(|l| format!("{l}\n")).collect::<String>();
        std::fs::write(log.path(), &whole[..whole.len() - 40]).unwrap();
        assert_eq!(bad(&log, &k1).0, 6);
        // A line's signature moved to another line's entry.
        let mut forged = orig.clone();
        let sig = |l: &str| l[l.rfind("\"sig\"").unwrap()..].to_string();
        forged[1] = forged[1].replace(&sig(&orig[1]), &sig(&orig[0]));
        write(&log, &forged);
        assert_eq!(bad(&log, &k1).0, 2);
        // The head gone: the end cannot be checked.
        write(&log, &orig);
        std::fs::remove_file(log.head_path()).unwrap();
        assert_eq!(bad(&log, &k1).0, 7);
    }

    #[test]
    fn a_head_one_behind_is_a_note_and_a_cut_file_refuses_appends() {
        let dir = tempfile::tempdir().unwrap();
        let (log, k1, k2) = sample(dir.path());
        let head = std::fs::read(log.head_path()).unwrap();
        log.append(&k2, record("apply", 7)).unwrap();
        // As if the process died after the line and before its head.
        std::fs::write(log.head_path(), &head).unwrap();
        let v = verify(log.path(), k1.public()).unwrap();
        assert!(v.ok(), "{v:?}");
        assert_eq!(v.notes.len(), 1, "{v:?}");
        // A file cut mid-line takes no more entries.
        let text = std::fs::read_to_string(log.path()).unwrap();
        std::fs::write(log.path(), &text[..text.len() - 10]).unwrap();
        let err = format!("{:#}", log.append(&k2, record("apply", 8)).unwrap_err());
        assert!(err.contains("incomplete"), "{err}");
    }
}
