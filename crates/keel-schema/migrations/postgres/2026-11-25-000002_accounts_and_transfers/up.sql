-- Accounts and the transfer ledger. Money is integer cents.
CREATE TABLE accounts (
    id             uuid        PRIMARY KEY,
    owner_id       uuid        NOT NULL,
    balance_cents  bigint      NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT accounts_owner_id_fkey FOREIGN KEY (owner_id) REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT accounts_balance_cents_check CHECK (balance_cents >= 0)
);
CREATE INDEX accounts_owner_id_idx ON accounts (owner_id);

-- Ledger rows are history: an account with transfers cannot be deleted (RESTRICT). MySQL 8 also
-- refuses CHECK constraints on columns of a cascading foreign key, and the schema is the same on
-- every backend.
CREATE TABLE transfers (
    id               uuid         PRIMARY KEY,
    from_account     uuid         NOT NULL,
    to_account       uuid         NOT NULL,
    amount_cents     bigint       NOT NULL,
    idempotency_key  varchar(100) NOT NULL,
    created_at       timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT transfers_from_account_fkey FOREIGN KEY (from_account) REFERENCES accounts (id) ON DELETE RESTRICT,
    CONSTRAINT transfers_to_account_fkey FOREIGN KEY (to_account) REFERENCES accounts (id) ON DELETE RESTRICT,
    CONSTRAINT transfers_amount_cents_check CHECK (amount_cents > 0),
    CONSTRAINT transfers_distinct_accounts_check CHECK (from_account <> to_account),
    CONSTRAINT transfers_idempotency_key_key UNIQUE (idempotency_key)
);
CREATE INDEX transfers_from_account_idx ON transfers (from_account);
CREATE INDEX transfers_to_account_idx ON transfers (to_account);
