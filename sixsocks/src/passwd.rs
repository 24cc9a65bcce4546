//! `sixsocks passwd`: add a user to a users file or change a password.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use clap::Args;
use sixsocks_proto::Password;

#[derive(Args, Debug)]
pub struct PasswdArgs {
    /// The users file to update (created if missing, mode 0600).
    #[arg(long, value_name = "FILE", visible_alias = "users")]
    pub users_file: PathBuf,

    /// The user name (1 to 255 bytes, no ':').
    pub username: String,
}

/// Reads the password from the terminal (twice) or, when standard input is
/// not a terminal, from its first line.
pub fn run(args: PasswdArgs) -> Result<(), Box<dyn std::error::Error>> {
    let password = if std::io::stdin().is_terminal() {
        let a = rpassword::prompt_password(format!("password for {}: ", args.username))?;
        let b = rpassword::prompt_password("again: ")?;
        if a != b {
            return Err("the passwords differ".into());
        }
        a
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\n', '\r']).to_string()
    };
    sixsocks_server::auth::set_user(
        &args.users_file,
        &args.username,
        &Password::new(password.into_bytes()),
    )?;
    eprintln!(
        "sixsocks: {} updated for user {}",
        args.users_file.display(),
        args.username
    );
    Ok(())
}
