//! `relay-ctl daemon`: load (or adopt) the data plane, attach it to the relay interfaces, pin
//! everything under the instance directory, run the session controller and the HTTP API
//! until SIGTERM/SIGINT.
//!
//! On exit the pins and the state file stay (forwarding continues with no controller, and
//! the next daemon adopts both) unless `--detach-on-exit`.
use std::{
    fs,
    net::IpAddr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use aya::{Ebpf, programs::Xdp};
use aya_obj::programs::XdpAttachType;
use tokio::signal::unix::{SignalKind, signal};

pub use crate::config::DaemonArgs;
use crate::{
    api::{self, InterfaceView},
    config::{self, Config},
    dataplane::{self, DataPlane, EgressMap, Instance, Reflector},
    netlink,
    netns::ifindex,
    ports::{PortAllocator, PortRange},
    sessions::{Controller, ControllerConfig, state, timeouts::Timeouts},
    sip,
};

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

/// The data plane this daemon runs with, fresh or adopted.
struct Plane {
    dp: DataPlane,
    /// Reflector/STUN maps, pinned with the rest (configured by `reflector::control::start`).
    reflector: Reflector,
    interfaces: Vec<InterfaceView>,
    adopted: bool,
    /// Keeps the freshly loaded object (and its log map reader) alive.
    _ebpf: Option<Ebpf>,
    _log_task: Option<tokio::task::JoinHandle<()>>,
}

pub async fn run(inst: &InstanceArgs, args: &DaemonArgs) -> Result<()> {
    let t0 = Instant::now();
    let cfg = config::resolve(args, &inst.instance)?;
    let instance = inst.instance()?;
    let _lock = lock_instance(&cfg.state_file, &inst.instance)?;
    let ifaces: Vec<(String, u32)> = cfg
        .ifaces
        .iter()
        .map(|n| Ok((n.clone(), ifindex(n)?)))
        .collect::<Result<_>>()?;
    // Addresses come from the interfaces (netlink) unless given; with --relay-addr an
    // interface without an address is fine, its addresses only label the interface.
    let (addrs_by_if, relay_addrs): (Vec<(String, Vec<IpAddr>)>, Vec<IpAddr>) =
        if cfg.relay_addrs.is_empty() {
            let by_if = netlink::relay_addrs(&cfg.ifaces).await?;
            let mut all: Vec<IpAddr> = vec![];
            for a in by_if.iter().flat_map(|(_, a)| a) {
                if !all.contains(a) {
                    all.push(*a);
                }
            }
            (by_if, all)
        } else {
            let mut by_if = vec![];
            for name in &cfg.ifaces {
                by_if.push((
                    name.clone(),
                    netlink::interface_addrs(name).await.unwrap_or_default(),
                ));
            }
            (by_if, cfg.relay_addrs.clone())
        };
    anyhow::ensure!(
        !relay_addrs.is_empty(),
        "no relay address: the interfaces have none; give --relay-addr"
    );
    let range = PortRange::new(cfg.port_min, cfg.port_max)
        .map_err(|e| anyhow::anyhow!("port range: {e}"))?;
    // One bound socket per relay port and address: lift the soft open-files limit, and say
    // at start (not at the 1000th call) when the range cannot fit in it.
    match crate::limits::raise_nofile() {
        Ok(limit) => {
            let ports = u64::from(cfg.port_max) - u64::from(cfg.port_min) + 1;
            let sockets = ports * relay_addrs.len() as u64;
            match crate::limits::shortfall(sockets, limit) {
                Some(w) => log::warn!("{w}"),
                None => log::info!("open-files limit {limit}"),
            }
        }
        Err(e) => log::warn!("cannot read or raise the open-files limit: {e}"),
    }
    // Bind the API first: if the address is taken we fail before touching the data plane.
    let listener = tokio::net::TcpListener::bind(cfg.api_listen)
        .await
        .with_context(|| format!("binding the HTTP API to {}", cfg.api_listen))?;
    let ng_sock = crate::ng::bind(cfg.ng_listen).await?;
    let sip_sockets = if cfg.sip_port == 0 {
        vec![]
    } else {
        sip::server::bind(&relay_addrs, cfg.sip_port).await?
    };

    let saved = match state::load(&cfg.state_file) {
        Ok(s) => s.filter(|s| s.instance == inst.instance),
        Err(e) => {
            log::warn!("ignoring the state file: {e:#}");
            None
        }
    };
    let plane = if instance.exists() {
        adopt(&instance, &ifaces, &cfg, saved.as_ref())?
    } else {
        fresh(&instance, &ifaces, &cfg)?
    };
    let mut interfaces = plane.interfaces;
    for v in &mut interfaces {
        if let Some((_, a)) = addrs_by_if.iter().find(|(n, _)| *n == v.name) {
            v.addrs = a.clone();
        }
    }

    let ctl = Controller::new(
        ControllerConfig {
            instance: inst.instance.clone(),
            relay_addrs: relay_addrs.clone(),
            policy: cfg.policy,
            holdoff: cfg.relatch_holdoff,
            timeouts: Timeouts {
                no_media: cfg.timeouts.no_media,
                silent: cfg.timeouts.silent,
                offer: cfg.timeouts.offer,
            },
            state_file: cfg.state_file.clone(),
            interfaces,
            adopted: plane.adopted,
        },
        plane.dp,
        PortAllocator::new(&relay_addrs, range, cfg.quarantine),
        tokio::runtime::Handle::current(),
    );
    if let Some(st) = saved {
        ctl.restore(st);
    }
    ctl.save_state();

    let sweeper = {
        let ctl = Arc::downgrade(&ctl);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(ctl) = ctl.upgrade() else { return };
                ctl.sweep();
            }
        })
    };
    let writer = tokio::spawn(ctl.clone().state_writer());
    // Reflector maps, clock and keys, and the STUN server; the API gets tickets through it.
    let extras = crate::reflector::control::start(
        plane.reflector,
        &cfg,
        &relay_addrs,
        ctl.clone() as Arc<dyn api::Control>,
    )
    .await?;
    let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let api_task = {
        let ctl: Arc<dyn api::Control> = extras.api.clone();
        tokio::spawn(api::router::serve(listener, ctl, async move {
            let _ = api_stopped.await;
        }))
    };

    let ng_task = crate::ng::spawn(
        ng_sock,
        ctl.clone(),
        crate::ng::NgConfig {
            relay_addrs: relay_addrs.clone(),
            interfaces: addrs_by_if.clone(),
        },
    );
    let sip_tasks = (!sip_sockets.is_empty()).then(|| {
        let setup = sip::SessionSetup::new(
            ctl.clone(),
            sip::SetupConfig {
                private: cfg.sip_private_nets.clone(),
                sip_port: cfg.sip_port,
            },
        );
        log::info!(
            "SIP relay interface (seed 003) on port {} of {}",
            cfg.sip_port,
            relay_addrs
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        sip::server::serve(sip_sockets, Arc::new(setup))
    });

    log::info!(
        "ready: instance {:?} {} at {} (max legs {}), relay addresses {}, ports {}-{}, policy {}, API http://{}, {} session(s), started in {} ms",
        inst.instance,
        if plane.adopted { "adopted" } else { "pinned" },
        instance.dir().display(),
        cfg.max_legs,
        relay_addrs
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(","),
        cfg.port_min,
        cfg.port_max,
        cfg.policy,
        cfg.api_listen,
        ctl.session_count(),
        t0.elapsed().as_millis()
    );

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => log::info!("SIGTERM"),
        _ = int.recv() => log::info!("SIGINT"),
    }
    sweeper.abort();
    ng_task.abort();
    writer.abort();
    drop(sip_tasks);
    drop(extras);
    let _ = stop_api.send(());
    match tokio::time::timeout(Duration::from_secs(5), api_task).await {
        Ok(Ok(Err(e))) => log::warn!("HTTP API: {e:#}"),
        Err(_) => log::warn!("HTTP API did not stop within 5 s"),
        _ => {}
    }
    if cfg.detach_on_exit {
        drop(ctl);
        instance.remove()?;
        state::remove(&cfg.state_file)?;
        let _ = fs::remove_file(crate::reflector::service::ring_file(&cfg.state_file));
        let mut lock = cfg.state_file.as_os_str().to_owned();
        lock.push(".lock");
        let _ = fs::remove_file(lock);
        log::info!("detached and removed {}", instance.dir().display());
    } else {
        ctl.save_state();
        log::info!(
            "exiting; XDP stays attached and forwarding (pins at {}, sessions in {}); `relay-ctl detach` removes it",
            instance.dir().display(),
            cfg.state_file.display()
        );
    }
    Ok(())
}

/// One daemon per instance: two adopting the same pins would fight over the leg table.
/// flock(2) is released by the kernel when the holder dies, so kill -9 never leaves a stale
/// lock behind.
fn lock_instance(state_file: &std::path::Path, name: &str) -> Result<fs::File> {
    use std::os::fd::AsRawFd;
    let mut path = state_file.as_os_str().to_owned();
    path.push(".lock");
    let path = PathBuf::from(path);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: flock on a file descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        anyhow::bail!(
            "another daemon is running instance {name:?} (it holds {}); stop it first",
            path.display()
        );
    }
    Ok(f)
}

/// Load the object, pin it, attach to every interface. A failure removes what was pinned.
fn fresh(instance: &Instance, ifaces: &[(String, u32)], cfg: &Config) -> Result<Plane> {
    let mut ebpf = dataplane::load(cfg.max_legs)?;
    let log_task = start_ebpf_logger(&mut ebpf);
    let dp = DataPlane::from_ebpf(&mut ebpf)?;
    let mut egress = EgressMap::from_ebpf(&mut ebpf)?;
    let reflector = Reflector::from_ebpf(&mut ebpf)?;
    instance.create_dirs()?;
    let result = (|| {
        dp.pin(instance)?;
        egress.pin(instance)?;
        reflector.pin(instance)?;
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
            interfaces,
            adopted: false,
            _ebpf: Some(ebpf),
            _log_task: log_task,
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
fn adopt(
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
        interfaces: views,
        adopted: true,
        _ebpf: None,
        _log_task: None,
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
