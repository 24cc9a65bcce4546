//! `sixsocks completions SHELL` and `sixsocks manpages DIR`: shell
//! completions and manual pages generated from the clap definitions of
//! this very binary, so they cannot drift from `--help`.
//!
//! The packaging (`contrib/build-deb.sh`) runs both on the release binary;
//! `sixsocks.toml(5)`, the configuration file's page, is written by hand
//! (`sixsocks/man/sixsocks.toml.5`, kept complete by `tests/docs.rs`).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Command, ValueEnum};

/// The shells `completions` writes a script for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to write a completion script for (to stdout).
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Args, Debug)]
pub struct ManpagesArgs {
    /// Directory to write the pages to (created if missing): sixsocks.1 and
    /// one sixsocks-COMMAND.1 per subcommand.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// Write the completion script for `shell` to `out`.
pub fn completions(mut cmd: Command, shell: Shell, out: &mut dyn Write) {
    use clap_complete::Shell as S;
    let name = cmd.get_name().to_string();
    let shell = match shell {
        Shell::Bash => S::Bash,
        Shell::Zsh => S::Zsh,
        Shell::Fish => S::Fish,
    };
    clap_complete::generate(shell, &mut cmd, name, out);
}

/// The DESCRIPTION of sixsocks(1) (`--help` stays short).
const DESCRIPTION: &str = "sixsocks is a SOCKS proxy server and client. One port speaks \
SOCKS4, SOCKS4a and SOCKS5 (CONNECT, BIND, UDP ASSOCIATE, username/password \
authentication), Tor's extensions (RESOLVE, RESOLVE_PTR, extended error codes, \
stream isolation by credentials) and SOCKS 6. With no subcommand it runs `serve`: \
with no configuration file, on 127.0.0.1:1080 without authentication.\n\n\
The client commands `connect` and `resolve` go through any SOCKS proxy; `check` \
explains a configuration file (see sixsocks.toml(5)); `passwd` manages a users file.";

/// Write one page per visible command into `dir`; returns the files written.
pub fn manpages(cmd: Command, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    // The pages name the plain version: the long one (commit, features)
    // belongs to the binary, not to its documentation.
    let mut cmd = cmd
        .version(env!("CARGO_PKG_VERSION"))
        .long_about(DESCRIPTION)
        .disable_help_subcommand(true);
    cmd.build();
    let mut pages = Vec::new();
    let siblings: Vec<String> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| format!("{}-{}", cmd.get_name(), s.get_name()))
        .collect();
    let top = cmd.get_name().to_string();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let own = format!("{top}-{}", sub.get_name());
        let mut see: Vec<String> = vec![top.clone()];
        see.extend(siblings.iter().filter(|s| **s != own).cloned());
        pages.push(page(sub.clone(), &see, dir)?);
    }
    pages.push(page(cmd, &siblings, dir)?);
    Ok(pages)
}

/// One page: clap_mangen's sections, then FILES and SEE ALSO.
fn page(cmd: Command, see_also: &[String], dir: &Path) -> std::io::Result<PathBuf> {
    let man = clap_mangen::Man::new(cmd)
        .source(format!("sixsocks {}", env!("CARGO_PKG_VERSION")))
        .manual("sixsocks manual");
    let path = dir.join(man.get_filename());
    let mut roff = Vec::new();
    man.render(&mut roff)?;
    roff.extend_from_slice(
        b".SH FILES\n.TP\n.I /etc/sixsocks/sixsocks.toml\nThe configuration file of the \
          packaged service (see\n.BR sixsocks.toml (5)).\n",
    );
    roff.extend_from_slice(b".SH \"SEE ALSO\"\n");
    let mut refs: Vec<String> = see_also.iter().map(|s| format!(".BR {s} (1),")).collect();
    refs.push(".BR sixsocks.toml (5)".to_string());
    roff.extend_from_slice(refs.join("\n").as_bytes());
    roff.push(b'\n');
    std::fs::write(&path, roff)?;
    Ok(path)
}
