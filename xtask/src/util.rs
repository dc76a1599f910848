//! Shared helpers: repo paths, the toolchain pins, and running child commands.

use std::env;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The workspace root. xtask lives in `<root>/xtask`, so this is known at compile time and
/// does not depend on the directory `cargo xtask` was started from.
pub fn repo_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .expect("xtask's manifest dir has a parent (the workspace root)")
        .to_path_buf()
}

/// The two pinned toolchains, read from the rust-toolchain.toml files so that those files stay
/// the single source of truth.
pub struct Pins {
    /// Userspace crates and xtask itself.
    pub stable: String,
    /// The eBPF crate, and the LLVM that bpf-linker is built against.
    pub nightly: String,
}

impl Pins {
    pub fn load() -> Result<Pins> {
        let root = repo_root();
        Ok(Pins {
            stable: read_channel(&root.join("rust-toolchain.toml"))?,
            nightly: read_channel(&root.join("relay-ebpf/rust-toolchain.toml"))?,
        })
    }
}

/// Reads the `channel = "..."` line of a rust-toolchain.toml. Not a TOML parser: these files are
/// ours and keep the channel on one line, and this saves a toml dependency.
fn read_channel(path: &Path) -> Result<String> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("channel") else {
            continue;
        };
        let Some(value) = rest.trim_start().strip_prefix('=') else {
            continue;
        };
        if let Some(quoted) = value.trim().strip_prefix('"')
            && let Some((channel, _)) = quoted.split_once('"')
            && !channel.is_empty()
        {
            return Ok(channel.to_string());
        }
    }
    bail!("no `channel = \"...\"` line in {}", path.display())
}

pub fn home_dir() -> Result<PathBuf> {
    match env::var_os("HOME") {
        Some(home) if !home.is_empty() => Ok(PathBuf::from(home)),
        _ => bail!("HOME is not set"),
    }
}

/// Where `cargo install` puts binaries (`<cargo home>/bin`), which rustup puts on PATH.
pub fn cargo_home() -> Result<PathBuf> {
    match env::var_os("CARGO_HOME") {
        Some(dir) if !dir.is_empty() => Ok(PathBuf::from(dir)),
        _ => Ok(home_dir()?.join(".cargo")),
    }
}

/// Per-user cache for things that outlive one checkout (LLVM prefix, bpf-linker stamp).
pub fn cache_dir() -> Result<PathBuf> {
    Ok(home_dir()?.join(".cache/media-relay"))
}

/// Variables that cargo and rustup set for xtask itself. A child must not inherit them:
/// RUSTC / RUSTUP_TOOLCHAIN / wrappers would make a nested `cargo +nightly` use xtask's
/// toolchain, and the CARGO_* ones describe xtask, not the child's package.
const SCRUBBED_VARS: &[&str] = &[
    "RUSTUP_TOOLCHAIN",
    "RUSTUP_TOOLCHAIN_SOURCE",
    "RUSTC",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_PRIMARY_PACKAGE",
];

/// A command with a clean environment for children, run from the repo root.
pub fn command(program: impl AsRef<OsStr>) -> Result<Command> {
    let mut cmd = Command::new(program);
    for (key, _) in env::vars_os() {
        if let Some(key) = key.to_str()
            && (SCRUBBED_VARS.contains(&key) || key.starts_with("CARGO_PKG_"))
        {
            cmd.env_remove(key);
        }
    }
    // Nested builds must find what `cargo install` put there (bpf-linker), even if the
    // caller's PATH lacks it.
    let mut path = vec![cargo_home()?.join("bin")];
    if let Some(old) = env::var_os("PATH") {
        path.extend(env::split_paths(&old));
    }
    cmd.env("PATH", env::join_paths(path).context("building PATH")?);
    cmd.current_dir(repo_root());
    Ok(cmd)
}

/// `cargo +<toolchain>`: always explicit, so no rust-toolchain.toml or inherited variable decides.
pub fn cargo(toolchain: &str) -> Result<Command> {
    let mut cmd = command("cargo")?;
    cmd.arg(format!("+{toolchain}"));
    Ok(cmd)
}

pub fn rustc(toolchain: &str) -> Result<Command> {
    let mut cmd = command("rustc")?;
    cmd.arg(format!("+{toolchain}"));
    Ok(cmd)
}

pub fn rustup() -> Result<Command> {
    command("rustup")
}

/// Prints the command, runs it with inherited stdio and fails on a non-zero exit.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = display(cmd);
    println!("$ {shown}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// Runs a quick query quietly and returns its stdout; on failure the error carries its stderr.
pub fn output(cmd: &mut Command) -> Result<String> {
    let shown = display(cmd);
    let out = cmd
        .output()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!("`{shown}` failed ({}): {}", out.status, stderr.trim());
    }
    String::from_utf8(out.stdout).with_context(|| format!("`{shown}` printed non-UTF-8 output"))
}

/// Shell-like rendering of a command, with the variables it sets explicitly (except PATH,
/// which every child gets).
fn display(cmd: &Command) -> String {
    let mut words = Vec::new();
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value
            && key != "PATH"
        {
            words.push(format!(
                "{}={}",
                key.to_string_lossy(),
                quote(&value.to_string_lossy())
            ));
        }
    }
    words.push(quote(&cmd.get_program().to_string_lossy()));
    for arg in cmd.get_args() {
        words.push(quote(&arg.to_string_lossy()));
    }
    words.join(" ")
}

fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_+=./,:@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Effective uid 0, read from /proc to avoid a libc dependency.
pub fn is_root() -> Result<bool> {
    let status = fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let euid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .context("no effective uid in /proc/self/status")?;
    Ok(euid == "0")
}

/// Fails with `why` unless running as root.
pub fn require_root(why: &str) -> Result<()> {
    if !is_root()? {
        bail!("{why}; run as root (e.g. `sudo ./x ...`)");
    }
    Ok(())
}

pub fn secs(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}

/// Times the phases of a task and prints a summary, so a failure names its phase.
pub struct Phases {
    task: &'static str,
    done: Vec<(&'static str, Duration, bool)>,
}

impl Phases {
    pub fn new(task: &'static str) -> Phases {
        Phases {
            task,
            done: Vec::new(),
        }
    }

    pub fn run(&mut self, name: &'static str, f: impl FnOnce() -> Result<()>) -> Result<()> {
        println!("==> {}: {name}", self.task);
        let start = Instant::now();
        let result = f();
        self.done.push((name, start.elapsed(), result.is_ok()));
        result.with_context(|| format!("{} failed in phase '{name}'", self.task))
    }

    pub fn print_summary(&self) {
        let width = self
            .done
            .iter()
            .map(|(name, ..)| name.len())
            .max()
            .unwrap_or(0);
        let width = width.max("total".len());
        println!("{} summary:", self.task);
        let mut total = Duration::ZERO;
        for (name, duration, ok) in &self.done {
            total += *duration;
            let result = if *ok { "ok" } else { "FAILED" };
            println!("  {name:<width$}  {:>7}  {result}", secs(*duration));
        }
        println!("  {:<width$}  {:>7}", "total", secs(total));
    }
}

/// Matches a rustup name against what we asked for: exactly, or followed by `-<host triple>`
/// (rustup lists `1.99.1-x86_64-unknown-linux-gnu`, `clippy-x86_64-...`, `rust-src`).
/// Requiring a letter after the dash keeps `nightly` from matching `nightly-2026-...`.
pub fn rustup_name_matches(listed: &str, wanted: &str) -> bool {
    listed == wanted
        || listed
            .strip_prefix(wanted)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|triple| triple.starts_with(|c: char| c.is_ascii_alphabetic()))
}
