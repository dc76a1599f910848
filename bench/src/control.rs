//! Control plane: offers + answers per second over ng, one client, one call at a time, the
//! same messages against rtpengine and against our daemon's ng listener (when it has one).
use std::{
    net::SocketAddrV4,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::Result;
use relay_testbed::DaemonProcess;
use serde::Serialize;

use crate::{
    ng::Client,
    rtpengine::Rtpengine,
    topo::{GEN_IP, RELAY_A, RELAY_B, SINK_IP, Topo},
};

#[derive(Serialize, Clone, Debug)]
pub struct Control {
    pub server: String,
    pub available: bool,
    pub calls: u32,
    /// Seconds spent in offer + answer (deletes between calls are not counted).
    pub secs: f64,
    /// Offer+answer pairs per second.
    pub calls_per_sec: f64,
    /// ng requests (offers and answers) per second.
    pub requests_per_sec: f64,
    pub note: String,
}

const RTPENGINE_NG: u16 = 22_241;
const OURS_NG: u16 = 22_251;
const OURS_API: u16 = 19_917;

fn load(
    t: &Topo,
    port: u16,
    calls: u32,
    direction: Option<(&'static str, &'static str)>,
) -> Result<(f64, u32)> {
    t.relay.run(|| -> Result<(f64, u32)> {
        let mut c = Client::new(([127, 0, 0, 1], port).into())?;
        let mut spent = Duration::ZERO;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut done = 0;
        for i in 0..calls {
            if Instant::now() > deadline {
                break;
            }
            let id = format!("cp-{}-{i}", std::process::id());
            let from = SocketAddrV4::new(GEN_IP, 10_000 + (i % 20_000) as u16 * 2);
            let to = SocketAddrV4::new(SINK_IP, 10_000 + (i % 20_000) as u16 * 2);
            let start = Instant::now();
            c.offer_answer(&id, from, to, direction)?;
            spent += start.elapsed();
            done += 1;
            c.delete(&id)?;
        }
        Ok((spent.as_secs_f64(), done))
    })?
}

fn row(server: &str, r: Result<(f64, u32)>, note: &str) -> Control {
    match r {
        Ok((secs, calls)) => Control {
            server: server.into(),
            available: true,
            calls,
            secs,
            calls_per_sec: calls as f64 / secs,
            requests_per_sec: 2.0 * calls as f64 / secs,
            note: note.into(),
        },
        Err(e) => Control {
            server: server.into(),
            available: false,
            calls: 0,
            secs: 0.0,
            calls_per_sec: 0.0,
            requests_per_sec: 0.0,
            note: format!("not available: {e:#}"),
        },
    }
}

pub fn run(t: &Topo, calls: u32, relay_ctl: &Path, log: fn(&str)) -> Vec<Control> {
    let mut out = vec![];
    let r = Rtpengine::start(
        &t.relay,
        &RELAY_A.to_string(),
        &RELAY_B.to_string(),
        RTPENGINE_NG,
        (40_000, 59_999),
        None,
    )
    .and_then(|_guard| load(t, RTPENGINE_NG, calls, Some(("pub", "priv"))));
    out.push(row(
        "rtpengine",
        r,
        "rtpengine-daemon, userspace (--table=-1), ng over UDP on loopback",
    ));
    log(&format!("control: {:?}", out[0]));
    out.push(row(
        "relay-ctl",
        ours(t, calls, relay_ctl),
        "relay-ctl daemon --ng-listen, ng over UDP on loopback",
    ));
    log(&format!("control: {:?}", out[1]));
    out
}

/// Our daemon with an ng listener, if this build has one (`--ng-listen`, answers `ping`).
fn ours(t: &Topo, calls: u32, relay_ctl: &Path) -> Result<(f64, u32)> {
    let name = format!("benchng{}", std::process::id());
    let state = std::env::temp_dir().join(format!("mr-bench-state-{name}.json"));
    let args: Vec<String> = [
        "--iface",
        "r0",
        "--iface",
        "r1",
        "--api-listen",
        &format!("127.0.0.1:{OURS_API}"),
        "--ng-listen",
        &format!("127.0.0.1:{OURS_NG}"),
        "--port-min",
        "30000",
        "--port-max",
        "39999",
        "--state-file",
        &state.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let r = (|| {
        let _d = DaemonProcess::start_with(
            relay_ctl,
            &t.relay,
            Path::new("/sys/fs/bpf/media-relay-bench"),
            &name,
            &args,
            true,
        )
        .map_err(|e| {
            anyhow::anyhow!(
                "{}",
                format!("{e:#}")
                    .lines()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        })?;
        let up = t
            .relay
            .run(|| Client::new(([127, 0, 0, 1], OURS_NG).into()).map(|mut c| c.ping()))??;
        anyhow::ensure!(up, "no pong from 127.0.0.1:{OURS_NG}");
        load(t, OURS_NG, calls, None)
    })();
    let _ = std::fs::remove_file(&state);
    let _ = std::fs::remove_file(state.with_extension("json.lock"));
    r
}
