//! `hutong audit keygen | show | verify` on a log written by the library (`hutong-audit`), as an
//! auditor meets it: a good log verifies, a changed one names its first bad line and fails.

use std::process::Command;

use hutong_audit::{Log, Record, Signer, Who};

fn hutong(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hutong")).args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn an_audit_log_is_shown_filtered_and_verified_and_an_edit_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("audit.key");
    let (code, said) = hutong(&["audit", "keygen", key_file.to_str().unwrap()]);
    assert_eq!(code, 0, "{said}");
    let public =
        said.lines().find_map(|l| l.split(": ").nth(1).filter(|k| k.starts_with("04"))).unwrap().to_string();
    let signer = Signer::load(&key_file).unwrap();
    assert_eq!(signer.public().sec1, public);
    let log = Log::new(dir.path().join("audit.log"));
    for (who, action) in [("CN=op-430100", "push"), ("CN=op-430000", "rollout"), ("CN=op-430100", "refused")]
    {
        let record = Record {
            who: Who { subject: who.into(), serial: "2a".into() },
            from: "198.51.100.7".into(),
            action: action.into(),
            summary: format!("{action} by {who}"),
            diff_sm3: None,
            result: "ok".into(),
        };
        log.append(&signer, record).unwrap();
    }
    let path = log.path().to_str().unwrap();
    let (code, said) = hutong(&["audit", "verify", "--log", path, "--key", &public]);
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("3 entries verified"), "{said}");
    // The key from its file works the same.
    let pub_file = dir.path().join("audit.pub");
    std::fs::write(&pub_file, format!("{public}\n")).unwrap();
    assert_eq!(hutong(&["audit", "verify", "--log", path, "--key", pub_file.to_str().unwrap()]).0, 0);
    let (code, said) = hutong(&["audit", "show", "--log", path, "--who", "430100", "--json"]);
    assert_eq!(code, 0, "{said}");
    let rows: Vec<serde_json::Value> = said.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.iter().map(|r| r["seq"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 3]);
    let (_, said) = hutong(&["audit", "show", "--log", path, "--since", "2999"]);
    assert!(said.trim().is_empty(), "{said}");
    // Entry 2 edited: verification fails there, and says so.
    let text = std::fs::read_to_string(log.path()).unwrap();
    std::fs::write(log.path(), text.replacen("rollout by", "rollout  by", 1)).unwrap();
    let (code, said) = hutong(&["audit", "verify", "--log", path, "--key", &public]);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("audit.log:2:") && said.contains("signature"), "{said}");
    // Another key is not the log's.
    let other = Signer::generate().unwrap();
    assert_eq!(hutong(&["audit", "verify", "--log", path, "--key", &other.public().sec1]).0, 1);
}
