"""Tables that change while a run goes on: every batch checks that the source, the archive and the
destination are still what the preflight approved (archive.py Definitions, run_checked,
adopt_definitions), against a real MariaDB.

Each test holds a real run between two batches (its max_threads_running pause, kept up by
sleeping sessions), changes a table as a migration would, lets the run go on and checks that
no row was lost or altered: a change that keeps the copy faithful goes on with a new plan
(SCHEMA_CHANGED in the text log), anything else stops the run before a batch commits (FAILED,
exit 1, the message names the table and what changed) and the rerun checks the tables again.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from checks import completed_batches, text_log
from helpers import (
    REWARDS_COLUMNS,
    ScratchDatabase,
    create_rewards_tables,
    insert_rewards,
    run_cli,
    snapshot,
    wait_for_a_lock_wait,
    wait_until,
    write_config,
    write_csv,
)
from test_destination import dest_keys, remote_job

ROWS = range(1, 401)
BATCH = 20
EXTRA = (*REWARDS_COLUMNS, "extra")


@contextlib.contextmanager
def held_run(db: ScratchDatabase, config: Path, spawn_cli: Any, sessions: int = 5) -> Iterator[Any]:
    """Start a run (max_threads_running = 3) while `sessions` sessions sleep, so that it makes its
    plan and then pauses before its first batch; yield it, and release the sleepers after the body
    (which changes tables as a migration would, between the preflight and the batches)."""
    ids: list[int] = []

    def sleep() -> None:
        conn = db.connect()
        try:
            cur = conn.cursor()
            cur.execute("SELECT CONNECTION_ID()")
            ids.append(cur.fetchall()[0][0])
            cur.execute("SELECT SLEEP(600)")
            cur.fetchall()
        except Exception:  # KILL QUERY may end it with an error
            pass
        finally:
            conn.close()

    threads = [threading.Thread(target=sleep, daemon=True) for _ in range(sessions)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(ids) == sessions, timeout=30, message="the sleeping sessions")
        proc = spawn_cli(config)
        wait_until(lambda: db.table_exists("process_logs") and db.scalar(
            "SELECT pause_reason FROM process_logs WHERE status = 'RUNNING'"),
            timeout=60, message="the run to pause before its first batch")
        assert completed_batches(db) == 0
        yield proc
    finally:
        for conn_id in ids:
            db.execute(f"KILL QUERY {int(conn_id)}")
        for thread in threads:
            thread.join(timeout=30)


def make_job(db: ScratchDatabase, tmp_path: Path, **config: Any) -> Path:
    """The rewards tables with ROWS, one CSV listing them all, and a config whose run can be held."""
    create_rewards_tables(db)
    insert_rewards(db, ROWS)
    write_csv(tmp_path / "csv" / "ids.csv", list(ROWS))
    return write_config(tmp_path, db, archive__batch_size=BATCH, controls__max_threads_running=3,
                        controls__check_interval=0.05, **config)


def assert_nothing_lost(db: ScratchDatabase, original: dict[Any, Any], columns: tuple[str, ...]) -> None:
    """Every original row is in exactly one of the two tables, with every value it had."""
    source, archived = snapshot(db, "rewards", columns), snapshot(db, "rewards_archives", columns)
    assert not set(source) & set(archived), "a key is in both tables"
    assert {**source, **archived} == original, "source + archive differ from the rows as they were"


def test_a_column_added_to_the_source_only_stops_the_run_and_nothing_is_lost(db, tmp_path, spawn_cli):
    config = make_job(db, tmp_path)
    with held_run(db, config, spawn_cli) as proc:
        db.execute("ALTER TABLE rewards ADD COLUMN extra INT NULL")
        db.execute("UPDATE rewards SET extra = id")
        original = {**snapshot(db, "rewards", EXTRA),
                    **{k: (*row, None) for k, row in snapshot(db, "rewards_archives").items()}}
    assert proc.wait(timeout=60) == 1, proc.read_stdout() + proc.read_stderr()
    error = db.scalar("SELECT error_message FROM process_logs")
    assert "`rewards`" in error and "+ `extra` int(11) DEFAULT NULL" in error, error
    assert "archive table has no column `extra`" in error, error
    assert "`rewards`" in proc.read_stderr()
    db.execute("ALTER TABLE rewards_archives ADD COLUMN extra INT NULL")  # archived before: no value
    assert_nothing_lost(db, original, EXTRA)
    assert db.count("rewards") > 0, "the run stopped at the change"
    check = run_cli(config, "--check")
    assert check.returncode == 0, check.stdout  # both tables have it now: ready again
    assert run_cli(config).returncode == 0
    assert_nothing_lost(db, original, EXTRA)
    assert db.count("rewards") == 0


def test_a_column_added_to_both_tables_goes_on_with_it(db, tmp_path, spawn_cli):
    config = make_job(db, tmp_path)
    with held_run(db, config, spawn_cli) as proc:
        db.execute("ALTER TABLE rewards_archives ADD COLUMN extra INT NULL")
        db.execute("ALTER TABLE rewards ADD COLUMN extra INT NULL")
        left = db.execute("UPDATE rewards SET extra = id * 3")
        original = {**snapshot(db, "rewards", EXTRA), **snapshot(db, "rewards_archives", EXTRA)}
    assert proc.wait(timeout=60) == 0, proc.read_stdout() + proc.read_stderr()
    assert_nothing_lost(db, original, EXTRA)
    assert db.count("rewards") == 0
    assert db.count("rewards_archives", "extra = id * 3") == db.count("rewards_archives", "extra IS NOT NULL")
    assert db.count("rewards_archives", "extra = id * 3") == left > 0
    log = text_log(tmp_path)
    assert "SCHEMA_CHANGED: `rewards`: + `extra` int(11) DEFAULT NULL" in log, log
    assert "the preflight passed again" in log and "(9 columns copied)" in log


def test_pt_online_schema_change_on_both_tables_goes_on_with_the_new_column(db, tmp_path, spawn_cli):
    pt_osc = shutil.which("pt-online-schema-change")
    assert pt_osc, "pt-online-schema-change is missing: install percona-toolkit (./dev.sh setup does)"
    config = make_job(db, tmp_path)
    kw = db.connection_kwargs()
    where = f"S={kw['unix_socket']}" if kw.get("unix_socket") else f"h={kw['host']},P={kw['port']}"
    dsn = f"{where},u={kw.get('user', 'root')},p={kw.get('password', '')},D={db.name}"
    with held_run(db, config, spawn_cli) as proc:
        for table in ("rewards_archives", "rewards"):
            done = subprocess.run(
                [pt_osc, "--alter", "ADD COLUMN extra INT NULL", "--execute", "--recursion-method=none",
                 "--no-check-alter", "--max-load", "Threads_running=1000", "--critical-load",
                 "Threads_running=2000", "--chunk-size", "50", f"{dsn},t={table}"],
                capture_output=True, text=True, timeout=300, check=False)
            assert done.returncode == 0, done.stdout + done.stderr
        left = db.execute("UPDATE rewards SET extra = id + 7")
        original = {**snapshot(db, "rewards", EXTRA), **snapshot(db, "rewards_archives", EXTRA)}
    assert proc.wait(timeout=60) == 0, proc.read_stdout() + proc.read_stderr()
    assert_nothing_lost(db, original, EXTRA)
    assert db.count("rewards") == 0
    assert db.count("rewards_archives", "extra = id + 7") == left > 0
    assert "SCHEMA_CHANGED: `rewards`" in text_log(tmp_path)


@pytest.mark.parametrize("ddl, table, change", [
    ("ALTER TABLE rewards MODIFY amount DECIMAL(12,4) NOT NULL", "rewards",
     "+ `amount` decimal(12,4) NOT NULL"),
    ("ALTER TABLE rewards_archives MODIFY amount DECIMAL(10,1) NOT NULL", "rewards_archives",
     "+ `amount` decimal(10,1) NOT NULL"),
    ("ALTER TABLE rewards_archives MODIFY created_at DATETIME NOT NULL", "rewards_archives",
     "+ `created_at` datetime NOT NULL"),
])
def test_a_column_whose_values_the_copy_would_round_stops_the_run(db, tmp_path, spawn_cli, ddl, table,
                                                                  change):
    config = make_job(db, tmp_path)
    with held_run(db, config, spawn_cli) as proc:
        db.execute(ddl)
        db.execute("UPDATE rewards SET amount = 301.0142 WHERE id = 390")
        columns = tuple(c for c in REWARDS_COLUMNS if c != "created_at" or "created_at" not in ddl)
        source = snapshot(db, "rewards", columns)
    assert proc.wait(timeout=60) == 1, proc.read_stdout() + proc.read_stderr()
    error = db.scalar("SELECT error_message FROM process_logs")
    assert f"`{table}`: " in error and change in error, error
    assert "is decimal(12,4) in the source" in error or "in the archive" in error, error
    assert snapshot(db, "rewards", columns) == source, "a source row changed or left"
    assert db.count("rewards") == 400 - db.count("rewards_archives")
    assert run_cli(config, "--check").returncode == 1


def test_the_archive_key_dropped_mid_run_stops_before_a_key_is_archived_twice(db, tmp_path, spawn_cli):
    config = make_job(db, tmp_path)
    with held_run(db, config, spawn_cli) as proc:
        db.execute("ALTER TABLE rewards_archives DROP PRIMARY KEY")
        db.execute("INSERT INTO rewards_archives SELECT *, NOW() FROM rewards WHERE id = 395")
        db.execute("UPDATE rewards_archives SET note = 'the archive holds another version' WHERE id = 395")
    assert proc.wait(timeout=60) == 1, proc.read_stdout() + proc.read_stderr()
    error = db.scalar("SELECT error_message FROM process_logs")
    assert "`rewards_archives`: - PRIMARY KEY (`id`)" in error, error
    assert "is not the primary key or a unique key of the archive" in error, error
    assert db.count("rewards_archives", "id = 395") == 1  # only the other version, put there above
    assert db.count("rewards", "id = 395") == 1


def test_a_cascading_child_added_mid_run_deletes_no_child_row(db, tmp_path, spawn_cli):
    config = make_job(db, tmp_path)
    with held_run(db, config, spawn_cli) as proc:
        db.execute("CREATE TABLE reward_claims (id INT PRIMARY KEY AUTO_INCREMENT, "
                   "reward_id BIGINT NOT NULL, FOREIGN KEY (reward_id) REFERENCES rewards (id) "
                   "ON DELETE CASCADE) ENGINE=InnoDB")
        db.execute("INSERT INTO reward_claims (reward_id) SELECT id FROM rewards, (SELECT 1 UNION SELECT 2 "
                   "UNION SELECT 3) three")
        claims = db.count("reward_claims")
        assert claims == 3 * db.count("rewards") > 0
    assert proc.wait(timeout=60) == 1, proc.read_stdout() + proc.read_stderr()
    assert db.count("reward_claims") == claims
    error = db.scalar("SELECT error_message FROM process_logs")
    assert "foreign keys that reference the source: none -> " in error and "reward_claims" in error, error
    assert "ON DELETE CASCADE" in error, error


def test_a_delete_trigger_added_mid_run_never_fires(db, tmp_path, spawn_cli):
    config = make_job(db, tmp_path)
    original = snapshot(db, "rewards")
    db.execute("CREATE TABLE deletions (id BIGINT) ENGINE=MyISAM")  # a rollback would not undo it
    with held_run(db, config, spawn_cli) as proc:
        db.execute("CREATE TRIGGER log_deletes AFTER DELETE ON rewards FOR EACH ROW "
                   "INSERT INTO deletions VALUES (OLD.id)")
    assert proc.wait(timeout=60) == 1, proc.read_stdout() + proc.read_stderr()
    assert db.count("deletions") == 0, "the trigger fired"
    error = db.scalar("SELECT error_message FROM process_logs")
    assert "triggers on their writes: none -> rewards AFTER DELETE log_deletes" in error, error
    assert "set [archive] allow_triggers = yes to accept them" in error, error
    assert snapshot(db, "rewards") == original


def test_a_source_switched_to_myisam_mid_run_loses_no_row(db, tmp_path, spawn_cli):
    config = make_job(db, tmp_path)
    original = snapshot(db, "rewards")
    with held_run(db, config, spawn_cli) as proc:
        db.execute("ALTER TABLE rewards ENGINE=MyISAM")
    assert proc.wait(timeout=60) == 1, proc.read_stdout() + proc.read_stderr()
    error = db.scalar("SELECT error_message FROM process_logs")
    assert "engines: rewards InnoDB BASE TABLE" in error and "rewards MyISAM BASE TABLE" in error, error
    assert "uses the MyISAM engine, which cannot roll back" in error, error
    source, archived = snapshot(db, "rewards"), snapshot(db, "rewards_archives")
    assert {**source, **archived} == original and not set(source) & set(archived)


def test_an_archive_column_added_with_a_default_goes_on(db, tmp_path, spawn_cli):
    config = make_job(db, tmp_path)
    original = snapshot(db, "rewards")
    with held_run(db, config, spawn_cli) as proc:
        db.execute("ALTER TABLE rewards_archives ADD COLUMN batch_note VARCHAR(20) NOT NULL DEFAULT 'n/a'")
    assert proc.wait(timeout=60) == 0, proc.read_stdout() + proc.read_stderr()
    assert snapshot(db, "rewards_archives") == original
    assert "SCHEMA_CHANGED: `rewards_archives`: + `batch_note`" in text_log(tmp_path)


# Found by the issue-19 red team, now fixed: the gate tells a trigger dropped and made again under its
# name by CREATED, which is the creating statement's start time: SET TIMESTAMP (as a binlog replay or a
# schema tool that keeps times does) gives the new trigger the old one's CREATED, and its new body fires
# in every batch unseen
def test_an_accepted_trigger_made_again_with_another_body_and_its_old_time_stops_the_run(
        db, tmp_path, spawn_cli):
    config = make_job(db, tmp_path, archive__allow_triggers="yes")
    db.execute("CREATE TABLE deletions (id BIGINT) ENGINE=InnoDB")
    db.execute("CREATE TRIGGER log_deletes AFTER DELETE ON rewards FOR EACH ROW "
               "INSERT INTO deletions VALUES (OLD.id)")
    created = db.scalar("SELECT UNIX_TIMESTAMP(CREATED) FROM information_schema.TRIGGERS "
                        "WHERE TRIGGER_NAME = 'log_deletes'")
    with held_run(db, config, spawn_cli) as proc:
        db.execute(f"SET SESSION timestamp = {created}")
        db.execute("DROP TRIGGER log_deletes")
        db.execute("CREATE TRIGGER log_deletes AFTER DELETE ON rewards FOR EACH ROW "
                   "INSERT INTO deletions VALUES (-OLD.id)")  # another body: the approved one is gone
        db.execute("SET SESSION timestamp = DEFAULT")
    code = proc.wait(timeout=60)
    assert db.count("deletions", "id < 0") == 0, f"the new trigger fired {db.count('deletions')} times"
    assert code == 1, proc.read_stdout() + proc.read_stderr()


# --------------------------------------------------------------------------- into another server

def make_remote_job(db: ScratchDatabase, dest: ScratchDatabase, tmp_path: Path, **extra: Any) -> Path:
    """rewards on the source, rewards_archives on the destination, a config whose run can be held."""
    config, _ = remote_job(db, dest, tmp_path, ROWS, list(ROWS), archive__batch_size=BATCH,
                           controls__max_threads_running=3, controls__check_interval=0.05, **extra)
    assert dest_keys(dest)["destination__database"] in config.read_text()
    return config


def test_into_another_server_a_column_added_to_the_source_only_stops_the_run(db, dest_db, tmp_path,
                                                                             spawn_cli):
    config = make_remote_job(db, dest_db, tmp_path)
    with held_run(db, config, spawn_cli) as proc:
        db.execute("ALTER TABLE rewards ADD COLUMN extra INT NULL")
        db.execute("UPDATE rewards SET extra = id")
        original = snapshot(db, "rewards", EXTRA)
    assert proc.wait(timeout=60) == 1, proc.read_stdout() + proc.read_stderr()
    error = db.scalar("SELECT error_message FROM process_logs")
    assert "`rewards`: + `extra` int(11) DEFAULT NULL" in error and "has no column `extra`" in error, error
    assert snapshot(db, "rewards", EXTRA) == original
    assert dest_db.count("rewards_archives") == 0


def test_into_another_server_a_column_added_to_both_goes_on_with_it(db, dest_db, tmp_path, spawn_cli):
    config = make_remote_job(db, dest_db, tmp_path)
    with held_run(db, config, spawn_cli) as proc:
        dest_db.execute("ALTER TABLE rewards_archives ADD COLUMN extra INT NULL")
        db.execute("ALTER TABLE rewards ADD COLUMN extra INT NULL")
        db.execute("UPDATE rewards SET extra = id * 5")
        original = snapshot(db, "rewards", EXTRA)
    assert proc.wait(timeout=60) == 0, proc.read_stdout() + proc.read_stderr()
    assert db.count("rewards") == 0
    assert snapshot(dest_db, "rewards_archives", EXTRA) == original
    assert "SCHEMA_CHANGED: `rewards`: + `extra`" in text_log(tmp_path)


@pytest.mark.parametrize("ddl, change", [
    ("ALTER TABLE rewards_archives MODIFY amount DECIMAL(10,1) NOT NULL",
     "`rewards_archives`: - `amount` decimal(12,2) NOT NULL"),
    ("ALTER TABLE rewards_archives ENGINE=MyISAM", "rewards_archives MyISAM BASE TABLE"),
], ids=["a narrowed archive column", "the archive switched to MyISAM"])
def test_into_another_server_a_destination_that_can_no_longer_keep_the_copy_gets_nothing(
        db, dest_db, tmp_path, spawn_cli, ddl, change):
    config = make_remote_job(db, dest_db, tmp_path)
    original = snapshot(db, "rewards")
    with held_run(db, config, spawn_cli) as proc:
        dest_db.execute(ddl)
    assert proc.wait(timeout=60) == 1, proc.read_stdout() + proc.read_stderr()
    error = db.scalar("SELECT error_message FROM process_logs")
    assert change in error, error
    assert snapshot(db, "rewards") == original
    assert dest_db.count("rewards_archives") == 0



# Found by the issue-19 red team, now fixed: after a change the destination's definitions are read with
# read_definitions, which neither reconnects a destination session that is gone (its wait_timeout ran out
# during a pause, the destination restarted) nor lets retry_transaction retry: the batch's rollback
# forgets the dead session and the read fails on it (AttributeError on its cursor), so the run dies with
# an internal error
def test_into_another_server_a_change_while_the_destination_session_is_gone_goes_on(
        db, dest_db, tmp_path, spawn_cli):
    config = make_remote_job(db, dest_db, tmp_path)
    with held_run(db, config, spawn_cli) as proc:
        dest_db.execute("ALTER TABLE rewards_archives ADD COLUMN extra INT NULL")
        db.execute("ALTER TABLE rewards ADD COLUMN extra INT NULL")
        db.execute("UPDATE rewards SET extra = id * 5")
        original = snapshot(db, "rewards", EXTRA)
        # The destination drops the paused run's idle session, as its wait_timeout (lock_lease +
        # lock_wait_timeout) does during a long pause, or a restart of the destination.
        for (session,) in dest_db.query("SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s "
                                        "AND ID <> CONNECTION_ID()", (dest_db.name,)):
            dest_db.execute(f"KILL {int(session)}")
    assert proc.wait(timeout=60) == 0, proc.read_stdout() + proc.read_stderr()
    assert db.count("rewards") == 0
    assert snapshot(dest_db, "rewards_archives", EXTRA) == original

# --------------------------------------------------------------------------- changes that land mid-batch

@contextlib.contextmanager
def row_held(db: ScratchDatabase, key: int) -> Iterator[None]:
    """Hold row `key` of rewards FOR UPDATE, as the application does for a moment: a batch that
    reaches it waits there, its gate already passed; the row is released after the body."""
    locker = db.connect()
    try:
        cur = locker.cursor()
        cur.execute("BEGIN")
        cur.execute(f"SELECT id FROM rewards WHERE id = {int(key)} FOR UPDATE")
        cur.fetchall()
        yield
        cur.execute("ROLLBACK")
    finally:
        locker.close()


def make_held_job(db: ScratchDatabase, dest: ScratchDatabase, tmp_path: Path, remote: bool) -> Path:
    """make_job or make_remote_job, with batches that wait minutes for a row lock, not seconds."""
    if remote:
        return make_remote_job(db, dest, tmp_path, archive__lock_wait_timeout=120, archive__lock_lease=300)
    return make_job(db, tmp_path, archive__lock_wait_timeout=120, archive__lock_lease=300)


CLAIMS = ("CREATE TABLE reward_claims (id INT PRIMARY KEY AUTO_INCREMENT, reward_id BIGINT NOT NULL, "
          "KEY (reward_id)) ENGINE=InnoDB")
# How a DBA adds the foreign key a child table lacked without copying the child: InnoDB then
# takes no metadata lock on the parent, so this does not wait for the batch that holds rewards.
ADD_CASCADE = ("ALTER TABLE reward_claims ADD CONSTRAINT claims_reward FOREIGN KEY (reward_id) "
               "REFERENCES rewards (id) ON DELETE CASCADE, ALGORITHM=INPLACE")


# Found by the issue-19 red team, now fixed: a child's foreign key added mid-batch (ALGORITHM=INPLACE with
# foreign_key_checks=0, or CREATE TABLE ... REFERENCES) takes no metadata lock on the parent, so it lands
# after the batch's gate read INNODB_SYS_FOREIGN and the DELETE cascades into the child
@pytest.mark.parametrize("remote", [False, True], ids=["same server", "into another server"])
def test_a_cascading_foreign_key_added_while_a_batch_waits_deletes_no_child_row(
        db, dest_db, tmp_path, spawn_cli, remote):
    config = make_held_job(db, dest_db, tmp_path, remote)
    db.execute(CLAIMS)
    db.execute("INSERT INTO reward_claims (reward_id) SELECT id FROM rewards")
    claims = db.count("reward_claims")
    assert run_cli(config, "--check").returncode == 0  # no foreign key references rewards yet
    with row_held(db, 10):
        proc = spawn_cli(config)
        wait_for_a_lock_wait(db, "batch 1 to wait on row 10")
        db.execute("SET SESSION foreign_key_checks = 0")
        db.execute(ADD_CASCADE)
        db.execute("SET SESSION foreign_key_checks = 1")
    assert proc.wait(timeout=120) == 1, proc.read_stdout() + proc.read_stderr()
    assert db.count("reward_claims") == claims, "the batch's DELETE cascaded into reward_claims"


@pytest.fixture(scope="module")
def short_concat_server(own_server):
    """A throwaway server with group_concat_max_len = 1024, MySQL's default (MariaDB's is 1 MB)."""
    return own_server("concat", "--group-concat-max-len=1024")


# Found by the issue-19 red team, now fixed: the gate compares the referencing foreign keys (and the
# triggers) as one GROUP_CONCAT, which the server cuts at group_concat_max_len (1024 bytes by MySQL's
# default) with only a warning, so a change past the cut reads as no change
def test_a_foreign_key_made_cascading_past_group_concat_max_len_is_seen(short_concat_server, tmp_path,
                                                                        spawn_cli):
    db = ScratchDatabase.create(short_concat_server, "concat_cut_rewards")
    try:
        config = make_job(db, tmp_path)
        for n in range(16):  # restricting children, as a central table has: noted, not refused
            db.execute(f"CREATE TABLE reward_child_{n:02} (id INT PRIMARY KEY, reward_id BIGINT, CONSTRAINT "
                       f"child_{n:02}_reward FOREIGN KEY (reward_id) REFERENCES rewards (id)) ENGINE=InnoDB")
        approved = db.scalar("SELECT GROUP_CONCAT(ID, ' ', FOR_NAME, ' ', TYPE ORDER BY ID SEPARATOR ', ') "
                             "FROM information_schema.INNODB_SYS_FOREIGN")
        assert len(approved) == 1024, "the foreign keys' text is cut"
        with held_run(db, config, spawn_cli) as proc:
            db.execute("SET SESSION foreign_key_checks = 0")
            db.execute("ALTER TABLE reward_child_15 DROP FOREIGN KEY child_15_reward, ADD CONSTRAINT "
                       "child_15_reward_cascading FOREIGN KEY (reward_id) REFERENCES rewards (id) "
                       "ON DELETE CASCADE, ALGORITHM=INPLACE")
            db.execute("SET SESSION foreign_key_checks = 1")
            db.execute("INSERT INTO reward_child_15 SELECT id, id FROM rewards")
            children = db.count("reward_child_15")
        assert proc.wait(timeout=60) == 1, proc.read_stdout() + proc.read_stderr()
        assert db.count("reward_child_15") == children, "the batches' DELETEs cascaded into reward_child_15"
        error = db.scalar("SELECT error_message FROM process_logs")
        assert "child_15_reward_cascading: ON DELETE CASCADE" in error, error
    finally:
        db.drop()
