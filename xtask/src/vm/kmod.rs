//! rtpengine's kernel module (xt_RTPENGINE.ko) for a guest kernel: Debian's
//! rtpengine-kernel-dkms source, built against that kernel's own headers, cached like the
//! kernels. Nothing is installed: the packages are `apt-get download`ed and `dpkg -x`ed into a
//! scratch dir (installing the dkms package would build it for the host's kernel).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::kernel::{Kernel, modinfo};
use crate::util::{cache_dir, command, output, run};

/// The userspace daemon the module must match: rtpengine checks the module's version string.
const DAEMON: &str = "rtpengine-daemon";
const DKMS: &str = "rtpengine-kernel-dkms";
const MODULE: &str = "xt_RTPENGINE.ko";

/// Returns the cached module for `kernel`, building it first if needed.
pub fn fetch(kernel: &Kernel) -> Result<PathBuf> {
    let daemon = output(command("dpkg-query")?.args(["-W", "-f=${Version}", DAEMON]))
        .with_context(|| format!("{DAEMON} is not installed (cargo xtask setup)"))?;
    let daemon = daemon.trim();
    let dir = cache_dir()?
        .join("vm")
        .join(format!("rtpengine-kmod_{daemon}_{}", kernel.version).replace(['~', '+', ':'], "-"));
    let ko = dir.join(MODULE);
    if dir.join("complete").exists() && ko.exists() {
        return Ok(ko);
    }
    let mut scratch = dir.as_os_str().to_owned();
    scratch.push(".partial");
    let scratch = PathBuf::from(scratch);
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch)?;
    let result = build(kernel, daemon, &scratch, &dir);
    // Headers and kbuild unpack to ~100 MB: never leave them behind, success or not.
    let _ = fs::remove_dir_all(&scratch);
    result.with_context(|| {
        format!(
            "building {MODULE} ({DKMS} {daemon}) for {} {}",
            kernel.package, kernel.version
        )
    })?;
    Ok(ko)
}

fn build(kernel: &Kernel, daemon: &str, scratch: &Path, dir: &Path) -> Result<()> {
    let release = kernel_release(&kernel.package)?;
    let debs = scratch.join("debs");
    fs::create_dir_all(&debs)?;
    // The same source version as the daemon, the headers of exactly the guest's image.
    let root = scratch.join("root");
    let headers = unpack_headers(kernel, &[format!("{DKMS}={daemon}")], &debs, &root)?;

    let src = fs::read_dir(root.join("usr/src"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("rtpengine-"))
        })
        .with_context(|| format!("{DKMS} unpacked no usr/src/rtpengine-*"))?;
    let conf = fs::read_to_string(src.join("dkms.conf"))
        .with_context(|| format!("reading {}/dkms.conf", src.display()))?;
    let version = dkms_version(&conf)?;
    check_versions(&version, daemon)?;

    // kbuild writes next to the sources: build in a copy.
    let build = scratch.join("build");
    fs::create_dir_all(&build)?;
    for entry in fs::read_dir(&src)? {
        let path = entry?.path();
        if path.is_file()
            && let Some(name) = path.file_name()
        {
            fs::copy(&path, build.join(name))?;
        }
    }
    run(command("make")?
        .arg("-C")
        .arg(&headers)
        .arg(format!("M={}", build.display()))
        .arg(format!("RTPENGINE_VERSION={version}"))
        .arg("modules"))?;
    let built = fs::read(build.join(MODULE)).context("make produced no xt_RTPENGINE.ko")?;
    let vermagic = modinfo(&built, "vermagic").unwrap_or_default();
    if vermagic.split(' ').next() != Some(release) {
        bail!("{MODULE} was built for '{vermagic}', not {release}");
    }
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir)?;
    fs::write(dir.join(MODULE), built)?;
    fs::write(dir.join("complete"), "")?;
    Ok(())
}

/// Downloads `kernel`'s headers (and `more` packages) into `debs`, unpacks them all into `root`
/// and points the arch headers' Makefile at the common headers under `root`; returns the arch
/// headers' directory, what kbuild's `make -C` takes.
pub fn unpack_headers(
    kernel: &Kernel,
    more: &[String],
    debs: &Path,
    root: &Path,
) -> Result<PathBuf> {
    let release = kernel_release(&kernel.package)?;
    let arch = format!("linux-headers-{release}");
    let deps = output(command("apt-cache")?.args(["depends", &arch]))?;
    let mut wanted = header_packages(release, &kernel.version, &deps)?;
    wanted.extend(more.iter().cloned());
    run(command("apt-get")?
        .arg("download")
        .args(&wanted)
        .current_dir(debs))?;
    for entry in fs::read_dir(debs)? {
        let deb = entry?.path();
        run(command("dpkg")?.arg("-x").arg(&deb).arg(root))?;
    }
    // The arch headers include the common ones by absolute path; point it into `root`.
    let headers = root.join("usr/src").join(&arch);
    let makefile = headers.join("Makefile");
    let text =
        fs::read_to_string(&makefile).with_context(|| format!("reading {}", makefile.display()))?;
    fs::write(&makefile, rewrite_includes(&text, root)?)?;
    Ok(headers)
}

/// `linux-image-6.1.0-56-amd64` -> `6.1.0-56-amd64` (what `uname -r` says in the guest).
pub fn kernel_release(image_package: &str) -> Result<&str> {
    image_package
        .strip_prefix("linux-image-")
        .with_context(|| format!("'{image_package}' is not a linux-image-* package"))
}

/// The packages kbuild needs for `release`, pinned to the image's version: the arch headers,
/// and from their `apt-cache depends` the common headers they include and the kbuild scripts
/// their symlinks point into (`linux-kbuild-6.1` on 6.1, `linux-kbuild-6.12.118+deb12` on
/// the 6.12 backport: the names differ, so they are read, not made up).
fn header_packages(release: &str, version: &str, depends: &str) -> Result<Vec<String>> {
    if !release.ends_with("-amd64") {
        bail!("kernel release '{release}' is not an amd64 flavour");
    }
    let dep = |prefix: &str, suffix: &str| {
        depends
            .lines()
            .filter_map(|l| l.trim().trim_start_matches('|').strip_prefix("Depends: "))
            .map(str::trim)
            .find(|p| p.starts_with(prefix) && p.ends_with(suffix))
            .with_context(|| {
                format!("linux-headers-{release} depends on no {prefix}*{suffix} (apt-get update?)")
            })
    };
    Ok(vec![
        format!("linux-headers-{release}={version}"),
        format!("{}={version}", dep("linux-headers-", "-common")?),
        format!("{}={version}", dep("linux-kbuild-", "")?),
    ])
}

/// Rewrites `include /usr/src/...` lines to the same path under `root`.
fn rewrite_includes(makefile: &str, root: &Path) -> Result<String> {
    let root = root
        .to_str()
        .with_context(|| format!("non-UTF-8 path {}", root.display()))?;
    let mut out = String::new();
    let mut found = false;
    for line in makefile.lines() {
        match line.strip_prefix("include /usr/src/") {
            Some(rest) => {
                found = true;
                out.push_str(&format!("include {root}/usr/src/{rest}"));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    if !found {
        bail!("the headers' Makefile includes nothing under /usr/src:\n{makefile}");
    }
    Ok(out)
}

/// `PACKAGE_VERSION="<upstream version>"` from dkms.conf.
fn dkms_version(conf: &str) -> Result<String> {
    conf.lines()
        .find_map(|l| l.trim().strip_prefix("PACKAGE_VERSION="))
        .map(|v| v.trim().trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
        .context("dkms.conf has no PACKAGE_VERSION")
}

/// The module's version must be the upstream part of the daemon's Debian version
/// (`[epoch:]upstream[-revision]`): the daemon refuses a module of another version.
fn check_versions(module: &str, daemon: &str) -> Result<()> {
    let no_epoch = daemon.split_once(':').map_or(daemon, |(_, v)| v);
    let upstream = no_epoch.rsplit_once('-').map_or(no_epoch, |(u, _)| u);
    if module != upstream {
        bail!(
            "{DKMS}'s module version {module} does not match {DAEMON} {daemon} \
             (upstream {upstream}); upgrade both from the same Debian release"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{check_versions, dkms_version, header_packages, kernel_release, rewrite_includes};

    #[test]
    fn names_the_header_packages() {
        let release = kernel_release("linux-image-6.1.0-56-amd64").unwrap();
        assert_eq!(release, "6.1.0-56-amd64");
        let deps = "linux-headers-6.1.0-56-amd64\n  Depends: linux-headers-6.1.0-56-common\n  Depends: linux-kbuild-6.1\n  Depends: linux-compiler-gcc-12-x86\n";
        assert_eq!(
            header_packages(release, "6.1.192-2", deps).unwrap(),
            [
                "linux-headers-6.1.0-56-amd64=6.1.192-2",
                "linux-headers-6.1.0-56-common=6.1.192-2",
                "linux-kbuild-6.1=6.1.192-2",
            ]
        );
        // The 6.12 backport names its kbuild package after the full ABI.
        let deps = "linux-headers-6.12.118+deb12-amd64\n  Depends: linux-base\n  Depends: linux-headers-6.12.118+deb12-common\n |Depends: linux-image-6.12.118+deb12-amd64\n  Depends: linux-kbuild-6.12.118+deb12\n  Depends: gcc-12\n";
        assert_eq!(
            header_packages("6.12.118+deb12-amd64", "6.12.118-1~deb12u1", deps).unwrap(),
            [
                "linux-headers-6.12.118+deb12-amd64=6.12.118-1~deb12u1",
                "linux-headers-6.12.118+deb12-common=6.12.118-1~deb12u1",
                "linux-kbuild-6.12.118+deb12=6.12.118-1~deb12u1",
            ]
        );
        assert!(kernel_release("linux-headers-6.1.0-56-amd64").is_err());
        assert!(header_packages("6.1.0-56-arm64", "6.1.192-2", deps).is_err());
        assert!(header_packages(release, "6.1.192-2", "  Depends: linux-base\n").is_err());
    }

    #[test]
    fn rewrites_the_common_include() {
        let text = "include /usr/src/linux-headers-6.1.0-56-common/Makefile\n";
        assert_eq!(
            rewrite_includes(text, Path::new("/tmp/x/root")).unwrap(),
            "include /tmp/x/root/usr/src/linux-headers-6.1.0-56-common/Makefile\n"
        );
        // Anything else stays; a file without the include is not the one we know.
        let two = "# c\ninclude /usr/src/a/Makefile\nobj-m += x.o\n";
        assert_eq!(
            rewrite_includes(two, Path::new("/r")).unwrap(),
            "# c\ninclude /r/usr/src/a/Makefile\nobj-m += x.o\n"
        );
        assert!(rewrite_includes("include /elsewhere/Makefile\n", Path::new("/r")).is_err());
    }

    #[test]
    fn parses_dkms_version() {
        let conf = "PACKAGE_NAME=\"rtpengine\"\nPACKAGE_VERSION=\"11.2.7.1\"\nAUTOINSTALL=yes\n";
        assert_eq!(dkms_version(conf).unwrap(), "11.2.7.1");
        assert!(dkms_version("PACKAGE_NAME=\"rtpengine\"\n").is_err());
        assert!(dkms_version("PACKAGE_VERSION=\"\"\n").is_err());
    }

    #[test]
    fn module_matches_the_daemons_upstream_version() {
        assert!(check_versions("11.2.7.1", "11.2.7.1-1+deb12u1").is_ok());
        assert!(check_versions("11.2.7.1", "1:11.2.7.1-1").is_ok());
        assert!(check_versions("11.2.7.1", "11.2.7.1").is_ok());
        assert!(check_versions("11.2.7.0", "11.2.7.1-1+deb12u1").is_err());
        assert!(check_versions("11.2.7", "11.2.7.1-1").is_err());
    }
}
