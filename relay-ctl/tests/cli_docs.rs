//! `relay-ctl gen-docs DIR` writes a man page per command and bash/zsh/fish completions that
//! name every subcommand the binary's own `--help` lists and its key flags; `--version` names
//! the git revision and the embedded XDP object. No root, no namespaces.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_relay-ctl"))
}

fn run(args: &[&str]) -> String {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("run relay-ctl");
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// The subcommands a `--help` text lists under "Commands:" (without clap's `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

/// Removes the directory, also when an assertion fails.
struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn man_pages_and_completions_cover_every_subcommand_and_key_flags() {
    let dir = TempDir(std::env::temp_dir().join(format!("relay-ctl-docs-{}", std::process::id())));
    let printed = run(&["gen-docs", dir.0.to_str().expect("UTF-8 temp dir")]);
    let read = |name: &str| {
        std::fs::read_to_string(dir.0.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}; gen-docs printed:\n{printed}"))
    };

    let top = subcommands(&run(&["--help"]));
    assert!(
        top.len() >= 8 && top.contains(&"daemon".to_owned()),
        "{top:?}"
    );
    // Each subcommand's own subcommands (`reflector ticket`) get pages too.
    let mut pages = vec!["relay-ctl".to_owned()];
    for sub in &top {
        pages.push(format!("relay-ctl-{sub}"));
        for subsub in subcommands(&run(&[sub, "--help"])) {
            pages.push(format!("relay-ctl-{sub}-{subsub}"));
        }
    }
    assert!(
        pages.contains(&"relay-ctl-reflector-ticket".to_owned()),
        "{pages:?}"
    );
    for page in &pages {
        let text = read(&format!("{page}.1"));
        // roff escapes every hyphen as `\-`.
        let text = text.replace("\\-", "-");
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{page}.1 is roff"
        );
        assert!(text.contains(page.as_str()), "{page}.1 names itself");
        assert!(printed.contains(&format!("{page}.1")), "{page}.1 reported");
    }
    let main_page = read("relay-ctl.1").replace("\\-", "-");
    let daemon_page = read("relay-ctl-daemon.1").replace("\\-", "-");
    let completions = [
        read("relay-ctl.bash"),
        read("_relay-ctl"),
        read("relay-ctl.fish"),
    ];
    for sub in &top {
        assert!(main_page.contains(sub.as_str()), "relay-ctl.1 lists {sub}");
        for c in &completions {
            assert!(c.contains(sub.as_str()), "completion offers {sub}");
        }
    }
    for flag in [
        "--port-min",
        "--port-max",
        "--relay-addr",
        "--iface",
        "--xdp-mode",
    ] {
        assert!(
            daemon_page.contains(flag),
            "relay-ctl-daemon.1 documents {flag}"
        );
        let name = flag.trim_start_matches('-');
        for c in &completions {
            // bash and zsh spell the flag, fish gives the long name to `-l`.
            assert!(
                c.contains(flag) || c.contains(&format!("-l {name}")),
                "completion offers {flag}"
            );
        }
    }
    // The packaging subcommand documents others, not itself.
    for text in completions.iter().chain([&main_page]) {
        assert!(!text.contains("gen-docs"));
    }
}

#[test]
fn version_names_the_git_revision_and_the_xdp_object() {
    let v = run(&["--version"]);
    let rest = v
        .trim_end()
        .strip_prefix(&format!("relay-ctl {} (git ", env!("CARGO_PKG_VERSION")))
        .unwrap_or_else(|| panic!("{v:?}"));
    let (rev, rest) = rest
        .split_once(", ebpf fnv1a64:")
        .unwrap_or_else(|| panic!("{v:?}"));
    let hash = rest.strip_suffix(')').unwrap_or_else(|| panic!("{v:?}"));
    assert!(
        hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()),
        "{v:?}"
    );
    // Built from this checkout: the revision is its HEAD (or "unknown" without git).
    let head = Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short",
            "HEAD",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    assert_eq!(rev, head.as_deref().unwrap_or("unknown"), "{v:?}");
}
