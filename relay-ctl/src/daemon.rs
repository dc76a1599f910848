//! `relay-ctl daemon`: load the data plane, attach it to the relay interfaces, pin everything
//! under the instance directory, and keep running until SIGTERM/SIGINT.
//!
//! On exit the pins stay (forwarding continues with no controller) unless `--detach-on-exit`.
use std::{fs, path::PathBuf};

use anyhow::{Context, Result, bail};
use aya::Ebpf;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    dataplane::{self, DataPlane, EgressMap, Instance, XdpModeChoice},
    netns::ifindex,
};

#[derive(Debug, Clone, clap::Args)]
pub struct DaemonArgs {
    /// Interface to relay on (repeat for several).
    #[arg(long = "iface", required = true)]
    pub ifaces: Vec<String>,
    /// XDP attach mode.
    #[arg(long, value_enum, default_value_t = XdpModeChoice::Auto)]
    pub xdp_mode: XdpModeChoice,
    /// Capacity of the leg table and the per-leg counters.
    #[arg(long, default_value_t = relay_common::DEFAULT_MAX_LEGS)]
    pub max_legs: u32,
    /// Detach XDP and remove the pins on exit (default: keep forwarding without a controller).
    #[arg(long)]
    pub detach_on_exit: bool,
    /// Do not enable IPv4 forwarding on the relay interfaces (bpf_fib_lookup needs it).
    #[arg(long)]
    pub keep_forwarding_sysctl: bool,
}

/// The instance directory and name, shared by the subcommands.
#[derive(Debug, Clone, clap::Args)]
pub struct InstanceArgs {
    /// Instance name: one daemon per instance, pins under <bpffs-root>/<instance>.
    #[arg(long, default_value = "default", global = true)]
    pub instance: String,
    /// bpffs directory holding all instances.
    #[arg(long, default_value = dataplane::pins_root(), global = true)]
    pub bpffs_root: PathBuf,
}

impl InstanceArgs {
    pub fn instance(&self) -> Result<Instance> {
        Instance::new(&self.bpffs_root, &self.instance)
    }
}

pub async fn run(inst: &InstanceArgs, args: &DaemonArgs) -> Result<()> {
    let instance = inst.instance()?;
    if instance.exists() {
        // Adopting a running data plane is the hitless-restart work; until then never clobber
        // one that is forwarding.
        bail!(
            "instance {:?} is already pinned at {}; stop it with `relay-ctl detach --instance {}`",
            inst.instance,
            instance.dir().display(),
            inst.instance
        );
    }
    let ifaces: Vec<(String, u32)> = args
        .ifaces
        .iter()
        .map(|n| Ok((n.clone(), ifindex(n)?)))
        .collect::<Result<_>>()?;

    let mut ebpf = dataplane::load(args.max_legs)?;
    let _log_task = start_ebpf_logger(&mut ebpf);
    let dp = DataPlane::from_ebpf(&mut ebpf)?;
    let mut egress = EgressMap::from_ebpf(&mut ebpf)?;

    instance.create_dirs()?;
    // From here on a failure must not leave half an instance pinned.
    let result = pin_and_attach(&mut ebpf, &dp, &mut egress, &instance, &ifaces, args);
    if let Err(e) = result {
        let _ = instance.remove();
        return Err(e);
    }
    log::info!(
        "ready: instance {:?} pinned at {} (max legs {})",
        inst.instance,
        instance.dir().display(),
        args.max_legs
    );

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => log::info!("SIGTERM"),
        _ = int.recv() => log::info!("SIGINT"),
    }
    if args.detach_on_exit {
        instance.remove()?;
        log::info!("detached and removed {}", instance.dir().display());
    } else {
        log::info!(
            "exiting; XDP stays attached and forwarding (pins at {}); `relay-ctl detach` removes it",
            instance.dir().display()
        );
    }
    Ok(())
}

fn pin_and_attach(
    ebpf: &mut Ebpf,
    dp: &DataPlane,
    egress: &mut EgressMap,
    instance: &Instance,
    ifaces: &[(String, u32)],
    args: &DaemonArgs,
) -> Result<()> {
    dp.pin(instance)?;
    egress.pin(instance)?;
    let prog = dataplane::relay_program(ebpf)?;
    prog.pin(instance.prog_path())
        .context("pinning the XDP program")?;
    for (name, idx) in ifaces {
        if !args.keep_forwarding_sysctl {
            enable_forwarding(name)?;
        }
        egress.add(*idx)?;
        let (link, mode) = dataplane::attach_xdp(prog, name, *idx, args.xdp_mode)?;
        link.pin(instance.link_path(name))
            .with_context(|| format!("pinning the XDP link of {name}"))?;
        log::info!(
            "attached XDP to {name} (ifindex {idx}) in {} mode",
            mode.as_str()
        );
    }
    Ok(())
}

/// bpf_fib_lookup refuses (FWD_DISABLED) on an interface with IPv4 forwarding off. Turning it
/// on per interface also lets the stack route transit packets arriving there: filter those in
/// nftables' forward hook if the box must not route (XDP-forwarded media never reaches it).
fn enable_forwarding(ifname: &str) -> Result<()> {
    let path = format!("/proc/sys/net/ipv4/conf/{ifname}/forwarding");
    let cur = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    if cur.trim() != "1" {
        fs::write(&path, "1").with_context(|| format!("writing {path}"))?;
        log::info!(
            "{ifname}: enabled net.ipv4.conf.{ifname}.forwarding (needed by bpf_fib_lookup)"
        );
    }
    Ok(())
}

/// Forward the program's rare-path log lines (aya-log) to our logger.
fn start_ebpf_logger(ebpf: &mut Ebpf) -> Option<tokio::task::JoinHandle<()>> {
    let logger = match aya_log::EbpfLogger::init(ebpf) {
        Ok(l) => l,
        Err(e) => {
            log::warn!("eBPF log forwarding unavailable: {e}");
            return None;
        }
    };
    // SAFETY: the logger owns its map fd for as long as the AsyncFd lives.
    let mut fd = match unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE)
    } {
        Ok(fd) => fd,
        Err(e) => {
            log::warn!("eBPF log forwarding unavailable: {e}");
            return None;
        }
    };
    Some(tokio::spawn(async move {
        loop {
            match fd.readable_mut().await {
                Ok(mut guard) => {
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
                Err(e) => {
                    log::warn!("eBPF log forwarding stopped: {e}");
                    return;
                }
            }
        }
    }))
}
