//! `bench`: setup, release build of the relay and the harness, then `relay-bench run`, which
//! writes bench/results/<date>-<host>[-quick].{json,md,png} (bench/README.md explains every
//! number; its last phase, multi-core, runs the relay on 1 and 2 receive queues: `--queues`,
//! `--no-multicore`); `--smoke` writes under target/bench-smoke/. A full run then benchmarks
//! against rtpengine's kernel module in the 6.1 VM guest, which `--incumbent` runs alone
//! (vm/incumbent.rs). `--turn` runs only `relay-bench turn` (TURN ChannelData: ours, coturn,
//! the plain relay leg), writing bench/results/<date>-turn.{json,md}.

use anyhow::Result;

use crate::build::BENCH_BINARIES;
use crate::setup::run_setup;
use crate::util::{Pins, cargo, command, repo_root, require_root, run};
use crate::vm::incumbent;

/// How much to run: everything (under 10 min), shorter (under 2 min), or the harness alone.
#[derive(Clone, Copy)]
pub enum BenchMode {
    Full,
    Quick,
    Smoke,
}

/// `incumbent`: only the VM run against rtpengine's kernel module (full, or smoke with
/// `BenchMode::Smoke`); a plain full run does the host benchmark and then that VM run.
/// `--incumbent26` is the same with rtpengine 26.x's nft_rtpengine in the 6.12 guest.
/// `queues`: the host run's multi-core phase (relay-bench's `--queues`; empty skips it).
pub fn run_bench(
    pins: &Pins,
    mode: BenchMode,
    incumbent: Option<incumbent::Which>,
    queues: &[u32],
    turn: bool,
) -> Result<()> {
    if turn {
        return run_turn(pins, mode);
    }
    if let Some(which) = incumbent {
        let vm_mode = match mode {
            BenchMode::Smoke => incumbent::Mode::Smoke,
            BenchMode::Full | BenchMode::Quick => incumbent::Mode::Full,
        };
        return incumbent::run_bench(pins, vm_mode, which);
    }
    run_host(pins, mode, queues)?;
    if matches!(mode, BenchMode::Full) {
        incumbent::run_bench(pins, incumbent::Mode::Full, incumbent::Which::Xt10)?;
    }
    Ok(())
}

/// TURN ChannelData throughput (`relay-bench turn`), host only.
fn run_turn(pins: &Pins, mode: BenchMode) -> Result<()> {
    require_root("`bench --turn` needs root: it loads XDP programs and builds network namespaces")?;
    run_setup(pins)?;
    run(cargo(&pins.stable)?
        .args(["build", "--release"])
        .args(BENCH_BINARIES))?;
    let root = repo_root();
    let (mode, out) = match mode {
        BenchMode::Smoke => ("smoke", root.join("target/bench-smoke")),
        BenchMode::Full | BenchMode::Quick => ("full", root.join("bench/results")),
    };
    run(command(root.join("target/release/relay-bench"))?
        .args(["turn", "--mode", mode, "--out"])
        .arg(out)
        .arg("--relay-ctl")
        .arg(root.join("target/release/relay-ctl")))
}

/// The host benchmark (`relay-bench run`).
fn run_host(pins: &Pins, mode: BenchMode, queues: &[u32]) -> Result<()> {
    require_root("`bench` needs root: it loads XDP programs and builds network namespaces")?;
    run_setup(pins)?;
    run(cargo(&pins.stable)?
        .args(["build", "--release"])
        .args(BENCH_BINARIES))?;
    let root = repo_root();
    // Smoke output is not a result: it goes under target/.
    let (mode, out) = match mode {
        BenchMode::Full => ("full", root.join("bench/results")),
        BenchMode::Quick => ("quick", root.join("bench/results")),
        BenchMode::Smoke => ("smoke", root.join("target/bench-smoke")),
    };
    let mut bench = command(root.join("target/release/relay-bench"))?;
    bench
        .args(["run", "--mode", mode, "--out"])
        .arg(out)
        .arg("--relay-ctl")
        .arg(root.join("target/release/relay-ctl"));
    if queues.is_empty() {
        bench.arg("--no-multicore");
    } else {
        let list: Vec<String> = queues.iter().map(u32::to_string).collect();
        bench.args(["--queues", &list.join(",")]);
    }
    run(&mut bench)
}
