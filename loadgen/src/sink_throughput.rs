//! `nearby-loadgen sink-throughput`: the history sink's throughput against a baseline, in one
//! run on one machine: N rows written to `location_history` by (1) a plain loop of concurrent
//! prepared inserts with the same driver and the same concurrency, and (2) the sink reading the
//! same N records from a Kafka topic. Each writes into its own fresh keyspace of the running
//! Cassandra; after a discarded warm-up run, the baseline runs before and after the sink, so
//! drift shows.
//!
//! ```text
//! eval "$(stack/stack.sh env)"
//! nearby-loadgen sink-throughput --rows 100000
//! ```

use nearby_common::stage::Stage;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Parser};
use nearby_common::clock::now_ms;
use nearby_common::history::{HistoryRow, HistoryStore};
use nearby_common::procfs;
use nearby_common::stack::StackArgs;
use nearby_history_sink::{HistorySink, SinkConfig, SinkStatus};
use nearby_schemas::{LocationBody, LocationEvent, PositionReport};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::net::unique;

/// The flags of `sink-throughput`. Of the stack's addresses it uses Kafka's and the CQL
/// store's (the keyspaces and topic prefix are its own, fresh ones).
#[derive(Debug, Args)]
#[command(
    mut_arg("cql_keyspace", |a| a.hide(true)),
    mut_arg("redis_url", |a| a.hide(true)),
    mut_arg("topic_prefix", |a| a.hide(true)),
    mut_arg("startup_timeout", |a| a.hide(true))
)]
pub struct SinkThroughputArgs {
    /// Rows each contender writes.
    #[arg(long, default_value_t = 100_000)]
    rows: usize,
    /// Writes in flight at once, for both (the sink's --max-in-flight).
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Rows of a first, discarded baseline run that warms Cassandra up (its JIT, its memtables).
    #[arg(long, default_value_t = 50_000)]
    warmup_rows: usize,
    /// Partitions of the topic the sink reads.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Where Kafka and the CQL store are.
    #[command(flatten)]
    stack: StackArgs,
}

/// The `i`-th row of a contender: 10,000 users, one row a millisecond from `t0` on.
#[allow(clippy::cast_precision_loss)]
fn row(i: usize, t0: i64) -> HistoryRow {
    let n = i64::try_from(i).unwrap_or(i64::MAX);
    HistoryRow {
        user_id: 1_000_000 + n % 10_000,
        ts: t0 + n,
        lat: 37.0 + (i % 1000) as f64 / 1e4,
        lon: -122.0 + (i % 997) as f64 / 1e4,
        accuracy_m: Some(5.0),
        received_at: t0 + n,
    }
}

/// The baseline: `rows` rows by concurrent prepared inserts into a fresh keyspace; rows/s.
#[allow(clippy::cast_precision_loss)]
async fn baseline(
    nodes: &[String],
    rows: usize,
    concurrency: usize,
    t0: i64,
) -> anyhow::Result<f64> {
    let keyspace = unique("bench_base_");
    let session = nearby_common::cql::connect(nodes)
        .await
        .context("connecting to the CQL store")?;
    nearby_common::cql::create_keyspace(&session, &keyspace, 1)
        .await
        .with_context(|| format!("creating keyspace {keyspace}"))?;
    nearby_common::history::create_table(&session, &keyspace)
        .await
        .with_context(|| format!("creating the history table in {keyspace}"))?;
    let store = Arc::new(HistoryStore::new(session, &keyspace).await?);
    // A task per insert, at most `concurrency` at once: the fastest plain loop on a
    // multi-threaded runtime (one task polling all futures would use one core).
    let permits = Arc::new(Semaphore::new(concurrency));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(rows);
    for i in 0..rows {
        let permit = permits.clone().acquire_owned().await?;
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let failed = store.insert(&row(i, t0)).await.is_err();
            drop(permit);
            failed
        }));
    }
    let mut failures = 0;
    for t in tasks {
        failures += usize::from(t.await?);
    }
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(failures == 0, "{failures} baseline writes failed");
    Ok(rows as f64 / secs)
}

/// Waits, looking every `poll`, until the sink has written `rows` rows; a sink that stops
/// before ends the wait with its error.
async fn wait_for_rows(
    status: &SinkStatus,
    task: &mut JoinHandle<anyhow::Result<()>>,
    rows: u64,
    poll: Duration,
) -> anyhow::Result<()> {
    while status.rows.load(Ordering::Relaxed) < rows {
        if task.is_finished() {
            task.await??;
            anyhow::bail!("the sink stopped before it wrote {rows} rows");
        }
        tokio::time::sleep(poll).await;
    }
    Ok(())
}

/// This process's CPU µs per row since `cpu0` (CPU seconds read then), over `rows` rows.
#[allow(clippy::cast_precision_loss)]
fn per_row_us(cpu0: Option<f64>, rows: usize) -> String {
    procfs::cpu_secs("self")
        .zip(cpu0)
        .map_or("-".to_owned(), |(b, a)| {
            format!("{:.1}", (b - a) * 1e6 / rows.max(1) as f64)
        })
}

/// Produces the sink's input, runs the baseline, the sink and the baseline again, and prints
/// their rates and CPU per row.
#[allow(clippy::cast_precision_loss)]
pub async fn run(args: &SinkThroughputArgs) -> anyhow::Result<()> {
    let (brokers, nodes) = (&args.stack.kafka_brokers, &args.stack.cql_nodes);
    let t0 = now_ms() - 3_600_000;

    // The sink's input, produced up front so reading never waits for it.
    let prefix = unique("bench.");
    let topic = nearby_common::Topics::new(&prefix)?.location_updates();
    let admin = nearby_common::kafka::admin_client(brokers)?;
    nearby_common::kafka::ensure_topics(
        &admin,
        &[nearby_common::kafka::TopicSpec {
            name: topic.clone(),
            partitions: args.partitions,
            replication: 1,
            retention: Duration::from_secs(3600),
        }],
    )
    .await?;
    let producer: FutureProducer = nearby_common::kafka::producer_config(brokers)
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    for i in 0..args.rows {
        let r = row(i, t0);
        let event = LocationEvent {
            user_id: r.user_id,
            gateway_id: None,
            ts: r.ts,
            received_at: r.received_at,
            body: LocationBody::Position(PositionReport {
                lat: r.lat,
                lon: r.lon,
                accuracy_m: r.accuracy_m,
            }),
        };
        let payload = nearby_schemas::to_vec(&event)?;
        let key = nearby_common::ids::user_key(r.user_id);
        // Enqueued without waiting for the ack; flushed below.
        drop(producer.send_result(FutureRecord::to(&topic).key(&key).payload(&payload)));
    }
    producer.flush(Duration::from_secs(60))?;
    println!(
        "throughput: {} rows, {} in flight, {} partitions",
        args.rows, args.concurrency, args.partitions
    );

    if args.warmup_rows > 0 {
        let warm = baseline(nodes, args.warmup_rows, args.concurrency, t0).await?;
        println!("  warm-up (discarded):                          {warm:.0} rows/s");
    }
    let cpu0 = procfs::cpu_secs("self");
    let before = baseline(nodes, args.rows, args.concurrency, t0).await?;
    let base_cpu = per_row_us(cpu0, args.rows);
    println!(
        "  baseline (plain concurrent prepared inserts): {before:.0} rows/s, {base_cpu} µs CPU per row"
    );

    let keyspace = unique("bench_sink_");
    let config = SinkConfig::try_parse_from([
        "nearby-history-sink".to_owned(),
        format!("--topic-prefix={prefix}"),
        format!("--cql-keyspace={keyspace}"),
        format!("--group-id={}", unique("bench-sink-")),
        format!("--max-in-flight={}", args.concurrency),
        format!("--kafka-brokers={brokers}"),
        format!("--cql-nodes={}", nodes.join(",")),
    ])?;
    let shutdown = CancellationToken::new();
    let sink = HistorySink::build(config).await?;
    let status = sink.status.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mut task = tokio::spawn(sink.run(
        nearby_common::stage::Listeners::admin(listener),
        shutdown.clone().into(),
    ));
    // Timed from its first row to its last (the group join before it writes nothing).
    let rows = args.rows as u64;
    wait_for_rows(&status, &mut task, 1, Duration::from_millis(1)).await?;
    let started = Instant::now();
    // This process's CPU while the sink works (the sink runs in it; the wait polls a counter
    // every 5 ms, next to nothing); from its first row, so the group join is left out.
    let cpu0 = procfs::cpu_secs("self");
    wait_for_rows(&status, &mut task, rows, Duration::from_millis(5)).await?;
    let sink_rate = rows as f64 / started.elapsed().as_secs_f64();
    let sink_cpu = per_row_us(cpu0, args.rows);
    shutdown.cancel();
    task.await??;
    println!(
        "  sink (topic -> location_history):             {sink_rate:.0} rows/s, {sink_cpu} µs CPU per row  (retries {})",
        status.retries.load(Ordering::Relaxed)
    );

    let after = baseline(nodes, args.rows, args.concurrency, t0).await?;
    println!("  baseline again:                               {after:.0} rows/s");
    let base = f64::midpoint(before, after);
    println!(
        "  ratio sink / baseline (mean of both): {:.2}",
        sink_rate / base
    );
    Ok(())
}
