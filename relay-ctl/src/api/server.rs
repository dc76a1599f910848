//! The API's connection layer: HTTP/1 over hyper with the limits a server behind a proxy or on
//! an admin network needs. A client that opens a connection and sends nothing (or half a
//! header) is closed after `header_timeout`; a body that trickles in is answered 408 after
//! `body_timeout` (`router.rs`); at most `max_connections` are served at once (the rest wait in
//! the listen backlog). axum's own `serve` has none of these.
use std::{future::Future, sync::Arc, time::Duration};

use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{sync::watch, task::JoinSet};

use super::{Control, router::router};

/// Connection and request limits of the HTTP API.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// From a connection's first byte (or its previous response) to a complete request head.
    pub header_timeout: Duration,
    /// To read a request body once its head is in.
    pub body_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_connections: 256,
        }
    }
}

/// Serve the API on `listener` until `shutdown` completes; then stop accepting, let every
/// connection finish its request in flight, and return.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ctl: Arc<dyn Control>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    log::info!("HTTP API listening on http://{addr}");
    let app = router(ctl).layer(axum::Extension(limits));
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = slots.clone().acquire_owned() => p?,
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    crate::log_limited!(log::Level::Warn, "api accept", "HTTP API accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Reap finished connections so the set does not grow with the daemon's uptime.
        while conns.try_join_next().is_some() {}
        let svc = TowerToHyperService::new(app.clone());
        let mut stop = stop_rx.clone();
        conns.spawn(async move {
            let _permit = permit;
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                log::debug!("HTTP API connection from {peer}: {e}");
            }
        });
    }
    let _ = stop_tx.send(true);
    while conns.join_next().await.is_some() {}
    log::info!("HTTP API on {addr} stopped");
    Ok(())
}
