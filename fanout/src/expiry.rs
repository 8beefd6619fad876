//! `ExpiryQueue`: when each user in the table is next due a look, so a sweep touches only the
//! users whose time may be up, never the whole table.
//!
//! One heap entry per slot, pushed when the user enters the table and re-checked lazily: a
//! position update does not touch the heap (the deadline only moves later), and when the old
//! deadline comes the sweep finds the newer time and pushes the slot again. So each active user
//! costs about one heap push per TTL (10 minutes), whatever their update rate. Deadlines are
//! whole seconds (8-byte heap entries); the sweep checks the exact millisecond time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::latest_locations::Slot;

/// No heap entry for this slot.
const UNQUEUED: u32 = u32::MAX;

/// Slots by the second they are next due.
#[derive(Debug, Default)]
pub(crate) struct ExpiryQueue {
    heap: BinaryHeap<Reverse<(u32, Slot)>>,
    /// Per slot, the deadline of its one live heap entry; heap entries whose deadline differs
    /// are left over from an earlier schedule (or an earlier user of the slot) and are skipped.
    queued: Vec<u32>,
}

impl ExpiryQueue {
    /// Makes room for slots up to `slot_count`.
    pub(crate) fn grow_to(&mut self, slot_count: usize) {
        if self.queued.len() < slot_count {
            self.queued.resize(slot_count, UNQUEUED);
        }
    }

    /// Makes sure `slot` is looked at no later than `at_ms` (rounded down to the second).
    /// A slot already due earlier keeps its entry: the look then re-schedules it.
    pub(crate) fn schedule(&mut self, slot: Slot, at_ms: i64) {
        let at = to_second(at_ms);
        let queued = &mut self.queued[slot as usize];
        if *queued == UNQUEUED || at < *queued {
            *queued = at;
            self.heap.push(Reverse((at, slot)));
        }
    }

    /// Forgets `slot`'s schedule (its user left the table).
    pub(crate) fn forget(&mut self, slot: Slot) {
        self.queued[slot as usize] = UNQUEUED;
    }

    /// The next slot due at or before `now_ms`'s second, now unscheduled; the caller checks the
    /// exact time and schedules it again if it is not due yet.
    pub(crate) fn pop_due(&mut self, now_ms: i64) -> Option<Slot> {
        let now = to_second(now_ms);
        while let Some(&Reverse((at, slot))) = self.heap.peek() {
            if at > now {
                return None;
            }
            self.heap.pop();
            let queued = &mut self.queued[slot as usize];
            if *queued == at {
                *queued = UNQUEUED;
                return Some(slot);
            }
        }
        None
    }

    /// Bytes allocated (heap and per-slot deadlines).
    pub(crate) fn allocated_bytes(&self) -> usize {
        self.heap.capacity() * size_of::<Reverse<(u32, Slot)>>()
            + self.queued.capacity() * size_of::<u32>()
    }
}

/// Milliseconds to whole seconds, rounded down, within the range a deadline can hold.
fn to_second(ms: i64) -> u32 {
    // Rounding down makes a due slot never late; one popped a little early is re-scheduled.
    ms.div_euclid(1000).clamp(0, i64::from(UNQUEUED - 1)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(queue: &mut ExpiryQueue, now_ms: i64) -> Vec<Slot> {
        std::iter::from_fn(|| queue.pop_due(now_ms)).collect()
    }

    #[test]
    fn pops_due_slots_in_time_order_once() {
        let mut queue = ExpiryQueue::default();
        queue.grow_to(3);
        queue.schedule(0, 5_000);
        queue.schedule(1, 2_000);
        queue.schedule(2, 9_000);
        assert!(drain(&mut queue, 1_999).is_empty());
        assert_eq!(drain(&mut queue, 5_500), vec![1, 0]);
        assert!(
            drain(&mut queue, 5_500).is_empty(),
            "popped slots are unscheduled"
        );
        assert_eq!(drain(&mut queue, 9_000), vec![2]);
    }

    #[test]
    fn later_deadlines_wait_for_the_look_earlier_ones_replace() {
        let mut queue = ExpiryQueue::default();
        queue.grow_to(2);
        queue.schedule(0, 5_000);
        // A later deadline keeps the earlier entry: the look re-schedules.
        queue.schedule(0, 8_000);
        assert_eq!(drain(&mut queue, 5_000), vec![0]);
        // An earlier deadline replaces the later one; the stale entry is skipped.
        queue.schedule(1, 9_000);
        queue.schedule(1, 3_000);
        assert_eq!(drain(&mut queue, 10_000), vec![1]);
        // A forgotten slot is skipped.
        queue.schedule(0, 1_000);
        queue.forget(0);
        assert!(drain(&mut queue, 10_000).is_empty());
    }
}
