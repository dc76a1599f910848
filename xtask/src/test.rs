//! `test`: the one command that runs every check and test; CI runs it via `.ci/run`.

use anyhow::Result;

use crate::lint::run_checks;
use crate::setup::run_setup;
use crate::util::{Phases, Pins, cargo, require_root, run};

pub fn run_test(pins: &Pins) -> Result<()> {
    require_root(
        "`test` needs root: the XDP fixture and network-namespace tests need it (CI runs as root)",
    )?;
    let mut phases = Phases::new("test");
    let result = run_phases(pins, &mut phases);
    phases.print_summary();
    result
}

fn run_phases(pins: &Pins, phases: &mut Phases) -> Result<()> {
    phases.run("setup", || run_setup(pins))?;
    run_checks(pins, phases)?;
    // Default members; `cargo test` also builds the examples, so they cannot rot.
    // Not `--all-targets`: that would add benches.
    phases.run("tests", || run(cargo(&pins.stable)?.arg("test")))?;
    Ok(())
}
