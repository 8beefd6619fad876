//! Moving a consumer group back (or forward) to a time: per partition, the group's committed
//! offset is replaced by the first offset whose record is at least that new
//! (`offsets_for_times`), or the partition's end where no record is. Kafka accepts such a
//! commit from outside the group only while the group has no member, so a live group is refused.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::time;

/// How long one metadata, offsets or group request may take.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(30);

/// One partition's move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionPlan {
    /// The partition.
    pub partition: i32,
    /// The group's committed offset now (`None`: the group has none here and would start at
    /// its `auto.offset.reset`).
    pub committed: Option<i64>,
    /// The offset to commit: the first record at or after the time, or `end`.
    pub target: i64,
    /// The partition's end (high watermark) when the plan was made.
    pub end: i64,
}

impl PartitionPlan {
    /// Records the group reads again once moved (negative: records it skips without reading).
    /// With no committed offset: the records from the target to the end.
    pub fn rereads(&self) -> i64 {
        self.committed.unwrap_or(self.end) - self.target
    }

    /// One line: `partition 0: committed 120 -> 57: re-reads 63 records (end 130)`.
    pub fn describe(&self) -> String {
        let p = self.partition;
        let (target, end) = (self.target, self.end);
        match self.committed {
            None => format!(
                "partition {p}: committed none -> {target}: reads {} records from there (end {end}); \
                 the group has no offset here now",
                end - target
            ),
            Some(c) if c > target => {
                format!(
                    "partition {p}: committed {c} -> {target}: re-reads {} records (end {end})",
                    c - target
                )
            }
            Some(c) if c < target => format!(
                "partition {p}: committed {c} -> {target}: skips {} records it has not read (end {end})",
                target - c
            ),
            Some(c) => format!("partition {p}: committed {c} -> {target}: unchanged (end {end})"),
        }
    }
}

/// Who is in the group now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupState {
    /// The coordinator's state name (`Empty`, `Stable`, `PreparingRebalance`, `Dead` for a
    /// group it does not know, ...).
    pub state: String,
    /// Each active member as `client-id (member-id) on host`.
    pub members: Vec<String>,
}

impl GroupState {
    /// One line about the members.
    pub fn describe(&self, group: &str) -> String {
        if self.members.is_empty() {
            format!("group {group}: state {}, no active member", self.state)
        } else {
            format!(
                "group {group}: state {}, {} active member(s): {}",
                self.state,
                self.members.len(),
                self.members.join(", ")
            )
        }
    }
}

/// Everything `replay group` would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPlan {
    /// The consumer group.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// The time, epoch ms.
    pub from_ms: i64,
    /// Who is in the group.
    pub state: GroupState,
    /// Per partition, in order.
    pub partitions: Vec<PartitionPlan>,
}

impl GroupPlan {
    /// Writes the plan, one partition a line, and the totals.
    pub fn print(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(
            out,
            "replay group {} on {} from {} ({} epoch ms)",
            self.group,
            self.topic,
            time::format(self.from_ms),
            self.from_ms
        )?;
        writeln!(out, "{}", self.state.describe(&self.group))?;
        for p in &self.partitions {
            writeln!(out, "{}", p.describe())?;
        }
        let rereads: i64 = self.partitions.iter().map(|p| p.rereads().max(0)).sum();
        let skips: i64 = self.partitions.iter().map(|p| (-p.rereads()).max(0)).sum();
        let mut total = format!(
            "total: {rereads} records read again over {} partitions",
            self.partitions.len()
        );
        if skips > 0 {
            total.push_str(&format!(", {skips} records skipped"));
        }
        writeln!(out, "{total}")
    }

    /// The offsets to commit.
    fn targets(&self) -> anyhow::Result<TopicPartitionList> {
        let mut tpl = TopicPartitionList::new();
        for p in &self.partitions {
            tpl.add_partition_offset(&self.topic, p.partition, Offset::Offset(p.target))?;
        }
        Ok(tpl)
    }
}

/// A consumer with `group.id = group` that never subscribes (so it never joins the group) and
/// never commits by itself: it only reads offsets and, when told, commits the plan.
pub fn consumer(brokers: &str, group: &str) -> anyhow::Result<BaseConsumer> {
    let mut config = nearby_common::kafka::client_config(brokers);
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    Ok(config.create()?)
}

/// The group's state and active members, from its coordinator.
pub fn group_state(consumer: &BaseConsumer, group: &str) -> anyhow::Result<GroupState> {
    let list = consumer
        .fetch_group_list(Some(group), KAFKA_TIMEOUT)
        .with_context(|| format!("describing consumer group {group}"))?;
    let Some(info) = list.groups().iter().find(|g| g.name() == group) else {
        return Ok(GroupState {
            state: "Dead".into(),
            members: Vec::new(),
        });
    };
    Ok(GroupState {
        state: info.state().to_owned(),
        members: info
            .members()
            .iter()
            .map(|m| format!("{} ({}) on {}", m.client_id(), m.id(), m.client_host()))
            .collect(),
    })
}

/// The partition ids of `topic`, in order; an error naming the topic when it does not exist.
pub fn partitions(consumer: &BaseConsumer, topic: &str) -> anyhow::Result<Vec<i32>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), KAFKA_TIMEOUT)
        .with_context(|| format!("reading the metadata of {topic}"))?;
    let t = metadata.topics().iter().find(|t| t.name() == topic);
    let mut ids: Vec<i32> = t
        .filter(|t| t.error().is_none())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    anyhow::ensure!(!ids.is_empty(), "topic {topic} does not exist");
    ids.sort_unstable();
    Ok(ids)
}

/// Per partition of `topic`: the first offset whose record timestamp is at least `from_ms`,
/// or the partition's end where none is; with the end itself.
pub fn offsets_at(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
    from_ms: i64,
) -> anyhow::Result<Vec<(i32, i64, i64)>> {
    let mut wanted = TopicPartitionList::new();
    for p in partitions {
        wanted.add_partition_offset(topic, *p, Offset::Offset(from_ms))?;
    }
    let found = consumer
        .offsets_for_times(wanted, KAFKA_TIMEOUT)
        .with_context(|| format!("offsets of {topic} at {}", time::format(from_ms)))?;
    let mut out = Vec::with_capacity(partitions.len());
    for p in partitions {
        let (_, end) = consumer.fetch_watermarks(topic, *p, KAFKA_TIMEOUT)?;
        let at = found
            .find_partition(topic, *p)
            .with_context(|| format!("no offset for {topic} partition {p}"))?;
        if let Some(e) = at.error().err() {
            anyhow::bail!("offset of {topic} partition {p} at {from_ms}: {e}");
        }
        let offset = match at.offset() {
            // A record at or after the time; never past the end read just now.
            Offset::Offset(o) => o.min(end),
            // No record that new: the end.
            _ => end,
        };
        out.push((*p, offset, end));
    }
    Ok(out)
}

/// Makes the plan: who is in the group, and per partition the committed offset and the target.
pub fn plan(
    consumer: &BaseConsumer,
    group: &str,
    topic: &str,
    from_ms: i64,
) -> anyhow::Result<GroupPlan> {
    let state = group_state(consumer, group)?;
    let ids = partitions(consumer, topic)?;
    let targets = offsets_at(consumer, topic, &ids, from_ms)?;
    let mut asked = TopicPartitionList::new();
    for p in &ids {
        asked.add_partition(topic, *p);
    }
    let committed = consumer
        .committed_offsets(asked, KAFKA_TIMEOUT)
        .with_context(|| format!("committed offsets of group {group}"))?;
    let partitions = targets
        .into_iter()
        .map(|(partition, target, end)| PartitionPlan {
            partition,
            committed: committed
                .find_partition(topic, partition)
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                }),
            target,
            end,
        })
        .collect();
    Ok(GroupPlan {
        group: group.to_owned(),
        topic: topic.to_owned(),
        from_ms,
        state,
        partitions,
    })
}

/// Commits the plan's targets for its group, after checking (again, just before) that the
/// group has no active member; then reads the committed offsets back and checks them.
pub fn commit(consumer: &BaseConsumer, plan: &GroupPlan) -> anyhow::Result<()> {
    let state = group_state(consumer, &plan.group)?;
    if !state.members.is_empty() {
        anyhow::bail!(
            "refused: group {} has {} active member(s) ({}); Kafka refuses offset commits from \
             outside a live group. Stop its consumers first (one killed without closing, or with \
             a static instance id, stays a member until its session times out: see --wait), \
             then run this again",
            plan.group,
            state.members.len(),
            state.members.join(", ")
        );
    }
    let targets = plan.targets()?;
    // Assigned, never subscribed: the consumer does not join the group, it only commits.
    consumer.assign(&targets)?;
    consumer
        .commit(&targets, CommitMode::Sync)
        .with_context(|| format!("committing offsets for group {}", plan.group))?;
    let mut asked = TopicPartitionList::new();
    for p in &plan.partitions {
        asked.add_partition(&plan.topic, p.partition);
    }
    let now = consumer.committed_offsets(asked, KAFKA_TIMEOUT)?;
    for p in &plan.partitions {
        let got = now
            .find_partition(&plan.topic, p.partition)
            .map(|e| e.offset());
        anyhow::ensure!(
            got == Some(Offset::Offset(p.target)),
            "partition {}: committed {got:?} after the commit, expected {}",
            p.partition,
            p.target
        );
    }
    consumer.unassign()?;
    Ok(())
}

/// `replay group`: prints the plan; with `yes`, commits it, first waiting up to `wait` for
/// the group's members to leave.
pub fn run(
    brokers: &str,
    group: &str,
    topic: &str,
    from_ms: i64,
    yes: bool,
    wait: Duration,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let consumer = consumer(brokers, group)?;
    let mut plan = plan(&consumer, group, topic, from_ms)?;
    if yes && !plan.state.members.is_empty() && !wait.is_zero() {
        writeln!(
            out,
            "{}; waiting up to {} for them to leave",
            plan.state.describe(group),
            humantime::format_duration(wait)
        )?;
        let deadline = std::time::Instant::now() + wait;
        while std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_secs(1).min(wait));
            if group_state(&consumer, group)?.members.is_empty() {
                break;
            }
        }
        // Again: members commit their last offsets as they leave.
        plan = self::plan(&consumer, group, topic, from_ms)?;
    }
    plan.print(out)?;
    if !yes {
        if !plan.state.members.is_empty() {
            writeln!(
                out,
                "note: the group has active members: --yes is refused until they stop"
            )?;
        }
        writeln!(
            out,
            "dry run: nothing changed; run again with --yes to commit these offsets"
        )?;
        return Ok(());
    }
    commit(&consumer, &plan)?;
    writeln!(
        out,
        "committed: group {group} resumes {topic} at the offsets above"
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(committed: Option<i64>, target: i64) -> PartitionPlan {
        PartitionPlan {
            partition: 2,
            committed,
            target,
            end: 130,
        }
    }

    #[test]
    fn each_move_says_what_it_reads() {
        assert_eq!(p(Some(120), 57).rereads(), 63);
        assert_eq!(
            p(Some(120), 57).describe(),
            "partition 2: committed 120 -> 57: re-reads 63 records (end 130)"
        );
        assert_eq!(p(Some(20), 57).rereads(), -37);
        assert_eq!(
            p(Some(20), 57).describe(),
            "partition 2: committed 20 -> 57: skips 37 records it has not read (end 130)"
        );
        assert_eq!(
            p(Some(57), 57).describe(),
            "partition 2: committed 57 -> 57: unchanged (end 130)"
        );
        assert_eq!(p(None, 57).rereads(), 73);
        assert!(
            p(None, 57)
                .describe()
                .starts_with("partition 2: committed none -> 57: reads 73 records")
        );
    }
}
