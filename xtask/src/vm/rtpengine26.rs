//! rtpengine 26.x for the bench guest (`cargo xtask bench --incumbent26`): the daemon and its
//! nftables kernel module (nft_rtpengine) built from the upstream release tarball in
//! `shared/incumbent/` (Debian 12 packages only 10.5). Both are cached in
//! `~/.cache/media-relay/vm/`:
//!
//! - `rtpengine-<version>_<tarball sha256 prefix>/rtpengine`: the daemon, built with upstream's
//!   own Makefiles without transcoding (`with_transcoding=no`, no bcg729): no ffmpeg or spandsp
//!   needed, and the kernel forwarding path is the same. Runs in the guest against the host's
//!   libraries (the guest borrows the host's `/usr`).
//! - `rtpengine26-kmod_<sha prefix>_<kernel version>/`: `nft_rtpengine.ko` built against the
//!   guest kernel's own Debian headers (downloaded, never installed, as kmod.rs does for
//!   xt_RTPENGINE), and the nf_tables modules it needs from the same image (`modules/`,
//!   `modules.list`).
//!
//! Module and daemon carry the same version string (the tarball's `.release-version`): the
//! daemon refuses a module of another version.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::kernel::{self, Kernel, modinfo};
use super::kmod::{kernel_release, unpack_headers};
use crate::util::{cache_dir, command, output, repo_root, run};

const MODULE: &str = "nft_rtpengine.ko";
/// What the guest must load before nft_rtpengine besides the netfilter list (its `depends=`
/// also names x_tables, which that list has). nf_tables needs libcrc32c, whose init asks the
/// crypto API for `crc32c` (a `softdep`, not a `depends=`): the generic implementation first.
const NFTABLES: &[&str] = &["crc32c_generic", "nf_tables"];

/// The kmod cache's `complete` marker: the module list it was made for.
fn kmod_stamp() -> String {
    format!("modules: {}\n", NFTABLES.join(","))
}

/// Debian packages the build needs: the libraries upstream's `utils/gen-common-flags` requires
/// through pkg-config (with transcoding off), gperf and perl for its generated hash tables,
/// pahole (`dwarves`) because the 6.12 headers ship vmlinux and kbuild then makes the
/// module's BTF, gcc-12 that the headers name. Installed by `ensure_build_deps` for this
/// command only: `cargo xtask setup` and CI do not need them.
pub const BUILD_DEPS: &[&str] = &[
    "make",
    "gcc-12",
    "pkgconf",
    "perl",
    "gperf",
    "xz-utils",
    "dwarves",
    "libglib2.0-dev",
    "libjson-glib-dev",
    "libcurl4-openssl-dev",
    "libevent-dev",
    "libpcre2-dev",
    "libwebsockets-dev",
    "libssl-dev",
    "zlib1g-dev",
    "libncurses-dev",
    "libopus-dev",
    "libjwt-dev",
    "libhiredis-dev",
    "libpcap-dev",
    "libmariadb-dev",
];

/// The daemon and the module for one guest kernel.
pub struct Build {
    pub version: String,
    pub daemon: PathBuf,
    pub ko: PathBuf,
    /// nf_tables and its dependencies, in load order, to load before `ko`.
    pub modules: Vec<PathBuf>,
}

/// `RTPENGINE26_TARBALL`, else the one `rtpengine-26.*.tar.xz` in the shared folder beside the
/// checkout (`../shared/incumbent/`).
pub fn tarball() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("RTPENGINE26_TARBALL") {
        return Ok(PathBuf::from(p));
    }
    let dir = repo_root().join("../shared/incumbent");
    let mut found: Vec<PathBuf> = fs::read_dir(&dir)
        .with_context(|| format!("reading {} (set RTPENGINE26_TARBALL)", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with("rtpengine-26.") && n.ends_with(".tar.xz")
            })
        })
        .collect();
    found.sort();
    match found.pop() {
        Some(p) => Ok(p),
        None => bail!("no rtpengine-26.*.tar.xz in {}", dir.display()),
    }
}

/// Installs the build dependencies that are missing (one `apt-get install`; needs root).
pub fn ensure_build_deps() -> Result<()> {
    let installed = |p: &str| {
        command("dpkg-query")
            .ok()
            .and_then(|mut c| output(c.args(["-W", "-f=${Status}", p])).ok())
            .is_some_and(|s| s.contains("install ok installed"))
    };
    let missing: Vec<&str> = BUILD_DEPS
        .iter()
        .copied()
        .filter(|p| !installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!(
        "rtpengine 26 build dependencies: installing {}",
        missing.join(" ")
    );
    run(command("apt-get")?
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing))
    .context("installing rtpengine 26's build dependencies (root, apt-get update first)")
}

/// The first 12 hex digits of the tarball's sha256: the cache key of everything built from it.
fn tarball_key(tarball: &Path) -> Result<String> {
    let out = output(command("sha256sum")?.arg(tarball))?;
    out.split_whitespace()
        .next()
        .filter(|h| h.len() >= 12)
        .map(|h| h[..12].to_string())
        .context("sha256sum printed no hash")
}

/// `rtpengine-26.3.0.0-e8b8212.tar.xz` -> `26.3.0.0`.
fn tarball_version(tarball: &Path) -> Result<String> {
    let name = tarball
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.strip_prefix("rtpengine-")
        .and_then(|r| r.strip_suffix(".tar.xz"))
        .and_then(|r| r.split('-').next())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .with_context(|| format!("'{name}' is not rtpengine-<version>[-<rev>].tar.xz"))
}

/// Returns the cached daemon and module for `kernel`, building what is missing.
pub fn fetch(kernel: &Kernel) -> Result<Build> {
    let tarball = tarball()?;
    let key = tarball_key(&tarball)?;
    let version = tarball_version(&tarball)?;
    let vm = cache_dir()?.join("vm");
    let daemon_dir = vm.join(format!("rtpengine-{version}_{key}"));
    let kmod_dir =
        vm.join(format!("rtpengine26-kmod_{key}_{}", kernel.version).replace(['~', '+', ':'], "-"));
    let daemon_ok = daemon_dir.join("complete").exists();
    let kmod_ok = fs::read_to_string(kmod_dir.join("complete")).is_ok_and(|s| s == kmod_stamp());
    if !(daemon_ok && kmod_ok) {
        ensure_build_deps()?;
    }
    if !daemon_ok {
        scratch_build(&daemon_dir, |scratch| {
            let src = extract(&tarball, scratch)?;
            build_daemon(&src, &daemon_dir)
        })
        .with_context(|| format!("building rtpengine {version}'s daemon"))?;
    }
    if !kmod_ok {
        scratch_build(&kmod_dir, |scratch| {
            let src = extract(&tarball, scratch)?;
            build_kmod(kernel, &src, scratch, &kmod_dir)
        })
        .with_context(|| {
            format!(
                "building {MODULE} {version} for {} {}",
                kernel.package, kernel.version
            )
        })?;
    }
    let release_version = fs::read_to_string(daemon_dir.join("version"))?;
    let kmod_version = fs::read_to_string(kmod_dir.join("version"))?;
    if release_version != kmod_version {
        bail!("cached daemon ({release_version}) and {MODULE} ({kmod_version}) differ in version");
    }
    let modules = fs::read_to_string(kmod_dir.join("modules.list"))?
        .lines()
        .filter(|m| !m.is_empty())
        .map(|m| kmod_dir.join("modules").join(format!("{m}.ko")))
        .collect();
    Ok(Build {
        version: release_version,
        daemon: daemon_dir.join("rtpengine"),
        ko: kmod_dir.join(MODULE),
        modules,
    })
}

/// Runs `f` with a fresh `<dir>.partial` scratch dir, removed afterwards either way (the
/// source tree and the headers are hundreds of MB).
fn scratch_build(dir: &Path, f: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let mut scratch = dir.as_os_str().to_owned();
    scratch.push(".partial");
    let scratch = PathBuf::from(scratch);
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch)?;
    let result = f(&scratch);
    let _ = fs::remove_dir_all(&scratch);
    result
}

/// Unpacks the tarball under `scratch`; returns its top directory.
fn extract(tarball: &Path, scratch: &Path) -> Result<PathBuf> {
    let dest = scratch.join("src");
    fs::create_dir_all(&dest)?;
    run(command("tar")?.arg("-xf").arg(tarball).arg("-C").arg(&dest))?;
    let top = fs::read_dir(&dest)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.join("daemon/Makefile").exists())
        .with_context(|| format!("{} has no */daemon/Makefile", tarball.display()))?;
    Ok(top)
}

/// The version string upstream's Makefiles compile in (`.release-version`).
fn release_version(src: &Path) -> Result<String> {
    let v = fs::read_to_string(src.join(".release-version"))
        .context("the tarball has no .release-version")?;
    let v = v.trim();
    if v.is_empty() {
        bail!(".release-version is empty");
    }
    Ok(v.to_string())
}

/// The daemon alone (`make rtpengine`, not `all`: the man page would need pandoc), two jobs
/// (the machine is shared), no transcoding.
fn build_daemon(src: &Path, dir: &Path) -> Result<()> {
    let version = release_version(src)?;
    run(command("make")?
        .arg("-C")
        .arg(src.join("daemon"))
        .args(["-j2", "with_transcoding=no"])
        .arg("DEB_BUILD_PROFILES=pkg.ngcp-rtpengine.no-transcoding pkg.ngcp-rtpengine.nobcg729")
        .arg(format!("RTPENGINE_VERSION={version}"))
        .arg("rtpengine"))?;
    let built = src.join("daemon/rtpengine");
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir)?;
    fs::copy(&built, dir.join("rtpengine")).context("make produced no daemon/rtpengine")?;
    fs::write(dir.join("version"), &version)?;
    fs::write(dir.join("complete"), "")?;
    Ok(())
}

fn build_kmod(kernel: &Kernel, src: &Path, scratch: &Path, dir: &Path) -> Result<()> {
    let version = release_version(src)?;
    let release = kernel_release(&kernel.package)?;
    let debs = scratch.join("debs");
    fs::create_dir_all(&debs)?;
    let headers = unpack_headers(kernel, &[], &debs, &scratch.join("root"))?;
    // kbuild writes next to the sources: they are a scratch copy already. Upstream's Makefile
    // compile-tests the nft API of the kernel at KSRC: point it at these headers too.
    let module_src = src.join("kernel-module");
    run(command("make")?
        .env("KSRC", &headers)
        .arg("-C")
        .arg(&headers)
        .arg(format!("M={}", module_src.display()))
        .arg(format!("RTPENGINE_VERSION={version}"))
        .arg("modules"))?;
    let built = fs::read(module_src.join(MODULE)).context("make produced no nft_rtpengine.ko")?;
    let vermagic = modinfo(&built, "vermagic").unwrap_or_default();
    if vermagic.split(' ').next() != Some(release) {
        bail!("{MODULE} was built for '{vermagic}', not {release}");
    }
    let image = scratch.join("image");
    fs::create_dir_all(&image)?;
    let staged = scratch.join("modules");
    let added = kernel::extra_modules(kernel, NFTABLES, &image, &staged)?;
    if !added.iter().any(|m| m == "nf_tables") {
        bail!("the image has no nf_tables module (built in?): not a case this build knows");
    }
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir)?;
    fs::write(dir.join(MODULE), built)?;
    fs::rename(&staged, dir.join("modules"))
        .or_else(|_| copy_dir(&staged, &dir.join("modules")))?;
    fs::write(dir.join("modules.list"), added.join("\n") + "\n")?;
    fs::write(dir.join("version"), &version)?;
    fs::write(dir.join("complete"), kmod_stamp())?;
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)?;
    for e in fs::read_dir(from)? {
        let p = e?.path();
        if let Some(n) = p.file_name() {
            fs::copy(&p, to.join(n))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::tarball_version;

    #[test]
    fn reads_the_tarballs_version() {
        let v = |n: &str| tarball_version(Path::new(n));
        assert_eq!(
            v("/s/rtpengine-26.3.0.0-e8b8212.tar.xz").unwrap(),
            "26.3.0.0"
        );
        assert_eq!(v("rtpengine-26.4.1.0.tar.xz").unwrap(), "26.4.1.0");
        assert!(v("rtpengine-.tar.xz").is_err());
        assert!(v("other-26.3.tar.xz").is_err());
    }
}
