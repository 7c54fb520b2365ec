//! Column limits, the same on every backend. The migrations declare these lengths; SQLite does
//! not enforce `VARCHAR(n)`, so the repository checks them before writing.

/// `users.name` is `VARCHAR(100)` (characters, not bytes).
pub const USER_NAME_MAX_CHARS: usize = 100;
/// `users.email` is `VARCHAR(255)`.
pub const USER_EMAIL_MAX_CHARS: usize = 255;
/// `jobs.title` is `VARCHAR(200)`.
pub const JOB_TITLE_MAX_CHARS: usize = 200;
/// `transfers.idempotency_key` is `VARCHAR(100)`.
pub const IDEMPOTENCY_KEY_MAX_CHARS: usize = 100;
