-- A table with one column of every type keel's bulk loads support, for tests/it/bulk.rs.
-- `doc` is json, not jsonb: diesel's portable `Json` reads json text on every backend.
CREATE TABLE bulk_items (
    id          uuid             PRIMARY KEY,
    label       varchar(100)     NOT NULL,
    small       smallint         NOT NULL,
    medium      integer          NOT NULL,
    big         bigint           NOT NULL CHECK (big >= 0),
    flag        boolean          NOT NULL,
    ratio       double precision NOT NULL,
    note        text             NULL,
    day         date             NOT NULL,
    local_at    timestamp        NOT NULL,
    created_at  timestamptz      NOT NULL,
    doc         json             NOT NULL,
    CONSTRAINT bulk_items_label_key UNIQUE (label)
);
