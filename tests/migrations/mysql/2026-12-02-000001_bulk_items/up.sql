-- A table with one column of every type keel's bulk loads support, for tests/it/bulk.rs.
CREATE TABLE bulk_items (
    id          BINARY(16)   NOT NULL,
    label       VARCHAR(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    small       SMALLINT     NOT NULL,
    medium      INT          NOT NULL,
    big         BIGINT       NOT NULL CHECK (big >= 0),
    flag        BOOLEAN      NOT NULL,
    ratio       DOUBLE       NOT NULL,
    note        TEXT         NULL,
    day         DATE         NOT NULL,
    local_at    DATETIME(6)  NOT NULL,
    created_at  DATETIME(6)  NOT NULL,
    doc         JSON         NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT bulk_items_label_key UNIQUE (label)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
