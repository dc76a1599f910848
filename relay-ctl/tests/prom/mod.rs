//! A real Prometheus (Debian's `prometheus` package) for the monitoring test: started as a
//! child inside a test namespace, scraping the daemon's API every second with the committed
//! rule file loaded, queried over its HTTP API; killed and its storage removed on drop.
#![allow(dead_code)]
pub mod exprs;

use std::{
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use relay_testbed::{in_netns, netns_path};
use serde_json::Value;

/// Prometheus' own port inside the namespace (nothing else listens there).
pub const LISTEN: &str = "127.0.0.1:9090";
const READY_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Prometheus {
    child: Child,
    netns: String,
    dir: PathBuf,
    agent: ureq::Agent,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Prometheus {
    /// Start Prometheus in namespace `netns`, scraping `target` as job `job` every second and
    /// evaluating `rules` every second; returns once it reports ready.
    pub fn start(netns: &str, rules: &Path, target: SocketAddr, job: &str) -> Result<Prometheus> {
        let dir = std::env::temp_dir().join(format!("mr-prometheus-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("data"))?;
        let rules = rules
            .canonicalize()
            .with_context(|| format!("{}", rules.display()))?;
        let config = dir.join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {rules:?}\n\
                 scrape_configs:\n  - job_name: {job:?}\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )?;
        let log = fs::File::create(dir.join("prometheus.log"))?;
        let child = Command::new("nsenter")
            .arg(format!("--net={}", netns_path(netns).display()))
            .arg("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={LISTEN}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting prometheus (Debian package `prometheus`; `cargo xtask setup`)")?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        let mut p = Prometheus {
            child,
            netns: netns.to_owned(),
            dir,
            agent,
        };
        let end = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = p.child.try_wait()? {
                bail!("prometheus exited with {status}:\n{}", p.log());
            }
            if p.get_status("/-/ready").is_ok_and(|s| s == 200) {
                return Ok(p);
            }
            if Instant::now() > end {
                bail!("prometheus not ready after {READY_TIMEOUT:?}:\n{}", p.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    fn get_status(&self, path: &str) -> Result<u16> {
        let url = format!("http://{LISTEN}{path}");
        let agent = self.agent.clone();
        in_netns(&self.netns, move || -> Result<u16> {
            Ok(agent.get(&url).call()?.status().as_u16())
        })?
    }

    /// GET an API path with query parameters; the `data` member of a `success` answer.
    pub fn api(&self, path: &str, params: &[(&str, &str)]) -> Result<Value> {
        let url = format!("http://{LISTEN}{path}");
        let agent = self.agent.clone();
        let owned: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let v: Value = in_netns(&self.netns, move || -> Result<Value> {
            let mut req = agent.get(&url);
            for (k, v) in &owned {
                req = req.query(k, v);
            }
            Ok(req.call()?.body_mut().read_json()?)
        })??;
        if v["status"] != "success" {
            bail!("{path} {params:?}: {v}");
        }
        Ok(v["data"].clone())
    }

    /// An instant query's result vector (scalars and strings come back as one element).
    pub fn query(&self, promql: &str) -> Result<Vec<Value>> {
        let data = self.api("/api/v1/query", &[("query", promql)])?;
        Ok(match data["resultType"].as_str() {
            Some("vector") | Some("matrix") => {
                data["result"].as_array().cloned().unwrap_or_default()
            }
            _ => vec![data["result"].clone()],
        })
    }

    /// Poll `promql` until it returns a non-empty result or `limit` passes.
    pub fn wait_nonempty(&self, promql: &str, limit: Duration) -> Result<Vec<Value>> {
        let end = Instant::now() + limit;
        loop {
            let r = self.query(promql)?;
            if !r.is_empty() {
                return Ok(r);
            }
            if Instant::now() > end {
                bail!("`{promql}` still empty after {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The loaded rule groups (`/api/v1/rules`): Prometheus' own reading of the rule file.
    pub fn rules(&self) -> Result<Vec<Value>> {
        Ok(self.api("/api/v1/rules", &[])?["groups"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Active alerts (`/api/v1/alerts`): pending or firing.
    pub fn alerts(&self) -> Result<Vec<Value>> {
        Ok(self.api("/api/v1/alerts", &[])?["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Poll until alert `name` is pending or firing, or `limit` passes; returns its state.
    pub fn wait_alert_active(&self, name: &str, limit: Duration) -> Result<String> {
        let end = Instant::now() + limit;
        loop {
            if let Some(a) = self
                .alerts()?
                .into_iter()
                .find(|a| a["labels"]["alertname"] == name)
            {
                return Ok(a["state"].as_str().unwrap_or_default().to_owned());
            }
            if Instant::now() > end {
                bail!(
                    "alert {name} not pending after {limit:?}: {:?}",
                    self.alerts()?
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Whether a result element carries at least one finite sample value (`[ts, "v"]`; a NaN
/// from dividing nothing by nothing does not count).
pub fn has_finite_value(results: &[Value]) -> bool {
    results.iter().any(|r| {
        let v = if r["value"].is_array() {
            &r["value"][1]
        } else {
            &r[1]
        };
        v.as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .is_some_and(f64::is_finite)
    })
}
