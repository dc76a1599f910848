//! The daemon's API over the session controller plus the reflector and STUN server: session
//! calls go to the controller unchanged, tickets to the reflector, and `/metrics` gets the
//! reflector's and STUN server's counters appended.
use std::sync::{Arc, atomic::Ordering};

use prometheus::{IntCounterVec, Opts, Registry, TextEncoder};

use super::{ReflectorService, TicketRequest, TicketView, tickets::Refusal};
use crate::{
    api::{ApiError, Control, CreateSession, PortsView, SessionView, StatsView, UpdateSession},
    stun::StunStats,
};

pub struct WithReflector {
    pub inner: Arc<dyn Control>,
    pub reflector: Arc<ReflectorService>,
    pub stun: Arc<StunStats>,
}

impl Control for WithReflector {
    fn sessions(&self) -> Vec<SessionView> {
        self.inner.sessions()
    }
    fn session(&self, call_id: &str) -> Result<SessionView, ApiError> {
        self.inner.session(call_id)
    }
    fn create_session(&self, req: CreateSession) -> Result<SessionView, ApiError> {
        self.inner.create_session(req)
    }
    fn update_session(&self, call_id: &str, req: UpdateSession) -> Result<SessionView, ApiError> {
        self.inner.update_session(call_id, req)
    }
    fn delete_session(&self, call_id: &str) -> Result<SessionView, ApiError> {
        self.inner.delete_session(call_id)
    }
    fn stats(&self) -> Result<StatsView, ApiError> {
        self.inner.stats()
    }
    fn ports(&self) -> PortsView {
        self.inner.ports()
    }
    fn metrics(&self) -> Result<String, ApiError> {
        let mut text = self.inner.metrics()?;
        text.push_str(
            &render(&self.reflector, &self.stun)
                .map_err(|e| ApiError::internal(format!("{e:#}")))?,
        );
        Ok(text)
    }
    fn issue_ticket(&self, req: Result<TicketRequest, ApiError>) -> Result<TicketView, ApiError> {
        self.reflector.issue(req)
    }
    fn count(&self, event: &'static str) {
        self.inner.count(event)
    }
}

fn counter(
    reg: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> anyhow::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help).namespace("media_relay"), labels)?;
    reg.register(Box::new(c.clone()))?;
    Ok(c)
}

/// Prometheus text for the reflector's and the STUN server's counters (the data plane's
/// reflect/STUN counters are in `media_relay_xdp_*` with the others).
pub fn render(r: &ReflectorService, stun: &StunStats) -> anyhow::Result<String> {
    let reg = Registry::new();
    let c = &r.counters;
    let tickets = counter(
        &reg,
        "reflector_tickets_total",
        "Reflector ticket requests: issued, or refused by reason",
        &["result"],
    )?;
    tickets
        .with_label_values(&["issued"])
        .inc_by(c.tickets_issued.load(Ordering::Relaxed));
    for (i, why) in Refusal::ALL.iter().enumerate() {
        tickets
            .with_label_values(&[&format!("refused_{}", why.as_str())])
            .inc_by(c.refused[i].load(Ordering::Relaxed));
    }
    let keys = counter(
        &reg,
        "reflector_key_events_total",
        "Reflector key events: rotations, removals after the grace period, errors",
        &["event"],
    )?;
    for (ev, v) in [
        ("rotated", &c.key_rotations),
        ("removed", &c.key_removals),
        ("error", &c.key_errors),
        ("clock_error", &c.clock_errors),
    ] {
        keys.with_label_values(&[ev])
            .inc_by(v.load(Ordering::Relaxed));
    }
    let stun_c = counter(
        &reg,
        "stun_user_total",
        "Controller STUN server: answers, error responses by code, silent drops by reason",
        &["event"],
    )?;
    for (ev, v) in stun.snapshot() {
        stun_c.with_label_values(&[ev]).inc_by(v);
    }
    Ok(TextEncoder::new().encode_to_string(&reg.gather())?)
}

/// The reflector's clock/key task and the STUN server, running next to the controller.
/// Dropping it stops both (the maps keep their contents for the next daemon).
pub struct Running {
    /// The API to serve: the controller's plus tickets and the extra metrics.
    pub api: Arc<dyn Control>,
    pub reflector: Arc<ReflectorService>,
    task: tokio::task::JoinHandle<()>,
    _stun: Option<crate::stun::server::StunServer>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Configure the reflector maps, start the clock/key task and the STUN server.
pub async fn start(
    maps: crate::dataplane::Reflector,
    cfg: &crate::config::Config,
    relay_addrs: &[std::net::IpAddr],
    sessions: Arc<dyn Control>,
) -> anyhow::Result<Running> {
    let box_addrs = match crate::netlink::box_addrs().await {
        Ok(a) => a,
        Err(e) => {
            log::warn!(
                "reflector: cannot list this box's addresses ({e:#}); denying only the relay's"
            );
            vec![]
        }
    };
    let r = &cfg.reflector;
    let reflector = Arc::new(ReflectorService::start(
        maps,
        r,
        relay_addrs,
        &box_addrs,
        &cfg.state_file,
    )?);
    let task = tokio::spawn(reflector.clone().run());
    let stun = Arc::new(StunStats::default());
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
            stun.clone(),
        )
    });
    Ok(Running {
        api: Arc::new(WithReflector {
            inner: sessions,
            reflector: reflector.clone(),
            stun,
        }),
        reflector,
        task,
        _stun: server,
    })
}
