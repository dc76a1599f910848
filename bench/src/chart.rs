//! The PNG chart: ns/packet vs legs, delivered pps vs legs (the scaling curve), the
//! side-by-side throughput and the multi-core runs, in one image.
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use plotters::prelude::*;

use crate::report::Results;

/// Debian's fonts-dejavu-core (installed by `cargo xtask setup`).
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

pub fn register_font() -> Result<()> {
    let bytes =
        std::fs::read(FONT).with_context(|| format!("reading {FONT} (apt fonts-dejavu-core)"))?;
    // plotters keeps fonts for the process's lifetime.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow!("{FONT} is not a usable font"))
}

const COLORS: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x7f, 0x7f, 0x7f),
];

pub fn render(r: &Results, path: &Path) -> Result<()> {
    register_font()?;
    let root = BitMapBackend::new(path, (2400, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let root = root
        .titled(
            &format!(
                "Media relay benchmark {} ({}, {} CPUs, kernel {})",
                r.date, r.machine.host, r.machine.cpus, r.machine.kernel
            ),
            ("sans-serif", 24),
        )
        .map_err(|e| anyhow!("{e}"))?;
    let panels = root.split_evenly((1, 4));
    ns_panel(r, &panels[0]).map_err(|e| anyhow!("ns panel: {e}"))?;
    scaling_panel(r, &panels[1]).map_err(|e| anyhow!("scaling panel: {e}"))?;
    bars_panel(r, &panels[2]).map_err(|e| anyhow!("throughput panel: {e}"))?;
    multicore_panel(r, &panels[3]).map_err(|e| anyhow!("multi-core panel: {e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;
type R<T> = Result<T, Box<dyn std::error::Error>>;

/// 1, 10, 100, 1k, 10k, 100k, 1M.
fn legs_label(v: &f64) -> String {
    match *v {
        x if x >= 1e6 => format!("{:.0}M", x / 1e6),
        x if x >= 1e3 => format!("{:.0}k", x / 1e3),
        x => format!("{x:.0}"),
    }
}

fn ns_panel(r: &Results, area: &Area) -> R<()> {
    let paths = ["baseline", "forward_redirect", "forward_tx", "pass"];
    let pts: Vec<_> = r
        .per_packet
        .iter()
        .filter(|p| paths.contains(&p.path.as_str()))
        .collect();
    let max_legs = pts.iter().map(|p| p.legs).max().unwrap_or(1).max(10) as f64;
    let max_ns = pts.iter().map(|p| p.ns).fold(1.0, f64::max) * 1.25;
    let mut c = ChartBuilder::on(area)
        .caption(
            "ns/packet (BPF_PROG_RUN, median) vs legs",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((1f64..max_legs * 1.5).log_scale(), 0f64..max_ns)?;
    c.configure_mesh()
        .x_desc("legs installed")
        .y_desc("ns per packet")
        .x_label_formatter(&legs_label)
        .label_style(("sans-serif", 14))
        .draw()?;
    for (i, name) in paths.iter().enumerate() {
        let series: Vec<(f64, f64)> = pts
            .iter()
            .filter(|p| p.path == *name)
            .map(|p| (p.legs.max(1) as f64, p.ns))
            .collect();
        let color = COLORS[i];
        c.draw_series(LineSeries::new(series.clone(), color.stroke_width(2)))?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        c.draw_series(series.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    Ok(())
}

fn scaling_panel(r: &Results, area: &Area) -> R<()> {
    let pts: Vec<(f64, f64)> = r
        .scaling
        .iter()
        .map(|v| (v.legs_installed.max(1) as f64, v.delivered_pps / 1e6))
        .collect();
    let base = r
        .throughput
        .iter()
        .find(|v| v.name == "xdp_baseline")
        .map(|v| v.delivered_pps / 1e6);
    let ceil = r
        .throughput
        .iter()
        .find(|v| v.name == "generator_ceiling")
        .map(|v| v.delivered_pps / 1e6);
    let max_legs = pts.iter().map(|p| p.0).fold(10.0, f64::max);
    let max_y = pts
        .iter()
        .map(|p| p.1)
        .chain(base)
        .chain(ceil)
        .fold(0.1, f64::max)
        * 1.25;
    let mut c = ChartBuilder::on(area)
        .caption(
            "delivered Mpps vs legs installed (veth)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((1f64..max_legs * 1.5).log_scale(), 0f64..max_y)?;
    c.configure_mesh()
        .x_desc("legs installed")
        .y_desc("Mpps at the sink")
        .x_label_formatter(&legs_label)
        .label_style(("sans-serif", 14))
        .draw()?;
    c.draw_series(LineSeries::new(pts.clone(), COLORS[1].stroke_width(2)))?
        .label("relay (XDP redirect)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], COLORS[1].stroke_width(2)));
    c.draw_series(pts.iter().map(|&p| Circle::new(p, 4, COLORS[1].filled())))?;
    for (v, name, color) in [
        (base, "bare XDP_TX baseline", COLORS[0]),
        (ceil, "generator ceiling", COLORS[5]),
    ] {
        if let Some(v) = v {
            c.draw_series(LineSeries::new(
                vec![(1.0, v), (max_legs * 1.5, v)],
                color.stroke_width(1),
            ))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(1))
            });
        }
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    Ok(())
}

fn bars_panel(r: &Results, area: &Area) -> R<()> {
    let vs: Vec<_> = r.throughput.iter().collect();
    let max_y = vs.iter().map(|v| v.delivered_pps / 1e6).fold(0.1, f64::max) * 1.2;
    let n = vs.len().max(1);
    let mut c = ChartBuilder::on(area)
        .caption("side by side: delivered Mpps (one run)", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(90)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..n as f64, 0f64..max_y)?;
    c.configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("Mpps at the sink")
        .label_style(("sans-serif", 14))
        .draw()?;
    for (i, v) in vs.iter().enumerate() {
        let y = v.delivered_pps / 1e6;
        // The same colour for the same thing in every panel.
        let (color, label) = match v.name.as_str() {
            "generator_ceiling" => (COLORS[5], "gen. ceiling"),
            "xdp_baseline" => (COLORS[0], "XDP baseline"),
            "relay_xdp" => (COLORS[1], "relay (XDP)"),
            "recvmmsg_relay" => (COLORS[3], "recvmmsg"),
            "rtpengine" => (COLORS[4], "rtpengine"),
            other => (COLORS[2], other),
        };
        c.draw_series(std::iter::once(Rectangle::new(
            [(i as f64 + 0.15, 0.0), (i as f64 + 0.85, y)],
            color.filled(),
        )))?;
        c.draw_series(std::iter::once(Text::new(
            format!("{y:.2}"),
            (i as f64 + 0.3, y + max_y * 0.02),
            ("sans-serif", 14),
        )))?;
        c.draw_series(std::iter::once(Text::new(
            label.to_owned(),
            (i as f64 + 0.08, -max_y * 0.03),
            ("sans-serif", 14),
        )))?;
    }
    Ok(())
}

/// Delivered Mpps with r0's XDP on 1 and on 2 queues, per variant (grouped bars).
fn multicore_panel(r: &Results, area: &Area) -> R<()> {
    let variants = [
        ("generator_ceiling", "gen. ceiling", COLORS[5]),
        ("xdp_baseline", "XDP baseline", COLORS[0]),
        ("relay_xdp_direct", "relay (XDP)", COLORS[1]),
    ];
    let max_y = r
        .multicore
        .iter()
        .map(|v| v.delivered_pps / 1e6)
        .fold(0.1, f64::max)
        * 1.2;
    let mut c = ChartBuilder::on(area)
        .caption(
            format!(
                "1 vs 2 relay queues/CPUs ({} CPUs shared with the generator)",
                r.machine.cpus
            ),
            ("sans-serif", 18),
        )
        .margin(15)
        .x_label_area_size(90)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..variants.len() as f64, 0f64..max_y)?;
    c.configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("Mpps at the sink")
        .label_style(("sans-serif", 14))
        .draw()?;
    for (i, (name, label, color)) in variants.iter().enumerate() {
        for (j, q) in [1u32, 2].iter().enumerate() {
            let Some(v) = r
                .multicore
                .iter()
                .find(|v| v.variant == *name && v.queues == *q)
            else {
                continue;
            };
            let y = v.delivered_pps / 1e6;
            let x0 = i as f64 + 0.1 + 0.4 * j as f64;
            // One queue lighter, two queues full colour.
            let fill = if *q == 1 {
                color.mix(0.45).filled()
            } else {
                color.filled()
            };
            c.draw_series(std::iter::once(Rectangle::new(
                [(x0, 0.0), (x0 + 0.38, y)],
                fill,
            )))?;
            c.draw_series(std::iter::once(Text::new(
                format!("{q}q {y:.2}"),
                (x0, y + max_y * 0.02),
                ("sans-serif", 13),
            )))?;
        }
        c.draw_series(std::iter::once(Text::new(
            label.to_string(),
            (i as f64 + 0.12, -max_y * 0.03),
            ("sans-serif", 14),
        )))?;
    }
    Ok(())
}
