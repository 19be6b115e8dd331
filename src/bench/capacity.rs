//! Session capacity (RFC 9693 §7.3, connection tracking table capacity): the most NAPT
//! sessions a device holds at once. A trial sets up `n` sessions on a device emptied first (new
//! flows, one frame each, tagged with their flow's number), while the sink learns where each
//! was translated to; then the server replies once to every flow, and a sink on the
//! generator's side counts the replies that reach exactly their flow's host and port. A
//! session the device no longer holds (never set up, dropped when full, evicted) answers
//! nothing: an unsolicited reply is not forwarded. [`search::Search::capacity`] searches over
//! `n`.

use std::time::{Duration, Instant};

use anyhow::Result;
use dataplane::bench::{Generator, Pace, Responder, Sink};
use hutong_common::bench::{GenConfig, SinkExpect};

use super::{BenchLab, HOSTS, SERVER, Scenario, drained, header, search, to_server};

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
            ..SinkExpect::default()
        };
        let mut responder = self.sink.run(|| Responder::attach(self.sink0.ifindex, there, room, reply))??;
        let replies = self.generator.run(|| Sink::attach(self.gen0.ifindex, back))??;

        let start = Instant::now();
        let pace = Pace { rate: Some(RATE), ..Pace::full(sessions) };
        self.generator.run(|| Generator::load(config)?.send(self.gen0.ifindex, 60, pace))??;
        let set_up = drained(&|| responder.counters())?;
        std::thread::sleep(Duration::from_millis(100)); // the last sessions' flows installed
        self.sink.run(|| responder.reply(self.sink0.ifindex, 60, pace))??;
        let back = drained(&|| replies.counters())?;
        Ok(search::Held {
            sessions,
            set_up: set_up.learned,
            held: back.good,
            bad: set_up.bad + back.bad,
            misdelivered: back.bad,
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
