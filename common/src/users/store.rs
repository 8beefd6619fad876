//! `UserStore`: prepared statements over the user store's tables, profiles, friend lists and
//! the bulk setup of load tests. The friendship state machine is in [`super::friendship`].

use crate::clock::now_ms;

use futures::TryStreamExt;
use scylla::client::session::Session;
use scylla::response::query_result::QueryResult;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlTimestamp, Row};

use super::friendship::pair_key;
use super::pending::PendingCounts;
use super::{DEFAULT_MAX_PENDING, MAX_FRIENDS};
use crate::cql::validate_keyspace;
use crate::{Error, Result, UserId};

/// A person's profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The user id (the token's `sub`).
    pub user_id: UserId,
    /// Display name; the id until the person sets one.
    pub name: String,
    /// Avatar picture address, if set.
    pub avatar_url: Option<String>,
    /// Whether the person shares their location with friends.
    pub sharing: bool,
    /// When the profile was created, epoch ms.
    pub created_at: i64,
}

/// A change to a profile; `None` fields are left as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileUpdate {
    /// A new display name.
    pub name: Option<String>,
    /// A new avatar address (`Some(None)` clears it).
    pub avatar_url: Option<Option<String>>,
}

/// Where a pair stands, seen from one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FriendState {
    /// Friends: both see each other's position while sharing.
    Accepted,
    /// I asked; they have not answered.
    Outgoing,
    /// They asked me; I have not answered.
    Incoming,
}

impl FriendState {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Outgoing => "outgoing",
            Self::Incoming => "incoming",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "accepted" => Some(Self::Accepted),
            "outgoing" => Some(Self::Outgoing),
            "incoming" => Some(Self::Incoming),
            _ => None,
        }
    }
}

/// One entry of a person's friend list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FriendEdge {
    /// The other person.
    pub friend_id: UserId,
    /// Where the pair stands, from the list owner's side.
    pub state: FriendState,
    /// When it got there, epoch ms.
    pub since: i64,
}

/// What `request` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    /// A new request: the other person must accept.
    Requested,
    /// The other person had asked: now friends.
    Accepted,
    /// I had asked already; still pending.
    AlreadyRequested,
    /// Already friends.
    AlreadyFriends,
}

/// What `remove` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveOutcome {
    /// Were friends; no longer.
    Unfriended,
    /// My pending request is withdrawn.
    Withdrawn,
    /// Their pending request is declined.
    Declined,
    /// There was nothing between us.
    NotFound,
}

/// The user store's statements, prepared once against one keyspace.
#[derive(Debug)]
pub struct UserStore {
    pub(super) session: Session,
    /// The keyspace the statements were prepared against (validated).
    pub(super) keyspace: String,
    pub(super) insert_profile: PreparedStatement,
    pub(super) get_profile: PreparedStatement,
    pub(super) set_name: PreparedStatement,
    pub(super) set_avatar: PreparedStatement,
    pub(super) set_sharing: PreparedStatement,
    pub(super) get_pair: PreparedStatement,
    pub(super) insert_pair: PreparedStatement,
    pub(super) accept_pair: PreparedStatement,
    pub(super) delete_pair: PreparedStatement,
    pub(super) upsert_edge: PreparedStatement,
    pub(super) delete_edge: PreparedStatement,
    pub(super) list_edges: PreparedStatement,
    pub(super) count_edges: PreparedStatement,
    pub(super) pending: PendingCounts,
    /// Pending incoming requests one user may hold.
    pub(super) max_pending: usize,
}

pub(super) fn cql(e: scylla::errors::ExecutionError) -> Error {
    Error::Cql(Box::new(e))
}

pub(super) fn decode<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> Error {
    move |e| Error::CqlDecode(format!("{what}: {e}"))
}

/// Whether a conditional statement (`... IF ...`) was applied: the first column of its row.
pub(super) fn applied(result: QueryResult) -> Result<bool> {
    let rows = result.into_rows_result().map_err(decode("LWT result"))?;
    let row: Row = rows.first_row().map_err(decode("LWT row"))?;
    Ok(row
        .columns
        .first()
        .and_then(|c| c.as_ref())
        .and_then(|v| v.as_boolean())
        .unwrap_or(false))
}

impl UserStore {
    /// Prepares the statements against `keyspace`, whose tables must exist
    /// ([`create_schema`](super::create_schema)).
    pub async fn new(session: Session, keyspace: &str) -> Result<Self> {
        validate_keyspace(keyspace)?;
        let ks = keyspace;
        let prepare = async |cql: String| -> Result<PreparedStatement> {
            session
                .prepare(cql)
                .await
                .map_err(|e| Error::CqlPrepare(Box::new(e)))
        };
        Ok(Self {
            insert_profile: prepare(format!(
                "INSERT INTO {ks}.users (user_id, name, sharing, created_at) VALUES (?, ?, true, ?) IF NOT EXISTS"
            )).await?,
            get_profile: prepare(format!(
                "SELECT user_id, name, avatar_url, sharing, created_at FROM {ks}.users WHERE user_id = ?"
            )).await?,
            set_name: prepare(format!("UPDATE {ks}.users SET name = ? WHERE user_id = ?")).await?,
            set_avatar: prepare(format!("UPDATE {ks}.users SET avatar_url = ? WHERE user_id = ?")).await?,
            set_sharing: prepare(format!("UPDATE {ks}.users SET sharing = ? WHERE user_id = ?")).await?,
            get_pair: {
                let mut s = prepare(format!(
                    "SELECT state, requested_by FROM {ks}.friend_pairs WHERE lo = ? AND hi = ?"
                )).await?;
                // A linearizable read: it sees every transaction that completed before it.
                s.set_consistency(scylla::statement::Consistency::Serial);
                s
            },
            insert_pair: prepare(format!(
                "INSERT INTO {ks}.friend_pairs (lo, hi, state, requested_by, updated_at) \
                 VALUES (?, ?, 'pending', ?, ?) IF NOT EXISTS"
            )).await?,
            accept_pair: prepare(format!(
                "UPDATE {ks}.friend_pairs SET state = 'accepted', updated_at = ? \
                 WHERE lo = ? AND hi = ? IF state = 'pending' AND requested_by = ?"
            )).await?,
            delete_pair: prepare(format!(
                "DELETE FROM {ks}.friend_pairs WHERE lo = ? AND hi = ? IF state = ? AND requested_by = ?"
            )).await?,
            upsert_edge: prepare(format!(
                "INSERT INTO {ks}.friends_by_user (user_id, friend_id, state, since) VALUES (?, ?, ?, ?)"
            )).await?,
            delete_edge: prepare(format!(
                "DELETE FROM {ks}.friends_by_user WHERE user_id = ? AND friend_id = ?"
            )).await?,
            list_edges: prepare(format!(
                "SELECT friend_id, state, since FROM {ks}.friends_by_user WHERE user_id = ?"
            )).await?,
            count_edges: prepare(format!(
                "SELECT COUNT(*) FROM {ks}.friends_by_user WHERE user_id = ?"
            )).await?,
            pending: PendingCounts::prepare(&session, ks).await?,
            max_pending: DEFAULT_MAX_PENDING,
            keyspace: ks.to_owned(),
            session,
        })
    }

    /// Caps the pending incoming requests one user may hold at `cap` (default
    /// [`DEFAULT_MAX_PENDING`]); a request beyond gets [`Error::PendingCap`].
    #[must_use]
    pub fn max_pending(mut self, cap: usize) -> Self {
        self.max_pending = cap;
        self
    }

    /// The profile of `user`, created on first sight (sharing on, name = the id).
    pub async fn ensure_profile(&self, user: UserId) -> Result<Profile> {
        if let Some(p) = self.profile(user).await? {
            return Ok(p);
        }
        // IF NOT EXISTS: two first calls at once create one profile, not two half-ones.
        self.session
            .execute_unpaged(
                &self.insert_profile,
                (user, user.to_string(), CqlTimestamp(now_ms())),
            )
            .await
            .map_err(cql)?;
        self.profile(user).await?.ok_or(Error::UnknownUser(user))
    }

    /// The profile of `user`, if it exists.
    pub async fn profile(&self, user: UserId) -> Result<Option<Profile>> {
        let rows = self
            .session
            .execute_unpaged(&self.get_profile, (user,))
            .await
            .map_err(cql)?
            .into_rows_result()
            .map_err(decode("profile"))?;
        let row = rows
            .maybe_first_row::<(
                i64,
                Option<String>,
                Option<String>,
                Option<bool>,
                Option<CqlTimestamp>,
            )>()
            .map_err(decode("profile row"))?;
        Ok(
            row.map(|(user_id, name, avatar_url, sharing, created_at)| Profile {
                user_id,
                name: name.unwrap_or_else(|| user_id.to_string()),
                avatar_url,
                sharing: sharing.unwrap_or(true),
                created_at: created_at.map_or(0, |t| t.0),
            }),
        )
    }

    /// Changes name and/or avatar of an existing profile.
    pub async fn update_profile(&self, user: UserId, update: &ProfileUpdate) -> Result<Profile> {
        self.ensure_profile(user).await?;
        if let Some(name) = &update.name {
            self.session
                .execute_unpaged(&self.set_name, (name, user))
                .await
                .map_err(cql)?;
        }
        if let Some(avatar) = &update.avatar_url {
            self.session
                .execute_unpaged(&self.set_avatar, (avatar, user))
                .await
                .map_err(cql)?;
        }
        self.profile(user).await?.ok_or(Error::UnknownUser(user))
    }

    /// Turns location sharing on or off.
    pub async fn set_sharing(&self, user: UserId, enabled: bool) -> Result<()> {
        self.ensure_profile(user).await?;
        self.session
            .execute_unpaged(&self.set_sharing, (enabled, user))
            .await
            .map_err(cql)?;
        Ok(())
    }

    /// Every entry of `user`'s friend list (accepted and pending), at most [`MAX_FRIENDS`]
    /// plus a margin for races, ordered by friend id.
    pub async fn friends(&self, user: UserId) -> Result<Vec<FriendEdge>> {
        let pager = self
            .session
            .execute_iter(self.list_edges.clone(), (user,))
            .await
            .map_err(|e| Error::CqlPaging(e.to_string()))?;
        let mut rows = pager
            .rows_stream::<(i64, Option<String>, Option<CqlTimestamp>)>()
            .map_err(decode("friends"))?;
        let mut edges = Vec::new();
        while let Some((friend_id, state, since)) = rows
            .try_next()
            .await
            .map_err(|e| Error::CqlPaging(e.to_string()))?
        {
            if let Some(state) = state.as_deref().and_then(FriendState::parse) {
                edges.push(FriendEdge {
                    friend_id,
                    state,
                    since: since.map_or(0, |t| t.0),
                });
            }
            if edges.len() >= 2 * MAX_FRIENDS {
                break;
            }
        }
        Ok(edges)
    }

    /// Bulk setup for benchmarks and load tests: creates a profile (name = the id, sharing on)
    /// for each of `users` with plain inserts, at most `concurrency` in flight.
    ///
    /// **Only for ids that are new to the store** (a load generator's fresh random range): the
    /// inserts are unconditional and overwrite whatever profile an id had, unlike
    /// [`ensure_profile`](Self::ensure_profile)'s `IF NOT EXISTS`.
    pub async fn bulk_create_profiles(&self, users: &[UserId], concurrency: usize) -> Result<()> {
        use futures::StreamExt;
        let ks = &self.keyspace;
        let insert = self
            .session
            .prepare(format!(
                "INSERT INTO {ks}.users (user_id, name, sharing, created_at) VALUES (?, ?, true, ?)"
            ))
            .await
            .map_err(|e| Error::CqlPrepare(Box::new(e)))?;
        let created = CqlTimestamp(now_ms());
        // Bounded: enough writes in flight to keep the store busy, few enough not to time out.
        let mut writes = futures::stream::iter(users)
            .map(|&user| {
                let insert = &insert;
                async move {
                    self.session
                        .execute_unpaged(insert, (user, user.to_string(), created))
                        .await
                        .map_err(cql)
                }
            })
            .buffer_unordered(concurrency.max(1));
        while let Some(result) = writes.next().await {
            result?;
        }
        Ok(())
    }

    /// Bulk setup for benchmarks and load tests: makes each of `pairs` accepted friends at once,
    /// writing the `friend_pairs` row (`accepted`, asked by the first of the pair) and both
    /// `friends_by_user` rows with plain inserts — no lightweight transaction, no friend cap, no
    /// friendship event — at most `concurrency` pairs in flight.
    ///
    /// **Only for ids that are new to the store and pairs written once**: mixing these plain
    /// writes with the lightweight transactions of [`request`](Self::request) and
    /// [`remove`](Self::remove) on the same pairs is not safe (Paxos state would not see them),
    /// and nothing announces the friendships, so they must exist before any fanout or gateway
    /// reads these users (a fanout loads a user's friends when the user becomes active).
    pub async fn bulk_befriend(
        &self,
        pairs: &[(UserId, UserId)],
        concurrency: usize,
    ) -> Result<()> {
        use futures::StreamExt;
        let ks = &self.keyspace;
        let insert_pair = self
            .session
            .prepare(format!(
                "INSERT INTO {ks}.friend_pairs (lo, hi, state, requested_by, updated_at) \
                 VALUES (?, ?, 'accepted', ?, ?)"
            ))
            .await
            .map_err(|e| Error::CqlPrepare(Box::new(e)))?;
        let since = CqlTimestamp(now_ms());
        // Bounded for the same reason as the profiles; each pair's three rows go at once.
        let mut writes = futures::stream::iter(pairs)
            .map(|&(a, b)| {
                let insert_pair = &insert_pair;
                async move {
                    if a == b {
                        return Err(Error::SelfFriendship);
                    }
                    let (lo, hi) = pair_key(a, b);
                    let accepted = FriendState::Accepted.as_str();
                    tokio::try_join!(
                        self.session
                            .execute_unpaged(insert_pair, (lo, hi, a, since)),
                        self.session
                            .execute_unpaged(&self.upsert_edge, (a, b, accepted, since)),
                        self.session
                            .execute_unpaged(&self.upsert_edge, (b, a, accepted, since)),
                    )
                    .map_err(cql)?;
                    Ok(())
                }
            })
            .buffer_unordered(concurrency.max(1));
        while let Some(result) = writes.next().await {
            result?;
        }
        Ok(())
    }

    /// The ids of `user`'s accepted friends.
    pub async fn accepted_friends(&self, user: UserId) -> Result<Vec<UserId>> {
        Ok(self
            .friends(user)
            .await?
            .into_iter()
            .filter(|e| e.state == FriendState::Accepted)
            .map(|e| e.friend_id)
            .collect())
    }
}
