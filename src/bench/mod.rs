//! `hutong bench`, its first part: the default topology, four devices under test and three
//! scenarios, each device offered the generator's full rate. In namespaces it builds itself:
//!
//! ```text
//!  [gen] gen0 ── in0 [dut] out0 ── sink0 [sink]
//!  live-frames      the device      XDP sink: counts frames
//!  XDP generator    under test      translated as expected
//! ```
//! Devices: the raw XDP ceiling (a redirect, no translation), Linux forwarding with the
//! scenario's nftables rules, and hutong's XDP and userspace engines (`hutong gateway run`).
//! Scenarios ([`Scenario`]): netmap, the netmap behind 63 deny rules, NAPT with 1,000
//! established flows, and NAPT offered 100,000 new sessions at full rate. The report (Markdown, JSON, a PNG chart) is [`report`]'s. Not built yet
//! (issue 7): NAPT with 100k established flows, the RFC 2544 search for the highest
//! rate under a loss threshold, latency, session capacity, real NIC ports and several cores.

pub mod report;

use std::{path::Path, time::Duration};

use anyhow::{Context, Result, bail};
use dataplane::{
    bench::{Ceiling, Generator, Sink},
    netlink,
    tables::PortHandle,
};
use etherparse::PacketBuilder;
use hutong_common::bench::{GEN_HEADER, GenConfig, SinkExpect};
use ipnet::IpNet;
use netlink_packet_route::neighbour::NeighbourState;

use crate::{
    ethtool,
    lab::{Netns, gateway::GatewayProcess, netns},
};

/// 60-byte frames (64 on the wire), over this many flows (250 hosts × 4 ports).
const FLOWS: u32 = 1000;
const HOSTS: u32 = 250;
/// New sessions offered in the new-session scenario: every frame a flow of its own (250 hosts ×
/// 400 ports, inside each host's 1,024 pool ports and the pool's 1,008 blocks).
const NEW_FLOWS: u32 = 100_000;
/// The server behind the sink, and the gateway's addresses.
const SERVER: [u8; 4] = [198, 19, 0, 2];

/// The namespaces and the four veth ends that matter; dropping it removes everything.
pub struct BenchLab {
    pub generator: Netns,
    pub dut: Netns,
    pub sink: Netns,
    pub gen0: PortHandle,
    pub in0: PortHandle,
    pub out0: PortHandle,
    pub sink0: PortHandle,
}

/// What one device under test did with the frames offered.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// What the devices were asked to do ([`Scenario::name`]).
    pub scenario: &'static str,
    pub dut: String,
    /// Frame length, without the FCS (60 is a 64-byte frame on the wire).
    pub len: usize,
    pub sent: u32,
    /// Frames that reached the sink translated as expected, and the rest that reached it.
    pub good: u64,
    pub bad: u64,
    /// How long the generator took to send them all.
    pub took: Duration,
}

impl Outcome {
    /// Millions of correctly translated frames a second, over the generator's sending time.
    pub fn mpps(&self) -> f64 {
        self.good as f64 / self.took.as_secs_f64().max(1e-9) / 1e6
    }

    /// Its figures as the table and the report print them: Mpps, delivered, wrong, × Linux and
    /// × ceiling (see [`ratio_to`]; "–" where there is nothing to compare with).
    pub fn figures(&self, rows: &[Outcome]) -> [String; 5] {
        let ratio = |base| ratio_to(rows, self, base).map_or("–".into(), |v| format!("{v:.2}"));
        [
            format!("{:.3}", self.mpps()),
            format!("{:.1}%", self.delivered()),
            self.bad.to_string(),
            ratio("Linux"),
            ratio("raw XDP"),
        ]
    }

    /// The share of the frames sent that reached the sink translated as expected, in percent.
    pub fn delivered(&self) -> f64 {
        self.good as f64 * 100.0 / self.sent.max(1) as f64
    }
}

async fn veth(a_ns: &Netns, a: &str, b_ns: &Netns, b: &str) -> Result<(PortHandle, PortHandle)> {
    use std::os::fd::AsRawFd;
    let ha = a_ns.netlink()?;
    let hb = b_ns.netlink()?;
    ha.link().add(rtnetlink::LinkVeth::new(a, "btpeer").build()).execute().await?;
    let peer = netlink::link(&ha, "btpeer").await?.ifindex;
    ha.link()
        .set(rtnetlink::LinkUnspec::new_with_index(peer).setns_by_fd(b_ns.file().as_raw_fd()).build())
        .execute()
        .await?;
    let moved = netlink::link(&hb, "btpeer").await?.ifindex;
    hb.link().set(rtnetlink::LinkUnspec::new_with_index(moved).name(b.to_string()).build()).execute().await?;
    let (pa, pb) = (netlink::link(&ha, a).await?, netlink::link(&hb, b).await?);
    netlink::set_up(&ha, pa.ifindex).await?;
    netlink::set_up(&hb, pb.ifindex).await?;
    Ok((pa, pb))
}

impl BenchLab {
    pub async fn build() -> Result<BenchLab> {
        netns::sweep_stale();
        let tag = netns::lab_tag();
        let (generator, dut, sink) = (
            Netns::create(&format!("{tag}-bgen"))?,
            Netns::create(&format!("{tag}-bdut"))?,
            Netns::create(&format!("{tag}-bsink"))?,
        );
        for ns in [&generator, &dut, &sink] {
            // Loopback up: the gateway's agent API listens there.
            let h = ns.netlink()?;
            let lo = netlink::link(&h, "lo").await?;
            netlink::set_up(&h, lo.ifindex).await?;
        }
        let (gen0, in0) = veth(&generator, "gen0", &dut, "in0").await?;
        let (out0, sink0) = veth(&dut, "out0", &sink, "sink0").await?;
        // The device reaches the server through the sink, whose XDP drops ARP: a static entry.
        let h = dut.netlink()?;
        h.neighbours()
            .add(out0.ifindex, std::net::IpAddr::from(SERVER))
            .link_layer_address(&sink0.mac)
            .state(NeighbourState::Permanent)
            .execute()
            .await
            .context("the server's neighbor entry")?;
        Ok(BenchLab { generator, dut, sink, gen0, in0, out0, sink0 })
    }

    /// The device's addresses, as the gateway config has them (Linux forwarding needs them too).
    async fn address_dut(&self) -> Result<()> {
        let h = self.dut.netlink()?;
        netlink::add_address(&h, self.in0.ifindex, "10.20.0.1/24".parse::<IpNet>()?).await?;
        netlink::add_address(&h, self.out0.ifindex, "198.19.0.1/24".parse::<IpNet>()?).await?;
        Ok(())
    }

    /// Offers `frames` frames to whatever device is set up, and counts what the sink gets:
    /// correct if their source is in `expect_src` (address, mask).
    fn offer(
        &self,
        (scenario, dut): (Scenario, &str),
        frames: u32,
        len: usize,
        expect_src: ([u8; 4], [u8; 4]),
    ) -> Result<Outcome> {
        let mut header = Vec::new();
        PacketBuilder::ethernet2(self.gen0.mac, self.in0.mac)
            .ipv4([10, 20, 0, 1], SERVER, 64)
            .udp(1024, 9)
            .write(&mut header, &vec![0; len.saturating_sub(GEN_HEADER)])?;
        header[40..42].fill(0); // no UDP checksum: the generator varies the ports
        // New sessions: each flow once, however many frames the other scenarios send.
        // New sessions: each flow once, however many frames the others send, from source ports
        // no established flow of the same lab uses.
        let (flows, frames, sport) =
            if scenario == Scenario::NaptNew { (NEW_FLOWS, NEW_FLOWS, 2048) } else { (FLOWS, frames, 1024) };
        let config = GenConfig { header: header[..GEN_HEADER].try_into()?, sport, flows, hosts: HOSTS };
        let expect = SinkExpect {
            src: u32::from_ne_bytes(expect_src.0),
            src_mask: u32::from_ne_bytes(expect_src.1),
            dst: u32::from_ne_bytes(SERVER),
            dst_mask: u32::MAX,
        };
        let gen0 = self.gen0.ifindex;
        let sink = self.sink.run(|| Sink::attach(self.sink0.ifindex, expect))??;
        if scenario == Scenario::Napt {
            // Establish every flow's session first, at a pace the slow path keeps up with: the
            // measurement is of established sessions (their first packets are the slow path's,
            // as new connections are Linux's conntrack's).
            self.generator.run(|| -> Result<()> {
                let mut g = Generator::load(config)?;
                for _ in 0..WARM_UP_PASSES {
                    g.run(gen0, len, FLOWS, 64)?;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Ok(())
            })??;
            std::thread::sleep(Duration::from_millis(300));
        }
        // What the warm-up delivered does not count.
        let before = sink.counters()?;
        let took = self
            .generator
            .run(|| -> Result<Duration> { Generator::load(config)?.run(gen0, len, frames, 64) })??;
        std::thread::sleep(Duration::from_millis(300)); // what is queued drains
        let c = sink.counters()?;
        let (good, bad) = (c.good - before.good, c.bad - before.bad);
        Ok(Outcome { scenario: scenario.name(), dut: dut.into(), len, sent: frames, good, bad, took })
    }
}

/// Warm-up passes over every flow before an established-sessions measurement.
const WARM_UP_PASSES: u32 = 10;
/// Deny rules in front of the permit in the deny-heavy scenario (the program scans up to 64
/// rules per VRF).
const DENY_RULES: u8 = 63;

/// What the devices under test are asked to do with the offered frames (10.20.0.0/24 → the
/// server), each device with its own rules for it, printed with the results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Netmap 10.20.0.0/24 → 198.18.20.0/24, one rule.
    Netmap,
    /// The same netmap behind 63 deny rules the frames do not match: every frame is checked
    /// against all of them first.
    DenyHeavy,
    /// NAPT onto a pool of four addresses, the 1,000 flows' sessions established beforehand.
    Napt,
    /// The same NAPT, offered 100,000 flows of one frame each at full rate: every frame a new
    /// session (the rate is of sessions set up and their first packet delivered).
    NaptNew,
}

impl Scenario {
    pub const ALL: [Scenario; 4] = [Scenario::Netmap, Scenario::DenyHeavy, Scenario::Napt, Scenario::NaptNew];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Netmap => "netmap",
            Scenario::DenyHeavy => "deny-heavy policy",
            Scenario::Napt => "NAPT, 1k established flows",
            Scenario::NaptNew => "NAPT, 100k new sessions",
        }
    }

    /// The source addresses (address, mask) a correctly translated frame has.
    fn expect_src(self) -> ([u8; 4], [u8; 4]) {
        match self {
            Scenario::Netmap | Scenario::DenyHeavy => ([198, 18, 20, 0], [255, 255, 255, 0]),
            Scenario::Napt | Scenario::NaptNew => ([198, 18, 30, 0], [255, 255, 255, 252]),
        }
    }

    /// The gateway config, as a plan would compile it.
    pub fn gateway_config(self) -> dataplane::Config {
        let mut c = dataplane::Config::from_json(GATEWAY_BASE).expect("the bench config is valid");
        let rule = |name: String, src: &str, action| dataplane::Rule {
            name,
            vrf: 1,
            src: Some(src.parse().expect("a prefix")),
            dst: None,
            proto: None,
            src_ports: None,
            dst_ports: None,
            action,
        };
        match self {
            Scenario::Netmap => {}
            Scenario::DenyHeavy => {
                let mut rules: Vec<dataplane::Rule> = (0..DENY_RULES)
                    .map(|i| rule(format!("deny-{i}"), &format!("172.16.{i}.0/24"), dataplane::Action::Deny))
                    .collect();
                rules.append(&mut c.policies);
                c.policies = rules;
            }
            Scenario::Napt | Scenario::NaptNew => {
                c.netmaps.clear();
                c.nat_pools = vec![dataplane::config::NatPool::defaults(
                    "bench".into(),
                    1,
                    0,
                    vec!["198.18.30.0/30".parse().expect("a prefix")],
                )];
                c.policies = vec![rule(
                    "out".into(),
                    "10.20.0.0/24",
                    dataplane::Action::Napt { pool: "bench".into() },
                )];
            }
        }
        c.validate().expect("the bench config is valid");
        c
    }

    /// The nftables rules that do the same on Linux.
    pub fn nft(self) -> String {
        let netmap =
            "    ip saddr 10.20.0.0/24 snat ip prefix to ip saddr map { 10.20.0.0/24 : 198.18.20.0/24 }\n";
        let post = |rule: &str| {
            format!(
                "  chain post {{\n    type nat hook postrouting priority srcnat; policy accept;\n{rule}  }}\n"
            )
        };
        match self {
            Scenario::Netmap => format!("table ip hutong_bench {{\n{}}}\n", post(netmap)),
            Scenario::DenyHeavy => {
                let denies: String =
                    (0..DENY_RULES).map(|i| format!("    ip saddr 172.16.{i}.0/24 drop\n")).collect();
                format!(
                    "table ip hutong_bench {{\n  chain filter_forward {{\n    type filter hook forward priority filter; policy accept;\n{denies}  }}\n{}}}\n",
                    post(netmap)
                )
            }
            Scenario::Napt | Scenario::NaptNew => format!(
                "table ip hutong_bench {{\n{}}}\n",
                post("    ip saddr 10.20.0.0/24 snat to 198.18.30.0-198.18.30.3\n")
            ),
        }
    }
}

/// The bench's gateway: legacy in0 (VRF 1), extranet out0 (VRF 0), the server through the sink,
/// and the netmap the scenarios start from.
const GATEWAY_BASE: &str = r#"{
  "gateway": "gw-bench",
  "vrfs": [{"id": 0, "name": "extranet"}, {"id": 1, "name": "legacy"}],
  "ports": [
    {"name": "in0", "role": "legacy", "vrf": 1, "addresses": ["10.20.0.1/24"]},
    {"name": "out0", "role": "extranet", "vrf": 0, "addresses": ["198.19.0.1/24"]}
  ],
  "netmaps": [{"inside_vrf": 1, "inside": "10.20.0.0/24", "outside_vrf": 0, "outside": "198.18.20.0/24"}],
  "routes": [{"vrf": 0, "prefix": "0.0.0.0/0", "port": "out0", "via": "198.19.0.2"}],
  "policies": [{"name": "out", "vrf": 1, "src": "10.20.0.0/24", "action": "netmap"}]
}"#;

/// The netmap scenario's gateway config (the bench's tests use it).
pub fn gateway_config() -> dataplane::Config {
    Scenario::Netmap.gateway_config()
}

/// Frame lengths of the full series: 64, 512 and 1518 bytes on the wire.
pub const SIZES: [usize; 3] = [60, 508, 1514];

/// Runs the devices on each scenario; `hutong` is the binary the gateway runs from. Scenarios
/// with different rules run on fresh labs (no connection-tracking or session state carried
/// over); the two NAPT ones share a lab and each device's setup, the new sessions from source
/// ports the established flows do not use. The raw XDP ceiling, which translates nothing, runs
/// once, in the first lab.
pub async fn series(
    hutong: &Path,
    frames: u32,
    sizes: &[usize],
    scenarios: &[Scenario],
    progress: &dyn Fn(&str),
) -> Result<Vec<Outcome>> {
    let mut out = Vec::new();
    // Scenarios with the same rules share a lab and each device's setup (NAPT's two).
    let mut groups: Vec<Vec<Scenario>> = Vec::new();
    for &s in scenarios {
        match groups.iter_mut().find(|g| g[0].gateway_config() == s.gateway_config()) {
            Some(g) => g.push(s),
            None => groups.push(vec![s]),
        }
    }
    // New sessions are new once: that scenario runs at the smallest frame size only.
    let smallest = [sizes.iter().copied().min().unwrap_or(60)];
    let sizes_of = |s: Scenario| if s == Scenario::NaptNew { &smallest[..] } else { sizes };
    for (i, group) in groups.iter().enumerate() {
        let name = group.iter().map(|s| s.name()).collect::<Vec<_>>().join(" / ");
        progress(&format!("{name}: building the bench namespaces (generator, device under test, sink)"));
        let lab = BenchLab::build().await?;
        if i == 0 {
            progress("raw XDP ceiling: a redirect from in0 to out0, nothing translated");
            let _ceiling = lab.dut.run(|| Ceiling::attach(lab.in0.ifindex, lab.out0.ifindex))??;
            for &len in sizes {
                let untranslated = ([10, 20, 0, 0], [255, 255, 255, 0]);
                out.push(lab.offer(
                    (group[0], "raw XDP ceiling (redirect only)"),
                    frames,
                    len,
                    untranslated,
                )?);
            }
        }
        let offer_all = |dut: &str, out: &mut Vec<Outcome>| -> Result<()> {
            for &scenario in group {
                for &len in sizes_of(scenario) {
                    out.push(lab.offer((scenario, dut), frames, len, scenario.expect_src())?);
                }
            }
            Ok(())
        };

        progress(&format!("{name}: Linux forwarding with nftables"));
        lab.address_dut().await?;
        lab.dut.run(|| -> std::io::Result<()> {
            std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")?;
            // A veth takes frames transmitted into it by XDP only when it runs NAPI.
            ethtool::set_gro("in0", true)
        })??;
        let mut nft = lab
            .dut
            .command("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .context("running nft (install nftables)")?;
        std::io::Write::write_all(nft.stdin.as_mut().context("nft stdin")?, group[0].nft().as_bytes())?;
        drop(nft.stdin.take());
        if !nft.wait()?.success() {
            bail!("nft refused the {name} rules");
        }
        offer_all("Linux forwarding + nftables", &mut out)?;
        lab.dut.command("nft").args(["delete", "table", "ip", "hutong_bench"]).status()?;
        lab.dut.run(|| std::fs::write("/proc/sys/net/ipv4/ip_forward", "0"))??;

        let work = tempfile::Builder::new().prefix("hutong-bench-").tempdir()?;
        let config_path = work.path().join("gateway.json");
        std::fs::write(&config_path, group[0].gateway_config().to_json())?;
        for (dut, args, what) in [
            ("hutong XDP engine", &[][..], "hutong's XDP engine (`hutong gateway run`)"),
            (
                "hutong userspace engine",
                &["--engine", "userspace"][..],
                "hutong's userspace engine (`--engine userspace`: one worker, AF_XDP in copy mode)",
            ),
        ] {
            progress(&format!("{name}: {what}"));
            let mut gw = GatewayProcess::start(&lab.dut, hutong, &config_path, work.path(), "bench", args)?;
            gw.wait_ready(&|| Ok(()))?;
            std::thread::sleep(Duration::from_millis(300)); // the neighbor table copied into the program
            offer_all(dut, &mut out)?;
            gw.stop();
        }
    }
    // Back in scenario order (the NAPT pair ran device by device).
    out.sort_by_key(|r| scenarios.iter().position(|s| s.name() == r.scenario));
    Ok(out)
}

/// `r`'s rate as a ratio to device `base`'s at the same frame size: Linux's in the same
/// scenario, the raw XDP ceiling's (which translates nothing) in any.
pub fn ratio_to(rows: &[Outcome], r: &Outcome, base: &str) -> Option<f64> {
    let b = rows
        .iter()
        .find(|x| {
            x.dut.starts_with(base) && x.len == r.len && (base == "raw XDP" || x.scenario == r.scenario)
        })?
        .mpps();
    (b > 0.0).then(|| r.mpps() / b)
}

/// The results as a table, with ratios to Linux and to the ceiling.
pub fn table(rows: &[Outcome]) -> String {
    let mut s = format!(
        "{:<28} {:<32} {:>6} {:>9} {:>10} {:>7} {:>8} {:>9}\n",
        "scenario", "device under test", "frame", "Mpps", "delivered", "wrong", "× Linux", "× ceiling"
    );
    for r in rows {
        let [mpps, delivered, wrong, linux, ceiling] = r.figures(rows);
        s.push_str(&format!(
            "{:<28} {:<32} {:>5}B {mpps:>9} {delivered:>10} {wrong:>7} {linux:>8} {ceiling:>9}\n",
            r.scenario,
            r.dut,
            r.len + 4,
        ));
    }
    s
}

/// Each device's rules in each scenario, as the report prints them.
fn rules(scenarios: &[Scenario]) -> Vec<(String, String)> {
    let mut all = vec![(
        "raw XDP ceiling".to_string(),
        "an XDP program on in0: redirect every frame to out0, nothing else".to_string(),
    )];
    for s in scenarios {
        all.push((
            format!("{}: Linux forwarding + nftables", s.name()),
            format!("net.ipv4.ip_forward=1, a static neighbor for 198.19.0.2, and nft -f:\n{}", s.nft()),
        ));
        all.push((
            format!("{}: hutong (both engines)", s.name()),
            format!("`hutong gateway run` with this config:\n{}", s.gateway_config().to_json()),
        ));
    }
    all
}

/// `hutong bench`: the series, the rules each device ran, the table, and the report (Markdown,
/// JSON, chart) in `out`.
pub fn run(frames: u32, sizes: &[usize], out: &Path, command: &str) -> Result<std::process::ExitCode> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the bench creates network namespaces and attaches XDP programs: run it as root");
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let exe = std::env::current_exe()?;
    let date = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    // A line per step where nobody watches (CI, a pipe); a spinner with the step on a terminal.
    let spinner = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let progress = |m: &str| match &spinner {
        Some(bar) => {
            bar.println(format!("[bench] {m}"));
            bar.set_message(m.to_string());
        }
        None => println!("[bench] {m}"),
    };
    let rows = rt.block_on(series(&exe, frames, sizes, &Scenario::ALL, &progress))?;
    if let Some(bar) = &spinner {
        bar.finish_and_clear();
    }
    println!();
    println!("Rules of each device in each scenario:");
    for (dut, rules) in rules(&Scenario::ALL) {
        println!("  {dut}:");
        for l in rules.lines() {
            println!("    {l}");
        }
    }
    println!();
    println!(
        "{frames} frames per device and size, over {FLOWS} flows, offered at the generator's full rate:"
    );
    print!("{}", table(&rows));
    let report = report::Report {
        date,
        machine: report::Machine::here(),
        frames,
        flows: FLOWS,
        rows: rows.clone(),
        rules: rules(&Scenario::ALL),
        command: command.to_string(),
    };
    for path in report.write(out)? {
        println!("wrote {}", path.display());
    }
    let wrong = rows.iter().any(|r| r.good == 0 || r.bad > 0);
    Ok(if wrong { std::process::ExitCode::FAILURE } else { std::process::ExitCode::SUCCESS })
}
