//! `package`: the Debian package `media-relay` (docs/packaging.md), and the checks `test`
//! runs on it.
//!
//! Built with plain `dpkg-deb --build` from a staged tree, not cargo-deb: the package is one
//! binary plus a handful of files from `packaging/debian/` that we want to see as they are
//! (maintainer scripts, unit, conffiles), dpkg-deb is already on every Debian machine, and
//! cargo-deb would be one more pinned tool to compile in CI for what is a few dozen lines
//! here. `dpkg-shlibdeps` (dpkg-dev) computes the library dependencies, as debhelper would.
//!
//! The staged tree (`target/debian/media-relay_<version>_<arch>/`):
//!
//! ```text
//! usr/bin/relay-ctl                        release build, eBPF object embedded, stripped
//! lib/systemd/system/media-relay@.service  packaging/debian/media-relay@.service
//! etc/media-relay/example.toml             docs/relay.example.toml (conffile)
//! usr/share/man/man1/*.1.gz                `relay-ctl gen-docs`
//! usr/share/bash-completion/completions/relay-ctl, usr/share/zsh/vendor-completions/_relay-ctl,
//! usr/share/fish/vendor_completions.d/relay-ctl.fish
//! usr/share/media-relay/                   deploy/'s Prometheus rules and Grafana dashboard
//! usr/share/doc/media-relay/               copyright, changelog.Debian.gz, packaging.md.gz
//! DEBIAN/                                  control, conffiles, md5sums, postinst, prerm, postrm
//! ```
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};

use crate::setup::run_setup;
use crate::util::{Pins, command, output, repo_root, run};

const PACKAGE: &str = "media-relay";
const MAINTAINER: &str = "relay-dev <dev@relay.invalid>";
/// The Debian revision of a package built without `--version`.
const DEFAULT_REVISION: &str = "1";
const UNIT: &str = "media-relay@.service";
const CONFFILE: &str = "/etc/media-relay/example.toml";

/// `./x package [--version V] [--check]`: setup, build, check if asked, print the .deb's path.
pub fn run_package(pins: &Pins, version: Option<&str>, check: bool) -> Result<()> {
    run_setup(pins)?;
    let deb = build_deb(pins, version)?;
    if check {
        check_deb(&deb)?;
        lifecycle(pins, &deb)?;
    }
    println!("package: {}", deb.display());
    Ok(())
}

/// Other tests create namespaces and attach XDP under the same lock.
const NETNS_LOCK: &str = "/tmp/relay-netns.lock";

/// `test`'s phase: build the package as `./x package` does and check it, then build a second
/// version and run the life cycle (install, restart, upgrade, remove, purge) on this host
/// (packaging/tests/lifecycle.sh).
pub fn build_and_check(pins: &Pins) -> Result<()> {
    let deb = build_deb(pins, None)?;
    check_deb(&deb)?;
    lifecycle(pins, &deb)
}

/// packaging/tests/lifecycle.sh with `deb` and the same tree as version `<deb's>.1`.
fn lifecycle(pins: &Pins, deb: &Path) -> Result<()> {
    let version = output(command("dpkg-deb")?.arg("--field").arg(deb).arg("Version"))?;
    let newer = build_deb(pins, Some(&format!("{}.1", version.trim())))?;
    // -o: the lock's descriptor is not inherited by the script (nor by the daemon it runs).
    run(command("flock")?
        .args(["-o", NETNS_LOCK])
        .arg(repo_root().join("packaging/tests/lifecycle.sh"))
        .arg(deb)
        .arg(&newer))
}

/// Builds relay-ctl (release) and the package; returns the .deb's path.
pub fn build_deb(pins: &Pins, version: Option<&str>) -> Result<PathBuf> {
    let root = repo_root();
    let built = crate::build::release_relay_ctl(pins)?;
    let upstream = binary_version(&built)?;
    let version = match version {
        Some(v) => {
            check_version(v)?;
            v.to_owned()
        }
        None => format!("{upstream}-{DEFAULT_REVISION}"),
    };
    let arch = output(command("dpkg")?.arg("--print-architecture"))?
        .trim()
        .to_owned();
    // dpkg-deb's own naming: the epoch is not part of the file name.
    let file_version = version.split_once(':').map_or(version.as_str(), |(_, v)| v);
    let out_dir = root.join("target/debian");
    let stage = out_dir.join(format!("{PACKAGE}_{file_version}_{arch}"));
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
    }
    let epoch = source_date_epoch()?;

    stage_files(&root, &built, &stage)?;
    write_changelog(&stage, &version, &epoch)?;
    write_control(&root, &stage, &version, &arch)?;
    fix_dir_modes(&stage)?;

    let deb = out_dir.join(format!("{PACKAGE}_{file_version}_{arch}.deb"));
    run(command("dpkg-deb")?
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&stage)
        .arg(&deb)
        // Clamps the files' times to the commit's: the same commit gives the same package.
        .env("SOURCE_DATE_EPOCH", &epoch))?;
    Ok(deb)
}

/// "relay-ctl 0.1.0 (git ...)" -> "0.1.0": the package's upstream version is the binary's.
fn binary_version(bin: &Path) -> Result<String> {
    let out = output(command(bin)?.arg("--version"))?;
    let mut words = out.split_whitespace();
    match (words.next(), words.next()) {
        (Some("relay-ctl"), Some(v)) => Ok(v.to_owned()),
        _ => bail!("unexpected `relay-ctl --version` output: {out:?}"),
    }
}

/// A Debian version with a revision (the package is not native: changelog.Debian.gz):
/// `[epoch:]upstream-revision`, upstream starting with a digit.
fn check_version(v: &str) -> Result<()> {
    let (epoch, rest) = v.split_once(':').unwrap_or(("0", v));
    let Some((upstream, revision)) = rest.rsplit_once('-') else {
        bail!("--version {v:?}: give a Debian revision, e.g. 0.1.0-2");
    };
    let ok_chars = |s: &str, extra: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
    };
    ensure!(
        !epoch.is_empty() && epoch.chars().all(|c| c.is_ascii_digit()),
        "--version {v:?}: the epoch must be digits"
    );
    ensure!(
        upstream.starts_with(|c: char| c.is_ascii_digit()) && ok_chars(upstream, ".+~-"),
        "--version {v:?}: the upstream part must start with a digit and use [A-Za-z0-9.+~-]"
    );
    ensure!(
        ok_chars(revision, ".+~"),
        "--version {v:?}: the revision must use [A-Za-z0-9.+~]"
    );
    Ok(())
}

/// The commit's time (seconds), so the package's dates do not depend on when it was built.
fn source_date_epoch() -> Result<String> {
    let out = output(command("git")?.args(["log", "-1", "--format=%ct"]))?;
    let epoch = out.trim();
    ensure!(
        !epoch.is_empty() && epoch.chars().all(|c| c.is_ascii_digit()),
        "git log printed no commit time: {out:?}"
    );
    Ok(epoch.to_owned())
}

fn stage_files(root: &Path, built: &Path, stage: &Path) -> Result<()> {
    let src = root.join("packaging/debian");

    // The binary, stripped of its symbols (lintian: unstripped-binary-or-object); the eBPF
    // object is data in .rodata and stays byte for byte (`--version` names its hash).
    let bin = stage.join("usr/bin/relay-ctl");
    make_parent(&bin)?;
    run(command("strip")?
        .args([
            "--strip-unneeded",
            "--remove-section=.comment",
            "--remove-section=.note",
            "-o",
        ])
        .arg(&bin)
        .arg(built))?;
    set_mode(&bin, 0o755)?;

    copy(
        &src.join(UNIT),
        &stage.join("lib/systemd/system").join(UNIT),
    )?;
    copy(
        &root.join("docs/relay.example.toml"),
        &stage.join(CONFFILE.trim_start_matches('/')),
    )?;
    // The Prometheus rules and the Grafana dashboard (README, Monitoring), where an operator
    // loads them from: not conffiles, they are meant to be copied or pointed at.
    for (from, to) in DEPLOY_FILES {
        copy(&root.join(from), &stage.join(to.trim_start_matches('/')))?;
    }

    // Man pages and completions from the binary itself (the same clap definitions it parses).
    let gen_dir = sibling(stage, "gen-docs");
    if gen_dir.exists() {
        fs::remove_dir_all(&gen_dir).with_context(|| format!("removing {}", gen_dir.display()))?;
    }
    output(command(built)?.arg("gen-docs").arg(&gen_dir))?;
    let man_dir = stage.join("usr/share/man/man1");
    let mut pages = 0;
    for entry in fs::read_dir(&gen_dir).with_context(|| format!("reading {}", gen_dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "1") {
            let name = path.file_name().context("a page has a name")?;
            gzip_into(&path, &man_dir.join(name))?;
            pages += 1;
        }
    }
    ensure!(pages > 0, "gen-docs wrote no man page");
    let share = stage.join("usr/share");
    for (from, to) in [
        ("relay-ctl.bash", "bash-completion/completions/relay-ctl"),
        ("_relay-ctl", "zsh/vendor-completions/_relay-ctl"),
        ("relay-ctl.fish", "fish/vendor_completions.d/relay-ctl.fish"),
    ] {
        copy(&gen_dir.join(from), &share.join(to))?;
    }
    fs::remove_dir_all(&gen_dir).with_context(|| format!("removing {}", gen_dir.display()))?;

    let doc = share.join("doc").join(PACKAGE);
    copy(&src.join("copyright"), &doc.join("copyright"))?;
    gzip_into(&root.join("docs/packaging.md"), &doc.join("packaging.md"))?;
    copy(
        &src.join("lintian-overrides"),
        &share.join("lintian/overrides").join(PACKAGE),
    )?;

    let debian = stage.join("DEBIAN");
    for script in ["postinst", "prerm", "postrm"] {
        copy(&src.join(script), &debian.join(script))?;
        set_mode(&debian.join(script), 0o755)?;
    }
    copy(&src.join("conffiles"), &debian.join("conffiles"))?;
    Ok(())
}

/// changelog.Debian.gz: one entry for the version built, dated by the commit.
fn write_changelog(stage: &Path, version: &str, epoch: &str) -> Result<()> {
    let date = output(
        command("date")?
            .args(["-u", "-R", "-d"])
            .arg(format!("@{epoch}")),
    )?;
    let rev = output(command("git")?.args(["rev-parse", "--short", "HEAD"]))?;
    let text = format!(
        "{PACKAGE} ({version}) unstable; urgency=medium\n\n  * Built from git {} by `./x package`.\n\n -- {MAINTAINER}  {}\n",
        rev.trim(),
        date.trim()
    );
    let dir = stage.join("usr/share/doc").join(PACKAGE);
    let plain = sibling(stage, "changelog");
    fs::write(&plain, text).with_context(|| format!("writing {}", plain.display()))?;
    gzip_into(&plain, &dir.join("changelog.Debian"))?;
    fs::remove_file(&plain).with_context(|| format!("removing {}", plain.display()))
}

/// DEBIAN/control from control.in, and DEBIAN/md5sums.
fn write_control(root: &Path, stage: &Path, version: &str, arch: &str) -> Result<()> {
    let files = payload_files(stage)?;
    let mut kib = 0;
    for f in &files {
        let len = fs::metadata(stage.join(f))
            .with_context(|| format!("reading {}", f.display()))?
            .len();
        kib += len.div_ceil(1024);
    }
    let template = fs::read_to_string(root.join("packaging/debian/control.in"))
        .context("reading packaging/debian/control.in")?;
    let control = template
        .replace("@VERSION@", version)
        .replace("@ARCH@", arch)
        .replace("@MAINTAINER@", MAINTAINER)
        .replace("@INSTALLED_SIZE@", &kib.to_string())
        .replace("@DEPENDS@", &shlib_depends(stage)?);
    let placeholder = control
        .split('@')
        .skip(1)
        .step_by(2)
        .find(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
    ensure!(
        placeholder.is_none(),
        "control.in has an unknown @{}@",
        placeholder.unwrap_or_default()
    );
    fs::write(stage.join("DEBIAN/control"), control).context("writing DEBIAN/control")?;

    let mut md5 = command("md5sum")?;
    md5.current_dir(stage).args(&files);
    fs::write(stage.join("DEBIAN/md5sums"), output(&mut md5)?).context("writing DEBIAN/md5sums")
}

/// `dpkg-shlibdeps` on the binary: e.g. "libc6 (>= 2.34), libgcc-s1 (>= 4.2)".
fn shlib_depends(stage: &Path) -> Result<String> {
    // dpkg-shlibdeps wants to run in a source tree: a debian/control naming the package.
    let dir = sibling(stage, "shlibdeps");
    fs::create_dir_all(dir.join("debian"))
        .with_context(|| format!("creating {}", dir.display()))?;
    fs::write(
        dir.join("debian/control"),
        format!("Source: {PACKAGE}\n\nPackage: {PACKAGE}\nArchitecture: any\n"),
    )
    .context("writing dpkg-shlibdeps' debian/control")?;
    let mut cmd = command("dpkg-shlibdeps")?;
    cmd.current_dir(&dir)
        .arg("-O")
        .arg(format!("-e{}", stage.join("usr/bin/relay-ctl").display()));
    let out = output(&mut cmd)?;
    fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    out.lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .map(str::to_owned)
        .with_context(|| format!("dpkg-shlibdeps printed no shlibs:Depends: {out:?}"))
}

/// Every regular file of the payload (not DEBIAN/), relative to the stage, sorted.
fn payload_files(stage: &Path) -> Result<Vec<PathBuf>> {
    fn walk(stage: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                walk(stage, &path, out)?;
            } else if let Ok(rel) = path.strip_prefix(stage) {
                out.push(rel.to_path_buf());
            }
        }
        Ok(())
    }
    let mut files = vec![];
    for top in fs::read_dir(stage).with_context(|| format!("reading {}", stage.display()))? {
        let path = top?.path();
        if path.is_dir() && path.file_name().is_some_and(|n| n != "DEBIAN") {
            walk(stage, &path, &mut files)?;
        }
    }
    files.sort();
    Ok(files)
}

/// deploy/ files the package ships: (repo path, installed path).
const DEPLOY_FILES: [(&str, &str); 2] = [
    (
        "deploy/prometheus/media-relay-rules.yml",
        "/usr/share/media-relay/prometheus/media-relay-rules.yml",
    ),
    (
        "deploy/grafana/media-relay.json",
        "/usr/share/media-relay/grafana/media-relay.json",
    ),
];

/// What `test` checks on a built package: its contents and conffiles, lintian, the unit
/// (`systemd-analyze verify`), the maintainer scripts' syntax, and the packaged binary.
pub fn check_deb(deb: &Path) -> Result<()> {
    let contents = output(command("dpkg-deb")?.arg("--contents").arg(deb))?;
    let listed: Vec<&str> = contents
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches('.'))
        .collect();
    for want in [
        "/usr/bin/relay-ctl",
        "/lib/systemd/system/media-relay@.service",
        CONFFILE,
        "/usr/share/man/man1/relay-ctl.1.gz",
        "/usr/share/man/man1/relay-ctl-daemon.1.gz",
        "/usr/share/man/man1/relay-ctl-detach.1.gz",
        "/usr/share/bash-completion/completions/relay-ctl",
        "/usr/share/zsh/vendor-completions/_relay-ctl",
        "/usr/share/fish/vendor_completions.d/relay-ctl.fish",
        "/usr/share/doc/media-relay/copyright",
        "/usr/share/doc/media-relay/changelog.Debian.gz",
    ]
    .into_iter()
    .chain(DEPLOY_FILES.map(|(_, to)| to))
    {
        ensure!(listed.contains(&want), "{} lacks {want}", deb.display());
    }
    let conffiles = output(command("dpkg-deb")?.arg("--info").arg(deb).arg("conffiles"))?;
    ensure!(
        conffiles.lines().any(|l| l.trim() == CONFFILE),
        "{CONFFILE} is not a conffile: {conffiles:?}"
    );
    println!(
        "package: contents and conffiles ok ({} entries)",
        listed.len()
    );

    // Errors and warnings fail; accepted tags are in packaging/debian/lintian-overrides,
    // each with its reason.
    run(command("lintian")?
        .args([
            "--allow-root",
            "--fail-on",
            "error,warning",
            "--display-info",
        ])
        .arg(deb))?;

    let dir = sibling(deb, "check");
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    run(command("dpkg-deb")?.arg("--extract").arg(deb).arg(&dir))?;
    let result = check_extracted(deb, &dir);
    fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    result
}

fn check_extracted(deb: &Path, dir: &Path) -> Result<()> {
    let version = output(command(dir.join("usr/bin/relay-ctl"))?.arg("--version"))?;
    ensure!(
        version.starts_with("relay-ctl ") && version.contains("ebpf fnv1a64:"),
        "the packaged binary's --version: {version:?}"
    );
    println!("package: usr/bin/relay-ctl --version: {}", version.trim());

    // systemd-analyze verify needs an instance of the template, the binary where ExecStart=
    // says (the host has none installed: the copy points at the extracted one, the only
    // change) and the man pages Documentation= names (MANPATH).
    let unit = fs::read_to_string(dir.join("lib/systemd/system").join(UNIT))
        .context("reading the packaged unit")?;
    let bin = dir.join("usr/bin/relay-ctl");
    let unit = unit.replace("/usr/bin/relay-ctl", &bin.to_string_lossy());
    let instance = dir.join("media-relay@pkgcheck.service");
    fs::write(&instance, unit).context("instantiating the unit")?;
    let manpath = dir.join("usr/share/man");
    // verify exits 0 on an unknown key or section ("ignoring"): any complaint fails.
    let verify = command("systemd-analyze")?
        .args(["verify", "--no-pager"])
        .arg(&instance)
        .env("MANPATH", &manpath)
        .output()
        .context("starting systemd-analyze verify")?;
    let complaints = String::from_utf8_lossy(&verify.stderr);
    ensure!(
        verify.status.success() && complaints.trim().is_empty(),
        "systemd-analyze verify {UNIT} ({}): {}",
        verify.status,
        complaints.trim()
    );
    println!("package: systemd-analyze verify {UNIT}: ok");
    let analysis = output(
        command("systemd-analyze")?
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(&instance),
    )?;
    if let Some(line) = analysis
        .lines()
        .find(|l| l.contains("Overall exposure level"))
    {
        println!("package: systemd-analyze security: {}", line.trim());
    }

    let scripts = sibling(dir, "control");
    run(command("dpkg-deb")?.arg("--control").arg(deb).arg(&scripts))?;
    for script in ["postinst", "prerm", "postrm"] {
        let path = scripts.join(script);
        let mode = fs::metadata(&path)
            .with_context(|| format!("{script} missing"))?
            .permissions()
            .mode();
        ensure!(mode & 0o111 != 0, "{script} is not executable");
        run(command("sh")?.arg("-n").arg(&path))?;
    }
    fs::remove_dir_all(&scripts).with_context(|| format!("removing {}", scripts.display()))
}

/// `<path>.<suffix>` next to `path` (not `with_extension`: versions have dots).
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

fn make_parent(path: &Path) -> Result<()> {
    let parent = path.parent().context("a path in the stage has a parent")?;
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))
}

/// Every directory of the stage 0755, whatever the umask (lintian and dpkg-deb want it).
fn fix_dir_modes(dir: &Path) -> Result<()> {
    set_mode(dir, 0o755)?;
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            fix_dir_modes(&path)?;
        }
    }
    Ok(())
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    make_parent(to)?;
    fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    set_mode(to, 0o644)
}

/// `to`.gz from `from`, with gzip -9n (no name or time in the header, as lintian wants).
fn gzip_into(from: &Path, to: &Path) -> Result<()> {
    make_parent(to)?;
    let mut gz = to.as_os_str().to_owned();
    gz.push(".gz");
    let data = fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    let mut cmd = command("gzip")?;
    cmd.args(["-9n", "-c"]).stdin(std::process::Stdio::piped());
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting gzip")?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().context("gzip's stdin")?;
        stdin.write_all(&data).context("writing to gzip")?;
    }
    let out = child.wait_with_output().context("waiting for gzip")?;
    ensure!(out.status.success(), "gzip failed ({})", out.status);
    fs::write(&gz, out.stdout).with_context(|| format!("writing {}", gz.to_string_lossy()))?;
    set_mode(Path::new(&gz), 0o644)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::check_version;

    #[test]
    fn versions_need_a_revision() {
        for ok in ["0.1.0-1", "0.1.0-2", "1:0.2.0~rc1-1", "0.1.0+git1-0.1"] {
            assert!(check_version(ok).is_ok(), "{ok}");
        }
        for bad in ["0.1.0", "v0.1.0-1", "0.1.0-", "a:0.1-1", "0.1 0-1", "-1"] {
            assert!(check_version(bad).is_err(), "{bad}");
        }
    }
}
