//! The user store's tables, created idempotently in a given keyspace.

use scylla::client::session::Session;

use crate::Result;
use crate::cql::{create_keyspace, validate_keyspace};

/// Creates the keyspace (replication factor `replication`) and the user store's tables if they
/// are missing. Safe to run at every start.
pub async fn create_schema(session: &Session, keyspace: &str, replication: u32) -> Result<()> {
    validate_keyspace(keyspace)?;
    create_keyspace(session, keyspace, replication).await?;
    let tables = [
        // One row a person. `name` defaults to the id at creation; sharing starts on.
        format!(
            "CREATE TABLE IF NOT EXISTS {keyspace}.users (
                user_id bigint PRIMARY KEY,
                name text,
                avatar_url text,
                sharing boolean,
                created_at timestamp)"
        ),
        // The truth about a pair (lo < hi): 'pending' (asked by requested_by) or 'accepted'.
        format!(
            "CREATE TABLE IF NOT EXISTS {keyspace}.friend_pairs (
                lo bigint,
                hi bigint,
                state text,
                requested_by bigint,
                updated_at timestamp,
                PRIMARY KEY ((lo, hi)))"
        ),
        // Each person's view of their pairs: 'accepted', 'outgoing' or 'incoming'.
        format!(
            "CREATE TABLE IF NOT EXISTS {keyspace}.friends_by_user (
                user_id bigint,
                friend_id bigint,
                state text,
                since timestamp,
                PRIMARY KEY (user_id, friend_id))"
        ),
        // Pending incoming requests per person, moved only by compare-and-set (the cap), and
        // when the count last moved.
        format!(
            "CREATE TABLE IF NOT EXISTS {keyspace}.pending_requests (
                user_id bigint PRIMARY KEY,
                n int,
                at timestamp)"
        ),
    ];
    for cql in tables {
        session
            .query_unpaged(cql, &[])
            .await
            .map_err(|e| crate::Error::Cql(Box::new(e)))?;
    }
    Ok(())
}
