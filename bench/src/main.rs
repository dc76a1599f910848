//! `relay-bench`: the benchmark harness behind `cargo xtask bench` (bench/README.md).
//!
//! `relay-bench run [--quick|--smoke] --out DIR --relay-ctl PATH` measures, in one run:
//! per-packet cost (BPF_PROG_RUN), kernel memory per leg, throughput in namespaces (our relay,
//! the bare XDP baseline, rtpengine, a recvmmsg/sendmmsg relay) and ng control-plane rates,
//! then writes `<date>-<host>.json`, `.md` and `.png` into DIR.
//! `relay-bench multicore --out DIR [--queues 1,2]` runs only the multi-core phase (also part
//! of `run`, `--no-multicore` skips it there).
//! `relay-bench capacity --relay-ctl PATH --out DIR [--calls 5000,20000,50000]` measures the
//! call capacity of one box (descriptors, memory per call) with the real daemon.
//! `relay-bench per-packet [--legs 1,100000] [--runs 100]` prints only the per-packet cost
//! (BPF_PROG_RUN) of every path next to the bare baseline and the plain relay leg.
//! `relay-bench turn --mode full|smoke --out DIR --relay-ctl PATH` compares TURN ChannelData
//! throughput: our TURN server (XDP), coturn and our plain relay leg (turn.rs).
//! `relay-bench mmsg-relay ...` is the userspace reference relay (run inside a namespace).
//! `relay-bench incumbent --mode full|smoke --out DIR --relay-ctl PATH` runs inside the Debian
//! 6.1 guest `cargo xtask bench --incumbent` boots: rtpengine's kernel module against our
//! relay under the same load (incumbent/mod.rs).
use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand, ValueEnum};

mod capacity;
mod chart;
mod control;
mod cpu;
mod frames;
mod generator;
mod incumbent;
mod memory;
mod mmsg;
mod multicore;
mod ng;
mod percost;
mod progs;
mod report;
mod rtpengine;
mod run;
mod topo;
mod tput;
mod turn;
mod turn_client;

#[derive(Parser)]
#[command(about = "Benchmarks of the XDP media relay (see bench/README.md)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum Mode {
    /// Everything, under 10 minutes.
    Full,
    /// Everything, shorter and smaller, under 2 minutes.
    Quick,
    /// The harness itself in seconds: per-packet cost at a tiny repeat, outputs written.
    Smoke,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the benchmarks and write the results.
    Run {
        #[arg(long, value_enum, default_value = "full")]
        mode: Mode,
        /// Directory for <date>-<host>.{json,md,png}.
        #[arg(long)]
        out: PathBuf,
        /// The relay-ctl binary (its daemon is benchmarked through its API).
        #[arg(long)]
        relay_ctl: Option<PathBuf>,
        /// Relay receive queues (CPUs) for the multi-core phase: 1, 2 or both (multicore.rs).
        #[arg(long, value_delimiter = ',', default_value = "1,2")]
        queues: Vec<u32>,
        /// Skip the multi-core phase.
        #[arg(long)]
        no_multicore: bool,
    },
    /// Only the multi-core phase: the bare baseline and the relay program on 1 and 2 of r0's
    /// receive queues; writes <date>-<host>-multicore.{json,md} into DIR.
    Multicore {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_delimiter = ',', default_value = "1,2")]
        queues: Vec<u32>,
        /// Flows, spread over one generator thread per CPU.
        #[arg(long, default_value = "1000")]
        streams: u32,
        /// Seconds of traffic per run (at most 30).
        #[arg(long, default_value = "5")]
        secs: f64,
    },
    /// Inside the incumbent guest (xt_RTPENGINE loaded): rtpengine's kernel module, our relay
    /// and the bare XDP baseline under the same load; writes
    /// <date>-incumbent-vm[-smoke].{json,md,png} into DIR.
    Incumbent {
        #[arg(long, value_enum, default_value = "full")]
        mode: incumbent::Mode,
        #[arg(long)]
        out: PathBuf,
        /// The relay-ctl binary whose daemon is measured.
        #[arg(long)]
        relay_ctl: PathBuf,
        /// Which kernel module the guest loaded: xt_RTPENGINE (10.5) or nft_rtpengine (26.3).
        #[arg(long, value_enum, default_value = "xt")]
        flavor: incumbent::Flavor,
        /// rtpengine's daemon, of the version the module was built for.
        #[arg(long, default_value = rtpengine::BIN)]
        rtpengine: String,
    },
    /// Call capacity of one box: N concurrent calls through the real daemon, descriptors and
    /// memory; writes <date>-capacity.{json,md} into DIR.
    Capacity {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        relay_ctl: PathBuf,
        /// Call counts to measure, each with a fresh daemon.
        #[arg(long, value_delimiter = ',', default_value = "5000,20000,50000")]
        calls: Vec<usize>,
    },
    /// Per-packet cost of every XDP path (BPF_PROG_RUN) next to the bare baseline and the
    /// plain relay leg, printed as a table; needs root (a namespace, BPF).
    PerPacket {
        /// Installed leg counts to measure at (ascending).
        #[arg(long, value_delimiter = ',', default_value = "1,100000")]
        legs: Vec<u32>,
        /// Calls per chained path per leg count (the median is reported).
        #[arg(long, default_value = "100")]
        runs: u32,
        /// Calls per one-packet path.
        #[arg(long, default_value = "300")]
        single_runs: u32,
    },
    /// Render an incumbent run's JSON again (markdown, chart, derived fields) from its runs.
    IncumbentRender {
        #[arg(long)]
        json: PathBuf,
    },
    /// TURN ChannelData throughput: our TURN server (XDP) vs coturn vs our plain relay leg,
    /// one run on the namespace testbed; writes <date>-turn[-smoke].{json,md} into DIR.
    Turn {
        #[arg(long, value_enum, default_value = "full")]
        mode: turn::Mode,
        #[arg(long)]
        out: PathBuf,
        /// The relay-ctl binary whose daemon (with --turn-port) is measured.
        #[arg(long)]
        relay_ctl: PathBuf,
    },
    /// The recvmmsg/sendmmsg reference relay: `--map LISTEN=FROM>TO` pairs read from a file.
    MmsgRelay {
        /// File with one "listen_port from_port to_addr:port" line per leg.
        #[arg(long)]
        legs: PathBuf,
        /// Local address to bind the listening sockets to.
        #[arg(long)]
        listen: std::net::Ipv4Addr,
        /// Local address to send from.
        #[arg(long)]
        source: std::net::Ipv4Addr,
        /// Exit after this many seconds (bounded like every load).
        #[arg(long, default_value = "120")]
        max_secs: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Run {
            mode,
            out,
            relay_ctl,
            queues,
            no_multicore,
        } => run::run(
            mode,
            &out,
            relay_ctl.as_deref(),
            if no_multicore { &[] } else { &queues },
        ),
        Cmd::Multicore {
            out,
            queues,
            streams,
            secs,
        } => run::run_multicore(
            &out,
            &multicore::Plan {
                queues,
                streams,
                secs: secs.clamp(0.5, 30.0),
            },
        ),
        Cmd::Incumbent {
            mode,
            out,
            relay_ctl,
            flavor,
            rtpengine,
        } => incumbent::run(
            mode,
            &incumbent::Incumbent {
                flavor,
                bin: rtpengine,
            },
            &out,
            &relay_ctl,
        ),
        Cmd::IncumbentRender { json } => incumbent::render(&json),
        Cmd::PerPacket {
            legs,
            runs,
            single_runs,
        } => percost::print(legs, runs, single_runs),
        Cmd::Capacity {
            out,
            relay_ctl,
            calls,
        } => capacity::run(&relay_ctl, &out, &calls),
        Cmd::Turn {
            mode,
            out,
            relay_ctl,
        } => turn::run(mode, &out, &relay_ctl),
        Cmd::MmsgRelay {
            legs,
            listen,
            source,
            max_secs,
        } => mmsg::serve(&legs, listen, source, max_secs),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
