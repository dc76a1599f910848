//! The incumbent comparison's PNG: a column per frame size, a group of bars per stream count
//! (the module, ours, the baseline of our block). Top row: median delivered pps with min-max
//! whiskers and ours/module above each group; bottom row: relay CPU per packet (medians).
use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use super::report::{Results, Summary};

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;
type R<T> = Result<T, Box<dyn std::error::Error>>;

const BARS: [(&str, &str, RGBColor, &str); 3] = [
    (
        "rtpengine_kmod",
        "kmod",
        RGBColor(0x94, 0x67, 0xbd),
        "rtpengine kernel module",
    ),
    (
        "relay_xdp",
        "ours",
        RGBColor(0xd6, 0x27, 0x28),
        "ours (XDP)",
    ),
    (
        "baseline",
        "ours",
        RGBColor(0x1f, 0x77, 0xb4),
        "baseline (XDP redirect)",
    ),
];

pub fn render(r: &Results, path: &Path) -> Result<()> {
    crate::chart::register_font()?;
    let mut sizes: Vec<usize> = r.summary.iter().map(|s| s.frame_bytes).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let root =
        BitMapBackend::new(path, (640 * sizes.len().max(1) as u32, 1000)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let root = root
        .titled(
            &format!(
                "Same guest, same load: rtpengine's kernel module vs our XDP relay ({}, kernel {}, {})",
                r.date, r.guest.kernel, r.guest.accel
            ),
            ("sans-serif", 20),
        )
        .map_err(|e| anyhow!("{e}"))?;
    let cols = sizes.len().max(1);
    let panels = root.split_evenly((2, cols));
    for (i, size) in sizes.iter().enumerate() {
        panel(r, *size, &panels[i], Metric::Pps).map_err(|e| anyhow!("{size} B pps: {e}"))?;
        panel(r, *size, &panels[cols + i], Metric::CpuNs)
            .map_err(|e| anyhow!("{size} B CPU: {e}"))?;
    }
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

fn get<'a>(r: &'a Results, n: u32, size: usize, variant: &str, block: &str) -> Option<&'a Summary> {
    r.summary.iter().find(|s| {
        s.streams == n && s.frame_bytes == size && s.variant == variant && s.block == block
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Metric {
    Pps,
    CpuNs,
}

/// (bar, whisker low, whisker high) in the panel's unit.
fn values(s: &Summary, m: Metric) -> (f64, f64, f64) {
    match m {
        Metric::Pps => (s.median_pps / 1e3, s.min_pps / 1e3, s.max_pps / 1e3),
        Metric::CpuNs => {
            let v = s.median_cpu_ns_per_pkt / 1e3;
            (v, v, v)
        }
    }
}

fn panel(r: &Results, size: usize, area: &Area, metric: Metric) -> R<()> {
    let mut ns: Vec<u32> = r
        .summary
        .iter()
        .filter(|s| s.frame_bytes == size)
        .map(|s| s.streams)
        .collect();
    ns.sort_unstable();
    ns.dedup();
    let max_y = r
        .summary
        .iter()
        .filter(|s| s.frame_bytes == size && s.variant != "generator_ceiling")
        .map(|s| values(s, metric).2)
        .fold(0.1, f64::max)
        // Headroom for the legend and the ratio labels above the bars.
        * 1.45;
    let (caption, unit) = match metric {
        Metric::Pps => (
            format!("{size}-byte frames: delivered kpps (median, min-max)"),
            "kpps at the sink",
        ),
        Metric::CpuNs => (
            format!("{size}-byte frames: relay CPU per packet (median)"),
            "µs of relay CPU per delivered packet",
        ),
    };
    let groups = ns.len().max(1);
    let mut c = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..groups as f64, 0f64..max_y)?;
    c.configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(unit)
        .label_style(("sans-serif", 14))
        .draw()?;
    for (g, &n) in ns.iter().enumerate() {
        let x0 = g as f64;
        for (i, (variant, block, color, _)) in BARS.iter().enumerate() {
            let Some(s) = get(r, n, size, variant, block) else {
                continue;
            };
            let left = x0 + 0.1 + i as f64 * 0.27;
            let mid = left + 0.12;
            let (v, lo, hi) = values(s, metric);
            c.draw_series(std::iter::once(Rectangle::new(
                [(left, 0.0), (left + 0.24, v)],
                color.filled(),
            )))?;
            if hi > lo {
                c.draw_series(std::iter::once(PathElement::new(
                    vec![(mid, lo), (mid, hi)],
                    BLACK.stroke_width(2),
                )))?;
            }
        }
        if let Some(x) = r
            .ratios
            .iter()
            .find(|x| x.streams == n && x.frame_bytes == size)
        {
            let top = BARS
                .iter()
                .filter_map(|(v, b, _, _)| get(r, n, size, v, b))
                .map(|s| values(s, metric).2)
                .fold(0.0, f64::max);
            let label = match metric {
                Metric::Pps => format!("ours/module {:.2}x", x.ours_over_kmod),
                Metric::CpuNs => format!("module/ours {:.2}x", x.kmod_cpu_over_ours),
            };
            c.draw_series(std::iter::once(Text::new(
                label,
                (x0 + 0.15, top + max_y * 0.04),
                ("sans-serif", 14),
            )))?;
        }
        c.draw_series(std::iter::once(Text::new(
            format!("{n} stream{}", if n == 1 { "" } else { "s" }),
            (x0 + 0.35, -max_y * 0.03),
            ("sans-serif", 14),
        )))?;
    }
    // Legend, drawn by hand (plotters' legend needs series with labels).
    for (i, (_, _, color, label)) in BARS.iter().enumerate() {
        let y = max_y * (0.97 - 0.05 * i as f64);
        c.draw_series(std::iter::once(Rectangle::new(
            [(0.05, y - max_y * 0.03), (0.12, y)],
            color.filled(),
        )))?;
        c.draw_series(std::iter::once(Text::new(
            label.to_string(),
            (0.15, y - max_y * 0.005),
            ("sans-serif", 13),
        )))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{Mode, report};
    use super::*;

    #[test]
    fn renders_a_png() {
        let r = Results::new(
            Mode::Smoke,
            &crate::incumbent::Incumbent {
                flavor: crate::incumbent::Flavor::Xt,
                bin: "/bin/false".into(),
            },
            report::sample_runs(),
            1.0,
        );
        let path = std::env::temp_dir().join(format!("incumbent-chart-{}.png", std::process::id()));
        render(&r, &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert!(
            bytes.len() > 10_000,
            "a near-empty image: {} bytes",
            bytes.len()
        );
    }
}
