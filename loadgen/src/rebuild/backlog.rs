//! `rebuild`'s saturation half: the friends that give fanout deliveries to make, and the
//! backlog it is measured on once ready.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nearby_common::procfs;

use super::produce::producing_child;
use super::{RebuildArgs, Run};

/// What the instance did with the backlog.
#[derive(Debug)]
pub(super) struct Backlog {
    reports: u64,
    seconds: f64,
    cpu_s: f64,
    kafka_cpu_s: f64,
    deliveries: u64,
    records: u64,
    busy: Option<f64>,
}

impl Backlog {
    #[allow(clippy::cast_precision_loss)]
    pub(super) fn print(&self) {
        let per = |x: f64, n: u64| if n == 0 { 0.0 } else { x * 1e6 / n as f64 };
        println!(
            "  backlog: {} reports worked through in {:.1} s ({:.0}/s), {} deliveries produced ({:.1} per report) in {} records",
            self.reports,
            self.seconds,
            self.reports as f64 / self.seconds,
            self.deliveries,
            self.deliveries as f64 / self.reports.max(1) as f64,
            self.records
        );
        println!(
            "  backlog: fanout CPU {:.2} s: {:.1} µs per report, {:.2} µs per delivery (of which the Kafka client's threads {:.1} µs per report); machine {} busy",
            self.cpu_s,
            per(self.cpu_s, self.reports),
            per(self.cpu_s, self.deliveries),
            per(self.kafka_cpu_s, self.reports),
            self.busy
                .map_or_else(|| "?".into(), |b| format!("{:.0} %", b * 100.0))
        );
    }
}

/// Produces `backlog_per_user` more reports of every user (a child process, as fast as it
/// goes) into the topic the ready instance owns, and measures the instance's CPU from the
/// first of them until it has applied them all and its producer has every delivery acked.
pub(super) async fn backlog(
    args: &RebuildArgs,
    run: &Run,
    status: &nearby_fanout::service::Status,
) -> anyhow::Result<Backlog> {
    let reports = args.users * args.backlog_per_user;
    let kafka_cpu = || {
        procfs::thread_cpu_secs("self")
            .iter()
            .filter(|(name, _)| name.starts_with("rdk:"))
            .map(|(_, s)| s)
            .sum::<f64>()
    };
    let events0 = status.events.load(Ordering::Relaxed);
    let delivered0 = status.deliveries.delivered.load(Ordering::Relaxed);
    let records0 = status.deliveries.records.load(Ordering::Relaxed);
    let (cpu0, kafka0, ticks0) = (
        procfs::cpu_secs("self").unwrap_or(0.0),
        kafka_cpu(),
        procfs::machine_ticks(),
    );
    let started = Instant::now();
    let mut child = producing_child(args, run, args.backlog_per_user, false)?;
    let deadline = started + Duration::from_secs(args.timeout_secs);
    let mut produced = false;
    let mut last_progress = Instant::now();
    loop {
        if !produced && let Some(exit) = child.try_wait()? {
            anyhow::ensure!(exit.success(), "producing the backlog failed: {exit}");
            produced = true;
        }
        let applied = status.events.load(Ordering::Relaxed) - events0;
        // Every delivery handed to the producer is acked (or failed) once none is in flight.
        if produced && applied >= reports && status.delivery_queue.load(Ordering::Relaxed) == 0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the backlog was not worked through in {} s ({applied} of {reports})",
            args.timeout_secs
        );
        if last_progress.elapsed() >= Duration::from_secs(10) {
            eprintln!(
                "  ... backlog {:.0} s: {applied} of {reports} reports applied",
                started.elapsed().as_secs_f64()
            );
            last_progress = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(Backlog {
        reports,
        seconds: started.elapsed().as_secs_f64(),
        cpu_s: procfs::cpu_secs("self").unwrap_or(0.0) - cpu0,
        kafka_cpu_s: kafka_cpu() - kafka0,
        deliveries: status.deliveries.delivered.load(Ordering::Relaxed) - delivered0,
        records: status.deliveries.records.load(Ordering::Relaxed) - records0,
        busy: procfs::busy_share(ticks0),
    })
}

/// ring), written straight into the store.
pub(super) async fn befriend(args: &RebuildArgs, run: &Run) -> anyhow::Result<()> {
    let started = Instant::now();
    let n = i64::try_from(args.users)?;
    let half = i64::try_from(args.friends / 2)?.min(n - 1).max(1);
    let ids: Vec<i64> = (0..n).map(|i| run.user_base + i).collect();
    let session = nearby_common::cql::connect(&args.stack.cql_nodes).await?;
    let store = nearby_common::users::UserStore::new(session, &run.keyspace).await?;
    store.bulk_create_profiles(&ids, 256).await?;
    let pairs: Vec<(i64, i64)> = (0..n)
        .flat_map(|i| (1..=half).map(move |d| (i, (i + d) % n)))
        .map(|(a, b)| (run.user_base + a, run.user_base + b))
        .collect();
    store.bulk_befriend(&pairs, 256).await?;
    println!(
        "  setup: {} profiles and {} friendships in {:.1} s",
        ids.len(),
        pairs.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
