//! The guest's initramfs: busybox, the init and scenario scripts from `vm-tests/`, our
//! statically linked binaries, and one kernel's modules. Uncompressed: TCG decompresses slowly.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::kernel::Kernel;
use crate::util::{Pins, cargo, command, repo_root, run};

/// Statically linked so they run on the guest's bare userland (`+crt-static`, gnu target:
/// musl is not installed). A separate target dir keeps the normal build cache valid.
pub struct StaticBins {
    pub relay_ctl: PathBuf,
    pub xdp_fixtures: PathBuf,
}

const TARGET: &str = "x86_64-unknown-linux-gnu";

fn static_cargo(pins: &Pins, subcommand: &str) -> Result<std::process::Command> {
    let mut cmd = cargo(&pins.stable)?;
    // Target-scoped flags: with --target they do not reach build scripts or the nested eBPF
    // build (aya-build), which would break on crt-static.
    cmd.env(
        "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
        "-C target-feature=+crt-static",
    )
    .args([subcommand, "--release", "--target", TARGET, "--target-dir"])
    .arg(target_dir())
    .args(["-p", "relay-ctl"]);
    Ok(cmd)
}

fn target_dir() -> PathBuf {
    repo_root().join("target/vm-static")
}

pub fn build_static(pins: &Pins) -> Result<StaticBins> {
    run(static_cargo(pins, "build")?.args(["--bin", "relay-ctl"]))?;
    let mut test = static_cargo(pins, "test")?;
    test.args(["--test", "xdp_fixtures", "--no-run"]);
    println!("$ cargo test --no-run (static xdp_fixtures)");
    let out = test.output().context("building the static fixture tests")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("static fixture build failed:\n{stderr}");
    }
    // Cargo names it on stderr: "Executable tests/xdp_fixtures/main.rs (target/.../xdp_fixtures-HASH)".
    let exe = stderr
        .lines()
        .filter(|l| l.contains("Executable") && l.contains("xdp_fixtures"))
        .find_map(|l| l.rsplit_once('(')?.1.strip_suffix(')'))
        .context("cargo did not name the xdp_fixtures executable")?;
    Ok(StaticBins {
        relay_ctl: target_dir().join(TARGET).join("release/relay-ctl"),
        xdp_fixtures: repo_root().join(exe),
    })
}

/// Assembles `<out_dir>/initramfs.cpio` for `kernel`.
pub fn build(bins: &StaticBins, kernel: &Kernel, out_dir: &Path) -> Result<PathBuf> {
    let stage = out_dir.join("stage");
    let _ = fs::remove_dir_all(&stage);
    let vm_tests = repo_root().join("vm-tests");
    for d in ["busybox", "etc", "vm/modules", "vm/guest", "vm/scenarios"] {
        fs::create_dir_all(stage.join(d))?;
    }
    copy(Path::new("/bin/busybox"), &stage.join("busybox/busybox"))?;
    copy(&vm_tests.join("guest/init"), &stage.join("init"))?;
    // Host binaries from the 9p-shared /usr need the host's library search cache.
    copy(
        Path::new("/etc/ld.so.cache"),
        &stage.join("etc/ld.so.cache"),
    )?;
    copy(&bins.relay_ctl, &stage.join("vm/relay-ctl"))?;
    copy(&bins.xdp_fixtures, &stage.join("vm/xdp_fixtures"))?;
    for sub in ["guest", "scenarios"] {
        for entry in fs::read_dir(vm_tests.join(sub))? {
            let path = entry?.path();
            if let Some(name) = path.file_name() {
                copy(&path, &stage.join("vm").join(sub).join(name))?;
            }
        }
    }
    let mut names = Vec::new();
    for ko in &kernel.modules {
        let name = ko.file_name().context("module path")?;
        copy(ko, &stage.join("vm/modules").join(name))?;
        names.push(name.to_string_lossy().trim_end_matches(".ko").to_string());
    }
    fs::write(stage.join("vm/modules.list"), names.join("\n") + "\n")?;
    let cpio = out_dir.join("initramfs.cpio");
    // cpio reads the file list on stdin; sh keeps that one pipe simple.
    run(command("sh")?
        .arg("-c")
        .arg("find . | LC_ALL=C sort | cpio --quiet -o -H newc > \"$0\"")
        .arg(&cpio)
        .current_dir(&stage))?;
    Ok(cpio)
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// Scenario names in run order (the init runs `scenarios/*.sh` sorted, like `ls`).
pub fn scenario_names() -> Result<Vec<String>> {
    let mut names: Vec<String> = fs::read_dir(repo_root().join("vm-tests/scenarios"))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".sh")
                .map(String::from)
        })
        .collect();
    names.sort();
    Ok(names)
}
