//! The data plane a daemon runs with: loaded fresh and pinned, or adopted from the pins of a
//! daemon before it (hitless restart); attached to the relay interfaces.
use std::fs;

use anyhow::{Context, Result};
use aya::{Ebpf, programs::Xdp};
use aya_obj::programs::XdpAttachType;

use crate::{
    api::InterfaceView,
    config::Config,
    dataplane::{self, DataPlane, EgressMap, Instance, NextHops, Reflector, TurnMaps},
    sessions::state,
};

/// The data plane this daemon runs with, fresh or adopted.
pub(super) struct Plane {
    pub dp: DataPlane,
    /// Reflector/STUN maps, pinned with the rest (configured by `reflector::control::start`).
    pub reflector: Reflector,
    /// The next-hop cache's maps (`None`: adopted from a daemon that predates the cache).
    pub nexthops: Option<NextHops>,
    /// The TURN channel maps, for the TURN server (`None`: adopted from a daemon that
    /// predates them; TURN then relays in userspace only).
    pub turn: Option<TurnMaps>,
    pub interfaces: Vec<InterfaceView>,
    pub adopted: bool,
    pub keep: Keep,
}

/// Keeps the freshly loaded object (and its log map reader) alive for the daemon's life.
pub(super) struct Keep {
    _ebpf: Option<Ebpf>,
    _log_task: Option<tokio::task::JoinHandle<()>>,
}

/// Load the object, pin it, attach to every interface. A failure removes what was pinned.
pub(super) fn fresh(instance: &Instance, ifaces: &[(String, u32)], cfg: &Config) -> Result<Plane> {
    let mut ebpf = dataplane::load(cfg.max_legs)?;
    let log_task = start_ebpf_logger(&mut ebpf);
    let dp = DataPlane::from_ebpf(&mut ebpf)?;
    let mut egress = EgressMap::from_ebpf(&mut ebpf)?;
    let reflector = Reflector::from_ebpf(&mut ebpf)?;
    let nexthops = NextHops::from_ebpf(&mut ebpf)?;
    let turn = TurnMaps::from_ebpf(&mut ebpf)?;
    instance.create_dirs()?;
    let result = (|| {
        dp.pin(instance)?;
        egress.pin(instance)?;
        reflector.pin(instance)?;
        nexthops.pin(instance)?;
        turn.pin(instance)?;
        let prog = dataplane::relay_program(&mut ebpf)?;
        prog.pin(instance.prog_path())
            .context("pinning the XDP program")?;
        let mut views = vec![];
        for (name, idx) in ifaces {
            views.push(attach_one(prog, &mut egress, instance, name, *idx, cfg)?);
        }
        Ok::<_, anyhow::Error>(views)
    })();
    match result {
        Ok(interfaces) => Ok(Plane {
            dp,
            reflector,
            nexthops: Some(nexthops),
            turn: Some(turn),
            interfaces,
            adopted: false,
            keep: Keep {
                _ebpf: Some(ebpf),
                _log_task: log_task,
            },
        }),
        Err(e) => {
            let _ = instance.remove();
            Err(e)
        }
    }
}

/// Take over a pinned data plane (hitless restart): its maps keep their legs and counters,
/// its links keep forwarding. Interfaces configured now but not attached yet are attached
/// with the pinned program; pinned interfaces no longer configured are left as they are.
pub(super) fn adopt(
    instance: &Instance,
    ifaces: &[(String, u32)],
    cfg: &Config,
    saved: Option<&state::StateFile>,
) -> Result<Plane> {
    let dp = DataPlane::open(instance).with_context(|| {
        format!(
            "adopting the pinned data plane at {} (remove it with `relay-ctl detach`)",
            instance.dir().display()
        )
    })?;
    let mut egress = EgressMap::open(instance)?;
    let reflector = Reflector::open(instance)?;
    let nexthops = NextHops::open(instance)?;
    let turn = TurnMaps::open(instance)?;
    let pinned = instance.pinned_links()?;
    let mut views = vec![];
    let mut prog: Option<Xdp> = None;
    for (name, idx) in ifaces {
        if pinned.contains(name) {
            let mode = saved
                .and_then(|s| s.interfaces.iter().find(|i| i.name == *name))
                .map_or("unknown", |i| i.xdp_mode.as_str())
                .to_owned();
            log::info!("adopted XDP on {name} (ifindex {idx}) in {mode} mode");
            views.push(InterfaceView {
                name: name.clone(),
                ifindex: *idx,
                xdp_mode: mode,
                addrs: vec![],
            });
            continue;
        }
        if prog.is_none() {
            prog = Some(
                Xdp::from_pin(instance.prog_path(), XdpAttachType::Interface)
                    .context("opening the pinned XDP program")?,
            );
        }
        if let Some(p) = prog.as_mut() {
            views.push(attach_one(p, &mut egress, instance, name, *idx, cfg)?);
        }
    }
    for name in pinned
        .iter()
        .filter(|p| !ifaces.iter().any(|(n, _)| n == *p))
    {
        log::warn!(
            "{name}: still attached from before but not configured now; `relay-ctl detach` removes all"
        );
    }
    log::info!(
        "adopted pinned data plane at {} ({} legs in the kernel table)",
        instance.dir().display(),
        dp.legs().map(|l| l.len()).unwrap_or(0)
    );
    Ok(Plane {
        dp,
        reflector,
        nexthops,
        turn,
        interfaces: views,
        adopted: true,
        keep: Keep {
            _ebpf: None,
            _log_task: None,
        },
    })
}

fn attach_one(
    prog: &mut Xdp,
    egress: &mut EgressMap,
    instance: &Instance,
    name: &str,
    idx: u32,
    cfg: &Config,
) -> Result<InterfaceView> {
    if !cfg.keep_forwarding_sysctl {
        enable_forwarding(name)?;
    }
    egress.add(idx)?;
    let (link, mode) = dataplane::attach_xdp(prog, name, idx, cfg.xdp_mode)?;
    link.pin(instance.link_path(name))
        .with_context(|| format!("pinning the XDP link of {name}"))?;
    log::info!(
        "attached XDP to {name} (ifindex {idx}) in {} mode",
        mode.as_str()
    );
    Ok(InterfaceView {
        name: name.to_owned(),
        ifindex: idx,
        xdp_mode: mode.as_str().to_owned(),
        addrs: vec![],
    })
}

/// bpf_fib_lookup refuses (FWD_DISABLED) on an interface with forwarding off, per family.
/// Turning it on per interface also lets the stack route transit packets arriving there:
/// filter those in nftables' forward hook if the box must not route (XDP-forwarded media never
/// reaches it). For IPv6 it also makes the interface ignore router advertisements (a router
/// does not autoconfigure): give the relay interfaces static addresses. An interface without
/// IPv6 (disabled, or no such sysctl) is left as it is: IPv6 legs just stay in userspace.
fn enable_forwarding(ifname: &str) -> Result<()> {
    for family in ["ipv4", "ipv6"] {
        let path = format!("/proc/sys/net/{family}/conf/{ifname}/forwarding");
        let cur = match fs::read_to_string(&path) {
            Ok(c) => c,
            Err(e) if family == "ipv6" => {
                log::info!(
                    "{ifname}: no IPv6 forwarding sysctl ({e}); IPv6 media stays in userspace"
                );
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("reading {path}")),
        };
        if cur.trim() != "1" {
            fs::write(&path, "1").with_context(|| format!("writing {path}"))?;
            log::info!(
                "{ifname}: enabled net.{family}.conf.{ifname}.forwarding (needed by bpf_fib_lookup)"
            );
        }
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
