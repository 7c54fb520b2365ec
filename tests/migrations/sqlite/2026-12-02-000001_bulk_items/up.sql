-- A table with one column of every type keel's bulk loads support, for tests/it/bulk.rs.
CREATE TABLE bulk_items (
    id          BLOB    NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    label       TEXT    NOT NULL CHECK (length(label) <= 100),
    small       INTEGER NOT NULL,
    medium      INTEGER NOT NULL,
    big         INTEGER NOT NULL CHECK (big >= 0),
    flag        INTEGER NOT NULL,
    ratio       REAL    NOT NULL,
    note        TEXT    NULL,
    day         TEXT    NOT NULL,
    local_at    TEXT    NOT NULL,
    created_at  TEXT    NOT NULL,
    doc         TEXT    NOT NULL,
    CONSTRAINT bulk_items_label_key UNIQUE (label)
) STRICT;
