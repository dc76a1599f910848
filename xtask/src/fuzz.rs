//! `fuzz`: the libFuzzer targets in fuzz/ (cargo-fuzz, pinned nightly), each for a while;
//! `test` runs each briefly. New inputs go to target/fuzz-corpus/<target> (the committed
//! seeds in fuzz/seeds/ are only read), crashes to target/fuzz-artifacts/<target>/: a crash
//! fails the run and names the file, which then becomes a unit test (fuzz/README.md).

use std::{fs, time::Duration};

use anyhow::{Context, Result, bail};

use crate::setup::run_setup;
use crate::util::{Phases, Pins, cargo, repo_root};

/// Every target in fuzz/Cargo.toml.
pub const TARGETS: &[&str] = &[
    "ng_bencode",
    "sdp",
    "sip_message",
    "stun_message",
    "reflector_header",
    "api_request",
    "turn_request",
];

/// `./x fuzz [--secs N] [TARGET]`: setup, then each target (or one) for `secs`.
pub fn run_fuzz(pins: &Pins, secs: u64, only: Option<&str>) -> Result<()> {
    run_setup(pins)?;
    let targets: Vec<&'static str> = match only {
        Some(t) => match TARGETS.iter().find(|x| **x == t) {
            Some(x) => vec![*x],
            None => bail!("no fuzz target {t:?}; targets: {}", TARGETS.join(", ")),
        },
        None => TARGETS.to_vec(),
    };
    let mut phases = Phases::new("fuzz");
    let result = run_targets(pins, &mut phases, &targets, Duration::from_secs(secs));
    phases.print_summary();
    result
}

/// Build once, then run each target for `time` (phases of the caller).
pub fn run_targets(
    pins: &Pins,
    phases: &mut Phases,
    targets: &[&'static str],
    time: Duration,
) -> Result<()> {
    phases.run("fuzz-build", || {
        crate::util::run(fuzz_cmd(pins)?.args(["build", "-O"]))
    })?;
    for &t in targets {
        phases.run(t, || run_one(pins, t, time))?;
    }
    Ok(())
}

fn fuzz_cmd(pins: &Pins) -> Result<std::process::Command> {
    let mut cmd = cargo(&pins.nightly)?;
    cmd.arg("fuzz").current_dir(repo_root().join("fuzz"));
    Ok(cmd)
}

fn run_one(pins: &Pins, target: &str, time: Duration) -> Result<()> {
    let root = repo_root();
    let corpus = root.join("target/fuzz-corpus").join(target);
    let artifacts = root.join("target/fuzz-artifacts").join(target);
    for d in [&corpus, &artifacts] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let seeds = root.join("fuzz/seeds").join(target);
    let mut cmd = fuzz_cmd(pins)?;
    cmd.args(["run", "-O", target])
        .arg(&corpus)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={}", time.as_secs().max(1)))
        .arg(format!("-artifact_prefix={}/", artifacts.display()));
    crate::util::run(&mut cmd).with_context(|| {
        format!(
            "fuzz target {target} failed: the crashing input is in {}",
            artifacts.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::TARGETS;

    #[test]
    fn targets_are_the_fuzz_crates_bins_and_have_seeds() {
        let root = crate::util::repo_root();
        let manifest = std::fs::read_to_string(root.join("fuzz/Cargo.toml")).expect("manifest");
        let bins: Vec<&str> = manifest
            .lines()
            .filter_map(|l| l.strip_prefix("name = \""))
            .filter_map(|l| l.strip_suffix('"'))
            .filter(|n| *n != "relay-fuzz")
            .collect();
        assert_eq!(bins, TARGETS);
        for t in TARGETS {
            let seeds = root.join("fuzz/seeds").join(t);
            let n = std::fs::read_dir(&seeds).map_or(0, |d| d.count());
            assert!(n > 0, "no seed corpus in {}", seeds.display());
        }
    }
}
