//! `lint`: formatting and clippy, for the userspace crates and for the eBPF crate.

use anyhow::Result;

use crate::setup::run_setup;
use crate::util::{Phases, Pins, cargo, repo_root, run};

pub fn run_lint(pins: &Pins) -> Result<()> {
    let mut phases = Phases::new("lint");
    let result = phases
        .run("setup", || run_setup(pins))
        .and_then(|()| run_checks(pins, &mut phases));
    phases.print_summary();
    result
}

/// The lint phases, shared with `test`.
pub fn run_checks(pins: &Pins, phases: &mut Phases) -> Result<()> {
    // `--all` covers every member, relay-ebpf included: rustfmt needs no target.
    phases.run("fmt", || {
        run(cargo(&pins.stable)?.args(["fmt", "--all", "--", "--check"]))
    })?;
    // Default members (no `--workspace`): relay-ebpf does not build for the host.
    phases.run("clippy", || {
        run(cargo(&pins.stable)?.args(["clippy", "--all-targets", "--", "-D", "warnings"]))
    })?;
    // From each eBPF crate's directory, with the nightly pin: they only build for the BPF
    // target (relay-ebpf, and the benchmark's programs in bench/ebpf).
    phases.run("clippy-ebpf", || {
        for (package, dir) in [("relay-ebpf", "relay-ebpf"), ("bench-ebpf", "bench/ebpf")] {
            run(cargo(&pins.nightly)?
                .args(["clippy", "-p", package])
                .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
                .args(["--", "-D", "warnings"])
                .current_dir(repo_root().join(dir)))?;
        }
        Ok(())
    })?;
    Ok(())
}
