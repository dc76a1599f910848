//! `relay-ctl daemon`: load (or adopt) the data plane, attach it to the relay interfaces, pin
//! everything under the instance directory, run the session controller and its front ends
//! until SIGTERM/SIGINT. `run` reads as its phases, in order: discover the interfaces, bind
//! every listener, load the saved sessions, open the data plane (`plane.rs`: fresh or
//! adopted), start the controller, steer the relay ports to its receive sockets, follow the
//! network for the next-hop cache, start its tasks, the STUN server, the reflector, and the front ends (HTTP, ng, SIP); then wait for a
//! signal and stop.
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
use tokio::{
    signal::unix::{SignalKind, signal},
    task::JoinHandle,
};

mod plane;
mod reflector;
mod turn;

pub use crate::config::DaemonArgs;
use crate::{
    api,
    config::{self, Config},
    dataplane::{self, Instance, NextHops, Reflector},
    netlink,
    netlink::ifindex,
    ports::{PortAllocator, PortRange},
    sessions::{Controller, ControllerConfig, state, timeouts::Timeouts},
    sip,
    stun::StunStats,
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

pub async fn run(inst: &InstanceArgs, args: &DaemonArgs) -> Result<()> {
    let t0 = Instant::now();
    let cfg = config::resolve(args, &inst.instance)?;
    let instance = inst.instance()?;
    let _lock = lock_instance(&cfg.state_file, &inst.instance)?;
    let net = discover(&cfg).await?;
    let range = PortRange::new(cfg.port_min, cfg.port_max)
        .map_err(|e| anyhow::anyhow!("port range: {e}"))?;
    // Every listener before the data plane: a taken address fails the start untouched.
    let listeners = bind_listeners(&cfg, &net.relay_addrs).await?;
    let saved = load_state(&cfg, &inst.instance);
    let plane = if instance.exists() {
        plane::adopt(&instance, &net.ifaces, &cfg, saved.as_ref())?
    } else {
        plane::fresh(&instance, &net.ifaces, &cfg)?
    };
    let adopted = plane.adopted;
    let (ctl, reflector_maps, nexthops, _keep) =
        start_controller(inst, &cfg, &net, range, plane, saved);
    let _steering = start_steering(&ctl, &net, range)?;
    let _nexthop_watch = start_nexthop_watch(nexthops, &cfg, &ctl)?;
    let tasks = start_tasks(&ctl);
    let turn = turn::start(&cfg, &net.relay_addrs, &ctl).await?;
    let stun = start_stun(&cfg, &net.relay_addrs, turn.as_ref());
    let reflector = reflector::start(
        reflector_maps,
        &cfg,
        &net.relay_addrs,
        ctl.clone() as Arc<dyn api::Control>,
        stun.stats.clone(),
        turn.clone(),
    )
    .await?;
    let fronts = start_front_ends(listeners, &cfg, &net, &ctl, reflector.api.clone());
    log::info!(
        "ready: instance {:?} {} at {} (max legs {}), relay addresses {}, ports {}-{}, policy {}, API http://{}, {} session(s), started in {} ms",
        inst.instance,
        if adopted { "adopted" } else { "pinned" },
        instance.dir().display(),
        cfg.max_legs,
        join(&net.relay_addrs),
        cfg.port_min,
        cfg.port_max,
        cfg.policy,
        cfg.api_listen,
        ctl.session_count(),
        t0.elapsed().as_millis()
    );

    wait_for_signal().await?;
    tasks.stop();
    fronts.stop().await;
    drop(reflector);
    drop(stun);
    // TURN allocations do not outlive the daemon: their kernel marks go with them.
    if let Some(t) = turn {
        t.shutdown();
    }
    if cfg.detach_on_exit {
        drop(ctl);
        detach(&instance, &cfg)?;
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

/// The relay interfaces and addresses the daemon serves.
struct Network {
    /// Configured interfaces and their ifindexes.
    ifaces: Vec<(String, u32)>,
    /// Each interface's addresses (for `direction=` in ng and the interface view).
    addrs_by_if: Vec<(String, Vec<IpAddr>)>,
    /// The relay's addresses; the first is the default for a side.
    relay_addrs: Vec<IpAddr>,
}

/// Phase 1: interfaces and addresses (netlink). Addresses come from the interfaces unless
/// given; with --relay-addr an interface without an address is fine, its addresses only
/// label the interface.
async fn discover(cfg: &Config) -> Result<Network> {
    let ifaces: Vec<(String, u32)> = cfg
        .ifaces
        .iter()
        .map(|n| Ok((n.clone(), ifindex(n)?)))
        .collect::<Result<_>>()?;
    let (addrs_by_if, relay_addrs) = if cfg.relay_addrs.is_empty() {
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
    Ok(Network {
        ifaces,
        addrs_by_if,
        relay_addrs,
    })
}

/// The front ends' sockets, bound before anything else changes.
struct Listeners {
    api: tokio::net::TcpListener,
    ng: tokio::net::UdpSocket,
    sip: Vec<tokio::net::UdpSocket>,
}

/// Phase 2: bind the HTTP API, ng and SIP listeners.
async fn bind_listeners(cfg: &Config, relay_addrs: &[IpAddr]) -> Result<Listeners> {
    let api = tokio::net::TcpListener::bind(cfg.api_listen)
        .await
        .with_context(|| format!("binding the HTTP API to {}", cfg.api_listen))?;
    let ng = crate::ng::bind(cfg.ng_listen).await?;
    let sip = if cfg.sip_port == 0 {
        vec![]
    } else {
        sip::server::bind(relay_addrs, cfg.sip_port).await?
    };
    Ok(Listeners { api, ng, sip })
}

/// Phase 3: the sessions a previous daemon of this instance left (none if unreadable).
fn load_state(cfg: &Config, instance: &str) -> Option<state::StateFile> {
    match state::load(&cfg.state_file) {
        Ok(s) => s.filter(|s| s.instance == instance),
        Err(e) => {
            log::warn!("ignoring the state file: {e:#}");
            None
        }
    }
}

/// Phase 5: the session controller over the data plane, with the saved sessions adopted.
/// Returns the reflector's maps for phase 8.
fn start_controller(
    inst: &InstanceArgs,
    cfg: &Config,
    net: &Network,
    range: PortRange,
    plane: plane::Plane,
    saved: Option<state::StateFile>,
) -> (Arc<Controller>, Reflector, Option<NextHops>, plane::Keep) {
    let plane::Plane {
        dp,
        reflector,
        nexthops,
        // The TURN channel maps are pinned with the rest; the controller writes the TURN
        // server's channels into them (`sessions/turn.rs`).
        turn,
        mut interfaces,
        adopted,
        keep,
    } = plane;
    if turn.is_none() {
        log::info!(
            "the adopted data plane predates the TURN channel maps: TURN ChannelData stays in userspace until `relay-ctl detach` and a fresh start"
        );
    }
    for v in &mut interfaces {
        if let Some((_, a)) = net.addrs_by_if.iter().find(|(n, _)| *n == v.name) {
            v.addrs = a.clone();
        }
    }
    let ctl = Controller::new(
        ControllerConfig {
            instance: inst.instance.clone(),
            relay_addrs: net.relay_addrs.clone(),
            policy: cfg.policy,
            holdoff: cfg.relatch_holdoff,
            timeouts: Timeouts {
                no_media: cfg.timeouts.no_media,
                silent: cfg.timeouts.silent,
                offer: cfg.timeouts.offer,
            },
            state_file: cfg.state_file.clone(),
            interfaces,
            adopted,
        },
        dp,
        PortAllocator::new(&net.relay_addrs, range, cfg.quarantine),
        tokio::runtime::Handle::current(),
    );
    if let Some(t) = turn
        && let Err(e) = ctl.set_turn_maps(t)
    {
        log::warn!("TURN: the channel maps cannot be used ({e}); ChannelData stays in userspace");
    }
    if let Some(st) = saved {
        ctl.restore(st);
    }
    ctl.save_state();
    (ctl, reflector, nexthops, keep)
}

/// Phase 6: the relay ports of every relay address steered to one receive socket each
/// (`dataplane/steer.rs`), served by the controller. After the restore, so the first packets
/// find their sessions' ports owned.
fn start_steering(
    ctl: &Arc<Controller>,
    net: &Network,
    range: PortRange,
) -> Result<dataplane::steer::Steering> {
    let (steering, socks) = dataplane::steer::start(&net.relay_addrs, range)?;
    ctl.serve_relay_sockets(socks)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(steering)
}

/// Phase 6b: the next-hop cache's watcher (`nexthop.rs`), or the cache turned off.
fn start_nexthop_watch(
    nexthops: Option<NextHops>,
    cfg: &Config,
    ctl: &Arc<Controller>,
) -> Result<Option<crate::nexthop::Watcher>> {
    match nexthops {
        Some(nh) => Ok(Some(crate::nexthop::start(nh, cfg.nexthop_cache, ctl)?)),
        None => {
            log::warn!(
                "the adopted data plane predates the next-hop cache (it looks up the FIB for every packet); `relay-ctl detach` and a fresh start enable it"
            );
            Ok(None)
        }
    }
}

/// The controller's background tasks: the timeout sweeper and the state writer.
struct Tasks {
    sweeper: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Tasks {
    fn stop(self) {
        self.sweeper.abort();
        self.writer.abort();
    }
}

/// Phase 7: the sweeper (timeouts, every second) and the coalescing state writer.
fn start_tasks(ctl: &Arc<Controller>) -> Tasks {
    let sweeper = {
        let ctl = Arc::downgrade(ctl);
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
    Tasks { sweeper, writer }
}

/// The controller's STUN server (RFC 8489/5780; plain Bindings are answered in XDP).
struct Stun {
    stats: Arc<StunStats>,
    _server: Option<crate::stun::server::StunServer>,
}

/// Phase 8: the STUN server on the relay's IPv4 addresses, if a port is configured. With the
/// TURN server on the same port, its sockets serve both: TURN's messages are handed over.
fn start_stun(
    cfg: &Config,
    relay_addrs: &[IpAddr],
    turn: Option<&Arc<crate::turn::server::TurnServer>>,
) -> Stun {
    let delegate = turn
        .filter(|_| turn::shares_stun(cfg))
        .map(|t| t.clone() as Arc<dyn crate::stun::server::Delegate>);
    let stats = Arc::new(StunStats::default());
    let r = &cfg.reflector;
    let server = (r.stun_port != 0).then(|| {
        crate::stun::server::start(
            crate::stun::handler::Layout {
                addrs: relay_addrs
                    .iter()
                    .copied()
                    .filter(|a| a.is_ipv4())
                    .collect(),
                alt: r.stun_alt_addr,
                port: r.stun_port,
                alt_port: r.stun_alt_port,
            },
            r.stun_rate,
            stats.clone(),
            delegate.clone(),
        )
    });
    if let (Some(s), Some(t), Some(_)) = (&server, turn, &delegate) {
        for (addr, sock) in &s.sockets {
            t.adopt(*addr, sock.clone());
        }
    }
    Stun {
        stats,
        _server: server,
    }
}

/// The signalling front ends, all over the one controller.
struct FrontEnds {
    api: JoinHandle<Result<()>>,
    stop_api: tokio::sync::oneshot::Sender<()>,
    ng: JoinHandle<()>,
    sip: Option<tokio::task::JoinSet<()>>,
}

impl FrontEnds {
    async fn stop(self) {
        self.ng.abort();
        drop(self.sip);
        let _ = self.stop_api.send(());
        match tokio::time::timeout(Duration::from_secs(5), self.api).await {
            Ok(Ok(Err(e))) => log::warn!("HTTP API: {e:#}"),
            Err(_) => log::warn!("HTTP API did not stop within 5 s"),
            _ => {}
        }
    }
}

/// Phase 9: serve the HTTP API (with the reflector's tickets and metrics), ng and the SIP
/// relay interface.
fn start_front_ends(
    l: Listeners,
    cfg: &Config,
    net: &Network,
    ctl: &Arc<Controller>,
    api_ctl: Arc<dyn api::Control>,
) -> FrontEnds {
    let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let api = tokio::spawn(api::server::serve(
        l.api,
        api_ctl,
        api::server::Limits::default(),
        async move {
            let _ = api_stopped.await;
        },
    ));
    let ng = crate::ng::spawn(
        l.ng,
        ctl.clone(),
        crate::ng::NgConfig {
            relay_addrs: net.relay_addrs.clone(),
            interfaces: net.addrs_by_if.clone(),
        },
    );
    let sip = (!l.sip.is_empty()).then(|| {
        let setup = sip::SessionSetup::new(
            ctl.clone(),
            sip::SetupConfig {
                private: cfg.sip_private_nets.clone(),
                sip_port: cfg.sip_port,
                allow: sip_allow(cfg, &net.relay_addrs),
                rate: cfg.sip_rate,
            },
        );
        log::info!(
            "SIP relay interface (seed 003) on port {} of {}",
            cfg.sip_port,
            join(&net.relay_addrs)
        );
        sip::server::serve(l.sip, Arc::new(setup))
    });
    FrontEnds {
        api,
        stop_api,
        ng,
        sip,
    }
}

/// The SIP proxies allowed to use the SIP relay interface: as configured, else a proxy on
/// this box (its relay addresses and loopback).
fn sip_allow(cfg: &Config, relay_addrs: &[IpAddr]) -> Vec<crate::prefix::Prefix> {
    if !cfg.sip_allow.is_empty() {
        return cfg.sip_allow.clone();
    }
    let mut allow: Vec<crate::prefix::Prefix> = relay_addrs
        .iter()
        .map(|a| crate::prefix::Prefix::host(*a))
        .collect();
    allow.push(crate::prefix::Prefix {
        addr: IpAddr::from([127, 0, 0, 0]),
        len: 8,
    });
    allow.push(crate::prefix::Prefix::host(IpAddr::from(
        std::net::Ipv6Addr::LOCALHOST,
    )));
    allow
}

async fn wait_for_signal() -> Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => log::info!("SIGTERM"),
        _ = int.recv() => log::info!("SIGINT"),
    }
    Ok(())
}

/// `--detach-on-exit`: remove the pins, the state file, the key ring and the lock file.
fn detach(instance: &Instance, cfg: &Config) -> Result<()> {
    instance.remove()?;
    state::remove(&cfg.state_file)?;
    let _ = fs::remove_file(crate::reflector::service::ring_file(&cfg.state_file));
    let mut lock = cfg.state_file.as_os_str().to_owned();
    lock.push(".lock");
    let _ = fs::remove_file(lock);
    log::info!("detached and removed {}", instance.dir().display());
    Ok(())
}

fn join(addrs: &[IpAddr]) -> String {
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",")
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
