//! The cap on pending incoming friend requests: one counter row per user in
//! `pending_requests`, moved only by compare-and-set (lightweight transactions), so requests
//! racing in from many accounts cannot pass it and lock someone's list. A slot is taken before a
//! request is written and given back when the request is accepted, declined or withdrawn (or
//! was not written). A count left too high by a crash is corrected when it would refuse and
//! has not moved for [`SETTLED_MS`]: the incoming entries are counted again. (A count that moved
//! just now may include a request whose entries are being written: counting them then would
//! let a burst of requests past the cap.)

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;

use scylla::value::CqlTimestamp;

use super::store::{applied, cql, decode};
use crate::clock::now_ms;
use crate::{Error, Result, UserId};

/// How long a count must have stood still before a recount may correct it, ms: far longer
/// than writing one request's entries takes.
pub const SETTLED_MS: i64 = 60_000;

/// Compare-and-set attempts before a change gives up as contended (the caller may retry).
const MAX_CAS_ATTEMPTS: usize = 8;

/// The statements over `pending_requests`.
#[derive(Debug)]
pub(super) struct PendingCounts {
    get: PreparedStatement,
    create: PreparedStatement,
    swap: PreparedStatement,
    count_incoming: PreparedStatement,
}

impl PendingCounts {
    pub(super) async fn prepare(session: &Session, ks: &str) -> Result<Self> {
        let prepare = async |text: String| -> Result<PreparedStatement> {
            session
                .prepare(text)
                .await
                .map_err(|e| Error::CqlPrepare(Box::new(e)))
        };
        let mut get = prepare(format!(
            "SELECT n, at FROM {ks}.pending_requests WHERE user_id = ?"
        ))
        .await?;
        // A linearizable read: the value the next compare-and-set compares against.
        get.set_consistency(scylla::statement::Consistency::Serial);
        Ok(Self {
            get,
            create: prepare(format!(
                "INSERT INTO {ks}.pending_requests (user_id, n, at) VALUES (?, 0, 0) IF NOT EXISTS"
            ))
            .await?,
            swap: prepare(format!(
                "UPDATE {ks}.pending_requests SET n = ?, at = ? WHERE user_id = ? IF n = ?"
            ))
            .await?,
            count_incoming: prepare(format!(
                "SELECT COUNT(*) FROM {ks}.friends_by_user WHERE user_id = ? AND state = 'incoming' \
                 ALLOW FILTERING"
            ))
            .await?,
        })
    }

    /// Takes one of `user`'s `cap` slots: false when all are taken (counted again to be sure).
    pub(super) async fn reserve(&self, s: &Session, user: UserId, cap: usize) -> Result<bool> {
        let cap = i32::try_from(cap).unwrap_or(i32::MAX);
        let mut recounted = false;
        for _ in 0..MAX_CAS_ATTEMPTS {
            let Some((n, at)) = self.read(s, user).await? else {
                s.execute_unpaged(&self.create, (user,))
                    .await
                    .map_err(cql)?;
                continue;
            };
            if n < cap {
                if self.swap(s, user, n, n + 1).await? {
                    return Ok(true);
                }
                continue;
            }
            if recounted || now_ms() - at < SETTLED_MS {
                return Ok(false);
            }
            // Full by a counter that has stood still: trust the list itself before refusing.
            recounted = true;
            let actual = self.incoming(s, user).await?;
            if actual >= cap {
                return Ok(false);
            }
            self.swap(s, user, n, actual).await?;
        }
        Err(Error::Contention { a: user, b: user })
    }

    /// Gives one of `user`'s slots back (never below zero).
    pub(super) async fn release(&self, s: &Session, user: UserId) -> Result<()> {
        for _ in 0..MAX_CAS_ATTEMPTS {
            match self.read(s, user).await? {
                Some((n, _)) if n > 0 => {
                    if self.swap(s, user, n, n - 1).await? {
                        return Ok(());
                    }
                }
                _ => return Ok(()),
            }
        }
        // Left high: the next refusal counts again and corrects it.
        Ok(())
    }

    /// The count and when it last moved (epoch ms), if the row exists.
    async fn read(&self, s: &Session, user: UserId) -> Result<Option<(i32, i64)>> {
        let rows = s
            .execute_unpaged(&self.get, (user,))
            .await
            .map_err(cql)?
            .into_rows_result()
            .map_err(decode("pending count"))?;
        let row = rows
            .maybe_first_row::<(Option<i32>, Option<CqlTimestamp>)>()
            .map_err(decode("pending count row"))?;
        Ok(row.map(|(n, at)| (n.unwrap_or(0), at.map_or(0, |t| t.0))))
    }

    async fn swap(&self, s: &Session, user: UserId, from: i32, to: i32) -> Result<bool> {
        let result = s
            .execute_unpaged(&self.swap, (to, CqlTimestamp(now_ms()), user, from))
            .await
            .map_err(cql)?;
        applied(result)
    }

    async fn incoming(&self, s: &Session, user: UserId) -> Result<i32> {
        let rows = s
            .execute_unpaged(&self.count_incoming, (user,))
            .await
            .map_err(cql)?
            .into_rows_result()
            .map_err(decode("incoming count"))?;
        let (count,) = rows
            .first_row::<(i64,)>()
            .map_err(decode("incoming count row"))?;
        Ok(i32::try_from(count).unwrap_or(i32::MAX))
    }
}
