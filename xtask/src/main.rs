//! Project tasks. Start with `./x <task>` on a fresh machine (it installs the pinned stable
//! toolchain first); afterwards `cargo xtask <task>` works too.

mod bench;
mod build;
mod demo;
mod fuzz;
mod lint;
mod package;
mod setup;
mod test;
mod util;
mod vm;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::util::Pins;

#[derive(Parser)]
#[command(about = "XDP media relay project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install toolchains, bpf-linker and Debian packages, mount bpffs (idempotent).
    Setup,
    /// Setup, then build the workspace in release mode (including the eBPF object).
    Build,
    /// Setup, then rustfmt and clippy (userspace and eBPF).
    Lint,
    /// Setup, lint, then every test (needs root). This is what CI runs.
    Test,
    /// Setup, then run the relay-ctl demo example (needs root).
    Demo,
    /// Setup, then run the libFuzzer targets in fuzz/ (fuzz/README.md).
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 300)]
        secs: u64,
        /// Only this target (default: all).
        target: Option<String>,
    },
    /// Setup, then build the Debian package (relay-ctl, the systemd unit, man pages,
    /// completions; docs/packaging.md) into target/debian/ and print its path.
    Package {
        /// Debian version instead of <relay-ctl's version>-1, e.g. 0.1.0-2 (a second package
        /// for an upgrade test).
        #[arg(long, value_name = "VERSION")]
        version: Option<String>,
        /// Also run the checks `test` runs on it (contents, lintian, systemd-analyze, and the
        /// life cycle on this host with a second version: needs root).
        #[arg(long)]
        check: bool,
    },
    /// Setup, then boot Debian's kernels under QEMU and run the scenarios in vm-tests/ in them.
    VmTest {
        /// Which guest kernel: 6.1, 6.12 or all (with --package: 6.1 unless named).
        #[arg(long, default_value = "all")]
        kernel: String,
        /// Instead: build the .deb twice (two versions), boot a Debian 12 root with systemd
        /// as PID 1 and install, restart, upgrade and purge it there with media flowing.
        #[arg(long)]
        package: bool,
    },
    /// Setup, then benchmark the relay against a bare XDP baseline, rtpengine and a
    /// recvmmsg relay (needs root), then against rtpengine's kernel module in a 6.1 VM guest;
    /// results in bench/results/ (see bench/README.md).
    Bench {
        /// Shorter and smaller, host only: under 2 minutes.
        #[arg(long, conflicts_with_all = ["smoke", "incumbent", "incumbent26", "turn"])]
        quick: bool,
        /// The harness alone in seconds (per-packet cost at a tiny repeat, outputs written);
        /// with --incumbent, the VM guest's smoke run (a few minutes, under target/).
        #[arg(long)]
        smoke: bool,
        /// Only the VM run against rtpengine's kernel module (xt_RTPENGINE) in Debian's 6.1.
        #[arg(long)]
        incumbent: bool,
        /// Only the VM run against rtpengine 26.x's nft_rtpengine in Debian's 6.12, both built
        /// from shared/incumbent/rtpengine-26.*.tar.xz (cached; installs the build
        /// dependencies with apt-get the first time).
        #[arg(long, conflicts_with = "incumbent")]
        incumbent26: bool,
        /// The host run's multi-core phase: relay receive queues (CPUs) to measure, 1, 2 or
        /// both; `--queues 1,2` is the default.
        #[arg(long, value_delimiter = ',', default_value = "1,2")]
        queues: Vec<u32>,
        /// Skip the host run's multi-core phase.
        #[arg(long)]
        no_multicore: bool,
        /// Only TURN ChannelData throughput: our TURN server (XDP) vs coturn vs our plain
        /// relay leg (`relay-bench turn`); with --smoke a shorter run under target/.
        #[arg(long, conflicts_with_all = ["incumbent", "incumbent26"])]
        turn: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.task) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` prints the whole context chain on one line, e.g.
            // "setup failed at step 'bpffs': ...".
            eprintln!("{err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(task: Task) -> Result<()> {
    let pins = Pins::load()?;
    match task {
        Task::Setup => setup::run_setup(&pins),
        Task::Build => build::run_build(&pins),
        Task::Lint => lint::run_lint(&pins),
        Task::Test => test::run_test(&pins),
        Task::Demo => demo::run_demo(&pins),
        Task::Package { version, check } => package::run_package(&pins, version.as_deref(), check),
        Task::Fuzz { secs, target } => fuzz::run_fuzz(&pins, secs, target.as_deref()),
        Task::VmTest { kernel, package } => vm::run_vm_test(&pins, &kernel, package),
        Task::Bench {
            quick,
            smoke,
            incumbent,
            incumbent26,
            queues,
            no_multicore,
            turn,
        } => bench::run_bench(
            &pins,
            match (quick, smoke) {
                (_, true) => bench::BenchMode::Smoke,
                (true, _) => bench::BenchMode::Quick,
                _ => bench::BenchMode::Full,
            },
            match (incumbent, incumbent26) {
                (_, true) => Some(vm::incumbent::Which::Nft26),
                (true, _) => Some(vm::incumbent::Which::Xt10),
                _ => None,
            },
            if no_multicore { &[] } else { &queues },
            turn,
        ),
    }
}
