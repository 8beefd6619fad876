//! The admin tool's commands. Each subcommand lives in a module named for what it manages.

use std::io::Write;

use clap::{Parser, Subcommand};
use nearby_common::StackArgs;

pub mod drain;
pub mod lag;
pub mod replay;
pub mod schema;
pub mod token;
pub mod topics;

/// Operator tasks for Nearby Friends.
#[derive(Debug, Parser)]
#[command(name = "nearby-admin", version, about)]
pub struct Cli {
    /// Where the stack is.
    #[command(flatten)]
    pub stack: StackArgs,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The admin subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Take a gateway out of service: its clients get `reconnect` spread over a window, then it
    /// stops (`POST /drain` on its admin port); `--wait` follows it until it has stopped.
    Drain(drain::DrainArgs),
    /// How far the consumer groups are behind on the location topic, per partition.
    Lag(lag::LagArgs),
    /// Read the location topic again from a time: history, the Redis cache, any group.
    Replay {
        /// What to replay.
        #[command(subcommand)]
        action: replay::ReplayAction,
    },
    /// The CQL keyspace and tables.
    Schema {
        /// What to do with them.
        #[command(subcommand)]
        action: schema::SchemaAction,
    },
    /// Mint a development token for a user.
    Token(token::TokenArgs),
    /// Kafka topics of the system.
    Topics {
        /// What to do with them.
        #[command(subcommand)]
        action: topics::TopicsAction,
    },
}

/// Runs one command, writing its report to `out`.
pub async fn run(cli: Cli, out: &mut impl Write) -> anyhow::Result<()> {
    match cli.command {
        Command::Drain(args) => drain::run(&args, out).await,
        Command::Lag(args) => lag::run(&cli.stack, &args, out).await,
        Command::Replay { action } => replay::run(&cli.stack, action, out).await,
        Command::Schema { action } => schema::run(&cli.stack, action, out).await,
        Command::Token(args) => token::run(&args, out),
        Command::Topics { action } => topics::run(&cli.stack, action, out).await,
    }
}
