//! The TURN server's start-up (`--turn-port`): its core over the controller's port and slot
//! allocators and legs map, its UDP sockets on the relay addresses (or the STUN server's
//! sockets when the ports are equal, see `start_stun`), the relayed ports' packets from the
//! steered receive sockets, and the sweeper.
use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, Weak},
};

use anyhow::{Context, Result};

use crate::{
    config::Config,
    sessions::{Controller, turn::RelayedSink},
    turn::{
        TurnStats,
        auth::{Credentials, Nonces},
        deny::DenyList,
        handler::{Core, Resources, Settings},
        offload::TurnOffload,
        server::TurnServer,
    },
};

fn join(a: &[SocketAddr]) -> String {
    a.iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether the TURN server shares the STUN server's sockets (same port, both on).
pub(super) fn shares_stun(cfg: &Config) -> bool {
    cfg.turn.port != 0 && cfg.turn.port == cfg.reflector.stun_port
}

/// Start the TURN server if configured. With a shared port it binds only what the STUN
/// server does not (the IPv6 relay addresses); the caller hands it the STUN sockets.
pub(super) async fn start(
    cfg: &Config,
    relay_addrs: &[IpAddr],
    ctl: &Arc<Controller>,
) -> Result<Option<Arc<TurnServer>>> {
    let t = &cfg.turn;
    if t.port == 0 {
        return Ok(None);
    }
    let mut own = match crate::netlink::box_addrs().await {
        Ok(a) => a,
        Err(e) => {
            log::warn!("TURN: cannot list this box's addresses ({e:#}); denying only the relay's");
            vec![]
        }
    };
    own.extend_from_slice(relay_addrs);
    own.sort();
    own.dedup();
    let stats = Arc::new(TurnStats::default());
    let core = Core::new(
        Credentials {
            realm: t.realm.clone(),
            users: t.users.clone(),
            secret: t.secret.clone(),
        },
        Nonces::random(t.nonce_secs).context("TURN nonce key")?,
        DenyList {
            own,
            prefixes: t.deny.clone(),
        },
        Settings {
            relay_addrs: relay_addrs.to_vec(),
            max_lifetime_secs: t.max_lifetime_secs,
            user_quota: t.user_quota,
            bandwidth: t.bandwidth,
        },
        ctl.clone() as Arc<dyn Resources>,
        ctl.clone() as Arc<dyn TurnOffload>,
        stats,
    );
    let server = TurnServer::new(core, t.rate);
    let sink: Arc<dyn RelayedSink> = server.clone();
    let weak: Weak<dyn RelayedSink> = Arc::downgrade(&sink);
    ctl.set_relayed_sink(weak);
    let shared = shares_stun(cfg);
    let addrs: Vec<SocketAddr> = relay_addrs
        .iter()
        .filter(|a| !(shared && a.is_ipv4()))
        .map(|a| SocketAddr::new(*a, t.port))
        .collect();
    let mut bound = server.listen_udp(&addrs);
    // TCP on the same port (the STUN server has no TCP socket), TLS on its own.
    let tcp: Vec<SocketAddr> = relay_addrs
        .iter()
        .map(|a| SocketAddr::new(*a, t.port))
        .collect();
    let tcp_bound = server.listen_tcp(&tcp, None);
    let mut tls_bound = vec![];
    if t.tls_port != 0
        && let (Some(cert), Some(key)) = (&t.tls_cert, &t.tls_key)
    {
        let acceptor = crate::turn::tls::acceptor(cert, key)?;
        let tls: Vec<SocketAddr> = relay_addrs
            .iter()
            .map(|a| SocketAddr::new(*a, t.tls_port))
            .collect();
        tls_bound = server.listen_tcp(&tls, Some(acceptor));
    }
    if shared {
        bound.extend(
            relay_addrs
                .iter()
                .filter(|a| a.is_ipv4())
                .map(|a| SocketAddr::new(*a, t.port)),
        );
    }
    server.start_sweeper();
    log::info!(
        "TURN server (realm {:?}, {} user(s){}) on port {}{}: UDP {}; TCP {}; TLS {}",
        t.realm,
        t.users.len(),
        if t.secret.is_some() {
            ", REST secret"
        } else {
            ""
        },
        t.port,
        if shared { " shared with STUN" } else { "" },
        join(&bound),
        join(&tcp_bound),
        if tls_bound.is_empty() {
            "off".to_string()
        } else {
            join(&tls_bound)
        },
    );
    Ok(Some(server))
}
