//! `vm-test`: boots each guest kernel under QEMU and runs `vm-tests/scenarios` inside it
//! (see vm-tests/README.md).

mod initramfs;
mod kernel;
mod qemu;

use std::fs;
use std::time::Instant;

use anyhow::{Result, bail};

use crate::setup::run_setup;
use crate::util::{Phases, Pins, repo_root, secs};

/// The kernels `--kernel all` means: Debian 12's default and its backported LTS.
pub const KERNELS: &[&str] = &["6.1", "6.12"];

pub fn run_vm_test(pins: &Pins, kernel: &str) -> Result<()> {
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
    run_kernels(pins, labels, phases)
}

/// Everything after setup; `test` runs it as its own phases for both kernels.
pub fn run_kernels(pins: &Pins, labels: &[&str], phases: &mut Phases) -> Result<()> {
    let mut kernels = Vec::new();
    phases.run("vm-kernels", || {
        for l in labels {
            kernels.push(kernel::fetch(l)?);
        }
        Ok(())
    })?;
    let mut bins = None;
    phases.run("vm-static-build", || {
        bins = Some(initramfs::build_static(pins)?);
        Ok(())
    })?;
    let Some(bins) = bins else {
        bail!("static build produced nothing");
    };
    phases.run("vm-boot", || {
        let scenarios = initramfs::scenario_names()?;
        let mut failed = Vec::new();
        for k in &kernels {
            let start = Instant::now();
            let out_dir = repo_root().join("target/vm").join(&k.label);
            fs::create_dir_all(&out_dir)?;
            let initrd = initramfs::build(&bins, k, &out_dir)?;
            println!("==> vm-test: booting {} ({})", k.label, k.vmlinuz.display());
            let verdict = qemu::boot(&k.vmlinuz, &initrd, &scenarios)?;
            let log_path = out_dir.join("console.log");
            fs::write(&log_path, verdict.log.join("\n") + "\n")?;
            if verdict.failures.is_empty() {
                println!(
                    "vm-test {}: {} scenarios passed in {} (console: {})",
                    k.label,
                    scenarios.len(),
                    secs(start.elapsed()),
                    log_path.display()
                );
            } else {
                // The whole console: a failure must be readable from CI's log alone.
                println!("---- {} guest console ----", k.label);
                for line in &verdict.log {
                    println!("{line}");
                }
                println!("---- end of {} guest console ----", k.label);
                for f in &verdict.failures {
                    println!("vm-test {}: FAIL {f}", k.label);
                }
                failed.push(k.label.clone());
            }
        }
        if !failed.is_empty() {
            bail!("vm-test failed on kernel {}", failed.join(", "));
        }
        Ok(())
    })
}
