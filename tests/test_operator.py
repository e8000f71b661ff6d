"""What an operator sees: an exact dry run, JSON for monitoring, a truthful --status, quiet
cron on planned stops, run ids that lead from a cron mail to the tracking rows, closed pipes,
done_dir and log retention."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import archive
from checks import (
    assert_conserved,
    completed_batches,
    load_v1_half_done_file,
    make_conflicts,
    make_job,
    summary_of,
    text_log,
)
from helpers import (
    ARCHIVE_SCRIPT,
    REPO,
    cli_command,
    insert_rewards,
    kill_process_group,
    run_cli,
    run_cli_peak_rss,
    wait_until,
    write_config,
    write_csv,
)

COUNTS = ("rows_to_archive", "rows_to_delete", "identical_twins", "conflicts", "not_found",
          "skipped_by_guard")


def dry_run(config: Path) -> dict[str, Any]:
    """--dry-run --json, parsed."""
    result = run_cli(config, "--dry-run", "--json")
    assert result.returncode in (0, 4), (result.stdout, result.stderr)
    return json.loads(result.stdout)


def run_counts(db) -> dict[str, int]:
    """What the run did, from process_logs, in the dry run's terms."""
    row = db.query_dicts("SELECT SUM(rows_archived) AS a, SUM(rows_deleted) AS d, SUM(duplicates) AS t, "
                         "SUM(conflicts) AS c, SUM(not_found) AS n, SUM(skipped_by_guard) AS g "
                         "FROM process_logs")[0]
    return dict(zip(COUNTS, (int(row[k] or 0) for k in "adtcng")))


def test_the_dry_run_predicts_exactly_what_the_run_does(db, tmp_path):
    keys_a = list(range(1, 41)) + [5, 6, 39] + [900, 901]  # repeats across batches, absent keys
    keys_b = [7, 8, 41, 42, 43, 902]  # repeats across files
    config, _ = make_job(db, tmp_path, range(1, 51), {"a.csv": keys_a, "b.csv": keys_b},
                         archive__batch_size=10, controls__guard="amount >= 0")
    insert_rewards(db, [3, 4, 12], table="rewards_archives")  # identical twins
    insert_rewards(db, [20, 21], table="rewards_archives")
    db.execute("UPDATE rewards_archives SET note = 'old' WHERE id IN (20, 21)")  # conflicts
    guarded = [r[0] for r in db.query("SELECT id FROM rewards WHERE amount < 0 AND id <= 43")]
    assert guarded, "the guard must hold some rows back for this test"
    predicted = dry_run(config)
    result = run_cli(config)
    assert result.returncode == 3, (result.stdout, result.stderr)
    actual = run_counts(db)
    assert {k: predicted["total"][k] for k in COUNTS} == actual
    assert (predicted["rows_to_archive"], predicted["rows_to_delete"]) == (actual["rows_to_archive"],
                                                                           actual["rows_to_delete"])
    per_file = {row["file"]: row for row in predicted["files"]}
    done = {r["file_name"]: r for r in db.query_dicts(
        "SELECT file_name, rows_archived, rows_deleted, duplicates, conflicts, not_found, skipped_by_guard "
        "FROM file_processing_logs")}
    for name in ("a.csv", "b.csv"):
        planned, recorded = per_file[name], done[name]
        assert (planned["rows_to_archive"], planned["not_found"], planned["conflicts"]) == (
            recorded["rows_archived"], recorded["not_found"], recorded["conflicts"]), name
    assert actual["identical_twins"] == 3 and actual["conflicts"] == 2 and actual["not_found"] >= 6


def key_table_job(db, tmp_path: Path, table: str, key_type: str, rows: list[Any], files: dict[str, list[Any]],
                  **config: Any) -> Path:
    """Tables `table` and `table`_arc keyed by a `key_type` column k holding `rows`, the CSV
    files (keys as the README says to write them: binary keys in hex) and a config."""
    for name in (table, f"{table}_arc"):
        db.execute(f"CREATE TABLE {name} (k {key_type} NOT NULL PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB")
    db.executemany(f"INSERT INTO {table} (k, v) VALUES (%s, %s)", [(key, n) for n, key in enumerate(rows)])
    for name, keys in files.items():
        write_csv(tmp_path / "csv" / name, [archive.format_key(k) for k in keys], header="k")
    return write_config(tmp_path, db, archive__source_table=table, archive__archive_table=f"{table}_arc",
                        archive__key_column="k", archive__csv_column="k", **config)


BIG = 2 ** 64 - 1


@pytest.mark.parametrize("key_type, rows", [
    ("BIGINT UNSIGNED", [BIG - n for n in range(30)]),
    ("VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin",
     ["a", "A", "a b", "é", "e\u0301", "x\\y", "x\ty", "x\ny", *map(str, range(22))]),
    ("VARBINARY(8)", [b"\x00", b"\x00\x00", b"\xff" * 8, b"a", b"A", *(bytes([n, n]) for n in range(1, 26))]),
])
def test_the_dry_run_predicts_keys_listed_twice_exactly(db, tmp_path, key_type, rows):
    """A key moves once, then is not found: listed twice in one batch, in two batches of a file,
    or in two files (the dry run must remember what it moved, for every key type)."""
    first, rest = rows[:18], rows[18:]
    files = {"a.csv": [*first[:6], first[0], first[5], *first[6:], first[2], first[17], "__absent__"],
             "b.csv": [first[1], *rest, first[9], rest[0], rest[0]]}
    kind = key_type.split("(")[0].split()[0]
    absent = {"BIGINT": BIG - 1000, "VARCHAR": "absent", "VARBINARY": b"\x01\x02"}[kind]
    files["a.csv"][-1] = absent
    config = key_table_job(db, tmp_path, "t", key_type, rows, files, archive__batch_size=5)
    predicted = dry_run(config)
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    actual = run_counts(db)
    assert {k: predicted["total"][k] for k in COUNTS} == actual
    assert actual["rows_to_archive"] == len(rows) and actual["not_found"] == 8  # not the 2 in one batch
    per_file = {row["file"]: row for row in predicted["files"]}
    done = {r["file_name"]: r for r in db.query_dicts(
        "SELECT file_name, rows_archived, not_found FROM file_processing_logs")}
    for name in files:
        assert (per_file[name]["rows_to_archive"], per_file[name]["not_found"]) == (
            done[name]["rows_archived"], done[name]["not_found"]), name


def numbered_job(db, tmp_path: Path, table: str, rows: int) -> Path:
    """Tables `table` and `table`_arc with ids 1..rows (made by the server: fast), a CSV of all ids."""
    if not db.table_exists("digits"):
        db.execute("CREATE TABLE digits (n INT NOT NULL PRIMARY KEY)")
        db.execute("INSERT INTO digits VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8), (9)")
    for name in (table, f"{table}_arc"):
        db.execute(f"CREATE TABLE {name} (id BIGINT NOT NULL PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB")
    number = " + ".join(f"{10 ** i} * d{i}.n" for i in range(6))
    db.execute(f"INSERT INTO {table} (id, v) SELECT 1 + {number}, 0 FROM "
               + ", ".join(f"digits d{i}" for i in range(6)) + f" WHERE {number} < {rows}")
    write_csv(tmp_path / "csv" / "ids.csv", range(1, rows + 1))
    return write_config(tmp_path, db, archive__source_table=table, archive__archive_table=f"{table}_arc",
                        archive__batch_size=1000)


def test_the_dry_run_memory_does_not_grow_with_the_keys_it_would_move(db, tmp_path):
    """--dry-run kept every key it predicted as moved in a Python set: 325 MB for 5M keys against
    47 MB for 50k, on the production primary where it runs; a run's memory is flat."""
    peaks = {}
    for rows in (20_000, 500_000):
        config = numbered_job(db, tmp_path / f"r{rows}", f"r{rows}", rows)
        result, peaks[rows] = run_cli_peak_rss(config, "--dry-run", "--json")
        assert result.returncode == 0, (result.stdout, result.stderr)
        assert json.loads(result.stdout)["rows_to_archive"] == rows
        assert list((tmp_path / f"r{rows}" / "logs").iterdir()) == []
    assert peaks[500_000] - peaks[20_000] < 8 * 1024, f"peak RSS in kB by rows moved: {peaks}"


def test_dry_run_verifies_a_log_checkpoint_when_the_tracking_tables_are_gone(db, tmp_path):
    """Found by a red team: Without tracking tables predict_file trusts the text log unverified; the
    run verifies it (REWIND) and archives everything the restored backup brought back. Dry run: 0;
    run: 100."""
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
    assert "rows archived 100 " in summary_of(result.stdout)
    assert dry["rows_to_archive"] == 100, dry


def test_dry_run_reads_schema_1_checkpoints_as_the_run_does(db, tmp_path):
    """Found by a red team: With schema-1 tables the dry run ignores them (read_only_tracking ->
    None) and predicts from batch 1; the run migrates and resumes at batch 5. Predicted 10 batches /
    40 not found, ran 6 / 0."""
    config, _ = make_job(db, tmp_path, range(1, 101), {"ids.csv": [*range(1, 101)]}, archive__batch_size=10)
    load_v1_half_done_file(db, tmp_path, batches_done=4)
    dry = json.loads(run_cli(config, "--dry-run", "--json").stdout)["total"]
    result = run_cli(config)
    assert "batches 6 " in summary_of(result.stdout) and "not found 0 " in summary_of(result.stdout)
    assert (dry["batches"], dry["rows_to_archive"], dry["not_found"]) == (6, 60, 0), dry


def test_status_json_has_what_monitoring_needs(db, tmp_path):
    config, _ = make_job(db, tmp_path, range(1, 31), {"a.csv": list(range(1, 21)), "b.csv": [21, 22]},
                         archive__batch_size=10)
    empty = json.loads(run_cli(config, "--status", "--json").stdout)
    assert empty["run_id"] is None and empty["files"] == []
    assert run_cli(config).returncode == 0
    document = json.loads(run_cli(config, "--status", "--json").stdout)
    for key in ("run_id", "status", "alive", "started", "ended", "current_file", "current_batch",
                "rows_archived", "rows_deleted", "conflicts", "not_found", "error", "files"):
        assert key in document, key
    assert document["status"] == "COMPLETED" and document["alive"] is False
    files = [(f["file"], f["status"], f["processed_batches"], f["total_batches"]) for f in document["files"]]
    assert files == [("a.csv", "COMPLETED", 2, 2), ("b.csv", "COMPLETED", 1, 1)]


def test_status_keeps_showing_the_last_run_that_did_work_after_a_no_op_rerun(db, tmp_path):
    config, _ = make_job(db, tmp_path, range(1, 31), {"a.csv": list(range(1, 21))}, archive__batch_size=10)
    assert run_cli(config).returncode == 0
    assert run_cli(config).returncode == 0  # nothing to do
    out = run_cli(config, "--status").stdout
    assert out.startswith("Run 1: COMPLETED"), out
    assert "(the newest run, 2 at" in out and "had nothing to do)" in out
    assert "a.csv" in out and "2/2 batches" in out


def test_status_shows_a_run_that_only_settled_conflicts(db, tmp_path):
    """Found by a red team: did_work() looks only at file_processing_logs, so a run whose recheck
    archived a row shows as 'the newest run ... had nothing to do' and --status shows the older run
    instead."""
    config, _ = make_job(db, tmp_path, range(1, 31), {"ids.csv": list(range(1, 21))}, archive__batch_size=10)
    make_conflicts(db, [5])
    assert run_cli(config).returncode == 3
    db.execute("DELETE FROM rewards_archives WHERE id = 5")
    assert run_cli(config).returncode == 0
    assert db.query("SELECT rows_archived FROM process_logs WHERE id = 2") == [(1,)]
    text = run_cli(config, "--status").stdout
    assert "had nothing to do" not in text, text
    assert json.loads(run_cli(config, "--status", "--json").stdout)["run_id"] == 2


def test_status_of_a_dead_run_stops_its_clock_at_its_last_sign_of_life(db, tmp_path, spawn_cli):
    config, _ = make_job(db, tmp_path, range(1, 201), {"ids.csv": list(range(1, 201))},
                         archive__batch_size=10, controls__sleep_seconds=0.3)
    proc = spawn_cli(config)
    wait_until(lambda: completed_batches(db) >= 2, timeout=30)
    kill_process_group(proc)
    first = json.loads(run_cli(config, "--status", "--json").stdout)
    time.sleep(2.5)
    second = json.loads(run_cli(config, "--status", "--json").stdout)
    assert first["status"] == second["status"] == "RUNNING" and not second["alive"]
    assert second["seconds"] == first["seconds"], "a dead run's duration must not keep growing"
    assert "died" in second["liveness"]


def test_a_failed_run_shows_the_batch_that_failed_and_a_stop_reason(db, tmp_path):
    config, _ = make_job(db, tmp_path, range(1, 31), {"ids.csv": list(range(1, 31))}, archive__batch_size=10)
    db.execute("CREATE TABLE reward_items (id INT PRIMARY KEY, reward_id BIGINT, FOREIGN KEY (reward_id) "
               "REFERENCES rewards (id) ON DELETE RESTRICT) ENGINE=InnoDB")
    db.execute("INSERT INTO reward_items VALUES (1, 25)")  # blocks batch 3
    result = run_cli(config)
    assert result.returncode == 1
    report = json.loads(run_cli(config, "--status", "--json").stdout)
    assert report["status"] == "FAILED" and report["current_batch"] == 3
    assert report["stop_reason"].startswith("failed: Error processing batch 3")
    log = text_log(tmp_path)
    assert log.count("ERROR:") == 1, log


def test_the_run_id_leads_from_the_summary_and_the_log_to_the_tracking_rows(db, tmp_path):
    config, _ = make_job(db, tmp_path, range(1, 11), {"ids.csv": list(range(1, 11))})
    result = run_cli(config)
    run_id = db.scalar("SELECT MAX(id) FROM process_logs")
    assert f"SUMMARY: COMPLETED | run {run_id} |" in result.stdout
    lines = text_log(tmp_path).splitlines()
    assert lines[0].startswith("=== Script Starts at: ")
    assert lines[1].startswith(f"RUN_ID: {run_id} | archive.py {archive.__version__}")
    assert db.scalar("SELECT version FROM process_logs WHERE id = %s", (run_id,)) == archive.__version__


def test_a_run_refused_by_the_lock_writes_nothing_into_the_running_jobs_log(db, tmp_path, spawn_cli):
    config, _ = make_job(db, tmp_path, range(1, 101), {"ids.csv": list(range(1, 101))},
                         archive__batch_size=10, controls__sleep_seconds=0.2)
    proc = spawn_cli(config)
    wait_until(lambda: completed_batches(db) >= 1, timeout=30)
    before = text_log(tmp_path)
    refused = run_cli(config)
    assert refused.returncode == 5
    after = text_log(tmp_path)
    assert after.startswith(before)
    assert "already running" not in after and after.count("=== Script Starts at") == 1
    assert proc.wait(timeout=60) == 0


def test_quiet_cron_is_silent_on_a_planned_stop_but_not_on_a_stuck_backlog(db, tmp_path):
    stop = tmp_path / "STOP"
    config, _ = make_job(db, tmp_path, range(1, 101), {"ids.csv": list(range(1, 101))},
                         archive__batch_size=10, controls__max_runtime="1s", controls__sleep_seconds=0.4,
                         controls__stop_file=stop)
    timed_out = run_cli(config, "-q")
    assert timed_out.returncode == 6 and timed_out.stdout == "" and timed_out.stderr == ""
    stop.touch()
    stuck = run_cli(config, "-q")
    assert stuck.returncode == 6
    assert "SUMMARY: INTERRUPTED" in stuck.stdout and "batches 0" in stuck.stdout
    assert "remove it before the next run" in stuck.stdout


def test_closed_pipes_end_read_only_commands_quietly(db, tmp_path):
    config, _ = make_job(db, tmp_path, range(1, 31), {f"f{i}.csv": [i] for i in range(1, 30)})
    assert run_cli(config).returncode == 0
    for args in (["--status"], ["--dry-run"]):
        shell = (f"{sys.executable} {ARCHIVE_SCRIPT} {config} {' '.join(args)} | head -1; "
                 "exit ${PIPESTATUS[0]}")
        done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (args, done.stderr)
        assert done.stderr == "", (args, done.stderr)


def test_a_run_with_stdout_closed_from_the_start_still_runs(db, tmp_path):
    """Found by a red team: cron `... >&-`: sys.stdout is None and Reporter calls None.isatty():
    'internal error: AttributeError', exit 1, nothing archived."""
    config, _ = make_job(db, tmp_path, range(1, 11), {"ids.csv": list(range(1, 11))})
    result = subprocess.run(cli_command(config), stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            timeout=120, preexec_fn=lambda: os.close(1), check=False)
    assert result.returncode == 0, result.stderr
    assert db.count("rewards") == 0


def test_a_wrong_password_says_where_it_came_from(db, tmp_path):
    config = write_config(tmp_path, db, database__user="nobody_here", database__password=None)
    write_csv(tmp_path / "csv" / "ids.csv", [1])
    result = run_cli(config, "--check", env={"MYSQL_PWD": "wrong"})
    assert result.returncode == 1
    assert "1045" in result.stderr and "(password from the MYSQL_PWD environment variable)" in result.stderr


def test_completed_files_move_to_done_dir_and_are_not_hashed_again(db, tmp_path):
    done_dir = tmp_path / "done"
    done_dir.mkdir()
    config, original = make_job(db, tmp_path, range(1, 41), {"a.csv": list(range(1, 21)), "b.csv": [21, 22]},
                                archive__batch_size=10, archive__done_dir=done_dir)
    insert_rewards(db, [22], table="rewards_archives")
    db.execute("UPDATE rewards_archives SET note = 'old' WHERE id = 22")  # b.csv ends with a conflict
    assert run_cli(config).returncode == 3
    assert sorted(p.name for p in done_dir.iterdir()) == ["a.csv"]
    assert sorted(p.name for p in (tmp_path / "csv").iterdir()) == ["b.csv"], "open conflicts keep a file"
    assert "MOVED: a.csv to" in text_log(tmp_path)
    db.execute("DELETE FROM rewards_archives WHERE id = 22")
    assert run_cli(config).returncode == 0
    assert sorted(p.name for p in done_dir.iterdir()) == ["a.csv", "b.csv"]
    assert_conserved(db, original, set(range(1, 23)))


def test_old_text_logs_are_removed_by_retention_and_resume_still_works(db, tmp_path):
    config, original = make_job(db, tmp_path, range(1, 21), {"ids.csv": list(range(1, 21))},
                                archive__batch_size=10, archive__log_retention_days=30)
    old_day = dt.date.today() - dt.timedelta(days=45)
    old = tmp_path / "logs" / f"DataProcessingAllDetails_{old_day:%d_%m_%Y}.txt"
    old.write_text("=== Script Starts at: old ===\n")
    recent_day = dt.date.today() - dt.timedelta(days=3)
    recent = tmp_path / "logs" / f"DataProcessingAllDetails_{recent_day:%d_%m_%Y}.txt"
    recent.write_text("=== Script Starts at: recent ===\n")
    result = run_cli(config, "-v")
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert not old.exists() and recent.exists()
    assert "LOG_RETENTION: removed 1 text log older than 30 days" in text_log(tmp_path)
    assert_conserved(db, original, set(range(1, 21)))
    assert os.path.exists(tmp_path / "logs" / archive.LOG_INDEX_NAME)


def test_version_prints_the_release_and_a_hash_of_the_file():
    done = subprocess.run([sys.executable, str(ARCHIVE_SCRIPT), "--version"], capture_output=True, text=True)
    assert done.returncode == 0
    assert re.fullmatch(rf"archive\.py {re.escape(archive.__version__)} \(file sha256 [0-9a-f]{{12}}\)\n",
                        done.stdout), done.stdout


def test_python_dash_m_archive_is_the_same_program_as_the_script(tmp_path):
    """`python -m archive` (its bytecode cached in __pycache__, where a script is compiled again on
    every run): the same version line, exit codes and one-line errors, and --help and its crontab
    line in that form, from the script's directory or with it on PYTHONPATH."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    forms = {"script": ([sys.executable, str(ARCHIVE_SCRIPT)], tmp_path),
             "module from its folder": ([sys.executable, "-m", "archive"], REPO),
             "module on PYTHONPATH": ([sys.executable, "-m", "archive"], tmp_path)}
    answers = {}
    for form, (command, cwd) in forms.items():
        version, missing, unknown = (
            subprocess.run(command + args, capture_output=True, text=True, cwd=cwd, env=env, timeout=60)
            for args in (["--version"], [str(tmp_path / "none.ini")], ["x.ini", "--no-such-option"]))
        answers[form] = [(done.returncode, done.stdout, done.stderr) for done in (version, missing)]
        assert unknown.returncode == 2 and "unrecognized arguments: --no-such-option" in unknown.stderr
    assert answers["module from its folder"] == answers["module on PYTHONPATH"] == answers["script"]
    assert answers["script"][0][0] == 0 and answers["script"][1][0] == 2
    assert answers["script"][1][2] == f"archive.py: config: {tmp_path / 'none.ini'}: no such file\n"
    shown = subprocess.run([sys.executable, "-m", "archive", "--help"], capture_output=True, text=True,
                           cwd=REPO, timeout=60).stdout
    assert "  python -m archive config.ini --export-keys " in shown
    cron = "15 1 * * *  cd /srv/archive && .venv/bin/python -m archive config.ini -q --max-runtime 4h"
    assert cron in shown
    assert shown.startswith("usage: archive.py ")


def test_the_command_line_freezes_what_the_imports_made_and_a_caller_does_not():
    # gc.freeze: no collection (the one at exit included) scans the modules' objects again; a caller
    # passing argv (a test) keeps all its garbage collectable
    code = ("import gc, sys, archive; archive.main(['--version']); print(gc.get_freeze_count()); "
            "sys.argv = ['archive.py', '--version']; archive.main(); print(gc.get_freeze_count())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    caller, command_line = (int(line) for line in done.stdout.splitlines() if line.isdigit())
    assert caller == 0 and command_line > 10_000, done.stdout + done.stderr


# --------------------------------------------------------------------------- terminal width

def run_on_a_terminal(command: list[str], columns: int, cwd: Path) -> tuple[int, str]:
    """Run a command with its output on a pseudo-terminal `columns` wide; its exit code and what
    the terminal received."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["TMPDIR"] = str(cwd)
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, cwd=cwd, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the terminal's other end closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return proc.wait(timeout=120), b"".join(chunks).decode("utf-8", "replace")


def screen_lines(output: str) -> list[str]:
    """What each line of the terminal showed: every redraw after a carriage return counts."""
    plain = output.replace("\x1b[K", "").replace("\r\n", "\n")
    return [piece for line in plain.split("\n") for piece in line.split("\r")]


@pytest.mark.parametrize("columns", [40, 80])
def test_what_a_run_prints_on_a_terminal_fits_its_width_and_cron_output_stays_whole(db, tmp_path, columns):
    name = "a-rather-long-key-file-name-for-the-progress-line.csv"
    config, _ = make_job(db, tmp_path, range(1, 201), {name: list(range(1, 201))}, archive__batch_size=10,
                         controls__guard="user_id <> -1")
    db.execute("UPDATE rewards SET user_id = -1 WHERE id < 5")
    code, dry = run_on_a_terminal(cli_command(config, "--dry-run"), columns, tmp_path)
    assert code == 0, dry
    code, shown = run_on_a_terminal(cli_command(config), columns, tmp_path)
    assert code == 0, shown
    lines = screen_lines(dry) + screen_lines(shown)
    assert [line for line in lines if len(line) > columns] == []
    assert any(line.startswith("FINISHED:") for line in lines) and any("SUMMARY:" in line for line in lines)
    progress = [line for line in screen_lines(shown) if " batch " in line and "ETA" in line]
    assert progress, shown
    assert all(re.search(r"\bfile 1/1  batch [0-9]+/20\b", line) for line in progress), progress
    if columns == 40:
        assert any(line.startswith("  ") for line in lines)  # the SUMMARY went on over several lines
    # without a terminal (cron), every line stays whole
    write_csv(tmp_path / "csv" / "again.csv", [1, 2, 3, 4])
    cron = run_cli(config)
    summary = [line for line in cron.stdout.splitlines() if line.startswith("SUMMARY:")]
    assert len(summary) == 1 and "| stopped: all files done" in summary[0] and len(summary[0]) > 80


def test_the_progress_lines_eta_covers_every_pending_file_not_just_the_current_one(db, tmp_path):
    files = {"a.csv": list(range(1, 101)), "b.csv": list(range(101, 201))}
    config, _ = make_job(db, tmp_path, range(1, 201), files, archive__batch_size=10,
                         controls__sleep_seconds=0.2)
    code, shown = run_on_a_terminal(cli_command(config), 120, tmp_path)
    assert code == 0, shown
    last_of_first = [line for line in screen_lines(shown) if "file 1/2  batch 10/10" in line]
    assert last_of_first, shown
    # b.csv's 10 batches are still ahead, 0.2 s of sleep each at least: not "ETA 0m00s"
    eta = re.search(r"ETA ([0-9]+)m([0-9]{2})s", last_of_first[-1])
    assert eta and int(eta.group(1)) * 60 + int(eta.group(2)) >= 1, last_of_first
