//! Fresh names and ids, so that runs never collide and a developer's stack can stay up between
//! them: topic prefixes, keyspaces, consumer groups, Redis keys and user ids.

/// A fresh name: `prefix` and 16 random hex digits (valid in a topic, keyspace, group or key
/// when `prefix` is).
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}{}", &id[..16])
}

/// A fresh topic prefix, `test.<random>`.
pub fn topic_prefix() -> String {
    unique("test.")
}

/// A random user id, well above hand-made small ones.
pub fn user() -> i64 {
    i64::from(rand::random::<u32>()) + 1_000
}

/// A random base for a run's many user ids (`base + i`), far from small hand-made ids and from
/// other runs.
pub fn user_base() -> i64 {
    use rand::Rng;
    rand::rng().random_range(1_000_000_000_000_i64..4_000_000_000_000_000_000)
}
