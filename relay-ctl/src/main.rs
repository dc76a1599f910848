//! `relay-ctl`: the media relay's controller and operator CLI.
use std::net::SocketAddr;

use anyhow::Result;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use relay_ctl::{
    cli as operator,
    daemon::{self, DaemonArgs, InstanceArgs},
    dataplane::DataPlane,
};

#[derive(Parser)]
#[command(
    version = relay_ctl::version::VERSION,
    about = "XDP media relay: controller and operator CLI"
)]
struct Cli {
    #[command(flatten)]
    instance: InstanceArgs,
    /// The daemon's HTTP API, for the client subcommands [env: RELAY_CTL_API; default:
    /// 127.0.0.1:9901]
    #[arg(long, global = true, value_name = "ADDR")]
    api: Option<SocketAddr>,
    #[command(subcommand)]
    cmd: Cmd,
}

/// Output options of the API client subcommands.
#[derive(clap::Args)]
struct Output {
    /// Print the API's JSON (pretty) instead of a table, for scripts.
    #[arg(long)]
    json: bool,
}

// Parsed once per process: boxing the daemon's arguments would save nothing worth the noise.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Load, attach and pin the data plane, then run until SIGTERM.
    #[command(after_help = relay_ctl::ng::DAEMON_HELP)]
    Daemon(DaemonArgs),
    /// Print the data plane's global counters (read from the pinned maps).
    Counters,
    /// Detach XDP from every interface of the instance, remove its pins and its state file
    /// (the sessions a restarted daemon would adopt).
    Detach {
        /// The daemon's state file, if not the default for the instance.
        #[arg(long, value_name = "PATH")]
        state_file: Option<std::path::PathBuf>,
    },
    /// List the live sessions (via the daemon's API).
    Sessions(Output),
    /// Show one session and its legs (via the daemon's API).
    Session {
        /// Session id (the call id).
        id: String,
        #[command(flatten)]
        out: Output,
    },
    /// Show the daemon's statistics: forwarding, interfaces, counters (via the API).
    Stats(Output),
    /// Show the relay port pools (via the daemon's API).
    Ports(Output),
    /// Delete a session: remove its legs and quarantine its ports (via the daemon's API).
    Delete {
        /// Session id (the call id).
        id: String,
        #[command(flatten)]
        out: Output,
    },
    /// The stateless reflector (via the daemon's API).
    #[command(subcommand)]
    Reflector(ReflectorCmd),
    /// The TURN server (via the daemon's API).
    #[command(subcommand)]
    Turn(TurnCmd),
}

#[derive(Subcommand)]
enum TurnCmd {
    /// List the TURN allocations: user, client 5-tuple, relayed address, permissions,
    /// channels, age, packets relayed in userspace and by XDP.
    Allocations(Output),
}

#[derive(Subcommand)]
enum ReflectorCmd {
    /// Get a signed ticket: the 56-byte header a sender puts in front of its payload.
    Ticket {
        /// Source the reflected packet carries: one of the relay's addresses, ip:port.
        #[arg(long, value_name = "IP:PORT")]
        src: String,
        /// Destination of the reflected packet, ip:port (e.g. a peer's NAT mapping).
        #[arg(long, value_name = "IP:PORT")]
        dst: String,
        /// The sender's address:port as the relay sees it; the ticket only works from there.
        #[arg(long, value_name = "IP:PORT")]
        from: String,
        /// Seconds the ticket is valid [default: the daemon's ticket-max-ttl-secs].
        #[arg(long, value_name = "SECS")]
        ttl: Option<u64>,
        #[command(flatten)]
        out: Output,
    },
}

fn main() -> Result<()> {
    // `gen-docs` is added here rather than in `Cmd`, so the pages and completions it writes
    // from `Cli::command()` do not offer it (clap_complete lists hidden subcommands too).
    let matches = Cli::command()
        .subcommand(relay_ctl::docs::subcommand())
        .get_matches();
    if let Some((relay_ctl::docs::SUBCOMMAND, m)) = matches.subcommand() {
        return relay_ctl::docs::run(Cli::command(), m);
    }
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // The daemon's log settings come from its flags and config file, so the logger starts
    // once they are parsed; the client subcommands log in the default format.
    let log = match &cli.cmd {
        Cmd::Daemon(args) => relay_ctl::config::log_settings(args),
        _ => relay_ctl::config::LogSettings::default(),
    };
    relay_ctl::logfmt::init(relay_ctl::logfmt::style(log.format), log.level.as_deref());
    // API clients exit with their own codes: 2 when the daemon is unreachable, 1 on an error.
    let client = |cmd: operator::Command, out: &Output| -> ! {
        std::process::exit(operator::main(cli.api, &cmd, out.json))
    };
    match &cli.cmd {
        Cmd::Sessions(out) => client(operator::Command::Sessions, out),
        Cmd::Session { id, out } => client(operator::Command::Session(id.clone()), out),
        Cmd::Stats(out) => client(operator::Command::Stats, out),
        Cmd::Ports(out) => client(operator::Command::Ports, out),
        Cmd::Delete { id, out } => client(operator::Command::Delete(id.clone()), out),
        Cmd::Turn(TurnCmd::Allocations(out)) => client(operator::Command::TurnAllocations, out),
        Cmd::Reflector(ReflectorCmd::Ticket {
            src,
            dst,
            from,
            ttl,
            out,
        }) => client(
            operator::Command::Ticket(relay_ctl::api::TicketRequest {
                src: src.clone(),
                dst: dst.clone(),
                from: from.clone(),
                ttl: *ttl,
            }),
            out,
        ),
        Cmd::Daemon(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(daemon::run(&cli.instance, args)),
        Cmd::Counters => {
            let dp = DataPlane::open(&cli.instance.instance()?)?;
            for (c, v) in dp.counters()? {
                println!("{:<28} {v}", c.name());
            }
            Ok(())
        }
        Cmd::Detach { state_file } => {
            let inst = cli.instance.instance()?;
            let links = inst.pinned_links()?;
            inst.remove()?;
            let state = state_file
                .clone()
                .unwrap_or_else(|| relay_ctl::config::default_state_file(&cli.instance.instance));
            relay_ctl::sessions::state::remove(&state)?;
            let _ = std::fs::remove_file(relay_ctl::reflector::service::ring_file(&state));
            println!(
                "detached {} ({}) and removed {} and {}",
                cli.instance.instance,
                if links.is_empty() {
                    "no links".to_owned()
                } else {
                    links.join(", ")
                },
                inst.dir().display(),
                state.display()
            );
            Ok(())
        }
    }
}
