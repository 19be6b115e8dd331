//! Appending to the audit file: one writer at a time (an exclusive lock on the file), each line
//! written whole and synced, then the signed head rewritten.

use std::{
    fs::{File, OpenOptions},
    io::{Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use nix::fcntl::{Flock, FlockArg};

use crate::{
    entry::{Entry, GENESIS, Head, Line, Record},
    key::Signer,
    sm3_hex,
};

/// The longest line read back as the last one; a record is a few hundred bytes.
const MAX_LINE: u64 = 1 << 20;

/// An audit file, and its head beside it (`FILE.head`).
#[derive(Clone, Debug)]
pub struct Log {
    path: PathBuf,
}

/// Where the file ends: its last entry's number, that line's hash, and the key that signs next.
struct Tail {
    seq: u64,
    hash: String,
    key: Option<String>,
}

impl Log {
    pub fn new(path: impl Into<PathBuf>) -> Log {
        Log { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn head_path(&self) -> PathBuf {
        head_path(&self.path)
    }

    /// Appends `record`, signed by `signer`, which must be the key the log is signed with now.
    pub fn append(&self, signer: &Signer, record: Record) -> Result<Entry> {
        self.write(signer, record, None)
    }

    /// Hands the log to `new`: an entry signed by `old` (the current key) names `new`'s public
    /// key, and the entries after it are `new`'s. The entries before stay verifiable by `old`.
    pub fn rotate(&self, old: &Signer, new: &Signer, mut record: Record) -> Result<Entry> {
        record.action = "key-rotate".into();
        if record.summary.is_empty() {
            record.summary = format!("audit key {} replaces {}", new.public().id, old.public().id);
        }
        self.write(old, record, Some(new.public().sec1.clone()))
    }

    fn write(&self, signer: &Signer, record: Record, next_key: Option<String>) -> Result<Entry> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)
            .with_context(|| format!("opening the audit log {}", self.path.display()))?;
        let mut file = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| anyhow::anyhow!("locking the audit log {}: {e}", self.path.display()))?;
        let tail = tail(&mut file).with_context(|| format!("the audit log {}", self.path.display()))?;
        if let Some(k) = &tail.key
            && *k != signer.public().id
        {
            bail!(
                "the audit log {} is signed by key {k}; this key is {} (rotate the log's key to it first)",
                self.path.display(),
                signer.public().id
            );
        }
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let entry = Entry { seq: tail.seq + 1, at_ms, prev: tail.hash, record, next_key };
        let text = serde_json::to_string(&entry)?;
        let line = signed_line("entry", &text, signer);
        file.write_all(format!("{line}\n").as_bytes())?;
        file.sync_data()?;
        // The head last: a crash between the two leaves the head one entry behind, which
        // `verify` tells apart from a cut-off file (the head ahead of it).
        let head = serde_json::to_string(&Head { seq: entry.seq, hash: sm3_hex(line.as_bytes()) })?;
        let tmp = self.path.with_extension("head.tmp");
        std::fs::write(&tmp, format!("{}\n", signed_line("head", &head, signer)))?;
        File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, self.head_path())?;
        Ok(entry)
    }
}

pub(crate) fn head_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".head");
    PathBuf::from(p)
}

/// `{"NAME": TEXT, "key": ID, "sig": SIG}`, the signature over TEXT's exact bytes.
fn signed_line(name: &str, text: &str, signer: &Signer) -> String {
    format!(r#"{{"{name}":{text},"key":"{}","sig":"{}"}}"#, signer.public().id, signer.sign(text.as_bytes()))
}

/// The last line of the file: where the chain goes on.
fn tail(file: &mut File) -> Result<Tail> {
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(Tail { seq: 0, hash: GENESIS.into(), key: None });
    }
    let from = len.saturating_sub(MAX_LINE);
    file.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)?;
    if buf.last() != Some(&b'\n') {
        bail!(
            "its last line is incomplete (a write was cut off): nothing is appended after it; see `hutong audit verify`"
        );
    }
    let body = &buf[..buf.len() - 1];
    let start = body.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    if start == 0 && from > 0 {
        bail!("its last line is longer than {MAX_LINE} bytes");
    }
    let last = &body[start..];
    let line: Line = serde_json::from_slice(last).context("its last line is not an audit line")?;
    let entry: Entry = serde_json::from_str(line.entry.get()).context("its last entry does not read")?;
    let key = match &entry.next_key {
        Some(k) => crate::key::PublicKey::from_hex(k)?.id,
        None => line.key.clone(),
    };
    Ok(Tail { seq: entry.seq, hash: sm3_hex(last), key: Some(key) })
}

/// Every entry of the file that reads, with the key that signed it (for `hutong audit show`;
/// [`crate::verify`] says whether they can be trusted).
pub fn read(path: &Path) -> Result<Vec<(Entry, String)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let line: Line = serde_json::from_str(l)
            .with_context(|| format!("{}:{}: not an audit line", path.display(), i + 1))?;
        let entry: Entry = serde_json::from_str(line.entry.get())
            .with_context(|| format!("{}:{}: not an entry", path.display(), i + 1))?;
        out.push((entry, line.key));
    }
    Ok(out)
}
