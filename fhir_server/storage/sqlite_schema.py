"""The SQLite schema: one file, WAL journal, every table created at start-up if missing.

Tables:
    resources      one row per logical resource: the current version (or deletion marker).
                   `seq` (INTEGER PRIMARY KEY) is fixed at first creation and orders searches.
    history        every version ever written, newest found by (res_type, res_id, version_id).
    idx_string, idx_token, idx_date, idx_reference, idx_number, idx_quantity, idx_uri
                   the typed search-index entries of the current version, keyed by `seq`.
                   Each has a `_q` index (res_type, param, value..., seq) to find resources
                   by value, and a covering `_probe` index (seq, param, value...) to test one
                   resource (EXISTS) and to delete its entries.
    idx_sort       the `_sort` key of each (seq, param): `asc` (smallest), `desc` (largest).
    compartments   (seq, comp): compartment membership such as `Patient/123`.
    locks          cross-process mutexes (`locks.py`): (key TEXT PRIMARY KEY, expires µs UTC,
                   owner TEXT, the holder's token; '' on rows an older version wrote).
    claims         time claims, SCHEDULING.md "Never double-book" (`sqlite_claims.py`):
                   (scope TEXT, quantum INTEGER, owner TEXT, expires INTEGER NULL),
                   PRIMARY KEY (scope, quantum) WITHOUT ROWID, so one key has one owner.
                   `scope` is e.g. `Schedule/7` (quantum = minute index, µs // 60_000_000)
                   or `Slot/9` (quantum = seat number); `owner` e.g. `Appointment/1`;
                   `expires` µs UTC, NULL for a booking (held until released). Indexes:
                   `claims_owner` (owner, for an owner's set) and the partial
                   `claims_expires` (expires, non-NULL only, for the hold sweeper).
    records        small JSON documents of the authorization server (`base.RecordStore`,
                   `sqlite_records.py`): (kind TEXT, key TEXT, doc BLOB (orjson bytes of a
                   JSON object), expires INTEGER NULL (µs UTC, NULL = never)),
                   PRIMARY KEY (kind, key) WITHOUT ROWID; the partial index
                   `records_expires` (expires, non-NULL only) serves `purge_records`.
    schema_version one row: the version of this schema.

Instants are INTEGER microseconds since the epoch, UTC. Content is the FHIR JSON as BLOB.
`create_schema` makes a new file and brings a file of an older version up to date.
"""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 1
"""Written once into a new file; no start-up reads it yet. Additions are `CREATE ... IF NOT
EXISTS` in DDL (a table such as `records`) or ADDED_COLUMNS (a column of an existing table),
so older files gain them without a migration step and the version stays 1 until a change
needs one."""

PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA temp_store=MEMORY",
    "PRAGMA cache_size=-65536",
    "PRAGMA mmap_size=268435456",
    "PRAGMA wal_autocheckpoint=0",  # checkpoints run off the event loop (sqlite_checkpoint)
    "PRAGMA journal_size_limit=67108864",  # a restarted log is cut back to 64 MiB
)

DDL = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS resources (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    res_type TEXT NOT NULL,
    res_id TEXT NOT NULL,
    version_id INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    method TEXT NOT NULL,
    content BLOB,
    UNIQUE (res_type, res_id)
);
CREATE INDEX IF NOT EXISTS resources_type_seq ON resources (res_type, deleted, seq);
CREATE TABLE IF NOT EXISTS history (
    hseq INTEGER PRIMARY KEY AUTOINCREMENT,
    res_type TEXT NOT NULL,
    res_id TEXT NOT NULL,
    version_id INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    method TEXT NOT NULL,
    content BLOB,
    UNIQUE (res_type, res_id, version_id)
);
CREATE INDEX IF NOT EXISTS history_time ON history (last_updated);
CREATE INDEX IF NOT EXISTS history_type_time ON history (res_type, last_updated);
CREATE TABLE IF NOT EXISTS idx_string (
    seq INTEGER NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL,
    norm TEXT NOT NULL, exact TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_string_q ON idx_string (res_type, param, norm, seq);
CREATE INDEX IF NOT EXISTS idx_string_probe ON idx_string (seq, param, norm);
CREATE TABLE IF NOT EXISTS idx_token (
    seq INTEGER NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL,
    system TEXT, code TEXT, text TEXT
);
CREATE INDEX IF NOT EXISTS idx_token_q ON idx_token (res_type, param, code, system, seq);
CREATE INDEX IF NOT EXISTS idx_token_probe ON idx_token (seq, param, code, system);
CREATE TABLE IF NOT EXISTS idx_date (
    seq INTEGER NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL,
    low INTEGER NOT NULL, high INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_date_q ON idx_date (res_type, param, low, high, seq);
CREATE INDEX IF NOT EXISTS idx_date_probe ON idx_date (seq, param, low, high);
CREATE TABLE IF NOT EXISTS idx_reference (
    seq INTEGER NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL,
    ref_type TEXT, ref_id TEXT, url TEXT, id_system TEXT, id_value TEXT
);
CREATE INDEX IF NOT EXISTS idx_reference_q
    ON idx_reference (res_type, param, ref_id, ref_type, seq);
CREATE INDEX IF NOT EXISTS idx_reference_probe ON idx_reference (seq, param, ref_id, ref_type);
CREATE INDEX IF NOT EXISTS idx_reference_target ON idx_reference (ref_type, ref_id);
CREATE TABLE IF NOT EXISTS idx_number (
    seq INTEGER NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL, value REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_number_q ON idx_number (res_type, param, value, seq);
CREATE INDEX IF NOT EXISTS idx_number_probe ON idx_number (seq, param, value);
CREATE TABLE IF NOT EXISTS idx_quantity (
    seq INTEGER NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL, value REAL NOT NULL,
    system TEXT, code TEXT, unit TEXT
);
CREATE INDEX IF NOT EXISTS idx_quantity_q ON idx_quantity (res_type, param, value, seq);
CREATE INDEX IF NOT EXISTS idx_quantity_probe ON idx_quantity (seq, param, value);
CREATE TABLE IF NOT EXISTS idx_uri (
    seq INTEGER NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL, value TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_uri_q ON idx_uri (res_type, param, value, seq);
CREATE INDEX IF NOT EXISTS idx_uri_probe ON idx_uri (seq, param, value);
CREATE TABLE IF NOT EXISTS idx_sort (
    seq INTEGER NOT NULL, param TEXT NOT NULL, asc_value, desc_value,
    PRIMARY KEY (seq, param)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS compartments (
    seq INTEGER NOT NULL, comp TEXT NOT NULL, PRIMARY KEY (comp, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS compartments_seq ON compartments (seq);
CREATE TABLE IF NOT EXISTS locks (
    key TEXT PRIMARY KEY, expires INTEGER NOT NULL, owner TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS claims (
    scope TEXT NOT NULL, quantum INTEGER NOT NULL, owner TEXT NOT NULL, expires INTEGER,
    PRIMARY KEY (scope, quantum)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS claims_owner ON claims (owner);
CREATE INDEX IF NOT EXISTS claims_expires ON claims (expires) WHERE expires IS NOT NULL;
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL, key TEXT NOT NULL, doc BLOB NOT NULL, expires INTEGER,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_expires ON records (expires) WHERE expires IS NOT NULL;
CREATE TABLE IF NOT EXISTS hits (
    kind TEXT NOT NULL, key TEXT NOT NULL, n INTEGER NOT NULL, expires INTEGER NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
DROP INDEX IF EXISTS idx_string_seq;
DROP INDEX IF EXISTS idx_token_seq;
DROP INDEX IF EXISTS idx_date_seq;
DROP INDEX IF EXISTS idx_reference_seq;
DROP INDEX IF EXISTS idx_number_seq;
DROP INDEX IF EXISTS idx_quantity_seq;
DROP INDEX IF EXISTS idx_uri_seq;
"""

INDEX_TABLES = (
    "idx_string",
    "idx_token",
    "idx_date",
    "idx_reference",
    "idx_number",
    "idx_quantity",
    "idx_uri",
    "idx_sort",
    "compartments",
)

ADDED_COLUMNS = (("locks", "owner", "owner TEXT NOT NULL DEFAULT ''"),)
"""Columns added to a table after files were made without them: (table, column, definition).
DDL has them already; `create_schema` adds each one an older file lacks."""


def create_schema(conn: sqlite3.Connection) -> None:
    """Create the tables and indexes if missing, and add ADDED_COLUMNS an older file lacks
    (e.g. `locks.owner` to a `./data/fhir.db` made before owners were recorded). Idempotent,
    and safe when several processes start at once: the columns are checked and added in one
    `BEGIN IMMEDIATE` transaction.

    Raises:
        sqlite3.Error: the file cannot be read or written.
    """
    conn.executescript(DDL)
    conn.execute("BEGIN IMMEDIATE")
    try:
        for table, column, definition in ADDED_COLUMNS:
            present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            if column not in present:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {definition}")
        if conn.execute("SELECT version FROM schema_version").fetchone() is None:
            conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
