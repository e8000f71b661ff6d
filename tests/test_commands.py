"""Operator commands: --dry-run, --status, --check, -q/-v, the summary line, the seed's
monitoring SQL, and credentials from a MySQL option file or MYSQL_PWD."""

from __future__ import annotations

import copy
import json
import os
import re
import resource
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import archive
from checks import completed_batches, summary_of
from helpers import (
    ScratchDatabase,
    cli_command,
    create_rewards_tables,
    insert_rewards,
    kill_process_group,
    reward_row,
    run_cli,
    snapshot,
    text_log_files,
    wait_until,
    write_config,
    write_csv,
)

TRACKING = ("process_logs", "file_processing_logs", "batch_processing_logs", "conflict_logs", "run_locks")


# --------------------------------------------------------------------------- helpers

def log_files(config: Path) -> list[Path]:
    """Text logs in the config's log_dir."""
    return text_log_files(config.parent / "logs")


def tracking_tables(db: ScratchDatabase) -> list[str]:
    """Which tracking tables exist."""
    return [t for t in TRACKING if db.table_exists(t)]


def state(db: ScratchDatabase) -> tuple:
    """Both data tables, all columns, for before/after comparisons."""
    return (snapshot(db, "rewards", columns="*"), snapshot(db, "rewards_archives", columns="*"))


def setup(db: ScratchDatabase, tmp_path: Path, ids: Sequence[int] = range(1, 31),
          csv_ids: Sequence[int] = range(1, 26), batch_size: int = 10, **config: Any) -> Path:
    """Rewards tables holding *ids*, csv/ids.csv with *csv_ids*, and a config."""
    create_rewards_tables(db)
    insert_rewards(db, ids)
    write_csv(tmp_path / "csv" / "ids.csv", csv_ids)
    return write_config(tmp_path, db, archive__batch_size=batch_size, **config)


def add_conflict_and_duplicate(db: ScratchDatabase, identical: int, conflict: int) -> None:
    """Archive an identical copy of *identical* and a different version of *conflict*."""
    cols = "id, user_id, kind, note, payload, amount, created_at, updated_at"
    for key in (identical, conflict):
        db.execute(f"INSERT INTO rewards_archives ({cols}) SELECT {cols} FROM rewards WHERE id = %s", (key,))
    db.execute("UPDATE rewards_archives SET note = 'older version' WHERE id = %s", (conflict,))


def running_row(db: ScratchDatabase) -> dict[str, Any] | None:
    """The RUNNING process_logs row, or None (also while the table does not exist yet)."""
    if not db.table_exists("process_logs"):
        return None
    rows = db.query_dicts("SELECT * FROM process_logs WHERE status = 'RUNNING'")
    return rows[0] if rows else None


def table_row(output: str, first_cell: str) -> list[str] | None:
    """The cells of the format_table line starting with *first_cell* (split on 2+ spaces)."""
    for line in output.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells and cells[0] == first_cell:
            return cells
    return None


def dry_run_json(config: Path, code: int = 0) -> dict[str, Any]:
    """--dry-run --json, parsed; its files keyed by name."""
    result = run_cli(config, "--dry-run", "--json")
    assert result.returncode == code, (result.stdout, result.stderr)
    document = json.loads(result.stdout)
    document["by_file"] = {row["file"]: row for row in document["files"]}
    return document


# --------------------------------------------------------------------------- --dry-run

def test_dry_run_counts_batches_and_existing_rows_and_changes_nothing(db, tmp_path):
    create_rewards_tables(db)
    insert_rewards(db, range(1, 41))
    write_csv(tmp_path / "csv" / "a.csv", list(range(1, 13)) + list(range(1000, 1005)))  # 17 keys, 12 exist
    write_csv(tmp_path / "csv" / "b.csv", range(20, 30))  # 10 keys, all exist
    config = write_config(tmp_path, db, archive__batch_size=5)
    before = state(db)
    result = run_cli(config, "--dry-run")
    assert result.returncode == 0, (result.stdout, result.stderr)
    a, b, total = (table_row(result.stdout, name) for name in ("a.csv", "b.csv", "TOTAL"))
    assert a is not None and b is not None and total is not None, result.stdout
    assert a[1:3] == ["4", "12"], a
    assert b[1:3] == ["2", "10"], b
    assert total[1:3] == ["6", "22"], total
    assert "nothing was changed" in result.stdout
    document = dry_run_json(config)
    assert (document["rows_to_archive"], document["rows_to_delete"]) == (22, 22)
    assert document["by_file"]["a.csv"]["not_found"] == 5
    assert state(db) == before
    assert tracking_tables(db) == []
    assert log_files(config) == [], "a dry run must not write a text log"
    assert list((tmp_path / "logs").iterdir()) == []


def test_dry_run_reports_a_malformed_csv_as_rejected_with_exit_4(db, tmp_path):
    config = setup(db, tmp_path, batch_size=5)
    write_csv(tmp_path / "csv" / "bad.csv", ["1", "2", "x3"])
    before = state(db)
    result = run_cli(config, "--dry-run")
    assert result.returncode == 4, (result.stdout, result.stderr)
    bad = table_row(result.stdout, "bad.csv")
    assert bad is not None and bad[-1].startswith("REJECTED") and "line 4" in bad[-1], result.stdout
    good = table_row(result.stdout, "ids.csv")
    assert good is not None and good[1:3] == ["5", "25"], result.stdout
    assert state(db) == before
    assert tracking_tables(db) == [] and log_files(config) == []


@pytest.mark.parametrize("max_file_size", [0, 1024])  # no temporary folder; SQLite cannot write
def test_dry_run_says_when_its_temporary_file_cannot_be_written(db, tmp_path, max_file_size):
    """The dry run keeps the keys it would move in a temporary file (so its memory stays flat);
    a TMPDIR without room (here: a limit on file size) must be one line saying so, exit 1."""
    config = setup(db, tmp_path, batch_size=5)
    before = state(db)
    limit = (max_file_size, resource.RLIM_INFINITY)
    # Not under coverage (./dev.sh cov): its own data file cannot be written under the limit either,
    # and its traceback would be a second line on stderr that archive.py did not write.
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE")}
    result = subprocess.run(cli_command(config, "--dry-run"), capture_output=True, text=True, timeout=120,
                            cwd=tmp_path, stdin=subprocess.DEVNULL, env=env,
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, limit))
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stderr.startswith("archive.py: --dry-run: cannot write its list of moved keys in "), \
        result.stderr
    assert "set TMPDIR to a folder with room" in result.stderr and len(result.stderr.splitlines()) == 1
    assert state(db) == before and tracking_tables(db) == [] and log_files(config) == []


def test_dry_run_after_a_partial_run_counts_only_what_is_left(db, tmp_path):
    """With tracking tables present the dry run resumes where the runs got to and stays read-only."""
    config = setup(db, tmp_path, batch_size=5, controls__max_runtime="1s", controls__sleep_seconds=0.6)
    first = run_cli(config)
    assert first.returncode == 6, (first.stdout, first.stderr)
    done = db.scalar("SELECT MAX(batch_number) FROM batch_processing_logs")
    assert 1 <= done < 5
    before = state(db)
    counts = {t: db.count(t) for t in TRACKING}
    logs_before = [p.read_bytes() for p in log_files(config)]
    result = run_cli(config, "--dry-run")
    assert result.returncode == 0, (result.stdout, result.stderr)
    row = table_row(result.stdout, "ids.csv")
    assert row is not None and row[1:3] == [str(5 - done), str(25 - 5 * done)], result.stdout
    assert row[-1] == f"resumes at batch {done + 1}"
    assert state(db) == before
    assert {t: db.count(t) for t in TRACKING} == counts
    assert [p.read_bytes() for p in log_files(config)] == logs_before


# --------------------------------------------------------------------------- --check

def test_check_says_ready_on_good_tables_and_changes_nothing(db, tmp_path):
    config = setup(db, tmp_path)
    before = state(db)
    result = run_cli(config, "--check")
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "Verdict: READY." in result.stdout
    assert not [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert "`rewards` -> `rewards_archives` on key `id`" in result.stdout
    assert state(db) == before and tracking_tables(db) == [] and log_files(config) == []


def test_check_verbose_says_what_each_check_looked_at(db, tmp_path):
    config = setup(db, tmp_path, controls__guard="user_id <> -1", controls__max_load="Threads_running=40")
    plain, verbose = run_cli(config, "--check"), run_cli(config, "--check", "-v")
    assert plain.returncode == verbose.returncode == 0, verbose.stdout + verbose.stderr
    assert "looked at:" not in plain.stdout
    looked = [line for line in verbose.stdout.splitlines() if line.startswith("looked at")]
    assert re.fullmatch(r"looked at: key `id` \(\w+.*\) through index PRIMARY of `rewards` and PRIMARY of "
                        r"`rewards_archives`", looked[0]), looked
    assert any(line.startswith("looked at: columns copied and compared: id ") for line in looked), looked
    assert any("looked at on the source server: `rewards` (DELETE triggers)" in line for line in looked)
    assert "looked at: guard user_id <> -1" in looked
    assert any("max_load Threads_running=40" in line for line in looked), looked


def test_the_readmes_comparison_query_runs_when_the_archive_has_an_extra_column(db, tmp_path):
    setup(db, tmp_path)
    db.execute("ALTER TABLE rewards_archives ADD COLUMN reviewed_by VARCHAR(20) NULL FIRST")
    add_conflict_and_duplicate(db, identical=5, conflict=12)
    readme = (Path(archive.__file__).resolve().parent / "README.md").read_text()
    block = readme.split("-- compare the two versions of one key", 1)[1].split("```", 1)[0]
    lines = [line for line in block.splitlines()[1:] if not line.startswith("--")]
    query = "\n".join(lines).strip().rstrip(";")
    sides = [row[0] for row in db.query(query)]
    assert sides == ["source", "archive"]


# --------------------------------------------------------------------------- --status

def test_status_before_any_run_says_so_and_creates_nothing(db, tmp_path):
    config = setup(db, tmp_path)
    result = run_cli(config, "--status")
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "No runs recorded yet" in result.stdout
    assert tracking_tables(db) == [] and log_files(config) == []


def test_status_after_a_run_shows_the_run_files_and_rows(db, tmp_path):
    config = setup(db, tmp_path)
    write_csv(tmp_path / "csv" / "more.csv", range(26, 29))
    assert run_cli(config).returncode == 0
    run_id = db.scalar("SELECT MAX(id) FROM process_logs")
    result = run_cli(config, "--status")
    assert result.returncode == 0, (result.stdout, result.stderr)
    out = result.stdout
    assert re.search(rf"^Run {run_id}: COMPLETED$", out, re.MULTILINE), out
    assert re.search(r"^\s+ids\.csv\s+3/3 batches\s+COMPLETED\s+25\b", out, re.MULTILINE), out
    assert re.search(r"^\s+more\.csv\s+1/1 batches\s+COMPLETED\s+3\b", out, re.MULTILINE), out
    assert "files 2/2" in out
    assert "rows archived 28" in out
    assert "Recent FAILED or duplicate batches" not in out


def test_status_after_a_conflict_run_lists_the_duplicate_batches(db, tmp_path):
    config = setup(db, tmp_path)
    add_conflict_and_duplicate(db, identical=5, conflict=15)
    result = run_cli(config)
    assert result.returncode == 3, (result.stdout, result.stderr)
    status = run_cli(config, "--status")
    assert status.returncode == 0
    out = status.stdout
    assert "Recent FAILED or duplicate batches" in out, out
    section = out.split("Recent FAILED or duplicate batches", 1)[1]
    assert re.search(r'ids\.csv\s+2\s+COMPLETED_WITH_DUPLICATES\s+0\s+1\s+\["15"\]', section), section
    assert re.search(r"ids\.csv\s+1\s+COMPLETED_WITH_DUPLICATES\s+1\s+0\b", section), section
    assert "conflicts 1" in out


def test_status_lists_only_batches_of_its_own_source_table(db, tmp_path):
    """Duplicate batches of another source table in the same database are not this table's news."""
    config = setup(db, tmp_path)
    db.execute("CREATE TABLE other LIKE rewards")
    db.execute("CREATE TABLE other_archives LIKE rewards_archives")
    db.execute("INSERT INTO other SELECT * FROM rewards WHERE id <= 10")
    db.execute("INSERT INTO other_archives (id, user_id, kind, note, payload, amount, created_at, "
               "updated_at) SELECT id, user_id, kind, 'different', payload, amount, created_at, "
               "updated_at FROM other WHERE id = 3")
    other_dir = tmp_path / "other"
    write_csv(other_dir / "csv" / "other.csv", range(1, 11))
    other = write_config(other_dir, db, archive__source_table="other",
                         archive__archive_table="other_archives", archive__batch_size=10)
    assert run_cli(other).returncode == 3
    assert run_cli(config).returncode == 0
    out = run_cli(config, "--status").stdout
    assert "Run " in out and "COMPLETED" in out
    assert "other.csv" not in out, out


def test_status_during_a_run_is_quick_and_alive_then_dead_after_sigkill(db, tmp_path, spawn_cli):
    # 40 batches 6 s apart: after its first batch the run goes on for at least 234 s more.
    config = setup(db, tmp_path, ids=range(1, 201), csv_ids=range(1, 201), batch_size=5,
                   controls__sleep_seconds=6)
    proc = spawn_cli(config)
    row = wait_until(lambda: running_row(db), timeout=30, message="a RUNNING process_logs row")
    wait_until(lambda: completed_batches(db), timeout=30, message="a first batch")
    started = time.monotonic()
    status = run_cli(config, "--status", timeout=120)
    took = time.monotonic() - started
    assert status.returncode == 0, (status.stdout, status.stderr)
    # A --status that waits for the run (its lock, its end) takes minutes, not a tenth of them.
    assert took < 23, f"--status took {took:.1f}s during a run"
    assert re.search(rf"^Run {row['id']}: RUNNING \(alive", status.stdout, re.MULTILINE), status.stdout
    assert "ids.csv" in status.stdout and "PROCESSING" in status.stdout
    assert proc.poll() is None, "the run must still be going (the test needs a live run)"

    kill_process_group(proc)

    def says_dead() -> str | None:
        out = run_cli(config, "--status", timeout=30).stdout
        return out if "died" in out else None

    out = wait_until(says_dead, timeout=30, interval=0.2, message="--status noticing the dead run")
    assert re.search(rf"^Run {row['id']}: RUNNING \(its server session is gone: it died", out,
                     re.MULTILINE), out
    assert "alive" not in out

# --------------------------------------------------------------------------- --status text, from a report

# status_report's report of a run that archived 21 rows of a.csv and b.csv and kept key 5 as a
# conflict, captured from `--status --json` (the same dict status_lines formats); its text was:
STATUS_REPORT: dict[str, Any] = {
    "format_version": 2, "status": "COMPLETED", "last_seen": "2026-12-02 06:48:15", "current_file": "b.csv",
    "current_batch": 1,
    "processed_files": 2, "total_files": 2, "rows_archived": 21, "rows_deleted": 21, "duplicates": 0,
    "conflicts": 1, "skipped_by_guard": 0, "not_found": 0, "stop_reason": None, "pause_reason": None,
    "paused_seconds": 0.0, "host": "vm", "pid": 10830, "version": "2.0.0",
    "job": "rep.rewards -> rep.rewards_archives", "destination": None, "exit_code": 3, "run_id": 1,
    "alive": False,
    "liveness": "", "started": "2026-12-02 06:48:15", "ended": "2026-12-02 06:48:15",
    "error": "1 duplicate-key conflict kept in both tables in: a.csv", "seconds": 0, "latest_run": None,
    "files": [
        {"file": "a.csv", "status": "CONFLICTS", "processed_batches": 2, "total_batches": 2,
         "rows_archived": 19, "rows_deleted": 19, "conflicts": 1, "not_found": 0, "error": None},
        {"file": "b.csv", "status": "COMPLETED", "processed_batches": 1, "total_batches": 1,
         "rows_archived": 2, "rows_deleted": 2, "conflicts": 0, "not_found": 0, "error": None}],
    "child_tables": {},
    "open_conflicts": [{"file": "a.csv", "keys": 1, "first_keys": ["5"]}],
    "held_rows": [],
    "problem_batches": [
        {"run": 1, "file_name": "a.csv", "batch": 1, "status": "COMPLETED_WITH_DUPLICATES", "duplicates": 0,
         "conflicts": 1, "detail": '["5"]', "created_at": "2026-12-02 06:48:15.416871"}],
    "metrics": {
        "last_run_status": "COMPLETED", "last_run_exit_code": 3,
        "last_run_start_timestamp_seconds": 1796194095.1, "last_run_end_timestamp_seconds": 1796194095.5,
        "last_success_timestamp_seconds": None, "heartbeat_timestamp_seconds": 1796194095.5,
        "open_conflicts": 1, "held_rows": 0, "files": 2, "files_pending": 0, "batches_done_total": 3,
        "file_batches_done": 1, "file_batches": 1, "paused_seconds_total": 0.0, "rows_per_second": 21.0,
        "eta_seconds": None, "rows_archived_total": 21, "rows_deleted_total": 21, "duplicates_total": 0,
        "conflicts_total": 1, "not_found_total": 0, "held_by_guard_total": 0},
}
STATUS_TEXT = """\
Run 1: COMPLETED
  started 2026-12-02 06:48:15 on vm pid 10830, ended 2026-12-02 06:48:15 (0m00s)
  files 2/2, current file b.csv batch 1
  rows archived 21, rows deleted 21, duplicates 0, conflicts 1, not found 0, skipped by guard 0
  error: 1 duplicate-key conflict kept in both tables in: a.csv
Files:
  file   progress     status     rows_archived  conflicts  not_found  error
  a.csv  2/2 batches  CONFLICTS  19             1          0
  b.csv  1/1 batches  COMPLETED  2              0          0
Open conflicts (rechecked at the start of every run; see README, Duplicate conflicts):
  a.csv: 1 key: 5
Recent FAILED or duplicate batches:
  run  file_name  batch  status                     duplicates  conflicts  detail
  1    a.csv      1      COMPLETED_WITH_DUPLICATES  0           1          ["5"]
"""


def status_text(**changes: Any) -> list[str]:
    """status_lines of the captured report with `changes`."""
    return archive.status_lines({**copy.deepcopy(STATUS_REPORT), **changes})


def test_status_lines_of_a_finished_run_are_the_text_status_printed():
    assert status_text() == STATUS_TEXT.splitlines()


def test_status_lines_of_a_running_run_say_whether_it_lives_and_why_it_pauses():
    running = {"status": "RUNNING", "ended": None, "error": None, "seconds": 3723,
               "pause_reason": "replica lag 12s > 10s", "paused_seconds": 42.46}
    alive = status_text(**running, alive=True, liveness="alive: heartbeat 2s ago")
    assert alive[:2] == ["Run 1: RUNNING (alive: heartbeat 2s ago)",
                         "  started 2026-12-02 06:48:15 on vm pid 10830, running (1h02m03s)"]
    assert "  PAUSED: replica lag 12s > 10s" in alive and "  paused 42.5s in all" in alive
    dead = status_text(**running, alive=False, liveness="its server session is gone: it died")
    assert dead[:2] == ["Run 1: RUNNING (its server session is gone: it died)",
                        ("  started 2026-12-02 06:48:15 on vm pid 10830, last seen 2026-12-02 06:48:15 "
                         "(1h02m03s)")]
    # a pause reason left by a run that has ended is no news
    ended = status_text(status="INTERRUPTED", pause_reason="replica lag 12s > 10s", paused_seconds=42.46)
    assert ended[0] == "Run 1: INTERRUPTED" and not [line for line in ended if "PAUSED" in line]
    assert "  paused 42.5s in all" in ended


def test_status_lines_carry_a_line_for_each_thing_the_run_has_and_none_for_what_it_lacks():
    bare = status_text(error=None, files=[], open_conflicts=[], problem_batches=[])
    assert bare == STATUS_TEXT.splitlines()[:4]
    extras = status_text(destination="db2:3306", stop_reason="max_runtime reached",
                         latest_run={"run_id": 2, "status": "COMPLETED", "started": "2026-12-03 01:00:00"})
    assert extras[4:8] == ["  archiving into db2:3306 (job rep.rewards -> rep.rewards_archives)",
                           "  stop reason: max_runtime reached",
                           "  error: 1 duplicate-key conflict kept in both tables in: a.csv",
                           "  (the newest run, 2 at 2026-12-03 01:00:00, had nothing to do)"]
    plain = status_text(current_file=None, current_batch=None)
    assert plain[2] == "  files 2/2, current file - batch -"


def test_a_real_status_report_has_the_shape_the_status_text_tests_use(db, tmp_path):
    """Keeps STATUS_REPORT honest: the keys of a real report, its files, open conflicts and batches."""
    config = setup(db, tmp_path)
    add_conflict_and_duplicate(db, identical=5, conflict=15)
    assert run_cli(config).returncode == 3
    report = json.loads(run_cli(config, "--status", "--json").stdout)
    assert list(report) == list(STATUS_REPORT)
    for part in ("files", "open_conflicts", "problem_batches"):
        assert list(report[part][0]) == list(STATUS_REPORT[part][0]), part
    assert list(report["metrics"]) == list(STATUS_REPORT["metrics"])


# --------------------------------------------------------------------------- output levels

def test_quiet_run_prints_nothing_when_all_is_well(db, tmp_path):
    config = setup(db, tmp_path)
    result = run_cli(config, "-q")
    assert result.returncode == 0
    assert result.stdout == "" and result.stderr == ""
    assert db.count("rewards_archives") == 25  # it did run
    assert any("SUMMARY:" in p.read_text() for p in log_files(config))


def test_quiet_run_still_reports_a_run_that_needs_attention(db, tmp_path):
    config = setup(db, tmp_path)
    add_conflict_and_duplicate(db, identical=5, conflict=15)
    result = run_cli(config, "-q")
    assert result.returncode == 3
    assert "SUMMARY:" in result.stdout + result.stderr
    assert "conflicts 1" in result.stdout + result.stderr


def test_verbose_run_prints_a_line_per_batch(db, tmp_path):
    config = setup(db, tmp_path)
    result = run_cli(config, "-v")
    assert result.returncode == 0, (result.stdout, result.stderr)
    lines = [line for line in result.stdout.splitlines() if line.startswith("Processing batch")]
    assert lines == ["Processing batch 1/3 - first key 1 … last key 10",
                     "Processing batch 2/3 - first key 11 … last key 20",
                     "Processing batch 3/3 - first key 21 … last key 25"], result.stdout
    assert "SUMMARY:" in result.stdout


def test_default_non_tty_run_prints_the_summary_but_no_batch_lines(db, tmp_path):
    config = setup(db, tmp_path)
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "Processing batch" not in result.stdout
    assert "\r" not in result.stdout and "\x1b" not in result.stdout  # no progress line off a TTY
    assert len([line for line in result.stdout.splitlines() if line.startswith("SUMMARY:")]) == 1
    assert result.stderr == ""


def field(summary: str, pattern: str) -> str:
    match = re.search(pattern, summary)
    assert match, (pattern, summary)
    return match.group(1)


def test_summary_line_says_what_the_run_did(db, tmp_path):
    config = setup(db, tmp_path)
    write_csv(tmp_path / "csv" / "gone.csv", [500, 501])  # keys with no rows
    started = time.monotonic()
    result = run_cli(config)
    wall = time.monotonic() - started
    assert result.returncode == 0
    line = summary_of(result.stdout)
    assert line.startswith("SUMMARY: COMPLETED")
    assert field(line, r"\bfiles (\d+)") == "2"
    assert field(line, r"\bbatches (\d+)") == "4"
    assert field(line, r"\brows archived (\d+)") == "25"
    assert field(line, r"\bduplicates (\d+)") == "0"
    assert field(line, r"\bconflicts (\d+)") == "0"
    elapsed = float(field(line, r"\belapsed (\d+(?:\.\d+)?)s"))
    assert 0 <= elapsed <= wall
    rate = int(field(line, r"\b([\d,]+) rows/s").replace(",", ""))
    # The rate is 25 rows over the run's own elapsed time (said to a tenth, the rate to a row).
    fastest, slowest = 25 / max(elapsed - 0.05, 1e-6), 25 / (elapsed + 0.05)
    assert round(slowest) <= rate <= round(fastest), (rate, elapsed)
    assert field(line, r"\bstopped: (.+)$") == "all files done"
    assert any(line in p.read_text() for p in log_files(config))


def test_summary_line_counts_duplicates_and_conflicts(db, tmp_path):
    config = setup(db, tmp_path)
    add_conflict_and_duplicate(db, identical=5, conflict=15)
    result = run_cli(config)
    assert result.returncode == 3
    line = summary_of(result.stdout)
    assert field(line, r"\bbatches (\d+)") == "3"
    assert field(line, r"\brows archived (\d+)") == "23"
    assert field(line, r"\bduplicates (\d+)") == "1"
    assert field(line, r"\bconflicts (\d+)") == "1"
    assert "stopped:" in line


def test_summary_line_of_an_interrupted_run_says_why_it_stopped(db, tmp_path):
    config = setup(db, tmp_path, batch_size=5, controls__max_runtime="1s", controls__sleep_seconds=0.6)
    result = run_cli(config)
    assert result.returncode == 6
    line = summary_of(result.stdout)
    assert line.startswith("SUMMARY: INTERRUPTED")
    assert "max_runtime" in field(line, r"\bstopped: (.+)$")


# --------------------------------------------------------------------------- monitoring SQL

def test_seed_monitoring_queries_after_a_run(db, tmp_path):
    config = setup(db, tmp_path, csv_ids=range(1, 24), batch_size=5)  # 5 batches
    write_csv(tmp_path / "csv" / "z.csv", range(24, 31))  # 2 batches
    assert run_cli(config).returncode == 0
    pid = db.scalar("SELECT MAX(id) FROM process_logs")

    run = db.query_dicts(f"SELECT * FROM process_logs WHERE id = {pid};")
    assert len(run) == 1
    assert (run[0]["status"], run[0]["processed_files"], run[0]["total_files"],
            run[0]["rows_archived"]) == ("COMPLETED", 2, 2, 30)

    files = db.query_dicts(f"SELECT * FROM file_processing_logs WHERE process_log_id = {pid};")
    assert sorted((f["file_name"], f["status"], f["processed_batches"], f["total_batches"],
                   f["rows_archived"]) for f in files) == [
        ("ids.csv", "COMPLETED", 5, 5, 23), ("z.csv", "COMPLETED", 2, 2, 7)]

    last = db.query_dicts("SELECT MAX(batch_number) as last_batch FROM batch_processing_logs "
                          f"WHERE process_log_id = {pid} AND file_name = 'ids.csv';")
    assert last == [{"last_batch": 5}]

    batches = db.query_dicts(f"SELECT * FROM batch_processing_logs WHERE process_log_id = {pid} "
                             "ORDER BY created_at DESC;")
    assert [(b["file_name"], b["batch_number"]) for b in batches] == (
        [("z.csv", 2), ("z.csv", 1)] + [("ids.csv", n) for n in range(5, 0, -1)])
    assert all(b["status"] == "COMPLETED" for b in batches)
    assert sum(b["rows_archived"] for b in batches) == 30

    live = db.query_dicts(LIVE_QUERY)
    assert live == []  # nothing is running any more


LIVE_QUERY = (
    "SELECT p.status, p.current_file, p.current_batch, p.processed_files, p.total_files, "
    "f.processed_batches, f.total_batches FROM process_logs p LEFT JOIN file_processing_logs f "
    "ON f.process_log_id = p.id AND f.status = 'PROCESSING' WHERE p.status = 'RUNNING';")


def test_seed_live_progress_query_during_a_run(db, tmp_path, spawn_cli):
    config = setup(db, tmp_path, ids=range(1, 201), csv_ids=range(1, 201), batch_size=5,
                   controls__sleep_seconds=0.3)
    proc = spawn_cli(config)

    def progressed(at_least: int) -> list[dict[str, Any]] | None:
        if running_row(db) is None:
            return None
        rows = db.query_dicts(LIVE_QUERY)
        return rows if rows and (rows[0]["processed_batches"] or 0) >= at_least else None

    first = wait_until(lambda: progressed(1), timeout=30, message="a first batch in the live query")
    assert len(first) == 1
    row = first[0]
    assert (row["status"], row["current_file"], row["processed_files"], row["total_files"],
            row["total_batches"]) == ("RUNNING", "ids.csv", 0, 1, 40)
    assert 1 <= row["processed_batches"] < 40
    assert row["current_batch"] == row["processed_batches"]
    later = wait_until(lambda: progressed(row["processed_batches"] + 2), timeout=30,
                       message="the live query to show progress")
    assert later[0]["processed_batches"] > row["processed_batches"]
    assert later[0]["current_batch"] >= later[0]["processed_batches"] - 1
    assert proc.poll() is None
    kill_process_group(proc)


# --------------------------------------------------------------------------- credentials

@pytest.fixture
def app_user(db, server):
    """A user with a password and every privilege on the test database; dropped afterwards."""
    user, password = f"app_{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex[:10]}"
    host = server.client_host()  # where the tests connect from
    root = server.connect()
    cur = root.cursor()
    cur.execute(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}'")
    cur.execute(f"GRANT ALL PRIVILEGES ON `{db.name}`.* TO '{user}'@'{host}'")
    cur.execute(f"GRANT PROCESS ON *.* TO '{user}'@'{host}'")  # to see every foreign key (README)
    try:
        yield user, password
    finally:
        cur.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")
        cur.close()
        root.close()


def test_credentials_from_a_mysql_option_file(db, tmp_path, app_user):
    user, password = app_user
    create_rewards_tables(db)
    insert_rewards(db, range(1, 31))
    write_csv(tmp_path / "csv" / "ids.csv", range(1, 26))
    cnf = tmp_path / "my.cnf"
    cnf.write_text(f"[client]\nuser={user}\npassword=wrong-{password}\n")
    cnf.chmod(0o600)
    config = write_config(tmp_path, db, archive__batch_size=10, database__user=None,
                          database__password=None, database__option_files=cnf)
    assert "password" not in config.read_text() and "user" not in config.read_text().split("[archive]")[0]
    denied = run_cli(config)  # negative control: the file's (wrong) password is what is used
    assert denied.returncode == 1, (denied.stdout, denied.stderr)
    assert "cannot connect" in denied.stderr and user in denied.stderr
    assert db.count("rewards") == 30 and db.count("rewards_archives") == 0

    cnf.write_text(f"[client]\nuser={user}\npassword={password}\n")
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert snapshot(db, "rewards_archives") == {i: reward_row(i) for i in range(1, 26)}
    assert password not in result.stdout + result.stderr
    assert all(password not in p.read_text() for p in log_files(config))


def test_password_from_mysql_pwd(db, tmp_path, app_user):
    user, password = app_user
    create_rewards_tables(db)
    insert_rewards(db, range(1, 31))
    write_csv(tmp_path / "csv" / "ids.csv", range(1, 26))
    config = write_config(tmp_path, db, archive__batch_size=10, database__user=user,
                          database__password=None)
    denied = run_cli(config, env={"MYSQL_PWD": "not-" + password})  # negative control
    assert denied.returncode == 1, (denied.stdout, denied.stderr)
    assert "cannot connect" in denied.stderr
    assert db.count("rewards_archives") == 0
    result = run_cli(config, env={"MYSQL_PWD": password})
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert snapshot(db, "rewards_archives") == {i: reward_row(i) for i in range(1, 26)}
    status = run_cli(config, "--status", env={"MYSQL_PWD": password})
    assert status.returncode == 0 and "COMPLETED" in status.stdout
    assert password not in result.stdout + result.stderr + status.stdout


# --------------------------------------------------------------------------- terminal progress

def run_on_terminal(config: Path, *args: str, timeout: float = 60, columns: int = 200) -> str:
    """Run archive.py with stdout on a pseudo-terminal of some width; return all it wrote there."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import termios
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.Popen(cli_command(config, *args),
                            stdout=follower, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    _, errors = proc.communicate(timeout=10)
    assert proc.returncode == 0, errors
    return b"".join(chunks).decode()


PROGRESS = re.compile(r"\r([^\r\x1b]*?file (\d+)/(\d+)  batch (\d+)/(\d+)  ([\d,]+) rows  [\d,]+ rows/s  "
                      r"ETA \S+)\x1b\[K")


def test_terminal_shows_one_updating_progress_line_instead_of_batch_lines(db, tmp_path):
    config = setup(db, tmp_path, ids=range(1, 61), csv_ids=range(1, 61), batch_size=10)
    screen = run_on_terminal(config)
    progress = PROGRESS.findall(screen)
    assert [int(p[3]) for p in progress] == [1, 2, 3, 4, 5, 6], screen
    assert all(p[0].startswith("ids.csv  file 1/1") for p in progress), screen
    assert int(progress[-1][5].replace(",", "")) == 60
    assert "Processing batch" not in screen
    assert "SUMMARY: COMPLETED" in screen


def test_the_progress_line_fits_an_80_column_terminal(db, tmp_path):
    config = setup(db, tmp_path, ids=range(1, 61), csv_ids=[], batch_size=10)
    long_name = "archive-candidates-exported-from-the-billing-system-2025-11.csv"
    write_csv(tmp_path / "csv" / long_name, range(1, 31))
    write_csv(tmp_path / "csv" / "z.csv", range(31, 61))
    screen = run_on_terminal(config, columns=80)
    progress = PROGRESS.findall(screen)
    assert len(progress) == 6, screen
    assert all(len(p[0]) <= 79 for p in progress), [p[0] for p in progress]
    assert [(p[1], p[2]) for p in progress] == [("1", "3")] * 3 + [("3", "3")] * 3
    assert "…" in progress[0][0]
