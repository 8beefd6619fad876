//! Ingest's settings: validation limits, the per-user rate limit, and the producer's bounds,
//! read from flags or `NEARBY_INGEST_*` environment variables (a `clap` argument group that the
//! gateway flattens into its own config).

use std::time::Duration;

use crate::error::{IngestError, Result};
use crate::rate_limit::RateLimit;
use crate::report::ValidationLimits;

/// Default burst: ten reports at once covers a reconnect that replays a few queued positions.
const DEFAULT_RATE_BURST: u32 = 10;
/// Default sustained rate: phones report every ~30 s, so 1/s is 30× headroom.
const DEFAULT_RATE_PER_SEC: f64 = 1.0;
/// Default cap on tracked users: a few times the sockets one gateway holds, ~10 MB at most.
const DEFAULT_RATE_MAX_USERS: usize = 200_000;
/// Default bound of librdkafka's queue (its own default), a few MB of small records.
const DEFAULT_QUEUE_MAX_MESSAGES: u32 = 100_000;

/// How ingest checks, limits and produces reports.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct IngestConfig {
    /// How far ahead of the server clock a report's `ts` may be (device clocks drift).
    #[arg(long, env = "NEARBY_INGEST_MAX_FUTURE_SKEW", default_value = "60s", value_parser = humantime::parse_duration)]
    pub ingest_max_future_skew: Duration,

    /// How old a live report's `ts` may be (the batch-upload path allows more).
    #[arg(long, env = "NEARBY_INGEST_MAX_AGE", default_value = "24h", value_parser = humantime::parse_duration)]
    pub ingest_max_age: Duration,

    /// Reports a user may send at once (the token bucket's size).
    #[arg(long, env = "NEARBY_INGEST_RATE_BURST", default_value_t = DEFAULT_RATE_BURST, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub ingest_rate_burst: u32,

    /// Sustained reports per second per user (the bucket's refill rate), e.g. `1` or `0.5`.
    #[arg(long, env = "NEARBY_INGEST_RATE_PER_SEC", default_value_t = DEFAULT_RATE_PER_SEC, value_parser = parse_rate)]
    pub ingest_rate_per_sec: f64,

    /// The most users whose rate-limit state is kept in memory; idle ones are dropped first.
    #[arg(long, env = "NEARBY_INGEST_RATE_MAX_USERS", default_value_t = DEFAULT_RATE_MAX_USERS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000_000))]
    pub ingest_rate_max_users: usize,

    /// Records the producer may hold unsent (librdkafka's `queue.buffering.max.messages`).
    #[arg(long, env = "NEARBY_INGEST_QUEUE_MAX_MESSAGES", default_value_t = DEFAULT_QUEUE_MAX_MESSAGES, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub ingest_queue_max_messages: u32,

    /// How long a report waits for room in a full producer queue before it fails.
    #[arg(long, env = "NEARBY_INGEST_QUEUE_FULL_WAIT", default_value = "1s", value_parser = humantime::parse_duration)]
    pub ingest_queue_full_wait: Duration,

    /// How long the producer tries to deliver a record before it fails
    /// (librdkafka's `message.timeout.ms`).
    #[arg(long, env = "NEARBY_INGEST_DELIVERY_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub ingest_delivery_timeout: Duration,
}

impl Default for IngestConfig {
    /// The same values as the flags' defaults.
    fn default() -> Self {
        Self {
            ingest_max_future_skew: ValidationLimits::LIVE.max_future_skew,
            ingest_max_age: ValidationLimits::LIVE.max_age,
            ingest_rate_burst: DEFAULT_RATE_BURST,
            ingest_rate_per_sec: DEFAULT_RATE_PER_SEC,
            ingest_rate_max_users: DEFAULT_RATE_MAX_USERS,
            ingest_queue_max_messages: DEFAULT_QUEUE_MAX_MESSAGES,
            ingest_queue_full_wait: Duration::from_secs(1),
            ingest_delivery_timeout: Duration::from_secs(30),
        }
    }
}

impl IngestConfig {
    /// The limits live (socket) reports are checked against.
    pub fn live_limits(&self) -> ValidationLimits {
        ValidationLimits {
            max_future_skew: self.ingest_max_future_skew,
            max_age: self.ingest_max_age,
        }
    }

    /// The per-user rate limit.
    pub fn rate_limit(&self) -> RateLimit {
        RateLimit {
            burst: self.ingest_rate_burst,
            per_second: self.ingest_rate_per_sec,
            max_users: self.ingest_rate_max_users,
        }
    }

    /// Checks the rules flags cannot express alone, for configs built in code too.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(IngestError::Config(why));
        if self.ingest_rate_burst == 0 {
            return bad("ingest-rate-burst must be at least 1".into());
        }
        if let Err(why) = check_rate(self.ingest_rate_per_sec) {
            return bad(format!("ingest-rate-per-sec: {why}"));
        }
        if self.ingest_rate_max_users == 0 {
            return bad("ingest-rate-max-users must be at least 1".into());
        }
        if self.ingest_queue_max_messages == 0 {
            return bad("ingest-queue-max-messages must be at least 1".into());
        }
        // librdkafka refuses message.timeout.ms outside 1 ms ..= i32::MAX ms, and it must
        // exceed linger.ms (0 in the shared producer config).
        let delivery_ms = self.ingest_delivery_timeout.as_millis();
        if !(100..=i32::MAX as u128).contains(&delivery_ms) {
            return bad(format!(
                "ingest-delivery-timeout must be between 100ms and ~24 days, got {}",
                humantime::format_duration(self.ingest_delivery_timeout)
            ));
        }
        if self.ingest_queue_full_wait >= self.ingest_delivery_timeout {
            return bad(format!(
                "ingest-queue-full-wait ({}) must be shorter than ingest-delivery-timeout ({}): \
                 waiting for queue room is meant to be brief",
                humantime::format_duration(self.ingest_queue_full_wait),
                humantime::format_duration(self.ingest_delivery_timeout)
            ));
        }
        Ok(())
    }
}

/// Parses a positive, finite reports-per-second rate.
fn parse_rate(s: &str) -> std::result::Result<f64, String> {
    let rate: f64 = s.trim().parse().map_err(|e| format!("not a number: {e}"))?;
    check_rate(rate).map(|()| rate)
}

/// A rate must be finite and between one report a day and a billion a second.
fn check_rate(rate: f64) -> std::result::Result<(), String> {
    const MIN: f64 = 1.0 / 86_400.0;
    if rate.is_finite() && (MIN..=1e9).contains(&rate) {
        Ok(())
    } else {
        Err(format!(
            "must be a number of reports per second between 1/86400 and 1e9, got {rate}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        ingest: IngestConfig,
    }

    #[test]
    fn flag_defaults_match_default_and_are_valid() {
        // Only meaningful when no NEARBY_INGEST_* variable is set in the test's environment.
        if std::env::vars().any(|(k, _)| k.starts_with("NEARBY_INGEST_")) {
            return;
        }
        let cli = Cli::try_parse_from(["ingest"]).expect("defaults parse");
        assert_eq!(cli.ingest, IngestConfig::default());
        assert!(cli.ingest.validate().is_ok());
        assert_eq!(cli.ingest.live_limits(), ValidationLimits::LIVE);
    }

    #[test]
    fn flags_parse_durations_and_rates() {
        let cli = Cli::try_parse_from([
            "ingest",
            "--ingest-max-age",
            "7d",
            "--ingest-rate-per-sec",
            "0.5",
            "--ingest-rate-burst",
            "3",
        ])
        .expect("parses");
        assert_eq!(cli.ingest.ingest_max_age, Duration::from_secs(7 * 86_400));
        assert_eq!(cli.ingest.rate_limit().per_second, 0.5);
        assert_eq!(cli.ingest.rate_limit().burst, 3);
        for bad in [
            ["--ingest-rate-per-sec", "0"],
            ["--ingest-rate-per-sec", "NaN"],
            ["--ingest-rate-per-sec", "-1"],
            ["--ingest-rate-burst", "0"],
            ["--ingest-rate-max-users", "0"],
            ["--ingest-max-age", "soon"],
        ] {
            assert!(
                Cli::try_parse_from(["ingest", bad[0], bad[1]]).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn cross_field_rules_are_checked_with_a_clear_message() {
        let config = IngestConfig {
            ingest_queue_full_wait: Duration::from_secs(60),
            ..IngestConfig::default()
        };
        let err = config.validate().expect_err("wait longer than delivery");
        assert!(err.to_string().contains("ingest-queue-full-wait"), "{err}");
        let config = IngestConfig {
            ingest_rate_per_sec: f64::INFINITY,
            ..IngestConfig::default()
        };
        assert!(config.validate().is_err());
        let config = IngestConfig {
            ingest_delivery_timeout: Duration::from_millis(1),
            ..IngestConfig::default()
        };
        assert!(config.validate().is_err());
    }
}
