//! Daemon configuration: a TOML file plus flags. A flag overrides the file's key, the file
//! overrides the built-in default, and [`resolve`] turns the three into one validated
//! [`Config`].
//!
//! The file's keys are the long flags' names (kebab-case), so `--port-min 31000` and
//! `port-min = 31000` mean the same. Unknown keys are errors naming the key and the file. This
//! is `docs/relay.example.toml` (a unit test parses it, so it stays valid):
//!
//! ```toml
#![doc = include_str!("../../docs/relay.example.toml")]
//! ```
use std::{
    collections::HashSet,
    fs,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::{
    api::LatchPolicy,
    dataplane::XdpModeChoice,
    logfmt::LogFormat,
    prefix::Prefix,
    reflector::config::{ReflectorArgs, ReflectorConfig, ReflectorFile},
    turn::config::{TurnArgs, TurnConfig, TurnFile},
};

pub const DEFAULT_PORT_MIN: u16 = 30000;
pub const DEFAULT_PORT_MAX: u16 = 39999;
pub const DEFAULT_QUARANTINE_SECS: u64 = 30;
pub const DEFAULT_API_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 9901);
/// rtpengine's ng default: a SIP proxy's `rtpengine_sock = "udp:127.0.0.1:2223"` finds us.
pub const DEFAULT_NG_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 2223);
pub const DEFAULT_STATE_DIR: &str = "/run/media-relay";
pub const DEFAULT_RELATCH_HOLDOFF_MS: u64 = 1000;
/// rtpengine's defaults (docs/design.md section 5).
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;
pub const DEFAULT_SILENT_TIMEOUT_SECS: u64 = 3600;
pub const DEFAULT_OFFER_TIMEOUT_SECS: u64 = 3600;
/// Seed 003's relay interface; 5060 is left to the SIP proxy on the same box.
pub const DEFAULT_SIP_PORT: u16 = 5062;
/// SIP relay interface requests per second per source (a proxy's rate; also the burst).
pub const DEFAULT_SIP_RATE: u32 = 200;

/// `relay-ctl daemon` flags. Every field can say "not given" (None, empty, false) so the
/// config file can fill it in.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct DaemonArgs {
    /// TOML config file; its keys are these flags' names (see docs/relay.example.toml).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Interface to relay on (repeat for several; replaces the file's list).
    #[arg(long = "iface", value_name = "IF")]
    pub ifaces: Vec<String>,
    /// Relay address to allocate on and advertise (repeat for several) [default: the
    /// interfaces' global addresses].
    #[arg(long = "relay-addr", value_name = "IP")]
    pub relay_addrs: Vec<IpAddr>,
    /// XDP attach mode [default: auto].
    #[arg(long, value_enum)]
    pub xdp_mode: Option<XdpModeChoice>,
    /// Capacity of the leg table and the per-leg counters [default: 65536].
    #[arg(long, value_name = "N")]
    pub max_legs: Option<u32>,
    /// Lowest relay port [default: 30000].
    #[arg(long, value_name = "PORT")]
    pub port_min: Option<u16>,
    /// Highest relay port [default: 39999].
    #[arg(long, value_name = "PORT")]
    pub port_max: Option<u16>,
    /// Seconds a freed port waits before reuse [default: 30].
    #[arg(long, value_name = "SECS")]
    pub quarantine_secs: Option<u64>,
    /// HTTP API listen address [default: 127.0.0.1:9901].
    #[arg(long, value_name = "ADDR")]
    pub api_listen: Option<SocketAddr>,
    /// rtpengine "ng" control protocol listen address (UDP) for Kamailio's / OpenSIPS'
    /// rtpengine module: set `rtpengine_sock = "udp:127.0.0.1:2223"` there [default:
    /// 127.0.0.1:2223]. docs/ng.md lists the commands and flags.
    #[arg(long, value_name = "ADDR")]
    pub ng_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub reflector: ReflectorArgs,
    #[command(flatten)]
    pub turn: TurnArgs,
    /// Session state file [default: /run/media-relay/<instance>.json].
    #[arg(long, value_name = "PATH")]
    pub state_file: Option<PathBuf>,
    /// Latching policy [default: immediate].
    #[arg(long, value_enum)]
    pub policy: Option<LatchPolicy>,
    /// Minimum milliseconds between two latch changes on a leg [default: 1000].
    #[arg(long, value_name = "MS")]
    pub relatch_holdoff_ms: Option<u64>,
    /// Seconds without media from either side of an answered session [default: 60].
    #[arg(long, value_name = "SECS")]
    pub timeout_secs: Option<u64>,
    /// Seconds one side of a session may stay silent [default: 3600].
    #[arg(long, value_name = "SECS")]
    pub silent_timeout_secs: Option<u64>,
    /// Seconds a session may stay unanswered [default: 3600].
    #[arg(long, value_name = "SECS")]
    pub offer_timeout_secs: Option<u64>,
    /// Detach XDP and remove the pins on exit (default: keep forwarding without a controller).
    #[arg(long)]
    pub detach_on_exit: bool,
    /// Do not enable IPv4 and IPv6 forwarding on the relay interfaces (bpf_fib_lookup needs it).
    #[arg(long)]
    pub keep_forwarding_sysctl: bool,
    /// Look up the FIB for every forwarded packet instead of caching next hops (for boxes
    /// that route media by port, mark or flow label; see docs/dataplane.md).
    #[arg(long)]
    pub no_nexthop_cache: bool,
    /// UDP port of seed 003's SIP relay interface on each relay address; 0 turns it off
    /// [default: 5062].
    #[arg(long, value_name = "PORT")]
    pub sip_port: Option<u16>,
    /// Prefix whose SDP addresses the SIP relay interface treats as behind a NAT (learned
    /// from media instead), on top of the built-in private, CGNAT, loopback, link-local and
    /// unique-local classes; repeat for several [default: none].
    #[arg(long = "sip-private-net", value_name = "PREFIX")]
    pub sip_private_nets: Vec<Prefix>,
    /// Prefix of the SIP proxies that may use the SIP relay interface; repeat for several.
    /// Requests from anywhere else are dropped [default: this box's relay addresses and
    /// loopback, i.e. a proxy on the relay box].
    #[arg(long = "sip-allow", value_name = "PREFIX")]
    pub sip_allow: Vec<Prefix>,
    /// SIP relay interface requests per second per source address, also the burst; 0 = no
    /// limit [default: 200].
    #[arg(long, value_name = "N")]
    pub sip_rate: Option<u32>,
    /// Log line format: text, kv (logfmt) or json; on journald every format gets the
    /// priority prefix and no timestamp of ours [default: text].
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter in RUST_LOG syntax (e.g. `info,relay_ctl::ng=debug`); RUST_LOG, when set,
    /// overrides it [default: info].
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
}

/// Session timeouts, checked against the per-leg last-seen counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// No media from either side of an answered session.
    pub no_media: Duration,
    /// One side silent while the other sends.
    pub silent: Duration,
    /// Session never answered.
    pub offer: Duration,
}

/// The daemon's configuration with every default filled in and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub ifaces: Vec<String>,
    /// Empty: discover the interfaces' addresses over netlink at startup.
    pub relay_addrs: Vec<IpAddr>,
    pub xdp_mode: XdpModeChoice,
    pub max_legs: u32,
    pub port_min: u16,
    pub port_max: u16,
    pub quarantine: Duration,
    pub api_listen: SocketAddr,
    pub ng_listen: SocketAddr,
    pub reflector: ReflectorConfig,
    /// The TURN server (`port` 0: off).
    pub turn: TurnConfig,
    pub state_file: PathBuf,
    pub policy: LatchPolicy,
    pub relatch_holdoff: Duration,
    pub timeouts: Timeouts,
    pub detach_on_exit: bool,
    pub keep_forwarding_sysctl: bool,
    /// XDP caches next hops (the controller invalidates them on netlink events).
    pub nexthop_cache: bool,
    /// 0: the SIP relay interface is off.
    pub sip_port: u16,
    pub sip_private_nets: Vec<Prefix>,
    /// Empty: the relay addresses and loopback (filled in by the daemon).
    pub sip_allow: Vec<Prefix>,
    pub sip_rate: u32,
    /// Read before the logger starts (see [`log_settings`]); kept here so `resolve` sees the
    /// whole file.
    pub log: LogSettings,
}

/// The logger's settings: format (None: text) and filter (None: info; RUST_LOG wins).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogSettings {
    pub format: Option<LogFormat>,
    pub level: Option<String>,
}

/// The config file. Field names are the flags' (kebab-case) so there is one vocabulary.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    iface: Option<Vec<String>>,
    relay_addr: Option<Vec<IpAddr>>,
    xdp_mode: Option<FileXdpMode>,
    max_legs: Option<u32>,
    port_min: Option<u16>,
    port_max: Option<u16>,
    quarantine_secs: Option<u64>,
    api_listen: Option<SocketAddr>,
    ng_listen: Option<SocketAddr>,
    // Reflector and STUN (crate::reflector::config).
    reflector_port: Option<u16>,
    stun_port: Option<u16>,
    stun_alt_addr: Option<IpAddr>,
    stun_alt_port: Option<u16>,
    stun_rate: Option<u32>,
    reflect_rate: Option<u32>,
    reflect_burst: Option<u32>,
    reflect_src: Option<Vec<IpAddr>>,
    reflect_deny: Option<Vec<Prefix>>,
    reflect_key_rotate_secs: Option<u64>,
    reflect_key_grace_secs: Option<u64>,
    ticket_max_ttl_secs: Option<u64>,
    // TURN (crate::turn::config).
    turn_port: Option<u16>,
    turn_realm: Option<String>,
    turn_user: Option<Vec<String>>,
    turn_users_file: Option<PathBuf>,
    turn_secret_file: Option<PathBuf>,
    turn_secret: Option<String>,
    turn_deny: Option<Vec<Prefix>>,
    turn_user_quota: Option<u32>,
    turn_bandwidth: Option<u64>,
    turn_max_lifetime_secs: Option<u64>,
    turn_nonce_secs: Option<u64>,
    turn_rate: Option<u32>,
    turn_tls_port: Option<u16>,
    turn_tls_cert: Option<PathBuf>,
    turn_tls_key: Option<PathBuf>,
    state_file: Option<PathBuf>,
    policy: Option<LatchPolicy>,
    relatch_holdoff_ms: Option<u64>,
    timeout_secs: Option<u64>,
    silent_timeout_secs: Option<u64>,
    offer_timeout_secs: Option<u64>,
    detach_on_exit: Option<bool>,
    keep_forwarding_sysctl: Option<bool>,
    nexthop_cache: Option<bool>,
    sip_port: Option<u16>,
    sip_private_net: Option<Vec<Prefix>>,
    sip_allow: Option<Vec<Prefix>>,
    sip_rate: Option<u32>,
    log_format: Option<LogFormat>,
    log_level: Option<String>,
}

/// Mirror of [`XdpModeChoice`] for the file: the data plane's enum stays free of serde.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum FileXdpMode {
    Auto,
    Native,
    Generic,
}

impl From<FileXdpMode> for XdpModeChoice {
    fn from(m: FileXdpMode) -> Self {
        match m {
            FileXdpMode::Auto => XdpModeChoice::Auto,
            FileXdpMode::Native => XdpModeChoice::Native,
            FileXdpMode::Generic => XdpModeChoice::Generic,
        }
    }
}

/// Default state file of an instance: one file per instance, like the pin directory.
pub fn default_state_file(instance: &str) -> PathBuf {
    Path::new(DEFAULT_STATE_DIR).join(format!("{instance}.json"))
}

/// The log settings of flags and file, for the logger, which starts before [`resolve`] so the
/// daemon's first line is already in the chosen format. An unreadable file is [`resolve`]'s
/// error to report (main returns it: `Error: ...` on stderr, not a log record): here it gives
/// the defaults.
pub fn log_settings(args: &DaemonArgs) -> LogSettings {
    let file = args
        .config
        .as_deref()
        .and_then(|p| read_file(p).ok())
        .unwrap_or_default();
    LogSettings {
        format: args.log_format.or(file.log_format),
        level: args.log_level.clone().or(file.log_level),
    }
}

/// Merge flags, the `--config` file (if any) and the defaults, and validate the result.
pub fn resolve(args: &DaemonArgs, instance: &str) -> Result<Config> {
    let file = match &args.config {
        Some(path) => read_file(path)?,
        None => FileConfig::default(),
    };
    merge(args, file, instance)
}

fn read_file(path: &Path) -> Result<FileConfig> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    parse_file(&text, path)
}

fn parse_file(text: &str, path: &Path) -> Result<FileConfig> {
    // toml's message names the key and shows the line; the context names the file.
    toml::from_str(text).with_context(|| format!("config file {}", path.display()))
}

fn merge(args: &DaemonArgs, file: FileConfig, instance: &str) -> Result<Config> {
    // A list given as flags replaces the file's list: appending would make it impossible to
    // drop an interface from the command line.
    let ifaces = if args.ifaces.is_empty() {
        file.iface.unwrap_or_default()
    } else {
        args.ifaces.clone()
    };
    let relay_addrs = if args.relay_addrs.is_empty() {
        file.relay_addr.unwrap_or_default()
    } else {
        args.relay_addrs.clone()
    };
    let secs = |flag: Option<u64>, key: Option<u64>, default: u64| {
        Duration::from_secs(flag.or(key).unwrap_or(default))
    };
    let reflector = crate::reflector::config::merge(
        &args.reflector,
        ReflectorFile {
            reflector_port: file.reflector_port,
            stun_port: file.stun_port,
            stun_alt_addr: file.stun_alt_addr,
            stun_alt_port: file.stun_alt_port,
            stun_rate: file.stun_rate,
            reflect_rate: file.reflect_rate,
            reflect_burst: file.reflect_burst,
            reflect_src: file.reflect_src,
            reflect_deny: file.reflect_deny,
            reflect_key_rotate_secs: file.reflect_key_rotate_secs,
            reflect_key_grace_secs: file.reflect_key_grace_secs,
            ticket_max_ttl_secs: file.ticket_max_ttl_secs,
        },
    );
    let turn = crate::turn::config::merge(
        &args.turn,
        TurnFile {
            turn_port: file.turn_port,
            turn_realm: file.turn_realm,
            turn_user: file.turn_user,
            turn_users_file: file.turn_users_file,
            turn_secret_file: file.turn_secret_file,
            turn_secret: file.turn_secret,
            turn_deny: file.turn_deny,
            turn_user_quota: file.turn_user_quota,
            turn_bandwidth: file.turn_bandwidth,
            turn_max_lifetime_secs: file.turn_max_lifetime_secs,
            turn_nonce_secs: file.turn_nonce_secs,
            turn_rate: file.turn_rate,
            turn_tls_port: file.turn_tls_port,
            turn_tls_cert: file.turn_tls_cert,
            turn_tls_key: file.turn_tls_key,
        },
    )?;
    // XDP takes ChannelData on the TURN port (UDP only): the data plane's config carries it.
    let mut reflector = reflector;
    reflector.turn_port = turn.port;
    let cfg = Config {
        ifaces,
        relay_addrs,
        xdp_mode: args
            .xdp_mode
            .or(file.xdp_mode.map(Into::into))
            .unwrap_or(XdpModeChoice::Auto),
        max_legs: args
            .max_legs
            .or(file.max_legs)
            .unwrap_or(relay_common::DEFAULT_MAX_LEGS),
        port_min: args.port_min.or(file.port_min).unwrap_or(DEFAULT_PORT_MIN),
        port_max: args.port_max.or(file.port_max).unwrap_or(DEFAULT_PORT_MAX),
        quarantine: secs(
            args.quarantine_secs,
            file.quarantine_secs,
            DEFAULT_QUARANTINE_SECS,
        ),
        api_listen: args
            .api_listen
            .or(file.api_listen)
            .unwrap_or(DEFAULT_API_LISTEN),
        ng_listen: args
            .ng_listen
            .or(file.ng_listen)
            .unwrap_or(DEFAULT_NG_LISTEN),
        reflector,
        turn,
        state_file: args
            .state_file
            .clone()
            .or(file.state_file)
            .unwrap_or_else(|| default_state_file(instance)),
        policy: args.policy.or(file.policy).unwrap_or_default(),
        relatch_holdoff: Duration::from_millis(
            args.relatch_holdoff_ms
                .or(file.relatch_holdoff_ms)
                .unwrap_or(DEFAULT_RELATCH_HOLDOFF_MS),
        ),
        timeouts: Timeouts {
            no_media: secs(args.timeout_secs, file.timeout_secs, DEFAULT_TIMEOUT_SECS),
            silent: secs(
                args.silent_timeout_secs,
                file.silent_timeout_secs,
                DEFAULT_SILENT_TIMEOUT_SECS,
            ),
            offer: secs(
                args.offer_timeout_secs,
                file.offer_timeout_secs,
                DEFAULT_OFFER_TIMEOUT_SECS,
            ),
        },
        // A bare flag cannot say "false", so a flag can only switch these on.
        detach_on_exit: args.detach_on_exit || file.detach_on_exit.unwrap_or(false),
        keep_forwarding_sysctl: args.keep_forwarding_sysctl
            || file.keep_forwarding_sysctl.unwrap_or(false),
        // The flag can only turn it off; the file can say either.
        nexthop_cache: !args.no_nexthop_cache && file.nexthop_cache.unwrap_or(true),
        sip_port: args.sip_port.or(file.sip_port).unwrap_or(DEFAULT_SIP_PORT),
        sip_private_nets: if args.sip_private_nets.is_empty() {
            file.sip_private_net.unwrap_or_default()
        } else {
            args.sip_private_nets.clone()
        },
        sip_allow: if args.sip_allow.is_empty() {
            file.sip_allow.unwrap_or_default()
        } else {
            args.sip_allow.clone()
        },
        sip_rate: args.sip_rate.or(file.sip_rate).unwrap_or(DEFAULT_SIP_RATE),
        log: LogSettings {
            format: args.log_format.or(file.log_format),
            level: args.log_level.clone().or(file.log_level),
        },
    };
    validate(&cfg)?;
    Ok(cfg)
}

fn validate(cfg: &Config) -> Result<()> {
    if cfg.ifaces.is_empty() {
        bail!("no interface: give --iface or `iface = [...]` in the config file");
    }
    let mut seen = HashSet::new();
    for name in &cfg.ifaces {
        if name.is_empty() {
            bail!("empty interface name in iface");
        }
        // Attaching twice would fail later with a less helpful error.
        if !seen.insert(name) {
            bail!("interface {name} is given twice");
        }
    }
    for ip in &cfg.relay_addrs {
        // The relay address goes into SDP and is bound: it must be one unicast address.
        if ip.is_unspecified() || ip.is_multicast() {
            bail!("relay-addr {ip} is not a unicast address");
        }
    }
    let (min, max) = (cfg.port_min, cfg.port_max);
    if min < 1024 {
        bail!("port-min {min} is below 1024 (privileged ports are not for relaying)");
    }
    if min > max {
        bail!("port-min {min} is greater than port-max {max}");
    }
    // RTP takes an even port and RTCP the next one, so the range needs one such pair.
    let first_even = u32::from(min) + u32::from(min) % 2;
    if first_even + 1 > u32::from(max) {
        bail!(
            "port range {min}-{max} holds no even/odd pair (RTP on an even port, RTCP on the next)"
        );
    }
    crate::reflector::config::validate(&cfg.reflector, min, max)?;
    // The TURN port may share the STUN port (one socket serves both), no other.
    crate::turn::config::validate(
        &cfg.turn,
        min,
        max,
        &[
            ("sip-port", cfg.sip_port),
            ("reflector-port", cfg.reflector.reflector_port),
            (
                "stun-alt-port",
                if cfg.reflector.stun_alt_addr.is_some() {
                    cfg.reflector.stun_alt_port
                } else {
                    0
                },
            ),
        ],
    )?;
    // The whole range on the relay addresses is steered to the media receive sockets, so a
    // SIP listener there would never see a request.
    if cfg.sip_port != 0 && (min..=max).contains(&cfg.sip_port) {
        bail!(
            "sip-port {} is inside the relay port range {min}-{max}",
            cfg.sip_port
        );
    }
    if cfg.max_legs == 0 {
        bail!("max-legs must be at least 1");
    }
    for (key, d) in [
        ("timeout-secs", cfg.timeouts.no_media),
        ("silent-timeout-secs", cfg.timeouts.silent),
        ("offer-timeout-secs", cfg.timeouts.offer),
    ] {
        if d.is_zero() {
            bail!("{key} must be greater than 0");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use clap::Parser;

    use super::*;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        daemon: DaemonArgs,
    }

    fn args(argv: &[&str]) -> DaemonArgs {
        let mut full = vec!["relay-ctl"];
        full.extend_from_slice(argv);
        Cli::try_parse_from(full).unwrap().daemon
    }

    /// A config file in a fresh temporary directory, removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(tag: &str, text: &str) -> TempFile {
            let dir =
                std::env::temp_dir().join(format!("relay-ctl-config-{}-{tag}", std::process::id()));
            fs::create_dir_all(&dir).unwrap();
            let path = dir.join("relay.toml");
            fs::File::create(&path)
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            TempFile(path)
        }

        fn path(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            if let Some(dir) = self.0.parent() {
                let _ = fs::remove_dir_all(dir);
            }
        }
    }

    fn err(args: &DaemonArgs) -> String {
        format!("{:#}", resolve(args, "default").unwrap_err())
    }

    #[test]
    fn defaults_with_only_an_interface() {
        let cfg = resolve(&args(&["--iface", "eth0"]), "default").unwrap();
        assert_eq!(
            cfg,
            Config {
                ifaces: vec!["eth0".into()],
                relay_addrs: vec![],
                xdp_mode: XdpModeChoice::Auto,
                max_legs: relay_common::DEFAULT_MAX_LEGS,
                port_min: 30000,
                port_max: 39999,
                quarantine: Duration::from_secs(30),
                api_listen: "127.0.0.1:9901".parse().unwrap(),
                ng_listen: "127.0.0.1:2223".parse().unwrap(),
                reflector: ReflectorConfig::default(),
                turn: crate::turn::config::merge(&TurnArgs::default(), TurnFile::default(),)
                    .unwrap(),
                state_file: PathBuf::from("/run/media-relay/default.json"),
                policy: LatchPolicy::Immediate,
                relatch_holdoff: Duration::from_millis(1000),
                timeouts: Timeouts {
                    no_media: Duration::from_secs(60),
                    silent: Duration::from_secs(3600),
                    offer: Duration::from_secs(3600),
                },
                detach_on_exit: false,
                keep_forwarding_sysctl: false,
                nexthop_cache: true,
                sip_port: 5062,
                sip_private_nets: vec![],
                sip_allow: vec![],
                sip_rate: DEFAULT_SIP_RATE,
                log: LogSettings::default(),
            }
        );
    }

    #[test]
    fn no_interface_is_an_error() {
        let e = err(&args(&[]));
        assert!(
            e.contains("no interface: give --iface or `iface = [...]` in the config file"),
            "{e}"
        );
    }

    #[test]
    fn state_file_default_names_the_instance() {
        let cfg = resolve(&args(&["--iface", "eth0"]), "edge-2").unwrap();
        assert_eq!(
            cfg.state_file,
            PathBuf::from("/run/media-relay/edge-2.json")
        );
        assert_eq!(
            default_state_file("x"),
            PathBuf::from("/run/media-relay/x.json")
        );
    }

    const FULL_FILE: &str = r#"
iface = ["eth1", "eth2"]
relay-addr = ["203.0.113.5", "2001:db8::5"]
xdp-mode = "generic"
max-legs = 1024
port-min = 31000
port-max = 31999
quarantine-secs = 5
api-listen = "[2001:db8::1]:9000"
ng-listen = "[2001:db8::1]:2223"
reflector-port = 3480
stun-port = 3478
stun-alt-addr = "203.0.113.6"
stun-alt-port = 3479
reflect-rate = 10
reflect-burst = 5
reflect-src = ["203.0.113.5"]
reflect-deny = ["198.51.100.0/24"]
reflect-key-rotate-secs = 900
reflect-key-grace-secs = 120
ticket-max-ttl-secs = 60
state-file = "/var/lib/relay/state.json"
policy = "strict"
relatch-holdoff-ms = 250
timeout-secs = 30
silent-timeout-secs = 600
offer-timeout-secs = 120
detach-on-exit = true
keep-forwarding-sysctl = true
sip-port = 5070
sip-private-net = ["192.0.2.0/24"]
log-format = "json"
log-level = "info,relay_ctl::ng=debug"
"#;

    #[test]
    fn file_only() {
        let f = TempFile::new("file-only", FULL_FILE);
        let cfg = resolve(&args(&["--config", f.path()]), "default").unwrap();
        assert_eq!(
            cfg,
            Config {
                ifaces: vec!["eth1".into(), "eth2".into()],
                relay_addrs: vec![
                    "203.0.113.5".parse().unwrap(),
                    "2001:db8::5".parse().unwrap()
                ],
                xdp_mode: XdpModeChoice::Generic,
                max_legs: 1024,
                port_min: 31000,
                port_max: 31999,
                quarantine: Duration::from_secs(5),
                api_listen: "[2001:db8::1]:9000".parse().unwrap(),
                ng_listen: "[2001:db8::1]:2223".parse().unwrap(),
                reflector: ReflectorConfig {
                    reflector_port: 3480,
                    stun_port: 3478,
                    stun_alt_addr: Some("203.0.113.6".parse().unwrap()),
                    stun_alt_port: 3479,
                    stun_rate: 50,
                    reflect_rate: 10,
                    reflect_burst: 5,
                    reflect_src: vec!["203.0.113.5".parse().unwrap()],
                    reflect_deny: vec!["198.51.100.0/24".parse().unwrap()],
                    key_rotate: Duration::from_secs(900),
                    key_grace: Duration::from_secs(120),
                    ticket_max_ttl: Duration::from_secs(60),
                    turn_port: 0,
                },
                turn: crate::turn::config::merge(&TurnArgs::default(), TurnFile::default(),)
                    .unwrap(),
                state_file: PathBuf::from("/var/lib/relay/state.json"),
                policy: LatchPolicy::Strict,
                relatch_holdoff: Duration::from_millis(250),
                timeouts: Timeouts {
                    no_media: Duration::from_secs(30),
                    silent: Duration::from_secs(600),
                    offer: Duration::from_secs(120),
                },
                detach_on_exit: true,
                keep_forwarding_sysctl: true,
                nexthop_cache: true,
                sip_port: 5070,
                sip_private_nets: vec!["192.0.2.0/24".parse().unwrap()],
                sip_allow: vec![],
                sip_rate: DEFAULT_SIP_RATE,
                log: LogSettings {
                    format: Some(LogFormat::Json),
                    level: Some("info,relay_ctl::ng=debug".into()),
                },
            }
        );
    }

    #[test]
    fn flags_override_file() {
        let f = TempFile::new("override", FULL_FILE);
        let cfg = resolve(
            &args(&[
                "--config",
                f.path(),
                "--xdp-mode",
                "native",
                "--max-legs",
                "8",
                "--port-min",
                "32000",
                "--port-max",
                "32001",
                "--quarantine-secs",
                "7",
                "--api-listen",
                "127.0.0.1:9999",
                "--state-file",
                "/tmp/s.json",
                "--policy",
                "alternate",
                "--relatch-holdoff-ms",
                "0",
                "--timeout-secs",
                "1",
                "--silent-timeout-secs",
                "2",
                "--offer-timeout-secs",
                "3",
                "--sip-port",
                "0",
                "--sip-private-net",
                "198.18.0.0/15",
                "--sip-private-net",
                "2001:db8::/32",
                "--log-format",
                "kv",
                "--log-level",
                "warn",
            ]),
            "default",
        )
        .unwrap();
        // Lists not given as flags come from the file.
        assert_eq!(cfg.ifaces, ["eth1", "eth2"]);
        assert_eq!(cfg.relay_addrs.len(), 2);
        assert_eq!(cfg.xdp_mode, XdpModeChoice::Native);
        assert_eq!(cfg.max_legs, 8);
        assert_eq!((cfg.port_min, cfg.port_max), (32000, 32001));
        assert_eq!(cfg.quarantine, Duration::from_secs(7));
        assert_eq!(cfg.api_listen, "127.0.0.1:9999".parse().unwrap());
        assert_eq!(cfg.state_file, PathBuf::from("/tmp/s.json"));
        assert_eq!(cfg.policy, LatchPolicy::Alternate);
        assert_eq!(cfg.relatch_holdoff, Duration::ZERO);
        assert_eq!(
            cfg.timeouts,
            Timeouts {
                no_media: Duration::from_secs(1),
                silent: Duration::from_secs(2),
                offer: Duration::from_secs(3),
            }
        );
        assert_eq!(cfg.sip_port, 0);
        assert_eq!(
            cfg.sip_private_nets,
            vec![
                "198.18.0.0/15".parse::<Prefix>().unwrap(),
                "2001:db8::/32".parse().unwrap()
            ]
        );
        // The file switched these on; a bare flag cannot switch them off.
        assert!(cfg.detach_on_exit && cfg.keep_forwarding_sysctl);
        assert_eq!(
            cfg.log,
            LogSettings {
                format: Some(LogFormat::Kv),
                level: Some("warn".into())
            }
        );
        // The logger reads the same settings before `resolve`.
        let a = args(&["--config", f.path(), "--log-level", "warn"]);
        assert_eq!(
            log_settings(&a),
            LogSettings {
                format: Some(LogFormat::Json),
                level: Some("warn".into())
            }
        );
        assert!(Cli::try_parse_from(["relay-ctl", "--log-format", "xml"]).is_err());
    }

    #[test]
    fn reflector_flags_override_file() {
        let f = TempFile::new("refl", FULL_FILE);
        let cfg = resolve(
            &args(&[
                "--config",
                f.path(),
                "--reflector-port",
                "4000",
                "--stun-port",
                "4001",
                "--stun-alt-addr",
                "203.0.113.7",
                "--stun-alt-port",
                "4002",
                "--reflect-rate",
                "0",
                "--reflect-burst",
                "1",
                "--reflect-src",
                "203.0.113.8",
                "--reflect-deny",
                "192.0.2.0/25",
                "--reflect-deny",
                "198.18.0.1",
                "--reflect-key-rotate-secs",
                "60",
                "--reflect-key-grace-secs",
                "30",
                "--ticket-max-ttl-secs",
                "30",
            ]),
            "default",
        )
        .unwrap();
        let r = &cfg.reflector;
        assert_eq!(
            (r.reflector_port, r.stun_port, r.stun_alt_port),
            (4000, 4001, 4002)
        );
        assert_eq!(r.stun_alt_addr, Some("203.0.113.7".parse().unwrap()));
        assert_eq!((r.reflect_rate, r.reflect_burst), (0, 1));
        assert_eq!(r.reflect_src, ["203.0.113.8".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            r.reflect_deny
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>(),
            ["192.0.2.0/25", "198.18.0.1/32"]
        );
        assert_eq!(
            (r.key_rotate, r.key_grace, r.ticket_max_ttl),
            (
                Duration::from_secs(60),
                Duration::from_secs(30),
                Duration::from_secs(30)
            )
        );
        // Validation runs on the merged result.
        let e = err(&args(&["--iface", "e", "--stun-port", "30000"]));
        assert!(
            e.contains("stun-port 30000 is inside the relay port range"),
            "{e}"
        );
        let f = TempFile::new(
            "refl-bad",
            "iface = [\"e\"]\nreflect-deny = [\"1.2.3.4/40\"]\n",
        );
        let e = err(&args(&["--config", f.path()]));
        assert!(e.contains("prefix length"), "{e}");
    }

    #[test]
    fn boolean_flags_switch_on_over_the_file() {
        let f = TempFile::new(
            "bools",
            "iface = [\"eth0\"]\ndetach-on-exit = false\nkeep-forwarding-sysctl = false\n",
        );
        let off = resolve(&args(&["--config", f.path()]), "default").unwrap();
        assert!(!off.detach_on_exit && !off.keep_forwarding_sysctl);
        let on = resolve(
            &args(&[
                "--config",
                f.path(),
                "--detach-on-exit",
                "--keep-forwarding-sysctl",
            ]),
            "default",
        )
        .unwrap();
        assert!(on.detach_on_exit && on.keep_forwarding_sysctl);
    }

    #[test]
    fn repeated_flags_replace_the_files_lists() {
        let f = TempFile::new("lists", FULL_FILE);
        let cfg = resolve(
            &args(&[
                "--config",
                f.path(),
                "--iface",
                "r0",
                "--iface",
                "r1",
                "--relay-addr",
                "198.51.100.1",
            ]),
            "default",
        )
        .unwrap();
        assert_eq!(cfg.ifaces, ["r0", "r1"]);
        assert_eq!(cfg.relay_addrs, ["198.51.100.1".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn unknown_key_names_the_key_and_the_file() {
        let f = TempFile::new("typo", "iface = [\"eth0\"]\nprot-min = 31000\n");
        let e = err(&args(&["--config", f.path()]));
        assert!(e.contains("prot-min"), "{e}");
        assert!(e.contains(f.path()), "{e}");
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn bad_value_types_in_the_file() {
        for (tag, text, needle) in [
            ("mode", "iface = [\"e\"]\nxdp-mode = \"fast\"\n", "fast"),
            ("policy", "iface = [\"e\"]\npolicy = \"loose\"\n", "loose"),
            (
                "addr",
                "iface = [\"e\"]\nrelay-addr = [\"203.0.113\"]\n",
                "relay-addr",
            ),
            ("port", "iface = [\"e\"]\nport-max = 70000\n", "port-max"),
            ("list", "iface = \"eth0\"\n", "iface"),
        ] {
            let f = TempFile::new(tag, text);
            let e = err(&args(&["--config", f.path()]));
            assert!(e.contains(needle) && e.contains(f.path()), "{tag}: {e}");
        }
    }

    #[test]
    fn missing_file_names_the_file() {
        let e = err(&args(&[
            "--iface",
            "eth0",
            "--config",
            "/nonexistent/relay.toml",
        ]));
        assert!(
            e.contains("reading config file /nonexistent/relay.toml"),
            "{e}"
        );
    }

    #[test]
    fn bad_port_ranges() {
        let cases: [(&[&str], &str); 5] = [
            (
                &["--port-min", "40000", "--port-max", "39999"],
                "greater than port-max",
            ),
            (
                &["--sip-port", "30010"],
                "sip-port 30010 is inside the relay port range 30000-39999",
            ),
            (&["--port-min", "80", "--port-max", "39999"], "below 1024"),
            // One port, and two ports that are odd/even rather than even/odd.
            (
                &["--port-min", "30000", "--port-max", "30000"],
                "no even/odd pair",
            ),
            (
                &["--port-min", "30001", "--port-max", "30002"],
                "no even/odd pair",
            ),
        ];
        for (flags, needle) in cases {
            let mut argv = vec!["--iface", "eth0"];
            argv.extend_from_slice(flags);
            let e = err(&args(&argv));
            assert!(e.contains(needle), "{flags:?}: {e}");
        }
        // The top of the u16 range must not overflow the pair check.
        let e = err(&args(&[
            "--iface",
            "e",
            "--port-min",
            "65535",
            "--port-max",
            "65535",
        ]));
        assert!(e.contains("no even/odd pair"), "{e}");
        let ok = resolve(
            &args(&["--iface", "e", "--port-min", "65534", "--port-max", "65535"]),
            "default",
        )
        .unwrap();
        assert_eq!((ok.port_min, ok.port_max), (65534, 65535));
    }

    #[test]
    fn zero_values_rejected() {
        for (flag, key) in [
            ("--timeout-secs", "timeout-secs"),
            ("--silent-timeout-secs", "silent-timeout-secs"),
            ("--offer-timeout-secs", "offer-timeout-secs"),
            ("--max-legs", "max-legs"),
        ] {
            let e = err(&args(&["--iface", "eth0", flag, "0"]));
            assert!(e.contains(key), "{flag}: {e}");
        }
        // Zero in the file is rejected the same way.
        let f = TempFile::new("zero", "iface = [\"eth0\"]\ntimeout-secs = 0\n");
        let e = err(&args(&["--config", f.path()]));
        assert!(e.contains("timeout-secs must be greater than 0"), "{e}");
    }

    #[test]
    fn other_invalid_values() {
        let e = err(&args(&["--iface", "eth0", "--iface", "eth0"]));
        assert!(e.contains("eth0 is given twice"), "{e}");
        let e = err(&args(&["--iface", "eth0", "--relay-addr", "0.0.0.0"]));
        assert!(e.contains("not a unicast address"), "{e}");
        // clap rejects malformed values before resolve sees them.
        assert!(Cli::try_parse_from(["relay-ctl", "--xdp-mode", "fast"]).is_err());
        assert!(Cli::try_parse_from(["relay-ctl", "--relay-addr", "203.0.113"]).is_err());
    }

    const EXAMPLE: &str = include_str!("../../docs/relay.example.toml");

    #[test]
    fn example_file_parses() {
        let file = parse_file(EXAMPLE, Path::new("docs/relay.example.toml")).unwrap();
        let cfg = merge(&DaemonArgs::default(), file, "default").unwrap();
        let defaults = resolve(&args(&["--iface", "eth0", "--iface", "eth1"]), "default").unwrap();
        // The example spells out the defaults.
        assert_eq!(cfg, defaults);
    }

    #[test]
    fn example_files_commented_keys_parse_too() {
        // `# key = value` lines are examples as well: uncomment them and parse again, so they
        // cannot rot either.
        let uncommented: String = EXAMPLE
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest)
                    if rest.split_once(" = ").is_some_and(|(k, _)| {
                        k.chars().all(|c| c.is_ascii_lowercase() || c == '-')
                    }) =>
                {
                    rest
                }
                _ => l,
            })
            .fold(String::new(), |acc, l| acc + l + "\n");
        assert!(uncommented.contains("\nrelay-addr = "));
        assert!(uncommented.contains("\nstate-file = "));
        let file = parse_file(&uncommented, Path::new("docs/relay.example.toml")).unwrap();
        let cfg = merge(&DaemonArgs::default(), file, "default").unwrap();
        assert_eq!(
            cfg.relay_addrs,
            [
                "203.0.113.10".parse::<IpAddr>().unwrap(),
                "2001:db8::10".parse().unwrap()
            ]
        );
        assert_eq!(cfg.state_file, default_state_file("default"));
    }
}
