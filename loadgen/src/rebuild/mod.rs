//! `nearby-loadgen rebuild`: how long a NEW fanout instance takes to rebuild its table of every
//! active user's latest position from the location topic, per million active users, and what it
//! costs in CPU and memory.
//!
//! Setup (not measured): a fresh topic prefix (the location topic and the friendship-events
//! topic), a fresh CQL keyspace with the user store's schema, and N users' position reports
//! produced as the gateway's ingest produces them (the `LocationEvent` Avro record, keyed by the
//! user id, murmur2 partitioner, current timestamps, the gateway id of a socket report). The
//! producing runs in a child process (`nearby-loadgen rebuild` again), so its memory and CPU are
//! not this process's.
//!
//! Measured: a real `FanoutService` in this process, from `build` until its status says ready
//! (the table reader reached the end the topic had at start, and whatever else readiness asks),
//! then the table's size is checked against N. Printed: seconds, users/s, seconds per million
//! active users, this process's CPU seconds (/proc/self/stat) and its `VmRSS` growth per user,
//! and the CPU seconds of the local stack's Kafka, Cassandra and Redis meanwhile (found by name).
//! The users have no friends and no profiles in the fresh keyspace: each still costs the
//! user-store reads of a user becoming active (friend list and profile, of empty partitions),
//! but no deliveries.
//! Everything the run created (topics, the fanout group, the keyspace, the cache keys) is
//! deleted at the end.
//!
//! With `--friends K` the users get profiles and friends (a ring: user i befriends the next
//! K/2 ids) and their sockets open on the reports' gateway first, so fanout has deliveries to
//! make; with `--backlog-per-user R`, once the instance is ready and owns every partition, R
//! more reports per user are produced at once and the instance's CPU per report and per
//! delivery is measured while it works through them — fanout at saturation, deliveries
//! produced (and acked) and Redis written.
//!
//! ```text
//! eval "$(stack/stack.sh env)"
//! nearby-loadgen rebuild --users 1000000
//! nearby-loadgen rebuild --users 10000 --friends 50 --backlog-per-user 100   # 1 M-report backlog
//! ```
//!
//! Extra fanout flags go through `--fanout`, e.g. `--fanout=--graph-loads=64`; `RUST_LOG` sets
//! the log filter (default: warnings and the fanout's own lines).

use nearby_common::stage::Stage;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Parser};
use nearby_common::kafka::{self, TopicSpec};
use nearby_common::procfs;
use nearby_common::redis_store::LocationCache;
use nearby_common::stack::StackArgs;
use nearby_fanout::service::{FanoutService, FanoutServiceConfig};
use rdkafka::admin::AdminOptions;
use rdkafka::types::RDKafkaErrorCode;
use tokio_util::sync::CancellationToken;

use crate::net;

mod backlog;
mod produce;

use backlog::{backlog, befriend};
use produce::{produce, producing_child};

/// The flags of `rebuild`. Of the stack's addresses it uses Kafka's, the CQL store's and
/// Redis's (the keyspace and topic prefix are its own, fresh ones).
#[derive(Debug, Args)]
#[command(
    mut_arg("cql_keyspace", |a| a.hide(true)),
    mut_arg("topic_prefix", |a| a.hide(true)),
    mut_arg("startup_timeout", |a| a.hide(true))
)]
pub struct RebuildArgs {
    /// Active users (each with a position within the TTL).
    #[arg(long, default_value_t = 200_000)]
    users: u64,
    /// Position reports per user (phones report every ~30 s: a 10-minute window holds ~20).
    #[arg(long, default_value_t = 1)]
    reports_per_user: u64,
    /// Partitions of the location topic.
    #[arg(long, default_value_t = 12)]
    partitions: i32,
    /// The gateway id the reports carry (as reports over a socket do).
    #[arg(long, default_value = "gw-rebuild")]
    gateway: String,
    /// The fanout's sweep interval: how often it re-evaluates readiness (the timing's grain).
    #[arg(long, default_value = "100ms")]
    sweep_interval: String,
    /// Give up when the instance is not ready after this many seconds.
    #[arg(long, default_value_t = 1_800)]
    timeout_secs: u64,
    /// Friends per user (even; 0: none): user i befriends the next `friends / 2` ids (a ring),
    /// written straight into the store with profiles for everyone, before anything is
    /// produced. With positions spread over the 30 km box, about a fifth of them are within
    /// 5 miles of a report.
    #[arg(long, default_value_t = 0)]
    friends: u64,
    /// After the instance is ready (owning every partition), this many more reports per user
    /// are produced at once, as fast as the producer goes, and the instance's CPU per report
    /// and per delivery is measured while it works through them: fanout at saturation, with
    /// its deliveries produced and its Redis writes done.
    #[arg(long, default_value_t = 0)]
    backlog_per_user: u64,
    /// An extra flag for the fanout service (repeatable), e.g. `--fanout=--graph-loads=64`.
    #[arg(long = "fanout", allow_hyphen_values = true)]
    fanout_args: Vec<String>,
    /// Where Kafka, the CQL store and Redis are.
    #[command(flatten)]
    stack: StackArgs,
    /// Internal: produce the users' reports into this topic and exit (the child process).
    #[arg(long, hide = true)]
    produce_into: Option<String>,
    /// Internal: each user's socket opens (a `Connected` event) before its reports, so fanout
    /// routes deliveries to them (the child process).
    #[arg(long, hide = true)]
    connect_first: bool,
    /// Internal: the first user id (the child process).
    #[arg(long, hide = true, default_value_t = 0)]
    user_base: i64,
}

/// What one run created, so that all of it can be deleted.
#[derive(Debug)]
struct Run {
    prefix: String,
    location_topic: String,
    friendship_topic: String,
    keyspace: String,
    group: String,
    user_base: i64,
}

/// Runs `rebuild` (or, in the child process, produces the users' reports) and prints what it
/// measured.
pub fn run(args: &RebuildArgs) -> anyhow::Result<()> {
    if let Some(topic) = &args.produce_into {
        return produce(args, topic);
    }
    // The service's own lines (and every warning), without the driver's chatter.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,nearby_fanout=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    tokio::runtime::Runtime::new()?.block_on(measure_and_clean(args))
}

/// Measures, then deletes what the run created whether or not it succeeded.
async fn measure_and_clean(args: &RebuildArgs) -> anyhow::Result<()> {
    let suffix = &net::unique("")[..12];
    let prefix = format!("rebuild.{suffix}");
    let topics = nearby_common::Topics::new(&prefix)?;
    let run = Run {
        location_topic: topics.location_updates(),
        friendship_topic: topics.friendship_events(),
        keyspace: format!("rebuild_{suffix}"),
        group: format!("rebuild-fanout-{suffix}"),
        user_base: net::user_base(),
        prefix,
    };
    let result = measure(args, &run).await;
    if let Err(e) = clean(args, &run).await {
        eprintln!("cleanup failed: {e:#}");
    }
    result
}

/// Sets up, then times a new instance from `build` to ready, and prints the figures.
#[allow(clippy::cast_precision_loss, clippy::too_many_lines)]
async fn measure(args: &RebuildArgs, run: &Run) -> anyhow::Result<()> {
    let users = args.users;
    // With friends, each user's socket opens first (one more event each).
    let events = users * (args.reports_per_user + u64::from(args.friends > 0));
    println!(
        "rebuild: {users} users, {} report(s) each ({events} events), {} partitions, prefix {}",
        args.reports_per_user, args.partitions, run.prefix
    );

    // Setup: topics, keyspace, the users' reports.
    let started = Instant::now();
    let admin = kafka::admin_client(&args.stack.kafka_brokers)?;
    let retention = Duration::from_secs(3600);
    kafka::ensure_topics(
        &admin,
        &[
            TopicSpec {
                name: run.location_topic.clone(),
                partitions: args.partitions,
                replication: 1,
                retention,
            },
            TopicSpec {
                name: run.friendship_topic.clone(),
                partitions: args.partitions,
                replication: 1,
                retention,
            },
            // Where the deliveries go (every report carries this gateway id).
            TopicSpec {
                name: nearby_common::Topics::new(&run.prefix)?.deliveries(&args.gateway)?,
                partitions: 1,
                replication: 1,
                retention,
            },
        ],
    )
    .await?;
    let session = nearby_common::cql::connect(&args.stack.cql_nodes).await?;
    nearby_common::users::create_schema(&session, &run.keyspace, 1).await?;
    drop(session);
    if args.friends > 0 {
        befriend(args, run).await?;
    }
    println!(
        "  setup: topics and keyspace in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let status = producing_child(args, run, args.reports_per_user, args.friends > 0)?
        .wait()
        .context("waiting for the producing child")?;
    anyhow::ensure!(status.success(), "producing failed: {status}");
    let produce_secs = started.elapsed().as_secs_f64();
    println!(
        "  setup: {events} events produced in {produce_secs:.1} s ({:.0}/s, a child process)",
        events as f64 / produce_secs
    );

    // Measured: a new instance, from build to ready.
    let mut fanout_args = vec![
        "nearby-fanout".to_owned(),
        format!("--topic-prefix={}", run.prefix),
        format!("--cql-keyspace={}", run.keyspace),
        format!("--group-id={}", run.group),
        format!("--sweep-interval={}", args.sweep_interval),
        format!("--kafka-brokers={}", args.stack.kafka_brokers),
        format!("--cql-nodes={}", args.stack.cql_nodes.join(",")),
        format!("--redis-url={}", args.stack.redis_url),
    ];
    fanout_args.extend(args.fanout_args.iter().cloned());
    let config = FanoutServiceConfig::try_parse_from(fanout_args)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let admin_addr = listener.local_addr()?;

    let rss_before = procfs::vm_kib("self", "VmRSS")?;
    let cpu_before = procfs::cpu_secs("self").unwrap_or(0.0);
    let ticks_before = procfs::machine_ticks();
    let stack = procfs::stack_pids();
    let stack_before: Vec<f64> = stack
        .iter()
        .map(|(_, pid)| procfs::cpu_secs(&pid.to_string()).unwrap_or(0.0))
        .collect();
    let started = Instant::now();
    let service = FanoutService::build(config).await?;
    let built_secs = started.elapsed().as_secs_f64();
    let status = service.status.clone();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(service.run(
        nearby_common::stage::Listeners::admin(listener),
        shutdown.clone().into(),
    ));

    let deadline = started + Duration::from_secs(args.timeout_secs);
    let mut applied_secs = None;
    let mut last_progress = Instant::now();
    let ready_secs = loop {
        if status.ready.load(Ordering::Acquire) {
            break started.elapsed().as_secs_f64();
        }
        let applied = status.events.load(Ordering::Relaxed);
        if applied_secs.is_none() && applied >= events {
            applied_secs = Some(started.elapsed().as_secs_f64());
        }
        if task.is_finished() {
            shutdown.cancel();
            task.await??;
            bail!("the fanout service stopped before it was ready");
        }
        if Instant::now() >= deadline {
            shutdown.cancel();
            let _ = task.await;
            bail!(
                "not ready after {} s ({applied} of {events} events applied)",
                args.timeout_secs
            );
        }
        if last_progress.elapsed() >= Duration::from_secs(10) {
            eprintln!(
                "  ... {:.0} s: {applied} events applied, {} users in the table",
                started.elapsed().as_secs_f64(),
                status.table_users.load(Ordering::Relaxed)
            );
            last_progress = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let cpu_secs = procfs::cpu_secs("self").unwrap_or(0.0) - cpu_before;
    let busy = procfs::busy_share(ticks_before);
    let stack_cpu: Vec<String> = stack
        .iter()
        .zip(&stack_before)
        .map(|((name, pid), before)| {
            let after = procfs::cpu_secs(&pid.to_string()).unwrap_or(*before);
            format!("{name} {:.2} s", after - before)
        })
        .collect();
    let rss_after = procfs::vm_kib("self", "VmRSS")?;
    let applied_secs = applied_secs.unwrap_or(ready_secs);
    let table_users = status.table_users.load(Ordering::Relaxed);
    let applied = status.events.load(Ordering::Relaxed);
    let poison = status.poison.load(Ordering::Relaxed);
    let graph_errors = status.graph_errors.load(Ordering::Relaxed);
    let readyz = nearby_common::http::request(
        admin_addr,
        "GET",
        "/readyz",
        None,
        "",
        Duration::from_secs(30),
    )
    .await
    .map_or_else(
        |e| format!("unread: {e}"),
        |(code, body)| format!("{code} {body}"),
    );

    let backlog = if args.backlog_per_user > 0 {
        Some(backlog(args, run, &status).await?)
    } else {
        None
    };

    let stopping = Instant::now();
    shutdown.cancel();
    task.await??;
    let stop_secs = stopping.elapsed().as_secs_f64();

    let per_million = ready_secs * 1e6 / users as f64;
    let rss_growth_kib = rss_after.saturating_sub(rss_before);
    println!("  build (CQL, schema check, Redis): {built_secs:.2} s");
    println!("  every event applied:              {applied_secs:.2} s after start");
    println!("  ready:                            {ready_secs:.2} s after start");
    println!("  /readyz:                          {}", readyz.trim());
    println!(
        "  table: {table_users} users (expected {users}); {applied} events applied, {poison} poison, {graph_errors} friend-list errors"
    );
    println!(
        "  => {users} users in {ready_secs:.2} s: {:.0} users/s, {:.0} events/s, {per_million:.1} s per million active users",
        users as f64 / ready_secs,
        applied as f64 / ready_secs
    );
    println!(
        "  CPU of this process (the fanout): {cpu_secs:.2} s ({:.1} s per million users){}",
        cpu_secs * 1e6 / users as f64,
        busy.map_or(String::new(), |b| format!(
            "; machine {:.0} % busy (all cores)",
            b * 100.0
        ))
    );
    if !stack_cpu.is_empty() {
        println!("  CPU of the stack meanwhile: {}", stack_cpu.join(", "));
    }
    println!(
        "  VmRSS: {} MiB before build, {} MiB at ready: +{} MiB, {:.0} bytes per user",
        rss_before / 1024,
        rss_after / 1024,
        rss_growth_kib / 1024,
        rss_growth_kib as f64 * 1024.0 / users as f64
    );
    if let Some(b) = backlog {
        b.print();
    }
    println!("  stopped in {stop_secs:.2} s");
    if table_users != users {
        bail!("the table holds {table_users} users, not {users}");
    }
    Ok(())
}

/// Deletes the topics, the fanout group's offsets, the cache keys and the keyspace of `run`.
async fn clean(args: &RebuildArgs, run: &Run) -> anyhow::Result<()> {
    let admin = kafka::admin_client(&args.stack.kafka_brokers)?;
    kafka::delete_topics(&admin, &[&run.location_topic, &run.friendship_topic]).await?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let groups = admin.delete_groups(&[&run.group], &opts).await?;
    for g in groups {
        if let Err((group, code)) = g {
            // A group that never committed does not exist: nothing to delete.
            if code != RDKafkaErrorCode::GroupIdNotFound {
                eprintln!("  group {group} not deleted: {code}");
            }
        }
    }

    // The cache writes the instance made (if it owned partitions while it rebuilt).
    let cache = LocationCache::new(&run.prefix, 600);
    let mut redis = nearby_common::redis_store::connect(&args.stack.redis_url).await?;
    let mut removed = 0_i64;
    let ids: Vec<i64> = (0..i64::try_from(args.users)?)
        .map(|i| run.user_base + i)
        .collect();
    for chunk in ids.chunks(1_000) {
        let keys: Vec<String> = chunk.iter().map(|u| cache.key(*u)).collect();
        removed += redis::cmd("UNLINK")
            .arg(&keys)
            .query_async::<i64>(&mut redis)
            .await?;
    }

    let session = nearby_common::cql::connect(&args.stack.cql_nodes).await?;
    session
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {}", run.keyspace), ())
        .await?;
    println!(
        "  cleaned up: topics, group, {removed} cache entries the instance had written, keyspace"
    );
    Ok(())
}
