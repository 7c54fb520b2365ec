-- Users and their jobs. Ids are UUIDv7 as BINARY(16); times are UTC DATETIME(6).
-- Emails compare exactly (utf8mb4_bin), as on PostgreSQL and SQLite; names keep the default
-- case-insensitive collation for search.
CREATE TABLE users (
    id          BINARY(16)   NOT NULL,
    name        VARCHAR(100) NOT NULL,
    email       VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    created_at  DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id),
    CONSTRAINT users_email_key UNIQUE (email),
    INDEX users_created_at_id_idx (created_at, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE jobs (
    id            BINARY(16)   NOT NULL,
    user_id       BINARY(16)   NOT NULL,
    title         VARCHAR(200) NOT NULL,
    salary_cents  BIGINT       NOT NULL,
    created_at    DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id),
    INDEX jobs_user_id_idx (user_id),
    CONSTRAINT jobs_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT jobs_salary_cents_check CHECK (salary_cents >= 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
