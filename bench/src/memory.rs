//! Kernel memory of a map as the kernel accounts it: the `memlock` line of the map fd's
//! /proc/self/fdinfo entry (what bpftool shows as "memlock"), found by map id.
use std::fs;

use anyhow::{Context, Result, bail};

/// (memlock bytes, max_entries) of the map with id `id`, from any fd this process holds.
pub fn map_memlock(id: u32) -> Result<(u64, u64)> {
    for entry in fs::read_dir("/proc/self/fdinfo").context("reading /proc/self/fdinfo")? {
        let Ok(entry) = entry else { continue };
        let Ok(text) = fs::read_to_string(entry.path()) else {
            continue;
        };
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
        };
        if field("map_id:") == Some(u64::from(id)) {
            let memlock = field("memlock:").context("fdinfo has no memlock")?;
            let max = field("max_entries:").context("fdinfo has no max_entries")?;
            return Ok((memlock, max));
        }
    }
    bail!("no fd of this process refers to map id {id}")
}
