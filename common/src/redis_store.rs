//! The Redis connection used for the latest-location cache.

use redis::aio::ConnectionManager;

use crate::Result;

/// A reconnecting, multiplexed Redis connection: cheap to clone, one socket shared by all tasks.
pub async fn connect(url: &str) -> Result<ConnectionManager> {
    let client = redis::Client::open(url)?;
    Ok(ConnectionManager::new(client).await?)
}
