//! A `relay-ctl daemon` process in a test namespace: start, stop, kill -9, restart over the
//! same pins, and the operator CLI run next to it.
//!
//! Pin ownership: the pins of an instance belong to the guard started last for it in this
//! process. Dropping that guard removes them; dropping an older one (a daemon that was killed
//! or stopped and then replaced by `start_with(.., fresh: false)`) leaves them to its
//! successor. So a restart test needs no hand-over call, and a test that fails between
//! `kill9()` and the restart still cleans up (the killed guard is then still the owner).
use std::{
    fs,
    io::Read,
    net::SocketAddr,
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use relay_ctl::dataplane::Instance;

use crate::netns::{Netns, netns_path};

const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// A CLI call talks to a local API: anything slower is a hang, not a slow answer.
const CLI_TIMEOUT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(50);

/// Numbers the starts in this process: log file names and pin ownership.
static STARTS: AtomicU64 = AtomicU64::new(0);

/// (instance directory, start number of the guard that owns its pins). A Vec: a handful of
/// entries, and `HashMap::new` is not const.
static PIN_OWNERS: Mutex<Vec<(PathBuf, u64)>> = Mutex::new(Vec::new());

fn pin_owners() -> MutexGuard<'static, Vec<(PathBuf, u64)>> {
    // A panic while holding the lock leaves a consistent Vec: keep using it.
    PIN_OWNERS.lock().unwrap_or_else(|e| e.into_inner())
}

/// A `relay-ctl daemon` process running in a namespace (entered with `nsenter --net`, which,
/// unlike `ip netns exec`, keeps the host's /sys/fs/bpf so the pins are visible to us).
/// Dropping it kills the process and, if it owns them (see the module doc), removes the
/// instance's pins, also after a failure.
pub struct DaemonProcess {
    child: Child,
    /// Start number: owner key in `PIN_OWNERS`.
    start: u64,
    bin: PathBuf,
    netns: PathBuf,
    instance: Instance,
    bpffs_root: PathBuf,
    log: PathBuf,
}

impl DaemonProcess {
    /// Start `bin daemon --iface ...` for instance `name` (removing any pins it had first) and
    /// wait until it says it is ready.
    pub fn start(
        bin: &Path,
        netns: &Netns,
        bpffs_root: &Path,
        name: &str,
        ifaces: &[&str],
    ) -> Result<DaemonProcess> {
        let args: Vec<String> = ifaces
            .iter()
            .flat_map(|i| ["--iface".to_owned(), (*i).to_owned()])
            .collect();
        Self::start_with(bin, netns, bpffs_root, name, &args, true)
    }

    /// Start `bin --instance name --bpffs-root root daemon <args...>` and wait (up to 20 s)
    /// until its log says "ready:". `fresh` removes a pinned instance of that name first;
    /// without it the new daemon finds the pins of its predecessor and must adopt them (the
    /// hitless restart). Either way this guard now owns the pins.
    pub fn start_with(
        bin: &Path,
        netns: &Netns,
        bpffs_root: &Path,
        name: &str,
        args: &[String],
        fresh: bool,
    ) -> Result<DaemonProcess> {
        Self::start_with_env(bin, netns, bpffs_root, name, args, fresh, |_| vec![])
    }

    /// [`DaemonProcess::start_with`], adding the environment variables `env` returns for the
    /// daemon's log file (its stderr), e.g. a `JOURNAL_STREAM` naming that file's inode.
    pub fn start_with_env(
        bin: &Path,
        netns: &Netns,
        bpffs_root: &Path,
        name: &str,
        args: &[String],
        fresh: bool,
        env: impl FnOnce(&Path) -> Vec<(String, String)>,
    ) -> Result<DaemonProcess> {
        let instance = Instance::new(bpffs_root, name)?;
        if fresh {
            instance.remove()?;
        }
        let start = STARTS.fetch_add(1, Ordering::Relaxed);
        // Unique per start, so a restarted daemon's log does not mix with its predecessor's.
        let log = std::env::temp_dir().join(format!(
            "relay-ctl-{name}-{}-{start}.log",
            std::process::id()
        ));
        let log_file =
            fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let netns = netns_path(netns.name());
        let child = Command::new("nsenter")
            .arg(format!("--net={}", netns.display()))
            .arg(bin)
            .args(["--instance", name, "--bpffs-root"])
            .arg(bpffs_root)
            .arg("daemon")
            .args(args)
            .env("RUST_LOG", "info")
            .envs(env(&log))
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {} under nsenter", bin.display()))?;
        {
            let mut owners = pin_owners();
            owners.retain(|(dir, _)| dir != instance.dir());
            owners.push((instance.dir().to_owned(), start));
        }
        // From here on Drop cleans up: process, pins (owned now) and log.
        let mut d = DaemonProcess {
            child,
            start,
            bin: bin.to_owned(),
            netns,
            instance,
            bpffs_root: bpffs_root.to_owned(),
            log,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        while !d.log().contains("ready:") {
            if let Some(status) = d.child.try_wait()? {
                bail!("daemon exited with {status}:\n{}", d.log());
            }
            if Instant::now() > deadline {
                bail!("daemon not ready after 20 s:\n{}", d.log());
            }
            std::thread::sleep(POLL);
        }
        Ok(d)
    }

    /// Everything the daemon has logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The daemon's log file (stderr), unique to this start; removed on drop.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn instance(&self) -> &Instance {
        &self.instance
    }

    /// The daemon's pid (nsenter execs the daemon, so it is the daemon's own).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether dropping this guard removes the instance's pins (no later start for the same
    /// instance has taken them over).
    pub fn owns_pins(&self) -> bool {
        pin_owners()
            .iter()
            .any(|(dir, s)| dir == self.instance.dir() && *s == self.start)
    }

    /// SIGTERM and wait for a clean exit (the default exit leaves XDP attached via the pins).
    pub fn stop(&mut self) -> Result<()> {
        // A reaped child's pid may belong to another process by now: never signal it.
        if let Some(status) = self.child.try_wait()? {
            bail!("daemon had already exited ({status}):\n{}", self.log());
        }
        // SAFETY: kill(2) on our own child's pid, which is not reaped yet.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait()?;
        anyhow::ensure!(status.success(), "daemon exit {status}:\n{}", self.log());
        Ok(())
    }

    /// SIGKILL (a crash: no cleanup runs in the daemon) and reap the process. The pins stay,
    /// so XDP keeps forwarding; they stay owned by this guard until the next start for the
    /// instance takes them over. Fails if the daemon had already exited by itself.
    pub fn kill9(&mut self) -> Result<()> {
        // std sends SIGKILL, and never signals a child it has already reaped.
        self.child.kill().context("SIGKILL to the daemon")?;
        let status = self.child.wait().context("reaping the daemon")?;
        if status.signal() != Some(libc::SIGKILL) {
            bail!(
                "daemon had already exited ({status}) before kill -9:\n{}",
                self.log()
            );
        }
        Ok(())
    }

    /// Run the same binary as `bin --api <api> <args...>` inside the daemon's namespace (the
    /// API listens on that namespace's loopback) and return its output, whatever its exit
    /// status. Killed after 15 s.
    pub fn cli(&self, api: SocketAddr, args: &[&str]) -> Result<Output> {
        let what = format!("relay-ctl --api {api} {}", args.join(" "));
        let mut child = Command::new("nsenter")
            .arg(format!("--net={}", self.netns.display()))
            .arg(&self.bin)
            .arg("--api")
            .arg(api.to_string())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        // Drain both pipes while waiting: a full pipe would block the CLI forever.
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        let deadline = Instant::now() + CLI_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "{what}: no exit after {CLI_TIMEOUT:?}; stderr:\n{}",
                    String::from_utf8_lossy(&join(stderr))
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Ok(Output {
            status,
            stdout: join(stdout),
            stderr: join(stderr),
        })
    }
}

/// Read a child's pipe to the end on a thread.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> Option<JoinHandle<Vec<u8>>> {
    pipe.map(|mut p| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            // A read error just ends the capture: the output is for diagnosis.
            let _ = p.read_to_end(&mut buf);
            buf
        })
    })
}

fn join(h: Option<JoinHandle<Vec<u8>>>) -> Vec<u8> {
    h.and_then(|h| h.join().ok()).unwrap_or_default()
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        // Harmless after stop()/kill9(): std does not signal a reaped child.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let owned = {
            let mut owners = pin_owners();
            let before = owners.len();
            owners.retain(|(dir, s)| !(dir == self.instance.dir() && *s == self.start));
            owners.len() != before
        };
        if owned {
            if let Err(e) = self.instance.remove() {
                eprintln!("cleanup: {e:#}");
            }
            // The root goes too once no other instance uses it (fails harmlessly otherwise).
            let _ = fs::remove_dir(&self.bpffs_root);
        }
        let _ = fs::remove_file(&self.log);
    }
}
