"""Red-team attacks on archive.py: each test shows one defect found on the current code.

Every test runs the real CLI against the throwaway MariaDB (no mocks of the database)
and fails on the code as it stands; the docstring says what the defect is.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

import archive
from checks import make_job
from helpers import cli_command, insert_rewards, run_cli, write_config, write_csv
from proxy import need_socket, run_cli_cut
from test_resume import load_v1_half_done_file


def make_conflicts(db, keys) -> None:
    """Archived versions of `keys` that differ from the source rows."""
    insert_rewards(db, keys, table="rewards_archives")
    db.execute(f"UPDATE rewards_archives SET note = 'older version' WHERE id IN ({','.join(map(str, keys))})")


def summary(result) -> str:
    return next(line for line in result.stdout.splitlines() if line.startswith("SUMMARY:"))


# --------------------------------------------------------------------------- exact copies

@pytest.mark.parametrize("source_type, archive_type, value", [
    ("ENUM('x','Y')", "ENUM('x','y')", "Y"),
    ("SET('x','Y')", "SET('x','y')", "x,Y"),
])
def test_enum_members_differing_only_in_case_alter_the_archived_row(db, tmp_path, source_type, archive_type,
                                                                    value):
    """same_type() lowercases COLUMN_TYPE, so ENUM('x','Y') passes as ENUM('x','y'); the copy then
    stores 'y' for 'Y' and the source row is deleted: the archived row is not the row that left."""
    db.execute(f"CREATE TABLE src (id INT NOT NULL PRIMARY KEY, e {source_type}) ENGINE=InnoDB")
    db.execute(f"CREATE TABLE arc (id INT NOT NULL PRIMARY KEY, e {archive_type}) ENGINE=InnoDB")
    db.execute("INSERT INTO src VALUES (1, %s)", (value,))
    write_csv(tmp_path / "csv" / "ids.csv", [1])
    config = write_config(tmp_path, db, archive__source_table="src", archive__archive_table="arc")
    run_cli(config)
    moved = db.query("SELECT BINARY e FROM arc")
    assert moved in ([], [(value.encode(),)]), f"archived {moved} for the source value {value!r}"
    if not moved:
        assert db.query("SELECT BINARY e FROM src") == [(value.encode(),)], "the row vanished"


# --------------------------------------------------------------------------- CSV reading

def test_a_stray_quote_in_a_large_file_is_rejected_promptly(db, tmp_path):
    """An unclosed quote makes iter_records accumulate the rest of the file in `pending` and
    count its quotes again for every line: quadratic (150k lines ~30 s, 3M lines hours), with no
    heartbeat meanwhile, so the run's lease runs out while it is still alive."""
    config, _ = make_job(db, tmp_path, range(1, 11), {"ids.csv": list(range(1, 11))})
    with open(tmp_path / "csv" / "export.csv", "w") as handle:
        handle.write('id,comment\n1,O"Brien\n')
        handle.writelines(f"{n},ok\n" for n in range(2, 150_000))
    started = time.monotonic()
    result = run_cli(config, timeout=300)
    elapsed = time.monotonic() - started
    assert result.returncode == 4, (result.stdout, result.stderr)
    assert "export.csv line 2" in result.stderr
    assert elapsed < 8, f"rejecting one malformed 150k-line file took {elapsed:.0f}s"


def test_validating_a_file_of_wide_lines_keeps_the_session_and_lease_alive(db, tmp_path):
    """count_keys() heartbeats every 50,000 keys, not every so many seconds: a valid file of 3,000
    lines of 20,000 fields takes ~25 s to validate with no heartbeat, longer than the session's
    wait_timeout (lock_lease + lock_wait_timeout = 13 s here; 130 s by default), so the server drops
    the session and every run FAILS with error 2013 before the file's first batch (its lease has
    expired too, so another run could take over meanwhile)."""
    config, _ = make_job(db, tmp_path, range(1, 3001), {}, archive__batch_size=300,
                         archive__lock_wait_timeout=1, archive__lock_lease="12s")
    with open(tmp_path / "csv" / "wide.csv", "w") as handle:
        handle.write("id" + "," * 20_000 + "\n")
        handle.writelines(f"{n}" + "," * 20_000 + "\n" for n in range(1, 3001))
    result = run_cli(config, timeout=600)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert db.count("rewards") == 0


# --------------------------------------------------------------------------- resume and conflicts

def test_a_changed_csv_column_does_not_resume_by_batch_number(db, tmp_path):
    """Checkpoints are keyed by job, file name, content and batch size, not by csv_column: after
    csv_column changes, batch N of the new column is taken as done and its keys are never archived,
    while the run reports COMPLETED, exit 0."""
    config, _ = make_job(db, tmp_path, range(1, 201), {}, archive__batch_size=10,
                         controls__max_runtime="1s", controls__sleep_seconds=0.4)
    rows = "".join(f"{n + 100},{n}\n" for n in range(1, 101))
    (tmp_path / "csv" / "ids.csv").write_text("user_ref,id\n" + rows)
    assert run_cli(config).returncode == 6  # some batches of column `id` done
    fixed = write_config(tmp_path, db, archive__batch_size=10, archive__csv_column="user_ref")
    result = run_cli(fixed)
    left = [r[0] for r in db.query("SELECT id FROM rewards WHERE id BETWEEN 101 AND 200 ORDER BY id")]
    assert result.returncode != 0 or left == [], f"exit 0, but listed keys of user_ref never archived: {left}"


def test_a_file_resumed_past_its_last_batch_keeps_its_open_conflicts(db, tmp_path, server):
    """A run that dies after a file's last batch but before finish_file (here: connection lost) leaves
    the next run to take the 'all batches done per the checkpoint' branch, which records the file
    COMPLETED although its conflict is open (README: CONFLICTS, and it stays out of done_dir)."""
    need_socket(server)
    (tmp_path / "done").mkdir()
    config, _ = make_job(db, tmp_path, range(1, 31), {"ids.csv": list(range(1, 21))}, archive__batch_size=10,
                         archive__done_dir=tmp_path / "done")
    make_conflicts(db, [15])
    cut, proxy = run_cli_cut(tmp_path, db, lambda data: b"UPDATE file_processing_logs SET status" in data,
                             filename="cut.ini", archive__batch_size=10, archive__done_dir=tmp_path / "done")
    assert cut.returncode == 1
    assert proxy.cuts == 1
    assert run_cli(config).returncode == 3
    assert run_cli(config).returncode == 3
    assert db.scalar("SELECT COUNT(*) FROM conflict_logs WHERE status = 'OPEN'") == 1
    statuses = [r[0] for r in db.query("SELECT status FROM file_processing_logs ORDER BY id")]
    assert "COMPLETED" not in statuses, f"file recorded COMPLETED with an open conflict: {statuses}"
    assert (tmp_path / "csv" / "ids.csv").exists(), "a file with an open conflict was moved to done_dir"


def test_a_key_conflicting_twice_in_one_file_is_settled_in_one_run(db, tmp_path):
    """recheck_chunk maps key -> one conflict_logs row, so the second OPEN row of the same key is left
    open: after the DBA settles it the run still exits 3 and says '1 still differ (both versions
    kept)' although the key is only in the archive."""
    config, _ = make_job(db, tmp_path, range(1, 31), {"ids.csv": [*range(1, 21), 5]}, archive__batch_size=10)
    make_conflicts(db, [5])
    assert run_cli(config).returncode == 3
    db.execute("DELETE FROM rewards_archives WHERE id = 5")  # the README's procedure
    second = run_cli(config)
    assert db.count("rewards", "id = 5") == 0 and db.count("rewards_archives", "id = 5") == 1
    assert "still differ" not in second.stdout, second.stdout
    assert second.returncode == 0, second.stdout
    assert db.scalar("SELECT COUNT(*) FROM conflict_logs WHERE status = 'OPEN'") == 0


def test_a_lost_commit_answer_during_the_recheck_is_read_back(db, tmp_path, server):
    """recheck_chunk has no `recover`: after a lost COMMIT answer it runs again, finds the row gone,
    overwrites the resolution with 'source row no longer exists' and the SUMMARY says rows archived 0
    while process_logs (and the archive) say 1."""
    need_socket(server)
    config, _ = make_job(db, tmp_path, range(1, 31), {"ids.csv": list(range(1, 21))}, archive__batch_size=10)
    make_conflicts(db, [5])
    assert run_cli(config).returncode == 3
    db.execute("DELETE FROM rewards_archives WHERE id = 5")

    def commit_of_the_recheck(data: bytes) -> bool:
        return b"UPDATE conflict_logs" in data and b"COMMIT" in data

    result, proxy = run_cli_cut(tmp_path, db, commit_of_the_recheck, archive__batch_size=10)
    assert proxy.cuts == 1 and result.returncode == 0, (result.stdout, result.stderr)
    assert db.query("SELECT rows_archived FROM process_logs WHERE id = 2") == [(1,)]
    assert "rows archived 1 " in summary(result), summary(result)
    assert db.query("SELECT resolution FROM conflict_logs") == [("archived copy was gone: row archived",)]


def test_conflicts_found_by_schema_1_are_rechecked_after_the_upgrade(db, tmp_path):
    """Schema 1 recorded conflict keys only in batch_processing_logs.conflict_keys; the migration does
    not carry them into conflict_logs, so the upgraded tool never rechecks them and exits 0 while the
    listed row is still in both tables."""
    config, _ = make_job(db, tmp_path, range(1, 101), {"ids.csv": [*range(1, 101)]}, archive__batch_size=10)
    load_v1_half_done_file(db, tmp_path, batches_done=10)  # all 100 rows moved by schema-1 archive.py ...
    insert_rewards(db, [5])  # ... except row 5, kept in the source: its archived copy differed
    db.execute("UPDATE rewards_archives SET note = 'older version' WHERE id = 5")
    db.execute("UPDATE batch_processing_logs SET status = 'COMPLETED_WITH_DUPLICATES', conflicts = 1, "
               "conflict_keys = '5', rows_archived = 9, rows_deleted = 9 WHERE batch_number = 1")
    db.execute("UPDATE file_processing_logs SET status = 'COMPLETED', conflicts = 1")
    db.execute("UPDATE process_logs SET status = 'COMPLETED', conflicts = 1")
    assert db.count("rewards") == 1
    result = run_cli(config)
    assert result.returncode == 3, (result.returncode, result.stdout)


# --------------------------------------------------------------------------- dry run and status

def test_dry_run_verifies_a_log_checkpoint_when_the_tracking_tables_are_gone(db, tmp_path):
    """Without tracking tables predict_file trusts the text log unverified; the run verifies it
    (REWIND) and archives everything the restored backup brought back. Dry run: 0; run: 100."""
    config, _ = make_job(db, tmp_path, range(1, 101), {"ids.csv": [*range(1, 101)]}, archive__batch_size=10)
    for table in ("rewards", "rewards_archives"):
        db.execute(f"CREATE TABLE bak_{table} LIKE {table}")
        db.execute(f"INSERT INTO bak_{table} SELECT * FROM {table}")
    assert run_cli(config).returncode == 0
    for table in archive.TRACKING_TABLES:
        db.execute(f"DROP TABLE {table}")  # a backup from before the first run is restored
    for table in ("rewards", "rewards_archives"):
        db.execute(f"DELETE FROM {table}")
        db.execute(f"INSERT INTO {table} SELECT * FROM bak_{table}")
    dry = json.loads(run_cli(config, "--dry-run", "--json").stdout)
    result = run_cli(config)
    assert "rows archived 100 " in summary(result)
    assert dry["rows_to_archive"] == 100, dry


def test_dry_run_reads_schema_1_checkpoints_as_the_run_does(db, tmp_path):
    """With schema-1 tables the dry run ignores them (read_only_tracking -> None) and predicts from
    batch 1; the run migrates and resumes at batch 5. Predicted 10 batches / 40 not found, ran 6 / 0."""
    config, _ = make_job(db, tmp_path, range(1, 101), {"ids.csv": [*range(1, 101)]}, archive__batch_size=10)
    load_v1_half_done_file(db, tmp_path, batches_done=4)
    dry = json.loads(run_cli(config, "--dry-run", "--json").stdout)["total"]
    result = run_cli(config)
    assert "batches 6 " in summary(result) and "not found 0 " in summary(result)
    assert (dry["batches"], dry["rows_to_archive"], dry["not_found"]) == (6, 60, 0), dry


def test_status_shows_a_run_that_only_settled_conflicts(db, tmp_path):
    """did_work() looks only at file_processing_logs, so a run whose recheck archived a row shows as
    'the newest run ... had nothing to do' and --status shows the older run instead."""
    config, _ = make_job(db, tmp_path, range(1, 31), {"ids.csv": list(range(1, 21))}, archive__batch_size=10)
    make_conflicts(db, [5])
    assert run_cli(config).returncode == 3
    db.execute("DELETE FROM rewards_archives WHERE id = 5")
    assert run_cli(config).returncode == 0
    assert db.query("SELECT rows_archived FROM process_logs WHERE id = 2") == [(1,)]
    text = run_cli(config, "--status").stdout
    assert "had nothing to do" not in text, text
    assert json.loads(run_cli(config, "--status", "--json").stdout)["run_id"] == 2


# --------------------------------------------------------------------------- failures that are not SQL errors

def test_a_run_with_stdout_closed_from_the_start_still_runs(db, tmp_path):
    """cron `... >&-`: sys.stdout is None and Reporter calls None.isatty(): 'internal error:
    AttributeError', exit 1, nothing archived."""
    config, _ = make_job(db, tmp_path, range(1, 11), {"ids.csv": list(range(1, 11))})
    result = subprocess.run(cli_command(config), stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            timeout=120, preexec_fn=lambda: os.close(1), check=False)
    assert result.returncode == 0, result.stderr
    assert db.count("rewards") == 0
