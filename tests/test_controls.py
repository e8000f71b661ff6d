"""Pauses and stops (archive.py class Controls), against real servers.

Covered: max_runtime (config key and --max-runtime), stop_file, guard,
max_threads_running (real busy server threads) and replica lag on a REAL
primary/replica pair started by this module (see tests/replication.py): the
replica's SQL thread stopped (lag unknown), the replica server restarted,
real lag from a table lock that blocks the replica's SQL thread, and
replica_timeout giving up (also for an unreachable replica).

Every stop must be clean and resumable: exit code 6, process_logs INTERRUPTED
with a stop_reason, an ``INTERRUPTED:`` line and a SUMMARY line in the text
log, the reason in ``--status``; a rerun finishes the job with every batch
number of the file recorded completed exactly once across the runs, and the
source and archive tables together hold exactly the original rows.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import mysql.connector
import pytest

from checks import assert_batches_once
from helpers import (
    ScratchDatabase,
    create_rewards_tables,
    insert_rewards,
    read_text_logs,
    remove_unless_kept,
    reward_row,
    run_cli,
    snapshot,
    unique_db_name,
    wait_until,
    write_config,
    write_csv,
)
from replication import MONITOR_PASSWORD, ReplicationPair, free_port
from throwaway_server import find_mariadb_binary

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 6
DONE = ("COMPLETED", "COMPLETED_WITH_DUPLICATES")
CSV_NAME = "keys.csv"


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------

@dataclass
class Job:
    """One prepared archiving job: tables filled, a CSV of keys and a config."""

    tmp: Path
    db: ScratchDatabase
    config: Path
    listed: list[int]
    unlisted: list[int]
    batch_size: int

    @property
    def total_batches(self) -> int:
        """How many batches the CSV makes."""
        return -(-len(self.listed) // self.batch_size)

    @property
    def log_dir(self) -> Path:
        """Where write_config points the text logs."""
        return self.tmp / "logs"


def make_job(tmp_path: Path, db: ScratchDatabase, listed: Iterable[int], *,
             unlisted: Iterable[int] = (), batch_size: int = 10, **overrides: Any) -> Job:
    """Create and fill the rewards tables, write keys.csv and a config (overrides as section__key)."""
    listed, unlisted = list(listed), list(unlisted)
    create_rewards_tables(db)
    insert_rewards(db, sorted(set(listed) | set(unlisted)))
    write_csv(tmp_path / "csv" / CSV_NAME, listed)
    config = write_config(tmp_path, db, archive__batch_size=batch_size, **overrides)
    return Job(tmp_path, db, config, listed, unlisted, batch_size)


def runs(db: ScratchDatabase) -> list[dict[str, Any]]:
    """Every process_logs row, oldest first."""
    return db.query_dicts("SELECT * FROM process_logs ORDER BY id")


def file_rows(db: ScratchDatabase, run_id: int) -> list[dict[str, Any]]:
    """The file_processing_logs rows of one run."""
    return db.query_dicts("SELECT * FROM file_processing_logs WHERE process_log_id = %s ORDER BY id",
                          (run_id,))


def completed_batches(db: ScratchDatabase, file_name: str = CSV_NAME) -> list[int]:
    """Batch numbers recorded completed for the file, across all runs (with repeats), sorted."""
    try:
        rows = db.query(
            "SELECT batch_number FROM batch_processing_logs WHERE file_name = %s "
            "AND status IN ('COMPLETED', 'COMPLETED_WITH_DUPLICATES') ORDER BY batch_number",
            (file_name,))
    except mysql.connector.Error:  # tracking tables not created yet
        return []
    return [int(r[0]) for r in rows]


def log_text(job: Job) -> str:
    """All text logs of the job, concatenated."""
    return read_text_logs(job.log_dir)


def log_lines(job: Job, prefix: str) -> list[str]:
    """Text log lines starting with *prefix*."""
    return [line for line in log_text(job).splitlines() if line.startswith(prefix)]


def summaries(job: Job) -> list[str]:
    """The SUMMARY lines of the text log, in order."""
    return [line for line in log_text(job).splitlines() if "SUMMARY:" in line]


def status_text(job: Job) -> str:
    """What ``--status`` prints; it must succeed."""
    res = run_cli(job.config, "--status", timeout=30)
    assert res.returncode == EXIT_OK, res.stdout + res.stderr
    return res.stdout


def assert_each_batch_once(job: Job) -> None:
    """Across all runs, batches 1..N of the file are recorded completed exactly once each."""
    assert_batches_once(job.db, CSV_NAME, job.total_batches)


def assert_rows(job: Job, moved: Iterable[int], stayed: Iterable[int]) -> None:
    """The archive holds exactly *moved* and the source exactly *stayed*, every value intact."""
    assert snapshot(job.db, "rewards_archives") == {k: reward_row(k) for k in sorted(moved)}
    assert snapshot(job.db, "rewards") == {k: reward_row(k) for k in sorted(stayed)}


def assert_clean_stop(job: Job, res_stdout: str, reason_fragment: str) -> dict[str, Any]:
    """The latest run stopped cleanly: INTERRUPTED with the reason everywhere it should be."""
    run = runs(job.db)[-1]
    assert run["status"] == "INTERRUPTED", run
    assert run["end_time"] is not None
    assert reason_fragment in (run["stop_reason"] or ""), run
    reason = run["stop_reason"]
    interrupted = log_lines(job, "INTERRUPTED:")
    assert interrupted and reason in interrupted[-1], interrupted
    summary = summaries(job)[-1]
    assert "SUMMARY: INTERRUPTED" in summary and f"stopped: {reason}" in summary, summary
    assert "SUMMARY: INTERRUPTED" in res_stdout  # shown even without a terminal
    status = status_text(job)
    assert f"Run {run['id']}: INTERRUPTED" in status, status
    assert f"stop reason: {reason}" in status, status
    return run


def finish_with_rerun(job: Job, *args: str) -> dict[str, Any]:
    """Rerun (no controls that stop) and check it completes the job from where it stopped."""
    before = completed_batches(job.db)
    res = run_cli(job.config, *args, timeout=60)
    assert res.returncode == EXIT_OK, res.stdout + res.stderr
    run = runs(job.db)[-1]
    assert run["status"] == "COMPLETED" and run["stop_reason"] is None, run
    files = file_rows(job.db, run["id"])
    assert len(files) == 1 and files[0]["status"] == "COMPLETED", files
    assert files[0]["start_batch"] == len(before) + 1, (files[0], before)
    assert_each_batch_once(job)
    return run


def assert_gave_up_after(job: Job, run: dict[str, Any], replica_timeout: float) -> None:
    """The run gave up once the replica trouble had lasted replica_timeout, by its own clock: the
    pause it reports is at least that long, and shorter than replica_timeout plus 10 s (the next
    check is due within check_interval; the slack is for a loaded machine, not for the code)."""
    paused = paused_seconds(summaries(job)[-1])
    waited = re.search(r"gave up after (\d+)s", run["stop_reason"])
    assert waited and int(waited.group(1)) >= replica_timeout, run["stop_reason"]
    assert replica_timeout <= paused < replica_timeout + 10, (paused, run["stop_reason"])


def paused_seconds(summary: str) -> float:
    """The 'paused N.Ns' figure of a SUMMARY line."""
    match = re.search(r"\| paused (\d+(?:\.\d+)?)s \|", summary)
    assert match, summary
    return float(match.group(1))


# --------------------------------------------------------------------------
# max_runtime
# --------------------------------------------------------------------------

def test_max_runtime_stops_between_batches_and_rerun_finishes(tmp_path: Path, db: ScratchDatabase) -> None:
    """--max-runtime 1 with 20 batches 0.3 s apart stops early (exit 6); a rerun finishes."""
    job = make_job(tmp_path, db, range(1, 201), unlisted=range(1001, 1011), batch_size=10,
                   controls__sleep_seconds=0.3)
    res = run_cli(job.config, "--max-runtime", "1", timeout=60)
    assert res.returncode == EXIT_INTERRUPTED, res.stdout + res.stderr

    run = assert_clean_stop(job, res.stdout, "max_runtime")
    done = completed_batches(db)
    # Batch n starts after n - 1 sleeps of 0.3 s, so within the first second of the run at most
    # batches 1 to 4 can start; a slow machine only makes fewer. A run that starts a batch after
    # max_runtime has passed does more.
    assert 1 <= len(done) <= 4 and done == list(range(1, len(done) + 1)), done
    assert run["rows_archived"] == len(done) * 10
    assert [f["status"] for f in file_rows(db, run["id"])] == ["INTERRUPTED"]
    moved = job.listed[: len(done) * 10]
    assert_rows(job, moved, sorted(set(job.listed) - set(moved)) + job.unlisted)

    finish_with_rerun(job, "--sleep", "0")
    assert_rows(job, job.listed, job.unlisted)


def test_max_runtime_from_config_ends_a_long_pause(tmp_path: Path, db: ScratchDatabase) -> None:
    """[controls] max_runtime also ends a pause (here: an unreachable replica), promptly."""
    job = make_job(tmp_path, db, range(1, 31), batch_size=10,
                   controls__max_runtime="1s", controls__check_interval=0.2,
                   controls__replicas=f"mysql://mon:{MONITOR_PASSWORD}@127.0.0.1:{free_port()}",
                   controls__replica_timeout=600)
    started = time.monotonic()
    res = run_cli(job.config, timeout=120)
    elapsed = time.monotonic() - started
    assert res.returncode == EXIT_INTERRUPTED, res.stdout + res.stderr
    # Without max_runtime the pause lasts replica_timeout, 600 s: a tenth of it is "promptly"
    # even on a loaded machine, and far from what a pause that ignores max_runtime takes.
    assert elapsed < 60, f"took {elapsed:.1f}s"
    assert_clean_stop(job, res.stdout, "max_runtime")
    assert any("lag unknown" in line for line in log_lines(job, "PAUSE:")), log_text(job)
    assert completed_batches(db) == []
    assert_rows(job, [], job.listed)


def test_sigterm_ends_a_pause_long_before_check_interval(tmp_path: Path, db: ScratchDatabase,
                                                         spawn_cli: Any) -> None:
    """A pause waits in short steps: SIGTERM stops it at once, not after check_interval."""
    job = make_job(tmp_path, db, range(1, 31), batch_size=10, controls__check_interval=600,
                   controls__replicas=f"mysql://mon:{MONITOR_PASSWORD}@127.0.0.1:{free_port()}",
                   controls__replica_timeout=600)
    proc = spawn_cli(job.config)
    wait_until(lambda: log_lines(job, "PAUSE:"), timeout=30, message="PAUSE line")
    proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    assert proc.wait(timeout=120) == EXIT_INTERRUPTED, proc.read_stdout() + proc.read_stderr()
    # A pause that sleeps check_interval in one piece ends 600 s later, not within a tenth of it.
    assert time.monotonic() - sent < 60
    assert_clean_stop(job, proc.read_stdout(), "SIGTERM")
    assert completed_batches(db) == []
    # The stop says why the run was paused, and for how long.
    reason = db.scalar("SELECT stop_reason FROM process_logs")
    assert re.fullmatch(r"received SIGTERM \(while paused [0-9]+s: replica .* lag unknown .*\)",
                        reason), reason
    assert "while paused" in proc.read_stdout()


# --------------------------------------------------------------------------
# stop_file
# --------------------------------------------------------------------------

def test_stop_file_stops_a_running_job_and_rerun_resumes(tmp_path: Path, db: ScratchDatabase,
                                                         spawn_cli: Any) -> None:
    """Creating the stop file mid-run stops it (exit 6); while it exists runs do nothing."""
    stop = tmp_path / "STOP"
    job = make_job(tmp_path, db, range(1, 201), unlisted=range(500, 505), batch_size=10,
                   controls__sleep_seconds=0.3, controls__stop_file=stop)
    proc = spawn_cli(job.config)
    wait_until(lambda: proc.poll() is not None or len(completed_batches(db)) >= 3,
               timeout=30, message="3 batches done")
    assert proc.poll() is None, proc.read_stdout() + proc.read_stderr()
    stop.touch()
    # Read after the touch: every batch started before it is done, or the one batch in flight.
    seen = len(completed_batches(db))
    assert proc.wait(timeout=60) == EXIT_INTERRUPTED, proc.read_stdout() + proc.read_stderr()
    run = assert_clean_stop(job, proc.read_stdout(), "stop file")
    assert str(stop) in run["stop_reason"]
    done = completed_batches(db)
    # Batches run one at a time and each is preceded by a look for the file: at most the batch in
    # flight at the touch ends after it, however slow the machine.
    assert 3 <= len(done) <= seen + 1 and done == list(range(1, len(done) + 1)), (done, seen)

    # While the file exists, a run stops before its first batch and moves nothing.
    res = run_cli(job.config, timeout=60)
    assert res.returncode == EXIT_INTERRUPTED, res.stdout + res.stderr
    again = assert_clean_stop(job, res.stdout, "stop file")
    assert again["id"] != run["id"] and again["rows_archived"] == 0
    assert completed_batches(db) == done

    stop.unlink()
    finish_with_rerun(job, "--sleep", "0")
    assert_rows(job, job.listed, job.unlisted)


def test_stop_file_cuts_a_long_sleep_short(tmp_path: Path, db: ScratchDatabase, spawn_cli: Any) -> None:
    """With sleep_seconds 600, a stop file created after batch 1 ends the run within seconds."""
    stop = tmp_path / "STOP"
    job = make_job(tmp_path, db, range(1, 31), batch_size=10,
                   controls__sleep_seconds=600, controls__stop_file=stop)
    proc = spawn_cli(job.config)
    wait_until(lambda: proc.poll() is not None or completed_batches(db), timeout=30,
               message="batch 1 done")
    stop.touch()
    touched = time.monotonic()
    assert proc.wait(timeout=120) == EXIT_INTERRUPTED, proc.read_stdout() + proc.read_stderr()
    # A sleep that does not look for the file ends 600 s later, not within a tenth of it.
    assert time.monotonic() - touched < 60
    assert_clean_stop(job, proc.read_stdout(), "stop file")
    assert completed_batches(db) == [1]
    stop.unlink()
    finish_with_rerun(job, "--sleep", "0")
    assert_rows(job, job.listed, [])


def test_stop_file_with_a_long_path_still_stops_cleanly(tmp_path: Path, db: ScratchDatabase) -> None:
    """A stop file whose path is longer than 255 characters is still a clean stop (exit 6)."""
    deep = tmp_path.joinpath(*(["d" * 60] * 5))
    deep.mkdir(parents=True)
    stop = deep / "STOP_ARCHIVING_NOW"
    stop.touch()
    assert len(str(stop)) > 300
    job = make_job(tmp_path, db, range(1, 21), batch_size=10, controls__stop_file=stop)
    res = run_cli(job.config, timeout=60)
    assert res.returncode == EXIT_INTERRUPTED, res.stdout + res.stderr
    run = runs(db)[-1]
    assert run["status"] == "INTERRUPTED" and (run["stop_reason"] or "").startswith("stop file"), run
    assert completed_batches(db) == []
    stop.unlink()
    finish_with_rerun(job)
    assert_rows(job, job.listed, [])


# --------------------------------------------------------------------------
# guard
# --------------------------------------------------------------------------

GUARD_BOUNDARY = datetime(2021, 3, 1, 8, 0, 0)  # reward_row(k) created_at < it  <=>  k <= 472


def test_guard_keeps_failing_rows_and_counts_them(tmp_path: Path, db: ScratchDatabase) -> None:
    """Rows failing the guard stay in the source, counted per batch, per run and in SUMMARY."""
    listed = [k for k in range(1, 601) if k % 50]
    unlisted = [k for k in range(1, 601) if k % 50 == 0]
    passes = [k for k in listed if reward_row(k)[6] < GUARD_BOUNDARY]
    fails = [k for k in listed if reward_row(k)[6] >= GUARD_BOUNDARY]
    batches = [listed[i:i + 100] for i in range(0, len(listed), 100)]
    mixed = [b for b in batches if any(k in passes for k in b) and any(k in fails for k in b)]
    assert passes and fails and mixed, "the boundary must split a batch"
    job = make_job(tmp_path, db, listed, unlisted=unlisted, batch_size=100,
                   controls__guard=f"created_at < '{GUARD_BOUNDARY:%Y-%m-%d %H:%M:%S}'")

    dry = run_cli(job.config, "--dry-run", timeout=60)
    assert dry.returncode == EXIT_OK, dry.stdout + dry.stderr
    total = re.search(r"^TOTAL\s+(\d+)\s+(\d+)", dry.stdout, re.M)
    assert total and (int(total.group(1)), int(total.group(2))) == (len(batches), len(passes)), dry.stdout

    res = run_cli(job.config, timeout=60)
    assert res.returncode == EXIT_OK, res.stdout + res.stderr
    assert_rows(job, passes, sorted(fails + unlisted))

    run = runs(db)[-1]
    assert run["status"] == "COMPLETED", run
    assert (run["rows_archived"], run["rows_deleted"], run["skipped_by_guard"]) == (
        len(passes), len(passes), len(fails))
    (frow,) = file_rows(db, run["id"])
    assert (frow["status"], frow["skipped_by_guard"], frow["rows_archived"]) == (
        "COMPLETED", len(fails), len(passes))
    per_batch = db.query_dicts("SELECT batch_number, status, rows_archived, skipped_by_guard "
                               "FROM batch_processing_logs ORDER BY batch_number")
    expected = [{"batch_number": n, "status": "COMPLETED",
                 "rows_archived": sum(k in passes for k in b),
                 "skipped_by_guard": sum(k in fails for k in b)}
                for n, b in enumerate(batches, start=1)]
    assert per_batch == expected
    summary = summaries(job)[-1]
    assert f"skipped by guard {len(fails)} " in summary, summary
    assert f"rows archived {len(passes)} " in summary, summary
    assert f"skipped by guard {len(fails)}" in status_text(job)


def test_guard_that_is_null_counts_as_failing(tmp_path: Path, db: ScratchDatabase) -> None:
    """A guard that is NULL for a row (note <> '' with a NULL note) keeps the row."""
    listed = list(range(1, 71))
    passes = [k for k in listed if reward_row(k)[3] not in (None, "")]
    fails = [k for k in listed if reward_row(k)[3] in (None, "")]
    assert any(reward_row(k)[3] is None for k in fails) and any(reward_row(k)[3] == "" for k in fails)
    job = make_job(tmp_path, db, listed, batch_size=10, controls__guard="note <> ''")
    res = run_cli(job.config, timeout=60)
    assert res.returncode == EXIT_OK, res.stdout + res.stderr
    assert_rows(job, passes, fails)
    assert runs(db)[-1]["skipped_by_guard"] == len(fails)
    assert f"skipped by guard {len(fails)} " in summaries(job)[-1]


def test_a_held_back_row_whose_key_is_archived_too_is_a_conflict_until_resolved(
        tmp_path: Path, db: ScratchDatabase) -> None:
    """A row the guard holds back while the archive holds a copy (a restored backup, say) is in
    both tables: a conflict (exit 3), not "skipped"; once the copy is gone it is only held back."""
    job = make_job(tmp_path, db, range(1, 11), batch_size=10, controls__guard="user_id <> -1")
    db.execute("UPDATE rewards SET user_id = -1 WHERE id IN (3, 4)")
    insert_rewards(db, [3], table="rewards_archives")
    res = run_cli(job.config, timeout=60)
    assert res.returncode == 3, res.stdout + res.stderr
    assert sorted(snapshot(db, "rewards")) == [3, 4] and sorted(snapshot(db, "rewards_archives")) == [
        1, 2, 3, 5, 6, 7, 8, 9, 10]
    assert (runs(db)[-1]["conflicts"], runs(db)[-1]["skipped_by_guard"]) == (1, 1)
    db.execute("DELETE FROM rewards_archives WHERE id = 3")  # the README's conflict procedure
    again = run_cli(job.config, timeout=60)
    assert again.returncode == EXIT_OK, again.stdout + again.stderr
    assert "1 of 1 earlier conflict(s) resolved" in again.stdout
    assert sorted(snapshot(db, "rewards")) == [3, 4]


@pytest.mark.parametrize("guard", [
    "1=1; DROP TABLE rewards",
    "id IN (SELECT id FROM rewards_archives)",
    "1=1 -- trailing comment",
    "SLEEP(600) = 0",
])
def test_guard_with_a_statement_is_refused_before_touching_anything(
        tmp_path: Path, db: ScratchDatabase, guard: str) -> None:
    """A guard carrying a statement, subquery, comment or sleep is a config error (exit 2)."""
    job = make_job(tmp_path, db, range(1, 21), batch_size=10, controls__guard=guard)
    started = time.monotonic()
    res = run_cli(job.config, timeout=120)
    assert res.returncode == EXIT_USAGE, res.stdout + res.stderr
    # A guard that reached the server would sleep 600 s per row; refused, it never runs.
    assert time.monotonic() - started < 60
    assert "[controls] guard" in res.stderr, res.stderr
    assert db.table_exists("rewards") and not db.table_exists("process_logs")
    assert_rows(job, [], job.listed)


def test_guard_that_is_not_valid_sql_fails_preflight(tmp_path: Path, db: ScratchDatabase) -> None:
    """A guard naming an unknown column fails the preflight (exit 1) and moves nothing."""
    job = make_job(tmp_path, db, range(1, 21), batch_size=10, controls__guard="no_such_column > 0")
    res = run_cli(job.config, timeout=60)
    assert res.returncode == EXIT_FAILED, res.stdout + res.stderr
    assert "guard" in res.stderr and "no_such_column" in res.stderr, res.stderr
    assert runs(db)[-1]["status"] == "FAILED"
    assert_rows(job, [], job.listed)


# --------------------------------------------------------------------------
# max_threads_running
# --------------------------------------------------------------------------

def threads_running(server: Any) -> int:
    """The server's Threads_running (this query's own thread included)."""
    conn = server.connect()
    try:
        cur = conn.cursor()
        cur.execute("SHOW GLOBAL STATUS LIKE 'Threads_running'")
        return int(cur.fetchall()[0][1])
    finally:
        conn.close()


def test_max_threads_running_pauses_until_the_server_is_quiet(
        tmp_path: Path, db: ScratchDatabase, server: Any, spawn_cli: Any) -> None:
    """Three sleeping SELECTs keep Threads_running above 2: the run waits until they are killed.

    The sleepers last until the test kills them (not a few seconds the run must start within, which a
    loaded machine missed): no batch may commit before the kill, and the run ends after it."""
    job = make_job(tmp_path, db, range(1, 51), batch_size=10,
                   controls__max_threads_running=2, controls__check_interval=0.2)
    sleepers: list[int] = []
    errors: list[BaseException] = []

    def sleeper() -> None:
        try:
            conn = server.connect()
            try:
                cur = conn.cursor()
                cur.execute("SELECT CONNECTION_ID()")
                sleepers.append(cur.fetchall()[0][0])
                try:
                    cur.execute("SELECT SLEEP(600)")
                    cur.fetchall()
                except mysql.connector.Error as exc:  # 1317 query interrupted: killed by the test
                    if exc.errno != 1317:
                        raise
            finally:
                conn.close()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=sleeper, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: threads_running(server) >= 4, timeout=30, message="3 sleeping threads")
        proc = spawn_cli(job.config)
        wait_until(lambda: log_lines(job, "PAUSE: Threads_running is "), timeout=60, message="PAUSE line")
        status = run_cli(job.config, "--status")
        assert "PAUSED: Threads_running is" in status.stdout, status.stdout
        assert db.count("batch_processing_logs") == 0 and db.count("rewards") == 50
        killed_at = db.scalar("SELECT NOW(6)")
        for conn_id in sleepers:
            db.execute(f"KILL QUERY {int(conn_id)}")
        code = proc.wait(timeout=120)
    finally:
        for conn_id in sleepers:  # a failed assertion above must not leave them sleeping
            with contextlib.suppress(mysql.connector.Error):
                db.execute(f"KILL QUERY {int(conn_id)}")
        for t in threads:
            t.join(timeout=30)
    assert not errors, errors
    assert code == EXIT_OK, proc.read_stdout() + proc.read_stderr()
    assert db.scalar("SELECT paused_seconds FROM process_logs") > 0

    pauses = log_lines(job, "PAUSE: Threads_running is ")
    assert pauses, log_text(job)
    busy = re.match(r"PAUSE: Threads_running is (\d+)", pauses[0])
    assert busy and int(busy.group(1)) > 2, pauses[0]
    text = log_text(job)
    assert text.index("RESUME:") > text.index("PAUSE: Threads_running")
    # No batch committed while the sleepers ran (server clock on both sides).
    first_commit = db.scalar("SELECT MIN(created_at) FROM batch_processing_logs")
    assert first_commit >= killed_at, (first_commit, killed_at)
    assert paused_seconds(summaries(job)[-1]) > 0
    assert_each_batch_once(job)
    assert_rows(job, job.listed, [])


# --------------------------------------------------------------------------
# replicas: unreachable (no replication needed)
# --------------------------------------------------------------------------

def test_unreachable_replica_gives_up_after_replica_timeout(tmp_path: Path, db: ScratchDatabase) -> None:
    """A replica nobody answers on is 'lag unknown'; after replica_timeout the run gives up."""
    job = make_job(tmp_path, db, range(1, 31), batch_size=10, controls__replica_timeout=1,
                   controls__check_interval=0.2,
                   controls__replicas=f"mysql://mon:{MONITOR_PASSWORD}@127.0.0.1:{free_port()}")
    started = time.monotonic()
    res = run_cli(job.config, timeout=60)
    elapsed = time.monotonic() - started
    assert res.returncode == EXIT_INTERRUPTED, res.stdout + res.stderr
    assert elapsed >= 1
    run = assert_clean_stop(job, res.stdout, "gave up")
    assert_gave_up_after(job, run, 1)
    assert "lag unknown" in run["stop_reason"]
    assert completed_batches(db) == []
    everything = log_text(job) + res.stdout + res.stderr + status_text(job)
    assert MONITOR_PASSWORD not in everything, "the replica's password leaked"


# --------------------------------------------------------------------------
# replicas: a real primary/replica pair
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicationPair]:
    """A primary with a binlog and a replica replicating from it, for this module only."""
    if find_mariadb_binary("mariadbd", "mysqld") is None:
        pytest.skip("needs the MariaDB server binaries to start a primary and a replica")
    basedir = tmp_path_factory.mktemp("replication")
    replication = ReplicationPair(basedir)
    try:
        replication.start()
        yield replication
    finally:
        replication.stop()
        remove_unless_kept(basedir)


@pytest.fixture
def rdb(pair: ReplicationPair, request: pytest.FixtureRequest) -> Iterator[ScratchDatabase]:
    """A scratch database on the replicated primary; replication is healed afterwards."""
    scratch = ScratchDatabase.create(pair.primary, unique_db_name(request.node.name, prefix="r_"))
    try:
        yield scratch
    finally:
        pair.heal()
        scratch.drop()
        pair.sync()


def replica_job(tmp_path: Path, rdb: ScratchDatabase, pair: ReplicationPair, count: int,
                **overrides: Any) -> Job:
    """A job on the replicated primary, with its tables already on the replica."""
    job = make_job(tmp_path, rdb, range(1, count + 1), batch_size=10,
                   controls__check_interval=0.2, **overrides)
    pair.sync()
    return job


def assert_replica_matches(pair: ReplicationPair, rdb: ScratchDatabase) -> None:
    """After catching up, the replica's tables equal the primary's, every column."""
    pair.sync()
    mirror = ScratchDatabase(pair.replica, rdb.name)
    try:
        for table in ("rewards_archives", "rewards"):
            assert snapshot(mirror, table, columns="*") == snapshot(rdb, table, columns="*"), table
        assert mirror.count("batch_processing_logs") == rdb.count("batch_processing_logs")
    finally:
        mirror.close()


def running_after_two_batches(proc: Any, rdb: ScratchDatabase) -> None:
    """Wait until the run has committed two batches; it must still be running."""
    wait_until(lambda: proc.poll() is not None or len(completed_batches(rdb)) >= 2, timeout=30,
               message="2 batches done")
    assert proc.poll() is None, proc.read_stdout() + proc.read_stderr()


def pause_line(job: Job, fragment: str) -> str | None:
    """The first PAUSE: line containing *fragment*, if any yet."""
    return next((line for line in log_lines(job, "PAUSE:") if fragment in line), None)


def wait_for_pause(job: Job, proc: Any, fragment: str, timeout: float) -> str:
    """The first PAUSE: line containing *fragment*, once the run wrote it (it must not end first)."""
    line = wait_until(lambda: proc.poll() is not None or pause_line(job, fragment), timeout=timeout,
                      message=f"PAUSE line with {fragment!r}")
    assert isinstance(line, str), proc.read_stdout() + proc.read_stderr()
    return line


def assert_held(job: Job, proc: Any, rdb: ScratchDatabase, seconds: float) -> None:
    """While paused, the run stays alive and commits no batch for *seconds*."""
    held = len(completed_batches(rdb))
    time.sleep(seconds)
    assert proc.poll() is None
    assert len(completed_batches(rdb)) == held < job.total_batches


def assert_resumed_and_finished(job: Job, proc: Any, pair: ReplicationPair, rdb: ScratchDatabase,
                                fragment: str) -> str:
    """The run resumed after the pause on *fragment* and finished the job on both servers."""
    assert proc.wait(timeout=40) == EXIT_OK, proc.read_stdout() + proc.read_stderr()
    text = log_text(job)
    assert text.index("RESUME:", text.index(fragment)) > 0
    assert_each_batch_once(job)
    assert_rows(job, job.listed, [])
    assert_replica_matches(pair, rdb)
    return text


def test_replica_sql_thread_stopped_pauses_until_it_runs_again(
        tmp_path: Path, rdb: ScratchDatabase, pair: ReplicationPair, spawn_cli: Any) -> None:
    """STOP SLAVE SQL_THREAD mid-run: 'lag unknown' pause, no batch meanwhile; resumes after."""
    job = replica_job(tmp_path, rdb, pair, 200, controls__sleep_seconds=0.3,
                      controls__replicas=pair.monitor_spec(), controls__max_replica_lag=10,
                      controls__replica_timeout=60)
    proc = spawn_cli(job.config)
    running_after_two_batches(proc, rdb)
    pair.stop_sql_thread()
    try:
        line = wait_for_pause(job, proc, "lag unknown", timeout=15)
        assert line.startswith(f"PAUSE: replica mon@127.0.0.1:{pair.replica.port} lag unknown"), line
        assert_held(job, proc, rdb, 1.5)
    finally:
        pair.start_replication()
    text = assert_resumed_and_finished(job, proc, pair, rdb, "lag unknown")
    assert runs(rdb)[-1]["status"] == "COMPLETED"
    assert paused_seconds(summaries(job)[-1]) >= 1.0
    assert MONITOR_PASSWORD not in text + proc.read_stdout()


def test_replica_lag_above_max_replica_lag_pauses(
        tmp_path: Path, rdb: ScratchDatabase, pair: ReplicationPair, spawn_cli: Any) -> None:
    """A table lock on the replica blocks its SQL thread; real lag > 1s pauses the run."""
    job = replica_job(tmp_path, rdb, pair, 200, controls__sleep_seconds=0.3,
                      controls__replicas=pair.monitor_spec(), controls__max_replica_lag=1,
                      controls__replica_timeout=60)
    blocker = pair.replica.connect(rdb.name)
    try:
        blocker.cursor().execute("LOCK TABLES rewards_archives WRITE")
        proc = spawn_cli(job.config)
        line = wait_for_pause(job, proc, "behind", timeout=20)
        lag = re.search(r"is (\d+(?:\.\d+)?)s behind \(max_replica_lag 1s\)", line)
        assert lag and float(lag.group(1)) > 1, line
        assert (pair.lag() or 0) > 1
        assert_held(job, proc, rdb, 1.0)
    finally:
        blocker.cursor().execute("UNLOCK TABLES")
        blocker.close()
    assert_resumed_and_finished(job, proc, pair, rdb, "s behind")


@contextlib.contextmanager
def pt_heartbeat(pair: ReplicationPair, database: str) -> Iterator[None]:
    """A real pt-heartbeat --update --utc on the primary (a row every 0.2 s in database.heartbeat),
    for as long as the body runs."""
    command = ["pt-heartbeat", "--update", "--utc", "--create-table", "--database", database,
               "--table", "heartbeat", "--interval", "0.2", f"S={pair.primary.socket},u=root"]
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        mirror = ScratchDatabase(pair.replica, database)
        try:
            wait_until(lambda: proc.poll() is not None or (mirror.table_exists("heartbeat") and mirror.scalar(
                "SELECT COUNT(*) FROM heartbeat")), timeout=30, message="pt-heartbeat's first heartbeat")
        finally:
            mirror.close()
        assert proc.poll() is None, proc.communicate()[0]
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_replica_lag_from_pt_heartbeat_pauses_while_the_replica_falls_behind(
        tmp_path: Path, rdb: ScratchDatabase, pair: ReplicationPair, spawn_cli: Any) -> None:
    """replica_lag_source = heartbeat:db.heartbeat: the lag is the age of the newest heartbeat the
    replica applied. The SQL thread stopped, Seconds_Behind_Master is NULL; the heartbeat says how
    far behind (a number that grows), and the run pauses until the replica catches up."""
    if shutil.which("pt-heartbeat") is None:
        pytest.skip("needs pt-heartbeat (Debian package percona-toolkit)")
    job = replica_job(tmp_path, rdb, pair, 200, controls__sleep_seconds=0.3,
                      controls__replicas=pair.socket_spec(), controls__max_replica_lag=1,
                      controls__replica_timeout=60,
                      controls__replica_lag_source=f"heartbeat:{rdb.name}.heartbeat")
    with pt_heartbeat(pair, rdb.name):
        proc = spawn_cli(job.config)
        running_after_two_batches(proc, rdb)
        pair.stop_sql_thread()
        try:
            line = wait_for_pause(job, proc, "behind", timeout=20)
            lag = re.search(rf"is ([0-9.]+)s behind \(pt-heartbeat {rdb.name}\.heartbeat; "
                            r"max_replica_lag 1s\)", line)
            assert lag and float(lag.group(1)) >= 1, line  # above 1 s, said to a tenth
            assert pair.lag() is None  # what SHOW SLAVE STATUS would have said: unknown
            assert_held(job, proc, rdb, 1.0)
        finally:
            pair.start_replication()
        assert_resumed_and_finished(job, proc, pair, rdb, "s behind")


def test_replica_restarted_mid_run_pauses_then_resumes(
        tmp_path: Path, rdb: ScratchDatabase, pair: ReplicationPair, spawn_cli: Any) -> None:
    """The replica server goes away mid-run: pause (lag unknown); back and replicating: resume."""
    job = replica_job(tmp_path, rdb, pair, 200, controls__sleep_seconds=0.3,
                      controls__replicas=pair.monitor_spec(), controls__replica_timeout=60)
    proc = spawn_cli(job.config)
    running_after_two_batches(proc, rdb)
    pair.replica.stop()
    try:
        wait_for_pause(job, proc, "lag unknown", timeout=15)
        assert_held(job, proc, rdb, 0.6)
    finally:
        pair.replica.start()
        pair.start_replication()
    assert_resumed_and_finished(job, proc, pair, rdb, "lag unknown")


def test_replica_timeout_gives_up_and_rerun_completes(
        tmp_path: Path, rdb: ScratchDatabase, pair: ReplicationPair) -> None:
    """Replication stopped, replica_timeout 2: INTERRUPTED 'gave up' (exit 6); rerun finishes."""
    job = replica_job(tmp_path, rdb, pair, 50, controls__replicas=pair.socket_spec(),
                      controls__replica_timeout=2)
    pair.stop_replication()
    started = time.monotonic()
    res = run_cli(job.config, timeout=60)
    elapsed = time.monotonic() - started
    assert res.returncode == EXIT_INTERRUPTED, res.stdout + res.stderr
    assert elapsed >= 2, elapsed
    run = assert_clean_stop(job, res.stdout, "gave up")
    assert_gave_up_after(job, run, 2)
    assert "lag unknown" in run["stop_reason"]
    assert pause_line(job, "lag unknown")
    assert completed_batches(rdb) == []
    assert_rows(job, [], job.listed)

    pair.start_replication()
    finish_with_rerun(job)
    assert_rows(job, job.listed, [])
    assert_replica_matches(pair, rdb)


def test_check_looks_at_each_replica_it_would_watch(
        tmp_path: Path, rdb: ScratchDatabase, pair: ReplicationPair) -> None:
    """--check names each replica's server and lag now, and a replica it cannot reach as a note."""
    gone = f"mysql://mon:{MONITOR_PASSWORD}@127.0.0.1:{free_port()}"
    job = replica_job(tmp_path, rdb, pair, 20, controls__replicas=f"{pair.monitor_spec()}, {gone}")
    result = run_cli(job.config, "--check")
    assert result.returncode == EXIT_OK, result.stdout + result.stderr
    assert re.search(rf"^replica: mon@127\.0\.0\.1:{pair.replica.port}: MariaDB 10\.[0-9.]+, lag [0-9]+s "
                     r"\(Seconds_Behind_Master of 1 channel\)$",
                     result.stdout, re.M), result.stdout
    assert re.search(r"^note: replica mon@127\.0\.0\.1:[0-9]+ cannot be reached now", result.stdout, re.M)
    pair.stop_sql_thread()
    try:
        stopped = run_cli(job.config, "--check").stdout
    finally:
        pair.start_replication()
    assert "lag unknown (Seconds_Behind_Master of 1 channel; not replicating?): a run pauses" in stopped
    assert MONITOR_PASSWORD not in result.stdout + stopped


def test_a_mariadb_replica_is_watched_on_every_named_connection(
        tmp_path: Path, rdb: ScratchDatabase, pair: ReplicationPair) -> None:
    """MariaDB's SHOW REPLICA STATUS shows only the default connection: a named one (multi-source
    replication, maybe the one from this source) went unwatched. SHOW ALL SLAVES STATUS has them all."""
    job = replica_job(tmp_path, rdb, pair, 20, controls__replicas=pair.monitor_spec())
    rep = pair.replica.connect()
    try:
        rep.cursor().execute("CHANGE MASTER 'other' TO MASTER_HOST = '127.0.0.1', "
                             f"MASTER_PORT = {free_port()}, MASTER_USER = 'nobody'")  # never started
        stopped = run_cli(job.config, "--check").stdout
    finally:
        rep.cursor().execute("RESET SLAVE 'other' ALL")
        rep.close()
    assert "lag unknown (Seconds_Behind_Master of 2 channels; not replicating?): a run pauses" in stopped, \
        stopped
    again = run_cli(job.config, "--check").stdout
    assert re.search(r"lag [0-9]+s \(Seconds_Behind_Master of 1 channel\)", again), again
