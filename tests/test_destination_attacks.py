"""Attacks on [destination] mode (archiving into another server): each test here shows a way a row
is lost, altered, doubled or silently skipped, or a run fails badly. Real servers, real signals."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import mysql.connector

from checks import completed_batches
from helpers import (
    ScratchDatabase,
    create_rewards_tables,
    insert_rewards,
    rewards_archive_ddl,
    run_cli,
    snapshot,
    wait_until,
    write_config,
    write_csv,
)


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


def remote_job(db: ScratchDatabase, dest: ScratchDatabase, tmp_path: Path, ids, listed, **config: Any
               ) -> tuple[Path, dict]:
    """rewards on the source, rewards_archives on the destination, a CSV and a config."""
    create_rewards_tables(db, archive=None)
    dest.execute(rewards_archive_ddl())
    insert_rewards(db, ids)
    write_csv(tmp_path / "csv" / "ids.csv", listed)
    return write_config(tmp_path, db, **dest_keys(dest), **config), snapshot(db, "rewards")


def assert_exactly_once(db: ScratchDatabase, dest: ScratchDatabase, original: dict, moved: set) -> None:
    """Every original row is in exactly one place: moved ones on the destination, intact."""
    source, archived = snapshot(db, "rewards"), snapshot(dest, "rewards_archives")
    assert not set(source) & set(archived), f"in both: {sorted(set(source) & set(archived))[:10]}"
    assert {**source, **archived} == original
    assert set(archived) == moved & set(original)


def test_a_backup_lock_on_the_destination_holds_the_source_rows_locked_without_end(db, dest_db, tmp_path,
                                                                                 spawn_cli):
    # A backup on the archive server (FLUSH TABLES WITH READ LOCK, as mysqldump --lock-all-tables or
    # mariabackup without backup locks take it) makes the destination INSERT wait for a metadata
    # lock. Neither session sets lock_wait_timeout (only innodb_lock_wait_timeout), so the wait
    # lasts up to the server default of a year, while the source transaction holds the batch's
    # rows locked FOR UPDATE and deleted: the application blocks on them for as long as the backup
    # runs, and [archive] lock_wait_timeout / retry_timeout never end it. Expected: the batch gives
    # up after about lock_wait_timeout, is retried, and the run fails after retry_timeout.
    config, original = remote_job(db, dest_db, tmp_path, range(1, 21), range(1, 21), archive__batch_size=10,
                                  archive__lock_wait_timeout=2, archive__retry_timeout="3s",
                                  controls__sleep_seconds=3)
    proc = spawn_cli(config)
    wait_until(lambda: completed_batches(db) >= 1, timeout=60)
    backup = dest_db.connect()
    try:
        backup.cursor().execute("FLUSH TABLES WITH READ LOCK")
        try:
            proc.wait(timeout=45)
        except subprocess.TimeoutExpired:
            app = db.connect()
            cur = app.cursor()
            cur.execute("SET SESSION innodb_lock_wait_timeout = 1")
            started = time.monotonic()
            try:
                cur.execute("UPDATE rewards SET note = note WHERE id = 15")
                blocked = "not blocked"
            except mysql.connector.Error as exc:  # the lock wait timeout is the point
                blocked = f"blocked: {exc}"
            app.rollback()
            app.close()
            raise AssertionError(f"archive.py still waits on the destination after 45 s; an application "
                                 f"UPDATE of a listed source row was {blocked} "
                                 f"({time.monotonic() - started:.1f}s)") from None
    finally:
        backup.close()  # releases the global read lock
    assert proc.returncode == 1, proc.read_stderr()
    assert run_cli(config, "--sleep", "0").returncode == 0
    assert_exactly_once(db, dest_db, original, set(range(1, 21)))
