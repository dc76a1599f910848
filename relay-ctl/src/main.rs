//! `relay-ctl`: the media relay's controller and operator CLI.
use anyhow::Result;
use clap::{Parser, Subcommand};
use relay_ctl::{
    daemon::{self, DaemonArgs, InstanceArgs},
    dataplane::DataPlane,
};

#[derive(Parser)]
#[command(version, about = "XDP media relay: controller and operator CLI")]
struct Cli {
    #[command(flatten)]
    instance: InstanceArgs,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Load, attach and pin the data plane, then run until SIGTERM.
    Daemon(DaemonArgs),
    /// Print the data plane's global counters (read from the pinned maps).
    Counters,
    /// Detach XDP from every interface of the instance and remove its pins.
    Detach,
}

fn main() -> Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match &cli.cmd {
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
        Cmd::Detach => {
            let inst = cli.instance.instance()?;
            let links = inst.pinned_links()?;
            inst.remove()?;
            println!(
                "detached {} ({}) and removed {}",
                cli.instance.instance,
                if links.is_empty() {
                    "no links".to_owned()
                } else {
                    links.join(", ")
                },
                inst.dir().display()
            );
            Ok(())
        }
    }
}
