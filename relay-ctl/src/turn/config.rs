//! TURN settings of the daemon: flags, TOML keys (same names), defaults and validation.
//! Merged by `config::resolve` like every other setting. The server is off unless
//! `turn-port` is set; it then needs a realm and at least one way to authenticate (users or
//! the REST secret).
use std::{collections::HashMap, path::PathBuf};

use anyhow::{Context, Result, bail};

use crate::prefix::Prefix;

pub const DEFAULT_TURN_REALM: &str = "media-relay";
/// Allocations one user may hold at once.
pub const DEFAULT_USER_QUOTA: u32 = 10;
/// TURN requests per second per source address (ChannelData and indications are limited by
/// the bandwidth limit instead); also the burst.
pub const DEFAULT_TURN_RATE: u32 = 100;

/// TURN flags of `relay-ctl daemon` (flattened into `DaemonArgs`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TurnArgs {
    /// UDP port of the TURN server (RFC 8656) on the relay addresses; may equal --stun-port
    /// (one socket then serves both); 0 = off [default: 0].
    #[arg(long, value_name = "PORT")]
    pub turn_port: Option<u16>,
    /// TURN realm of the long-term credentials [default: media-relay].
    #[arg(long, value_name = "REALM")]
    pub turn_realm: Option<String>,
    /// TURN user as NAME:PASSWORD (repeat for several; replaces the file's list). Visible in
    /// the process list: prefer --turn-users-file.
    #[arg(long = "turn-user", value_name = "NAME:PASSWORD")]
    pub turn_users: Vec<String>,
    /// File of TURN users, one NAME:PASSWORD a line (# comments).
    #[arg(long, value_name = "PATH")]
    pub turn_users_file: Option<PathBuf>,
    /// File holding the TURN REST API shared secret (coturn's static-auth-secret): usernames
    /// "EXPIRY:NAME", password base64(HMAC-SHA1(secret, username)) [default: off].
    #[arg(long, value_name = "PATH")]
    pub turn_secret_file: Option<PathBuf>,
    /// The TURN REST API shared secret itself (visible in the process list: prefer
    /// --turn-secret-file).
    #[arg(long, value_name = "SECRET")]
    pub turn_secret: Option<String>,
    /// Peer prefix the TURN server never relays to, on top of loopback, unspecified,
    /// multicast and this box's own addresses (repeat for several).
    #[arg(long = "turn-deny", value_name = "PREFIX")]
    pub turn_deny: Vec<Prefix>,
    /// Allocations one TURN user may hold at once; 0 = no limit [default: 10].
    #[arg(long, value_name = "N")]
    pub turn_user_quota: Option<u32>,
    /// Bytes per second one allocation may relay in userspace (each direction counted);
    /// 0 = no limit [default: 0].
    #[arg(long, value_name = "BYTES")]
    pub turn_bandwidth: Option<u64>,
    /// Longest TURN allocation lifetime granted, seconds [default: 3600].
    #[arg(long, value_name = "SECS")]
    pub turn_max_lifetime_secs: Option<u64>,
    /// Seconds a TURN nonce is good for before 438 Stale Nonce [default: 600].
    #[arg(long, value_name = "SECS")]
    pub turn_nonce_secs: Option<u64>,
    /// TURN requests per second per source address, also the burst; 0 = no limit
    /// [default: 100].
    #[arg(long, value_name = "N")]
    pub turn_rate: Option<u32>,
    /// TCP port for TURN over TLS on the relay addresses (needs --turn-tls-cert and
    /// --turn-tls-key); 0 = off [default: 0]. Plain TCP is served on --turn-port.
    #[arg(long, value_name = "PORT")]
    pub turn_tls_port: Option<u16>,
    /// PEM certificate chain for TURN over TLS.
    #[arg(long, value_name = "PATH")]
    pub turn_tls_cert: Option<PathBuf>,
    /// PEM private key for TURN over TLS.
    #[arg(long, value_name = "PATH")]
    pub turn_tls_key: Option<PathBuf>,
}

/// The same keys in the config file.
#[derive(Debug, Default, Clone)]
pub struct TurnFile {
    pub turn_port: Option<u16>,
    pub turn_realm: Option<String>,
    pub turn_user: Option<Vec<String>>,
    pub turn_users_file: Option<PathBuf>,
    pub turn_secret_file: Option<PathBuf>,
    pub turn_secret: Option<String>,
    pub turn_deny: Option<Vec<Prefix>>,
    pub turn_user_quota: Option<u32>,
    pub turn_bandwidth: Option<u64>,
    pub turn_max_lifetime_secs: Option<u64>,
    pub turn_nonce_secs: Option<u64>,
    pub turn_rate: Option<u32>,
    pub turn_tls_port: Option<u16>,
    pub turn_tls_cert: Option<PathBuf>,
    pub turn_tls_key: Option<PathBuf>,
}

/// The resolved settings. Debug never shows passwords or the secret.
#[derive(Clone, PartialEq, Default)]
pub struct TurnConfig {
    /// 0: off.
    pub port: u16,
    pub realm: String,
    pub users: HashMap<String, String>,
    pub secret: Option<Vec<u8>>,
    pub deny: Vec<Prefix>,
    pub user_quota: u32,
    pub bandwidth: u64,
    pub max_lifetime_secs: u64,
    pub nonce_secs: u64,
    pub rate: u32,
    /// 0: no TLS.
    pub tls_port: u16,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

impl std::fmt::Debug for TurnConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut users: Vec<&String> = self.users.keys().collect();
        users.sort();
        f.debug_struct("TurnConfig")
            .field("port", &self.port)
            .field("realm", &self.realm)
            .field("users", &users)
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field("deny", &self.deny)
            .field("user_quota", &self.user_quota)
            .field("bandwidth", &self.bandwidth)
            .field("max_lifetime_secs", &self.max_lifetime_secs)
            .field("nonce_secs", &self.nonce_secs)
            .field("rate", &self.rate)
            .field("tls_port", &self.tls_port)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .finish()
    }
}

/// `NAME:PASSWORD` (the password may contain ':').
fn user_entry(s: &str) -> Result<(String, String)> {
    match s.split_once(':') {
        Some((n, p)) if !n.is_empty() && !p.is_empty() => Ok((n.to_string(), p.to_string())),
        // The entry itself is not echoed: it holds a password.
        _ => bail!("a TURN user is NAME:PASSWORD, both non-empty"),
    }
}

fn read_secret(path: &PathBuf) -> Result<Vec<u8>> {
    let s = std::fs::read_to_string(path)
        .with_context(|| format!("reading the TURN secret file {}", path.display()))?;
    let s = s.trim();
    if s.is_empty() {
        bail!("the TURN secret file {} is empty", path.display());
    }
    Ok(s.as_bytes().to_vec())
}

pub fn merge(args: &TurnArgs, file: TurnFile) -> Result<TurnConfig> {
    let mut users = HashMap::new();
    let listed = if args.turn_users.is_empty() {
        file.turn_user.unwrap_or_default()
    } else {
        args.turn_users.clone()
    };
    for u in &listed {
        let (n, p) = user_entry(u)?;
        users.insert(n, p);
    }
    if let Some(path) = args.turn_users_file.clone().or(file.turn_users_file) {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the TURN users file {}", path.display()))?;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (n, p) =
                user_entry(line).with_context(|| format!("{} line {}", path.display(), i + 1))?;
            users.insert(n, p);
        }
    }
    let secret = match (
        args.turn_secret.clone().or(file.turn_secret),
        args.turn_secret_file.clone().or(file.turn_secret_file),
    ) {
        (Some(_), Some(_)) => bail!("give turn-secret or turn-secret-file, not both"),
        (Some(s), None) if s.is_empty() => bail!("turn-secret is empty"),
        (Some(s), None) => Some(s.into_bytes()),
        (None, Some(p)) => Some(read_secret(&p)?),
        (None, None) => None,
    };
    Ok(TurnConfig {
        port: args.turn_port.or(file.turn_port).unwrap_or(0),
        realm: args
            .turn_realm
            .clone()
            .or(file.turn_realm)
            .unwrap_or_else(|| DEFAULT_TURN_REALM.to_string()),
        users,
        secret,
        deny: if args.turn_deny.is_empty() {
            file.turn_deny.unwrap_or_default()
        } else {
            args.turn_deny.clone()
        },
        user_quota: args
            .turn_user_quota
            .or(file.turn_user_quota)
            .unwrap_or(DEFAULT_USER_QUOTA),
        bandwidth: args.turn_bandwidth.or(file.turn_bandwidth).unwrap_or(0),
        max_lifetime_secs: args
            .turn_max_lifetime_secs
            .or(file.turn_max_lifetime_secs)
            .unwrap_or(super::allocation::MAX_LIFETIME_SECS),
        nonce_secs: args
            .turn_nonce_secs
            .or(file.turn_nonce_secs)
            .unwrap_or(super::auth::DEFAULT_NONCE_SECS),
        rate: args
            .turn_rate
            .or(file.turn_rate)
            .unwrap_or(DEFAULT_TURN_RATE),
        tls_port: args.turn_tls_port.or(file.turn_tls_port).unwrap_or(0),
        tls_cert: args.turn_tls_cert.clone().or(file.turn_tls_cert),
        tls_key: args.turn_tls_key.clone().or(file.turn_tls_key),
    })
}

/// `others`: the daemon's other UDP ports (name, port) a TURN port must not collide with
/// (the STUN port is the one it may share).
pub fn validate(
    c: &TurnConfig,
    port_min: u16,
    port_max: u16,
    others: &[(&str, u16)],
) -> Result<()> {
    if c.port == 0 {
        return Ok(());
    }
    if (port_min..=port_max).contains(&c.port) {
        bail!(
            "turn-port {} is inside the relay port range {port_min}-{port_max}",
            c.port
        );
    }
    for (name, p) in others {
        if *p == c.port {
            bail!("turn-port and {name} are both {p}");
        }
    }
    if c.realm.is_empty() || c.realm.len() > 127 {
        bail!("turn-realm must be 1 to 127 bytes");
    }
    if c.users.is_empty() && c.secret.is_none() {
        bail!(
            "turn-port is set but nobody can authenticate: give turn-user, turn-users-file or turn-secret(-file)"
        );
    }
    if c.tls_port != 0 {
        if (port_min..=port_max).contains(&c.tls_port) {
            bail!(
                "turn-tls-port {} is inside the relay port range {port_min}-{port_max}",
                c.tls_port
            );
        }
        if c.tls_port == c.port {
            bail!(
                "turn-tls-port and turn-port are both {} (TCP is served on turn-port)",
                c.port
            );
        }
        if c.tls_cert.is_none() || c.tls_key.is_none() {
            bail!("turn-tls-port needs turn-tls-cert and turn-tls-key");
        }
    }
    if c.nonce_secs == 0 {
        bail!("turn-nonce-secs must be greater than 0");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_and_validates() {
        let args = TurnArgs {
            turn_port: Some(3478),
            turn_users: vec!["alice:pw:with:colons".into()],
            ..TurnArgs::default()
        };
        let c = merge(&args, TurnFile::default()).unwrap();
        assert_eq!(
            c.users.get("alice").map(String::as_str),
            Some("pw:with:colons")
        );
        assert_eq!(c.realm, DEFAULT_TURN_REALM);
        assert_eq!(c.user_quota, DEFAULT_USER_QUOTA);
        validate(&c, 30000, 39999, &[("sip-port", 5062)]).unwrap();
        let e = validate(&c, 3000, 39999, &[]).unwrap_err().to_string();
        assert!(e.contains("inside the relay port range"), "{e}");
        let e = validate(&c, 30000, 39999, &[("reflector-port", 3478)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("reflector-port"), "{e}");
        // Nobody to authenticate.
        let none = TurnConfig {
            users: HashMap::new(),
            ..c.clone()
        };
        assert!(validate(&none, 30000, 39999, &[]).is_err());
        // A bad entry's message does not echo it (it holds a password).
        let bad = TurnArgs {
            turn_users: vec!["nopassword".into()],
            ..TurnArgs::default()
        };
        let e = format!("{:#}", merge(&bad, TurnFile::default()).unwrap_err());
        assert!(!e.contains("nopassword"), "{e}");
        // Debug hides passwords and the secret.
        let with_secret = TurnConfig {
            secret: Some(b"topsecret".to_vec()),
            ..c
        };
        let d = format!("{with_secret:?}");
        assert!(!d.contains("topsecret") && !d.contains("pw:with"), "{d}");
    }

    #[test]
    fn users_file_and_secret_file() {
        let dir = std::env::temp_dir().join(format!("turn-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let users = dir.join("users");
        std::fs::write(&users, "# comment\n\nbob:one\ncarol:two\n").unwrap();
        let secret = dir.join("secret");
        std::fs::write(&secret, "s3cret\n").unwrap();
        let file = TurnFile {
            turn_users_file: Some(users),
            turn_secret_file: Some(secret),
            ..TurnFile::default()
        };
        let c = merge(&TurnArgs::default(), file).unwrap();
        assert_eq!(c.users.len(), 2);
        assert_eq!(c.secret.as_deref(), Some(&b"s3cret"[..]));
        let both = TurnArgs {
            turn_secret: Some("x".into()),
            turn_secret_file: Some(dir.join("secret")),
            ..TurnArgs::default()
        };
        assert!(merge(&both, TurnFile::default()).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
