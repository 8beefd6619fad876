//! `nearby-admin token --user 42`: mints a development token (HS256 with the configured secret,
//! or RS256 with a private key file) and prints it.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use nearby_common::auth;

/// What token to mint.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The user id (`sub`).
    #[arg(long, value_parser = parse_user)]
    pub user: i64,

    /// How long the token is valid, e.g. `1h` (gateways refuse tokens valid for longer than
    /// their `NEARBY_JWT_MAX_LIFETIME`, 24 h by default).
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,

    /// HS256 secret (the gateway's `NEARBY_JWT_SECRET`).
    #[arg(long, env = "NEARBY_JWT_SECRET", default_value = auth::DEV_SECRET, hide_env_values = true)]
    pub jwt_secret: String,

    /// Sign RS256 with this PEM private key instead of HS256.
    #[arg(long)]
    pub private_key_file: Option<std::path::PathBuf>,
}

fn parse_user(s: &str) -> Result<i64, String> {
    nearby_common::ids::parse_user_id(s)
        .ok_or_else(|| format!("{s:?} is not a user id (a decimal number from 0 to 2^63-1)"))
}

/// Prints the token.
pub fn run(args: &TokenArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let token = match &args.private_key_file {
        Some(path) => {
            let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            auth::mint_rs256_pem(&pem, args.user, args.ttl)
                .with_context(|| format!("{} is not an RSA private key in PEM", path.display()))?
        }
        None => auth::mint_hs256(args.jwt_secret.as_bytes(), args.user, args.ttl),
    };
    writeln!(out, "{token}")?;
    Ok(())
}
