//! RFC 2544 (§26.1) throughput: the highest offered rate at which a device loses no more than
//! a set share of the frames, found by binary search; and latency percentiles from the sink's
//! histogram (§26.2 asks for them at the throughput rate; the issue at half of it, where queues
//! are not yet full).
//!
//! The search starts from a full-rate trial. If that one passes, the device kept up with
//! everything the generator could offer, and the rate is the generator's (marked so). Otherwise
//! it first tries the rate the device delivered under full load, which is usually close, then
//! halves the interval between the highest passing and the lowest failing rate until they are
//! within the resolution.
//!
//! Session capacity (RFC 9693 §7.3, connection tracking table capacity) is the same kind of
//! search over a count: the most sessions a device holds at once, every one of them answered
//! ([`Search::capacity`]).

use std::time::Duration;

use anyhow::Result;
use hutong_common::bench::latency_floor;

/// One trial: what the generator offered and what arrived.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Trial {
    /// The rate asked for (`None`: the generator's full rate).
    pub asked: Option<f64>,
    pub sent: u64,
    /// Frames that arrived translated as expected, and the rest that arrived.
    pub good: u64,
    pub bad: u64,
    /// From the first frame sent to the last.
    pub took: Duration,
}

impl Trial {
    /// Frames a second the generator actually offered.
    pub fn offered(&self) -> f64 {
        self.sent as f64 / self.took.as_secs_f64().max(1e-9)
    }

    /// Frames a second that arrived translated as expected.
    pub fn delivered(&self) -> f64 {
        self.good as f64 / self.took.as_secs_f64().max(1e-9)
    }

    /// The share of the frames sent that did not arrive translated as expected.
    pub fn loss(&self) -> f64 {
        1.0 - self.good.min(self.sent) as f64 / self.sent.max(1) as f64
    }

    /// Within the loss threshold, and nothing wrongly translated (a wrong frame is never
    /// throughput, however few).
    pub fn passes(&self, threshold: f64) -> bool {
        self.sent > 0 && self.bad == 0 && self.loss() <= threshold
    }
}

/// How the search runs.
#[derive(Clone, Copy, Debug)]
pub struct Search {
    /// The loss allowed, as a share (0.001 is 0.1%).
    pub threshold: f64,
    /// Stop when the failing rate is within this share of the passing one.
    pub resolution: f64,
    /// Paced trials at most, after the full-rate one.
    pub max_trials: u32,
}

/// What the search found.
#[derive(Clone, Debug)]
pub struct Found {
    /// The full-rate trial the search started from.
    pub full: Trial,
    /// The passing trial with the highest offered rate; `None` if none passed.
    pub best: Option<Trial>,
    /// Every trial, in order (the full-rate one first).
    pub trials: Vec<Trial>,
}

impl Found {
    /// True when the device kept up with the generator's full rate: the throughput is the
    /// generator's, and the device's own is higher.
    pub fn generator_bound(&self) -> bool {
        self.best.is_some_and(|b| b.asked.is_none())
    }

    /// The throughput in frames a second: the best passing trial's offered rate (0 if none).
    pub fn rate(&self) -> f64 {
        self.best.map_or(0.0, |b| b.offered())
    }

    /// Wrongly translated frames over all trials.
    pub fn bad(&self) -> u64 {
        self.trials.iter().map(|t| t.bad).sum()
    }
}

impl Search {
    /// Runs `trial` (given the rate to offer, `None` for full rate) until the throughput is
    /// found.
    pub fn run(&self, mut trial: impl FnMut(Option<f64>) -> Result<Trial>) -> Result<Found> {
        let full = trial(None)?;
        let mut found = Found { full, best: None, trials: vec![full] };
        if full.passes(self.threshold) {
            found.best = Some(full);
            return Ok(found);
        }
        // The highest rate known to pass and the lowest known to fail.
        let (mut lo, mut hi) = (0.0, full.offered());
        let mut rate = full.delivered().min(hi * 0.99);
        for _ in 0..self.max_trials {
            if rate <= 0.0 {
                break;
            }
            let t = trial(Some(rate))?;
            found.trials.push(t);
            if t.passes(self.threshold) {
                lo = rate;
                // The generator may fall short of a rate asked; what it offered is what counts.
                if found.best.is_none_or(|b| t.offered() > b.offered()) {
                    found.best = Some(t);
                }
            } else {
                hi = rate;
            }
            if hi - lo <= self.resolution * hi {
                break;
            }
            // Nothing passed yet: go down fast (a device failing at its own delivered rate is
            // losing frames at any rate near it).
            rate = if lo == 0.0 { rate / 2.0 } else { (lo + hi) / 2.0 };
        }
        Ok(found)
    }
}

/// One session-capacity trial: sessions set up (new flows, one frame each), then one reply
/// from the server to each.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Held {
    /// Sessions offered.
    pub sessions: u64,
    /// Those whose first frame arrived translated (the sink learned where to).
    pub set_up: u64,
    /// Replies that came back through the device to exactly their flow's host and port.
    pub held: u64,
    /// Frames wrongly translated, either way, over all the trial's rounds (a flow sent in
    /// three rounds counts up to three); of them, replies that reached another flow's host
    /// (the device gave an evicted session's address and port to a new one).
    pub bad: u64,
    pub misdelivered: u64,
    /// Rounds over the flows that setting up and replying took (see `capacity::ROUNDS`): more
    /// than one where frames were lost on the way, or where the device refused sessions.
    pub rounds: [u32; 2],
    /// Setting up and replying together.
    pub took: Duration,
}

impl Held {
    /// Every session answered, nothing wrongly translated (RFC 9693 allows no loss here).
    pub fn passes(&self) -> bool {
        self.sessions > 0 && self.bad == 0 && self.held >= self.sessions
    }
}

/// What the capacity search found.
#[derive(Clone, Debug)]
pub struct Capacity {
    /// The most sessions offered (the first trial's).
    pub most: u64,
    /// Every trial, in order.
    pub trials: Vec<Held>,
    /// The passing trial with the most sessions; `None` if none passed.
    pub best: Option<Held>,
}

impl Capacity {
    /// Sessions held at once (0 if no trial passed).
    pub fn sessions(&self) -> u64 {
        self.best.map_or(0, |b| b.sessions)
    }

    /// True when the device held all `most`: its capacity is at least that, maybe more.
    pub fn offer_bound(&self) -> bool {
        self.best.is_some_and(|b| b.sessions >= self.most)
    }

    /// The fewest sessions of a failing trial (`None` if none failed).
    pub fn failed_at(&self) -> Option<u64> {
        self.trials.iter().filter(|t| !t.passes()).map(|t| t.sessions).min()
    }

    /// Wrongly translated frames over all trials.
    pub fn bad(&self) -> u64 {
        self.trials.iter().map(|t| t.bad).sum()
    }
}

impl Search {
    /// RFC 9693 session capacity: `trial(n)` sets up `n` sessions on a device emptied first,
    /// then replies to each. From a trial of `most`: if it held them all, that is the answer
    /// (marked so); otherwise what it did hold is the first guess, then a guess just above the
    /// first that passes (a device that drops new sessions when full, or evicts old ones,
    /// holds its capacity exactly), then halving between the most that passed and the fewest
    /// that failed, until those are within the resolution.
    pub fn capacity(&self, most: u64, mut trial: impl FnMut(u64) -> Result<Held>) -> Result<Capacity> {
        let first = trial(most)?;
        let mut found = Capacity { most, trials: vec![first], best: None };
        if first.passes() {
            found.best = Some(first);
            return Ok(found);
        }
        let step = |n: u64| ((n as f64 * self.resolution) as u64).max(1);
        let (mut lo, mut hi) = (0, most);
        let mut n = first.held.min(most.saturating_sub(1));
        let mut probed_above = false;
        for _ in 0..self.max_trials {
            if n == 0 || n <= lo || n >= hi {
                break;
            }
            let t = trial(n)?;
            found.trials.push(t);
            if t.passes() {
                lo = n;
                found.best = Some(t);
            } else {
                hi = n;
            }
            if hi - lo <= step(hi) {
                break;
            }
            n = if lo == 0 {
                // Nothing passed yet: what this one held, and at least a step down.
                t.held.min(n - step(n))
            } else if !probed_above {
                probed_above = true;
                (lo + step(lo)).min(lo + (hi - lo) / 2)
            } else {
                lo + (hi - lo) / 2
            };
        }
        Ok(found)
    }
}

/// Latency percentiles, from the sink's histogram of a trial's stamped frames.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Latency {
    /// The rate offered (frames a second), and the frames measured.
    pub offered: f64,
    pub samples: u64,
    /// Nanoseconds: the floor of the bucket each percentile falls in (within 12.5% below).
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Latency {
    /// From histogram buckets (see `hutong_common::bench::latency_bucket`); `None` if empty.
    pub fn from_histogram(offered: f64, buckets: &[u64]) -> Option<Latency> {
        let samples: u64 = buckets.iter().sum();
        if samples == 0 {
            return None;
        }
        let at = |q: f64| {
            // The smallest bucket by which at least q of the samples have arrived.
            let need = ((samples as f64 * q).ceil() as u64).max(1);
            let mut seen = 0;
            for (b, n) in buckets.iter().enumerate() {
                seen += n;
                if seen >= need {
                    return latency_floor(b as u32);
                }
            }
            latency_floor(buckets.len() as u32 - 1)
        };
        let max = buckets.iter().rposition(|&n| n > 0).map_or(0, |b| latency_floor(b as u32));
        Some(Latency { offered, samples, p50: at(0.5), p99: at(0.99), p999: at(0.999), max })
    }
}

#[cfg(test)]
mod tests {
    use hutong_common::bench::{LATENCY_BUCKETS, latency_bucket};

    use super::*;

    /// A device that forwards everything up to `capacity` frames a second and drops the
    /// excess, offered by a generator that reaches `ceiling` at most.
    fn device(capacity: f64, ceiling: f64) -> impl FnMut(Option<f64>) -> Result<Trial> {
        move |asked| {
            let rate = asked.unwrap_or(ceiling).min(ceiling);
            let sent = 100_000u64;
            let good = if rate <= capacity { sent } else { (sent as f64 * capacity / rate) as u64 };
            Ok(Trial { asked, sent, good, bad: 0, took: Duration::from_secs_f64(sent as f64 / rate) })
        }
    }

    const SEARCH: Search = Search { threshold: 0.001, resolution: 0.02, max_trials: 12 };

    #[test]
    fn finds_the_rate_a_device_keeps_up_with_within_the_resolution() {
        let found = SEARCH.run(device(1.2e6, 4e6)).unwrap();
        assert!(!found.generator_bound());
        let r = found.rate();
        // Never above what it keeps up with (but for the float rounding of a trial's time).
        assert!((1.2e6 * 0.97..=1.2e6 * 1.000_001).contains(&r), "found {r}");
        assert!(found.trials.len() <= 1 + 12, "{}", found.trials.len());
        assert!(found.best.unwrap().passes(SEARCH.threshold));
    }

    #[test]
    fn a_device_that_keeps_up_with_the_generator_is_marked_generator_bound() {
        let found = SEARCH.run(device(9e6, 4e6)).unwrap();
        assert!(found.generator_bound());
        assert_eq!(found.trials.len(), 1);
        assert!((found.rate() - 4e6).abs() < 1.0);
    }

    #[test]
    fn wrongly_translated_frames_never_pass_and_are_counted() {
        let mut good = device(1e6, 4e6);
        let found = SEARCH
            .run(|asked| {
                let t = good(asked)?;
                Ok(Trial { bad: 1, ..t })
            })
            .unwrap();
        assert!(found.best.is_none(), "{found:?}");
        assert_eq!(found.rate(), 0.0);
        assert_eq!(found.bad(), found.trials.len() as u64);
        assert_eq!(found.trials.len(), 13, "every trial tried: {found:?}");
    }

    #[test]
    fn a_device_that_loses_frames_at_any_rate_has_no_throughput() {
        let found = SEARCH
            .run(|asked| {
                let rate = asked.unwrap_or(4e6);
                Ok(Trial {
                    asked,
                    sent: 1000,
                    good: 900,
                    bad: 0,
                    took: Duration::from_secs_f64(1000.0 / rate),
                })
            })
            .unwrap();
        assert!(found.best.is_none());
    }

    /// A session table of `capacity` that drops new sessions when full or evicts old ones (as
    /// Linux's conntrack does): either way it ends up holding `capacity` of them. It loses
    /// `lost` replies in every trial.
    fn table(capacity: u64, lost: u64) -> impl FnMut(u64) -> Result<Held> {
        move |n| {
            let held = n.min(capacity).saturating_sub(lost);
            Ok(Held {
                sessions: n,
                set_up: n,
                held,
                bad: 0,
                misdelivered: 0,
                rounds: [1, 1],
                took: Duration::from_secs(1),
            })
        }
    }

    #[test]
    fn a_full_table_is_found_exactly_in_three_trials() {
        let found = SEARCH.capacity(300_000, table(131_072, 0)).unwrap();
        assert_eq!(found.sessions(), 131_072, "{found:?}");
        assert!(!found.offer_bound());
        assert_eq!(found.trials.len(), 3, "{found:?}");
        assert_eq!(found.failed_at(), Some(131_072 + 2_621), "{found:?}");
    }

    #[test]
    fn a_device_holding_everything_offered_is_marked_so() {
        let found = SEARCH.capacity(300_000, table(1 << 20, 0)).unwrap();
        assert!(found.offer_bound());
        assert_eq!(found.sessions(), 300_000);
        assert_eq!(found.trials.len(), 1);
    }

    #[test]
    fn a_device_holding_less_when_overloaded_is_found_within_the_resolution() {
        // Overloaded, it holds only half its capacity (thrashing); offered no more than it
        // holds, it holds them all.
        let cap = 100_000;
        let found = SEARCH
            .capacity(300_000, |n| {
                let held = if n > cap { cap / 2 } else { n };
                Ok(Held {
                    sessions: n,
                    set_up: n,
                    held,
                    bad: 0,
                    misdelivered: 0,
                    rounds: [1, 1],
                    took: Duration::from_secs(1),
                })
            })
            .unwrap();
        let c = found.sessions();
        assert!((cap * 98 / 100..=cap).contains(&c), "{found:?}");
        assert!(found.failed_at().is_some_and(|f| f > cap && f - c <= f / 50 + 1), "{found:?}");
        assert!(found.trials.len() <= 13);
    }

    #[test]
    fn a_lost_reply_or_a_wrong_one_never_passes() {
        let found = SEARCH.capacity(300_000, table(131_072, 1)).unwrap();
        assert_eq!(found.sessions(), 0, "{found:?}");
        assert!(found.trials.len() <= 13);
        let mut right = table(131_072, 0);
        let found = SEARCH.capacity(300_000, |n| Ok(Held { bad: 1, ..right(n)? })).unwrap();
        assert!(found.best.is_none(), "{found:?}");
        assert_eq!(found.bad(), found.trials.len() as u64);
    }

    #[test]
    fn percentiles_come_from_the_buckets() {
        let mut buckets = vec![0u64; LATENCY_BUCKETS as usize];
        // 990 frames at 10 µs, 9 at 100 µs, 1 at 1 ms.
        buckets[latency_bucket(10_000) as usize] += 990;
        buckets[latency_bucket(100_000) as usize] += 9;
        buckets[latency_bucket(1_000_000) as usize] += 1;
        let l = Latency::from_histogram(1e5, &buckets).unwrap();
        assert_eq!(l.samples, 1000);
        assert_eq!(l.p50, latency_floor(latency_bucket(10_000)));
        assert!(l.p50 <= 10_000 && l.p50 > 8_700, "{l:?}");
        assert_eq!(l.p99, l.p50, "the 990th frame is still at 10 µs");
        assert_eq!(l.p999, latency_floor(latency_bucket(100_000)));
        assert_eq!(l.max, latency_floor(latency_bucket(1_000_000)));
        assert_eq!(Latency::from_histogram(1e5, &[0; 8]), None);
    }
}
