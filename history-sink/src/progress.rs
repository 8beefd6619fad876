//! `Progress`: per partition, the offsets handed out for writing and not written yet, and the
//! position that is safe to commit — the lowest offset still pending, or one past the highest
//! handed out when none is. Writes finish in any order; the committed position never passes a
//! row that is not in the table.

use std::collections::{BTreeMap, HashMap};

/// Offsets in flight, per partition.
#[derive(Debug, Default)]
pub struct Progress {
    partitions: HashMap<i32, Partition>,
}

#[derive(Debug, Default)]
struct Partition {
    /// Offset → how many writes of it are pending (a record read again after a rebalance may
    /// be in flight twice; both writes are the same row).
    pending: BTreeMap<i64, u32>,
    /// One past the highest offset handed out.
    end: i64,
    /// The last position reported as safe to commit.
    reported: i64,
}

impl Progress {
    /// Records that `offset` of `partition` is being written.
    pub fn begin(&mut self, partition: i32, offset: i64) {
        let p = self
            .partitions
            .entry(partition)
            .or_insert_with(|| Partition {
                // Nothing before the first record handed out is ours to report.
                reported: offset,
                ..Partition::default()
            });
        *p.pending.entry(offset).or_default() += 1;
        p.end = p.end.max(offset + 1);
    }

    /// Records that a write of `offset` finished (written, or skipped for good); returns the new
    /// position safe to commit for `partition`, if it moved forward.
    pub fn finish(&mut self, partition: i32, offset: i64) -> Option<i64> {
        let p = self.partitions.get_mut(&partition)?;
        if let Some(n) = p.pending.get_mut(&offset) {
            *n -= 1;
            if *n == 0 {
                p.pending.remove(&offset);
            }
        }
        let safe = p.pending.keys().next().copied().unwrap_or(p.end);
        (safe > p.reported).then(|| {
            p.reported = safe;
            safe
        })
    }

    /// Forgets `partition` (revoked in a rebalance): its writes still in flight move nothing when
    /// they end, and if the partition comes back its position starts again from the first
    /// record read then. Returns how many writes were pending in it.
    pub fn forget(&mut self, partition: i32) -> usize {
        self.partitions
            .remove(&partition)
            .map_or(0, |p| p.pending.values().map(|&n| n as usize).sum())
    }

    /// Writes still pending, over all partitions.
    pub fn in_flight(&self) -> usize {
        self.partitions
            .values()
            .map(|p| p.pending.values().map(|&n| n as usize).sum::<usize>())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_safe_position_waits_for_the_oldest_pending_write() {
        let mut p = Progress::default();
        for o in 10..14 {
            p.begin(0, o);
        }
        assert_eq!(p.finish(0, 12), None, "10 and 11 are not written yet");
        assert_eq!(p.finish(0, 11), None);
        assert_eq!(p.finish(0, 10), Some(13), "10 to 12 are written, 13 is not");
        assert_eq!(p.finish(0, 13), Some(14));
        assert_eq!(p.in_flight(), 0);
    }

    #[test]
    fn partitions_are_independent_and_a_twice_read_offset_needs_both_writes() {
        let mut p = Progress::default();
        p.begin(0, 5);
        p.begin(1, 7);
        p.begin(0, 5); // read again after a rebalance
        assert_eq!(p.finish(1, 7), Some(8));
        assert_eq!(p.finish(0, 5), None, "the second write of 5 is pending");
        assert_eq!(p.finish(0, 5), Some(6));
        assert_eq!(p.finish(2, 1), None, "an unknown partition moves nothing");
    }

    #[test]
    fn a_forgotten_partition_starts_again_from_its_next_first_record() {
        let mut p = Progress::default();
        p.begin(0, 10);
        p.begin(0, 11);
        p.begin(1, 3);
        assert_eq!(p.forget(0), 2);
        assert_eq!(p.in_flight(), 1, "partition 1's write is still ours");
        assert_eq!(
            p.finish(0, 10),
            None,
            "a write of a revoked partition moves nothing"
        );
        // Assigned again, from the new owner's commit: the old writes are no longer in the way.
        p.begin(0, 40);
        assert_eq!(p.finish(0, 11), None);
        assert_eq!(p.finish(0, 40), Some(41));
        assert_eq!(p.forget(7), 0);
    }

    #[test]
    fn the_position_never_goes_back() {
        let mut p = Progress::default();
        p.begin(0, 20);
        assert_eq!(p.finish(0, 20), Some(21));
        // Records from before, read again after a rebalance: written again, same rows.
        p.begin(0, 18);
        assert_eq!(p.finish(0, 18), None);
    }
}
