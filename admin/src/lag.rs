//! `nearby-admin lag`: how far each consumer group of the system is behind on the location
//! topic, per partition (read without joining the groups).

use std::io::Write;

use clap::Args;
use nearby_common::StackArgs;

/// Which groups.
#[derive(Debug, Args)]
pub struct LagArgs {
    /// Groups to report (repeatable); the default is fanout's and the history sink's.
    #[arg(long = "group", value_name = "GROUP_ID", default_values = ["nearby-fanout", "nearby-history-sink"])]
    pub groups: Vec<String>,
}

/// Prints, for each group, every partition's committed offset, end and lag, and the total.
pub async fn run(stack: &StackArgs, args: &LagArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let topic = stack.topics()?.location_updates();
    for group in &args.groups {
        let (brokers, g, t) = (stack.kafka_brokers.clone(), group.clone(), topic.clone());
        // The client calls block: off the runtime's workers.
        let lags =
            tokio::task::spawn_blocking(move || nearby_common::kafka::group_lag(&brokers, &g, &t))
                .await??;
        let total: i64 = lags.iter().map(|l| l.lag).sum();
        writeln!(out, "group {group} on {topic}: lag {total}")?;
        writeln!(out, "  partition  committed        end        lag")?;
        for l in &lags {
            let committed = l.committed.map_or("-".to_owned(), |c| c.to_string());
            writeln!(
                out,
                "  {:>9}  {committed:>9}  {:>9}  {:>9}",
                l.partition, l.high, l.lag
            )?;
        }
    }
    Ok(())
}
