//! `hutong audit`: an SM2 audit key, the entries of an audit log, and their verification (the
//! log itself: crate `hutong-audit`).

use std::{path::Path, process::ExitCode};

use anyhow::{Context, Result};
use hutong_audit::{PublicKey, Signer, log::read, verify};

/// Makes an SM2 key for signing an audit log; prints its public key.
pub fn keygen(path: &Path) -> Result<ExitCode> {
    let signer = Signer::generate()?;
    signer.save(path)?;
    println!("audit key {} written to {} (readable by its owner only)", signer.public().id, path.display());
    println!("public key (give it to `hutong audit verify --key`): {}", signer.public().sec1);
    Ok(ExitCode::SUCCESS)
}

/// The entries of `log`, oldest first: since a time (an RFC 3339 prefix such as `2026-12-03` or
/// `2026-12-03T14:00`), by a subject containing `who`.
pub fn show(log: &Path, since: Option<&str>, who: Option<&str>, json: bool) -> Result<ExitCode> {
    let entries = read(log)?;
    let chosen = entries.iter().filter(|(e, _)| {
        since.is_none_or(|s| e.time().as_str() >= s) && who.is_none_or(|w| e.record.who.subject.contains(w))
    });
    for (e, key) in chosen {
        if json {
            let mut v = serde_json::to_value(e)?;
            v["time"] = e.time().into();
            v["key"] = key.clone().into();
            println!("{}", serde_json::to_string(&v)?);
        } else {
            let serial = if e.record.who.serial.is_empty() {
                String::new()
            } else {
                format!(" #{}", e.record.who.serial)
            };
            println!(
                "{:>6} {} {:<12} {}{} from {}: {} [{}]",
                e.seq,
                e.time(),
                e.record.action,
                e.record.who.subject,
                serial,
                e.record.from,
                e.record.summary,
                e.record.result
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Verifies `log` from its first key (`key`: the public key as hex, or a file holding it).
pub fn verify_log(log: &Path, key: &str) -> Result<ExitCode> {
    let text = match std::fs::read_to_string(key) {
        Ok(t) => t,
        Err(_) => key.to_string(),
    };
    let trusted =
        PublicKey::from_hex(text.trim()).context("--key: an SM2 public key (hex) or a file holding one")?;
    let v = verify(log, &trusted)?;
    for n in &v.notes {
        println!("note: {n}");
    }
    match &v.bad {
        None => {
            println!(
                "{}: {} entries verified (SM3 chain, SM2 signatures, signed head); next key {}",
                log.display(),
                v.good,
                v.key.as_deref().unwrap_or("-")
            );
            Ok(ExitCode::SUCCESS)
        }
        Some((line, why)) => {
            println!("{}:{line}: {why}", log.display());
            println!("{} entries before it verified; this one and the rest cannot be trusted", v.good);
            Ok(ExitCode::FAILURE)
        }
    }
}
