"""The core run against a real server: what moves, what stays, resume, duplicates, critical errors."""

from __future__ import annotations

import random
import re

from checks import (
    assert_batches_once,
    assert_conserved,
    assert_no_run_left_running,
    completed_batches,
    make_job,
    text_log,
)
from helpers import insert_rewards, run_cli, snapshot, wait_until, write_csv


def test_multi_file_run_moves_exactly_the_listed_rows(db, tmp_path):
    rng = random.Random(7)
    b_keys = rng.sample(range(201, 601), 150) + [10_001, 10_002]  # two keys match no row
    config, original = make_job(db, tmp_path, range(1, 701), {"a.csv": list(range(1, 201)), "b.csv": b_keys},
                                archive__batch_size=40)
    result = run_cli(config)
    assert result.returncode == 0, result.stderr
    assert_conserved(db, original, set(range(1, 201)) | set(b_keys))
    assert snapshot(db, "rewards_archives") == {k: original[k] for k in set(range(1, 201)) | set(b_keys[:-2])}
    run = db.query("SELECT status, rows_archived, rows_deleted, processed_files, total_files, error_message "
                   "FROM process_logs")
    assert run == [("COMPLETED", 350, 350, 2, 2, None)]
    files = db.query("SELECT file_name, status, processed_batches, total_batches, last_processed_batch "
                     "FROM file_processing_logs ORDER BY file_name")
    assert files == [("a.csv", "COMPLETED", 5, 5, 5), ("b.csv", "COMPLETED", 4, 4, 4)]
    assert_batches_once(db, "a.csv", 5)
    assert "SUMMARY: COMPLETED" in result.stdout and "rows archived 350" in result.stdout


def test_special_values_survive_byte_for_byte(db, tmp_path):
    config, original = make_job(db, tmp_path, range(1, 21), {"ids.csv": list(range(1, 21))})
    db.execute("UPDATE rewards SET note = '🎉 𝄞 naïve', payload = '{\"ü\": [1, null, \"💥\"]}' WHERE id = 1")
    db.execute("UPDATE rewards SET note = NULL, payload = NULL WHERE id = 2")
    db.execute("UPDATE rewards SET note = '' WHERE id = 3")
    original = snapshot(db, "rewards")
    assert run_cli(config).returncode == 0
    archived = snapshot(db, "rewards_archives")
    assert archived == original
    assert archived[1][3] == "🎉 𝄞 naïve" and archived[2][3] is None and archived[3][3] == ""


def test_rerun_is_a_no_op(db, tmp_path):
    config, _ = make_job(db, tmp_path, range(1, 101), {"ids.csv": list(range(1, 51))}, archive__batch_size=10)
    assert run_cli(config).returncode == 0
    after_first = snapshot(db, "rewards"), snapshot(db, "rewards_archives")
    batches = db.scalar("SELECT COUNT(*) FROM batch_processing_logs")
    second = run_cli(config)
    assert second.returncode == 0
    assert "SKIPPING: ids.csv (completed by run 1; same content)" in second.stdout
    assert (snapshot(db, "rewards"), snapshot(db, "rewards_archives")) == after_first
    assert db.scalar("SELECT COUNT(*) FROM batch_processing_logs") == batches
    assert db.query("SELECT status, processed_files FROM process_logs WHERE id = 2") == [("COMPLETED", 1)]


def test_empty_and_header_only_files_complete_with_zero_batches(db, tmp_path):
    config, original = make_job(db, tmp_path, range(1, 11), {"a.csv": []})
    (tmp_path / "csv" / "b.csv").write_bytes(b"")
    result = run_cli(config)
    assert result.returncode == 0, result.stderr
    assert db.query("SELECT file_name, status, total_batches FROM file_processing_logs "
                    "ORDER BY file_name") == [("a.csv", "COMPLETED", 0), ("b.csv", "COMPLETED", 0)]
    assert snapshot(db, "rewards") == original


def test_resume_after_an_interrupted_run_skips_done_batches(db, tmp_path):
    config, original = make_job(db, tmp_path, range(1, 301), {"ids.csv": list(range(1, 301))},
                                archive__batch_size=10, controls__sleep_seconds=0.15)
    first = run_cli(config, "--max-runtime", "1")
    assert first.returncode == 6, first.stderr
    done = db.scalar("SELECT MAX(batch_number) FROM batch_processing_logs")
    assert 1 <= done < 30
    second = run_cli(config.with_name(config.name), "--sleep", "0")
    assert second.returncode == 0, second.stderr
    assert f"Resuming file ids.csv from batch {done + 1}" in second.stdout
    assert f"Skipping already processed batches 1-{done}" in second.stdout
    assert db.scalar("SELECT MIN(batch_number) FROM batch_processing_logs "
                     "WHERE process_log_id = 2") == done + 1
    assert db.query("SELECT processed_batches, total_batches FROM file_processing_logs "
                    "WHERE process_log_id = 2") == [(30, 30)]
    assert_batches_once(db, "ids.csv", 30)
    assert_conserved(db, original, set(range(1, 301)))


def test_resume_from_the_text_log_when_the_tracking_rows_are_gone(db, tmp_path):
    config, original = make_job(db, tmp_path, range(1, 201), {"ids.csv": list(range(1, 201))},
                                archive__batch_size=10, controls__sleep_seconds=0.15)
    assert run_cli(config, "--max-runtime", "1").returncode == 6
    done = db.scalar("SELECT MAX(batch_number) FROM batch_processing_logs")
    db.execute("DELETE FROM batch_processing_logs")
    db.execute("DELETE FROM file_processing_logs")
    second = run_cli(config, "--sleep", "0")
    assert second.returncode == 0, second.stderr
    assert f"Resuming file ids.csv from batch {done + 1}" in second.stdout
    assert "checkpoint from log" in second.stdout
    assert db.scalar("SELECT MIN(batch_number) FROM batch_processing_logs") == done + 1
    assert_conserved(db, original, set(range(1, 201)))


def test_text_log_uses_the_seed_format(db, tmp_path):
    config, _ = make_job(db, tmp_path, range(1, 31), {"f.csv": list(range(1, 31))}, archive__batch_size=10)
    assert run_cli(config).returncode == 0
    log = text_log(tmp_path)
    assert re.search(r"^=== Script Starts at: \d\d_\d\d_\d{4}_\d\d_\d\d_\d\d ===$", log, re.M)
    assert re.search(r"^STARTING: f\.csv \(Size: \d+ bytes\)$", log, re.M)
    for n in (1, 2, 3):
        for status in ("PROCESSING", "COMPLETED"):
            assert re.search(rf"^\[\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d\] "
                             rf"FILE: f\.csv \| BATCH: {n} \| STATUS: {status}$", log, re.M)
    assert log.index("BATCH: 1 | STATUS: COMPLETED") < log.index("BATCH: 2 | STATUS: PROCESSING")


def test_identical_duplicates_leave_the_source_and_the_run_goes_on(db, tmp_path):
    config, original = make_job(db, tmp_path, range(1, 41), {"ids.csv": list(range(1, 41))},
                                archive__batch_size=10)
    insert_rewards(db, [3, 4, 25], table="rewards_archives")
    result = run_cli(config)
    assert result.returncode == 0, result.stderr
    assert_conserved(db, original, set(range(1, 41)))
    statuses = dict(db.query("SELECT batch_number, status FROM batch_processing_logs"))
    assert statuses == {1: "COMPLETED_WITH_DUPLICATES", 2: "COMPLETED", 3: "COMPLETED_WITH_DUPLICATES",
                        4: "COMPLETED"}
    assert db.query("SELECT duplicates, conflicts FROM process_logs") == [(3, 0)]
    assert "DUPLICATE_KEY_ERROR: Batch 1 - 2 keys already archived with identical rows" in text_log(tmp_path)
    assert "BATCH: 1 | STATUS: COMPLETED_WITH_DUPLICATES" in text_log(tmp_path)


def test_conflicting_duplicates_keep_both_versions_and_exit_3(db, tmp_path):
    config, original = make_job(db, tmp_path, range(1, 41), {"ids.csv": list(range(1, 41))},
                                archive__batch_size=10)
    insert_rewards(db, [5, 6, 7, 33], table="rewards_archives")
    db.execute("UPDATE rewards_archives SET note = CONCAT(COALESCE(note, ''), ' (old)') WHERE id = 5")
    db.execute("UPDATE rewards_archives SET amount = amount + 0.01 WHERE id = 6")
    db.execute("UPDATE rewards_archives SET payload = NULL WHERE id = 7 AND payload IS NOT NULL")
    db.execute("UPDATE rewards_archives SET payload = '{}' WHERE id = 7 AND payload IS NULL")
    archived_before = snapshot(db, "rewards_archives")
    result = run_cli(config)
    assert result.returncode == 3, result.stderr
    source = snapshot(db, "rewards")
    assert set(source) == {5, 6, 7} | set(range(41, 41))
    assert all(source[k] == original[k] for k in (5, 6, 7))
    archived = snapshot(db, "rewards_archives")
    assert all(archived[k] == archived_before[k] for k in (5, 6, 7))
    assert archived[33] == original[33]  # identical twin: source copy removed
    assert db.query("SELECT conflict_keys FROM batch_processing_logs WHERE batch_number = 1") == [
        ('["5", "6", "7"]',)]
    assert "CONFLICT: 3 keys archived with different rows; both versions kept: 5, 6, 7" in result.stdout
    assert "conflicts 3" in result.stdout
    assert db.query("SELECT status, conflicts FROM process_logs") == [("COMPLETED", 3)]
    assert "duplicate-key conflict" in db.scalar("SELECT error_message FROM process_logs")


def test_case_or_trailing_space_differences_are_conflicts_not_duplicates(db, tmp_path):
    config, _ = make_job(db, tmp_path, range(1, 4), {"ids.csv": [1, 2]})
    db.execute("UPDATE rewards SET note = 'Hello' WHERE id IN (1, 2)")
    insert_rewards(db, [1, 2], table="rewards_archives")
    db.execute("UPDATE rewards_archives SET note = 'hello' WHERE id = 1")  # equal under a _ci collation
    db.execute("UPDATE rewards_archives SET note = 'Hello ' WHERE id = 2")  # equal under PAD SPACE
    assert run_cli(config).returncode == 3
    assert set(snapshot(db, "rewards")) == {1, 2, 3}


def test_missing_archive_table_fails_before_touching_anything(db, tmp_path):
    config, original = make_job(db, tmp_path, range(1, 21), {"ids.csv": list(range(1, 21))})
    db.execute("DROP TABLE rewards_archives")
    result = run_cli(config)
    assert result.returncode == 1
    assert "rewards_archives` does not exist" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert snapshot(db, "rewards") == original
    status, error = db.query("SELECT status, error_message FROM process_logs")[0]
    assert status == "FAILED" and "rewards_archives` does not exist" in error
    assert "ERROR: preflight failed" in text_log(tmp_path)


def test_archive_table_dropped_mid_run_is_critical(db, tmp_path, spawn_cli):
    config, original = make_job(db, tmp_path, range(1, 201), {"ids.csv": list(range(1, 201))},
                                archive__batch_size=10, controls__sleep_seconds=0.3)
    proc = spawn_cli(config)
    wait_until(lambda: completed_batches(db) >= 2, timeout=30)
    db.execute("RENAME TABLE rewards_archives TO rewards_archives_gone")
    assert proc.wait(timeout=30) == 1
    status, error = db.query("SELECT status, error_message FROM process_logs")[0]
    assert status == "FAILED" and "1146" in error and "rewards_archives" in error
    failed = db.query("SELECT batch_number, error_message FROM batch_processing_logs WHERE status = 'FAILED'")
    assert len(failed) == 1 and "doesn't exist" in failed[0][1]
    assert db.query("SELECT status FROM file_processing_logs") == [("FAILED",)]
    assert "rewards_archives" in proc.read_stderr()
    log = text_log(tmp_path)
    assert f"BATCH: {failed[0][0]} | STATUS: FAILED" in log and "ERROR: Error processing batch" in log
    db.execute("RENAME TABLE rewards_archives_gone TO rewards_archives")
    # nothing was lost: rows of the failed batch are still in the source
    assert_conserved(db, original, set(snapshot(db, "rewards_archives")))
    assert run_cli(config, "--sleep", "0").returncode == 0
    assert_conserved(db, original, set(range(1, 201)))
    assert_no_run_left_running(db)


def test_malformed_file_is_rejected_whole_and_the_others_are_archived(db, tmp_path):
    config, original = make_job(db, tmp_path, range(1, 61), {"a.csv": list(range(1, 21)),
                                                             "c.csv": list(range(41, 61))},
                                archive__batch_size=5)
    write_csv(tmp_path / "csv" / "b.csv", [21, 22, 23, "x24", 25])
    result = run_cli(config)
    assert result.returncode == 4
    assert "b.csv line 5" in result.stderr
    assert_conserved(db, original, set(range(1, 21)) | set(range(41, 61)))
    rows = dict(db.query("SELECT file_name, status FROM file_processing_logs"))
    assert rows == {"a.csv": "COMPLETED", "b.csv": "FAILED", "c.csv": "COMPLETED"}
    assert "b.csv line 5" in db.scalar("SELECT error_message FROM file_processing_logs "
                                       "WHERE file_name = 'b.csv'")
    assert db.scalar("SELECT COUNT(*) FROM batch_processing_logs WHERE file_name = 'b.csv'") == 0


def test_changed_file_is_not_resumed_by_batch_number(db, tmp_path):
    config, original = make_job(db, tmp_path, range(1, 401), {"ids.csv": list(range(201, 401))},
                                archive__batch_size=10, controls__sleep_seconds=0.15)
    assert run_cli(config, "--max-runtime", "1").returncode == 6
    done = db.scalar("SELECT MAX(batch_number) FROM batch_processing_logs")
    assert done < 20
    write_csv(tmp_path / "csv" / "ids.csv", list(range(1, 401)))  # same name, new content
    second = run_cli(config, "--sleep", "0")
    assert second.returncode == 0, second.stderr
    assert "CHANGED: ids.csv differs from its earlier checkpoint" in second.stdout
    assert "Resuming" not in second.stdout
    assert db.scalar("SELECT MIN(batch_number) FROM batch_processing_logs WHERE process_log_id = 2") == 1
    assert_conserved(db, original, set(range(1, 401)))


def test_string_keys_work(db, tmp_path):
    db.execute("CREATE TABLE codes (code VARCHAR(40) NOT NULL PRIMARY KEY, v INT) DEFAULT CHARSET=utf8mb4")
    db.execute("CREATE TABLE codes_arch LIKE codes")
    db.execute("INSERT INTO codes VALUES ('a', 1), ('b''; DROP TABLE codes; --', 2), ('ü🎉', 3), ('keep', 4)")
    from helpers import write_config
    config = write_config(tmp_path, db, archive__source_table="codes", archive__archive_table="codes_arch",
                          archive__key_column="code", archive__csv_column="code")
    write_csv(tmp_path / "csv" / "k.csv", ["a", "b'; DROP TABLE codes; --", "ü🎉", "missing"], header="code")
    assert run_cli(config).returncode == 0
    assert db.query("SELECT code FROM codes") == [("keep",)]
    assert sorted(r[0] for r in db.query("SELECT code FROM codes_arch")) == sorted(
        ["a", "b'; DROP TABLE codes; --", "ü🎉"])
