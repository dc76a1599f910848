//! The incumbent comparison's PNG: one panel per frame size, a group of bars per stream count
//! (the module, ours, the baseline of our block), median delivered pps with min-max whiskers
//! and ours/module above each group.
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
    let root = BitMapBackend::new(path, (640 * sizes.len().max(1) as u32, 560)).into_drawing_area();
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
    let panels = root.split_evenly((1, sizes.len().max(1)));
    for (size, area) in sizes.iter().zip(panels.iter()) {
        panel(r, *size, area).map_err(|e| anyhow!("{size} B panel: {e}"))?;
    }
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

fn get<'a>(r: &'a Results, n: u32, size: usize, variant: &str, block: &str) -> Option<&'a Summary> {
    r.summary.iter().find(|s| {
        s.streams == n && s.frame_bytes == size && s.variant == variant && s.block == block
    })
}

fn panel(r: &Results, size: usize, area: &Area) -> R<()> {
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
        .map(|s| s.max_pps / 1e3)
        .fold(1.0, f64::max)
        * 1.25;
    let groups = ns.len().max(1);
    let mut c = ChartBuilder::on(area)
        .caption(
            format!("{size}-byte frames: delivered kpps (median, min-max)"),
            ("sans-serif", 18),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..groups as f64, 0f64..max_y)?;
    c.configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("kpps at the sink")
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
            c.draw_series(std::iter::once(Rectangle::new(
                [(left, 0.0), (left + 0.24, s.median_pps / 1e3)],
                color.filled(),
            )))?;
            c.draw_series(std::iter::once(PathElement::new(
                vec![(mid, s.min_pps / 1e3), (mid, s.max_pps / 1e3)],
                BLACK.stroke_width(2),
            )))?;
        }
        if let Some(x) = r
            .ratios
            .iter()
            .find(|x| x.streams == n && x.frame_bytes == size)
        {
            let top = BARS
                .iter()
                .filter_map(|(v, b, _, _)| get(r, n, size, v, b))
                .map(|s| s.max_pps / 1e3)
                .fold(0.0, f64::max);
            c.draw_series(std::iter::once(Text::new(
                format!("ours/module {:.2}x", x.ours_over_kmod),
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
