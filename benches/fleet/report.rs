//! The fleet bench's report: the Markdown tables, the files under `--out`, and the chart.

use std::path::Path;

use anyhow::{Context, Result};
use hutong::bench::report::Machine;
use plotters::prelude::*;

use super::{Row, Settings};

/// The goal (issue 18): p99 of push to ACK under this at 3,000 gateways.
const GOAL_S: f64 = 2.0;
/// The font the chart's text is drawn with, as hutong-bench's report draws its own.
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// p50 / p99 / max, as the tables write them.
fn spread(s: &super::Stats) -> String {
    format!("{} / {} / {}", secs(s.p50), secs(s.p99), secs(s.max))
}

/// Seconds to two places, or a dash for none.
pub(crate) fn secs(x: Option<f64>) -> String {
    x.map_or("–".into(), |x| format!("{x:.2}"))
}

/// The results as a Markdown table.
pub(crate) fn table(rows: &[Row], date: &str, m: &Machine) -> String {
    let day = date.get(..10).unwrap_or(date);
    let machine = format!("{} cores, {:.0} GiB", m.cores, m.memory_gib);
    let mut s = String::from(
        "| gateways | push: ops / MiB | commit s | push→applied p50 / p99 / max s | push→ACK p50 / p99 / max s \
         | etcd CPU s per push | etcd RSS MiB (peak) | idle CPU % of a core: etcd / agents | per agent KiB \
         | date | machine |\n",
    );
    s.push_str("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |\n");
    for r in rows {
        let (a, k) = (&r.push_to_applied, &r.push_to_ack);
        s.push_str(&format!(
            "| {} | {} / {:.1} | {:.2} | {} | {} | {:.2} | {:.0} | {:.1} / {:.1} | {:.0} | {day} | {machine} |\n",
            r.gateways,
            r.push.ops,
            r.push.bytes as f64 / 1048576.0,
            r.push.commit_s,
            spread(a),
            spread(k),
            r.etcd_cpu_per_push_s,
            r.etcd_rss_peak_mib,
            r.idle_etcd_cpu_pct,
            r.idle_bench_cpu_pct,
            r.agent_kib,
        ));
    }
    s.push_str(
        "\n| gateways | push | commit s | push→applied p50 / p99 / max s | push→ACK p50 / p99 / max s \
         | agent sessions lost |\n| ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in rows {
        for p in &r.per_push {
            let (a, k) = (&p.push_to_applied, &p.push_to_ack);
            s.push_str(&format!(
                "| {} | {} | {:.2} | {} | {} | {} |\n",
                r.gateways,
                p.push,
                p.commit_s,
                spread(a),
                spread(k),
                p.outages
            ));
        }
    }
    s
}

pub(crate) fn write_out(
    dir: &Path,
    rows: &[Row],
    s: &Settings,
    date: &str,
    m: &Machine,
    table: &str,
) -> Result<()> {
    let command = std::env::args().skip(1).filter(|a| a != "--bench").collect::<Vec<_>>().join(" ");
    let json = serde_json::json!({
        "date": date,
        "machine": {"cpu": m.cpu, "cores": m.cores, "memory_gib": m.memory_gib, "kernel": m.kernel},
        "command": format!("cargo bench --bench fleet -- {command}"),
        "rounds": s.rounds,
        "lease_ttl_s": s.lease_ttl.as_secs_f64(),
        "goal_p99_s": GOAL_S,
        "results": rows,
    });
    std::fs::write(dir.join("fleet-bench.json"), serde_json::to_string_pretty(&json)? + "\n")?;
    std::fs::write(dir.join("fleet-bench.md"), table)?;
    chart(rows, &dir.join("push-to-ack.png"), &format!("{date}, {} cores", m.cores))?;
    println!("wrote {}", dir.display());
    Ok(())
}

/// A line of the chart: its name, its figure of a row, its colour.
type Series = (&'static str, fn(&Row) -> Option<f64>, RGBColor);

/// p50 and p99 of push→applied and push→ACK against fleet size (log scale), and the goal.
pub(crate) fn chart(rows: &[Row], path: &Path, when: &str) -> Result<()> {
    let font = std::fs::read(FONT)
        .with_context(|| format!("the chart's font {FONT} (apt install fonts-dejavu-core)"))?;
    let _ =
        plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(font.into_boxed_slice()));
    let lo = rows.iter().map(|r| r.gateways).min().unwrap_or(100) as f64 / 1.5;
    let hi = rows.iter().map(|r| r.gateways).max().unwrap_or(3000) as f64 * 1.5;
    let series: [Series; 4] = [
        ("push→ACK p99, all pushes", |r| r.push_to_ack.p99, RGBColor(214, 96, 77)),
        ("push→ACK p50, all pushes", |r| r.push_to_ack.p50, RGBColor(244, 165, 130)),
        ("push→applied p99, all pushes", |r| r.push_to_applied.p99, RGBColor(33, 102, 172)),
        ("push→applied p50, all pushes", |r| r.push_to_applied.p50, RGBColor(103, 169, 207)),
    ];
    // Both axes logarithmic: a hundred gateways answer in tens of milliseconds, a collapsed
    // fleet in tens of seconds, and the goal sits between.
    let each: Vec<(f64, f64)> = rows
        .iter()
        .flat_map(|r| r.per_push.iter().filter_map(|p| Some((r.gateways as f64, p.push_to_ack.p99?))))
        .collect();
    let all =
        rows.iter().flat_map(|r| series.iter().filter_map(|(_, f, _)| f(r))).chain(each.iter().map(|p| p.1));
    let (bottom, top) = all.fold((GOAL_S, GOAL_S), |(a, b), x| (a.min(x), b.max(x)));
    let root = BitMapBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("hutong fleet: push to ACK, in-process agents, one etcd ({when})"),
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d((lo..hi).log_scale(), (bottom / 2.0..top * 2.0).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("gateways (agents)")
        .y_desc("seconds from the push's transaction")
        // Only round labels (1, 2 and 5 times a power of ten): the log axis offers many more.
        .x_label_formatter(&|x| {
            let lead = x / 10f64.powf(x.log10().floor());
            if [1.0, 2.0, 5.0].iter().any(|l| (lead - l).abs() < 1e-6) {
                format!("{x:.0}")
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| if *y < 1.0 { format!("{y:.2}") } else { format!("{y:.0}") })
        .label_style(("sans-serif", 15))
        .draw()?;
    for (name, f, color) in series {
        let points: Vec<(f64, f64)> = rows.iter().filter_map(|r| Some((r.gateways as f64, f(r)?))).collect();
        chart
            .draw_series([PathElement::new(points.clone(), color.stroke_width(2))])?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
        chart.draw_series(points.into_iter().map(|p| Circle::new(p, 4, color.filled())))?;
    }
    let red = series[0].2;
    chart
        .draw_series(each.into_iter().map(|p| Cross::new(p, 6, red.stroke_width(2))))?
        .label("push→ACK p99 of each push")
        .legend(move |(x, y)| Cross::new((x + 8, y), 5, red.stroke_width(2)));
    chart
        .draw_series([PathElement::new([(lo, GOAL_S), (hi, GOAL_S)], BLACK.mix(0.6).stroke_width(2))])?
        .label("goal: p99 under 2 s at 3,000")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK.mix(0.6).stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()?;
    root.present().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
