//! `hutong demo`'s showcase, end to end: the embedded showcase plan compiled, `hutong gateway
//! run` in namespaces with two overlapping legacy networks and real Linux hosts, ping, HTTP and
//! iperf3 both ways, the published archive and the refusals. Every row of the summary the demo
//! prints must be what the plan says.

mod common;

#[test]
fn the_showcase_holds_row_by_row() {
    common::require_root("e2e_showcase");
    let config = hutong::showcase::config().unwrap();
    let hutong = std::path::Path::new(env!("CARGO_BIN_EXE_hutong"));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let rows = rt
        .block_on(hutong::showcase::collect(&config, hutong, &|m| eprintln!("showcase_e2e: {m}"), &|| Ok(())))
        .unwrap();
    eprintln!("{}", hutong::showcase::table(&rows));
    assert_eq!(rows.len(), 12, "every row the showcase promises");
    for r in &rows {
        assert!(r.ok, "{r:?}");
    }
    // The overlap itself: the same legacy address, seen as two different plan addresses.
    let seen: Vec<&str> = rows
        .iter()
        .filter(|r| r.traffic == "HTTP" && r.from.contains("10.0.0.10"))
        .map(|r| r.seen_as.as_str())
        .collect();
    assert_eq!(seen, ["198.18.20.10", "198.18.21.0"]);
}
