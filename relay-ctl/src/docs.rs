//! Man pages and shell completions from the CLI's clap definitions (`relay-ctl gen-docs DIR`,
//! hidden): one page for `relay-ctl` and one per subcommand (`relay-ctl-daemon.1`,
//! `relay-ctl-reflector-ticket.1`, ...), and bash, zsh and fish completions, so packages ship
//! what the binary actually accepts.
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Arg, ArgMatches, Command, value_parser};
use clap_complete::Shell;

/// The subcommand's name.
pub const SUBCOMMAND: &str = "gen-docs";

/// The shells completions are written for.
pub const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

/// `gen-docs DIR`, hidden: a packaging step, not an operator command. The binary adds it to
/// its own command only for parsing, so the documentation it writes does not mention it.
pub fn subcommand() -> Command {
    Command::new(SUBCOMMAND)
        .hide(true)
        .about("Write the man pages and bash, zsh and fish completions into DIR")
        .arg(
            Arg::new("dir")
                .value_name("DIR")
                .required(true)
                .value_parser(value_parser!(PathBuf))
                .help("Output directory (created if missing)"),
        )
}

/// Run `gen-docs` for `cli` (the binary's command): write everything, print the paths.
pub fn run(cli: Command, m: &ArgMatches) -> Result<()> {
    let dir = m
        .get_one::<PathBuf>("dir")
        .context("gen-docs needs an output directory")?;
    for f in write_all(cli, dir)? {
        println!("{}", f.display());
    }
    Ok(())
}

/// Write the man pages and completions of `cmd` into `dir` (created if missing); returns the
/// files written.
pub fn write_all(cmd: Command, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // As clap_mangen::generate_to, which does not return the paths: subcommand pages are
    // named after their parents (`relay-ctl-reflector-ticket`) once the command is built.
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut written = vec![];
    man_pages(&cmd, dir, &mut written)?;
    let name = cmd.get_name().to_owned();
    for shell in SHELLS {
        written.push(
            clap_complete::generate_to(shell, &mut cmd, &name, dir)
                .with_context(|| format!("writing {shell} completions to {}", dir.display()))?,
        );
    }
    Ok(written)
}

/// `cmd`'s page and, recursively, its visible subcommands'.
fn man_pages(cmd: &Command, dir: &Path, written: &mut Vec<PathBuf>) -> Result<()> {
    let page = clap_mangen::Man::new(cmd.clone())
        .generate_to(dir)
        .with_context(|| format!("writing {}'s man page to {}", cmd.get_name(), dir.display()))?;
    written.push(page);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        man_pages(sub, dir, written)?;
    }
    Ok(())
}
