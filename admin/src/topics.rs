//! `nearby-admin topics create`: creates the system's topics with the partitions and retention
//! given by flags. Safe to repeat: an existing topic is reported and left unchanged.
//!
//! `nearby-admin topics grow`: adds partitions to the location topic, the one deliberate way
//! its partition count changes. It prints the plan and what follows from it, and changes
//! nothing without `--yes`.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use nearby_common::StackArgs;
use nearby_common::kafka::{self, TopicOutcome, TopicSpec};
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
use rdkafka::client::DefaultClientContext;

/// How long one metadata request may take (a broker that does not answer is asked again
/// until `NEARBY_STARTUP_TIMEOUT`).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Topic subcommands.
#[derive(Debug, Subcommand)]
pub enum TopicsAction {
    /// Create the location, friendship-event and (for each `--gateway`) delivery topics.
    Create(CreateArgs),
    /// Add partitions to the location topic (moves keys: read the plan first, then `--yes`).
    Grow(GrowArgs),
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

/// `topics grow`.
#[derive(Debug, Args)]
pub struct GrowArgs {
    /// The location topic's partition count after the change: more than it has now
    /// (partitions can be added, never removed). Deliberately not read from the environment.
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub location_partitions: i32,

    /// Add the partitions (without it, only the plan is printed).
    #[arg(long)]
    pub yes: bool,
}

/// Runs a topics subcommand.
pub async fn run(
    stack: &StackArgs,
    action: TopicsAction,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match action {
        TopicsAction::Create(args) => create(stack, &args, out).await,
        TopicsAction::Grow(args) => grow(stack, &args, out).await,
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

/// Creates what is missing, then returns only once every partition of every topic has a
/// leader: a stage started right after finds them usable. A broker still starting is waited
/// for (`NEARBY_STARTUP_TIMEOUT`).
async fn create(stack: &StackArgs, args: &CreateArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let specs = specs(stack, args)?;
    let startup = stack.startup();
    let admin = kafka::admin_client(&stack.kafka_brokers)?;
    startup
        .retry(
            &format!("a Kafka broker at {}", stack.kafka_brokers),
            || async { kafka::probe(&admin, &stack.kafka_brokers, PROBE_TIMEOUT) },
        )
        .await?;
    let outcomes = startup
        .retry("the broker to create the topics", || {
            kafka::ensure_topics(&admin, &specs)
        })
        .await
        .with_context(|| format!("creating topics on {}", stack.kafka_brokers))?;
    for spec in &specs {
        startup.topic(&stack.kafka_brokers, &spec.name).await?;
    }
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

/// How long `grow` waits for the broker's metadata to show the new count.
const GROW_SETTLE: Duration = Duration::from_secs(30);

async fn grow(stack: &StackArgs, args: &GrowArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let topic = stack.topics()?.location_updates();
    let admin = kafka::admin_client(&stack.kafka_brokers)?;
    kafka::probe(&admin, &stack.kafka_brokers, PROBE_TIMEOUT)?;
    let Some(current) = partitions_now(&admin, &topic)? else {
        bail!(
            "topic {topic} does not exist on {}: create it with `nearby-admin topics create`",
            stack.kafka_brokers
        );
    };
    let wanted = args.location_partitions;
    if wanted <= current {
        bail!(
            "refused: {topic} has {current} partitions and --location-partitions {wanted} is not \
             more; partitions can only be added (Kafka never removes them), so ask for more than \
             {current}"
        );
    }
    writeln!(out, "{}", grow_plan(&topic, current, wanted))?;
    if !args.yes {
        writeln!(
            out,
            "nothing changed: run again with --yes to add the partitions"
        )?;
        return Ok(());
    }
    let opts = AdminOptions::new().operation_timeout(Some(GROW_SETTLE));
    let wanted_count = usize::try_from(wanted).context("partition count")?;
    let results = admin
        .create_partitions(&[NewPartitions::new(&topic, wanted_count)], &opts)
        .await
        .with_context(|| format!("adding partitions to {topic}"))?;
    for result in results {
        if let Err((t, code)) = result {
            bail!("adding partitions to {t}: {code}");
        }
    }
    // The controller has made them; wait until the metadata every client reads shows them.
    let deadline = tokio::time::Instant::now() + GROW_SETTLE;
    loop {
        let now = partitions_now(&admin, &topic)?.unwrap_or(0);
        if now >= wanted {
            writeln!(out, "grew {topic}: {current} -> {now} partitions")?;
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "{topic}: the partitions were asked for, but the metadata still shows {now} after \
                 {}s: check again with `topics create` (which reports the count)",
                GROW_SETTLE.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The partition count of `topic`, `None` if it does not exist. Reads the whole cluster's
/// metadata: asking for the one topic could create it (the broker's auto-creation).
fn partitions_now(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
) -> anyhow::Result<Option<i32>> {
    let metadata = admin
        .inner()
        .fetch_metadata(None, PROBE_TIMEOUT)
        .context("reading the cluster's metadata")?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| i32::try_from(t.partitions().len()).unwrap_or(i32::MAX)))
}

/// The share of user ids whose partition changes from `from` to `to` partitions, measured on
/// the ids 1..=100,000 with the producers' partitioner.
pub fn moved_share(from: i32, to: i32) -> f64 {
    const SAMPLE: i64 = 100_000;
    let moved = (1..=SAMPLE)
        .filter(|&u| {
            nearby_common::partition::partition_of_user(u, from)
                != nearby_common::partition::partition_of_user(u, to)
        })
        .count();
    moved as f64 / SAMPLE as f64
}

/// What `grow` will do and what follows from it.
pub fn grow_plan(topic: &str, current: i32, wanted: i32) -> String {
    let moved = moved_share(current, wanted) * 100.0;
    format!(
        "plan: {topic}: {current} -> {wanted} partitions (adds partitions {current}..={last})
what follows:
  - keys move: a user's partition becomes murmur2(user id) % {wanted}; for about {moved:.0}% of \
users their later reports go to another partition than their earlier ones
  - Kafka orders records only within a partition: across the move a user's reports are kept in \
order only by their timestamps (fanout keeps each user's newest ts, an older report read later \
changes nothing; history rows are keyed by ts)
  - gateways' producers and fanout instances pick the new partitions up within ~10 s (metadata \
is refreshed every 10 s; fanout checks the count every NEARBY_PARTITION_CHECK and reads the new \
partitions from their start)
  - the history sink's group rebalances to share the new partitions (read from their start); \
other groups on the topic (analytics) rebalance too
  - partitions cannot be removed again",
        last = wanted - 1,
    )
}
