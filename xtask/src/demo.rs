//! `demo`: runs relay-ctl's demo example, which attaches XDP programs and so needs root.

use anyhow::Result;

use crate::setup::run_setup;
use crate::util::{Pins, cargo, require_root, run};

pub fn run_demo(pins: &Pins) -> Result<()> {
    require_root("`demo` needs root: it loads and attaches XDP programs")?;
    run_setup(pins)?;
    // The demo drives the real relay-ctl binary, which `cargo run --example` does not build.
    crate::build::release_relay_ctl(pins)?;
    run(cargo(&pins.stable)?.args(["run", "--release", "-p", "relay-ctl", "--example", "demo"]))
}
