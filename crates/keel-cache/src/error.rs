//! The cache's error type.

/// What went wrong in a cache call. Reads never return these to the caller (they go to the
/// database instead); [`Cache::connect`](crate::Cache::connect), [`Cache::ping`](crate::Cache::ping)
/// and [`Cache::peek`](crate::Cache::peek) do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The Redis URL could not be used. Not retryable: fix the URL.
    #[error("invalid Redis URL {url}: {reason}")]
    InvalidUrl {
        /// The URL with any password replaced by `***`.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Redis answered with an error or the connection failed. Retrying may help.
    #[error("Redis at {server} failed: {message}")]
    Redis {
        /// `host:port` of the server (never credentials).
        server: String,
        /// Redis's message.
        message: String,
    },
    /// The call took longer than [`CacheConfig::timeout`](crate::CacheConfig::timeout). Retrying
    /// may help.
    #[error("Redis at {server} did not answer within {timeout_ms} ms")]
    Timeout {
        /// `host:port` of the server.
        server: String,
        /// The timeout that elapsed.
        timeout_ms: u64,
    },
    /// The circuit breaker is open after consecutive failures: the call was not sent. It
    /// closes by itself once a probe succeeds.
    #[error("Redis at {server} is skipped: the circuit breaker is open after repeated failures")]
    BreakerOpen {
        /// `host:port` of the server.
        server: String,
    },
    /// A cached value could not be encoded or decoded (a type changed without a
    /// [`CacheConfig::version`](crate::CacheConfig::version) bump). The caller reads the database.
    #[error("cached value for {key} could not be (de)serialized: {message}")]
    Codec {
        /// The key.
        key: String,
        /// serde's message.
        message: String,
    },
}

impl Error {
    /// The error's name in snake_case (for logs and metrics).
    pub fn as_str(&self) -> &'static str {
        match self {
            Error::InvalidUrl { .. } => "invalid_url",
            Error::Redis { .. } => "redis",
            Error::Timeout { .. } => "timeout",
            Error::BreakerOpen { .. } => "breaker_open",
            Error::Codec { .. } => "codec",
        }
    }
}
