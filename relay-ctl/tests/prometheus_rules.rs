//! The committed monitoring files against a live daemon and a real Prometheus: the Grafana
//! dashboard (`deploy/grafana/media-relay.json`) and the rule file
//! (`deploy/prometheus/media-relay-rules.yml`). Prometheus (Debian's package) runs in the
//! relay namespace, scrapes the daemon's API every second and loads the rule file itself; the
//! test then runs every panel's query and every rule's expression through `/api/v1/query`,
//! provokes the alerts it can (a tiny port range filled up, generic XDP, a v4/v6 bridge the
//! controller forwards, failing ng requests) and checks their expressions return alerts and
//! Prometheus has them pending; then it kills the daemon (down) and restarts it on one
//! interface (detached). Nothing here repeats a query of the files.
mod common;
mod prom;

use std::{
    net::{SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use common::*;
use prom::{Prometheus, exprs, has_finite_value};
use relay_ctl::api::{CreateSession, LatchPolicy, SideRequest, StreamRequest};
use relay_testbed::{
    CALLEE_IP6, CALLER_IP, DaemonProcess, RELAY_A_IP, RELAY_B_IP6, RELAY_IF_A, RELAY_IF_B,
};
use serde_json::Value;

/// The job name the rule file's `up{job="media-relay"}` selects (README.md, "Monitoring").
const JOB: &str = "media-relay";
/// Packets each way per round, few enough for the receivers' socket buffers.
const N: usize = 100;
/// Rounds per call: the userspace-share alert wants 500 packets forwarded in 5 minutes.
const ROUNDS: usize = 2;
/// ng requests that fail: the ng-error alert wants at least 20 requests in 5 minutes.
const NG_ERRORS: usize = 25;
const WAIT: Duration = Duration::from_secs(15);
/// Two port pairs per relay address, and generic XDP (which the generic-mode alert is for).
const DAEMON_FLAGS: [&str; 6] = [
    "--port-min",
    "30000",
    "--port-max",
    "30003",
    "--xdp-mode",
    "generic",
];

fn deploy(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(rel)
}

fn rules_file() -> PathBuf {
    deploy("prometheus/media-relay-rules.yml")
}

/// Alerts this test provokes while the daemon runs, and why each fires.
const PROVOKED: &[(&str, &str)] = &[
    (
        "MediaRelayPortPoolNearlyExhausted",
        "two port pairs per address, both taken",
    ),
    (
        "MediaRelayPortAllocationFailures",
        "a third call refused for lack of ports",
    ),
    (
        "MediaRelayXdpGenericMode",
        "the daemon runs --xdp-mode generic",
    ),
    (
        "MediaRelayUserspaceForwardingHigh",
        "half the media is a v4/v6 bridge the controller forwards",
    ),
    (
        "MediaRelayNgErrors",
        "every ng request asks for an unknown call",
    ),
];
/// Provoked at the end by killing the daemon.
const PROVOKED_BY_KILL: &str = "MediaRelayDown";
/// Provoked last by restarting the daemon on one of its two interfaces.
const PROVOKED_BY_RESTART: &str = "MediaRelayXdpDetached";
/// Alerts not provoked here, and why; their selectors must still return data.
const NOT_PROVOKED: &[(&str, &str)] = &[];

#[test]
fn promtool_accepts_the_rule_file() {
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(rules_file())
        .output()
        .expect("promtool (Debian package `prometheus`; `cargo xtask setup`)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("SUCCESS"), "{text}");
}

#[test]
fn dashboard_queries_and_alert_rules_return_data_from_a_live_daemon() {
    let t0 = Instant::now();
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(deploy("grafana/media-relay.json")).expect("dashboard"),
    )
    .expect("dashboard is JSON");
    let queries = exprs::dashboard_queries(&dash).expect("dashboard queries");
    assert!(queries.len() >= 20, "{queries:?}");

    let rig = Rig::start_prepared("prom", &DAEMON_FLAGS, |t| {
        t.add_ipv6().expect("ipv6");
        t.prime_neighbours6().expect("ipv6 neighbours");
    });
    let prom = Prometheus::start(rig.topo.relay.name(), &rules_file(), api_addr(), JOB)
        .expect("prometheus starts");
    // Prometheus hands new targets to its scrape loop after a few seconds: a first sample
    // from before the activity below is what rate() and increase() compare with.
    prom.wait_nonempty(&format!("up{{job=\"{JOB}\"}} == 1"), WAIT)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", prom.log()));

    // The rule file as Prometheus read it: the rules we evaluate below come from here.
    let groups = prom.rules().expect("rules");
    let rules: Vec<Value> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect();
    let canon = rules_file().canonicalize().expect("rule file");
    assert!(
        groups
            .iter()
            .all(|g| g["file"] == canon.display().to_string()),
        "{groups:?}"
    );
    let alerts: Vec<&Value> = rules.iter().filter(|r| r["type"] == "alerting").collect();
    let records: Vec<&Value> = rules.iter().filter(|r| r["type"] == "recording").collect();
    assert!(!alerts.is_empty() && !records.is_empty(), "{groups:?}");
    for a in &alerts {
        let name = a["name"].as_str().expect("name");
        assert!(
            a["duration"].as_f64().is_some_and(|d| d > 0.0),
            "{name} has no for:"
        );
        assert!(
            matches!(
                a["labels"]["severity"].as_str(),
                Some("warning" | "critical")
            ),
            "{name}: severity"
        );
        for k in ["summary", "description"] {
            assert!(
                a["annotations"][k].as_str().is_some_and(|s| !s.is_empty()),
                "{name}: {k}"
            );
        }
        let known = PROVOKED.iter().chain(NOT_PROVOKED).any(|(n, _)| *n == name)
            || [PROVOKED_BY_KILL, PROVOKED_BY_RESTART].contains(&name);
        assert!(
            known,
            "{name}: say in this test whether and how it is provoked"
        );
    }

    // 1. A call XDP forwards (in generic mode): media both ways.
    let v = rig
        .create(call("prom-1", LatchPolicy::Immediate))
        .expect("call 1");
    let (caller, callee) = (rig.caller(CALLER_PORT), rig.callee(CALLEE_PORT));
    open_call(&rig, &caller, &callee, &v);
    let (ra, rb) = relays(&v);
    exchange(&caller, ra, &callee, rb, "k");

    // 2. A v4/v6 bridge: the controller forwards all of it. It takes the caller side's last
    //    port pair.
    let v = rig.create(bridge_call("prom-2")).expect("call 2");
    let caller2 = rig.caller(CALLER_PORT + 2);
    let callee6 = rig
        .topo
        .callee
        .udp_socket(SocketAddr::from((CALLEE_IP6, CALLEE_PORT)))
        .expect("callee v6 socket");
    open_call(&rig, &caller2, &callee6, &v);
    let (ra, rb) = relays(&v);
    exchange(&caller2, ra, &callee6, rb, "u");
    let s = rig.stats();
    assert!(
        s.forwarded_kernel_packets >= (2 * N * ROUNDS) as u64
            && s.forwarded_user_packets >= (2 * N * ROUNDS) as u64,
        "{s:?}"
    );

    // 3. No port pair left on the caller side: a third call is refused.
    let refused = rig.create(call("prom-3", LatchPolicy::Immediate));
    assert!(refused.is_err(), "{refused:?}");

    // 4. ng requests that all fail (unknown calls), and STUN for XDP and for the controller.
    ng_unknown_calls(&rig, NG_ERRORS);
    stun(&caller);

    // Wait for a scrape that saw all of it, then for the rules to be evaluated on it.
    for q in [
        "media_relay_port_allocation_failures_total > 0",
        &format!("sum(media_relay_ng_errors_total) >= {NG_ERRORS}"),
        // The controller's STUN series are born with their first event (no zeros before):
        // rate() needs a second sample of them.
        "count_over_time(media_relay_stun_user_total[1m]) >= 2",
    ] {
        prom.wait_nonempty(q, WAIT)
            .unwrap_or_else(|e| panic!("{e:#}\n{}", prom.log()));
    }
    for (name, why) in PROVOKED {
        let state = prom
            .wait_alert_active(name, WAIT)
            .unwrap_or_else(|e| panic!("{why}: {e:#}"));
        assert!(state == "pending" || state == "firing", "{name}: {state}");
    }
    let healthy = wait_for(WAIT, || {
        prom.rules()
            .expect("rules")
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .all(|r| r["health"] == "ok")
    });
    assert!(healthy, "every rule evaluates: {:?}", prom.rules());

    // Every panel's query and variable: data, and at least one real number.
    let mut failures = vec![];
    for q in &queries {
        match prom.query(&q.promql) {
            Ok(r) if !r.is_empty() && has_finite_value(&r) => {}
            Ok(r) => {
                // What the selectors hold, to tell a missing series from a query mistake.
                let held: Vec<String> = exprs::selectors(&q.promql)
                    .iter()
                    .map(|sel| format!("{sel}[1m] = {:?}", prom.query(&format!("{sel}[1m]"))))
                    .collect();
                failures.push(format!("{}: `{}` -> {r:?}; {held:?}", q.origin, q.promql))
            }
            Err(e) => failures.push(format!("{}: `{}` -> {e:#}", q.origin, q.promql)),
        }
    }
    // Every recording rule's expression and its recorded series.
    for r in &records {
        let (name, expr) = (
            r["name"].as_str().expect("name"),
            r["query"].as_str().expect("query"),
        );
        for q in [expr, name] {
            match prom.query(q) {
                Ok(v) if has_finite_value(&v) => {}
                other => failures.push(format!("recording rule {name}: `{q}` -> {other:?}")),
            }
        }
    }
    // Every alert: each selector it reads has data; the provoked ones return alerts now.
    for a in &alerts {
        let (name, expr) = (
            a["name"].as_str().expect("name"),
            a["query"].as_str().expect("query"),
        );
        for sel in exprs::selectors(expr) {
            match prom.query(&sel) {
                Ok(v) if !v.is_empty() => {}
                other => failures.push(format!("alert {name}: selector `{sel}` -> {other:?}")),
            }
        }
        if PROVOKED.iter().any(|(n, _)| *n == name) {
            match prom.query(expr) {
                Ok(v) if !v.is_empty() => {}
                other => failures.push(format!("alert {name} provoked: `{expr}` -> {other:?}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} queries failed:\n{}",
        failures.len(),
        queries.len() + 2 * records.len() + alerts.len(),
        failures.join("\n")
    );

    // 5. The daemon dies: the down alert's expression returns it, and it goes pending.
    let mut rig = rig;
    rig.daemon.kill9().expect("kill -9");
    let down = alerts
        .iter()
        .find(|a| a["name"] == PROVOKED_BY_KILL)
        .expect("the down alert");
    let expr = down["query"].as_str().expect("query");
    prom.wait_nonempty(expr, WAIT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    prom.wait_alert_active(PROVOKED_BY_KILL, WAIT)
        .unwrap_or_else(|e| panic!("{e:#}"));

    // 6. A new daemon adopts the pinned data plane but is given only r0: r1 had XDP seconds
    //    ago and is not reported now.
    let mut args: Vec<String> = ["--iface", RELAY_IF_A, "--state-file"]
        .map(str::to_owned)
        .to_vec();
    args.push(rig.state_file.display().to_string());
    args.extend(DAEMON_FLAGS.map(str::to_owned));
    rig.daemon = DaemonProcess::start_with(
        bin(),
        &rig.topo.relay,
        Path::new(BPFFS_ROOT),
        &rig.name,
        &args,
        false,
    )
    .expect("the daemon restarts on r0");
    let detached = alerts
        .iter()
        .find(|a| a["name"] == PROVOKED_BY_RESTART)
        .expect("the detached alert");
    let expr = detached["query"].as_str().expect("query");
    let got = prom
        .wait_nonempty(expr, WAIT)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", rig.log()));
    assert!(
        got.iter().all(|r| r["metric"]["iface"] == RELAY_IF_B),
        "{got:?}"
    );
    prom.wait_alert_active(PROVOKED_BY_RESTART, WAIT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    prom.wait_nonempty("media_relay_adopted == 1", WAIT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!(
        "{} dashboard queries, {} recording and {} alerting rules checked in {:?}",
        queries.len(),
        records.len(),
        alerts.len(),
        t0.elapsed()
    );
}

/// `ROUNDS` times `N` tagged packets each way; every one arrives, from the relay's side
/// facing the receiver.
fn exchange(a: &UdpSocket, ra: SocketAddr, b: &UdpSocket, rb: SocketAddr, tag: &str) {
    for r in 0..ROUNDS {
        let t = format!("{tag}{r}a");
        send_n(a, ra, &t, N);
        let got = recv_n(b, N, Duration::from_secs(2));
        assert_eq!(tags(&got), expect_tags(&t, N));
        assert!(got.iter().all(|(_, from)| *from == rb));
        let t = format!("{tag}{r}b");
        send_n(b, rb, &t, N);
        let got = recv_n(a, N, Duration::from_secs(2));
        assert_eq!(tags(&got), expect_tags(&t, N));
        assert!(got.iter().all(|(_, from)| *from == ra));
    }
}

/// Caller on IPv4 behind its NAT, callee on IPv6: no XDP path translates families.
fn bridge_call(id: &str) -> CreateSession {
    CreateSession {
        call_id: id.to_owned(),
        policy: Some(LatchPolicy::Immediate),
        answered: Some(true),
        streams: vec![StreamRequest {
            media: Some("audio".into()),
            a: SideRequest {
                peer: Some(SocketAddr::from((CALLER_IP, CALLER_PORT + 2))),
                rtcp_peer: None,
                relay_addr: Some(RELAY_A_IP.into()),
            },
            b: SideRequest {
                peer: Some(SocketAddr::from((CALLEE_IP6, CALLEE_PORT))),
                rtcp_peer: None,
                relay_addr: Some(RELAY_B_IP6.into()),
            },
        }],
    }
}

/// `n` ng `query` requests for calls that do not exist, over the daemon's ng socket; each is
/// answered with an error.
fn ng_unknown_calls(rig: &Rig, n: usize) {
    rig.topo
        .relay
        .run(|| {
            let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
            s.set_read_timeout(Some(Duration::from_secs(2)))
                .expect("timeout");
            for i in 0..n {
                let id = format!("no-such-call-{i}");
                let msg = format!("m{i} d7:command5:query7:call-id{}:{id}e", id.len());
                s.send_to(msg.as_bytes(), "127.0.0.1:2223").expect("send");
                let mut buf = [0u8; 2048];
                let len = s.recv(&mut buf).expect("ng reply");
                let reply = String::from_utf8_lossy(&buf[..len]);
                assert!(reply.contains("5:error"), "{reply}");
            }
        })
        .expect("relay namespace");
}

/// Two STUN Binding requests from the caller to the relay's STUN port: a plain one (XDP
/// answers it) and one with a SOFTWARE attribute (XDP passes it to the controller's server).
fn stun(sock: &UdpSocket) {
    let to = SocketAddr::from((RELAY_A_IP, 3478));
    for (i, attrs) in [&[][..], &[0x80, 0x22, 0, 4, b't', b'e', b's', b't'][..]]
        .into_iter()
        .enumerate()
    {
        let mut m = vec![0x00, 0x01];
        m.extend((attrs.len() as u16).to_be_bytes());
        m.extend(0x2112_a442u32.to_be_bytes());
        m.extend([i as u8 + 1; 12]);
        m.extend(attrs);
        sock.send_to(&m, to).expect("send");
        sock.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut buf = [0u8; 1500];
        let (len, from) = sock.recv_from(&mut buf).expect("STUN answer");
        assert_eq!(from, to);
        assert!(
            len >= 20 && buf[..2] == [0x01, 0x01],
            "Binding success response"
        );
    }
}
