//! When the table reader read what: per partition, a few (offset, time) marks, enough to tell
//! from an offset (another instance's last commit) since when reports may have gone unfanned.
//! One mark per partition per step keeps it small however busy the topic is; marks older than
//! the window a takeover looks back over are dropped.

use std::collections::{HashMap, VecDeque};

/// Most marks kept per partition, whatever the window (a bound on memory if steps are many).
const MAX_MARKS: usize = 4096;

/// (offset, record time in epoch ms) marks per partition, oldest first.
#[derive(Debug, Default)]
pub struct Checkpoints {
    marks: HashMap<i32, VecDeque<(i64, i64)>>,
}

impl Checkpoints {
    /// Notes that the record at `offset` of `partition`, written at `time_ms`, was read.
    pub fn mark(&mut self, partition: i32, offset: i64, time_ms: i64) {
        let marks = self.marks.entry(partition).or_default();
        if marks.len() == MAX_MARKS {
            marks.pop_front();
        }
        marks.push_back((offset, time_ms));
    }

    /// Drops the marks older than `before_ms`, keeping each partition's newest.
    pub fn trim(&mut self, before_ms: i64) {
        for marks in self.marks.values_mut() {
            while marks.len() > 1 && marks.front().is_some_and(|(_, t)| *t < before_ms) {
                marks.pop_front();
            }
        }
    }

    /// The time of the newest mark at or before `offset` in `partition`: every record from
    /// `offset` on was written at or after it (up to clock steps between producers). `None` if
    /// no mark is that old.
    pub fn time_at(&self, partition: i32, offset: i64) -> Option<i64> {
        let marks = self.marks.get(&partition)?;
        marks
            .iter()
            .rev()
            .find(|(o, _)| *o <= offset)
            .map(|(_, t)| *t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_of_an_offset_is_the_newest_mark_at_or_before_it() {
        let mut c = Checkpoints::default();
        c.mark(0, 10, 1_000);
        c.mark(0, 20, 2_000);
        c.mark(0, 30, 3_000);
        assert_eq!(c.time_at(0, 25), Some(2_000));
        assert_eq!(c.time_at(0, 30), Some(3_000));
        assert_eq!(c.time_at(0, 99), Some(3_000));
        assert_eq!(c.time_at(0, 5), None, "older than every mark");
        assert_eq!(c.time_at(1, 5), None, "a partition never read");
        c.trim(2_500);
        assert_eq!(c.time_at(0, 25), None, "trimmed");
        assert_eq!(c.time_at(0, 35), Some(3_000));
        c.trim(10_000);
        assert_eq!(c.time_at(0, 35), Some(3_000), "the newest mark stays");
    }
}
