-- Accounts and the transfer ledger. Money is integer cents. Ledger rows are history, so an
-- account with transfers cannot be deleted (RESTRICT), as on the other backends.
CREATE TABLE accounts (
    id             BLOB    NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    owner_id       BLOB    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    balance_cents  INTEGER NOT NULL CONSTRAINT accounts_balance_cents_check CHECK (balance_cents >= 0),
    created_at     TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now') || '000')
) STRICT;
CREATE INDEX accounts_owner_id_idx ON accounts (owner_id);

CREATE TABLE transfers (
    id               BLOB    NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    from_account     BLOB    NOT NULL REFERENCES accounts (id) ON DELETE RESTRICT,
    to_account       BLOB    NOT NULL REFERENCES accounts (id) ON DELETE RESTRICT,
    amount_cents     INTEGER NOT NULL CONSTRAINT transfers_amount_cents_check CHECK (amount_cents > 0),
    idempotency_key  TEXT    NOT NULL CHECK (length(idempotency_key) <= 100),
    created_at       TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now') || '000'),
    CONSTRAINT transfers_distinct_accounts_check CHECK (from_account <> to_account),
    CONSTRAINT transfers_idempotency_key_key UNIQUE (idempotency_key)
) STRICT;
CREATE INDEX transfers_from_account_idx ON transfers (from_account);
CREATE INDEX transfers_to_account_idx ON transfers (to_account);
