//! Builds the XDP object (relay-ebpf) with the pinned nightly via aya-build, so that
//! `cargo build -p relay-ctl` produces one binary with the data plane embedded.
use std::{env, fs, path::PathBuf};

use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let ebpf_dir = manifest.join("../relay-ebpf");
    let common_dir = manifest.join("../relay-common");
    // aya-build watches the eBPF crate; the shared types and the pin matter too.
    println!("cargo::rerun-if-changed={}", common_dir.display());
    let pin_file = ebpf_dir.join("rust-toolchain.toml");
    println!("cargo::rerun-if-changed={}", pin_file.display());

    // One source of truth for the nightly: the eBPF crate's own rust-toolchain.toml.
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
            name: "relay-ebpf",
            root_dir,
            ..Default::default()
        }],
        Toolchain::Custom(&nightly),
    )
}
