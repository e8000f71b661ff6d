"""Monitoring a cron job: the Prometheus metrics file ([controls] metrics_file), --status --json's
metrics, rows the guard held back (recorded, shown, revisited), the exit-3 mail under -q and the
load limits (max_load pauses, critical_load stops), against a real MariaDB.

The metrics file is checked with promtool (Debian's prometheus package) as node_exporter's
textfile collector would read it, and its values against the tracking tables.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import archive
from checks import make_job, text_log
from helpers import ScratchDatabase, cli_command, insert_rewards, run_cli, snapshot, wait_until, write_config
from test_resume import assert_like_fresh

SAMPLE = re.compile(r'^(archive_py_[a-z_]+)\{([^}]*)\} (\S+)$')


def read_metrics(path: Path, job: str | None = None) -> dict[str, float]:
    """The samples of one job (all when None) as {name or name{status}: value}, unprefixed."""
    values: dict[str, float] = {}
    for line in path.read_text().splitlines():
        match = SAMPLE.match(line)
        if not match or (job is not None and f'job="{job}"' not in match.group(2)):
            continue
        status = re.search(r'status="([A-Z]+)"', match.group(2))
        name = match.group(1).removeprefix("archive_py_")
        values[name + (f"{{{status.group(1)}}}" if status else "")] = float(match.group(3))
    return values


def promtool_check(path: Path) -> None:
    """promtool check metrics: the file is valid exposition text and follows the naming rules."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (./dev.sh setup does)"
    checked = subprocess.run([str(promtool), "check", "metrics"], input=path.read_text(), capture_output=True,
                             text=True, check=False, timeout=60)
    assert checked.returncode == 0 and not checked.stdout.strip(), checked.stdout + checked.stderr


def job_of(db: ScratchDatabase) -> str:
    """The job name the tracking rows (and the metrics' job label) carry."""
    return f"{db.name}.rewards -> {db.name}.rewards_archives"


def guarded_job(db: ScratchDatabase, tmp_path: Path, **config: Any) -> Path:
    """60 listed rows; rows 5..9 fail the guard (user_id -1); row 15 is a conflict."""
    path, _ = make_job(db, tmp_path, range(1, 71), {"ids.csv": list(range(1, 61))}, archive__batch_size=10,
                       controls__guard="user_id <> -1",
                       controls__metrics_file=tmp_path / "metrics" / "archive_py.prom", **config)
    (tmp_path / "metrics").mkdir(exist_ok=True)
    db.execute("UPDATE rewards SET user_id = -1 WHERE id BETWEEN 5 AND 9")
    insert_rewards(db, [15], table="rewards_archives")
    db.execute("UPDATE rewards_archives SET note = 'older version' WHERE id = 15")
    return path


def test_the_metrics_file_passes_promtool_and_says_what_the_tracking_tables_say(db, tmp_path):
    config = guarded_job(db, tmp_path)
    metrics = tmp_path / "metrics" / "archive_py.prom"
    other = 'archive_py_open_conflicts{job="other job",source="x.a",archive="x.b"} 7\n'
    metrics.write_text("# HELP archive_py_open_conflicts Another job's.\n"
                       "# TYPE archive_py_open_conflicts gauge\n" + other)
    result = run_cli(config)
    assert result.returncode == 3, result.stdout + result.stderr
    promtool_check(metrics)
    text = metrics.read_text()
    assert other in text  # another job's samples in the same file are kept
    assert not list(metrics.parent.glob(".*.tmp"))  # nothing half-written left behind
    got = read_metrics(metrics, job_of(db))
    run = db.query_dicts("SELECT * FROM process_logs")[0]
    assert got["last_run_status{COMPLETED}"] == 1 and got["last_run_status{RUNNING}"] == 0
    assert got["last_run_exit_code"] == run["exit_code"] == 3
    for count in archive.COUNTS:
        assert got[archive.COUNT_METRICS[count.field][0]] == run[count.column], count
    assert (run["skipped_by_guard"], run["conflicts"]) == (5, 1)
    open_rows = dict(db.query("SELECT kind, COUNT(*) FROM conflict_logs WHERE status = 'OPEN' GROUP BY kind"))
    assert got["open_conflicts"] == open_rows["CONFLICT"] == 1
    assert got["held_rows"] == open_rows["HELD"] == 5
    assert got["files"] == run["total_files"] == 1
    assert got["files_pending"] == run["total_files"] - run["processed_files"] == 0
    assert got["batches_done_total"] == db.scalar("SELECT COUNT(*) FROM batch_processing_logs") == 6
    assert (got["file_batches_done"], got["file_batches"]) == (6, 6)
    assert "last_success_timestamp_seconds" not in got  # exit 3 is no success
    assert "eta_seconds" not in got
    assert got["last_run_end_timestamp_seconds"] >= got["last_run_start_timestamp_seconds"]
    # --status --json: the same values, read from the tracking tables
    status = json.loads(run_cli(config, "--status", "--json").stdout)
    assert status["format_version"] == 2 and status["exit_code"] == 3
    assert status["held_rows"] == [{"file": "ids.csv", "keys": 5, "first_keys": ["5", "6", "7", "8", "9"]}]
    assert status["open_conflicts"] == [{"file": "ids.csv", "keys": 1, "first_keys": ["15"]}]
    for name, value in status["metrics"].items():
        if name == "rows_per_second":
            continue  # a rate over seconds counted on two clocks
        if name in ("heartbeat_timestamp_seconds", "last_run_start_timestamp_seconds",
                    "last_run_end_timestamp_seconds"):
            assert abs(value - got[name]) < 2, name  # the same moment, another clock
        elif name == "last_run_status":
            assert got[f"last_run_status{{{value}}}"] == 1
        elif value is None:
            assert name not in got, name
        else:
            assert value == got[name], name


def test_a_running_job_keeps_its_metrics_fresh_and_a_success_is_stamped(db, tmp_path, spawn_cli):
    config, _ = make_job(db, tmp_path, range(1, 201), {"ids.csv": list(range(1, 201))},
                         archive__batch_size=10, controls__sleep_seconds=0.3, controls__check_interval=0.1,
                         controls__metrics_file=tmp_path / "archive_py.prom")
    metrics = tmp_path / "archive_py.prom"
    proc = spawn_cli(config)

    def running_with_progress() -> dict[str, float] | None:
        got = read_metrics(metrics) if metrics.exists() else {}
        return got if got.get("last_run_status{RUNNING}") == 1 and got.get(
            "batches_done_total", 0) >= 2 else None

    first = wait_until(running_with_progress, timeout=60, message="metrics of a running run")
    assert "last_run_exit_code" not in first and first["files_pending"] == 1
    assert first["eta_seconds"] > 0
    promtool_check(metrics)  # mid-run too: the families without a value yet are still valid
    def newer() -> dict[str, float] | None:
        got = read_metrics(metrics)
        beat = got.get("heartbeat_timestamp_seconds", 0)
        return got if beat >= first["heartbeat_timestamp_seconds"] + 1 else None

    later = wait_until(newer, timeout=30, message="a newer heartbeat")
    assert later["batches_done_total"] >= first["batches_done_total"]
    assert proc.wait(timeout=120) == 0, proc.read_stderr()
    done = read_metrics(metrics)
    assert done["last_run_exit_code"] == 0 and done["files_pending"] == 0
    assert done["last_success_timestamp_seconds"] == done["last_run_end_timestamp_seconds"]
    promtool_check(metrics)
    status = json.loads(run_cli(config, "--status", "--json").stdout)["metrics"]
    assert abs(status["last_success_timestamp_seconds"] - done["last_success_timestamp_seconds"]) < 2


def test_rows_held_by_the_guard_are_shown_and_revisited_until_they_move(db, tmp_path):
    config = guarded_job(db, tmp_path)
    db.execute("DELETE FROM rewards_archives WHERE id = 15")  # no conflict here
    first = run_cli(config)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "held by guard (recorded; revisited by every run)" in first.stdout
    assert "5 rows: 5, 6, 7, 8, 9" in run_cli(config, "--status").stdout
    db.execute("UPDATE rewards SET user_id = 1 WHERE id IN (5, 6)")  # they pass the guard now
    db.execute("DELETE FROM rewards WHERE id = 7")  # and one is gone
    again = run_cli(config)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "RECHECK: ids.csv: 3 of 5 row(s) held by the guard moved or gone, 2 still held" in again.stdout
    assert sorted(snapshot(db, "rewards")) == [8, 9, *range(61, 71)]
    assert {5, 6} <= set(snapshot(db, "rewards_archives"))
    moved = "the guard lets the row go now: row archived"
    assert db.query("SELECT key_value, resolution FROM conflict_logs WHERE status = 'RESOLVED' ORDER BY id"
                    ) == [("5", moved), ("6", moved), ("7", "source row no longer exists")]
    assert read_metrics(tmp_path / "metrics" / "archive_py.prom")["held_rows"] == 2


def test_revisit_held_off_records_held_rows_but_leaves_them(db, tmp_path):
    config = guarded_job(db, tmp_path, controls__revisit_held="no")
    db.execute("DELETE FROM rewards_archives WHERE id = 15")
    assert run_cli(config).returncode == 0
    db.execute("UPDATE rewards SET user_id = 1 WHERE id BETWEEN 5 AND 9")
    again = run_cli(config)
    assert again.returncode == 0 and "held by the guard" not in again.stdout, again.stdout
    assert db.scalar("SELECT COUNT(*) FROM conflict_logs WHERE kind = 'HELD' AND status = 'OPEN'") == 5
    assert set(range(5, 10)) <= set(snapshot(db, "rewards"))


def test_a_held_row_archived_elsewhere_with_another_version_becomes_a_conflict(db, tmp_path):
    config = guarded_job(db, tmp_path)
    db.execute("DELETE FROM rewards_archives WHERE id = 15")
    assert run_cli(config).returncode == 0
    insert_rewards(db, [5], table="rewards_archives")
    db.execute("UPDATE rewards_archives SET note = 'other' WHERE id = 5")
    again = run_cli(config)
    assert again.returncode == 3, again.stdout + again.stderr
    assert db.query("SELECT kind, status FROM conflict_logs WHERE key_value = '5'") == [("CONFLICT", "OPEN")]
    assert db.scalar("SELECT status FROM file_processing_logs ORDER BY id LIMIT 1") == "CONFLICTS"


def test_cron_mail_for_exit_3_says_what_is_open_and_how_to_see_it_all(db, tmp_path):
    config = guarded_job(db, tmp_path)
    assert run_cli(config).returncode == 3
    # the next night, under cron's bare environment: nothing new, the old conflict still open
    env = {"PATH": "/usr/bin:/bin"}
    mail = subprocess.run(["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()),
                           *cli_command(config, "-q")], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, stdin=subprocess.DEVNULL, check=False)
    assert mail.returncode == 3, mail.stdout + mail.stderr
    lines = mail.stdout.splitlines()
    assert lines[0].startswith("SUMMARY: COMPLETED") and "| conflicts 0 |" in lines[0], lines
    assert lines[1].startswith("OPEN CONFLICTS: 1 conflict of this job kept in both tables (0 found by "
                               "this run")
    assert lines[2] == "  ids.csv: 1 key: 15"
    command = lines[3].removeprefix("  all of them: ")
    assert command.startswith(f"mariadb {db.name} -e ") and "kind = 'CONFLICT'" in command
    query = command.split(" -e ", 1)[1].strip('"')
    assert db.query(query)[0][:2] == ("ids.csv", "15")  # the command's query runs as printed
    assert "OPEN CONFLICTS:" in text_log(tmp_path)


def test_critical_load_stops_the_run_and_max_load_pauses_it(db, tmp_path):
    config, _ = make_job(db, tmp_path, range(1, 31), {"ids.csv": list(range(1, 31))}, archive__batch_size=10,
                         controls__critical_load="Threads_connected=0")
    stopped = run_cli(config)
    assert stopped.returncode == 6, stopped.stdout + stopped.stderr
    reason = db.scalar("SELECT stop_reason FROM process_logs")
    assert re.fullmatch(r"critical_load: Threads_connected is [0-9]+ \(critical_load Threads_connected=0\)",
                        reason), reason
    quiet = run_cli(config, "-q")  # speaks: not a planned stop
    assert "stopped: critical_load: Threads_connected is" in quiet.stdout
    paused = write_config(tmp_path, db, archive__batch_size=10, controls__max_load="Threads_running=0",
                          controls__max_runtime="3s", filename="paused.ini")
    held = run_cli(paused)
    assert held.returncode == 6 and "PAUSE: Threads_running is" in held.stdout, held.stdout
    assert "(max_load Threads_running=0)" in held.stdout
    assert snapshot(db, "rewards_archives") == {}
    wrong = write_config(tmp_path, db, controls__max_load="No_such_status=1", filename="wrong.ini")
    check = run_cli(wrong, "--check")
    assert check.returncode == 1, check.stdout
    assert "FAIL: [controls] max_load: the server has no numeric status variable No_such_status" \
        in check.stdout
    failed = run_cli(wrong)
    assert failed.returncode == 1, failed.stderr
    assert "no numeric status variable No_such_status" in failed.stderr, failed.stderr


def test_an_upgrade_from_schema_3_keeps_open_conflicts_and_records_exit_codes(db, tmp_path, server):
    config, _ = make_job(db, tmp_path, range(1, 31), {"ids.csv": list(range(1, 31))}, archive__batch_size=10)
    schema = (Path(__file__).parent / "fixtures" / "schema_v3.sql").read_text()
    for statement in (s for s in re.sub(r"^--.*$", "", schema, flags=re.M).split(";") if s.strip()):
        db.execute(statement)
    insert_rewards(db, [15], table="rewards_archives")
    db.execute("UPDATE rewards_archives SET note = 'older version' WHERE id = 15")
    db.execute("INSERT INTO conflict_logs (job, file_name, file_checksum, key_value, process_log_id, "
               "batch_number) VALUES (%s, 'old.csv', REPEAT('0', 64), '15', 1, 1)", (job_of(db),))
    status = run_cli(config, "--status", "--json")  # a read-only command reads schema 3 as it is
    assert status.returncode == 0, status.stderr
    result = run_cli(config, "-v")
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"MIGRATED: tracking tables to schema {archive.SCHEMA_VERSION}" in text_log(tmp_path)
    old = db.query("SELECT kind, status FROM conflict_logs WHERE file_name = 'old.csv'")
    assert old == [("CONFLICT", "OPEN")]
    assert db.scalar("SELECT exit_code FROM process_logs") == 3
    assert_like_fresh(db, server)


def test_the_dry_run_predicts_what_the_revisit_of_held_rows_moves(db, tmp_path):
    config = guarded_job(db, tmp_path)
    db.execute("DELETE FROM rewards_archives WHERE id = 15")
    assert run_cli(config).returncode == 0
    db.execute("UPDATE rewards SET user_id = 1 WHERE id IN (5, 6, 7)")
    dry = json.loads(run_cli(config, "--dry-run", "--json").stdout)
    recheck = next(row for row in dry["files"] if row["file"] == "(open conflicts)")
    assert (recheck["rows_to_archive"], recheck["rows_to_delete"]) == (3, 3), dry
    again = run_cli(config)
    assert again.returncode == 0, again.stdout + again.stderr
    moved = db.query_dicts("SELECT rows_archived, rows_deleted FROM process_logs ORDER BY id DESC LIMIT 1")[0]
    assert (moved["rows_archived"], moved["rows_deleted"]) == (3, 3)


def test_a_jobs_samples_replace_only_its_own_and_label_values_are_escaped():
    labels = {"job": 'a.b -> [destination] c."d"', "source": "a.b", "archive": "c.d"}
    other = ('# HELP archive_py_open_conflicts x\n# TYPE archive_py_open_conflicts gauge\n'
             'archive_py_open_conflicts{job="j2",source="x",archive="y"} 4\n'
             '# HELP archive_py_from_a_newer_version y\n# TYPE archive_py_from_a_newer_version gauge\n'
             'archive_py_from_a_newer_version{job="j2",source="x",archive="y"} 1\n')
    first = archive.merge_metrics(other, labels, {"last_run_status": "RUNNING", "open_conflicts": 1})
    second = archive.merge_metrics(first, labels, {"last_run_status": "COMPLETED", "open_conflicts": 0})
    assert 'archive_py_open_conflicts{job="j2",source="x",archive="y"} 4' in second
    assert 'archive_py_from_a_newer_version{job="j2",source="x",archive="y"} 1' in second
    assert second.count("# TYPE archive_py_open_conflicts gauge") == 1
    ours = [line for line in second.splitlines() if 'c.\\"d\\"' in line]
    assert 'archive_py_open_conflicts{job="a.b -> [destination] c.\\"d\\"",source="a.b",archive="c.d"} 0.0' \
        in ours
    assert [line for line in ours if "last_run_status" in line and line.endswith(" 1")] == [
        ('archive_py_last_run_status{job="a.b -> [destination] c.\\"d\\"",source="a.b",archive="c.d",'
         'status="COMPLETED"} 1')]
    assert archive.escape_label('a\\b\n"c"') == 'a\\\\b\\n\\"c\\"'


def test_a_metrics_file_that_cannot_be_written_is_one_note_and_the_run_goes_on(tmp_path):
    for folder in ("csv", "logs", "metrics"):
        (tmp_path / folder).mkdir()
    ini = tmp_path / "c.ini"
    ini.write_text("[database]\ndatabase = app\n"
                   "[archive]\nsource_table = a\narchive_table = b\nkey_column = id\n"
                   "csv_pattern = *.csv\ncsv_column = id\nbatch_size = 10\n"
                   f"csv_dir = {tmp_path / 'csv'}\nlog_dir = {tmp_path / 'logs'}\n"
                   "[controls]\nmetrics_file = metrics/archive_py.prom\n")
    config = archive.load_config(ini, environ={})
    (tmp_path / "metrics").rmdir()  # the folder went away after the start
    metrics, state = archive.MetricsFile(config), archive.RunState(run_id=1)
    note = metrics.publish(state, force=True)
    assert note is not None and note.startswith(f"NOTE: cannot write metrics_file {config.metrics_file}: ")
    assert metrics.publish(state, force=True) is None  # said once
    (tmp_path / "metrics").mkdir()
    assert metrics.publish(state, force=True) is None  # and back
    assert (tmp_path / "metrics" / "archive_py.prom").exists()
