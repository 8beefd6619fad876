//! The CQL session (Apache Cassandra locally, ScyllaDB in production; the `scylla` driver speaks
//! to both) and keyspace setup.

use std::time::Duration;

use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::{Consistency, SerialConsistency};

use crate::{Error, Result};

/// How long one CQL request may take before it fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a session to the given contact points.
///
/// Consistency lives in the session's default execution profile, not in each statement:
/// `LOCAL_QUORUM` for reads and writes and `LOCAL_SERIAL` for lightweight transactions, so a
/// multi-node cluster gives read-your-writes within a data centre.
pub async fn connect(nodes: &[String]) -> Result<Session> {
    let profile = ExecutionProfile::builder()
        .consistency(Consistency::LocalQuorum)
        .serial_consistency(Some(SerialConsistency::LocalSerial))
        .request_timeout(Some(REQUEST_TIMEOUT))
        .build();
    SessionBuilder::new()
        .known_nodes(nodes)
        .default_execution_profile_handle(profile.into_handle())
        .build()
        .await
        .map_err(|source| Error::CqlConnect {
            nodes: nodes.to_vec(),
            source: Box::new(source),
        })
}

/// Checks a keyspace name: CQL takes 1-48 letters, digits and underscores, starting with a letter.
pub fn validate_keyspace(name: &str) -> Result<()> {
    let ok = (1..=48).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidKeyspace(name.to_owned()))
    }
}

/// Creates `keyspace` with `SimpleStrategy` and the given replication factor, if missing.
pub async fn create_keyspace(session: &Session, keyspace: &str, replication: u32) -> Result<()> {
    validate_keyspace(keyspace)?;
    // The name is validated above; CQL cannot bind identifiers, so it is formatted in.
    let cql = format!(
        "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = \
         {{'class': 'SimpleStrategy', 'replication_factor': {replication}}}"
    );
    session
        .query_unpaged(cql, &[])
        .await
        .map_err(|e| Error::Cql(Box::new(e)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyspace_names() {
        assert!(validate_keyspace("nearby").is_ok());
        assert!(validate_keyspace("t_1234abcd").is_ok());
        for bad in ["", "1abc", "a-b", "a b", "x;drop", &"k".repeat(49)] {
            assert!(validate_keyspace(bad).is_err(), "{bad}");
        }
    }
}
