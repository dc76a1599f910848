//! Boots one guest under QEMU with a hard timeout and judges it from the console markers the
//! guest prints (`VMTEST PASS|FAIL <scenario>`, `VMTEST DONE`), never from throughput.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How one guest runs: the vm-test guests and the bench guest differ in these.
pub struct Options<'a> {
    pub memory_mb: u32,
    /// Whole-guest limit; QEMU is killed after it.
    pub timeout: Duration,
    /// A host directory the guest may write, exported as 9p tag `out` (the init mounts it at
    /// `/out`).
    pub out_share: Option<&'a Path>,
    /// Print every console line as it arrives (a long bench run shows its progress), not
    /// only the markers.
    pub live: bool,
    /// A raw disk image, the guest's `/dev/vda` (the package guest's Debian root).
    pub disk: Option<&'a Path>,
    /// Share the host's `/usr` read-only (tag `hostusr`); the package guest runs its own.
    pub host_usr: bool,
}

impl Options<'_> {
    /// vm-test: boot (~5 s under TCG) plus every scenario's own 120 s limit is far above a
    /// normal run (~30 s), yet 240 s keeps both kernels together under CI's 10 minutes.
    pub fn vm_test() -> Options<'static> {
        Options {
            memory_mb: 1024,
            timeout: Duration::from_secs(240),
            out_share: None,
            live: false,
            disk: None,
            host_usr: true,
        }
    }
}

/// What the console showed.
pub struct Verdict {
    pub log: Vec<String>,
    pub failures: Vec<String>,
}

/// Boots with KVM where it works, else (or if the KVM guest never reached its init: nested
/// KVM can open /dev/kvm and still fail on the first vCPU) under TCG.
pub fn boot(
    vmlinuz: &Path,
    initrd: &Path,
    scenarios: &[String],
    opts: &Options,
) -> Result<Verdict> {
    if kvm_openable() {
        let v = boot_with(vmlinuz, initrd, scenarios, opts, true)?;
        if v.log.iter().any(|l| l.starts_with("VMTEST BOOTED")) {
            return Ok(v);
        }
        let tail = &v.log[v.log.len().saturating_sub(3)..];
        println!(
            "  KVM guest did not boot ({}); retrying under TCG",
            tail.join(" | ")
        );
    }
    boot_with(vmlinuz, initrd, scenarios, opts, false)
}

fn kvm_openable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

fn boot_with(
    vmlinuz: &Path,
    initrd: &Path,
    scenarios: &[String],
    opts: &Options,
    kvm: bool,
) -> Result<Verdict> {
    let (accel, cpu) = if kvm {
        ("q35,accel=kvm", "host")
    } else {
        ("q35,accel=tcg", "max")
    };
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-machine", accel, "-cpu", cpu, "-smp", "2", "-m"])
        .arg(opts.memory_mb.to_string())
        .args(["-nographic", "-no-reboot"])
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        // panic=-1: a guest panic reboots at once, and -no-reboot turns that into an exit.
        // mr.accel: the bench guest reports how it ran (TCG distorts what it measures).
        .arg("-append")
        .arg(format!(
            "console=ttyS0 panic=-1 oops=panic quiet loglevel=4 mr.accel={}",
            if kvm { "kvm" } else { "tcg" }
        ))
        // No network device: the guests' traffic stays on their own veths.
        .args(["-nic", "none"]);
    if opts.host_usr {
        // The host's /usr, read-only: ip, ethtool, nsenter, curl, python3 run unchanged.
        cmd.args([
            "-virtfs",
            "local,path=/usr,mount_tag=hostusr,security_model=none,readonly=on",
        ]);
    }
    if let Some(disk) = opts.disk {
        if disk.as_os_str().to_string_lossy().contains(',') {
            bail!("the disk image {} has a comma in its path", disk.display());
        }
        let mut spec = std::ffi::OsString::from("file=");
        spec.push(disk);
        spec.push(",format=raw,if=virtio,cache=unsafe");
        cmd.arg("-drive").arg(spec);
    }
    if let Some(out) = opts.out_share {
        // QEMU's option syntax would split the path at a comma.
        if out.as_os_str().to_string_lossy().contains(',') {
            bail!(
                "the shared directory {} has a comma in its path",
                out.display()
            );
        }
        // Writable; security_model=none: files appear owned by whoever runs QEMU.
        let mut spec = std::ffi::OsString::from("local,path=");
        spec.push(out);
        spec.push(",mount_tag=out,security_model=none");
        cmd.arg("-virtfs").arg(spec);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("starting qemu-system-x86_64")?;
    let (tx, rx) = mpsc::channel();
    for pipe in [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let deadline = Instant::now() + opts.timeout;
    let mut log = Vec::new();
    let mut timed_out = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                // Control characters from the serial line (e.g. \r) only clutter the log.
                let line: String = line.chars().filter(|c| !c.is_control()).collect();
                if opts.live || line.starts_with("VMTEST") || line.starts_with("== scenario") {
                    println!("  guest: {line}");
                }
                log.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // Killed on expiry; also reaps QEMU when the pipes closed first.
    let _ = child.kill();
    let _ = child.wait();
    let mut failures = judge(&log, scenarios);
    if timed_out {
        failures.insert(0, format!("guest hung: no exit within {:?}", opts.timeout));
    }
    Ok(Verdict { log, failures })
}

/// Every expected scenario passed, none failed, the guest said DONE, and no panic or BUG.
fn judge(log: &[String], scenarios: &[String]) -> Vec<String> {
    let mut failures = Vec::new();
    for line in log {
        if line.contains("Kernel panic") || line.contains("BUG:") || line.contains("Oops") {
            failures.push(format!("kernel: {line}"));
        }
        if let Some(why) = line.strip_prefix("VMTEST FAIL ") {
            failures.push(why.to_string());
        }
    }
    for s in scenarios {
        let pass = format!("VMTEST PASS {s}");
        if !log.contains(&pass) {
            failures.push(format!("{s}: no PASS marker"));
        }
    }
    if !log.iter().any(|l| l == "VMTEST DONE") {
        failures.push("the guest never printed VMTEST DONE".to_string());
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::judge;

    fn v(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn judges_markers() {
        let names = v(&["10-a", "20-b"]);
        let ok = v(&["VMTEST PASS 10-a", "VMTEST PASS 20-b", "VMTEST DONE"]);
        assert!(judge(&ok, &names).is_empty());
        let no_done = v(&["VMTEST PASS 10-a", "VMTEST PASS 20-b"]);
        assert_eq!(judge(&no_done, &names).len(), 1);
        let panic = v(&[
            "VMTEST PASS 10-a",
            "Kernel panic - not syncing",
            "VMTEST DONE",
        ]);
        assert_eq!(judge(&panic, &names).len(), 2);
        let failed = v(&["VMTEST FAIL 10-a: x", "VMTEST PASS 20-b", "VMTEST DONE"]);
        assert_eq!(judge(&failed, &names).len(), 2);
    }
}
