-- Nothing to change: text here already compares byte-exactly (MySQL/MariaDB needed a NO PAD
-- collation, see its migration of the same version). Kept so every backend has the same versions.
SELECT 1;
