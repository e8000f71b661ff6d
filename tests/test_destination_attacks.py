"""Attacks on [destination] mode (archiving into another server): each test here shows a way a row
is lost, altered, doubled or silently skipped, or a run fails badly. Real servers, real signals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from helpers import ScratchDatabase, run_cli, write_config, write_csv


def dest_keys(dest: ScratchDatabase) -> dict[str, Any]:
    """The [destination] section for a scratch database on the destination server."""
    kw = dest.connection_kwargs()
    return {"destination__unix_socket": kw["unix_socket"], "destination__user": kw.get("user", "root"),
            "destination__password": kw.get("password", ""), "destination__database": dest.name}


def table_job(db: ScratchDatabase, dest: ScratchDatabase, tmp_path: Path, ddl: str, keys: list[Any],
              **config: Any) -> Path:
    """Table t (from `ddl`) on both sides, a CSV of `keys` and a config moving t into t."""
    db.execute(ddl)
    dest.execute(ddl)
    write_csv(tmp_path / "csv" / "keys.csv", keys)
    return write_config(tmp_path, db, archive__source_table="t", archive__archive_table="t",
                        **dest_keys(dest), **config)


def test_a_value_whose_hex_exceeds_max_allowed_packet_is_archived_as_null(db, dest_db, tmp_path):
    # literal_sql wraps each column in IFNULL(CONCAT(.., HEX(c), ..), 'NULL'). HEX() of a value
    # longer than half of the source's max_allowed_packet (16 MB by default: a 9 MB blob) returns
    # NULL with a warning, so the column is rendered as the literal NULL; the row's literal stays
    # short, so read() does not notice. The destination inserts NULL, renders it as 'NULL' too, the
    # SHA-256 matches, and the source row is deleted: the blob is gone from both servers, exit 0.
    config = table_job(db, dest_db, tmp_path, "CREATE TABLE t (id INT PRIMARY KEY, b LONGBLOB NULL)", [1])
    size = 9 * 1024 * 1024
    db.execute(f"INSERT INTO t VALUES (1, REPEAT('a', {size}))")
    result = run_cli(config)
    moved = dest_db.query("SELECT id, LENGTH(b) FROM t")
    kept = db.query("SELECT id, LENGTH(b) FROM t")
    # Either the blob arrived whole, or the batch failed and the row stayed whole on the source.
    assert (moved == [(1, size)] and kept == []) or (result.returncode != 0 and kept == [(1, size)]), (
        result.returncode, moved, kept, result.stdout[-2000:], result.stderr[-2000:])
