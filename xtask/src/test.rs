//! `test`: the one command that runs every check and test; CI runs it via `.ci/run`.

use std::cell::Cell;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::lint::run_checks;
use crate::setup::run_setup;
use crate::util::{Phases, Pins, cargo, require_root};

/// Seconds each fuzz target runs in `test`.
const FUZZ_SECS: u64 = 15;

pub fn run_test(pins: &Pins) -> Result<()> {
    require_root(
        "`test` needs root: the XDP fixture and network-namespace tests need it (CI runs as root)",
    )?;
    let mut phases = Phases::new("test");
    let tally = Cell::new(Tally::default());
    let result = run_phases(pins, &mut phases, &tally);
    phases.print_summary();
    // Cargo's own last line is often an empty doc-test run ("0 passed"); end with the total.
    let t = tally.get();
    println!("tests: {} passed, {} failed", t.passed, t.failed);
    result
}

fn run_phases(pins: &Pins, phases: &mut Phases, tally: &Cell<Tally>) -> Result<()> {
    phases.run("setup", || run_setup(pins))?;
    run_checks(pins, phases)?;
    // Default members; `cargo test` also builds the examples, so they cannot rot.
    // Not `--all-targets`: that would add benches.
    phases.run("tests", || {
        let (t, result) = run_counting(cargo(&pins.stable)?.arg("test"));
        tally.set(t);
        result
    })?;
    // The Debian package: built as `./x package` builds it (release relay-ctl), then its
    // contents, conffiles, lintian, the unit and the packaged binary (package.rs).
    phases.run("package", || crate::package::build_and_check(pins))?;
    // Every fuzz target briefly (fuzz/README.md; `./x fuzz` runs them for longer).
    crate::fuzz::run_targets(
        pins,
        phases,
        crate::fuzz::TARGETS,
        std::time::Duration::from_secs(FUZZ_SECS),
    )?;
    // Both guest kernels; ~45 s with the kernels cached, see vm-tests/README.md.
    let bins = crate::vm::run_kernels(pins, crate::vm::KERNELS, phases)?;
    // The bench guest against rtpengine's kernel module, in smoke mode (vm-tests/README.md).
    crate::vm::incumbent::run_phases(phases, &bins, crate::vm::incumbent::Mode::Smoke)?;
    // The Debian package in a booted Debian 12 with systemd (vm-tests/README.md, "The package
    // guest"): ~1 min for the root the first time, ~2 min for the guest under TCG.
    crate::vm::run_package(pins, "6.1", phases)
}

#[derive(Clone, Copy, Default)]
struct Tally {
    passed: u64,
    failed: u64,
}

/// Run `cargo test`, echoing its stdout while adding up its `test result:` lines.
fn run_counting(cmd: &mut Command) -> (Tally, Result<()>) {
    let mut tally = Tally::default();
    println!("$ {cmd:?}");
    let mut child = match cmd
        .stdout(Stdio::piped())
        .spawn()
        .context("starting cargo test")
    {
        Ok(c) => c,
        Err(e) => return (tally, Err(e)),
    };
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                tally.passed += count_before(rest, " passed");
                tally.failed += count_before(rest, " failed");
            }
        }
    }
    let result = match child.wait() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(anyhow::anyhow!("cargo test failed ({s})")),
        Err(e) => Err(e.into()),
    };
    if result.is_ok() && tally.passed == 0 {
        return (tally, Err(anyhow::anyhow!("cargo test ran no tests")));
    }
    (tally, result.or_else(|e| bail!("{e:#}")))
}

/// The number just before `word` in e.g. "ok. 10 passed; 0 failed; ...".
fn count_before(s: &str, word: &str) -> u64 {
    s.split(';')
        .find_map(|part| part.trim().strip_suffix(word.trim_start()))
        .and_then(|n| n.trim().rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::count_before;

    #[test]
    fn parses_cargo_result_line() {
        let l = "ok. 10 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.02s";
        assert_eq!(count_before(l, " passed"), 10);
        assert_eq!(count_before(l, " failed"), 2);
        assert_eq!(count_before("FAILED. 0 passed; 1 failed;", " failed"), 1);
    }
}
