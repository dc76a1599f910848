//! `vm-test`: boots each guest kernel under QEMU and runs `vm-tests/scenarios` inside it
//! (see vm-tests/README.md). `incumbent` boots the same machinery as the bench guest.

pub mod incumbent;
mod initramfs;
mod kernel;
mod kmod;
pub mod package;
mod qemu;
mod rtpengine26;

use std::fs;
use std::path::Path;
use std::time::Instant;

use anyhow::{Result, bail};

use crate::setup::run_setup;
use crate::util::{Phases, Pins, repo_root, secs};
use initramfs::{Image, StaticBins};

/// The kernels `--kernel all` means: Debian 12's default and its backported LTS.
pub const KERNELS: &[&str] = &["6.1", "6.12"];

pub fn run_vm_test(pins: &Pins, kernel: &str, package: bool) -> Result<()> {
    if package {
        // Debian 12's own kernel unless another was asked for.
        let label = if kernel == "all" { "6.1" } else { kernel };
        kernel::metapackage(label)?;
        let mut phases = Phases::new("vm-test");
        let result = phases
            .run("setup", || run_setup(pins))
            .and_then(|()| run_package(pins, label, &mut phases));
        phases.print_summary();
        return result;
    }
    let labels: Vec<&str> = if kernel == "all" {
        KERNELS.to_vec()
    } else {
        kernel::metapackage(kernel)?;
        vec![kernel]
    };
    let mut phases = Phases::new("vm-test");
    let result = run_phases(pins, &labels, &mut phases);
    phases.print_summary();
    result
}

fn run_phases(pins: &Pins, labels: &[&str], phases: &mut Phases) -> Result<()> {
    // QEMU, busybox-static, cpio and xz come from setup's Debian packages.
    phases.run("setup", || run_setup(pins))?;
    run_kernels(pins, labels, phases).map(|_| ())
}

/// Everything after setup; `test` runs it as its own phases for both kernels, then its bench
/// guest phases (incumbent.rs) with the same static binaries.
pub fn run_kernels(pins: &Pins, labels: &[&str], phases: &mut Phases) -> Result<StaticBins> {
    let mut kernels = Vec::new();
    phases.run("vm-kernels", || {
        for l in labels {
            kernels.push(kernel::fetch(l)?);
        }
        Ok(())
    })?;
    let bins = static_build(pins, phases)?;
    phases.run("vm-boot", || {
        let scenarios = repo_root().join("vm-tests/scenarios");
        let mut failed = Vec::new();
        for k in &kernels {
            let image = Image {
                binaries: vec![
                    (bins.relay_ctl.as_path(), "relay-ctl"),
                    (bins.xdp_fixtures.as_path(), "xdp_fixtures"),
                ],
                modules: k.modules.iter().map(|m| m.as_path()).collect(),
                scenarios: scenarios.clone(),
                files: Vec::new(),
            };
            let out_dir = repo_root().join("target/vm").join(&k.label);
            if !boot_guest(
                &k.label,
                &k.vmlinuz,
                &image,
                &out_dir,
                &qemu::Options::vm_test(),
            )? {
                failed.push(k.label.clone());
            }
        }
        if !failed.is_empty() {
            bail!("vm-test failed on kernel {}", failed.join(", "));
        }
        Ok(())
    })?;
    Ok(bins)
}

/// The package guest (package.rs): the cached Debian root, the two .debs `./x package`
/// builds, then the boot. `test` runs it as these phases too.
pub fn run_package(pins: &Pins, label: &str, phases: &mut Phases) -> Result<()> {
    let mut k = None;
    phases.run("vm-package-kernel", || {
        k = Some(kernel::fetch(label)?);
        Ok(())
    })?;
    let mut root = None;
    phases.run("vm-package-root", || {
        root = Some(package::root_image()?);
        Ok(())
    })?;
    let mut debs = None;
    phases.run("vm-package-debs", || {
        debs = Some(package::build_debs(pins)?);
        Ok(())
    })?;
    let (Some(k), Some(root), Some(debs)) = (k, root, debs) else {
        bail!("a package guest phase produced nothing");
    };
    phases.run("vm-package-boot", || package::boot(&k, &root, &debs))
}

fn static_build(pins: &Pins, phases: &mut Phases) -> Result<StaticBins> {
    let mut bins = None;
    phases.run("vm-static-build", || {
        bins = Some(initramfs::build_static(pins)?);
        Ok(())
    })?;
    let Some(bins) = bins else {
        bail!("static build produced nothing");
    };
    Ok(bins)
}

/// Packs `image` into `out_dir`, boots it and judges the console; the console is kept in
/// `out_dir/console.log` and printed whole on failure. Returns whether every scenario passed.
fn boot_guest(
    name: &str,
    vmlinuz: &Path,
    image: &Image,
    out_dir: &Path,
    opts: &qemu::Options,
) -> Result<bool> {
    let start = Instant::now();
    fs::create_dir_all(out_dir)?;
    let scenarios = initramfs::scenario_names(&image.scenarios)?;
    let initrd = initramfs::build(image, out_dir)?;
    println!("==> vm: booting {name} ({})", vmlinuz.display());
    let verdict = qemu::boot(vmlinuz, &initrd, &scenarios, opts)?;
    let log_path = out_dir.join("console.log");
    fs::write(&log_path, verdict.log.join("\n") + "\n")?;
    if verdict.failures.is_empty() {
        println!(
            "vm {name}: {} scenarios passed in {} (console: {})",
            scenarios.len(),
            secs(start.elapsed()),
            log_path.display()
        );
        return Ok(true);
    }
    // The whole console: a failure must be readable from CI's log alone (a live guest
    // printed it as it ran).
    if !opts.live {
        println!("---- {name} guest console ----");
        for line in &verdict.log {
            println!("{line}");
        }
        println!("---- end of {name} guest console ----");
    }
    for f in &verdict.failures {
        println!("vm {name}: FAIL {f}");
    }
    Ok(false)
}
