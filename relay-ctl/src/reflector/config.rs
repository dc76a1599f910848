//! Reflector and STUN settings of the daemon: flags, TOML keys (same names, see
//! docs/relay.example.toml), defaults and validation. Merged by `config::resolve` like every
//! other setting.
use std::{
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use anyhow::{Result, bail};

/// The STUN port of RFC 8489.
pub const DEFAULT_STUN_PORT: u16 = 3478;
/// RFC 5780's alternate port: the next one up, as most servers do.
pub const DEFAULT_STUN_ALT_PORT: u16 = 3479;
/// Requests per second per source the controller's STUN server answers (a NAT discovery is a
/// handful); also the burst.
pub const DEFAULT_STUN_RATE: u32 = 50;
pub const DEFAULT_REFLECT_RATE: u32 = 50;
pub const DEFAULT_REFLECT_BURST: u32 = 20;
pub const DEFAULT_KEY_ROTATE_SECS: u64 = 3600;
pub const DEFAULT_KEY_GRACE_SECS: u64 = 600;
pub const DEFAULT_TICKET_MAX_TTL_SECS: u64 = 300;

/// Destinations a reflected packet may never go to, whatever the operator adds: "this
/// network", loopback, multicast and everything above it (reserved, limited broadcast). XDP
/// refuses these itself too; listing them in the trie documents them in one place.
pub const BUILTIN_DENY: [(Ipv4Addr, u8); 4] = [
    (Ipv4Addr::new(0, 0, 0, 0), 8),
    (Ipv4Addr::new(127, 0, 0, 0), 8),
    (Ipv4Addr::new(224, 0, 0, 0), 4),
    (Ipv4Addr::new(240, 0, 0, 0), 4),
];

pub use crate::prefix::Prefix;

/// Reflector and STUN flags of `relay-ctl daemon` (flattened into `DaemonArgs`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ReflectorArgs {
    /// UDP port of the stateless reflector on the relay addresses; 0 = off [default: 0].
    #[arg(long, value_name = "PORT")]
    pub reflector_port: Option<u16>,
    /// STUN port: XDP answers plain Binding requests, the controller the rest; 0 = off
    /// [default: 3478].
    #[arg(long, value_name = "PORT")]
    pub stun_port: Option<u16>,
    /// Second address of this box for RFC 5780 NAT behaviour discovery (CHANGE-REQUEST,
    /// OTHER-ADDRESS) [default: none].
    #[arg(long, value_name = "IP")]
    pub stun_alt_addr: Option<IpAddr>,
    /// Alternate STUN port for RFC 5780 [default: 3479].
    #[arg(long, value_name = "PORT")]
    pub stun_alt_port: Option<u16>,
    /// Requests per second per source the controller's STUN server answers (also the
    /// burst); 0 = unlimited [default: 50]. XDP's plain Binding answers are not limited.
    #[arg(long, value_name = "N")]
    pub stun_rate: Option<u32>,
    /// Reflected packets per second per source address; 0 = unlimited [default: 50].
    #[arg(long, value_name = "N")]
    pub reflect_rate: Option<u32>,
    /// Packets a source may reflect at once before the rate applies [default: 20].
    #[arg(long, value_name = "N")]
    pub reflect_burst: Option<u32>,
    /// Own address a ticket may name as source (repeat) [default: the relay addresses and
    /// the STUN alternate address].
    #[arg(long = "reflect-src", value_name = "IP")]
    pub reflect_src: Vec<IpAddr>,
    /// Destination prefix to refuse, on top of loopback, multicast, broadcast, 0/8 and this
    /// box's own addresses (repeat).
    #[arg(long = "reflect-deny", value_name = "PREFIX")]
    pub reflect_deny: Vec<Prefix>,
    /// Seconds between reflector key rotations [default: 3600].
    #[arg(long, value_name = "SECS")]
    pub reflect_key_rotate_secs: Option<u64>,
    /// Seconds a rotated-out key still verifies tickets [default: 600].
    #[arg(long, value_name = "SECS")]
    pub reflect_key_grace_secs: Option<u64>,
    /// Longest ticket lifetime the API issues [default: 300].
    #[arg(long, value_name = "SECS")]
    pub ticket_max_ttl_secs: Option<u64>,
}

/// The config file's keys for these settings (the flags' names).
#[derive(Debug, Default, Clone)]
pub struct ReflectorFile {
    pub reflector_port: Option<u16>,
    pub stun_port: Option<u16>,
    pub stun_alt_addr: Option<IpAddr>,
    pub stun_alt_port: Option<u16>,
    pub stun_rate: Option<u32>,
    pub reflect_rate: Option<u32>,
    pub reflect_burst: Option<u32>,
    pub reflect_src: Option<Vec<IpAddr>>,
    pub reflect_deny: Option<Vec<Prefix>>,
    pub reflect_key_rotate_secs: Option<u64>,
    pub reflect_key_grace_secs: Option<u64>,
    pub ticket_max_ttl_secs: Option<u64>,
}

/// Resolved reflector and STUN settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ReflectorConfig {
    /// 0 = off.
    pub reflector_port: u16,
    /// 0 = off.
    pub stun_port: u16,
    pub stun_alt_addr: Option<IpAddr>,
    pub stun_alt_port: u16,
    pub stun_rate: u32,
    pub reflect_rate: u32,
    pub reflect_burst: u32,
    /// Empty: the relay addresses (and the STUN alternate address).
    pub reflect_src: Vec<IpAddr>,
    /// The operator's additions to the deny list.
    pub reflect_deny: Vec<Prefix>,
    pub key_rotate: Duration,
    pub key_grace: Duration,
    pub ticket_max_ttl: Duration,
    /// TURN listen port XDP takes ChannelData on (`DataPlaneConfig::turn_port`); 0 = off.
    /// Not a reflector flag: the daemon sets it from the TURN server's configuration.
    pub turn_port: u16,
}

impl Default for ReflectorConfig {
    fn default() -> Self {
        ReflectorConfig {
            reflector_port: 0,
            stun_port: DEFAULT_STUN_PORT,
            stun_alt_addr: None,
            stun_alt_port: DEFAULT_STUN_ALT_PORT,
            stun_rate: DEFAULT_STUN_RATE,
            reflect_rate: DEFAULT_REFLECT_RATE,
            reflect_burst: DEFAULT_REFLECT_BURST,
            reflect_src: vec![],
            reflect_deny: vec![],
            key_rotate: Duration::from_secs(DEFAULT_KEY_ROTATE_SECS),
            key_grace: Duration::from_secs(DEFAULT_KEY_GRACE_SECS),
            ticket_max_ttl: Duration::from_secs(DEFAULT_TICKET_MAX_TTL_SECS),
            turn_port: 0,
        }
    }
}

/// Flags over file over defaults; lists given as flags replace the file's.
pub fn merge(args: &ReflectorArgs, file: ReflectorFile) -> ReflectorConfig {
    let d = ReflectorConfig::default();
    let list = |flag: &Vec<IpAddr>, key: Option<Vec<IpAddr>>| {
        if flag.is_empty() {
            key.unwrap_or_default()
        } else {
            flag.clone()
        }
    };
    let secs = |flag: Option<u64>, key: Option<u64>, def: Duration| {
        flag.or(key).map_or(def, Duration::from_secs)
    };
    ReflectorConfig {
        reflector_port: args
            .reflector_port
            .or(file.reflector_port)
            .unwrap_or(d.reflector_port),
        stun_port: args.stun_port.or(file.stun_port).unwrap_or(d.stun_port),
        stun_alt_addr: args.stun_alt_addr.or(file.stun_alt_addr),
        stun_alt_port: args
            .stun_alt_port
            .or(file.stun_alt_port)
            .unwrap_or(d.stun_alt_port),
        stun_rate: args.stun_rate.or(file.stun_rate).unwrap_or(d.stun_rate),
        reflect_rate: args
            .reflect_rate
            .or(file.reflect_rate)
            .unwrap_or(d.reflect_rate),
        reflect_burst: args
            .reflect_burst
            .or(file.reflect_burst)
            .unwrap_or(d.reflect_burst),
        reflect_src: list(&args.reflect_src, file.reflect_src),
        reflect_deny: if args.reflect_deny.is_empty() {
            file.reflect_deny.unwrap_or_default()
        } else {
            args.reflect_deny.clone()
        },
        key_rotate: secs(
            args.reflect_key_rotate_secs,
            file.reflect_key_rotate_secs,
            d.key_rotate,
        ),
        key_grace: secs(
            args.reflect_key_grace_secs,
            file.reflect_key_grace_secs,
            d.key_grace,
        ),
        ticket_max_ttl: secs(
            args.ticket_max_ttl_secs,
            file.ticket_max_ttl_secs,
            d.ticket_max_ttl,
        ),
        turn_port: d.turn_port,
    }
}

/// Checks that need only these settings and the relay port range.
pub fn validate(c: &ReflectorConfig, port_min: u16, port_max: u16) -> Result<()> {
    let in_range = |p: u16| p != 0 && (port_min..=port_max).contains(&p);
    for (key, p) in [
        ("reflector-port", c.reflector_port),
        ("stun-port", c.stun_port),
        ("stun-alt-port", c.stun_alt_port),
    ] {
        if in_range(p) {
            bail!("{key} {p} is inside the relay port range {port_min}-{port_max}");
        }
    }
    if c.reflector_port != 0 && c.reflector_port == c.stun_port {
        bail!("reflector-port and stun-port are both {}", c.stun_port);
    }
    if c.stun_port != 0 && c.stun_alt_addr.is_some() {
        if c.stun_alt_port == 0 || c.stun_alt_port == c.stun_port {
            bail!("stun-alt-port must differ from stun-port and not be 0");
        }
        if c.stun_alt_port == c.reflector_port {
            bail!(
                "stun-alt-port and reflector-port are both {}",
                c.stun_alt_port
            );
        }
    }
    if let Some(ip) = c.stun_alt_addr
        && (ip.is_unspecified() || ip.is_multicast() || !ip.is_ipv4())
    {
        bail!("stun-alt-addr {ip} must be a unicast IPv4 address");
    }
    for ip in &c.reflect_src {
        if !ip.is_ipv4() || ip.is_unspecified() || ip.is_multicast() {
            bail!(
                "reflect-src {ip} must be a unicast IPv4 address (the reflector is IPv4 for now)"
            );
        }
    }
    if c.key_rotate.is_zero() {
        bail!("reflect-key-rotate-secs must be greater than 0");
    }
    if c.ticket_max_ttl.is_zero() {
        bail!("ticket-max-ttl-secs must be greater than 0");
    }
    // A ticket issued just before a rotation must verify until it expires.
    if c.key_grace < c.ticket_max_ttl {
        bail!(
            "reflect-key-grace-secs {} is shorter than ticket-max-ttl-secs {}: tickets would die with their key",
            c.key_grace.as_secs(),
            c.ticket_max_ttl.as_secs()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_parse_and_match() {
        let p: Prefix = "198.51.100.0/24".parse().unwrap();
        assert!(p.contains("198.51.100.77".parse().unwrap()));
        assert!(!p.contains("198.51.101.1".parse().unwrap()));
        assert!(!p.contains("2001:db8::1".parse().unwrap()));
        let h: Prefix = "203.0.113.9".parse().unwrap();
        assert_eq!(h.len, 32);
        assert!(h.contains("203.0.113.9".parse().unwrap()));
        assert!(!h.contains("203.0.113.8".parse().unwrap()));
        let all: Prefix = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
        let v6: Prefix = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
        for bad in [
            "198.51.100.0/33",
            "198.51.100/24",
            "x",
            "2001:db8::/129",
            "1.2.3.4/",
        ] {
            assert!(bad.parse::<Prefix>().is_err(), "{bad}");
        }
        assert_eq!(p.to_string(), "198.51.100.0/24");
    }

    #[test]
    fn validation() {
        let ok = ReflectorConfig::default();
        validate(&ok, 30000, 39999).unwrap();
        let bad = |f: &dyn Fn(&mut ReflectorConfig), needle: &str| {
            let mut c = ReflectorConfig::default();
            f(&mut c);
            let e = validate(&c, 30000, 39999).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        };
        bad(&|c| c.reflector_port = 30002, "inside the relay port range");
        bad(&|c| c.reflector_port = 3478, "both 3478");
        bad(
            &|c| {
                c.stun_alt_addr = Some("198.18.1.3".parse().unwrap());
                c.stun_alt_port = 3478;
            },
            "must differ",
        );
        bad(
            &|c| c.stun_alt_addr = Some("2001:db8::1".parse().unwrap()),
            "IPv4",
        );
        bad(
            &|c| c.reflect_src = vec!["224.0.0.1".parse().unwrap()],
            "unicast",
        );
        bad(&|c| c.key_rotate = Duration::ZERO, "rotate");
        bad(&|c| c.key_grace = Duration::from_secs(10), "shorter than");
        bad(&|c| c.ticket_max_ttl = Duration::ZERO, "ticket-max-ttl");
    }
}
