//! Fanout in tests: the command line of an instance of a test's own ([`args`]) and a distance
//! comparison for the core's tests ([`close`]). The running instance is a
//! [`TestStage`](crate::TestStage) of `nearby_fanout::service::FanoutService`.

use crate::names::unique;

/// The command line of a fanout instance on `prefix` and `keyspace` in a fresh group, sweeping
/// every 200 ms, with `extra` settings.
pub fn args(prefix: &str, keyspace: &str, extra: &[&str]) -> Vec<String> {
    let own = [
        format!("--group-id={}", unique("test-fanout-")),
        "--sweep-interval=200ms".to_owned(),
    ];
    crate::stage::args("nearby-fanout", prefix, keyspace, &own, extra)
}

/// Whether `got` is within 0.3 % (or a centimetre, for tiny distances) of `exact`.
pub fn close(got: f64, exact: f64) -> bool {
    (got - exact).abs() <= (exact * 0.003).max(0.01)
}
