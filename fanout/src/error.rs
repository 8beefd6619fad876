//! The crate's one error type.

/// What can go wrong in fanout's core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is out of its range; the message names the value and the range.
    #[error("invalid fanout configuration: {0}")]
    Config(String),
}

/// `Result` with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
