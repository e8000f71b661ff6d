"""Attacks on [destination] mode (archiving into another server). Each test was first written to
fail, one per defect found: a row lost, altered, doubled or silently skipped, or a run that hung.
The comments say what the defect was. Real servers, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import mysql.connector
import pytest

from checks import completed_batches
from helpers import (
    CliProcess,
    ScratchDatabase,
    kill_process_group,
    run_cli,
    snapshot,
    wait_until,
    write_config,
    write_csv,
)
from proxy import CuttingProxy, need_socket
from test_destination import assert_exactly_once, collation_collision_job, dest_keys, remote_job


def table_job(db: ScratchDatabase, dest: ScratchDatabase, tmp_path: Path, ddl: str, keys: list[Any],
              **config: Any) -> Path:
    """Table t (from `ddl`) on both sides, a CSV of `keys` and a config moving t into t."""
    db.execute(ddl)
    dest.execute(ddl)
    write_csv(tmp_path / "csv" / "keys.csv", keys)
    return write_config(tmp_path, db, archive__source_table="t", archive__archive_table="t",
                        **dest_keys(dest), **config)


def test_a_value_too_long_to_render_fails_its_batch_and_stays(db, dest_db, tmp_path):
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
    assert (result.returncode, moved, kept) == (1, [], [(1, size)]), result.stderr[-2000:]
    assert "too large to copy through the client" in result.stderr


def test_a_backup_lock_on_the_destination_ends_the_batch_after_lock_wait_timeout(
        db, dest_db, tmp_path, spawn_cli):
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


def kill_between_the_commits(db: ScratchDatabase, tmp_path: Path, spawn_cli, **config: Any) -> CuttingProxy:
    """Run archive.py with its source connection through a proxy that swallows the first batch's
    record-and-COMMIT (the destination has committed its copies by then), and SIGKILL it while it
    waits for that answer: a real kill exactly between the destination's and the source's commit."""
    record = b"\x03INSERT INTO batch_processing_logs"
    proxy = CuttingProxy(tmp_path / "proxy.sock", db.server.client_socket, lambda data: record in data,
                         delay=3, forward=False)
    try:
        proc = spawn_cli(write_config(tmp_path, db, database__unix_socket=proxy.path, **config))
        wait_until(lambda: not proxy.armed or proc.poll() is not None, timeout=60)
        assert proc.poll() is None, proc.read_stderr()
        time.sleep(0.3)
        kill_process_group(proc)
        wait_until(lambda: proxy.cuts, timeout=30)  # then the server ends the source's session
    finally:
        proxy.close()
    return proxy


def test_a_copy_left_by_a_kill_of_a_row_the_guard_now_holds_back_is_a_conflict(
        db, dest_db, server, tmp_path, spawn_cli):
    # A kill between the destination's commit and the source's leaves copies on the destination
    # and the rows on the source; the README promises the next run finds them as twins (or
    # conflicts). But read() sorts out the rows the guard holds back before it looks at the
    # destination: when a row changed in between so that the guard no longer passes it (here the
    # application touched created_at), the next run counts it "skipped by guard", exits 0, and the
    # row stays in both tables, the archive's copy stale and never reported as a conflict.
    need_socket(server)
    guard = "created_at < '2030-01-01'"
    config, _ = remote_job(db, dest_db, tmp_path, range(1, 11), range(1, 11), controls__guard=guard)
    kill_between_the_commits(db, tmp_path, spawn_cli, **dest_keys(dest_db), controls__guard=guard)
    assert dest_db.count("rewards_archives") == 10 and db.count("rewards") == 10  # the window was hit
    db.execute("UPDATE rewards SET created_at = '2031-01-01' WHERE id = 3")  # the application renews it
    rerun = run_cli(config)
    both = sorted(set(snapshot(db, "rewards")) & set(snapshot(dest_db, "rewards_archives")))
    assert rerun.returncode != 0 or not both, (
        f"exit {rerun.returncode} (success) with keys {both} in both tables: {rerun.stdout[-600:]}")


def test_a_destination_that_stops_answering_is_given_up_and_the_rerun_heals(
        db, dest_db, dest_server, tmp_path, spawn_cli):
    # README: "a destination that is down or lost mid-batch is retried for retry_timeout, then the
    # run fails with the source untouched for that batch". A destination that stops answering
    # without closing the connection (a network partition, a frozen VM; here SIGSTOP) is never
    # noticed: the sessions have no read timeout, so the worker waits on the socket forever and
    # the main thread forever on the worker, the batch's source rows locked and deleted until the
    # source server drops the idle session (wait_timeout = lock_lease + lock_wait_timeout), and
    # the run itself never ends. Expected: it fails (or retries) within a bounded time.
    config, original = remote_job(db, dest_db, tmp_path, range(1, 201), range(1, 201), archive__batch_size=10,
                                  archive__lock_wait_timeout=2, archive__lock_lease="14s",
                                  archive__retry_timeout="3s", controls__sleep_seconds=0.2)
    proc = spawn_cli(config)
    wait_until(lambda: completed_batches(db) >= 2, timeout=60)
    os.kill(dest_server.pid, signal.SIGSTOP)
    try:
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            code = None
    finally:
        os.kill(dest_server.pid, signal.SIGCONT)
    assert code is not None, "archive.py still waits for the frozen destination after 60 s"
    assert code == 1, proc.read_stderr()
    assert run_cli(config, "--sleep", "0").returncode == 0
    assert_exactly_once(db, dest_db, original, set(range(1, 201)))


def test_the_dry_run_predicts_a_collation_collision_on_the_destination(db, dest_db, tmp_path):
    # README: --dry-run is "an exact prediction". OtherServer.classify (used by the dry run) looks
    # the keys up byte for byte only; the run's set_aside_collisions also finds an archived 'ABC'
    # for a source 'abc' and keeps it as a conflict. The dry run predicts the row archived.
    config = collation_collision_job(db, dest_db, tmp_path)
    predicted = json.loads(run_cli(config, "--dry-run", "--json").stdout)["total"]
    assert run_cli(config).returncode == 3
    row = db.query_dicts("SELECT rows_archived, conflicts FROM process_logs")[0]
    assert (predicted["rows_to_archive"], predicted["conflicts"]) == (row["rows_archived"], row["conflicts"])


def waiting_for_a_metadata_lock(db: ScratchDatabase) -> bool:
    """Whether a session on db's server is waiting for a metadata lock (a statement in flight)."""
    return bool(db.scalar("SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                          "WHERE STATE = 'Waiting for table metadata lock'"))


def silenced_mid_query(server: Any, db: ScratchDatabase, table: str, proc: CliProcess,
                       wait: float = 60) -> int | None:
    """Freeze `server` (SIGSTOP) while `proc` has a statement in flight on it (pinned there by a
    LOCK TABLES of `table` from another session); return proc's exit code, None if it still waits."""
    holder = db.connect()
    try:
        holder.cursor().execute(f"LOCK TABLES `{table}` WRITE")
        wait_until(lambda: waiting_for_a_metadata_lock(db) or proc.poll() is not None, timeout=60,
                   message="the command's statement to wait on the server")
        assert proc.poll() is None, proc.read_stderr()
        os.kill(server.pid, signal.SIGSTOP)
        try:
            return proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            return None
        finally:
            os.kill(server.pid, signal.SIGCONT)
    finally:
        holder.close()


@pytest.mark.parametrize("command", ["--check", "--dry-run"])
def test_a_destination_that_stops_answering_mid_query_ends_check_and_dry_run(
        db, dest_db, dest_server, tmp_path, spawn_cli, command):
    # The read-only commands' sessions had no read timeout: a destination that stopped answering
    # in the middle of a statement hung --check and --dry-run for ever (and the dry run held its
    # snapshot open on the source all along). Bound: lock_wait_timeout + connect_timeout.
    config, _ = remote_job(db, dest_db, tmp_path, range(1, 201), range(1, 201), archive__lock_wait_timeout=5)
    proc = spawn_cli(config, command)
    started = time.monotonic()
    code = silenced_mid_query(dest_server, dest_db, "rewards_archives", proc)
    assert code == 1, f"{command} still waits for the frozen destination after 60 s"
    assert time.monotonic() - started < 40
    stderr = proc.read_stderr()
    assert "Lost connection" in stderr and "Traceback" not in stderr, stderr


def test_a_destination_session_dropped_while_idle_is_reconnected_without_a_retry(
        db, dest_db, dest_server, tmp_path):
    # A destination that drops idle sessions quickly (its wait_timeout) dropped the run's session
    # between batches; the next batch met the dead session and counted a retry: with max_retries = 0
    # the run failed. An idle session is checked (and replaced) before a batch uses it.
    config, original = remote_job(db, dest_db, tmp_path, range(1, 31), range(1, 31), archive__batch_size=10,
                                  archive__max_retries=0, controls__sleep_seconds=3)
    before = dest_db.scalar("SELECT @@GLOBAL.wait_timeout")
    dest_db.execute("SET GLOBAL wait_timeout = 1")
    try:
        result = run_cli(config)
    finally:
        dest_db.execute("SET GLOBAL wait_timeout = %s", (before,))
    assert result.returncode == 0, result.stderr
    assert_exactly_once(db, dest_db, original, set(range(1, 31)))
