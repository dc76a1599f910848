//! Guest kernels: resolved through Debian's metapackages (never a hard-coded version),
//! downloaded once with `apt-get download` and cached with the few modules the guest loads.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::util::{cache_dir, command, output, run};

/// Modules every guest needs, dependencies added from each module's own `depends=`. A name
/// with no file is built in on that kernel (e.g. virtio_pci on 6.12).
const WANTED: &[&str] = &["virtio_pci", "9pnet_virtio", "9p", "veth", "pktgen"];

/// What the bench guest loads in addition, for rtpengine's xt_RTPENGINE target and its
/// `iptables-legacy` rule. Only the bench guest loads them: the vm-test scenarios measure XDP
/// with no netfilter hooks in the stack, as they were written, and a netfilter module that
/// failed to load must not fail the XDP tests. Cached with the others, so both guests share
/// one download.
const NETFILTER: &[&str] = &["x_tables", "ip_tables", "iptable_filter", "xt_tcpudp"];

/// What the package guest (vm-tests/package) loads in addition to boot its Debian root from an
/// ext4 image on a virtio disk. crc32c_generic first: ext4 asks the crypto API for crc32c at
/// mount time, and a busybox initramfs has no modprobe to autoload it.
const ROOTFS: &[&str] = &["crc32c_generic", "virtio_blk", "ext4"];

/// A kernel ready to boot: its image and its modules in load order.
pub struct Kernel {
    pub label: String,
    /// The Debian image package and its version (kmod.rs builds against their headers).
    pub package: String,
    pub version: String,
    pub vmlinuz: PathBuf,
    /// Uncompressed `.ko` files, dependencies first.
    pub modules: Vec<PathBuf>,
    /// `NETFILTER` with dependencies not already in `modules`, to load after them.
    pub netfilter_modules: Vec<PathBuf>,
    /// `ROOTFS` with dependencies not already in `modules` or `netfilter_modules`.
    pub rootfs_modules: Vec<PathBuf>,
}

/// The `complete` marker's content: the module lists the cache was made for, so that a cache
/// made for other lists (e.g. before `NETFILTER` existed) is fetched again, not used with
/// modules missing.
fn cache_stamp() -> String {
    format!(
        "modules: {}\nnetfilter: {}\nrootfs: {}\n",
        WANTED.join(","),
        NETFILTER.join(","),
        ROOTFS.join(",")
    )
}

/// `label` is what users type (`6.1`, `6.12`); the metapackage says which image it is today.
pub fn metapackage(label: &str) -> Result<&'static str> {
    match label {
        "6.1" => Ok("linux-image-amd64"),
        "6.12" => Ok("linux-image-6.12-amd64"),
        _ => bail!("unknown kernel '{label}' (known: 6.1, 6.12)"),
    }
}

pub fn fetch(label: &str) -> Result<Kernel> {
    let meta = metapackage(label)?;
    let deps = output(command("apt-cache")?.args(["depends", "--no-recommends", meta]))?;
    let pkg = deps
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-"))
        .with_context(|| format!("{meta} depends on no linux-image package (apt-get update?)"))?
        .trim()
        .to_string();
    let show = output(command("apt-cache")?.args(["show", "--no-all-versions", &pkg]))?;
    let version = show
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .with_context(|| format!("no Version for {pkg}"))?
        .trim();
    let dir = cache_dir()?
        .join("vm")
        .join(format!("{pkg}_{version}").replace(['~', '+'], "-"));
    let stamp_ok = fs::read_to_string(dir.join("complete")).is_ok_and(|s| s == cache_stamp());
    if !stamp_ok {
        download(&pkg, &dir).with_context(|| format!("fetching {pkg} {version}"))?;
    }
    let list = |name: &str| -> Result<Vec<PathBuf>> {
        Ok(fs::read_to_string(dir.join(name))?
            .lines()
            .filter(|m| !m.is_empty())
            .map(|m| dir.join("modules").join(format!("{m}.ko")))
            .collect())
    };
    Ok(Kernel {
        label: label.to_string(),
        vmlinuz: dir.join("vmlinuz"),
        modules: list("modules.list")?,
        netfilter_modules: list("netfilter.list")?,
        rootfs_modules: list("rootfs.list")?,
        package: pkg,
        version: version.to_string(),
    })
}

/// Downloads and unpacks the package into a scratch dir, keeps vmlinuz and the modules.
fn download(pkg: &str, dir: &Path) -> Result<()> {
    let mut scratch = dir.as_os_str().to_owned();
    scratch.push(".partial");
    let scratch = PathBuf::from(scratch);
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch)?;
    let result = unpack(pkg, &scratch, dir);
    // The unpacked tree is ~500 MB: never leave it behind, success or not.
    let _ = fs::remove_dir_all(&scratch);
    result
}

fn unpack(pkg: &str, scratch: &Path, dir: &Path) -> Result<()> {
    run(command("apt-get")?
        .arg("download")
        .arg(pkg)
        .current_dir(scratch))?;
    let deb = fs::read_dir(scratch)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download left no .deb")?;
    let root = scratch.join("root");
    run(command("dpkg")?.arg("-x").arg(&deb).arg(&root))?;
    let boot = first_entry(&root.join("boot"), "vmlinuz-")?;
    let mods_root = first_entry(&root.join("lib/modules"), "")?;
    let mut index = HashMap::new();
    index_modules(&mods_root, &mut index, 0)?;
    let mut order = Vec::new();
    for name in WANTED {
        add_with_deps(name, &index, &mut order, 0)?;
    }
    let base = order.len();
    for name in NETFILTER {
        add_with_deps(name, &index, &mut order, 0)?;
    }
    let netfilter_end = order.len();
    for name in ROOTFS {
        add_with_deps(name, &index, &mut order, 0)?;
    }
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir.join("modules"))?;
    fs::copy(&boot, dir.join("vmlinuz"))?;
    for name in &order {
        fs::write(
            dir.join("modules").join(format!("{name}.ko")),
            ko_bytes(&index[name])?,
        )?;
    }
    let (modules, rest) = order.split_at(base);
    let (netfilter, rootfs) = rest.split_at(netfilter_end - base);
    fs::write(dir.join("modules.list"), modules.join("\n") + "\n")?;
    fs::write(dir.join("netfilter.list"), netfilter.join("\n") + "\n")?;
    fs::write(dir.join("rootfs.list"), rootfs.join("\n") + "\n")?;
    fs::write(dir.join("complete"), cache_stamp())?;
    Ok(())
}

/// Modules beyond the cached lists, for one guest only (the bench guest of rtpengine 26.x needs
/// nf_tables): the image is downloaded again into `scratch` (removed by the caller), `names`
/// and their dependencies not already in `kernel`'s lists are written to `out` as `<name>.ko`,
/// and their names returned in load order. The kernel's own cache is left as it is, so other
/// checkouts sharing it keep using it.
pub fn extra_modules(
    kernel: &Kernel,
    names: &[&str],
    scratch: &Path,
    out: &Path,
) -> Result<Vec<String>> {
    run(command("apt-get")?
        .arg("download")
        .arg(format!("{}={}", kernel.package, kernel.version))
        .current_dir(scratch))?;
    let deb = fs::read_dir(scratch)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.extension().is_some_and(|e| e == "deb")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&kernel.package))
        })
        .context("apt-get download left no image .deb")?;
    let root = scratch.join("image-root");
    run(command("dpkg")?.arg("-x").arg(&deb).arg(&root))?;
    let mods_root = first_entry(&root.join("lib/modules"), "")?;
    let mut index = HashMap::new();
    index_modules(&mods_root, &mut index, 0)?;
    // What the guest loads already counts as present.
    let mut order: Vec<String> = kernel
        .modules
        .iter()
        .chain(&kernel.netfilter_modules)
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    let present = order.len();
    for name in names {
        add_with_deps(name, &index, &mut order, 0)?;
    }
    let added = order.split_off(present);
    fs::create_dir_all(out)?;
    for name in &added {
        fs::write(out.join(format!("{name}.ko")), ko_bytes(&index[name])?)?;
    }
    Ok(added)
}

fn first_entry(dir: &Path, prefix: &str) -> Result<PathBuf> {
    fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .with_context(|| format!("nothing named {prefix}* in {}", dir.display()))
}

/// Module name (dashes as underscores, as the kernel does) -> file. Depth-bounded walk.
fn index_modules(dir: &Path, index: &mut HashMap<String, PathBuf>, depth: u32) -> Result<()> {
    if depth > 12 {
        return Ok(());
    }
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            index_modules(&path, index, depth + 1)?;
        } else if let Some(name) = path.file_name().and_then(|n| n.to_str())
            && let Some(stem) = name
                .strip_suffix(".ko.xz")
                .or_else(|| name.strip_suffix(".ko"))
        {
            index.insert(stem.replace('-', "_"), path.clone());
        }
    }
    Ok(())
}

/// Post-order: dependencies before the module. Depth-bounded against a cyclic `depends=`.
fn add_with_deps(
    name: &str,
    index: &HashMap<String, PathBuf>,
    order: &mut Vec<String>,
    depth: u32,
) -> Result<()> {
    if depth > 16 {
        bail!("module dependencies of {name} nest too deep");
    }
    let Some(path) = index.get(name) else {
        return Ok(()); // built in
    };
    if order.iter().any(|m| m == name) {
        return Ok(());
    }
    for dep in depends(&ko_bytes(path)?) {
        add_with_deps(&dep, index, order, depth + 1)?;
    }
    order.push(name.to_string());
    Ok(())
}

/// The module itself; 6.12 ships `.ko.xz`, which insmod in busybox cannot read.
fn ko_bytes(path: &Path) -> Result<Vec<u8>> {
    if path.extension().is_some_and(|e| e == "xz") {
        let out = command("xz")?
            .arg("-dc")
            .arg(path)
            .output()
            .context("running xz")?;
        if !out.status.success() {
            bail!("xz -dc {} failed", path.display());
        }
        Ok(out.stdout)
    } else {
        Ok(fs::read(path)?)
    }
}

/// One `key=value` of the module's .modinfo section (NUL-separated strings).
pub fn modinfo(ko: &[u8], key: &str) -> Option<String> {
    let prefix = format!("{key}=");
    ko.split(|b| *b == 0)
        .find_map(|s| s.strip_prefix(prefix.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// `depends=a,b`, as the kernel names modules (dashes as underscores).
fn depends(ko: &[u8]) -> Vec<String> {
    modinfo(ko, "depends")
        .map(|d| {
            d.split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.replace('-', "_"))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::{depends, modinfo};

    #[test]
    fn reads_modinfo_depends() {
        let ko = b"\0license=GPL\0depends=virtio,9pnet,virtio_ring\0vermagic=6.1.0-56-amd64 SMP\0";
        assert_eq!(depends(ko), ["virtio", "9pnet", "virtio_ring"]);
        assert!(depends(b"\0depends=\0").is_empty());
        assert_eq!(
            modinfo(ko, "vermagic").as_deref(),
            Some("6.1.0-56-amd64 SMP")
        );
        assert_eq!(modinfo(ko, "author"), None);
    }
}
