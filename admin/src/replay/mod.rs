//! `nearby-admin replay ...`: read the location topic again from a time. `group` moves any
//! consumer group's committed offsets, `history` does so for the history sink, `cache`
//! rebuilds Redis's latest-location cache, `fanout` explains how fanout replays by itself.
//! Every command prints what it will do and changes nothing without `--yes`.

use std::io::Write;
use std::time::Duration;

use clap::{Args, Subcommand};
use nearby_common::{RulesArgs, StackArgs};

pub mod cache;
pub mod group;
pub mod time;

/// The history sink's consumer group unless told otherwise (its `--group-id` default).
pub const HISTORY_GROUP: &str = "nearby-history-sink";

/// Replay subcommands.
#[derive(Debug, Subcommand)]
pub enum ReplayAction {
    /// Move a consumer group's committed offsets on a topic to the first record at or after a
    /// time (the group must have no active member).
    Group(GroupArgs),
    /// Write location history again from a time: `replay group` on the location topic for
    /// the history sink's group (stop the sinks first, start them after).
    History(HistoryArgs),
    /// Rebuild Redis's latest-location cache from the last TTL of the location topic.
    Cache(CacheArgs),
    /// How fanout replays (by itself, on every start) and what a restart redoes.
    Fanout(FanoutArgs),
}

/// `replay group`.
#[derive(Debug, Args)]
pub struct GroupArgs {
    /// The consumer group whose offsets move.
    #[arg(long)]
    pub group: String,

    /// The topic (full name, e.g. `nearby.location-updates`).
    #[arg(long)]
    pub topic: String,

    /// From when: RFC 3339 (`2026-11-25T08:00:00Z`), epoch ms, or `now-2h`.
    #[arg(long, value_parser = time::parse)]
    pub from: i64,

    /// Commit the offsets (without it, only the plan is printed).
    #[arg(long)]
    pub yes: bool,

    /// With `--yes`: wait up to this long for the group's members to leave before refusing
    /// (a member with a static instance id stays until its session times out), e.g. `30s`.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
}

/// `replay history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// From when: RFC 3339 (`2026-11-25T08:00:00Z`), epoch ms, or `now-2h`.
    #[arg(long, value_parser = time::parse)]
    pub from: i64,

    /// The history sink's consumer group (the sink's `--group-id`).
    #[arg(long, env = "NEARBY_HISTORY_GROUP", default_value = HISTORY_GROUP)]
    pub group: String,

    /// Commit the offsets (without it, only the plan is printed).
    #[arg(long)]
    pub yes: bool,

    /// With `--yes`: wait up to this long for the group's members to leave before refusing
    /// (a member with a static instance id stays until its session times out), e.g. `30s`.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
}

/// `replay cache`.
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// The rules (the TTL decides how far back to read and when each entry expires).
    #[command(flatten)]
    pub rules: RulesArgs,

    /// Read the topic and write the cache (without it, only the plan is printed).
    #[arg(long)]
    pub yes: bool,
}

/// `replay fanout`.
#[derive(Debug, Args)]
pub struct FanoutArgs {
    /// The rules (the TTL is how far back fanout reads on start).
    #[command(flatten)]
    pub rules: RulesArgs,

    /// Fanout's consumer group (its `--group-id`).
    #[arg(long, env = "NEARBY_FANOUT_GROUP", default_value = "nearby-fanout")]
    pub group: String,
}

/// Runs a replay subcommand.
pub async fn run(
    stack: &StackArgs,
    action: ReplayAction,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match action {
        ReplayAction::Group(a) => group::run(
            &stack.kafka_brokers,
            &a.group,
            &a.topic,
            a.from,
            a.yes,
            a.wait,
            out,
        ),
        ReplayAction::History(a) => history(stack, &a, out),
        ReplayAction::Cache(a) => {
            a.rules.validate().map_err(anyhow::Error::msg)?;
            cache::run(stack, a.rules.location_ttl, a.yes, out).await?;
            Ok(())
        }
        ReplayAction::Fanout(a) => {
            a.rules.validate().map_err(anyhow::Error::msg)?;
            explain_fanout(stack, &a, out)
        }
    }
}

/// `replay history`: the generic replay on the location topic, with the steps around it.
fn history(stack: &StackArgs, args: &HistoryArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let topic = stack.topics()?.location_updates();
    writeln!(
        out,
        "replay history: the history sink (group {}) reads {topic} again from {} and writes \
         every position since then to location_history again. Rows are keyed by (user_id, \
         day, ts), so a rewritten row is the same row: no duplicates.",
        args.group,
        time::format(args.from)
    )?;
    writeln!(
        out,
        "steps: 1. stop every history-sink instance; 2. run this with --yes (and --wait 30s \
         if the sinks have static instance ids); 3. start the sinks again: they resume from \
         the offsets below."
    )?;
    group::run(
        &stack.kafka_brokers,
        &args.group,
        &topic,
        args.from,
        args.yes,
        args.wait,
        out,
    )?;
    if args.yes {
        writeln!(
            out,
            "now start the history sinks: they rewrite the rows since {}",
            time::format(args.from)
        )?;
    }
    Ok(())
}

/// `replay fanout`: nothing to move; what restarting the instances does and does not redo.
fn explain_fanout(
    stack: &StackArgs,
    args: &FanoutArgs,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let topic = stack.topics()?.location_updates();
    let ttl = humantime::format_duration(args.rules.location_ttl);
    write!(
        out,
        "\
replay fanout: there is nothing to move; fanout replays by itself.
Every fanout instance rebuilds its table on start: it reads every partition of {topic}
from the offsets of now - {ttl} (the TTL) with a reader of its own, then follows new records.
It never resumes from its group's ({group}) committed offsets: they only report progress.
To re-drive fanout, restart its instances, one at a time so the others keep serving; each is
back when its admin port's /readyz answers 200 (its table has reached the end the topic had
when it started).
What a restart redoes:
  - the table of active users, their positions and gateways, from the last {ttl} of records;
  - each user's friend list, read afresh from the user store when they become active;
  - for the partitions the group assigns it while it catches up, cache writes and possibly
    deliveries of positions already delivered (clients keep the larger updated_at, so a
    position sent again changes nothing).
What it does not redo:
  - deliveries already sent are not re-sent as such; for those missed while no instance owned
    a partition, the current state of each user who reported since the group's last commit
    there is sent again when an instance takes it over, and each active user's next report
    (about every 30 s) brings every friend up to date;
  - nothing older than now - {ttl}: such a position makes nobody active;
  - location history: that is `nearby-admin replay history`;
  - a lost Redis cache comes back only for the records it reads on partitions it owns;
    `nearby-admin replay cache` rebuilds all of it, with no restart.
",
        group = args.group,
    )?;
    Ok(())
}
