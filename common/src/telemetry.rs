//! Logging for the binaries: `tracing` to stderr, filtered by `RUST_LOG` (default `info`), as
//! text for people or, with `NEARBY_LOG_FORMAT=json`, one JSON object a line (its fields as
//! keys) for a log pipeline.

/// Installs the process's log subscriber. Call once, first thing in `main`.
pub fn init() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match std::env::var("NEARBY_LOG_FORMAT").as_deref() {
        Ok("json") => builder.json().flatten_event(true).init(),
        Ok("text") | Err(_) => builder.init(),
        Ok(other) => {
            builder.init();
            tracing::warn!(
                format = other,
                "NEARBY_LOG_FORMAT must be `text` or `json`: logging as text"
            );
        }
    }
}
