"""Every listed row is archived and the run tells the truth: jobs sharing tracking tables, a
database that went back in time, files changed under a run, revisited conflicts, lost commit
answers, runs that end badly, and the upgrade from schema 1."""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
from pathlib import Path

import pytest

import archive
from checks import (
    V2_SCHEMA,
    assert_batches_once,
    assert_conserved,
    assert_no_run_left_running,
    completed_batches,
    load_v1_half_done_file,
    make_conflicts,
    make_job,
    summary_of,
    text_log,
)
from helpers import (
    ScratchDatabase,
    create_rewards_tables,
    global_time_zone,
    insert_rewards,
    reward_row,
    run_cli,
    snapshot,
    start_cli,
    wait_until,
    write_config,
    write_csv,
)
from proxy import need_socket, run_cli_cut

REPO = Path(archive.__file__).resolve().parent


# --------------------------------------------------------------------------- jobs sharing tables

def second_job(db, tmp_path: Path, ids, **config) -> Path:
    """reward_events / reward_events_archives, same shape and keys, its own config and dirs."""
    create_rewards_tables(db, "reward_events", "reward_events_archives")
    insert_rewards(db, ids, table="reward_events")
    return write_config(tmp_path / "events", db, archive__source_table="reward_events",
                        archive__archive_table="reward_events_archives", **config)


def test_jobs_sharing_tracking_tables_never_skip_each_others_files(db, tmp_path):
    config, original = make_job(db, tmp_path, range(1, 61), {"keys.csv": list(range(1, 61))},
                                archive__batch_size=10)
    events = second_job(db, tmp_path, range(1, 61), archive__batch_size=10)
    write_csv(tmp_path / "events" / "csv" / "keys.csv", range(1, 61))  # same name, same content
    assert run_cli(config).returncode == 0
    result = run_cli(events)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "SKIPPING" not in result.stdout and "CHANGED" not in result.stdout
    assert db.count("reward_events") == 0 and db.count("reward_events_archives") == 60
    assert_conserved(db, original, set(range(1, 61)))
    run_id = db.scalar("SELECT MAX(id) FROM process_logs")
    # the seed's monitoring query, as written, still answers for each run
    assert db.query_dicts("SELECT MAX(batch_number) as last_batch FROM batch_processing_logs "
                          f"WHERE process_log_id = {run_id} AND file_name = 'keys.csv';") == [
        {"last_batch": 6}]


def test_an_interrupted_job_does_not_decide_where_another_starts(db, tmp_path):
    config, _ = make_job(db, tmp_path, range(1, 101), {"keys.csv": list(range(1, 101))},
                         archive__batch_size=10, controls__max_runtime="1s", controls__sleep_seconds=0.4)
    events = second_job(db, tmp_path, range(1, 101), archive__batch_size=10)
    write_csv(tmp_path / "events" / "csv" / "keys.csv", range(1, 101))
    assert run_cli(config).returncode == 6
    result = run_cli(events)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "Resuming" not in result.stdout
    assert db.count("reward_events") == 0
    assert db.query("SELECT MIN(batch_number) FROM batch_processing_logs b JOIN process_logs p ON "
                    "p.id = b.process_log_id WHERE p.source_table = 'reward_events'") == [(1,)]


# --------------------------------------------------------------------------- a rewound database

TABLES = ("rewards", "rewards_archives", *archive.TRACKING_TABLES)


def backup(db) -> None:
    """What a logical backup would hold: every table's rows, now."""
    for table in TABLES:
        db.execute(f"CREATE TABLE bak_{table} LIKE {table}")
        db.execute(f"INSERT INTO bak_{table} SELECT * FROM {table}")


def restore(db) -> None:
    """Put every table back as it was at backup time (a restore, or a failover to a lagging replica)."""
    for table in TABLES:
        db.execute(f"DELETE FROM {table}")
        db.execute(f"INSERT INTO {table} SELECT * FROM bak_{table}")


def test_a_database_restored_from_a_backup_is_not_overruled_by_the_text_log(db, tmp_path):
    config, original = make_job(db, tmp_path, range(1, 101), {"ids.csv": list(range(1, 101))},
                                archive__batch_size=10, controls__max_runtime="1s",
                                controls__sleep_seconds=0.4)
    assert run_cli(config).returncode == 6
    done = completed_batches(db)
    assert 1 <= done < 10
    backup(db)
    assert run_cli(config, "--max-runtime", "1h", "--sleep", "0").returncode == 0  # the log now says 1-10
    restore(db)
    assert db.count("rewards") == 100 - 10 * done
    result = run_cli(config, "--max-runtime", "1h", "--sleep", "0")
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert f"keys of batch {done + 1} are still in the source" in result.stdout
    assert f"resuming at batch {done + 1}" in result.stdout
    assert_conserved(db, original, set(range(1, 101)))


def test_a_log_checkpoint_is_trusted_when_the_rows_are_gone(db, tmp_path):
    """The common case: tracking tables lost, rows long archived; the log says where to go on."""
    config, original = make_job(db, tmp_path, range(1, 101), {"ids.csv": list(range(1, 101))},
                                archive__batch_size=10)
    assert run_cli(config).returncode == 0
    for table in archive.TRACKING_TABLES:
        db.execute(f"DROP TABLE {table}")
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "all 10 batches done per the log checkpoint" in result.stdout
    assert "REWIND" not in result.stdout
    assert_conserved(db, original, set(range(1, 101)))
    assert db.query("SELECT status FROM file_processing_logs") == [("COMPLETED",)]
    assert "SKIPPING: ids.csv (completed by run" in run_cli(config).stdout


@pytest.mark.parametrize("index", ['{"format": 2, "logs": []}', '{"format": 2, "logs": {"%s": 7}}', "[1, 2]"])
def test_a_log_index_of_the_wrong_shape_is_rebuilt_and_the_log_still_counts(db, tmp_path, index):
    """Valid JSON of the wrong shape in the index made every run and --dry-run end in
    'internal error: AttributeError' until someone deleted the file."""
    config, original = make_job(db, tmp_path, range(1, 101), {"ids.csv": list(range(1, 101))},
                                archive__batch_size=10)
    assert run_cli(config).returncode == 0
    for table in archive.TRACKING_TABLES:
        db.execute(f"DROP TABLE {table}")
    logs = tmp_path / "logs"
    (log,) = logs.glob(f"{archive.LOG_PREFIX}*.txt")
    (logs / archive.LOG_INDEX_NAME).write_text(index.replace("%s", log.name))
    dry = run_cli(config, "--dry-run")
    assert dry.returncode == 0, (dry.stdout, dry.stderr)
    assert re.search(r"^ids\.csv\s+0\s+0\b", dry.stdout, re.M), dry.stdout  # the log says all done
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "all 10 batches done per the log checkpoint" in result.stdout
    assert_conserved(db, original, set(range(1, 101)))
    rebuilt = json.loads((logs / archive.LOG_INDEX_NAME).read_text())
    assert rebuilt["format"] == archive.LOG_INDEX_FORMAT and set(rebuilt["logs"]) == {log.name}
    assert {tuple(p[:2]) for p in rebuilt["logs"][log.name]["progress"]} == {(archive.load_config(config).job,
                                                                              "ids.csv")}


# --------------------------------------------------------------------------- files that change

def test_a_file_rewritten_while_its_batches_run_is_not_completed(db, tmp_path):
    keys = list(range(1, 5001))  # 24 KB: more than one read buffer, so the change reaches the reader
    config, original = make_job(db, tmp_path, keys, {"ids.csv": keys}, archive__batch_size=100,
                                controls__sleep_seconds=0.15)
    path = tmp_path / "csv" / "ids.csv"
    content = path.read_bytes()
    proc = start_cli(config)
    wait_until(lambda: completed_batches(db) >= 5, timeout=60)
    with open(path, "r+b") as handle:  # truncated in place, as an editor or exporter might
        handle.truncate(len(content) // 3)
    assert proc.wait(timeout=120) == archive.EXIT_REJECTED, proc.read_stderr()
    assert "changed on disk while its batches ran" in proc.read_stderr()
    assert db.query("SELECT status FROM file_processing_logs") == [("CHANGED",)]
    assert db.scalar("SELECT COUNT(*) FROM file_processing_logs WHERE status = 'COMPLETED'") == 0
    path.write_bytes(content)  # the same content again: it must not count as done
    rerun = run_cli(config, "--sleep", "0")
    assert rerun.returncode == 0, (rerun.stdout, rerun.stderr)
    assert_conserved(db, original, set(keys))
    assert db.count("rewards") == 0


def test_a_file_that_vanishes_before_its_turn_is_reported_and_the_others_run(db, tmp_path):
    config, _ = make_job(db, tmp_path, range(1, 131), {"a.csv": list(range(1, 101)), "b.csv": [101, 102],
                                                       "c.csv": [103, 104]},
                         archive__batch_size=10, controls__sleep_seconds=0.1)
    proc = start_cli(config)
    wait_until(lambda: completed_batches(db) >= 2, timeout=60)
    (tmp_path / "csv" / "b.csv").unlink()
    assert proc.wait(timeout=60) == archive.EXIT_REJECTED, proc.read_stderr()
    assert "b.csv" in proc.read_stderr()
    assert db.query("SELECT file_name, status FROM file_processing_logs ORDER BY id") == [
        ("a.csv", "COMPLETED"), ("b.csv", "FAILED"), ("c.csv", "COMPLETED")]


@pytest.mark.parametrize("before", [b"\n", b"   \n", b"\xef\xbb\xbf\n", b"\xef\xbb\xbf\r\n\r\n"])
def test_blank_lines_before_the_header_do_not_empty_the_file(db, tmp_path, before):
    config, original = make_job(db, tmp_path, range(1, 21), {}, archive__batch_size=10)
    (tmp_path / "csv" / "ids.csv").write_bytes(before + b"id\n" + b"".join(b"%d\n" % i for i in range(1, 21)))
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert_conserved(db, original, set(range(1, 21)))


def test_a_changed_csv_column_does_not_resume_by_batch_number(db, tmp_path):
    """Found by a red team: Checkpoints are keyed by job, file name, content and batch size, not by
    csv_column: after csv_column changes, batch N of the new column is taken as done and its keys
    are never archived, while the run reports COMPLETED, exit 0."""
    config, _ = make_job(db, tmp_path, range(1, 201), {}, archive__batch_size=10,
                         controls__max_runtime="1s", controls__sleep_seconds=0.4)
    rows = "".join(f"{n + 100},{n}\n" for n in range(1, 101))
    (tmp_path / "csv" / "ids.csv").write_text("user_ref,id\n" + rows)
    assert run_cli(config).returncode == 6  # some batches of column `id` done
    fixed = write_config(tmp_path, db, archive__batch_size=10, archive__csv_column="user_ref")
    result = run_cli(fixed)
    left = [r[0] for r in db.query("SELECT id FROM rewards WHERE id BETWEEN 101 AND 200 ORDER BY id")]
    assert result.returncode != 0 or left == [], f"exit 0, but listed keys of user_ref never archived: {left}"


# --------------------------------------------------------------------------- conflicts revisited

def test_the_readme_conflict_procedure_works_as_written(db, tmp_path):
    config, original = make_job(db, tmp_path, range(1, 31), {"ids.csv": list(range(1, 31))},
                                archive__batch_size=10)
    make_conflicts(db, [5, 6, 7])
    first = run_cli(config)
    assert first.returncode == 3
    assert db.query("SELECT status FROM file_processing_logs") == [("CONFLICTS",)]
    status = run_cli(config, "--status").stdout
    assert "Open conflicts" in status and "ids.csv: 3 keys" in status
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Duplicate conflicts")[1].split("\n## ")[0]
    # The README's steps: delete the archived copy you no longer want, then rerun ...
    assert "DELETE FROM rewards_archives WHERE id = " in section and "rerun" in section.lower()
    db.execute("DELETE FROM rewards_archives WHERE id = 5")
    # ... or make it the version you want to keep, then rerun.
    db.execute("UPDATE rewards_archives a JOIN rewards s ON s.id = a.id SET a.note = s.note WHERE a.id = 6")
    second = run_cli(config)
    assert second.returncode == 3, "key 7 still differs: cron must keep mailing"
    assert "RECHECK: ids.csv: 2 of 3 earlier conflict(s) resolved, 1 still differ" in second.stdout
    assert snapshot(db, "rewards_archives")[5] == reward_row(5)
    assert set(snapshot(db, "rewards")) == {7}
    db.execute("DELETE FROM rewards_archives WHERE id = 7")
    third = run_cli(config)
    assert third.returncode == 0, (third.stdout, third.stderr)
    assert_conserved(db, original, set(range(1, 31)))
    assert db.query("SELECT status, COUNT(*) FROM conflict_logs GROUP BY status") == [("RESOLVED", 3)]
    assert db.query("SELECT DISTINCT status FROM file_processing_logs WHERE file_name = 'ids.csv'") == [
        ("COMPLETED",)]
    assert "Open conflicts" not in run_cli(config, "--status").stdout
    assert run_cli(config).returncode == 0


def test_a_file_resumed_past_its_last_batch_keeps_its_open_conflicts(db, tmp_path, server):
    """Found by a red team: A run that dies after a file's last batch but before finish_file (here:
    connection lost) leaves the next run to take the 'all batches done per the checkpoint' branch,
    which records the file COMPLETED although its conflict is open (README: CONFLICTS, and it stays
    out of done_dir)."""
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
    """Found by a red team: recheck_chunk maps key -> one conflict_logs row, so the second OPEN row
    of the same key is left open: after the DBA settles it the run still exits 3 and says '1 still
    differ (both versions kept)' although the key is only in the archive."""
    config, _ = make_job(db, tmp_path, range(1, 31), {"ids.csv": [*range(1, 21), 5]}, archive__batch_size=10)
    make_conflicts(db, [5])
    assert run_cli(config).returncode == 3
    db.execute("DELETE FROM rewards_archives WHERE id = 5")  # the README's procedure
    second = run_cli(config)
    assert db.count("rewards", "id = 5") == 0 and db.count("rewards_archives", "id = 5") == 1
    assert "still differ" not in second.stdout, second.stdout
    assert second.returncode == 0, second.stdout
    assert db.scalar("SELECT COUNT(*) FROM conflict_logs WHERE status = 'OPEN'") == 0


# --------------------------------------------------------------------------- a lost COMMIT answer

def test_a_commit_whose_answer_was_lost_keeps_its_counts(db, tmp_path, server):
    need_socket(server)
    _, original = make_job(db, tmp_path, range(1, 31), {"ids.csv": list(range(1, 31))},
                           archive__batch_size=10)  # the run goes through the proxy's config below
    make_conflicts(db, [3])
    result, proxy = run_cli_cut(
        tmp_path, db, lambda data: b"INSERT INTO batch_processing_logs" in data and b"COMMIT" in data,
        archive__batch_size=10)
    assert proxy.cuts == 1, "the proxy must have cut the first batch's COMMIT"
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert "RETRY: Batch 1" in result.stdout
    summary = next(line for line in result.stdout.splitlines() if line.startswith("SUMMARY:"))
    assert "rows archived 29" in summary and "conflicts 1" in summary, summary
    assert "STATUS: COMPLETED_WITH_DUPLICATES" in text_log(tmp_path)
    assert_batches_once(db, "ids.csv", 3)
    assert set(snapshot(db, "rewards")) == {3}
    assert len(original) == 30


def test_a_lost_commit_answer_during_the_recheck_is_read_back(db, tmp_path, server):
    """Found by a red team: recheck_chunk has no `recover`: after a lost COMMIT answer it runs
    again, finds the row gone, overwrites the resolution with 'source row no longer exists' and the
    SUMMARY says rows archived 0 while process_logs (and the archive) say 1."""
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
    assert "rows archived 1 " in summary_of(result.stdout), summary_of(result.stdout)
    assert db.query("SELECT resolution FROM conflict_logs") == [("archived copy was gone: row archived",)]


# --------------------------------------------------------------------------- runs that end badly

def test_a_huge_error_is_cut_to_fit_and_the_file_is_rejected_not_left_processing(db, tmp_path):
    config, _ = make_job(db, tmp_path, range(1, 11), {"z.csv": [1, 2]}, archive__batch_size=10)
    (tmp_path / "csv" / "a.csv").write_text(",".join(str(n) for n in range(1, 20_001)) + "\n1\n")
    result = run_cli(config)
    assert result.returncode == 4, (result.stdout, result.stderr[:300])
    rows = db.query("SELECT file_name, status, LENGTH(error_message) FROM file_processing_logs ORDER BY id")
    assert [(r[0], r[1]) for r in rows] == [("a.csv", "FAILED"), ("z.csv", "COMPLETED")]
    assert rows[0][2] <= 65535
    assert db.query("SELECT status FROM process_logs") == [("COMPLETED",)]
    assert run_cli(config).returncode == 4  # the next run is not blocked either


def test_a_full_disk_for_the_text_log_fails_the_run_visibly(db, tmp_path):
    config, original = make_job(db, tmp_path, range(1, 11), {"ids.csv": list(range(1, 11))})
    log = tmp_path / "logs" / archive.log_file_name(datetime.datetime.now())
    os.symlink("/dev/full", log)  # every write fails with ENOSPC, as on a full disk
    result = run_cli(config)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "No space left on device" in result.stderr and "Traceback" not in result.stderr
    rows = db.query("SELECT status, error_message FROM process_logs")
    assert rows[0][0] == "FAILED" and "text log" in rows[0][1], rows
    assert_no_run_left_running(db)
    assert_conserved(db, original, set())


def test_a_reader_that_closes_stdout_fails_the_run_without_leaving_it_running(db, tmp_path):
    config, original = make_job(db, tmp_path, range(1, 201), {"ids.csv": list(range(1, 201))},
                                archive__batch_size=5, controls__sleep_seconds=0.05)
    import subprocess
    proc = start_cli(config, "-v", stdout=subprocess.PIPE)
    assert proc.stdout is not None
    for _ in range(3):  # `archive.py -v | head -3`
        proc.stdout.readline()
    proc.stdout.close()
    assert proc.wait(timeout=60) == 1
    assert "broken pipe" in proc.read_stderr()
    assert db.query("SELECT status FROM process_logs") == [("FAILED",)]
    assert_no_run_left_running(db)
    rerun = run_cli(config, "--sleep", "0")
    assert rerun.returncode == 0
    assert_conserved(db, original, set(range(1, 201)))


def test_a_file_name_that_is_not_utf8_is_rejected_and_the_others_run(db, tmp_path):
    config, original = make_job(db, tmp_path, range(1, 21), {"b.csv": list(range(1, 11))})
    odd = os.path.join(os.fsencode(tmp_path / "csv"), b"caf\xe9.csv")
    with open(odd, "wb") as handle:
        handle.write(b"id\n15\n")
    result = run_cli(config)
    assert result.returncode == 4, (result.stdout, result.stderr)
    assert "caf\\xe9.csv: the file name is not valid UTF-8" in result.stderr
    assert_conserved(db, original, set(range(1, 11)))


def test_an_unexpected_exception_ends_the_run_as_failed(db, tmp_path, monkeypatch, capsys):
    config, original = make_job(db, tmp_path, range(1, 21), {"ids.csv": list(range(1, 21))})

    def broken(*_args, **_kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(archive, "show_progress", broken)  # any bug after the first batch
    code = archive.main([str(config)])
    assert code == 1
    assert "internal error: RuntimeError: a bug" in capsys.readouterr().err
    row = db.query("SELECT status, error_message FROM process_logs")[0]
    assert row[0] == "FAILED" and "internal error: RuntimeError: a bug" in row[1]
    assert_no_run_left_running(db)
    assert_conserved(db, original, set(range(1, 21)))  # the batch before the bug committed


def test_a_frozen_run_does_not_hold_its_connection_past_the_servers_wait_timeout(db, tmp_path, server):
    config, original = make_job(db, tmp_path, range(1, 201), {"ids.csv": list(range(1, 201))},
                                archive__batch_size=5, controls__sleep_seconds=0.3)
    root = server.connect()
    cur = root.cursor()
    cur.execute("SET GLOBAL wait_timeout = 4")
    try:
        proc = start_cli(config)
        wait_until(lambda: completed_batches(db) >= 2, timeout=30)
        connection = db.scalar("SELECT connection_id FROM run_locks")
        proc.send_signal(signal.SIGSTOP)

        def gone() -> bool:
            cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = %s", (connection,))
            return cur.fetchone()[0] == 0

        # a condition, not a stopwatch: a session nobody drops stays for ever (60 s is 15 x wait_timeout)
        wait_until(gone, timeout=60, interval=0.5, message="the frozen run's connection to be dropped")
        proc.send_signal(signal.SIGCONT)
        assert proc.wait(timeout=60) == 0, proc.read_stderr()
    finally:
        cur.execute("SET GLOBAL wait_timeout = 28800")
        root.close()
    assert_conserved(db, original, set(range(1, 201)))
    assert_batches_once(db, "ids.csv", 40)


# --------------------------------------------------------------------------- schema upgrade

def show_create(db, tables) -> dict[str, str]:
    """SHOW CREATE TABLE without the AUTO_INCREMENT counter."""
    return {t: re.sub(r" AUTO_INCREMENT=\d+", "", db.query(f"SHOW CREATE TABLE {t}")[0][1]) for t in tables}


def assert_like_fresh(db, server) -> None:
    """The migrated tables are the tables a fresh install creates."""
    fresh = ScratchDatabase.create(server, db.name[:50] + "_fresh")
    try:
        for ddl in archive.TRACKING_DDL:
            fresh.execute(ddl)
        assert show_create(db, archive.TRACKING_TABLES) == show_create(fresh, archive.TRACKING_TABLES)
    finally:
        fresh.drop()


def test_an_upgrade_from_schema_1_resumes_a_half_done_file_at_the_right_batch(db, tmp_path, server):
    config, original = make_job(db, tmp_path, range(1, 101), {"ids.csv": list(range(1, 101))},
                                archive__batch_size=10)
    load_v1_half_done_file(db, tmp_path, batches_done=4)
    check = run_cli(config, "--check")
    assert "tracking tables are schema 1; the next run upgrades them" in check.stdout
    result = run_cli(config, "-v")
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert f"MIGRATED: tracking tables to schema {archive.SCHEMA_VERSION}" in text_log(tmp_path)
    assert "Resuming file ids.csv from batch 5" in result.stdout
    assert_conserved(db, original, set(range(1, 101)))
    assert_batches_once(db, "ids.csv", 10)
    assert db.query("SELECT id, status, stop_reason FROM process_logs ORDER BY id") == [
        (7, "INTERRUPTED", "process died"), (8, "COMPLETED", None)]
    assert_like_fresh(db, server)


def test_conflicts_found_by_schema_1_are_rechecked_after_the_upgrade(db, tmp_path):
    """Found by a red team: Schema 1 recorded conflict keys only in
    batch_processing_logs.conflict_keys; the migration does not carry them into conflict_logs, so
    the upgraded tool never rechecks them and exits 0 while the listed row is still in both
    tables."""
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


def old_lock_row(db, zone: str, expires_in: int) -> None:
    """The lock row of run 7 as archive.py 2.0 wrote it: its times in the server's local time (in
    `zone`), no user lock, on another host and node; its last heartbeat 5 s ago."""
    local = f"CONVERT_TZ(UTC_TIMESTAMP(6), '+00:00', '{zone}')"
    db.execute("DELETE FROM run_locks")
    db.execute("INSERT INTO run_locks (lock_name, owner, process_log_id, host, pid, node, connection_id, "
               f"acquired_at, heartbeat_at, expires_at) VALUES (%s, REPEAT('a', 32), 7, 'old-host', 1, "
               f"'old-node:3306 00000000', 1, {local} - INTERVAL 5 SECOND, {local} - INTERVAL 5 SECOND, "
               f"{local} + INTERVAL {expires_in} SECOND)", (f"{db.name}.rewards",))


def test_an_upgrade_from_schema_2_reads_an_old_runs_lease_on_its_local_clock(db, tmp_path, server):
    # Schema 3 keeps lease times in UTC; a lock row written by 2.0 (local time) is marked so by
    # the migration and read on the local clock. West of UTC, read as UTC it would look expired
    # hours ago (a live run taken over); east of UTC, valid for hours after it ran out.
    config, original = make_job(db, tmp_path, range(1, 101), {"ids.csv": list(range(1, 101))},
                                archive__batch_size=10)
    load_v1_half_done_file(db, tmp_path, batches_done=4, schema=V2_SCHEMA)
    job = f"{db.name}.rewards -> {db.name}.rewards_archives"  # as 2.0 filed its rows
    db.execute("UPDATE process_logs SET job = %s, last_seen = start_time", (job,))
    db.execute("UPDATE file_processing_logs SET job = %s", (job,))
    with global_time_zone(db, "-05:00"):
        old_lock_row(db, "-05:00", expires_in=100)
        check = run_cli(config, "--check")
        status = run_cli(config, "--status")  # read as schema 2: a read-only command never migrates
        held = run_cli(config)
    upgrade = f"tracking tables are schema 2; the next run upgrades them to {archive.SCHEMA_VERSION}"
    assert upgrade in check.stdout
    # read on the local clock: the 5 s it was written as, plus however long --check took on a
    # loaded machine; read as UTC it would be five hours off
    beat = re.search(r"Run 7: RUNNING \(alive: heartbeat ([0-9.]+)s ago", status.stdout)
    assert beat and 5 <= float(beat[1]) < 60, (status.stdout, status.stderr)
    assert held.returncode == 5, (held.stdout, held.stderr)
    assert "run 7 on old-host pid 1" in held.stderr and "lease valid" in held.stderr
    with global_time_zone(db, "+02:00"):
        old_lock_row(db, "+02:00", expires_in=-1)
        result = run_cli(config, "-v")
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "LOCK: took over the run lock from run 7 on old-host pid 1" in text_log(tmp_path)
    assert "Resuming file ids.csv from batch 5" in result.stdout
    assert_conserved(db, original, set(range(1, 101)))
    assert_batches_once(db, "ids.csv", 10)
    assert_like_fresh(db, server)


def test_a_migration_cut_short_is_finished_by_the_next_run(db, tmp_path):
    config, original = make_job(db, tmp_path, range(1, 101), {"ids.csv": list(range(1, 101))},
                                archive__batch_size=10)
    load_v1_half_done_file(db, tmp_path, batches_done=3)
    # a run killed after its first steps: some columns added, no version stamp yet
    db.execute("ALTER TABLE process_logs ADD COLUMN `job` VARCHAR(300) NOT NULL DEFAULT ''")
    db.execute("ALTER TABLE file_processing_logs ADD COLUMN `job` VARCHAR(300) NOT NULL DEFAULT ''")
    result = run_cli(config, "-v")
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "Resuming file ids.csv from batch 4" in result.stdout
    assert_conserved(db, original, set(range(1, 101)))
    stamp = db.scalar("SELECT TABLE_COMMENT FROM information_schema.TABLES WHERE "
                      "TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'process_logs'")
    assert stamp == archive.SCHEMA_COMMENT


def test_a_connection_lost_while_the_run_reads_its_open_conflicts_is_survived(db, tmp_path):
    # Found by CI on a loaded machine: a Galera node killed just after the recheck, while the run
    # counted its open conflicts for the metrics, failed the run (2013) instead of moving on
    need_socket(db.server)
    _, original = make_job(db, tmp_path, range(1, 31), {"ids.csv": list(range(1, 21))},
                           archive__batch_size=10)
    counting = b"SELECT COUNT(*) FROM conflict_logs WHERE job"
    result, proxy = run_cli_cut(tmp_path, db, lambda data: counting in data,
                                forward=False, delay=0.1, filename="cut.ini", archive__batch_size=10)
    assert proxy.cuts == 1, "the proxy must have cut the count of open conflicts"
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "RETRY: Reading the open conflicts attempt 2" in result.stdout
    assert_conserved(db, original, set(range(1, 21)))
