//! The reflector's start-up, and the daemon's API over the session controller plus the
//! reflector: session calls go to the controller unchanged, tickets to the reflector, and
//! `/metrics` gets the reflector's and the STUN server's counters appended (rendered in
//! `metrics/reflector.rs`).
use std::sync::Arc;

use crate::{
    api::{
        Control, CreateSession, FrontEnd, PortsView, SessionView, StatsView, TicketRequest,
        TicketView, UpdateSession,
    },
    error::Error,
    events::Event,
    reflector::ReflectorService,
    stun::StunStats,
};

pub struct WithReflector {
    pub inner: Arc<dyn Control>,
    pub reflector: Arc<ReflectorService>,
    pub stun: Arc<StunStats>,
    /// The TURN server, if `--turn-port` is set: its allocations and metrics.
    pub turn: Option<Arc<crate::turn::server::TurnServer>>,
}

impl Control for WithReflector {
    fn sessions(&self) -> Vec<SessionView> {
        self.inner.sessions()
    }
    fn session(&self, call_id: &str) -> Result<SessionView, Error> {
        self.inner.session(call_id)
    }
    fn create_session(&self, req: CreateSession, by: FrontEnd) -> Result<SessionView, Error> {
        self.inner.create_session(req, by)
    }
    fn update_session(
        &self,
        call_id: &str,
        req: UpdateSession,
        by: FrontEnd,
    ) -> Result<SessionView, Error> {
        self.inner.update_session(call_id, req, by)
    }
    fn delete_session(&self, call_id: &str, by: FrontEnd) -> Result<SessionView, Error> {
        self.inner.delete_session(call_id, by)
    }
    fn stats(&self) -> Result<StatsView, Error> {
        self.inner.stats()
    }
    fn ports(&self) -> PortsView {
        self.inner.ports()
    }
    fn metrics(&self) -> Result<String, Error> {
        let mut text = self.inner.metrics()?;
        text.push_str(
            &crate::metrics::render_reflector(&self.reflector, &self.stun)
                .map_err(|e| Error::internal(format!("{e:#}")))?,
        );
        if let Some(t) = &self.turn {
            text.push_str(
                &crate::metrics::render_turn(t).map_err(|e| Error::internal(format!("{e:#}")))?,
            );
        }
        Ok(text)
    }
    fn turn_allocations(&self) -> Result<crate::turn::view::TurnView, Error> {
        match &self.turn {
            Some(t) => Ok(t.view()),
            None => self.inner.turn_allocations(),
        }
    }
    fn issue_ticket(&self, req: Result<TicketRequest, Error>) -> Result<TicketView, Error> {
        self.reflector.issue(req)
    }
    fn count(&self, event: Event) {
        self.inner.count(event)
    }
}

/// The reflector's clock/key task, running next to the controller. Dropping it stops the
/// task (the maps keep their contents for the next daemon).
pub struct Running {
    /// The API to serve: the controller's plus tickets and the extra metrics.
    pub api: Arc<dyn Control>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Configure the reflector maps and start the clock/key task; the API it returns adds
/// tickets and the reflector's and STUN server's metrics to the controller's.
pub(super) async fn start(
    maps: crate::dataplane::Reflector,
    cfg: &crate::config::Config,
    relay_addrs: &[std::net::IpAddr],
    sessions: Arc<dyn Control>,
    stun: Arc<StunStats>,
    turn: Option<Arc<crate::turn::server::TurnServer>>,
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
    let reflector = Arc::new(ReflectorService::start(
        maps,
        &cfg.reflector,
        relay_addrs,
        &box_addrs,
        &cfg.state_file,
    )?);
    let task = tokio::spawn(reflector.clone().run());
    Ok(Running {
        api: Arc::new(WithReflector {
            inner: sessions,
            reflector: reflector.clone(),
            stun,
            turn,
        }),
        task,
    })
}
