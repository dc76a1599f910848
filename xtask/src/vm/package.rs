//! `vm-test --package`: the Debian package in a real booted Debian 12 (vm-tests/README.md,
//! "The package guest"). A root built by Debian's own mmdebstrap (cached like the kernels) is
//! packed per run into an ext4 image with the two .debs and the scenario; Debian's 6.1 kernel
//! boots it through a tiny busybox initramfs that only loads the disk's modules and
//! `switch_root`s to the image's systemd, which runs `vmtest.service`. The verdict comes from
//! the console markers, as for the other guests.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{kernel, qemu};
use crate::util::{Pins, cache_dir, command, output, repo_root, run, secs};

/// The root's Debian suite and mmdebstrap variant (`apt`: Essential, apt and what we name).
const SUITE: &str = "bookworm";
const VARIANT: &str = "apt";

/// What the image holds besides Essential and apt: systemd as PID 1 and what the scenario
/// runs (`ip`, `ethtool`, `sysctl`, `curl` for the API, python3 for the numbered stream).
/// The package's own dependencies must be among them: the guest installs offline.
const ROOT_PACKAGES: &[&str] = &[
    "systemd-sysv",
    "iproute2",
    "ethtool",
    "procps",
    "kmod",
    "curl",
    "python3-minimal",
];

/// Documentation and translations are of no use in the guest and a third of the image.
const DPKG_EXCLUDES: &[&str] = &[
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-exclude=/usr/share/locale/*",
];

/// The steps `vm-tests/package/scenario.sh` passes, in order, each as `package-<step>`.
const STEPS: &[&str] = &[
    "systemd",
    "topology",
    "install",
    "start",
    "session",
    "restart",
    "upgrade",
    "zero-loss",
    "purge",
];

/// Boot (~15 s under TCG), three apt runs and the stream with its restarts: a normal run takes
/// about two minutes under TCG; `vmtest.service` gives up after 400 s.
const GUEST_TIMEOUT: Duration = Duration::from_secs(480);

/// One package to install in the guest: the path of the .deb and its Debian version.
pub struct Deb {
    pub path: PathBuf,
    pub version: String,
}

/// The two packages the guest installs and upgrades to, built by `./x package`'s own code: its
/// default version, then the same build as a higher revision (`<version>+vmtest`; the binary
/// is the same, dpkg and the maintainer scripts see a real upgrade).
pub fn build_debs(pins: &Pins) -> Result<[Deb; 2]> {
    let first = crate::package::build_deb(pins, None)?;
    let version = deb_version(&first)?;
    // build_deb reuses one staging name per version: keep the first .deb out of its way.
    let second_version = format!("{version}+vmtest");
    let second = crate::package::build_deb(pins, Some(&second_version))?;
    if deb_version(&second)? != second_version {
        bail!(
            "{} does not carry version {second_version}",
            second.display()
        );
    }
    Ok([
        Deb {
            path: first,
            version,
        },
        Deb {
            path: second,
            version: second_version,
        },
    ])
}

/// The cached Debian root (a directory tree made by mmdebstrap), made first if needed.
pub fn root_image() -> Result<PathBuf> {
    let sources = host_sources()?;
    let mut key = format!(
        "suite: {SUITE}\nvariant: {VARIANT}\npackages: {}\nexcludes: {}\n",
        ROOT_PACKAGES.join(","),
        DPKG_EXCLUDES.join(",")
    );
    for s in &sources {
        key.push_str(&format!(
            "sources {}:\n{}\n",
            s.display(),
            fs::read_to_string(s)?
        ));
    }
    let dir = cache_dir()?
        .join("vm")
        .join(format!("debian-root_{:016x}", fnv1a(key.as_bytes())));
    let root = dir.join("root");
    if fs::read_to_string(dir.join("complete")).is_ok_and(|k| k == key) {
        return Ok(root);
    }
    let start = Instant::now();
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    let mut cmd = command("mmdebstrap")?;
    cmd.args(["--mode=root", "--variant", VARIANT, "--include"])
        .arg(ROOT_PACKAGES.join(","));
    for ex in DPKG_EXCLUDES {
        cmd.arg(format!("--dpkgopt={ex}"));
    }
    cmd.arg(SUITE).arg(&root).args(&sources);
    if let Err(e) = run(&mut cmd) {
        // A half-made root must not be taken for a cache.
        let _ = fs::remove_dir_all(&dir);
        return Err(e.context("building the Debian root with mmdebstrap"));
    }
    fs::write(dir.join("complete"), &key)?;
    println!(
        "Debian root cached in {} ({})",
        dir.display(),
        secs(start.elapsed())
    );
    Ok(root)
}

/// The host's apt sources for the suite, handed to mmdebstrap as they are: the guest's
/// packages come from the mirror this machine is configured with.
fn host_sources() -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let list = Path::new("/etc/apt/sources.list");
    if list.is_file() {
        files.push(list.to_path_buf());
    }
    if let Ok(entries) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "list" || e == "sources"))
            .collect();
        more.sort();
        files.extend(more);
    }
    // Only those naming the suite: a third-party repository for the host has no place here.
    files.retain(|f| fs::read_to_string(f).is_ok_and(|s| s.contains(SUITE)));
    if files.is_empty() {
        bail!("no apt source under /etc/apt names {SUITE}: mmdebstrap needs a Debian mirror");
    }
    Ok(files)
}

/// 64-bit FNV-1a: a stable cache key without another dependency.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Boots the package guest on `kernel` with `debs` (installed, then upgraded to, in that
/// order) and judges it. The console is kept in `target/vm/package/console.log`.
pub fn boot(kernel: &kernel::Kernel, root: &Path, debs: &[Deb; 2]) -> Result<()> {
    if debs[0].version == debs[1].version {
        bail!(
            "the upgrade needs two versions, got {} twice",
            debs[0].version
        );
    }
    let out_dir = repo_root().join("target/vm/package");
    fs::create_dir_all(&out_dir)?;
    let start = Instant::now();
    let disk = out_dir.join("root.img");
    let stage = out_dir.join("rootfs");
    let made = disk_image(root, &stage, &disk, debs);
    // The staged copy is ~200 MB: gone whether the image was made or not.
    let _ = fs::remove_dir_all(&stage);
    made?;
    let mut modules: Vec<&Path> = kernel.modules.iter().map(|m| m.as_path()).collect();
    modules.extend(kernel.rootfs_modules.iter().map(|m| m.as_path()));
    let initrd = initramfs(&out_dir, &modules)?;
    println!(
        "==> vm: package guest image ready ({}); booting {} ({})",
        secs(start.elapsed()),
        kernel.label,
        kernel.vmlinuz.display()
    );
    let opts = qemu::Options {
        memory_mb: 1024,
        timeout: GUEST_TIMEOUT,
        out_share: None,
        live: false,
        disk: Some(&disk),
        host_usr: false,
    };
    let steps: Vec<String> = STEPS.iter().map(|s| format!("package-{s}")).collect();
    let boot_start = Instant::now();
    let verdict = qemu::boot(&kernel.vmlinuz, &initrd, &steps, &opts);
    // 1 GB (sparse) per run: not worth keeping once judged.
    let _ = fs::remove_file(&disk);
    let verdict = verdict?;
    let log_path = out_dir.join("console.log");
    fs::write(&log_path, verdict.log.join("\n") + "\n")?;
    if verdict.failures.is_empty() {
        println!(
            "vm package: {} steps passed, guest {} (console: {})",
            steps.len(),
            secs(boot_start.elapsed()),
            log_path.display()
        );
        return Ok(());
    }
    println!("---- package guest console ----");
    for line in &verdict.log {
        println!("{line}");
    }
    println!("---- end of package guest console ----");
    for f in &verdict.failures {
        println!("vm package: FAIL {f}");
    }
    bail!(
        "the package guest failed ({} problems)",
        verdict.failures.len()
    )
}

/// A per-run copy of the cached root with the scenario, its unit and the .debs, packed into an
/// ext4 image by `mke2fs -d` (no loop device, no mount). The cache itself stays untouched.
fn disk_image(root: &Path, stage: &Path, disk: &Path, debs: &[Deb; 2]) -> Result<()> {
    let _ = fs::remove_dir_all(stage);
    let _ = fs::remove_file(disk);
    run(command("cp")?
        .args(["-a", "--reflink=auto"])
        .arg(root)
        .arg(stage))?;
    let src = repo_root().join("vm-tests/package");
    let vmtest = stage.join("vmtest");
    fs::create_dir_all(&vmtest)?;
    for f in ["scenario.sh", "media.py"] {
        copy(&src.join(f), &vmtest.join(f))?;
    }
    let mut versions = String::new();
    for deb in debs {
        let name = deb_name(&deb.version);
        copy(&deb.path, &vmtest.join(&name))?;
        versions.push_str(&deb.version);
        versions.push('\n');
    }
    fs::write(vmtest.join("versions"), versions)?;
    let units = stage.join("etc/systemd/system");
    copy(&src.join("vmtest.service"), &units.join("vmtest.service"))?;
    let wants = units.join("multi-user.target.wants");
    fs::create_dir_all(&wants)?;
    symlink(
        "/etc/systemd/system/vmtest.service",
        wants.join("vmtest.service"),
    )?;
    // The console is the test's channel: no login prompt on it.
    symlink("/dev/null", units.join("serial-getty@ttyS0.service"))?;
    fs::write(stage.join("etc/hostname"), "vmtest\n")?;
    run(command("mke2fs")?
        .args(["-q", "-F", "-t", "ext4", "-L", "vmroot", "-d"])
        .arg(stage)
        .arg(disk)
        .arg("1G"))?;
    Ok(())
}

/// What `./x package` names a .deb: the guest installs it under the same name.
fn deb_name(version: &str) -> String {
    format!("media-relay_{version}_amd64.deb")
}

/// busybox, `vm-tests/package/init` and the modules to reach the root and run the scenario.
fn initramfs(out_dir: &Path, modules: &[&Path]) -> Result<PathBuf> {
    let stage = out_dir.join("initramfs");
    let _ = fs::remove_dir_all(&stage);
    fs::create_dir_all(stage.join("busybox"))?;
    fs::create_dir_all(stage.join("modules"))?;
    copy(Path::new("/bin/busybox"), &stage.join("busybox/busybox"))?;
    copy(
        &repo_root().join("vm-tests/package/init"),
        &stage.join("init"),
    )?;
    let mut names = Vec::new();
    for ko in modules {
        let name = ko.file_name().context("module path")?;
        copy(ko, &stage.join("modules").join(name))?;
        names.push(name.to_string_lossy().trim_end_matches(".ko").to_string());
    }
    fs::write(stage.join("modules.list"), names.join("\n") + "\n")?;
    let cpio = out_dir.join("initramfs.cpio");
    let packed = run(command("sh")?
        .arg("-c")
        .arg("find . | LC_ALL=C sort | cpio --quiet -o -H newc > \"$0\"")
        .arg(&cpio)
        .current_dir(&stage));
    let _ = fs::remove_dir_all(&stage);
    packed?;
    Ok(cpio)
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// The Debian version inside a .deb (`dpkg-deb -f`).
pub fn deb_version(deb: &Path) -> Result<String> {
    Ok(
        output(command("dpkg-deb")?.arg("-f").arg(deb).arg("Version"))?
            .trim()
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::{deb_name, fnv1a};

    #[test]
    fn cache_key_and_names() {
        // FNV-1a's published test vectors.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(deb_name("0.1.0-1"), "media-relay_0.1.0-1_amd64.deb");
    }
}
