-- Users and their jobs. STRICT tables, so a value of the wrong type is refused as on the servers.
-- SQLite does not enforce VARCHAR lengths, so CHECK constraints do; ids are 16-byte BLOBs;
-- times are fixed-width UTC text 'YYYY-MM-DD HH:MM:SS.ffffff' (text order = time order).
CREATE TABLE users (
    id          BLOB NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    name        TEXT NOT NULL CHECK (length(name) <= 100),
    email       TEXT NOT NULL CHECK (length(email) <= 255),
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now') || '000'),
    CONSTRAINT users_email_key UNIQUE (email)
) STRICT;
CREATE INDEX users_created_at_id_idx ON users (created_at, id);

CREATE TABLE jobs (
    id            BLOB    NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    user_id       BLOB    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title         TEXT    NOT NULL CHECK (length(title) <= 200),
    salary_cents  INTEGER NOT NULL CONSTRAINT jobs_salary_cents_check CHECK (salary_cents >= 0),
    created_at    TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now') || '000')
) STRICT;
CREATE INDEX jobs_user_id_idx ON jobs (user_id);
