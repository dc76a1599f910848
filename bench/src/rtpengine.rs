//! rtpengine's daemon (Debian `rtpengine-daemon`) in a namespace: no config file, its own ng
//! port, logs to a file, killed on drop. Userspace only (`--table=-1`) on the host; with its
//! kernel module's table in the incumbent guest (incumbent/kmod.rs).
use std::{
    fs,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use relay_testbed::{Netns, netns_path};

pub const BIN: &str = "/usr/bin/rtpengine";

pub struct Rtpengine {
    child: Child,
    log: PathBuf,
}

impl Rtpengine {
    /// Start with interfaces `pub` (caller side) and `priv` (callee side) and wait until
    /// its ng port answers a ping. `kernel_table`: forward through xt_RTPENGINE's table of
    /// that id (the module must be loaded) instead of userspace only.
    pub fn start(
        ns: &Netns,
        pub_ip: &str,
        priv_ip: &str,
        ng_port: u16,
        ports: (u16, u16),
        kernel_table: Option<u32>,
    ) -> Result<Rtpengine> {
        Rtpengine::start_bin(BIN, &[], ns, pub_ip, priv_ip, ng_port, ports, kernel_table)
    }

    /// `start` with another build of rtpengine (`bin`, e.g. 26.3 in the incumbent guest) and
    /// `extra` options after the usual ones.
    #[allow(clippy::too_many_arguments)]
    pub fn start_bin(
        bin: &str,
        extra: &[&str],
        ns: &Netns,
        pub_ip: &str,
        priv_ip: &str,
        ng_port: u16,
        ports: (u16, u16),
        kernel_table: Option<u32>,
    ) -> Result<Rtpengine> {
        let mode: Vec<String> = match kernel_table {
            None => vec!["--table=-1".into()],
            Some(t) => vec![
                format!("--table={t}"),
                // Refuse to start rather than silently relaying in userspace.
                "--no-fallback".into(),
                // Kernelize a stream on its first packet, not after ~3 s of confirmation.
                "--endpoint-learning=immediate".into(),
                // The measured streams sit idle while the other variants run: never time out.
                "--timeout=3600".into(),
                "--silent-timeout=3600".into(),
                // Forwarding is the module's; one userspace thread is plenty for signalling.
                "--num-threads=1".into(),
            ],
        };
        let log =
            std::env::temp_dir().join(format!("relay-bench-rtpengine-{}.log", std::process::id()));
        let log_file = fs::File::create(&log)?;
        let child = Command::new("nsenter")
            .arg(format!("--net={}", netns_path(ns.name()).display()))
            .arg(bin)
            .args([
                "--config-file=none",
                "--foreground",
                "--log-stderr",
                "--log-level=4",
            ])
            .args(&mode)
            .arg(format!("--interface=pub/{pub_ip}"))
            .arg(format!("--interface=priv/{priv_ip}"))
            .arg(format!("--listen-ng=127.0.0.1:{ng_port}"))
            .arg(format!("--port-min={}", ports.0))
            .arg(format!("--port-max={}", ports.1))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .with_context(|| {
                format!("starting {bin} (cargo xtask setup installs rtpengine-daemon)")
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
