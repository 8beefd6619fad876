//! The friendship state machine over the user store: ask, accept, unfriend/withdraw/decline,
//! each a lightweight transaction on the pair's row (`friend_pairs`), then both sides' list
//! entries (`friends_by_user`) in one logged batch; a request first takes a place among the
//! other side's pending requests (`pending_requests`).

use scylla::statement::batch::{Batch, BatchType};
use scylla::value::CqlTimestamp;

use super::MAX_FRIENDS;
use super::store::{FriendState, RemoveOutcome, RequestOutcome, UserStore, applied, cql, decode};
use crate::clock::now_ms;
use crate::{Error, Result, UserId};

/// How often a friendship change is retried when another change of the same pair won the race.
const MAX_LWT_ATTEMPTS: usize = 5;

/// The pair row: state and who asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pair {
    Pending { requested_by: UserId },
    Accepted { requested_by: UserId },
}

/// The pair's key: the smaller id first, so both sides name the same row.
pub(super) fn pair_key(a: UserId, b: UserId) -> (UserId, UserId) {
    if a < b { (a, b) } else { (b, a) }
}

impl UserStore {
    async fn pair(&self, a: UserId, b: UserId) -> Result<Option<Pair>> {
        let (lo, hi) = pair_key(a, b);
        let rows = self
            .session
            .execute_unpaged(&self.get_pair, (lo, hi))
            .await
            .map_err(cql)?
            .into_rows_result()
            .map_err(decode("pair"))?;
        let row = rows
            .maybe_first_row::<(Option<String>, Option<i64>)>()
            .map_err(decode("pair row"))?;
        Ok(match row {
            Some((state, Some(requested_by))) if state.as_deref() == Some("accepted") => {
                Some(Pair::Accepted { requested_by })
            }
            Some((_, Some(requested_by))) => Some(Pair::Pending { requested_by }),
            _ => None,
        })
    }

    /// How many entries (accepted and pending) `user`'s friend list has.
    async fn edge_count(&self, user: UserId) -> Result<usize> {
        let rows = self
            .session
            .execute_unpaged(&self.count_edges, (user,))
            .await
            .map_err(cql)?
            .into_rows_result()
            .map_err(decode("count"))?;
        let (count,) = rows.first_row::<(i64,)>().map_err(decode("count row"))?;
        Ok(usize::try_from(count).unwrap_or(0))
    }

    /// Writes both sides' list entries in one logged batch: either both land or neither.
    async fn write_edges(
        &self,
        (a, a_state): (UserId, FriendState),
        (b, b_state): (UserId, FriendState),
    ) -> Result<()> {
        let mut batch = Batch::new(BatchType::Logged);
        batch.append_statement(self.upsert_edge.clone());
        batch.append_statement(self.upsert_edge.clone());
        let ts = CqlTimestamp(now_ms());
        self.session
            .batch(
                &batch,
                ((a, b, a_state.as_str(), ts), (b, a, b_state.as_str(), ts)),
            )
            .await
            .map_err(cql)?;
        Ok(())
    }

    async fn delete_edges(&self, a: UserId, b: UserId) -> Result<()> {
        let mut batch = Batch::new(BatchType::Logged);
        batch.append_statement(self.delete_edge.clone());
        batch.append_statement(self.delete_edge.clone());
        self.session
            .batch(&batch, ((a, b), (b, a)))
            .await
            .map_err(cql)?;
        Ok(())
    }

    /// `me` asks `other` to be friends, or accepts `other`'s request. `other` must have a
    /// profile; neither side may pass [`MAX_FRIENDS`].
    pub async fn request(&self, me: UserId, other: UserId) -> Result<RequestOutcome> {
        if me == other {
            return Err(Error::SelfFriendship);
        }
        if self.profile(other).await?.is_none() {
            return Err(Error::UnknownUser(other));
        }
        let (lo, hi) = pair_key(me, other);
        for _ in 0..MAX_LWT_ATTEMPTS {
            // Read, decide, then write on the condition that nothing changed in between; if
            // another change won the race, read again.
            match self.pair(me, other).await? {
                Some(Pair::Accepted { .. }) => return Ok(RequestOutcome::AlreadyFriends),
                Some(Pair::Pending { requested_by }) if requested_by == me => {
                    return Ok(RequestOutcome::AlreadyRequested);
                }
                Some(Pair::Pending { requested_by }) => {
                    let result = self
                        .session
                        .execute_unpaged(
                            &self.accept_pair,
                            (CqlTimestamp(now_ms()), lo, hi, requested_by),
                        )
                        .await
                        .map_err(cql)?;
                    if applied(result)? {
                        self.write_edges(
                            (me, FriendState::Accepted),
                            (other, FriendState::Accepted),
                        )
                        .await?;
                        // Their request to me is no longer pending.
                        self.pending.release(&self.session, me).await?;
                        return Ok(RequestOutcome::Accepted);
                    }
                }
                None => {
                    for user in [me, other] {
                        if self.edge_count(user).await? >= MAX_FRIENDS {
                            return Err(Error::FriendCap {
                                user,
                                cap: MAX_FRIENDS,
                            });
                        }
                    }
                    // A slot among their pending requests first: a request that does not fit
                    // is never written.
                    if !(self.pending)
                        .reserve(&self.session, other, self.max_pending)
                        .await?
                    {
                        return Err(Error::PendingCap {
                            user: other,
                            cap: self.max_pending,
                        });
                    }
                    let result = self
                        .session
                        .execute_unpaged(&self.insert_pair, (lo, hi, me, CqlTimestamp(now_ms())))
                        .await
                        .map_err(cql)?;
                    if applied(result)? {
                        self.write_edges(
                            (me, FriendState::Outgoing),
                            (other, FriendState::Incoming),
                        )
                        .await?;
                        return Ok(RequestOutcome::Requested);
                    }
                    // Someone else's change won: the slot goes back before reading again.
                    self.pending.release(&self.session, other).await?;
                }
            }
        }
        Err(Error::Contention { a: me, b: other })
    }

    /// `me` ends whatever is between `me` and `other`: unfriend, withdraw or decline.
    pub async fn remove(&self, me: UserId, other: UserId) -> Result<RemoveOutcome> {
        let (lo, hi) = pair_key(me, other);
        for _ in 0..MAX_LWT_ATTEMPTS {
            let Some(pair) = self.pair(me, other).await? else {
                // Nothing to undo; clear any list entry a crash may have left behind.
                self.delete_edges(me, other).await?;
                return Ok(RemoveOutcome::NotFound);
            };
            let (state, requested_by, outcome) = match pair {
                Pair::Accepted { requested_by } => {
                    ("accepted", requested_by, RemoveOutcome::Unfriended)
                }
                Pair::Pending { requested_by } if requested_by == me => {
                    ("pending", requested_by, RemoveOutcome::Withdrawn)
                }
                Pair::Pending { requested_by } => {
                    ("pending", requested_by, RemoveOutcome::Declined)
                }
            };
            let result = self
                .session
                .execute_unpaged(&self.delete_pair, (lo, hi, state, requested_by))
                .await
                .map_err(cql)?;
            if applied(result)? {
                self.delete_edges(me, other).await?;
                // A withdrawn or declined request frees a slot of whoever received it.
                match outcome {
                    RemoveOutcome::Withdrawn => self.pending.release(&self.session, other).await?,
                    RemoveOutcome::Declined => self.pending.release(&self.session, me).await?,
                    _ => {}
                }
                return Ok(outcome);
            }
        }
        Err(Error::Contention { a: me, b: other })
    }
}
