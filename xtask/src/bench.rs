//! `bench`: setup, release build of the relay and the harness, then `relay-bench run`, which
//! writes bench/results/<date>-<host>.{json,md,png} (bench/README.md explains every number).

use anyhow::Result;

use crate::setup::run_setup;
use crate::util::{Pins, cargo, command, repo_root, require_root, run};

/// How much to run: everything (under 10 min), shorter (under 2 min), or the harness alone.
#[derive(Clone, Copy)]
pub enum BenchMode {
    Full,
    Quick,
    Smoke,
}

pub fn run_bench(pins: &Pins, mode: BenchMode) -> Result<()> {
    require_root("`bench` needs root: it loads XDP programs and builds network namespaces")?;
    run_setup(pins)?;
    run(cargo(&pins.stable)?.args([
        "build",
        "--release",
        "-p",
        "relay-ctl",
        "--bin",
        "relay-ctl",
        "-p",
        "relay-bench",
    ]))?;
    let root = repo_root();
    let mode = match mode {
        BenchMode::Full => "full",
        BenchMode::Quick => "quick",
        BenchMode::Smoke => "smoke",
    };
    run(command(root.join("target/release/relay-bench"))?
        .args(["run", "--mode", mode, "--out"])
        .arg(root.join("bench/results"))
        .arg("--relay-ctl")
        .arg(root.join("target/release/relay-ctl")))
}
