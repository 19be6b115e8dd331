//! What one audit entry says, and the line it is written as.

use serde::{Deserialize, Serialize};

/// Who made a change: the certificate that authenticated them (its subject and serial), or, for
/// the embedded default without certificates, the local user.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Who {
    pub subject: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub serial: String,
}

/// What the caller records; [`crate::Log::append`] adds the number, the time and the chain.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub who: Who,
    /// Where from: a peer address, a host, `unix:PATH`.
    pub from: String,
    /// `push`, `apply`, `rollback`, `rollout`, `cert-issue`, `cert-revoke`, `refused`, ...
    pub action: String,
    /// What, readably: "push 7, scope 430100: 3 gateway(s) changed".
    pub summary: String,
    /// SM3 of the full diff (or config) the summary stands for, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_sm3: Option<String>,
    /// `ok`, or why not.
    pub result: String,
}

/// An entry as written: the record, its place in the chain, and when.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    /// 1, 2, 3, ... with no gap.
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// SM3 of the previous line (64 zeros before the first).
    pub prev: String,
    #[serde(flatten)]
    pub record: Record,
    /// A `key-rotate` entry: the public key (SEC1, hex) that signs the entries after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_key: Option<String>,
}

/// The chain's start: what the first entry's `prev` is.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

impl Entry {
    /// The time as RFC 3339 (UTC, seconds).
    pub fn time(&self) -> String {
        let secs = self.at_ms / 1000;
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (y, m, d) = civil(days as i64);
        format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
    }
}

/// Days since 1970-01-01 to a calendar date (Howard Hinnant's `civil_from_days`).
fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// One line of the file.
#[derive(Deserialize)]
pub(crate) struct Line<'a> {
    #[serde(borrow)]
    pub entry: &'a serde_json::value::RawValue,
    pub key: String,
    pub sig: String,
}

/// The head file: the last entry's number and line hash, signed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Head {
    pub seq: u64,
    pub hash: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_dates() {
        let e =
            |ms| Entry { seq: 1, at_ms: ms, prev: GENESIS.into(), record: Record::default(), next_key: None };
        assert_eq!(e(0).time(), "1970-01-01T00:00:00Z");
        assert_eq!(e(1_796_308_830_000).time(), "2026-12-03T14:40:30Z");
        assert_eq!(e(951_782_400_000).time(), "2000-02-29T00:00:00Z");
    }
}
