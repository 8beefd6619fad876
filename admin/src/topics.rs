//! `nearby-admin topics create`: creates the system's topics with the partitions and retention
//! given by flags. Safe to repeat: an existing topic is reported and left unchanged.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use nearby_common::StackArgs;
use nearby_common::kafka::{self, TopicOutcome, TopicSpec};

/// How long to wait for the first broker answer before saying it is unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Topic subcommands.
#[derive(Debug, Subcommand)]
pub enum TopicsAction {
    /// Create the location, friendship-event and (for each `--gateway`) delivery topics.
    Create(CreateArgs),
}

/// Sizes and retention of the topics to create.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Partitions of the location topic: the most fanout or sink instances that can share it.
    #[arg(long, env = "NEARBY_LOCATION_PARTITIONS", default_value_t = 12, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub location_partitions: i32,

    /// How long location records are kept (for replay), e.g. `7d`, `36h`.
    #[arg(long, env = "NEARBY_LOCATION_RETENTION", default_value = "7d", value_parser = humantime::parse_duration)]
    pub location_retention: Duration,

    /// Partitions of the friendship-events topic.
    #[arg(long, env = "NEARBY_FRIENDSHIP_PARTITIONS", default_value_t = 12, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub friendship_partitions: i32,

    /// How long friendship events are kept.
    #[arg(long, env = "NEARBY_FRIENDSHIP_RETENTION", default_value = "7d", value_parser = humantime::parse_duration)]
    pub friendship_retention: Duration,

    /// Also create the delivery topic of this gateway id (repeatable).
    #[arg(long = "gateway", value_name = "GATEWAY_ID")]
    pub gateways: Vec<String>,

    /// How long deliveries are kept: short, they are only useful live.
    #[arg(long, env = "NEARBY_DELIVERY_RETENTION", default_value = "1h", value_parser = humantime::parse_duration)]
    pub delivery_retention: Duration,

    /// Replication factor of every topic (1 on a single-broker stack).
    #[arg(long, env = "NEARBY_REPLICATION_FACTOR", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=32))]
    pub replication_factor: i32,
}

/// Runs a topics subcommand.
pub async fn run(
    stack: &StackArgs,
    action: TopicsAction,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match action {
        TopicsAction::Create(args) => create(stack, &args, out).await,
    }
}

/// The specs `create` asks for.
pub fn specs(stack: &StackArgs, args: &CreateArgs) -> anyhow::Result<Vec<TopicSpec>> {
    let topics = stack.topics()?;
    let spec = |name, partitions, retention| TopicSpec {
        name,
        partitions,
        replication: args.replication_factor,
        retention,
    };
    let mut specs = vec![
        spec(
            topics.location_updates(),
            args.location_partitions,
            args.location_retention,
        ),
        spec(
            topics.friendship_events(),
            args.friendship_partitions,
            args.friendship_retention,
        ),
    ];
    for gateway in &args.gateways {
        specs.push(spec(
            topics.deliveries(gateway)?,
            // One: fanout writes partition 0 only, so the gateway reads in fanout's order.
            1,
            args.delivery_retention,
        ));
    }
    Ok(specs)
}

async fn create(stack: &StackArgs, args: &CreateArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let specs = specs(stack, args)?;
    let admin = kafka::admin_client(&stack.kafka_brokers)?;
    kafka::probe(&admin, &stack.kafka_brokers, PROBE_TIMEOUT)?;
    let outcomes = kafka::ensure_topics(&admin, &specs)
        .await
        .with_context(|| format!("creating topics on {}", stack.kafka_brokers))?;
    for outcome in outcomes {
        writeln!(out, "{}", describe(&outcome))?;
    }
    Ok(())
}

/// One line per topic: what happened, and any difference from what was asked.
fn describe(outcome: &TopicOutcome) -> String {
    match outcome {
        TopicOutcome::Created(s) => format!(
            "created {} partitions={} replication={} retention.ms={}",
            s.name,
            s.partitions,
            s.replication,
            s.retention.as_millis()
        ),
        TopicOutcome::Exists {
            asked,
            partitions,
            retention_ms,
        } => {
            let retention = retention_ms.map_or_else(|| "?".to_owned(), |ms| ms.to_string());
            let mut line = format!(
                "exists {} partitions={partitions} retention.ms={retention}",
                asked.name
            );
            if *partitions != asked.partitions {
                line.push_str(&format!(
                    " (asked partitions={}: left unchanged, adding partitions moves keys)",
                    asked.partitions
                ));
            }
            if *retention_ms != i64::try_from(asked.retention.as_millis()).ok() {
                line.push_str(&format!(
                    " (asked retention.ms={}: left unchanged)",
                    asked.retention.as_millis()
                ));
            }
            line
        }
    }
}
