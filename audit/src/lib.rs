//! The audit log: one JSON line per change (a push, an apply, a rollback, a rollout step, a
//! certificate issued or revoked, a refusal), saying who, when, from where, what (a readable
//! summary and the SM3 hash of the diff) and the result.
//!
//! Integrity, entry by entry:
//! - each line is `{"entry": {...}, "key": ID, "sig": HEX}`: an SM2 signature over the exact
//!   bytes of `entry` as written, by the writer's audit key `ID`;
//! - each entry names the SM3 hash of the line before it (`prev`) and its number (`seq`), so a
//!   removed, inserted or reordered line breaks the chain where it happened;
//! - a signed head (`FILE.head`: the last number and the last line's hash) is rewritten after
//!   every append, so a cut-off tail is found too;
//! - keys are trusted from a public key given to `verify` (the first writer's); a key is
//!   replaced by a `key-rotate` entry signed by the key before it, so entries signed before a
//!   rotation stay verifiable after it.
//!
//! [`log::Log`] appends (one writer at a time, by file lock) and [`verify::verify`] checks a
//! file and names the first bad line.

#![forbid(unsafe_code)]

pub mod entry;
pub mod key;
pub mod log;
pub mod verify;

pub use entry::{Entry, Record, Who};
pub use key::{PublicKey, Signer};
pub use log::Log;
pub use verify::{Verified, verify};

/// SM3 of `bytes`, as lower-case hex.
pub fn sm3_hex(bytes: &[u8]) -> String {
    use sm3::Digest;
    hex(&sm3::Sm3::digest(bytes))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn sm3_matches_the_standards_example() {
        // GB/T 32905-2016, appendix A.1: SM3("abc").
        assert_eq!(
            super::sm3_hex(b"abc"),
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
        );
    }
}
