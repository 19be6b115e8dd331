//! The bench's report, for an acceptance tester to file: a Markdown page (when, on what machine
//! and kernel, the table with ratios to Linux and to the raw XDP ceiling, and every device's
//! rules), the same numbers as JSON, and a PNG chart of throughput by device and frame size.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use plotters::prelude::*;
use serde_json::json;

use super::{Outcome, capacity::Sessions, ratio_to as ratio};

/// The font the chart's text is drawn with (Debian's `fonts-dejavu-core`, which
/// `scripts/setup.sh` installs).
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Where the bench ran.
#[derive(Clone, Debug)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
}

impl Machine {
    /// This machine, from `/proc` and `uname`.
    pub fn here() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim()))
            .unwrap_or("unknown CPU")
            .to_string();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let kernel = nix::sys::utsname::uname()
            .map(|u| format!("{} {}", u.sysname().to_string_lossy(), u.release().to_string_lossy()))
            .unwrap_or_else(|_| "unknown".into());
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib: kib / 1024.0 / 1024.0,
            kernel,
        }
    }
}

/// One bench run, ready to write out.
#[derive(Clone, Debug)]
pub struct Report {
    /// When it ran (RFC 3339, UTC).
    pub date: String,
    pub machine: Machine,
    /// How it measured ([`super::method`]).
    pub method: String,
    /// What did not run, and why (a device skipped, say).
    pub notes: Vec<String>,
    pub rows: Vec<Outcome>,
    /// Session capacity per device, and how it was measured ([`super::capacity_method`]).
    pub capacity: Vec<Sessions>,
    pub capacity_method: String,
    /// Each device's rules, as it ran them: (device, rules).
    pub rules: Vec<(String, String)>,
    /// The command that produced it.
    pub command: String,
}

impl Report {
    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let mut s = String::new();
        s.push_str("# hutong bench report\n\n");
        s.push_str(&format!("- **Date:** {}\n", self.date));
        s.push_str(&format!(
            "- **Machine:** {}, {} cores, {:.1} GiB memory\n- **Kernel:** {}\n",
            m.cpu, m.cores, m.memory_gib, m.kernel
        ));
        s.push_str(&format!("- **Command:** `{}`\n", self.command));
        s.push_str(&format!(
            "- **Method:** UDP frames from the live-frames XDP generator through generator → \
             device → sink namespaces. {}. \"≥\": the device kept up with the generator's full \
             rate. \"At full rate\": what it delivered when offered everything the generator \
             could send.\n\n",
            self.method
        ));
        for n in &self.notes {
            s.push_str(&format!("**Note:** {n}\n\n"));
        }
        if !self.rows.is_empty() {
            s.push_str(
                "| scenario | device under test | frame | Mpps | at full rate | p50 / p99 µs | wrong | × Linux | × ceiling |\n",
            );
            s.push_str("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
            for r in &self.rows {
                let figures = r.figures(&self.rows).join(" | ");
                s.push_str(&format!("| {} | {} | {} B | {figures} |\n", r.scenario, r.dut, r.len + 4));
            }
            s.push_str("\n![Throughput by scenario and device, smallest frames](throughput.png)\n\n");
        }
        if !self.capacity.is_empty() {
            s.push_str(&format!("## Session capacity\n\n{}.\n\n", self.capacity_method));
            s.push_str("| device under test | sessions held | fails at | first trial: set up / answered of offered | trials | wrong | × Linux |\n");
            s.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
            for c in &self.capacity {
                s.push_str(&format!("| {} | {} |\n", c.dut, c.figures(&self.capacity).join(" | ")));
            }
            s.push('\n');
        }
        s.push_str("## Rules of each device\n\n");
        for (dut, rules) in &self.rules {
            s.push_str(&format!("**{dut}**\n\n```text\n{}\n```\n\n", rules.trim_end()));
        }
        s
    }

    pub fn json(&self) -> serde_json::Value {
        let m = &self.machine;
        json!({
            "date": self.date,
            "machine": {"cpu": m.cpu, "cores": m.cores, "memory_gib": m.memory_gib, "kernel": m.kernel},
            "command": self.command,
            "method": self.method,
            "notes": self.notes,
            "results": self.rows.iter().map(|r| json!({
                "scenario": r.scenario,
                "dut": r.dut,
                "frame_bytes": r.len + 4,
                "mpps": r.mpps(),
                "generator_bound": r.found.generator_bound(),
                "good": r.found.full.good,
                "bad": r.found.bad(),
                "x_linux": ratio(&self.rows, r, "Linux"),
                "x_ceiling": ratio(&self.rows, r, "raw XDP"),
                "latency_ns": r.latency.map(|l| json!({
                    "offered_pps": l.offered, "samples": l.samples,
                    "p50": l.p50, "p99": l.p99, "p99_9": l.p999, "max": l.max,
                })),
                "trials": r.found.trials.iter().map(trial).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "capacity": {
                "method": self.capacity_method,
                "results": self.capacity.iter().map(|c| json!({
                    "dut": c.dut,
                    "sessions": c.found.sessions(),
                    "offer_bound": c.found.offer_bound(),
                    "failed_at": c.found.failed_at(),
                    "bad": c.found.bad(),
                    "trials": c.found.trials.iter().map(|t| json!({
                        "sessions": t.sessions, "set_up": t.set_up, "held": t.held, "bad": t.bad,
                        "misdelivered": t.misdelivered, "rounds": t.rounds,
                        "seconds": t.took.as_secs_f64(),
                    })).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            },
            "rules": self.rules.iter().map(|(d, r)| json!({"dut": d, "rules": r})).collect::<Vec<_>>(),
        })
    }

    /// Throughput by device, a group of bars per frame size, as a PNG.
    pub fn chart(&self, path: &Path) -> Result<()> {
        let font = std::fs::read(FONT)
            .with_context(|| format!("the chart's font {FONT} (apt install fonts-dejavu-core)"))?;
        // Registered once per process; a second registration of the same family is harmless.
        let font: &'static [u8] = Box::leak(font.into_boxed_slice());
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, font);
        // One group of bars per scenario, at the smallest frame size (the hardest case); the
        // ceiling, which translates nothing, stands beside every group.
        let len = self.rows.iter().map(|r| r.len).min().unwrap_or(60);
        let mut scenarios: Vec<&str> = Vec::new();
        let mut duts: Vec<&str> = Vec::new();
        for r in self.rows.iter().filter(|r| r.len == len) {
            if !r.dut.starts_with("raw XDP") && !scenarios.contains(&r.scenario) {
                scenarios.push(r.scenario);
            }
            if !duts.contains(&r.dut.as_str()) {
                duts.push(&r.dut);
            }
        }
        let rate = |scenario: &str, dut: &str| {
            self.rows
                .iter()
                .find(|r| {
                    r.len == len && r.dut == dut && (r.scenario == scenario || r.dut.starts_with("raw XDP"))
                })
                .map(|r| r.mpps())
        };
        // Headroom above the tallest bar for the legend.
        let top = self.rows.iter().map(|r| r.mpps()).fold(0.0, f64::max).max(0.1) * 1.5;
        // Room for every group's label side by side.
        let width = (scenarios.len() as u32 * 240 + 120).max(960);
        let root = BitMapBackend::new(path, (width, 540)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("hutong bench, {} B frames: {} ({} cores)", len + 4, self.date, self.machine.cores),
                ("sans-serif", 22),
            )
            .margin(16)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..scenarios.len().max(1) as f64, 0f64..top)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(scenarios.len() * 2 + 1)
            .x_label_formatter(&|x| {
                // A group's label under its middle.
                let i = (x - 0.5).round();
                if (x - 0.5 - i).abs() < 1e-6 && i >= 0.0 {
                    scenarios.get(i as usize).map(|s| s.to_string()).unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc("Mpps: RFC 2544 throughput, correctly translated")
            .label_style(("sans-serif", 15))
            .draw()?;
        let palette =
            [RGBColor(120, 120, 120), RGBColor(214, 96, 77), RGBColor(33, 102, 172), RGBColor(103, 169, 207)];
        let width = 0.8 / duts.len().max(1) as f64;
        for (d, dut) in duts.iter().enumerate() {
            let color = palette[d % palette.len()];
            let bars = scenarios.iter().enumerate().filter_map(|(g, scenario)| {
                let x0 = g as f64 + 0.1 + d as f64 * width;
                Some(Rectangle::new([(x0, 0.0), (x0 + width * 0.9, rate(scenario, dut)?)], color.filled()))
            });
            chart
                .draw_series(bars)?
                .label(*dut)
                .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .label_font(("sans-serif", 15))
            .draw()?;
        root.present().with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// Writes `report.md`, `report.json` and `throughput.png` into `dir`: the paths written.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let md = dir.join("report.md");
        std::fs::write(&md, self.markdown())?;
        let js = dir.join("report.json");
        std::fs::write(&js, serde_json::to_string_pretty(&self.json())? + "\n")?;
        if self.rows.is_empty() {
            return Ok(vec![md, js]); // session capacity only: no throughput to chart
        }
        let png = dir.join("throughput.png");
        self.chart(&png)?;
        Ok(vec![md, js, png])
    }
}

/// One trial as JSON: asked and offered rates, frames sent, good and wrong arrivals.
fn trial(t: &super::search::Trial) -> serde_json::Value {
    json!({
        "asked_pps": t.asked,
        "offered_pps": t.offered(),
        "sent": t.sent,
        "good": t.good,
        "bad": t.bad,
        "seconds": t.took.as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{
        capacity::Sessions,
        search::{Capacity, Found, Held, Latency, Trial},
    };

    fn report() -> Report {
        // At full rate 1,000 frames in a millisecond, `good` of them delivered; the search's
        // best trial offered `good` frames in a millisecond and lost none.
        let row = |dut: &str, len, good: u64, latency: Option<Latency>| {
            let ms = Duration::from_millis(1);
            let full = Trial { asked: None, sent: 1000, good, bad: 0, took: ms };
            let best = Trial { asked: Some(good as f64 * 1e3), sent: good, good, bad: 0, took: ms };
            let best = if good == 1000 { full } else { best };
            Outcome {
                scenario: "netmap",
                dut: dut.into(),
                len,
                found: Found { full, best: Some(best), trials: vec![full, best] },
                latency,
            }
        };
        let latency =
            Latency { offered: 250e3, samples: 1000, p50: 12_000, p99: 40_000, p999: 41_000, max: 90_000 };
        Report {
            date: "2026-11-27T23:00:00Z".into(),
            machine: Machine {
                cpu: "Test CPU".into(),
                cores: 2,
                memory_gib: 7.6,
                kernel: "Linux 6.18".into(),
            },
            method: "the method".into(),
            notes: vec!["a device was skipped".into()],
            rows: vec![
                row("raw XDP ceiling (redirect only)", 60, 1000, None),
                row("Linux forwarding + nftables", 60, 250, None),
                row("hutong XDP engine", 60, 500, Some(latency)),
                row("raw XDP ceiling (redirect only)", 1514, 900, None),
                row("Linux forwarding + nftables", 1514, 300, None),
                row("hutong XDP engine", 1514, 450, None),
            ],
            capacity: vec![
                capacity("Linux forwarding + nftables", 262_144, 4),
                capacity("hutong XDP engine", 300_000, 0),
            ],
            capacity_method: "the capacity method".into(),
            rules: vec![("Linux".into(), "nft rules\n".into())],
            command: "hutong bench".into(),
        }
    }

    /// A device holding `held` sessions of 300,000 offered (all of them, or it fails 2% above
    /// what it holds), `bad` frames wrong in its first trial.
    fn capacity(dut: &str, held: u64, bad: u64) -> Sessions {
        let t = |sessions: u64, bad| Held {
            sessions,
            set_up: sessions,
            held: sessions.min(held),
            bad,
            misdelivered: bad,
            rounds: [1, 1],
            took: Duration::from_secs(1),
        };
        let trials = if held >= 300_000 {
            vec![t(300_000, 0)]
        } else {
            vec![t(300_000, bad), t(held, 0), t(held * 102 / 100, 0)]
        };
        let best = trials.iter().copied().filter(Held::passes).max_by_key(|t| t.sessions);
        Sessions { dut: dut.into(), found: Capacity { most: 300_000, trials, best } }
    }

    #[test]
    fn the_markdown_and_json_carry_every_number_and_ratio() {
        let r = report();
        let md = r.markdown();
        assert!(
            md.contains(
                "| netmap | hutong XDP engine | 64 B | 0.500 | 0.500 (50.0%) | 12.0 / 40.0 | 0 | 2.00 | 0.50 |"
            ),
            "{md}"
        );
        assert!(md.contains("Test CPU, 2 cores") && md.contains("Linux 6.18") && md.contains("2026-11-27"));
        assert!(md.contains("```text\nnft rules\n```"));
        assert!(md.contains("**Note:** a device was skipped"), "{md}");
        let js = r.json();
        assert_eq!(js["results"][2]["x_linux"], 2.0);
        assert_eq!(js["results"][1]["mpps"], 0.25);
        assert_eq!(js["results"][0]["x_ceiling"], 1.0);
        assert_eq!(js["results"][0]["generator_bound"], true);
        assert_eq!(js["results"][2]["generator_bound"], false);
        assert_eq!(js["results"][2]["latency_ns"]["p99"], 40_000);
        assert_eq!(js["results"][2]["trials"][1]["sent"], 500);
        assert!(md.contains("| netmap | raw XDP ceiling (redirect only) | 64 B | ≥1.000 |"), "{md}");
        // Session capacity: held, fails at, the first trial, trials, wrong, × Linux.
        assert!(md.contains("## Session capacity\n\nthe capacity method."), "{md}");
        assert!(
            md.contains(
                "| Linux forwarding + nftables | 262144 | 267386 | 300000 / 262144 of 300000 | 3 | 4 | 1.00 |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| hutong XDP engine | ≥300000 | – | 300000 / 300000 of 300000 | 1 | 0 | 1.14 |"),
            "{md}"
        );
        assert_eq!(js["capacity"]["results"][0]["sessions"], 262_144);
        assert_eq!(js["capacity"]["results"][0]["failed_at"], 267_386);
        assert_eq!(js["capacity"]["results"][1]["offer_bound"], true);
        assert_eq!(js["capacity"]["results"][0]["trials"][0]["held"], 262_144);
    }

    #[test]
    fn a_capacity_only_report_has_no_throughput_table_or_chart() {
        let r = Report { rows: vec![], ..report() };
        let md = r.markdown();
        assert!(!md.contains("| scenario |") && !md.contains("throughput.png"), "{md}");
        assert!(md.contains("## Session capacity"), "{md}");
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(r.write(dir.path()).unwrap().len(), 2);
        assert!(!dir.path().join("throughput.png").exists());
    }

    #[test]
    fn the_chart_is_a_png() {
        let dir = tempfile::tempdir().unwrap();
        let written = report().write(dir.path()).unwrap();
        let png = std::fs::read(&written[2]).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert!(png.len() > 5_000, "a chart, not an empty image: {} bytes", png.len());
    }
}
