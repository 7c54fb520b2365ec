-- Accounts and the transfer ledger. Money is integer cents.
CREATE TABLE accounts (
    id             BINARY(16)  NOT NULL,
    owner_id       BINARY(16)  NOT NULL,
    balance_cents  BIGINT      NOT NULL,
    created_at     DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id),
    INDEX accounts_owner_id_idx (owner_id),
    CONSTRAINT accounts_owner_id_fkey FOREIGN KEY (owner_id) REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT accounts_balance_cents_check CHECK (balance_cents >= 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Ledger rows are history (ON DELETE RESTRICT); MySQL 8 refuses CHECK constraints on columns of a
-- cascading foreign key.
CREATE TABLE transfers (
    id               BINARY(16)   NOT NULL,
    from_account     BINARY(16)   NOT NULL,
    to_account       BINARY(16)   NOT NULL,
    amount_cents     BIGINT       NOT NULL,
    idempotency_key  VARCHAR(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    created_at       DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id),
    INDEX transfers_from_account_idx (from_account),
    INDEX transfers_to_account_idx (to_account),
    CONSTRAINT transfers_from_account_fkey FOREIGN KEY (from_account) REFERENCES accounts (id) ON DELETE RESTRICT,
    CONSTRAINT transfers_to_account_fkey FOREIGN KEY (to_account) REFERENCES accounts (id) ON DELETE RESTRICT,
    CONSTRAINT transfers_amount_cents_check CHECK (amount_cents > 0),
    CONSTRAINT transfers_distinct_accounts_check CHECK (from_account <> to_account),
    CONSTRAINT transfers_idempotency_key_key UNIQUE (idempotency_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
