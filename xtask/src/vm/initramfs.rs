//! The guest's initramfs: busybox, the init and helper scripts from `vm-tests/guest`, one
//! scenario directory, our statically linked binaries, and one kernel's modules.
//! Uncompressed: TCG decompresses slowly.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::util::{Pins, cargo, command, repo_root, run};

/// Statically linked so they run on the guest's bare userland (`+crt-static`, gnu target:
/// musl is not installed). A separate target dir keeps the normal build cache valid.
pub struct StaticBins {
    pub relay_ctl: PathBuf,
    pub xdp_fixtures: PathBuf,
    /// The benchmark harness, for the bench guest.
    pub relay_bench: PathBuf,
}

/// What differs between guests: the vm-test guests and the bench guest (vm-tests/README.md).
pub struct Image<'a> {
    /// Host file and its name under `/vm/`.
    pub binaries: Vec<(&'a Path, &'static str)>,
    /// Load order, dependencies first.
    pub modules: Vec<&'a Path>,
    /// Its `*.sh` become `/vm/scenarios/`, run in name order.
    pub scenarios: PathBuf,
    /// Small files under `/vm/` the init and scenarios read (name, content).
    pub files: Vec<(&'static str, String)>,
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
    .arg(target_dir());
    Ok(cmd)
}

fn target_dir() -> PathBuf {
    repo_root().join("target/vm-static")
}

/// relay-bench (its build script builds bench/ebpf, as relay-ctl's builds relay-ebpf) is built
/// in the same cargo run even for vm-test: relay-ctl alone would unify its dependencies'
/// features differently and so be a second build of everything to cache.
pub fn build_static(pins: &Pins) -> Result<StaticBins> {
    run(static_cargo(pins, "build")?.args(crate::build::BENCH_BINARIES))?;
    let mut test = static_cargo(pins, "test")?;
    test.args(["-p", "relay-ctl", "--test", "xdp_fixtures", "--no-run"]);
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
    let release = target_dir().join(TARGET).join("release");
    Ok(StaticBins {
        relay_ctl: release.join("relay-ctl"),
        xdp_fixtures: repo_root().join(exe),
        relay_bench: release.join("relay-bench"),
    })
}

/// Assembles `<out_dir>/initramfs.cpio`.
pub fn build(image: &Image, out_dir: &Path) -> Result<PathBuf> {
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
    for (bin, name) in &image.binaries {
        copy(bin, &stage.join("vm").join(name))?;
    }
    for (from, to) in [
        (vm_tests.join("guest"), "guest"),
        (image.scenarios.clone(), "scenarios"),
    ] {
        for entry in fs::read_dir(&from).with_context(|| format!("reading {}", from.display()))? {
            let path = entry?.path();
            if let Some(name) = path.file_name() {
                copy(&path, &stage.join("vm").join(to).join(name))?;
            }
        }
    }
    for (name, content) in &image.files {
        fs::write(stage.join("vm").join(name), content)?;
    }
    let mut names = Vec::new();
    for ko in &image.modules {
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
pub fn scenario_names(dir: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
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
