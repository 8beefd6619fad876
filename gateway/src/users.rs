//! Friend lists and profiles read from the user store, cached where they are read (bounded in
//! size and time). Friend changes made through this gateway invalidate at once; changes made
//! elsewhere show after the cache TTL (friendship events will close that gap).

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use nearby_common::UserId;
use nearby_common::users::{Profile, UserStore};

/// The user store behind two bounded caches.
#[derive(Debug, Clone)]
pub struct Users {
    store: Arc<UserStore>,
    friends: Cache<UserId, Arc<Vec<UserId>>>,
    profiles: Cache<UserId, Arc<Profile>>,
}

impl Users {
    /// Caches of at most `capacity` users each, entries kept `ttl`.
    pub fn new(store: Arc<UserStore>, capacity: u64, ttl: Duration) -> Self {
        Self {
            store,
            friends: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
            profiles: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// The store itself, for writes.
    pub fn store(&self) -> &UserStore {
        &self.store
    }

    /// `user`'s accepted friends.
    pub async fn friends(&self, user: UserId) -> nearby_common::Result<Arc<Vec<UserId>>> {
        // try_get_with coalesces concurrent misses for one user into one store read.
        self.friends
            .try_get_with(user, async {
                self.store.accepted_friends(user).await.map(Arc::new)
            })
            .await
            .map_err(|e| nearby_common::Error::CqlDecode(e.to_string()))
    }

    /// `user`'s profile, if it exists.
    pub async fn profile(&self, user: UserId) -> nearby_common::Result<Option<Arc<Profile>>> {
        if let Some(p) = self.profiles.get(&user).await {
            return Ok(Some(p));
        }
        let Some(p) = self.store.profile(user).await? else {
            return Ok(None);
        };
        let p = Arc::new(p);
        self.profiles.insert(user, p.clone()).await;
        Ok(Some(p))
    }

    /// Forgets what is cached about `users` (after a change made here).
    pub async fn invalidate(&self, users: &[UserId]) {
        for u in users {
            self.friends.invalidate(u).await;
            self.profiles.invalidate(u).await;
        }
    }
}
