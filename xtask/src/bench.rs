//! `bench`: setup, release build of the relay and the harness, then `relay-bench run`, which
//! writes bench/results/<date>-<host>[-quick].{json,md,png} (bench/README.md explains every
//! number); `--smoke` writes under target/bench-smoke/.

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
        "--bin",
        "relay-bench",
    ]))?;
    let root = repo_root();
    // Smoke output is not a result: it goes under target/.
    let (mode, out) = match mode {
        BenchMode::Full => ("full", root.join("bench/results")),
        BenchMode::Quick => ("quick", root.join("bench/results")),
        BenchMode::Smoke => ("smoke", root.join("target/bench-smoke")),
    };
    run(command(root.join("target/release/relay-bench"))?
        .args(["run", "--mode", mode, "--out"])
        .arg(out)
        .arg("--relay-ctl")
        .arg(root.join("target/release/relay-ctl")))
}
