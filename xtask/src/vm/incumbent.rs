//! The bench guest (`cargo xtask bench --incumbent [--smoke]`, and a smoke phase of `test`):
//! Debian's 6.1 kernel with iptables and rtpengine's kernel module (xt_RTPENGINE) loaded, our
//! static relay-ctl and relay-bench, and `vm-tests/incumbent/`, whose scenario runs
//! `relay-bench incumbent` (bench/README.md). What it writes to `/out` (a writable 9p share)
//! is copied to bench/results/ (full) or target/bench-incumbent-smoke/ (smoke).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::initramfs::{Image, StaticBins};
use super::{boot_guest, kernel, kmod, qemu, rtpengine26, static_build};
use crate::setup::run_setup;
use crate::util::{Phases, Pins, repo_root};

/// Which rtpengine the guest runs against our relay.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Which {
    /// Debian 12's rtpengine 10.5 and xt_RTPENGINE, on Debian 12's default kernel (6.1).
    Xt10,
    /// rtpengine 26.x and nft_rtpengine built from the shared tarball (rtpengine26.rs), on
    /// the 6.12 kernel (26.x's nftables module wants a recent kernel; Debian 12 backports it).
    Nft26,
}

impl Which {
    fn kernel(self) -> &'static str {
        match self {
            Which::Xt10 => "6.1",
            Which::Nft26 => "6.12",
        }
    }

    /// `/vm/incumbent`: relay-bench's `--flavor`.
    fn flavor(self) -> &'static str {
        match self {
            Which::Xt10 => "xt",
            Which::Nft26 => "nft",
        }
    }

    /// Under target/vm/: console log and the out share.
    fn dir(self) -> &'static str {
        match self {
            Which::Xt10 => "incumbent",
            Which::Nft26 => "incumbent26",
        }
    }
}

#[derive(Clone, Copy)]
pub enum Mode {
    /// The measured run whose results are committed.
    Full,
    /// Every step once, briefly: proves the guest, the module and the harness work (CI).
    Smoke,
}

impl Mode {
    /// What `/vm/bench-mode` says (relay-bench's `--mode`).
    fn name(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Smoke => "smoke",
        }
    }

    fn phase(self, which: Which) -> &'static str {
        match (which, self) {
            (Which::Xt10, Mode::Full) => "vm-incumbent",
            (Which::Xt10, Mode::Smoke) => "vm-incumbent-smoke",
            (Which::Nft26, Mode::Full) => "vm-incumbent26",
            (Which::Nft26, Mode::Smoke) => "vm-incumbent26-smoke",
        }
    }

    /// The whole guest under TCG: a full run is budgeted at 40 minutes, a smoke at 6; the
    /// scenario's own limit leaves the boot and the shutdown their time.
    fn guest_timeout(self) -> Duration {
        match self {
            Mode::Full => Duration::from_secs(40 * 60),
            Mode::Smoke => Duration::from_secs(6 * 60),
        }
    }

    fn scenario_timeout(self) -> Duration {
        self.guest_timeout() - Duration::from_secs(60)
    }

    /// Smoke output is not a result: it goes under target/.
    fn results_dir(self) -> PathBuf {
        match self {
            Mode::Full => repo_root().join("bench/results"),
            Mode::Smoke => repo_root().join("target/bench-incumbent-smoke"),
        }
    }
}

/// `bench --incumbent` (10.5) or `--incumbent26`: setup, the static binaries, then the phases
/// below.
pub fn run_bench(pins: &Pins, mode: Mode, which: Which) -> Result<()> {
    let mut phases = Phases::new("bench-incumbent");
    let result = phases
        .run("setup", || run_setup(pins))
        .and_then(|()| static_build(pins, &mut phases))
        .and_then(|bins| match which {
            Which::Xt10 => run_phases(&mut phases, &bins, mode),
            Which::Nft26 => run_phases26(&mut phases, &bins, mode),
        });
    phases.print_summary();
    result
}

/// What the guest loads and runs besides our binaries, per incumbent.
struct Incumbent {
    which: Which,
    kernel: kernel::Kernel,
    /// Modules after the kernel's lists, in load order (the rtpengine module last).
    modules: Vec<PathBuf>,
    /// A daemon built here, packed as `/vm/rtpengine` (10.5's comes from the host's /usr).
    daemon: Option<PathBuf>,
}

/// Builds (or finds cached) the module, boots the bench guest and collects its results;
/// `test` runs these after its own vm phases, with the static binaries they built.
pub fn run_phases(phases: &mut Phases, bins: &StaticBins, mode: Mode) -> Result<()> {
    let mut built = None;
    phases.run("vm-incumbent-kmod", || {
        let k = kernel::fetch(Which::Xt10.kernel())?;
        let ko = kmod::fetch(&k)?;
        println!(
            "xt_RTPENGINE.ko for {} {}: {}",
            k.package,
            k.version,
            ko.display()
        );
        built = Some(Incumbent {
            which: Which::Xt10,
            kernel: k,
            modules: vec![ko],
            daemon: None,
        });
        Ok(())
    })?;
    let Some(inc) = built else {
        bail!("the module phase produced nothing");
    };
    phases.run(mode.phase(Which::Xt10), || {
        boot_and_collect(bins, &inc, mode)
    })
}

/// rtpengine 26.x: daemon and nft_rtpengine built from the shared tarball (cached), on 6.12.
pub fn run_phases26(phases: &mut Phases, bins: &StaticBins, mode: Mode) -> Result<()> {
    let mut built = None;
    phases.run("vm-incumbent26-build", || {
        let k = kernel::fetch(Which::Nft26.kernel())?;
        let b = rtpengine26::fetch(&k)?;
        println!(
            "rtpengine {} for {} {}: {}, {}",
            b.version,
            k.package,
            k.version,
            b.daemon.display(),
            b.ko.display()
        );
        let mut modules = b.modules;
        modules.push(b.ko);
        built = Some(Incumbent {
            which: Which::Nft26,
            kernel: k,
            modules,
            daemon: Some(b.daemon),
        });
        Ok(())
    })?;
    let Some(inc) = built else {
        bail!("the build phase produced nothing");
    };
    phases.run(mode.phase(Which::Nft26), || {
        boot_and_collect(bins, &inc, mode)
    })
}

fn boot_and_collect(bins: &StaticBins, inc: &Incumbent, mode: Mode) -> Result<()> {
    let kernel = &inc.kernel;
    let dir = repo_root().join("target/vm").join(inc.which.dir());
    let out = dir.join("out");
    // Only this run's files may reach the results.
    let _ = fs::remove_dir_all(&out);
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut binaries = vec![
        (bins.relay_ctl.as_path(), "relay-ctl"),
        (bins.relay_bench.as_path(), "relay-bench"),
    ];
    if let Some(d) = &inc.daemon {
        binaries.push((d.as_path(), "rtpengine"));
    }
    let image = Image {
        binaries,
        // x_tables (and nf_tables) before the module that needs them, rtpengine's last.
        modules: kernel
            .modules
            .iter()
            .chain(&kernel.netfilter_modules)
            .chain(&inc.modules)
            .map(PathBuf::as_path)
            .collect(),
        scenarios: repo_root().join("vm-tests/incumbent"),
        files: vec![
            ("incumbent", inc.which.flavor().to_string()),
            ("bench-mode", mode.name().to_string()),
            (
                "scenario-timeout",
                mode.scenario_timeout().as_secs().to_string(),
            ),
        ],
    };
    let opts = qemu::Options {
        // rtpengine, our daemon and the harness's tables side by side.
        memory_mb: 3072,
        timeout: mode.guest_timeout(),
        out_share: Some(&out),
        // A full run takes many minutes: show its progress.
        live: matches!(mode, Mode::Full),
        disk: None,
        host_usr: true,
    };
    if !boot_guest("incumbent", &kernel.vmlinuz, &image, &dir, &opts)? {
        bail!(
            "the bench guest failed (console: {})",
            dir.join("console.log").display()
        );
    }
    let dest = mode.results_dir();
    let copied = copy_tree(&out, &dest, 0)?;
    if copied.is_empty() {
        bail!("the bench guest passed but wrote nothing to /out");
    }
    for f in &copied {
        println!("bench-incumbent: wrote {}", f.display());
    }
    Ok(())
}

/// Copies every file under `from` to the same relative path under `to`; returns the copies.
/// Depth-bounded: the guest writes a flat directory.
fn copy_tree(from: &Path, to: &Path, depth: u32) -> Result<Vec<PathBuf>> {
    if depth > 4 {
        bail!("{} nests too deep", from.display());
    }
    fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    let mut copied = Vec::new();
    let mut entries: Vec<PathBuf> = fs::read_dir(from)
        .with_context(|| format!("reading {}", from.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        let Some(name) = path.file_name() else {
            continue;
        };
        let target = to.join(name);
        if path.is_dir() {
            copied.extend(copy_tree(&path, &target, depth + 1)?);
        } else {
            fs::copy(&path, &target)
                .with_context(|| format!("copying {} to {}", path.display(), target.display()))?;
            copied.push(target);
        }
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::{Mode, copy_tree};

    #[test]
    fn scenario_ends_before_the_guest() {
        for m in [Mode::Full, Mode::Smoke] {
            assert!(m.scenario_timeout() < m.guest_timeout());
        }
    }

    #[test]
    fn copies_what_the_guest_wrote() {
        let base = std::env::temp_dir().join(format!("xtask-copy-tree-{}", std::process::id()));
        let (from, to) = (base.join("out"), base.join("results"));
        fs::create_dir_all(from.join("sub")).unwrap();
        fs::write(from.join("a.json"), "{}").unwrap();
        fs::write(from.join("sub/b.md"), "# b").unwrap();
        let copied = copy_tree(&from, &to, 0).unwrap();
        assert_eq!(copied, [to.join("a.json"), to.join("sub/b.md")]);
        assert_eq!(fs::read_to_string(to.join("sub/b.md")).unwrap(), "# b");
        fs::remove_dir_all(&base).unwrap();
    }
}
