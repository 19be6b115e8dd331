//! The bench's lab: three namespaces (generator, device under test, sink) joined by veths (or
//! real ports borrowed), and the trials run in it: offered frames, what came through
//! translated as expected, and the latency of stamped frames.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result};
use dataplane::{netlink, xdp::tables::PortHandle};
use etherparse::PacketBuilder;
use hutong_common::bench::{GEN_HEADER, GenConfig, SinkExpect};
use ipnet::IpNet;
use netlink_packet_route::neighbour::NeighbourState;

use super::{
    FLOWS, FLOWS_100K, HOSTS, LATENCY_BATCH, NEW_SPACE, NEW_SPORT, Options, Outcome, SERVER, Scenario,
    WARM_UP_RATE, capacity, interrupted, ports, search,
};
use hutong_lab::{Netns, netns};

use crate::instruments::{Generator, Offered, Pace, Sink};

/// The namespaces and the four ports that matter (veth ends, or real ports borrowed);
/// dropping it gives borrowed ports back, then removes everything.
pub struct BenchLab {
    /// First, so that it drops first: the ports go home before their namespaces go.
    _borrowed: Option<ports::Borrowed>,
    pub generator: Arc<Netns>,
    pub dut: Arc<Netns>,
    pub sink: Arc<Netns>,
    pub gen0: PortHandle,
    pub in0: PortHandle,
    pub out0: PortHandle,
    pub sink0: PortHandle,
    /// Queues per veth, and cores the generator sends from.
    pub cores: u32,
    /// The last run's identification (see [`BenchLab::next_run`]).
    runs: std::sync::atomic::AtomicU16,
}

/// The port `name` in `ns`, up.
pub(super) async fn port(ns: &Netns, name: &str) -> Result<PortHandle> {
    let h = ns.netlink()?;
    let p = netlink::link(&h, name).await?;
    netlink::set_up(&h, p.ifindex).await?;
    Ok(p)
}

impl BenchLab {
    /// A new run's identification, never the last one's, over the whole lab: every trial and
    /// every round is its own run, so frames a device releases late from any earlier one are
    /// counted late (1 to 65535, round and round; 0 is no run).
    pub fn next_run(&self) -> u16 {
        use std::sync::atomic::Ordering::Relaxed;
        let mut next = 0;
        let _ = self.runs.fetch_update(Relaxed, Relaxed, |r| {
            next = capacity::next_run(r);
            Some(next)
        });
        next
    }

    /// The namespaces and veths, with `cores` queues on every veth (the generator sends from
    /// that many cores, a queue each).
    pub async fn build(cores: u32) -> Result<BenchLab> {
        Self::build_on(cores, None).await
    }

    /// The same on real ports, borrowed ([`ports`]), or veths if `ports` is `None`.
    pub async fn build_on(cores: u32, ports: Option<&ports::Ports>) -> Result<BenchLab> {
        netns::sweep_stale();
        let tag = netns::lab_tag();
        let (generator, dut, sink) = (
            Arc::new(Netns::create(&format!("{tag}-bgen"))?),
            Arc::new(Netns::create(&format!("{tag}-bdut"))?),
            Arc::new(Netns::create(&format!("{tag}-bsink"))?),
        );
        for ns in [&generator, &dut, &sink] {
            // Loopback up: the gateway's agent API listens there.
            let h = ns.netlink()?;
            let lo = netlink::link(&h, "lo").await?;
            netlink::set_up(&h, lo.ifindex).await?;
        }
        let borrowed = match ports {
            Some(p) => Some(ports::Borrowed::take(p, [&generator, &dut, &dut, &sink]).await?),
            None => {
                for (a_ns, a, b_ns, b) in [(&generator, "gen0", &dut, "in0"), (&dut, "out0", &sink, "sink0")]
                {
                    hutong_lab::topology::veth(&a_ns.netlink()?, a, b_ns, &b_ns.netlink()?, b, cores).await?;
                }
                None
            }
        };
        let (gen0, in0) = (port(&generator, "gen0").await?, port(&dut, "in0").await?);
        let (out0, sink0) = (port(&dut, "out0").await?, port(&sink, "sink0").await?);
        // The device reaches the server through the sink, and the hosts (replies, in session
        // capacity) through the generator, whose XDP programs drop ARP: static entries.
        let h = dut.netlink()?;
        let hosts = (2..2 + HOSTS).map(|i| (in0.ifindex, [10, 20, 0, i as u8], gen0.mac));
        for (port, addr, mac) in std::iter::once((out0.ifindex, SERVER, sink0.mac)).chain(hosts) {
            h.neighbours()
                .add(port, std::net::IpAddr::from(addr))
                .link_layer_address(&mac)
                .state(NeighbourState::Permanent)
                .execute()
                .await
                .with_context(|| format!("a neighbor entry for {}", std::net::Ipv4Addr::from(addr)))?;
        }
        let lab = BenchLab {
            _borrowed: borrowed,
            generator,
            dut,
            sink,
            gen0,
            in0,
            out0,
            sink0,
            cores: cores.max(1),
            runs: std::sync::atomic::AtomicU16::new(0),
        };
        // The lab's, not the gateway's: a gateway's full stop takes off the addresses it added,
        // and the kernel then flushes the interface's neighbors, the static ones above too.
        lab.address_dut().await?;
        Ok(lab)
    }

    /// The device's addresses, as the gateway config has them (Linux forwarding needs them too).
    pub(super) async fn address_dut(&self) -> Result<()> {
        let h = self.dut.netlink()?;
        netlink::add_address(&h, self.in0.ifindex, "10.20.0.1/24".parse::<IpNet>()?).await?;
        netlink::add_address(&h, self.out0.ifindex, "198.19.0.1/24".parse::<IpNet>()?).await?;
        Ok(())
    }

    /// The generator's template for `len`-byte frames of `scenario`, from 10.20.0.2 (hosts .2
    /// to .251: never the device's own 10.20.0.1, which Linux drops as a martian source) to the
    /// server.
    pub(super) fn template(&self, scenario: Scenario, len: usize) -> Result<GenConfig> {
        let header = header((self.gen0.mac, self.in0.mac), ([10, 20, 0, 2], 1024), (SERVER, 9), len)?;
        let (flows, sport) = match scenario {
            Scenario::NaptNew => (NEW_SPACE, NEW_SPORT),
            // The search sizes it (see `capacity`).
            Scenario::NaptCapacity => (1, 1024),
            Scenario::Napt100k => (FLOWS_100K, 1024),
            _ => (FLOWS, 1024),
        };
        Ok(GenConfig::new(header, sport, flows, HOSTS))
    }

    /// Offers an established scenario's flows at [`WARM_UP_RATE`], `passes` times (what the
    /// first pass lost, the second sets up), so that what is measured next is established
    /// sessions.
    pub(super) fn warm_up(&self, scenario: Scenario, passes: u32) -> Result<()> {
        let pace = Pace { rate: Some(WARM_UP_RATE), ..Pace::full(self.template(scenario, 60)?.flows.into()) };
        self.offer(scenario, 60, &vec![pace; passes as usize])?;
        std::thread::sleep(Duration::from_millis(100)); // the last sessions' flows installed
        Ok(())
    }

    /// Runs `f` in the generator's namespace with a trial function for whatever device is set
    /// up: offer a [`Pace`] of `scenario`'s `len`-byte frames, get the [`search::Trial`] and
    /// the latency histogram of its stamped frames. Correct frames have their source in
    /// `expect_src` (address, mask). New sessions: each trial from flows no earlier one used.
    fn trials<R: Send>(
        &self,
        scenario: Scenario,
        len: usize,
        expect_src: ([u8; 4], [u8; 4]),
        f: impl FnOnce(GenConfig, &mut dyn FnMut(Pace) -> Result<(search::Trial, Vec<u64>)>) -> Result<R> + Send,
    ) -> Result<R> {
        let config = self.template(scenario, len)?;
        let expect = SinkExpect { stamped: 1, ..to_server(expect_src) };
        let gen0 = self.gen0.ifindex;
        let mut sink = self.sink.run(|| Sink::attach(self.sink0.ifindex, expect))??;
        let new = scenario == Scenario::NaptNew;
        let cores = self.cores;
        self.generator.run(|| -> Result<R> {
            let mut gens = (0..cores).map(|_| Generator::load(config)).collect::<Result<Vec<_>>>()?;
            let mut next_flow = 0u64;
            let mut trial = |pace: Pace| -> Result<(search::Trial, Vec<u64>)> {
                interrupted()?;
                // Each trial its own run: what a device releases late from an earlier trial's
                // backlog is counted late, not as this trial's.
                let run = self.next_run();
                sink.expect(SinkExpect { by_run: 1, run, ..expect })?;
                let (before, hist_before) = (sink.counters()?, sink.latency()?);
                let pace = Pace { first_flow: next_flow, run, ..pace };
                let offered = send_from_cores(&mut gens, gen0, len, pace)?;
                if new {
                    next_flow += offered.sent;
                }
                let after = drained(&|| sink.counters())?;
                let hist: Vec<u64> = sink.latency()?.iter().zip(hist_before).map(|(a, b)| a - b).collect();
                let t = search::Trial {
                    asked: pace.rate,
                    sent: offered.sent,
                    good: after.good - before.good,
                    bad: after.bad - before.bad,
                    took: offered.took,
                };
                Ok((t, hist))
            };
            f(config, &mut trial)
        })?
    }

    /// Offers `paces` one after the other to whatever device is set up, as `scenario`'s
    /// `len`-byte frames; what each delivered, translated as that scenario expects.
    pub fn offer(&self, scenario: Scenario, len: usize, paces: &[Pace]) -> Result<Vec<search::Trial>> {
        self.trials(scenario, len, scenario.expect_src(), |_, trial| {
            paces.iter().map(|&p| Ok(trial(p)?.0)).collect()
        })
    }

    /// Measures whatever device is set up: the throughput search, then latency at half the
    /// rate found. Correct frames have their source in `expect_src` (address, mask).
    pub(super) fn measure(
        &self,
        (scenario, dut): (Scenario, &str),
        len: usize,
        expect_src: ([u8; 4], [u8; 4]),
        opts: &Options,
    ) -> Result<Outcome> {
        let new = scenario == Scenario::NaptNew;
        self.trials(scenario, len, expect_src, |config, trial| {
            // Every flow at least once in a trial (established sessions all touched), unless
            // that takes more than a second at this rate.
            let least = if new { 0 } else { u64::from(config.flows) };
            let paced = |rate: f64, new_sessions: u64| {
                let frames = if new {
                    new_sessions.min(rate as u64)
                } else {
                    ((rate * opts.trial.as_secs_f64()) as u64).max(least.min(rate as u64))
                };
                Pace { rate: Some(rate), ..Pace::full(frames.max(1)) }
            };
            let found = opts.search.run(|rate| {
                Ok(match rate {
                    None => {
                        let frames = if new { opts.new_sessions.0 } else { opts.frames.max(least) };
                        trial(Pace::full(frames))?.0
                    }
                    Some(r) => trial(paced(r, opts.new_sessions.1))?.0,
                })
            })?;
            let latency = if new || found.rate() <= 0.0 {
                None
            } else {
                let rate = found.rate() / 2.0;
                let (t, hist) = trial(Pace { batch: LATENCY_BATCH, stamp: true, ..paced(rate, 0) })?;
                search::Latency::from_histogram(t.offered(), &hist)
            };
            Ok(Outcome { scenario: scenario.name(), dut: dut.into(), len, found, latency })
        })
    }
}

/// The Ethernet, IPv4 and UDP headers of a `len`-byte UDP frame, as the generator's template:
/// `macs` (source, destination), from `src` to `dst` (address, port), no UDP checksum (the
/// generator varies addresses and ports without fixing it).
pub(super) fn header(
    macs: ([u8; 6], [u8; 6]),
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    len: usize,
) -> Result<[u8; GEN_HEADER]> {
    let mut h = Vec::new();
    PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv4(src.0, dst.0, 64)
        .udp(src.1, dst.1)
        .write(&mut h, &vec![0; len.saturating_sub(GEN_HEADER)])?;
    h[40..42].fill(0);
    Ok(h[..GEN_HEADER].try_into()?)
}

/// What a sink expects of frames to the server: a source within `src` (address, mask).
pub(super) fn to_server(src: ([u8; 4], [u8; 4])) -> SinkExpect {
    SinkExpect {
        src: u32::from_ne_bytes(src.0),
        src_mask: u32::from_ne_bytes(src.1),
        dst: u32::from_ne_bytes(SERVER),
        dst_mask: u32::MAX,
        ..SinkExpect::default()
    }
}

/// What the output and the report say where Linux's device could not run.
/// Sends `pace` from as many cores as there are generators, generator `k` pinned to CPU `k`
/// with its share of the frames and of the rate, from its own first flow; what they offered
/// together (frames summed, over the longest run's time). Threads started here inherit the
/// caller's namespace.
pub(super) fn send_from_cores(
    gens: &mut [Generator],
    ifindex: u32,
    len: usize,
    pace: Pace,
) -> Result<Offered> {
    if let [g] = gens {
        return g.send(ifindex, len, pace);
    }
    let n = gens.len() as u64;
    let each = Pace { frames: pace.frames.div_ceil(n), rate: pace.rate.map(|r| r / n as f64), ..pace };
    let runs: Vec<Result<Offered>> = std::thread::scope(|s| {
        let handles: Vec<_> = gens
            .iter_mut()
            .enumerate()
            .map(|(k, g)| {
                s.spawn(move || {
                    let mut cpu = nix::sched::CpuSet::new();
                    cpu.set(k)?;
                    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpu)?;
                    g.send(
                        ifindex,
                        len,
                        Pace { first_flow: pace.first_flow + k as u64 * each.frames, ..each },
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a generator thread panicked"))))
            .collect()
    });
    let mut total = Offered { sent: 0, took: Duration::ZERO };
    for r in runs {
        let o = r?;
        total.sent += o.sent;
        total.took = total.took.max(o.took);
    }
    Ok(total)
}

/// A sink's counters once what is still queued in the device has arrived: read until they
/// stop changing (a second at most).
pub(super) fn drained(
    counters: &dyn Fn() -> Result<hutong_common::bench::SinkCounters>,
) -> Result<hutong_common::bench::SinkCounters> {
    let mut last = counters()?;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(20));
        let now = counters()?;
        if now == last {
            break;
        }
        last = now;
    }
    Ok(last)
}
