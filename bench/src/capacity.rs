//! Session capacity (RFC 9693 §7.3, connection tracking table capacity): the most NAPT
//! sessions a device holds at once. A trial sets up `n` sessions on a device emptied first (new
//! flows, one frame each, tagged with their flow's number), while the sink learns where each
//! was translated to; then the server replies to every flow, and a sink on the generator's
//! side counts the flows whose replies reach exactly their host and port. A session the device
//! no longer holds (never set up, dropped when full, evicted) answers nothing: an unsolicited
//! reply is not forwarded. Each way runs in [`rounds`], so that frames lost on a loaded
//! machine are not taken for sessions refused. [`search::Search::capacity`] searches over `n`.

use std::time::{Duration, Instant};

use crate::instruments::{Generator, Pace, Responder, Sink};
use anyhow::Result;
use hutong_common::bench::{GenConfig, SinkCounters, SinkExpect};

use super::{
    BenchLab, HOSTS, SERVER, Scenario,
    lab::{drained, header, to_server},
    search,
};

/// Sessions set up a second, and replies a second: a rate every device here sets sessions up
/// at without loss (RFC 9693 asks for one its connection establishment rate surely allows). At
/// 100,000 a second hutong's XDP engine lost about 1% (its slow path, which sets sessions up
/// and hands a session's flows to the program at its first reply, shares this machine's two
/// cores with the generator).
pub const RATE: f64 = 50_000.0;

/// What a capacity search found for one device.
#[derive(Clone, Debug)]
pub struct Sessions {
    pub dut: String,
    pub found: search::Capacity,
}

impl Sessions {
    /// Its figures as the table and the report print them: sessions held ("≥" where it held
    /// everything offered), the fewest that failed, the first trial (set up and answered of
    /// those offered), trials, wrongly translated frames, × Linux.
    pub fn figures(&self, all: &[Sessions]) -> [String; 6] {
        let f = &self.found;
        let first = f.trials[0];
        let linux = all
            .iter()
            .find(|s| s.dut.starts_with("Linux"))
            .map(|l| l.found.sessions())
            .filter(|&l| l > 0)
            .map_or("–".into(), |l| format!("{:.2}", f.sessions() as f64 / l as f64));
        [
            format!("{}{}", if f.offer_bound() { "≥" } else { "" }, f.sessions()),
            f.failed_at().map_or("–".into(), |n| n.to_string()),
            format!("{} / {} of {}", first.set_up, first.held, first.sessions),
            f.trials.len().to_string(),
            f.bad().to_string(),
            linux,
        ]
    }
}

/// The capacity results as a table.
pub fn table(all: &[Sessions]) -> String {
    let mut s = format!(
        "{:<32} {:>14} {:>10} {:>30} {:>7} {:>6} {:>8}\n",
        "device under test",
        "sessions held",
        "fails at",
        "first trial: set up / answered",
        "trials",
        "wrong",
        "× Linux"
    );
    for r in all {
        let [held, fails, first, trials, wrong, linux] = r.figures(all);
        s.push_str(&format!(
            "{:<32} {held:>14} {fails:>10} {first:>30} {trials:>7} {wrong:>6} {linux:>8}\n",
            r.dut
        ));
    }
    s
}

/// The most rounds over a trial's flows, each way. A frame lost on the way (a device that fell
/// behind on a loaded machine, its queue overflowing) is not a session refused, and one round
/// cannot tell the two apart; a round that every session already known came through again, and
/// that added none, can: the device refuses the rest.
pub const ROUNDS: u32 = 4;

/// Runs `round` (each sends every flow once, as a new run, and returns the far sink's counters
/// once drained) until `want` flows came through, or a round came through whole for every
/// flow known so far and added none, or [`ROUNDS`]; the last counters and the rounds run.
fn rounds(want: u64, mut round: impl FnMut() -> Result<SinkCounters>) -> Result<(SinkCounters, u32)> {
    let mut last = SinkCounters::default();
    let mut n = 0;
    loop {
        let now = round()?;
        n += 1;
        // Good frames are this run's alone (earlier runs' arrive late), one per flow.
        let whole = now.good - last.good >= now.learned;
        let added = now.learned - last.learned;
        if now.learned >= want || n >= ROUNDS || (whole && added == 0) {
            return Ok((now, n));
        }
        last = now;
    }
}

/// The run after `run`: identifications 1 to 65535, round and round (0 is no run).
pub(super) fn next_run(run: u16) -> u16 {
    run % u16::MAX + 1
}

impl BenchLab {
    /// One capacity trial of `sessions` new sessions ([`Scenario::NaptCapacity`]'s flows
    /// `0..sessions`), both ways at [`RATE`]. The device must start empty. `room`: the most
    /// sessions any trial of the search offers.
    pub fn hold(&self, sessions: u64, room: u32) -> Result<search::Held> {
        super::interrupted()?;
        let scenario = Scenario::NaptCapacity;
        let config = GenConfig { tag: 1, flows: room, ..self.template(scenario, 60)? };
        let there = to_server(scenario.expect_src());
        // The server's replies: to each learned flow's translation, from the port it was sent to.
        let reply = header((self.sink0.mac, self.out0.mac), (SERVER, 9), ([0; 4], 0), 60)?;
        let reply = GenConfig::new(reply, 9, room, 1);
        let back = SinkExpect {
            src: u32::from_ne_bytes(SERVER),
            src_mask: u32::MAX,
            dst: u32::from_ne_bytes(config.header[26..30].try_into()?),
            reply_hosts: HOSTS,
            reply_port: config.sport,
            learn: 1, // distinct flows answered, however many rounds
            ..SinkExpect::default()
        };
        let mut responder = self.sink.run(|| Responder::attach(self.sink0.ifindex, there, room, reply))??;
        let mut replies = self.generator.run(|| Sink::learning(self.gen0.ifindex, back, room))??;
        let mut generator = Generator::load(config)?;

        let start = Instant::now();
        let pace = Pace { rate: Some(RATE), ..Pace::full(sessions) };
        let (set_up, set_up_rounds) = rounds(sessions, || {
            let run = self.next_run();
            responder.expect(SinkExpect { by_run: 1, run, ..there })?;
            self.generator.run(|| generator.send(self.gen0.ifindex, 60, Pace { run, ..pace }))??;
            drained(&|| responder.counters())
        })?;
        std::thread::sleep(Duration::from_millis(100)); // the last sessions' flows installed
        let (back, reply_rounds) = rounds(set_up.learned, || {
            let run = self.next_run();
            replies.expect(SinkExpect { by_run: 1, run, ..back })?;
            self.sink.run(|| responder.reply(self.sink0.ifindex, 60, Pace { run, ..pace }))??;
            drained(&|| replies.counters())
        })?;
        Ok(search::Held {
            sessions,
            set_up: set_up.learned,
            held: back.learned,
            bad: set_up.bad + back.bad,
            misdelivered: back.bad,
            rounds: [set_up_rounds, reply_rounds],
            took: start.elapsed(),
        })
    }

    /// The capacity search on whatever device is set up; `empty` restarts it with no sessions.
    pub fn capacity(
        &self,
        dut: &str,
        most: u64,
        search: &search::Search,
        empty: &mut dyn FnMut() -> Result<()>,
    ) -> Result<Sessions> {
        let room = u32::try_from(most)?;
        // The device starts empty; every later trial empties it first.
        let mut first = true;
        let found = search.capacity(most, |n| {
            if !std::mem::take(&mut first) {
                empty()?;
            }
            self.hold(n, room)
        })?;
        Ok(Sessions { dut: dut.into(), found })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device holding at most `bound` sessions, first come first served, in front of a path
    /// that loses the frames `lost(round, flow)` says (before the device sees them); the far
    /// sink's counters after each round of `offered` flows.
    fn device(
        offered: u64,
        bound: u64,
        lost: impl Fn(u32, u64) -> bool,
    ) -> impl FnMut() -> Result<SinkCounters> {
        let mut held = std::collections::BTreeSet::new();
        let mut sink = SinkCounters::default();
        let mut round = 0;
        move || {
            round += 1;
            for f in (0..offered).filter(|&f| !lost(round, f)) {
                if held.contains(&f) || (held.len() as u64) < bound {
                    sink.learned += u64::from(held.insert(f));
                    sink.good += 1;
                }
            }
            Ok(sink)
        }
    }

    #[test]
    fn frames_lost_on_the_way_are_sent_again() {
        // A tenth lost in the first round, a few in the second: all set up by the third.
        let lossy = |round, f: u64| (round == 1 && f % 10 == 3) || (round == 2 && f % 1000 == 3);
        let (c, n) = rounds(5000, device(5000, u64::MAX, lossy)).unwrap();
        assert_eq!((c.learned, n), (5000, 3));
        // Nothing lost: one round.
        let (c, n) = rounds(5000, device(5000, u64::MAX, |_, _| false)).unwrap();
        assert_eq!((c.learned, n), (5000, 1));
    }

    #[test]
    fn a_device_refusing_sessions_is_told_from_loss() {
        // Full at 3,000: the second round comes through whole for those and adds none.
        let (c, n) = rounds(5000, device(5000, 3000, |_, _| false)).unwrap();
        assert_eq!((c.learned, n), (3000, 2));
        // Frames of known sessions lost in the second round: it proves nothing, a third does.
        let lossy = |round, f: u64| round == 2 && f < 10;
        let (c, n) = rounds(5000, device(5000, 3000, lossy)).unwrap();
        assert_eq!((c.learned, n), (3000, 3));
        // Loss in the first round lets later flows in instead: still 3,000 held.
        let lossy = |round, f: u64| round == 1 && f < 100;
        let (c, n) = rounds(5000, device(5000, 3000, lossy)).unwrap();
        assert_eq!((c.learned, n), (3000, 2));
    }

    #[test]
    fn a_path_that_never_comes_through_whole_stops_after_the_last_round() {
        // Flow 0, set up in the first round, lost in every later one.
        let (c, n) = rounds(5000, device(5000, 3000, |round, f| round > 1 && f == 0)).unwrap();
        assert_eq!((c.learned, n), (3000, ROUNDS));
    }

    #[test]
    fn runs_go_round_without_zero() {
        assert_eq!(next_run(0), 1);
        assert_eq!(next_run(1), 2);
        assert_eq!(next_run(u16::MAX), 1);
    }
}
