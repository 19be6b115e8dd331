//! `hutong bench`, its first part: the default topology and three devices under test, each
//! offered the generator's full rate on the netmap scenario. In namespaces it builds itself:
//!
//! ```text
//!  [gen] gen0 ── in0 [dut] out0 ── sink0 [sink]
//!  live-frames      the device      XDP sink: counts frames
//!  XDP generator    under test      translated as expected
//! ```
//! Devices: the raw XDP ceiling (a redirect, no translation), Linux forwarding with an
//! nftables netmap, and hutong's XDP and userspace engines (`hutong gateway run`). The report
//! (Markdown, JSON, a PNG chart) is [`report`]'s. Not built yet (issue 7): the NAPT and deny
//! scenarios, the RFC 2544 search for the highest rate under a loss threshold, latency, session
//! capacity, real NIC ports and several cores.

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

    /// Offers `frames` frames to whatever device is set up, and counts what the sink gets.
    fn offer(&self, dut: &str, frames: u32, len: usize, expect_src: [u8; 4]) -> Result<Outcome> {
        let mut header = Vec::new();
        PacketBuilder::ethernet2(self.gen0.mac, self.in0.mac)
            .ipv4([10, 20, 0, 1], SERVER, 64)
            .udp(1024, 9)
            .write(&mut header, &vec![0; len.saturating_sub(GEN_HEADER)])?;
        header[40..42].fill(0); // no UDP checksum: the generator varies the ports
        let config =
            GenConfig { header: header[..GEN_HEADER].try_into()?, sport: 1024, flows: FLOWS, hosts: HOSTS };
        let expect = SinkExpect {
            src: u32::from_ne_bytes(expect_src),
            src_mask: u32::from_ne_bytes([255, 255, 255, 0]),
            dst: u32::from_ne_bytes(SERVER),
            dst_mask: u32::MAX,
        };
        let gen0 = self.gen0.ifindex;
        let sink = self.sink.run(|| Sink::attach(self.sink0.ifindex, expect))??;
        let took = self
            .generator
            .run(|| -> Result<Duration> { Generator::load(config)?.run(gen0, len, frames, 64) })??;
        std::thread::sleep(Duration::from_millis(300)); // what is queued drains
        let c = sink.counters()?;
        Ok(Outcome { dut: dut.into(), len, sent: frames, good: c.good, bad: c.bad, took })
    }
}

/// The gateway config for the device: the bench's netmap, as a plan would compile it.
pub fn gateway_config() -> dataplane::Config {
    let text = r#"{
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
    dataplane::Config::from_json(text).expect("the bench config is valid")
}

/// The nftables rules equivalent to the netmap scenario (printed with the results).
pub const NFT_NETMAP: &str = "table ip hutong_bench {
  chain post {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr 10.20.0.0/24 snat ip prefix to ip saddr map { 10.20.0.0/24 : 198.18.20.0/24 }
  }
}
";

/// Runs the four devices on the netmap scenario; `hutong` is the binary the gateway runs from.
/// Frame lengths of the full series: 64, 512 and 1518 bytes on the wire.
pub const SIZES: [usize; 3] = [60, 508, 1514];

pub async fn netmap_series(
    hutong: &Path,
    frames: u32,
    sizes: &[usize],
    progress: &dyn Fn(&str),
) -> Result<Vec<Outcome>> {
    progress("building the bench namespaces (generator, device under test, sink)");
    let lab = BenchLab::build().await?;
    let mut out = Vec::new();

    progress("raw XDP ceiling: a redirect from in0 to out0, nothing translated");
    {
        let _ceiling = lab.dut.run(|| Ceiling::attach(lab.in0.ifindex, lab.out0.ifindex))??;
        for &len in sizes {
            out.push(lab.offer("raw XDP ceiling (redirect only)", frames, len, [10, 20, 0, 0])?);
        }
    }

    progress("Linux forwarding with an nftables netmap");
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
    std::io::Write::write_all(nft.stdin.as_mut().context("nft stdin")?, NFT_NETMAP.as_bytes())?;
    drop(nft.stdin.take());
    if !nft.wait()?.success() {
        bail!("nft refused the netmap rules");
    }
    for &len in sizes {
        out.push(lab.offer("Linux forwarding + nftables netmap", frames, len, [198, 18, 20, 0])?);
    }
    lab.dut.command("nft").args(["delete", "table", "ip", "hutong_bench"]).status()?;
    lab.dut.run(|| std::fs::write("/proc/sys/net/ipv4/ip_forward", "0"))??;

    progress("hutong's XDP engine (`hutong gateway run`)");
    let work = tempfile::Builder::new().prefix("hutong-bench-").tempdir()?;
    let config_path = work.path().join("gateway.json");
    std::fs::write(&config_path, gateway_config().to_json())?;
    let mut gw = GatewayProcess::start(&lab.dut, hutong, &config_path, work.path(), "bench", &[])?;
    gw.wait_ready(&|| Ok(()))?;
    std::thread::sleep(Duration::from_millis(300)); // the neighbor table copied into the program
    for &len in sizes {
        out.push(lab.offer("hutong XDP engine", frames, len, [198, 18, 20, 0])?);
    }
    gw.stop();

    progress("hutong's userspace engine (`--engine userspace`: one thread, AF_XDP in copy mode)");
    let user = ["--engine", "userspace"];
    let mut gw = GatewayProcess::start(&lab.dut, hutong, &config_path, work.path(), "bench-user", &user)?;
    gw.wait_ready(&|| Ok(()))?;
    std::thread::sleep(Duration::from_millis(300));
    for &len in sizes {
        out.push(lab.offer("hutong userspace engine", frames, len, [198, 18, 20, 0])?);
    }
    gw.stop();
    Ok(out)
}

/// The results as a table, with ratios to Linux and to the ceiling.
pub fn table(rows: &[Outcome]) -> String {
    let by = |name: &str, len: usize| {
        rows.iter().find(|r| r.dut.starts_with(name) && r.len == len).map(|r| r.mpps())
    };
    let mut s = format!(
        "{:<36} {:>6} {:>9} {:>11} {:>7} {:>9} {:>10}\n",
        "device under test (netmap)", "frame", "Mpps", "delivered", "wrong", "× Linux", "× ceiling"
    );
    for r in rows {
        let (ceiling, linux) = (by("raw XDP", r.len), by("Linux", r.len));
        let ratio = |base: Option<f64>| base.map_or("-".into(), |b| format!("{:.2}", r.mpps() / b.max(1e-9)));
        s.push_str(&format!(
            "{:<36} {:>5}B {:>9.3} {:>10.1}% {:>7} {:>9} {:>10}\n",
            r.dut,
            r.len + 4,
            r.mpps(),
            r.good as f64 * 100.0 / r.sent.max(1) as f64,
            r.bad,
            ratio(linux),
            ratio(ceiling)
        ));
    }
    s
}

/// Each device's rules, as the report prints them.
fn rules() -> Vec<(String, String)> {
    vec![
        (
            "raw XDP ceiling".into(),
            "an XDP program on in0: redirect every frame to out0, nothing else".into(),
        ),
        (
            "Linux forwarding + nftables".into(),
            format!("net.ipv4.ip_forward=1, a static neighbor for 198.19.0.2, and nft -f:\n{NFT_NETMAP}"),
        ),
        (
            "hutong (both engines)".into(),
            format!("`hutong gateway run` with this config:\n{}", gateway_config().to_json()),
        ),
    ]
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
    let rows = rt.block_on(netmap_series(&exe, frames, sizes, &progress))?;
    if let Some(bar) = &spinner {
        bar.finish_and_clear();
    }
    println!();
    println!("Rules of each device (the same translation: 10.20.0.0/24 -> 198.18.20.0/24):");
    for (dut, rules) in rules() {
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
        rules: rules(),
        command: command.to_string(),
    };
    for path in report.write(out)? {
        println!("wrote {}", path.display());
    }
    let wrong = rows.iter().any(|r| r.good == 0 || r.bad > 0);
    Ok(if wrong { std::process::ExitCode::FAILURE } else { std::process::ExitCode::SUCCESS })
}
