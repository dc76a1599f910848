//! Builds the benchmark's XDP programs (bench/ebpf) with the same pinned nightly as the relay
//! (relay-ebpf/rust-toolchain.toml is the one source of truth), via aya-build.
use std::{env, fs, path::PathBuf};

use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let ebpf_dir = manifest.join("ebpf");
    let pin_file = manifest.join("../relay-ebpf/rust-toolchain.toml");
    println!("cargo::rerun-if-changed={}", pin_file.display());
    let pins = fs::read_to_string(&pin_file)?;
    let nightly = pins
        .lines()
        .find_map(|l| {
            let v = l.trim().strip_prefix("channel")?.trim().strip_prefix('=')?;
            Some(v.trim().trim_matches('"').to_owned())
        })
        .ok_or_else(|| anyhow::anyhow!("no channel in {}", pin_file.display()))?;
    let root_dir = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("non-UTF-8 path {}", ebpf_dir.display()))?;
    aya_build::build_ebpf(
        [Package {
            name: "bench-ebpf",
            root_dir,
            ..Default::default()
        }],
        Toolchain::Custom(&nightly),
    )
}
