//! Location history in the CQL store: every accepted position, one partition per user and UTC
//! day, oldest first. The primary key is the report's identity (user, day, `ts`), so writing a
//! report again — a replay, a redelivery after a crash — rewrites the same row.

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlDate, CqlTimestamp};

use crate::cql::validate_keyspace;
use crate::{Error, Result, UserId};

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;

/// The widest range one history read may span, days (a wider one is refused).
pub const MAX_RANGE_DAYS: i64 = 31;

/// One stored position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistoryRow {
    /// Whose position.
    pub user_id: UserId,
    /// When the phone took it, Unix epoch ms (the identity within the user's day).
    pub ts: i64,
    /// Latitude, WGS84 degrees.
    pub lat: f64,
    /// Longitude, WGS84 degrees.
    pub lon: f64,
    /// Horizontal accuracy, metres, if the phone said.
    pub accuracy_m: Option<f64>,
    /// When the gateway accepted it, Unix epoch ms.
    pub received_at: i64,
}

/// The UTC day of `ts_ms` as CQL stores a `date` (days since the epoch, offset by 2^31).
pub fn day_of(ts_ms: i64) -> CqlDate {
    let days = ts_ms.div_euclid(DAY_MS);
    // Days since the epoch of any i64 millisecond time fit in i32 comfortably.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    CqlDate((days + (1_i64 << 31)) as u32)
}

/// Creates the `location_history` table in `keyspace` (which must exist) if it is missing.
///
/// Time-window compaction with one-day windows: rows arrive roughly in time order and are
/// never updated (a rewrite is the same value), so each day's rows end up in one SSTable.
pub async fn create_table(session: &Session, keyspace: &str) -> Result<()> {
    validate_keyspace(keyspace)?;
    let cql = format!(
        "CREATE TABLE IF NOT EXISTS {keyspace}.location_history (
            user_id bigint,
            day date,
            ts timestamp,
            lat double,
            lon double,
            accuracy_m double,
            received_at timestamp,
            PRIMARY KEY ((user_id, day), ts))
        WITH CLUSTERING ORDER BY (ts ASC)
        AND compaction = {{'class': 'TimeWindowCompactionStrategy',
                           'compaction_window_unit': 'DAYS', 'compaction_window_size': 1}}"
    );
    session
        .query_unpaged(cql, &[])
        .await
        .map_err(|e| Error::Cql(Box::new(e)))?;
    Ok(())
}

/// Prepared writes and reads of `location_history`.
#[derive(Debug)]
pub struct HistoryStore {
    session: Session,
    insert: PreparedStatement,
    range: PreparedStatement,
}

impl HistoryStore {
    /// Prepares the statements against `keyspace`, whose table must exist ([`create_table`]).
    pub async fn new(session: Session, keyspace: &str) -> Result<Self> {
        validate_keyspace(keyspace)?;
        let prepare = async |cql: String| -> Result<PreparedStatement> {
            session
                .prepare(cql)
                .await
                .map_err(|e| Error::CqlPrepare(Box::new(e)))
        };
        let mut insert = prepare(format!(
            "INSERT INTO {keyspace}.location_history \
             (user_id, day, ts, lat, lon, accuracy_m, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
        ))
        .await?;
        // The same row written twice is the same row: a retry can never duplicate.
        insert.set_is_idempotent(true);
        let range = prepare(format!(
            "SELECT ts, lat, lon, accuracy_m, received_at FROM {keyspace}.location_history \
             WHERE user_id = ? AND day = ? AND ts >= ? AND ts < ? LIMIT ?"
        ))
        .await?;
        Ok(Self {
            session,
            insert,
            range,
        })
    }

    /// Writes one row (an upsert: the same report written again is the same row).
    pub async fn insert(&self, row: &HistoryRow) -> Result<()> {
        self.session
            .execute_unpaged(
                &self.insert,
                (
                    row.user_id,
                    day_of(row.ts),
                    CqlTimestamp(row.ts),
                    row.lat,
                    row.lon,
                    row.accuracy_m,
                    CqlTimestamp(row.received_at),
                ),
            )
            .await
            .map_err(|e| Error::Cql(Box::new(e)))?;
        Ok(())
    }

    /// Up to `limit` of `user`'s rows with `from_ms <= ts < to_ms`, oldest first. Refuses a
    /// range over [`MAX_RANGE_DAYS`] days or an empty one.
    pub async fn range(
        &self,
        user: UserId,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<HistoryRow>> {
        if to_ms <= from_ms || to_ms.saturating_sub(from_ms) > MAX_RANGE_DAYS * DAY_MS {
            return Err(Error::BadRange {
                from_ms,
                to_ms,
                max_days: MAX_RANGE_DAYS,
            });
        }
        let mut out = Vec::new();
        // `from_ms` is within the i64 range and a day is far smaller: no overflow below, as
        // the range is non-empty and at most MAX_RANGE_DAYS wide.
        let mut day_start = from_ms.div_euclid(DAY_MS).saturating_mul(DAY_MS);
        // One partition a day, read in order until the page is full.
        while day_start < to_ms && out.len() < limit {
            let want = i32::try_from(limit - out.len()).unwrap_or(i32::MAX);
            let rows = self
                .session
                .execute_unpaged(
                    &self.range,
                    (
                        user,
                        day_of(day_start),
                        CqlTimestamp(from_ms.max(day_start)),
                        CqlTimestamp(to_ms.min(day_start.saturating_add(DAY_MS))),
                        want,
                    ),
                )
                .await
                .map_err(|e| Error::Cql(Box::new(e)))?
                .into_rows_result()
                .map_err(|e| Error::CqlDecode(format!("history: {e}")))?;
            for row in rows
                .rows::<(CqlTimestamp, f64, f64, Option<f64>, Option<CqlTimestamp>)>()
                .map_err(|e| Error::CqlDecode(format!("history: {e}")))?
            {
                let (ts, lat, lon, accuracy_m, received_at) =
                    row.map_err(|e| Error::CqlDecode(format!("history row: {e}")))?;
                out.push(HistoryRow {
                    user_id: user,
                    ts: ts.0,
                    lat,
                    lon,
                    accuracy_m,
                    received_at: received_at.map_or(ts.0, |t| t.0),
                });
            }
            day_start = day_start.saturating_add(DAY_MS);
            if day_start == i64::MAX {
                break;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_utc_days_since_the_epoch() {
        assert_eq!(day_of(0).0, 1 << 31);
        assert_eq!(day_of(DAY_MS - 1).0, 1 << 31);
        assert_eq!(day_of(DAY_MS).0, (1 << 31) + 1);
        assert_eq!(day_of(-1).0, (1 << 31) - 1);
        // 2025-11-25T08:00:00Z is day 20,417.
        assert_eq!(day_of(1_764_057_600_000).0, (1 << 31) + 20_417);
    }
}
