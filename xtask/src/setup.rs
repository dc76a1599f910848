//! `setup`: everything a fresh machine (or CI run) needs before build/lint/test. Idempotent:
//! each step checks first, so a second run only costs a few quick queries.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::util::{
    Pins, cache_dir, cargo, cargo_home, command, is_root, output, run, rustc, rustup,
    rustup_name_matches, secs,
};

const STABLE_COMPONENTS: &[&str] = &["rustfmt", "clippy"];
/// rust-src for `-Z build-std=core` (bpfel-unknown-none ships no prebuilt core).
const NIGHTLY_COMPONENTS: &[&str] = &["rust-src", "clippy", "rustfmt"];

const BPF_LINKER_VERSION: &str = "0.13.0";
/// cargo-fuzz runs the libFuzzer targets in fuzz/ (with the pinned nightly).
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Debian packages the tests need.
const APT_PACKAGES: &[&str] = &[
    // `ip netns`, `ip link ... type veth`, `ip neigh`: every namespace test and the demo.
    "iproute2",
    // Turns on GRO (NAPI) and off TX checksum offload on the end hosts' veths, so they accept
    // XDP-redirected frames and send complete checksums (relay-testbed/src/topology.rs says
    // why).
    "ethtool",
    // `nsenter --net`: runs the daemon inside the relay namespace with the host's bpffs.
    "util-linux",
    // `sysctl`: the fixture namespace turns forwarding on per interface.
    "procps",
    // `nft`: the NAT test topology's namespaces masquerade like home routers
    // (relay-testbed/src/nat.rs).
    "nftables",
    // `vm-test` boots Debian's kernels under QEMU (TCG where KVM is unavailable).
    "qemu-system-x86",
    // The guest's userland before the host's /usr is mounted: a static busybox as PID 1.
    "busybox-static",
    // `vm-test` packs the guest's initramfs (newc format).
    "cpio",
    // 6.12's modules ship as .ko.xz; busybox's insmod needs them decompressed.
    "xz-utils",
    // Run in the VM guests from the host's 9p-shared /usr: `curl` posts the session to the
    // daemon's API, `python3` is the UDP sink and reads the API's JSON (vm-tests/guest).
    "curl",
    "python3",
    // SIPp plays the SIP proxy against seed 003's relay interface (tests/sip_relay.rs).
    "sip-tester",
    // The ng protocol's real peers (relay-ctl/tests/ng_kamailio.rs): Kamailio 5.6's rtpengine
    // module drives the daemon, sipp (above) places the calls and streams their RTP, and
    // rtpengine-utils' `rtpengine-ng-client` speaks ng to the listener directly.
    "kamailio",
    "rtpengine-utils",
    // `turnutils_stunclient`, `turnutils_uclient`, `turnutils_peer`: STUN and TURN clients
    // nobody here wrote, for the interop tests (tests/stun_interop.rs, tests/turn_e2e.rs). Only
    // the clients are used; the server stays off (NO_SERVICE_PACKAGES).
    "coturn",
    // Two headless browsers make a WebRTC call through the TURN server (tests/turn_browser.rs,
    // relay-testbed/src/browser.rs): the real client TURN was made for.
    "chromium",
    // `cargo xtask bench`: rtpengine's userspace daemon is the reference relay (run by the bench
    // in a namespace with its own config; the packaged service is disabled by setup), and the
    // chart's text font.
    "rtpengine-daemon",
    "fonts-dejavu-core",
    // `cargo xtask bench --incumbent` runs rtpengine with its kernel module in the 6.1 guest
    // (vm-tests/README.md, bench guest): `iptables-legacy` inserts its RTPENGINE rule there,
    // from the host's /usr over 9p.
    "iptables",
    // The RTPENGINE target's iptables extension (libxt_RTPENGINE.so), for that rule.
    "rtpengine-iptables",
    // Build xt_RTPENGINE.ko against the guest kernel's headers (xtask/src/vm/kmod.rs): the
    // 6.1 headers name gcc-12 as their compiler, and kbuild is make. The module's source,
    // rtpengine-kernel-dkms, is only `apt-get download`ed: installing it would run DKMS
    // against the host's kernel.
    "gcc-12",
    "make",
    // A real Prometheus (and its promtool) loads deploy/prometheus/media-relay-rules.yml,
    // scrapes the daemon and runs the Grafana dashboard's queries
    // (relay-ctl/tests/prometheus_rules.rs). The test starts its own in a namespace; the
    // packaged service stays off (NO_SERVICE_PACKAGES).
    "prometheus",
    // `./x package` (xtask/src/package.rs): dpkg-deb builds the .deb and dpkg-shlibdeps
    // (dpkg-dev) computes its library dependencies, strip (binutils) strips the binary;
    // `test` checks the package with lintian and the unit with systemd-analyze (systemd).
    "dpkg-dev",
    "binutils",
    "lintian",
    "systemd",
    // `vm-test --package` (xtask/src/vm/package.rs): mmdebstrap builds the Debian 12 root the
    // package guest boots (gpg: it checks the sources' Signed-By keys with it), mke2fs
    // (e2fsprogs) packs it per run into an ext4 image with `-d`, no loop device or mount.
    "mmdebstrap",
    "gpg",
    "e2fsprogs",
];

/// Packages whose maintainer scripts would start a system service, and the unit: the tests and
/// the bench start their own instances in namespaces, so the host must not keep one running
/// (it would hold ports such as 5060, 3478 and 2223, and CPU).
const NO_SERVICE_PACKAGES: &[(&str, &str)] = &[
    ("kamailio", "kamailio.service"),
    ("coturn", "coturn.service"),
    ("rtpengine-daemon", "rtpengine-daemon.service"),
    ("prometheus", "prometheus.service"),
];

/// invoke-rc.d asks this script whether it may start a service; 101 means "no".
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

const BPFFS: &str = "/sys/fs/bpf";

/// What a step found.
enum Outcome {
    AlreadyDone,
    Done,
}

/// Runs the steps in order and reports one line per step.
struct Steps {
    did_work: bool,
}

impl Steps {
    fn step(&mut self, name: &str, f: impl FnOnce() -> Result<Outcome>) -> Result<()> {
        self.step_with(name, || Ok((f()?, ())))
    }

    /// A step that also hands a value to later steps.
    fn step_with<T>(&mut self, name: &str, f: impl FnOnce() -> Result<(Outcome, T)>) -> Result<T> {
        let start = Instant::now();
        let (outcome, value) = f().with_context(|| format!("setup failed at step '{name}'"))?;
        match outcome {
            Outcome::AlreadyDone => println!("setup: {name}: ok (already done)"),
            Outcome::Done => {
                self.did_work = true;
                println!("setup: {name}: done in {}", secs(start.elapsed()));
            }
        }
        Ok(value)
    }
}

pub fn run_setup(pins: &Pins) -> Result<()> {
    let start = Instant::now();
    let mut steps = Steps { did_work: false };
    steps.step("toolchain-stable", || {
        ensure_toolchain(&pins.stable, STABLE_COMPONENTS)
    })?;
    steps.step("toolchain-nightly", || {
        ensure_toolchain(&pins.nightly, NIGHTLY_COMPONENTS)
    })?;
    let llvm = steps.step_with("llvm-prefix", || ensure_llvm_prefix(&pins.nightly))?;
    steps.step("bpf-linker", || ensure_bpf_linker(&pins.nightly, &llvm))?;
    steps.step("cargo-fuzz", || ensure_cargo_fuzz(&pins.nightly))?;
    steps.step("apt-packages", ensure_apt_packages)?;
    steps.step("services-off", ensure_services_off)?;
    steps.step("bpffs", ensure_bpffs)?;
    if steps.did_work {
        println!("setup: finished in {}", secs(start.elapsed()));
    } else {
        println!("setup: nothing to do");
    }
    Ok(())
}

/// The toolchain is installed explicitly because RUSTUP_AUTO_INSTALL=0 on these machines.
fn ensure_toolchain(pin: &str, components: &[&str]) -> Result<Outcome> {
    let toolchains = output(rustup()?.args(["toolchain", "list"]))?;
    let installed = toolchains
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .any(|name| rustup_name_matches(name, pin));
    if !installed {
        let mut cmd = rustup()?;
        cmd.args(["toolchain", "install", pin, "--profile", "minimal"]);
        for component in components {
            cmd.args(["-c", component]);
        }
        run(&mut cmd)?;
        return Ok(Outcome::Done);
    }

    let have = output(rustup()?.args(["component", "list", "--installed", "--toolchain", pin]))?;
    let missing: Vec<&str> = components
        .iter()
        .copied()
        .filter(|wanted| {
            !have
                .lines()
                .any(|line| rustup_name_matches(line.trim(), wanted))
        })
        .collect();
    if missing.is_empty() {
        return Ok(Outcome::AlreadyDone);
    }
    run(rustup()?
        .args(["component", "add", "--toolchain", pin])
        .args(&missing))?;
    Ok(Outcome::Done)
}

/// An LLVM_PREFIX for building bpf-linker against the nightly's own libLLVM, so no system LLVM
/// is needed and bpf-linker's LLVM matches the one rustc emits bitcode for.
struct LlvmPrefix {
    dir: PathBuf,
    /// e.g. "23", for bpf-linker's `llvm-23` feature.
    major: String,
}

fn ensure_llvm_prefix(nightly: &str) -> Result<(Outcome, LlvmPrefix)> {
    let sysroot = output(rustc(nightly)?.args(["--print", "sysroot"]))?;
    let lib_dir = Path::new(sysroot.trim()).join("lib");
    let mut found = Vec::new();
    let entries =
        fs::read_dir(&lib_dir).with_context(|| format!("reading {}", lib_dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", lib_dir.display()))?;
        if let Some(name) = entry.file_name().to_str()
            && name.starts_with("libLLVM.so.")
        {
            found.push(name.to_string());
        }
    }
    // e.g. libLLVM.so.23.1-rust-1.101.0-nightly
    let [file_name] = found.as_slice() else {
        bail!(
            "expected exactly one libLLVM.so.* in {}, found {found:?}",
            lib_dir.display()
        );
    };
    let major = llvm_major(file_name)?;
    let target = lib_dir.join(file_name);

    let dir = cache_dir()?.join(format!("llvm-{nightly}"));
    // libLLVM.so for the link step, the file's own name (its soname) for run time.
    let mut outcome = Outcome::AlreadyDone;
    for link_name in ["libLLVM.so", file_name.as_str()] {
        if ensure_symlink(&dir.join("lib").join(link_name), &target)? {
            outcome = Outcome::Done;
        }
    }
    Ok((outcome, LlvmPrefix { dir, major }))
}

fn llvm_major(file_name: &str) -> Result<String> {
    let version = file_name.strip_prefix("libLLVM.so.").unwrap_or_default();
    let major: String = version.chars().take_while(char::is_ascii_digit).collect();
    if major.is_empty() {
        bail!("cannot read the LLVM major version from {file_name}");
    }
    Ok(major)
}

/// Makes `link` a symlink to `target`; returns whether anything changed.
fn ensure_symlink(link: &Path, target: &Path) -> Result<bool> {
    match fs::symlink_metadata(link) {
        Ok(meta) if meta.file_type().is_symlink() => {
            let current =
                fs::read_link(link).with_context(|| format!("reading {}", link.display()))?;
            if current == target {
                return Ok(false);
            }
            // Stale, e.g. the toolchain was reinstalled elsewhere.
            fs::remove_file(link).with_context(|| format!("removing {}", link.display()))?;
        }
        Ok(_) => bail!(
            "{} exists and is not a symlink; remove it and rerun",
            link.display()
        ),
        Err(err) if err.kind() == ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("checking {}", link.display())),
    }
    if let Some(parent) = link.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("linking {} -> {}", link.display(), target.display()))?;
    Ok(true)
}

fn ensure_bpf_linker(nightly: &str, llvm: &LlvmPrefix) -> Result<Outcome> {
    let root = cargo_home()?;
    let bin = root.join("bin/bpf-linker");
    let cache = cache_dir()?;
    let stamp_path = cache.join("bpf-linker.stamp");
    // The stamp records what the binary was built against: a right version built for another
    // nightly's LLVM would still print 0.13.0 but emit for the wrong LLVM.
    let stamp = format!("{BPF_LINKER_VERSION} {nightly} llvm-{}", llvm.major);
    let stamp_ok = fs::read_to_string(&stamp_path).is_ok_and(|s| s.trim_end() == stamp);
    if stamp_ok && bpf_linker_version_ok(&bin) {
        return Ok(Outcome::AlreadyDone);
    }

    fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let mut cmd = cargo(nightly)?;
    cmd.args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
        .args(["--locked", "--no-default-features", "--force"])
        .args(["--features", &format!("llvm-{}", llvm.major)])
        .arg("--root")
        .arg(&root)
        .env("LLVM_PREFIX", &llvm.dir)
        // Away from the workspace, so its .cargo/config.toml plays no part.
        .current_dir(&cache);
    run(&mut cmd)?;
    if !bpf_linker_version_ok(&bin) {
        bail!(
            "{} was installed but `--version` does not report {BPF_LINKER_VERSION}",
            bin.display()
        );
    }
    fs::write(&stamp_path, format!("{stamp}\n"))
        .with_context(|| format!("writing {}", stamp_path.display()))?;
    Ok(Outcome::Done)
}

fn ensure_cargo_fuzz(nightly: &str) -> Result<Outcome> {
    let root = cargo_home()?;
    let bin = root.join("bin/cargo-fuzz");
    let installed = bin.is_file()
        && command(&bin).is_ok_and(|mut cmd| {
            output(cmd.arg("--version")).is_ok_and(|out| {
                out.split_whitespace()
                    .any(|word| word == CARGO_FUZZ_VERSION)
            })
        });
    if installed {
        return Ok(Outcome::AlreadyDone);
    }
    let cache = cache_dir()?;
    fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let mut cmd = cargo(nightly)?;
    cmd.args(["install", "cargo-fuzz", "--version", CARGO_FUZZ_VERSION])
        .args(["--locked", "--force", "--root"])
        .arg(&root)
        // Away from the workspace, so its .cargo/config.toml plays no part.
        .current_dir(&cache);
    run(&mut cmd)?;
    Ok(Outcome::Done)
}

fn bpf_linker_version_ok(bin: &Path) -> bool {
    if !bin.is_file() {
        return false;
    }
    let Ok(mut cmd) = command(bin) else {
        return false;
    };
    output(cmd.arg("--version")).is_ok_and(|out| {
        out.split_whitespace()
            .any(|word| word == BPF_LINKER_VERSION)
    })
}

fn ensure_apt_packages() -> Result<Outcome> {
    let mut missing = Vec::new();
    for &package in APT_PACKAGES {
        if !dpkg_installed(package) {
            missing.push(package);
        }
    }
    if missing.is_empty() {
        return Ok(Outcome::AlreadyDone);
    }
    if !is_root()? {
        bail!(
            "missing Debian packages {}; installing them needs root (run setup as root)",
            missing.join(" ")
        );
    }
    run(command("apt-get")?.arg("update"))?;
    let starts_service = missing
        .iter()
        .any(|p| NO_SERVICE_PACKAGES.iter().any(|(pkg, _)| pkg == p));
    let _policy = if starts_service {
        PolicyRcD::deny_starts()?
    } else {
        None
    };
    run(command("apt-get")?
        .args(["install", "-y", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    Ok(Outcome::Done)
}

/// A temporary policy-rc.d that refuses every service start during the install; removed
/// again on drop. An operator's own policy-rc.d is left alone (and then decides).
struct PolicyRcD;

impl PolicyRcD {
    fn deny_starts() -> Result<Option<PolicyRcD>> {
        if Path::new(POLICY_RC_D).exists() {
            return Ok(None);
        }
        fs::write(
            POLICY_RC_D,
            "#!/bin/sh\n# written by `./x setup` for one apt-get run\nexit 101\n",
        )
        .with_context(|| format!("writing {POLICY_RC_D}"))?;
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(POLICY_RC_D, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod {POLICY_RC_D}"))?;
        Ok(Some(PolicyRcD))
    }
}

impl Drop for PolicyRcD {
    fn drop(&mut self) {
        let _ = fs::remove_file(POLICY_RC_D);
    }
}

/// Under systemd the packages above also enable their units (started again by a later boot):
/// disable and stop any that is enabled or running, on every setup, so a machine set up before
/// is fixed too. Without systemd (containers, CI) policy-rc.d kept them from starting and
/// nothing starts them later.
fn ensure_services_off() -> Result<Outcome> {
    if !Path::new("/run/systemd/system").exists() {
        return Ok(Outcome::AlreadyDone);
    }
    let state = |verb: &str, unit: &str| {
        command("systemctl")
            .and_then(|mut c| output(c.args([verb, unit])))
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let mut outcome = Outcome::AlreadyDone;
    for (_, unit) in NO_SERVICE_PACKAGES {
        if state("is-enabled", unit) != "enabled" && state("is-active", unit) != "active" {
            continue;
        }
        if !is_root()? {
            bail!("{unit} is enabled or running; disabling it needs root");
        }
        run(command("systemctl")?.args(["disable", "--now", unit]))?;
        outcome = Outcome::Done;
    }
    Ok(outcome)
}

/// dpkg-query exits non-zero for a package it has never heard of: that is "not installed".
fn dpkg_installed(package: &str) -> bool {
    let Ok(mut cmd) = command("dpkg-query") else {
        return false;
    };
    cmd.args(["-W", "-f=${Status}\n", package]);
    output(&mut cmd).is_ok_and(|status| status.lines().any(|line| line == "install ok installed"))
}

fn ensure_bpffs() -> Result<Outcome> {
    if bpffs_mounted()? {
        return Ok(Outcome::AlreadyDone);
    }
    if !is_root()? {
        bail!("{BPFFS} is not a bpf mount; mounting it needs root (run setup as root)");
    }
    fs::create_dir_all(BPFFS).with_context(|| format!("creating {BPFFS}"))?;
    run(command("mount")?.args(["-t", "bpf", "bpf", BPFFS]))?;
    if !bpffs_mounted()? {
        bail!("mounted bpffs but {BPFFS} is still not a bpf mount");
    }
    Ok(Outcome::Done)
}

fn bpffs_mounted() -> Result<bool> {
    let mounts = fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    Ok(mounts.lines().any(|line| {
        // device mountpoint type options ...
        let mut fields = line.split_whitespace().skip(1);
        fields.next() == Some(BPFFS) && fields.next() == Some("bpf")
    }))
}
