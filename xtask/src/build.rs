//! `build`: release build of the default members. relay-ctl's build script builds the eBPF
//! object with the nightly pin (aya-build), which needs bpf-linker on PATH: setup ensures it.

use anyhow::Result;

use crate::setup::run_setup;
use crate::util::{Pins, cargo, run};

/// What every benchmark runs, as cargo arguments: the daemon and the harness (the VM guests'
/// static build, `vm/initramfs.rs`, uses the same).
pub const BENCH_BINARIES: &[&str] = &[
    "-p",
    "relay-ctl",
    "--bin",
    "relay-ctl",
    "-p",
    "relay-bench",
    "--bin",
    "relay-bench",
];

/// The release relay-ctl (eBPF object embedded), as the demo and the package use it; returns
/// the binary's path.
pub fn release_relay_ctl(pins: &Pins) -> Result<std::path::PathBuf> {
    run(cargo(&pins.stable)?.args([
        "build",
        "--release",
        "-p",
        "relay-ctl",
        "--bin",
        "relay-ctl",
    ]))?;
    Ok(crate::util::repo_root().join("target/release/relay-ctl"))
}

pub fn run_build(pins: &Pins) -> Result<()> {
    run_setup(pins)?;
    // No `--workspace`: from the root that means the default members, which leave out
    // relay-ebpf (it only builds for bpfel-unknown-none, via relay-ctl's build script).
    run(cargo(&pins.stable)?.args(["build", "--release"]))
}
