//! rtpengine's userspace daemon (Debian `rtpengine-daemon`) in a namespace: no kernel module
//! (`--table=-1`), no config file, its own ng port, logs to a file, killed on drop.
use std::{
    fs,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use relay_ctl::{netns::netns_path, testbed::Netns};

pub const BIN: &str = "/usr/bin/rtpengine";

pub struct Rtpengine {
    child: Child,
    log: PathBuf,
}

impl Rtpengine {
    /// Start with interfaces `pub` (caller side) and `priv` (callee side) and wait until
    /// its ng port answers a ping.
    pub fn start(
        ns: &Netns,
        pub_ip: &str,
        priv_ip: &str,
        ng_port: u16,
        ports: (u16, u16),
    ) -> Result<Rtpengine> {
        let log =
            std::env::temp_dir().join(format!("relay-bench-rtpengine-{}.log", std::process::id()));
        let log_file = fs::File::create(&log)?;
        let child = Command::new("nsenter")
            .arg(format!("--net={}", netns_path(ns.name()).display()))
            .arg(BIN)
            .args([
                "--config-file=none",
                "--foreground",
                "--log-stderr",
                "--table=-1",
                "--log-level=4",
            ])
            .arg(format!("--interface=pub/{pub_ip}"))
            .arg(format!("--interface=priv/{priv_ip}"))
            .arg(format!("--listen-ng=127.0.0.1:{ng_port}"))
            .arg(format!("--port-min={}", ports.0))
            .arg(format!("--port-max={}", ports.1))
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .with_context(|| {
                format!("starting {BIN} (cargo xtask setup installs rtpengine-daemon)")
            })?;
        let mut r = Rtpengine { child, log };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(st) = r.child.try_wait()? {
                bail!("rtpengine exited ({st}):\n{}", r.log());
            }
            let up = ns.run(|| {
                crate::ng::Client::new(([127, 0, 0, 1], ng_port).into()).map(|mut c| c.ping())
            })??;
            if up {
                return Ok(r);
            }
            if Instant::now() > deadline {
                bail!("rtpengine's ng port not answering after 15 s:\n{}", r.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Rtpengine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(&self.log);
    }
}
