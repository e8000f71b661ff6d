"""Archiving into another server ([destination]): exactly once across two servers with no
distributed transaction, byte-identical copies, preflight on both sides, and faults on either."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import mysql.connector
import pytest

import archive
from checks import assert_batches_once, assert_no_run_left_running, completed_batches
from helpers import (
    ScratchDatabase,
    create_rewards_tables,
    insert_rewards,
    kill_process_group,
    read_text_logs,
    remove_unless_kept,
    rewards_archive_ddl,
    run_cli,
    silenced_mid_query,
    snapshot,
    wait_until,
    write_config,
    write_csv,
)
from proxy import CuttingProxy, need_socket, run_cli_cut
from replication import RELAY_ARGS, ReplicationPair
from test_exactness import MARIADB_TYPES, STEP_HEX, STEPS, step_table_ddl


def dest_keys(dest: ScratchDatabase) -> dict[str, Any]:
    """The [destination] section for a scratch database on the destination server."""
    kw = dest.connection_kwargs()
    where = ({"destination__unix_socket": kw["unix_socket"]} if "unix_socket" in kw
             else {"destination__host": f"{kw['host']}:{kw['port']}"})  # an ARCHIVE_TEST_DSN on TCP
    return {**where, "destination__user": kw.get("user", "root"),
            "destination__password": kw.get("password", ""), "destination__database": dest.name}


def remote_job(db: ScratchDatabase, dest: ScratchDatabase, tmp_path: Path, ids, listed, **config: Any
               ) -> tuple[Path, dict]:
    """rewards on the source, rewards_archives on the destination, a CSV and a config."""
    create_rewards_tables(db, archive=None)
    dest.execute(rewards_archive_ddl())
    insert_rewards(db, ids)
    write_csv(tmp_path / "csv" / "ids.csv", listed)
    path = write_config(tmp_path, db, **dest_keys(dest), **config)
    return path, snapshot(db, "rewards")


def assert_exactly_once(db: ScratchDatabase, dest: ScratchDatabase, original: dict, moved: set) -> None:
    """Every original row is in exactly one place: moved ones on the destination, intact."""
    source, archived = snapshot(db, "rewards"), snapshot(dest, "rewards_archives")
    assert not set(source) & set(archived), f"in both: {sorted(set(source) & set(archived))[:10]}"
    assert {**source, **archived} == original
    assert set(archived) == moved & set(original)


def test_rows_move_to_the_destination_intact_and_the_seed_queries_stay_on_the_source(db, dest_db, tmp_path):
    config, original = remote_job(db, dest_db, tmp_path, range(1, 101), range(1, 81), archive__batch_size=25)
    check = run_cli(config, "--check")
    assert check.returncode == 0 and "Verdict: READY." in check.stdout, check.stdout
    assert "max_allowed_packet" in check.stdout
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert_exactly_once(db, dest_db, original, set(range(1, 81)))
    assert "into root@" in next(line for line in result.stdout.splitlines() if line.startswith("SUMMARY:"))
    assert not dest_db.table_exists("process_logs"), "tracking stays with the source"
    assert db.query("SELECT COUNT(*), SUM(rows_archived) FROM batch_processing_logs") == [(4, 80)]
    assert db.scalar("SELECT destination FROM process_logs").startswith("root@")
    assert "archiving into" in run_cli(config, "--status").stdout
    assert run_cli(config).returncode == 0  # a rerun is a no-op
    assert_exactly_once(db, dest_db, original, set(range(1, 81)))


@MARIADB_TYPES
def test_every_type_arrives_byte_identical(db, dest_db, tmp_path):
    for side in (db, dest_db):
        side.execute(step_table_ddl("t"))
    conn = db.connect()
    cur = conn.cursor()
    cur.execute("SET SESSION time_zone = '+00:00', sql_mode = 'NO_ENGINE_SUBSTITUTION'")
    keys = []
    for key, (name, _, source_value, other_value) in enumerate(STEPS, start=1):
        if "'zz'" in other_value:
            other_value = "'a'"  # ENUM index 0 cannot travel (refused loudly; tested below)
        cur.execute(f"INSERT INTO t (id, `{name}`) VALUES ({key}, {source_value})")
        cur.execute(f"INSERT INTO t (id, `{name}`) VALUES ({key + 100}, {other_value})")
        keys += [key, key + 100]
    conn.commit()
    conn.close()
    fingerprint = (f"SELECT id, {STEP_HEX}, UNIX_TIMESTAMP(ts), "
                   "CONCAT(CAST(fl AS DOUBLE), SIGN(ATAN2(fl, -1))), en + 0 FROM t ORDER BY id")
    original = db.query(fingerprint)
    write_csv(tmp_path / "csv" / "ids.csv", keys)
    config = write_config(tmp_path, db, archive__source_table="t", archive__archive_table="t",
                          **dest_keys(dest_db))
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert db.count("t") == 0
    assert dest_db.query(fingerprint) == original


def test_text_in_any_character_set_arrives_byte_identical(db, dest_db, tmp_path):
    # (charset, stored bytes): a 0x5C (backslash) trail byte, UTF-16 and UTF-32, latin1's 0x81
    values = [("sjis", "835c"), ("cp932", "835c5c5c"), ("big5", "a55c"), ("gbk", "815c"),
              ("ucs2", "00610000"), ("utf16", "d83ddc2c"), ("utf32", "0001f42c"), ("latin1", "81275c00"),
              ("utf8mb4", "78272064656c696d6974657220242027")]
    ddl = ", ".join(f"c{n} VARCHAR(20) CHARACTER SET {cs} NULL" for n, (cs, _) in enumerate(values))
    for side in (db, dest_db):
        side.execute(f"CREATE TABLE t (id INT PRIMARY KEY, {ddl}) ENGINE=InnoDB")
    literals = ", ".join(f"_{cs} X'{hexed}'" for cs, hexed in values)
    db.execute(f"INSERT INTO t VALUES (1, {literals}), (2, {', '.join(['NULL'] * len(values))})")
    hexes = f"SELECT id, {', '.join(f'HEX(c{n})' for n in range(len(values)))} FROM t ORDER BY id"
    original = db.query(hexes)
    assert original[0][1:] == tuple(hexed.upper() for _, hexed in values)
    write_csv(tmp_path / "csv" / "ids.csv", [1, 2])
    config = write_config(tmp_path, db, archive__source_table="t", archive__archive_table="t",
                          **dest_keys(dest_db))
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert db.count("t") == 0
    assert dest_db.query(hexes) == original


@MARIADB_TYPES
def test_the_destination_s_batch_check_equals_the_client_s_for_every_type(db):
    # Were they to differ, every batch would fall back to a fingerprint per row: slower, unnoticed.
    db.execute(step_table_ddl("t"))
    for key, (name, _, value, _) in enumerate(STEPS, start=1):
        if "'zz'" not in value:
            db.execute(f"INSERT INTO t (id, `{name}`) VALUES ({key}, {value})")
    columns = tuple(archive.Column(r[0], r[1], r[2] or "") for r in db.query(
        "SELECT COLUMN_NAME, DATA_TYPE, CHARACTER_SET_NAME FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 't' ORDER BY ORDINAL_POSITION"))
    key_type = archive.KeyType("int", -2 ** 31, 2 ** 31 - 1, sql_type="int")
    remote = archive.RemotePlan(archive.TablePlan("t", "t", ("id",), columns, key_type))
    literals = [row[2] for row in db.query(remote.read_sql("s.`id` > 0", lock=False))]
    assert len(literals) == len(STEPS) and all(literals)
    assert db.query(remote.verify_sql("a.`id` > 0")) == [(len(STEPS), archive.batch_fingerprint_of(literals))]


def test_an_invalid_enum_cannot_travel_and_nothing_moves(db, dest_db, tmp_path):
    for side in (db, dest_db):
        side.execute("CREATE TABLE t (id INT PRIMARY KEY, e ENUM('', 'a'))")
    db.execute("SET SESSION sql_mode = ''")
    db.execute("INSERT INTO t VALUES (1, 'a'), (2, 'zz')")
    write_csv(tmp_path / "csv" / "ids.csv", [1, 2])
    config = write_config(tmp_path, db, archive__source_table="t", archive__archive_table="t",
                          **dest_keys(dest_db))
    result = run_cli(config)
    assert result.returncode == 1
    assert db.count("t") == 2 and dest_db.count("t") == 0


def table_job(db: ScratchDatabase, dest: ScratchDatabase, tmp_path: Path, ddl: str, keys: list[Any],
              **config: Any) -> Path:
    """Table t (from `ddl`) on both sides, a CSV of `keys` and a config moving t into t."""
    db.execute(ddl)
    dest.execute(ddl)
    write_csv(tmp_path / "csv" / "keys.csv", keys)
    return write_config(tmp_path, db, archive__source_table="t", archive__archive_table="t",
                        **dest_keys(dest), **config)


def test_a_value_too_long_to_render_fails_its_batch_and_stays(db, dest_db, tmp_path):
    # Found by a red team: literal_sql wraps each column in IFNULL(CONCAT(.., HEX(c), ..), 'NULL').
    # HEX() of a value longer than half of the source's max_allowed_packet (16 MB by default: a 9 MB
    # blob) returns NULL with a warning, so the column is rendered as the literal NULL; the row's
    # literal stays short, so read() does not notice. The destination inserts NULL, renders it as
    # 'NULL' too, the SHA-256 matches, and the source row is deleted: the blob is gone from both
    # servers, exit 0.
    config = table_job(db, dest_db, tmp_path, "CREATE TABLE t (id INT PRIMARY KEY, b LONGBLOB NULL)", [1])
    size = 9 * 1024 * 1024
    db.execute(f"INSERT INTO t VALUES (1, REPEAT('a', {size}))")
    result = run_cli(config)
    moved = dest_db.query("SELECT id, LENGTH(b) FROM t")
    kept = db.query("SELECT id, LENGTH(b) FROM t")
    assert (result.returncode, moved, kept) == (1, [], [(1, size)]), result.stderr[-2000:]
    assert "too large to copy through the client" in result.stderr


def collation_collision_job(db: ScratchDatabase, dest_db: ScratchDatabase, tmp_path: Path) -> Path:
    """Source 'abc' and 'x' listed; the destination already holds 'ABC', equal to 'abc' only under
    the column's collation."""
    ddl = "CREATE TABLE t (code VARCHAR(10) COLLATE utf8mb4_general_ci PRIMARY KEY, note VARCHAR(10))"
    db.execute(ddl)
    dest_db.execute(ddl)
    db.execute("INSERT INTO t VALUES ('abc', 'new'), ('x', 'x')")
    dest_db.execute("INSERT INTO t VALUES ('ABC', 'old')")
    write_csv(tmp_path / "csv" / "keys.csv", ["abc", "x"], header="code")
    return write_config(tmp_path, db, archive__source_table="t", archive__archive_table="t",
                        archive__key_column="code", archive__csv_column="code", **dest_keys(dest_db))


def test_a_key_equal_only_under_the_collation_is_a_conflict_on_the_destination(db, dest_db, tmp_path):
    config = collation_collision_job(db, dest_db, tmp_path)
    result = run_cli(config)
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert db.query("SELECT code, note FROM t") == [("abc", "new")]
    assert dest_db.query("SELECT code, note FROM t ORDER BY code") == [("ABC", "old"), ("x", "x")]
    assert db.query("SELECT conflicts, rows_archived FROM process_logs") == [(1, 1)]


def test_the_dry_run_predicts_a_collation_collision_on_the_destination(db, dest_db, tmp_path):
    # Found by a red team: README: --dry-run is "an exact prediction". OtherServer.classify (used by
    # the dry run) looks the keys up byte for byte only; the run's set_aside_collisions also finds
    # an archived 'ABC' for a source 'abc' and keeps it as a conflict. The dry run predicts the row
    # archived.
    config = collation_collision_job(db, dest_db, tmp_path)
    predicted = json.loads(run_cli(config, "--dry-run", "--json").stdout)["total"]
    assert run_cli(config).returncode == 3
    row = db.query_dicts("SELECT rows_archived, conflicts FROM process_logs")[0]
    assert (predicted["rows_to_archive"], predicted["conflicts"]) == (row["rows_archived"], row["conflicts"])


def test_a_destination_that_stores_a_row_differently_gets_nothing(db, dest_db, tmp_path):
    # A trigger on the destination (accepted by allow_triggers) rewrites what it stores: the batch
    # check differs, the row-by-row check names the key, and the destination rolls back.
    config, original = remote_job(db, dest_db, tmp_path, range(1, 11), range(1, 11),
                                  archive__allow_triggers="true")
    dest_db.execute("CREATE TRIGGER t BEFORE INSERT ON rewards_archives FOR EACH ROW "
                    "SET NEW.note = IF(NEW.id = 7, 'changed', NEW.note)")
    result = run_cli(config)
    assert result.returncode == 1
    assert "would differ from the source rows (keys 7)" in result.stderr
    assert snapshot(db, "rewards") == original and dest_db.count("rewards_archives") == 0


def test_inserts_are_split_to_fit_the_destination_s_max_allowed_packet(db, dest_db, dest_server, tmp_path):
    config, original = remote_job(db, dest_db, tmp_path, range(1, 201), range(1, 201),
                                  archive__batch_size=200)
    admin = dest_server.connect()
    admin.cursor().execute("SET GLOBAL max_allowed_packet = 16384")  # new sessions: ~60 rows an INSERT
    try:
        result = run_cli(config)
    finally:
        admin.cursor().execute("SET GLOBAL max_allowed_packet = DEFAULT")
        admin.close()
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert_exactly_once(db, dest_db, original, set(range(1, 201)))


def test_twins_on_the_destination_are_settled_and_conflicts_kept(db, dest_db, tmp_path):
    config, original = remote_job(db, dest_db, tmp_path, range(1, 41), range(1, 41), archive__batch_size=10)
    insert_rewards(dest_db, [3, 4], table="rewards_archives")  # identical copies
    insert_rewards(dest_db, [5], table="rewards_archives")
    dest_db.execute("UPDATE rewards_archives SET note = 'older version' WHERE id = 5")
    result = run_cli(config)
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert set(snapshot(db, "rewards")) == {5}
    assert snapshot(dest_db, "rewards_archives")[5][3] == "older version"
    assert db.query("SELECT duplicates, conflicts, rows_archived, rows_deleted FROM process_logs") == [
        (2, 1, 37, 39)]
    dest_db.execute("DELETE FROM rewards_archives WHERE id = 5")  # the README's conflict procedure
    assert run_cli(config).returncode == 0
    assert_exactly_once(db, dest_db, original, set(range(1, 41)))


def test_preflight_checks_the_destination(db, dest_db, tmp_path):
    config, original = remote_job(db, dest_db, tmp_path, range(1, 11), range(1, 11))
    dest_db.execute("ALTER TABLE rewards_archives MODIFY note VARCHAR(100)")
    refused = run_cli(config)
    assert refused.returncode == 1 and "column `note` is varchar(191) utf8mb4 in the source" in refused.stderr
    dest_db.execute("ALTER TABLE rewards_archives MODIFY note VARCHAR(191) NULL, ENGINE=MyISAM")
    refused = run_cli(config, "--check")
    assert "table `rewards_archives` uses the MyISAM engine" in refused.stdout
    dest_db.execute("DROP TABLE rewards_archives")
    missing = run_cli(config, "--check")
    assert f"table `{dest_db.name}`.`rewards_archives` does not exist on the destination" in missing.stdout
    assert snapshot(db, "rewards") == original


def test_a_destination_user_without_insert_is_refused_before_any_row_moves(db, dest_db, dest_server,
                                                                           tmp_path):
    config, original = remote_job(db, dest_db, tmp_path, range(1, 11), range(1, 11))
    root = dest_server.connect()
    cur = root.cursor()
    cur.execute("CREATE USER 'reader'@'localhost' IDENTIFIED BY 'pw'")
    cur.execute(f"GRANT SELECT ON `{dest_db.name}`.* TO 'reader'@'localhost'")
    try:
        config = write_config(tmp_path, db, **{**dest_keys(dest_db), "destination__user": "reader",
                                               "destination__password": "pw"})
        result = run_cli(config)
    finally:
        cur.execute("DROP USER 'reader'@'localhost'")
        root.close()
    assert result.returncode == 1
    assert "cannot SELECT and INSERT the archive on the destination" in result.stderr
    assert snapshot(db, "rewards") == original and dest_db.count("rewards_archives") == 0


def test_a_destination_that_is_down_fails_the_run_and_touches_nothing(db, dest_db, dest_server, tmp_path):
    config, original = remote_job(db, dest_db, tmp_path, range(1, 21), range(1, 21),
                                  archive__retry_timeout="2s")
    dest_server.kill()
    try:
        result = run_cli(config)
    finally:
        dest_server.ensure_running()
    assert result.returncode == 1
    assert "cannot connect to" in result.stderr and "Traceback" not in result.stderr
    assert snapshot(db, "rewards") == original


def test_a_destination_lost_mid_run_is_retried_then_fails_without_losing_a_row(db, dest_db, dest_server,
                                                                               tmp_path, spawn_cli):
    config, original = remote_job(db, dest_db, tmp_path, range(1, 401), range(1, 401), archive__batch_size=10,
                                  archive__retry_timeout="3s", controls__sleep_seconds=0.1)
    proc = spawn_cli(config)
    wait_until(lambda: completed_batches(db) >= 3, timeout=30)
    dest_server.kill()
    try:
        assert proc.wait(timeout=60) == 1, proc.read_stderr()
        assert "RETRY:" in read_text_logs(tmp_path / "logs")
        assert db.query("SELECT status FROM process_logs") == [("FAILED",)]
    finally:
        dest_server.ensure_running()
    rerun = run_cli(config, "--sleep", "0")
    assert rerun.returncode == 0, (rerun.stdout, rerun.stderr)
    assert_exactly_once(db, dest_db, original, set(range(1, 401)))
    assert_batches_once(db, "ids.csv", 40)


def test_a_backup_lock_on_the_destination_ends_the_batch_after_lock_wait_timeout(
        db, dest_db, tmp_path, spawn_cli):
    # Found by a red team: A backup on the archive server (FLUSH TABLES WITH READ LOCK, as mysqldump
    # --lock-all-tables or mariabackup without backup locks take it) makes the destination INSERT
    # wait for a metadata lock. Neither session sets lock_wait_timeout (only
    # innodb_lock_wait_timeout), so the wait lasts up to the server default of a year, while the
    # source transaction holds the batch's rows locked FOR UPDATE and deleted: the application
    # blocks on them for as long as the backup runs, and [archive] lock_wait_timeout / retry_timeout
    # never end it. Expected: the batch gives up after about lock_wait_timeout, is retried, and the
    # run fails after retry_timeout.
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


def test_a_destination_that_stops_answering_is_given_up_and_the_rerun_heals(
        db, dest_db, dest_server, tmp_path, spawn_cli):
    # Found by a red team: README: "a destination that is down or lost mid-batch is retried for
    # retry_timeout, then the run fails with the source untouched for that batch". A destination
    # that stops answering without closing the connection (a network partition, a frozen VM; here
    # SIGSTOP) is never noticed: the sessions have no read timeout, so the worker waits on the
    # socket forever and the main thread forever on the worker, the batch's source rows locked and
    # deleted until the source server drops the idle session (wait_timeout = lock_lease +
    # lock_wait_timeout), and the run itself never ends. Expected: it fails (or retries) within a
    # bounded time.
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


@pytest.mark.parametrize("command", ["--check", "--dry-run"])
def test_a_destination_that_stops_answering_mid_query_ends_check_and_dry_run(
        db, dest_db, dest_server, tmp_path, spawn_cli, command):
    # Found when every session's waits were bounded: The read-only commands' sessions had no read
    # timeout: a destination that stopped answering in the middle of a statement hung --check and
    # --dry-run for ever (and the dry run held its snapshot open on the source all along). Bound:
    # lock_wait_timeout + connect_timeout.
    config, _ = remote_job(db, dest_db, tmp_path, range(1, 201), range(1, 201), archive__lock_wait_timeout=5)
    proc = spawn_cli(config, command)
    # 40 s from the freeze (not from the start, which a loaded machine stretches): four times the
    # bound, far below a wait for ever or for the lease (120 s).
    code = silenced_mid_query(dest_server, dest_db, "rewards_archives", proc, wait=40)
    assert code == 1, f"{command} still waits for the frozen destination after 40 s"
    stderr = proc.read_stderr()
    assert "Lost connection" in stderr and "Traceback" not in stderr, stderr


def test_a_destination_session_dropped_while_idle_is_reconnected_without_a_retry(
        db, dest_db, dest_server, tmp_path):
    # Found when every session's waits were bounded: A destination that drops idle sessions quickly
    # (its wait_timeout) dropped the run's session between batches; the next batch met the dead
    # session and counted a retry: with max_retries = 0 the run failed. An idle session is checked
    # (and replaced) before a batch uses it.
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


@pytest.mark.parametrize("cut, first_batch", [
    # Batch 1's DELETE never arrives, while the destination inserts beside it: the destination
    # must roll back, so the retry archives the rows afresh.
    (b"\x03DELETE FROM `rewards`", (1, 10, 0)),
    # Its record and COMMIT never arrive: the destination has committed its copies, the source
    # transaction (its DELETE done) dies with the connection and the rows stay; the retry must
    # find the twins.
    (b"\x03INSERT INTO batch_processing_logs", (1, 0, 10)),
])
def test_a_source_lost_mid_batch_heals(db, dest_db, tmp_path, server, cut, first_batch):
    need_socket(server)
    config, original = remote_job(db, dest_db, tmp_path, range(1, 31), range(1, 31), archive__batch_size=10)
    result, proxy = run_cli_cut(tmp_path, db, lambda data: cut in data, delay=0.2,
                                forward=False, archive__batch_size=10, **dest_keys(dest_db))
    assert proxy.cuts == 1
    assert result.returncode == 0, (result.stdout, result.stderr[-3000:])
    assert "RETRY: Batch 1" in result.stdout
    assert_exactly_once(db, dest_db, original, set(range(1, 31)))
    assert db.query("SELECT batch_number, rows_archived, duplicates FROM batch_processing_logs "
                    "ORDER BY batch_number") == [first_batch, (2, 10, 0), (3, 10, 0)]
    assert config.exists()


def kill_between_the_commits(db: ScratchDatabase, tmp_path: Path, spawn_cli, **config: Any) -> CuttingProxy:
    """Run archive.py with its source connection through a proxy that swallows the first batch's
    record-and-COMMIT (the destination has committed its copies by then), and SIGKILL it while it
    waits for that answer: a real kill exactly between the destination's and the source's commit."""
    record = b"\x03INSERT INTO batch_processing_logs"
    proxy = CuttingProxy(tmp_path / "proxy.sock", db.server.client_socket, lambda data: record in data,
                         delay=3, forward=False)
    try:
        # a config of its own: the job's archive.ini must still reach the source directly afterwards
        proc = spawn_cli(write_config(tmp_path, db, filename="proxied.ini", database__unix_socket=proxy.path,
                                      **config))
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
    # Found by a red team: A kill between the destination's commit and the source's leaves copies on
    # the destination and the rows on the source; the README promises the next run finds them as
    # twins (or conflicts). But read() sorts out the rows the guard holds back before it looks at
    # the destination: when a row changed in between so that the guard no longer passes it (here the
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


def test_random_kills_never_lose_or_double_a_row_across_two_servers(db, dest_db, tmp_path, spawn_cli):
    keys = range(1, 601)
    config, original = remote_job(db, dest_db, tmp_path, keys, keys, archive__batch_size=10)
    rng = random.Random(1234)
    for _ in range(8):
        proc = spawn_cli(config)
        time.sleep(rng.uniform(0.2, 1.2))
        kill_process_group(proc)
    final = run_cli(config)
    assert final.returncode == 0, (final.stdout, final.stderr)
    assert_exactly_once(db, dest_db, original, set(keys))
    assert_batches_once(db, "ids.csv", 60)
    assert_no_run_left_running(db)


def test_sigterm_stops_cleanly_and_the_rerun_finishes(db, dest_db, tmp_path, spawn_cli):
    config, original = remote_job(db, dest_db, tmp_path, range(1, 201), range(1, 201), archive__batch_size=10,
                                  controls__sleep_seconds=0.2)
    proc = spawn_cli(config)
    wait_until(lambda: completed_batches(db) >= 2, timeout=30)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 6
    assert run_cli(config, "--sleep", "0").returncode == 0
    assert_exactly_once(db, dest_db, original, set(range(1, 201)))


def test_a_batch_with_nothing_to_copy_leaves_no_lock_on_the_destination_while_the_run_waits(
        db, dest_db, tmp_path, spawn_cli):
    # The destination's table check runs while the source reads, before the batch knows it has
    # nothing to copy; its metadata locks must end with that batch, not hold DDL off during a pause.
    listed = list(range(101, 111)) + list(range(1, 11))  # the first batch's keys are all missing
    config, original = remote_job(db, dest_db, tmp_path, range(1, 11), listed, archive__batch_size=10,
                                  controls__sleep_seconds=60)
    proc = spawn_cli(config)
    wait_until(lambda: completed_batches(db) >= 1, timeout=30)
    conn = dest_db.connect()
    try:
        cur = conn.cursor()
        cur.execute("SET SESSION lock_wait_timeout = 5")
        cur.execute("ALTER TABLE rewards_archives COMMENT = 'changed during the pause'")
    finally:
        conn.close()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 6
    assert dest_db.count("rewards_archives") == 0 and snapshot(db, "rewards") == original


def test_the_dry_run_predicts_a_remote_run(db, dest_db, tmp_path):
    import json
    config, original = remote_job(db, dest_db, tmp_path, range(1, 51), list(range(1, 41)) + [99],
                                  archive__batch_size=10)
    insert_rewards(dest_db, [3], table="rewards_archives")
    insert_rewards(dest_db, [7], table="rewards_archives")
    dest_db.execute("UPDATE rewards_archives SET note = 'x' WHERE id = 7")
    predicted = json.loads(run_cli(config, "--dry-run", "--json").stdout)["total"]
    assert run_cli(config).returncode == 3
    row = db.query_dicts("SELECT rows_archived, rows_deleted, duplicates, conflicts, not_found "
                         "FROM process_logs")[0]
    assert (predicted["rows_to_archive"], predicted["rows_to_delete"], predicted["identical_twins"],
            predicted["conflicts"], predicted["not_found"]) == (
        row["rows_archived"], row["rows_deleted"], row["duplicates"], row["conflicts"], row["not_found"])
    assert len(original) == 50


# --------------------------------------------------------------------------- a destination that cannot keep

def test_a_destination_that_is_the_source_table_itself_is_refused(db, tmp_path):
    create_rewards_tables(db, archive=None)
    insert_rewards(db, range(1, 51))
    write_csv(tmp_path / "csv" / "ids.csv", range(1, 51))
    original = snapshot(db, "rewards")
    config = write_config(tmp_path, db, archive__archive_table="rewards", **dest_keys(db))  # same server
    check = run_cli(config, "--check")
    assert check.returncode == 1, check.stdout
    assert "FAIL: [destination] is the same server as the source and its archive table is the source " \
           "table itself" in check.stdout, check.stdout
    result = run_cli(config)
    assert result.returncode == 1 and "the source table itself" in result.stderr
    assert snapshot(db, "rewards") == original


@pytest.fixture(scope="module")
def replica_pair(tmp_path_factory):
    """A primary and a replica replicating from it (tests/replication.py)."""
    if os.environ.get("ARCHIVE_TEST_DSN"):
        pytest.skip("starts servers of its own")
    basedir = tmp_path_factory.mktemp("disguise")
    pair = ReplicationPair(basedir)
    try:
        pair.start()
        yield pair
    finally:
        pair.stop()
        remove_unless_kept(basedir)


@pytest.mark.parametrize("archive_table", ["rewards", "rewards_archives"])
def test_a_destination_that_replicates_from_the_source_is_refused(replica_pair, tmp_path, archive_table):
    name = f"disguise_{archive_table}"
    primary = ScratchDatabase.create(replica_pair.primary, name)
    try:
        create_rewards_tables(primary)
        insert_rewards(primary, range(1, 201))
        replica_pair.sync()
        replica = ScratchDatabase(replica_pair.replica, name)
        assert replica.count("rewards") == 200
        write_csv(tmp_path / "csv" / "ids.csv", range(1, 201))
        kw = replica.connection_kwargs()
        config = write_config(tmp_path, primary, archive__archive_table=archive_table,
                              destination__host=f"{kw['host']}:{kw['port']}",
                              destination__user=kw["user"], destination__password=kw["password"],
                              destination__database=name)
        result = run_cli(config)
        assert result.returncode == 1, (result.stdout, result.stderr)
        assert "[destination] receives the source's changes" in result.stderr, result.stderr
        replica_pair.sync()
        assert primary.count("rewards") == replica.count("rewards") == 200
        replica.close()
    finally:
        primary.drop()
        replica_pair.sync()


@pytest.fixture(scope="module")
def replica_chain(tmp_path_factory):
    """A primary, a replica that logs what it applies (an intermediate), and its own replica."""
    if os.environ.get("ARCHIVE_TEST_DSN"):
        pytest.skip("starts servers of its own")
    base = tmp_path_factory.mktemp("chain")
    head = ReplicationPair(base / "head", server_id=2, replica_args=RELAY_ARGS)
    tail = ReplicationPair(base / "tail", primary=head.replica, server_id=3)
    try:
        head.start()
        tail.start()
        yield head, tail
    finally:
        tail.replica.stop()
        head.stop()
        remove_unless_kept(base)


# Found by the issue-19 red team, now fixed: replicates_from knows a chain only by gtid_slave_pos, which
# keeps one GTID per domain, the last one applied: at the end of a chain that lags (a delayed replica)
# that is the intermediate's own write (0-2-N), the source's server_id 1 is not among its origins, and
# Master_Server_Id is the intermediate's, so the destination is accepted; the run deletes every row as an
# identical twin of the copy replication made, and the delayed DELETEs then remove that copy too
def test_a_destination_at_the_end_of_a_lagging_replication_chain_is_refused(replica_chain, tmp_path):
    head, tail = replica_chain
    name = "chain_rewards"
    primary = ScratchDatabase.create(head.primary, name)
    heartbeat = ScratchDatabase(head.replica, "chain_heartbeat")
    end = ScratchDatabase(tail.replica, name)
    try:
        create_rewards_tables(primary, archive=None)
        insert_rewards(primary, range(1, 201))
        head.sync()
        # The intermediate's own write after it applied the source's, as pt-heartbeat makes on
        # every server: the last transaction the end of the chain applied before it lagged.
        heartbeat = ScratchDatabase.create(head.replica, "chain_heartbeat")
        heartbeat.execute("CREATE TABLE beat (ts DATETIME(6)) ENGINE=InnoDB")
        heartbeat.execute("INSERT INTO beat VALUES (NOW(6))")
        tail.sync()
        assert end.count("rewards") == 200
        tail.stop_replication()
        tail.execute_on_replica("CHANGE MASTER TO MASTER_DELAY = 3600")  # a delayed replica
        tail.start_replication()
        write_csv(tmp_path / "csv" / "ids.csv", range(1, 201))
        kw = end.connection_kwargs()
        config = write_config(tmp_path, primary, archive__archive_table="rewards",
                              destination__host=f"{kw['host']}:{kw['port']}", destination__user=kw["user"],
                              destination__password=kw["password"], destination__database=name)
        result = run_cli(config)
        head.sync()
        tail.heal()  # the delay is over: the end of the chain applies what the source did
        assert (result.returncode, primary.count("rewards"), end.count("rewards")) == (1, 200, 200), \
            (result.stdout, result.stderr)
        assert "[destination] is a replica: it replicates from server_id 2" in result.stderr, result.stderr
    finally:
        end.close()
        tail.heal()
        primary.drop()
        heartbeat.drop()
        head.sync()
        tail.sync()


def test_a_federated_archive_table_on_the_destination_is_refused(db, dest_db, dest_server, tmp_path):
    admin = dest_server.connect()
    try:
        with contextlib.suppress(mysql.connector.Error):  # already there from an earlier test
            admin.cursor().execute("INSTALL SONAME 'ha_federatedx'")
    finally:
        admin.close()
    config, original = remote_job(db, dest_db, tmp_path, range(1, 21), range(1, 21))
    db.execute(rewards_archive_ddl("far_away"))  # where the FEDERATED table keeps its rows
    server = f"far_{dest_db.name[-6:]}"
    dest_db.execute(f"CREATE SERVER {server} FOREIGN DATA WRAPPER mysql OPTIONS (SOCKET %s, USER 'root', "
                    "DATABASE %s)", (db.connection_kwargs()["unix_socket"], db.name))
    dest_db.execute("DROP TABLE rewards_archives")
    federated = f"ENGINE=FEDERATED CONNECTION='{server}/far_away'"
    dest_db.execute(rewards_archive_ddl().replace("ENGINE=InnoDB", federated))
    result = run_cli(config)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "uses the FEDERATED engine, which keeps its rows on another server" in result.stderr
    assert snapshot(db, "rewards") == original and db.count("far_away") == 0
    dest_db.execute(f"DROP SERVER {server}")


def test_a_destination_that_may_lose_commits_is_refused_unless_accepted(db, dest_db, dest_server, tmp_path):
    config, original = remote_job(db, dest_db, tmp_path, range(1, 21), range(1, 21))
    admin = dest_server.connect()
    admin.cursor().execute("SET GLOBAL innodb_flush_log_at_trx_commit = 2")
    try:
        check = run_cli(config, "--check")
        assert check.returncode == 1
        assert "does not make each commit durable (innodb_flush_log_at_trx_commit = 2)" in check.stdout
        assert run_cli(config).returncode == 1 and snapshot(db, "rewards") == original
        accepted = write_config(tmp_path, db, archive__allow_non_durable_destination="yes",
                                **dest_keys(dest_db))
        check = run_cli(accepted, "--check")
        assert check.returncode == 0 and "accepted by config" in check.stdout, check.stdout
        assert run_cli(accepted).returncode == 0
    finally:
        admin.cursor().execute("SET GLOBAL innodb_flush_log_at_trx_commit = 1")
        admin.close()
    assert_exactly_once(db, dest_db, original, set(range(1, 21)))


def test_a_generated_column_the_destination_computes_differently_gets_nothing(db, dest_db, tmp_path):
    ddl = ("CREATE TABLE cities (id INT PRIMARY KEY, city VARCHAR(40) CHARACTER SET utf8mb4 COLLATE {}, "
           "shout VARCHAR(40) CHARACTER SET utf8mb4 AS (UPPER(city)) STORED) ENGINE=InnoDB")
    db.execute(ddl.format("utf8mb4_turkish_ci"))
    dest_db.execute(ddl.format("utf8mb4_general_ci"))
    db.execute("INSERT INTO cities (id, city) VALUES (1, 'istanbul'), (2, 'ankara')")
    write_csv(tmp_path / "csv" / "ids.csv", [1, 2])
    config = write_config(tmp_path, db, archive__source_table="cities", archive__archive_table="cities",
                          **dest_keys(dest_db))
    assert db.query("SELECT shout FROM cities ORDER BY id") == [("İSTANBUL",), ("ANKARA",)]
    result = run_cli(config)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "would differ from the source rows (keys 1)" in result.stderr, result.stderr
    assert db.count("cities") == 2 and dest_db.count("cities") == 0


@pytest.fixture(scope="module")
def zoned_server(own_server):
    """A throwaway source server whose sessions run at UTC+05:00 (default-time-zone), as a server set to
    its region's time does."""
    return own_server("zoned", "--default-time-zone=+05:00")


# Found by the issue-19 red team, now fixed: the proof of a copy includes virtual columns the destination
# computes again, but the destination session runs at UTC and the source's at its server's time zone, so a
# virtual DATE(ts) of a TIMESTAMP near midnight reads differently though every stored byte arrived: the
# batch fails 'would differ' and no rerun can ever archive the row
def test_a_virtual_column_that_reads_the_session_time_zone_does_not_fail_an_identical_copy(
        zoned_server, dest_db, tmp_path):
    ddl = ("CREATE TABLE events (id INT PRIMARY KEY, ts TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, "
           "day DATE AS (DATE(ts)) VIRTUAL) ENGINE=InnoDB")
    db = ScratchDatabase.create(zoned_server, "zoned_events")
    try:
        db.execute(ddl)
        dest_db.execute(ddl)
        db.execute("INSERT INTO events (id, ts) VALUES (1, '2022-06-01 12:00:00'), "
                   "(2, '2022-06-02 02:30:00')")  # 21:30 the day before at UTC
        original = db.query("SELECT id, UNIX_TIMESTAMP(ts) FROM events ORDER BY id")
        write_csv(tmp_path / "csv" / "ids.csv", [1, 2])
        config = write_config(tmp_path, db, archive__source_table="events", archive__archive_table="events",
                              **dest_keys(dest_db))
        result = run_cli(config)
        assert result.returncode == 0, (result.stdout, result.stderr)
        assert dest_db.query("SELECT id, UNIX_TIMESTAMP(ts) FROM events ORDER BY id") == original
        assert db.count("events") == 0
    finally:
        db.drop()
