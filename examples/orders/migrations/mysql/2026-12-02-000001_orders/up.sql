-- Orders and their lines. Ids are UUIDv7 as BINARY(16); times are UTC DATETIME(6).
-- `attributes` is JSON: a native JSON column on MySQL 8, and on MariaDB an alias of LONGTEXT
-- with a json_valid CHECK. SKUs compare exactly (utf8mb4_bin), as on PostgreSQL and SQLite.
CREATE TABLE orders (
    id           BINARY(16)   NOT NULL,
    customer     VARCHAR(200) NOT NULL,
    total_cents  BIGINT       NOT NULL,
    placed_at    DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    note         TEXT         NULL,
    attributes   JSON         NOT NULL,
    PRIMARY KEY (id),
    INDEX orders_customer_placed_at_idx (customer, placed_at),
    CONSTRAINT orders_total_cents_check CHECK (total_cents >= 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- MySQL 8 refuses CHECK constraints on columns of a cascading foreign key: the checks here are on
-- other columns.
CREATE TABLE order_lines (
    id          BINARY(16)  NOT NULL,
    order_id    BINARY(16)  NOT NULL,
    sku         VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    quantity    INT         NOT NULL,
    unit_cents  BIGINT      NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT order_lines_order_id_fkey FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE,
    CONSTRAINT order_lines_quantity_check CHECK (quantity > 0),
    CONSTRAINT order_lines_unit_cents_check CHECK (unit_cents >= 0),
    CONSTRAINT order_lines_order_id_sku_key UNIQUE (order_id, sku)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
