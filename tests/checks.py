"""Jobs for the tests to run and the invariants every run must keep, shared by the test files."""

from __future__ import annotations

import hashlib
import re
import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import archive
from helpers import (
    CliProcess,
    ScratchDatabase,
    create_rewards_tables,
    insert_rewards,
    read_text_logs,
    snapshot,
    wait_until,
    write_config,
    write_csv,
)

REPO = Path(archive.__file__).resolve().parent


def make_job(db: ScratchDatabase, tmp_path: Path, row_ids: range | list[int],
             files: dict[str, list[Any]], **config: Any) -> tuple[Path, dict]:
    """Tables with rows for row_ids, CSV files of keys, a config; returns (config, original rows)."""
    create_rewards_tables(db)
    insert_rewards(db, row_ids)
    path = write_config(tmp_path, db, **config)
    for name, keys in files.items():
        write_csv(tmp_path / "csv" / name, keys)
    return path, snapshot(db, "rewards")


def assert_conserved(db: ScratchDatabase, original: dict, moved: set) -> None:
    """Source plus archive hold exactly the original rows; the listed ones are archived."""
    source, archived = snapshot(db, "rewards"), snapshot(db, "rewards_archives")
    assert not set(source) & set(archived), "a key is in both tables"
    assert {**source, **archived} == original, "source + archive differ from the original rows"
    assert set(archived) == moved & set(original), "the archive does not hold exactly the listed rows"


def assert_batches_once(db: ScratchDatabase, file_name: str, total_batches: int) -> None:
    """Every batch number of a file is recorded completed exactly once across all runs."""
    rows = db.query("SELECT batch_number, COUNT(*) FROM batch_processing_logs WHERE file_name = %s "
                    "AND status IN ('COMPLETED', 'COMPLETED_WITH_DUPLICATES') GROUP BY batch_number "
                    "ORDER BY batch_number", (file_name,))
    assert [r[0] for r in rows] == list(range(1, total_batches + 1))
    assert all(r[1] == 1 for r in rows), f"batches recorded twice: {[r for r in rows if r[1] > 1]}"


def assert_no_run_left_running(db: ScratchDatabase) -> None:
    """No run claims to be RUNNING and no file PROCESSING once everything stopped."""
    assert db.scalar("SELECT COUNT(*) FROM process_logs WHERE status = 'RUNNING'") == 0
    assert db.scalar("SELECT COUNT(*) FROM file_processing_logs WHERE status = 'PROCESSING'") == 0


def text_log(tmp_path: Path) -> str:
    """All text logs of a job, concatenated in name order."""
    return read_text_logs(tmp_path / "logs")


def completed_batches(db: ScratchDatabase) -> int:
    """Batches recorded so far (0 before the run has created its tracking tables)."""
    if not db.table_exists("batch_processing_logs"):
        return 0
    return int(db.scalar("SELECT COUNT(*) FROM batch_processing_logs WHERE status <> 'FAILED'"))


def drop_job(db: ScratchDatabase, tracking: bool = True) -> None:
    """Drop the rewards tables (and the tracking tables), so a trial starts from nothing."""
    tables = ("rewards", "rewards_archives") + (archive.TRACKING_TABLES if tracking else ())
    db.execute("DROP TABLE IF EXISTS " + ", ".join(f"`{t}`" for t in tables))


def race(spawn_cli: Callable[..., CliProcess], configs: Sequence[Path]) -> str | None:
    """Start one run per config at the same instant, as cron does on several hosts.

    Once all but one have exited, the last is stopped with SIGTERM (so no trial waits for a
    whole job, and none depends on how long a start takes). Returns what went wrong, or None
    when exactly one run got in and every other exited 5 naming it as the holder.
    """
    procs = [spawn_cli(config) for config in configs]
    try:
        wait_until(lambda: sum(p.poll() is not None for p in procs) >= len(procs) - 1, timeout=120,
                   message="all runs but one to exit")
    except TimeoutError:
        pass  # two or more got in: reported below
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        proc.wait(timeout=120)
    outcomes = [(p.returncode, p.read_stderr().strip()[-300:]) for p in procs]
    got_in = [p for p in procs if p.returncode in (0, 6)]
    if len(got_in) != 1:
        return f"{len(got_in)} runs got in: {outcomes}"
    holder = f"pid {got_in[0].pid} via"
    for proc in procs:
        if proc is not got_in[0] and (proc.returncode != 5 or "already running" not in proc.read_stderr()
                                      or holder not in proc.read_stderr()):
            return f"a run that did not get in did not exit 5 naming {holder}: {outcomes}"
    return None


def lease_expired(db: ScratchDatabase) -> bool:
    """Whether the run lock's lease has run out (the server's clock decides, not a guessed sleep)."""
    return bool(db.scalar("SELECT COUNT(*) FROM run_locks WHERE expires_at < UTC_TIMESTAMP(6)"))


def make_conflicts(db: ScratchDatabase, keys: list[int]) -> None:
    """Archived versions of `keys` that differ from the source rows."""
    insert_rewards(db, keys, table="rewards_archives")
    db.execute(f"UPDATE rewards_archives SET note = 'older version' WHERE id IN ({','.join(map(str, keys))})")


def summary_of(output: str) -> str:
    """The one SUMMARY line a run printed in `output`."""
    lines = [line for line in output.splitlines() if line.startswith("SUMMARY:")]
    assert len(lines) == 1, output
    return lines[0]


V1_SCHEMA = (REPO / "tests" / "fixtures" / "schema_v1.sql").read_text()
V2_SCHEMA = (REPO / "tests" / "fixtures" / "schema_v2.sql").read_text()


def load_v1_half_done_file(db: ScratchDatabase, tmp_path: Path, batches_done: int,
                           schema: str = V1_SCHEMA) -> Path:
    """Tracking tables as schema-1 archive.py (or the older `schema`) left them after a kill in the
    middle of ids.csv; rows a later schema added are filled in by its migration."""
    for statement in (s for s in re.sub(r"^--.*$", "", schema, flags=re.M).split(";") if s.strip()):
        db.execute(statement)
    path = tmp_path / "csv" / "ids.csv"
    data = path.read_bytes()
    sha, lines = hashlib.sha256(data).hexdigest(), data.split(b"\n")
    total = sum(1 for line in lines[1:] if line)
    db.execute("INSERT INTO process_logs (id, source_table, archive_table, status, host, pid, start_time, "
               "total_files) VALUES (7, 'rewards', 'rewards_archives', 'RUNNING', 'old-host', 1, NOW(), 1)")
    db.execute("INSERT INTO file_processing_logs (process_log_id, file_name, file_size, file_checksum, "
               "status, batch_size, total_keys, total_batches, processed_batches, last_processed_batch, "
               "started_at) "
               "VALUES (7, 'ids.csv', %s, %s, 'PROCESSING', 10, %s, %s, %s, %s, NOW())",
               (len(data), sha, total, -(-total // 10), batches_done, batches_done))
    for number in range(1, batches_done + 1):
        end_line = 1 + 10 * number
        offset = sum(len(line) + 1 for line in lines[:end_line])
        db.execute("INSERT INTO batch_processing_logs (process_log_id, file_name, batch_number, status, "
                   "first_key, last_key, keys_in_batch, rows_archived, rows_deleted, end_offset, end_line) "
                   "VALUES "
                   "(7, 'ids.csv', %s, 'COMPLETED', %s, %s, 10, 10, 10, %s, %s)",
                   (number, 10 * number - 9, 10 * number, offset, end_line))
        keys = ",".join(str(k) for k in range(10 * number - 9, 10 * number + 1))
        db.execute(f"INSERT INTO rewards_archives (id, user_id, kind, note, payload, amount, created_at, "
                   f"updated_at) SELECT id, user_id, kind, note, payload, amount, created_at, updated_at "
                   f"FROM rewards WHERE id IN ({keys})")
        db.execute(f"DELETE FROM rewards WHERE id IN ({keys})")
    return path
