"""--export-keys: archive.py writes its own key files from an [export] where condition.

Pure tests first (how a key part is written, the chunk size, the condition's validation), then
runs on the throwaway server: the keys exported and then archived are exactly the rows that met
the condition (every kind of key, NULLs in the condition's columns, text keys with quotes, commas,
line breaks and collation twins), an export killed or stopped leaves no file, an application
writing during the export, a second export while the first's files are pending, and conditions
that would widen or write refused.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hashlib
import json
import re
import signal
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import archive
from checks import make_job
from helpers import (
    ScratchDatabase,
    kill_process_group,
    read_text_logs,
    run_cli,
    snapshot,
    wait_until,
    write_config,
)
from test_destination import assert_exactly_once, remote_job

TS_BERLIN = archive.KeyType("timestamp", fsp=3, zone="Europe/Berlin", sql_type="timestamp(3)")


# --------------------------------------------------------------------------- pure

@pytest.mark.parametrize("value, key_type, text", [
    (7, archive.KeyType("int"), 7),
    (b"\x00\xff", archive.KeyType("bytes", max_length=2), "0x00ff"),
    ('a "b", c\nd', archive.KeyType("str", max_length=20, charset="utf8mb4"), 'a "b", c\nd'),
    (dt.date(7, 1, 2), archive.KeyType("date"), "0007-01-02"),
    (dt.datetime(2024, 1, 2, 3, 4, 5, 120000), archive.KeyType("datetime", fsp=3), "2024-01-02 03:04:05.120"),
    (dt.datetime(2024, 1, 2, 3, 4, 5), archive.KeyType("datetime"), "2024-01-02 03:04:05"),
    (Decimal("1700000000.250"), TS_BERLIN, "2023-11-14 23:13:20.250"),
])
def test_a_key_part_is_written_as_the_reader_takes_it_back(value, key_type, text):
    written = archive.export_part(value, key_type)
    assert written == text
    if key_type.kind != "int":
        back = archive.parse_key(written, archive.QUOTED, key_type)
        assert key_type.encode(back) == key_type.encode(value if key_type.kind != "timestamp" else back)


def test_a_timestamp_reads_back_as_the_same_instant():
    written = archive.export_part(Decimal("1700000000.250"), TS_BERLIN)
    back = archive.parse_key(written, archive.BARE, TS_BERLIN)
    assert isinstance(back, dt.datetime) and archive.epoch_of(back) == Decimal("1700000000.250")


def test_a_timestamp_the_zone_shows_twice_is_refused_not_written_ambiguously():
    with pytest.raises(ValueError, match="twice"):
        archive.export_part(Decimal(1698543000), TS_BERLIN)  # 2023-10-29 02:30 CET, after 02:30 CEST


@pytest.mark.parametrize("value, key_type", [
    ("", archive.KeyType("str", max_length=5, charset="utf8mb4")),
    (None, archive.KeyType("date")),
])
def test_keys_no_key_file_can_hold_are_refused(value, key_type):
    with pytest.raises(ValueError, match="no key a key file can hold"):
        archive.export_part(value, key_type)


def test_the_chunk_size_follows_the_time_a_chunk_took_within_bounds():
    least, most, first = archive.EXPORT_CHUNK_ROWS
    assert archive.next_chunk_rows(first, archive.EXPORT_CHUNK_SECONDS) == first
    assert archive.next_chunk_rows(first, 0.0) == min(most, 2 * first)  # at most doubled
    assert archive.next_chunk_rows(first, 100.0) == least
    assert archive.next_chunk_rows(most, 0.0) == most

def test_dense_integer_keys_are_read_as_spans_and_thinner_keys_are_counted_again():
    counted = archive.ChunkPlan(1000)
    dense = archive.next_chunk(counted, archive.EXPORT_CHUNK_SECONDS, 800, 1000, 1500)
    assert dense == archive.ChunkPlan(1000, span=True, share=0.8)
    sparse = archive.next_chunk(counted, archive.EXPORT_CHUNK_SECONDS, 800, 1000, 2001)
    assert sparse == archive.ChunkPlan(1000, share=0.8)
    assert archive.next_chunk(dense, archive.EXPORT_CHUNK_SECONDS, 200, None, None).span
    thinned = archive.next_chunk(dense, archive.EXPORT_CHUNK_SECONDS, 199, None, None)
    assert not thinned.span and thinned.share == 0.8
    assert not archive.next_chunk(counted, archive.EXPORT_CHUNK_SECONDS, 0, 0, None).span
    least, most, _ = archive.EXPORT_CHUNK_ROWS  # a span is as bounded as any chunk
    assert archive.next_chunk(dense, 0.0, most, None, None).rows == min(most, 2 * 1000)
    assert archive.next_chunk(dense, 100.0, 1000, None, None).rows == least



@pytest.mark.parametrize("where", [
    "1=1) OR (1=1", "id IN (SELECT id FROM rewards_archives)", "id > 0; DELETE FROM rewards",
    "GET_LOCK('x', 1) = 1", "(@x := 1) = 1", "RAND() < 0.5", "id > 0 FOR UPDATE", "SLEEP(1) = 0",
    "id > 0 -- comment", "LAST_INSERT_ID(5) = 5", "id > 0 LOCK IN SHARE MODE",
])
def test_conditions_that_would_widen_read_elsewhere_write_or_lock_are_refused(where):
    with pytest.raises(ValueError, match=r"not allowed|do not balance"):
        archive.parse_export_where(where)


def test_a_plain_condition_is_accepted():
    where = "created_at < NOW() - INTERVAL 90 DAY AND (note IS NULL OR note <> 'a,b')"
    assert archive.parse_export_where(where) == where


def test_a_chunk_the_server_cut_short_is_refused_not_written():
    assert list(archive.unpack_keys(3, "1\n2\n3")) == ["1", "2", "3"]
    assert list(archive.unpack_keys(0, None)) == []
    with pytest.raises(archive.ArchiveError, match="2 of a chunk's 3 keys"):
        archive.unpack_keys(3, "1\n2")


def test_the_writer_publishes_whole_files_only(tmp_path):
    names = lambda n: archive.export_file_name("p", "20260101T000000Z", n)  # noqa: E731
    writer = archive.KeyFileWriter(tmp_path, names, 2, ["id"], ",")
    writer.write([[1], [2], [3]])
    assert sorted(p.name for p in tmp_path.iterdir()) == [".p-20260101T000000Z-0001.csv.tmp",
                                                          ".p-20260101T000000Z-0002.csv.tmp"]
    files = writer.publish()
    assert [f.name for f in files] == ["p-20260101T000000Z-0001.csv", "p-20260101T000000Z-0002.csv"]
    assert (tmp_path / files[0].name).read_bytes() == b"id\n1\n2\n"
    assert files[1].sha256 == hashlib.sha256(b"id\n3\n").hexdigest() and files[1].keys == 1
    abandoned = archive.KeyFileWriter(tmp_path / "x", names, 2, None, ",")
    (tmp_path / "x").mkdir()
    abandoned.write([[1], [2], [3]])
    abandoned.abandon()
    assert list((tmp_path / "x").iterdir()) == []


def test_lines_from_the_server_are_cut_into_files_at_keys_per_file(tmp_path):
    names = lambda n: archive.export_file_name("p", "20260101T000000Z", n)  # noqa: E731
    writer = archive.KeyFileWriter(tmp_path, names, 2, ["id"], ",")
    for text, count in (("1\n2\n3", 3), ("", 0), ("4\n5\n6\n7", 4), ("8", 1)):
        writer.write(archive.unpack_keys(count, text))
    files = writer.publish()
    contents = [(tmp_path / f.name).read_bytes() for f in files]
    assert contents == [b"id\n1\n2\n", b"id\n3\n4\n", b"id\n5\n6\n", b"id\n7\n8\n"]
    assert [f.keys for f in files] == [2, 2, 2, 2]
    assert [f.sha256 for f in files] == [hashlib.sha256(c).hexdigest() for c in contents]


# --------------------------------------------------------------------------- on the server

def exported(tmp_path: Path) -> list[Path]:
    """The key files in csv_dir (what a run would read)."""
    return sorted((tmp_path / "csv").glob("*.csv"))


def manifests(tmp_path: Path) -> list[dict[str, Any]]:
    """The export manifests in log_dir, oldest first."""
    return [json.loads(p.read_text()) for p in sorted((tmp_path / "logs").glob("*.export.json"))]


def test_exported_keys_archive_exactly_the_rows_the_condition_selects(db, tmp_path):
    # note is NULL for every 7th row: NULL in the condition's column lists no row
    config, original = make_job(db, tmp_path, range(1, 3001), {}, export__where="note LIKE '%o%'",
                                export__keys_per_file=400)
    matching = set(db.query("SELECT id FROM rewards WHERE note LIKE '%o%'"))
    expected = {k for (k,) in matching}
    assert 0 < len(expected) < 3000
    result = run_cli(config, "--export-keys")
    assert result.returncode == 0, result.stderr
    files = exported(tmp_path)
    assert len(files) == -(-len(expected) // 400)
    assert all(re.fullmatch(r"rewards-[0-9]{8}T[0-9]{6}Z-[0-9]{4}\.csv", f.name) for f in files)
    keys = [int(row[0]) for f in files for row in list(csv.reader(f.open()))[1:]]
    assert keys == sorted(expected)  # each once, in key order, files in name order
    [manifest] = manifests(tmp_path)
    assert manifest["keys"] == len(expected) and manifest["condition"] == "note LIKE '%o%'"
    assert [f["name"] for f in manifest["files"]] == [f.name for f in files]
    hashes = [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]
    assert [f["sha256"] for f in manifest["files"]] == hashes
    assert manifest["snapshot_time"] and manifest["server"]
    assert f"EXPORT: {len(expected)} keys in {len(files)} files" in read_text_logs(tmp_path / "logs")
    run = run_cli(config, "-q")
    assert run.returncode == 0 and run.stdout == "", run.stderr + run.stdout
    assert set(snapshot(db, "rewards_archives")) == expected
    assert set(snapshot(db, "rewards")) == set(original) - expected


def test_the_cron_line_is_silent_when_fine_and_dry_run_counts_without_writing(db, tmp_path):
    config, _ = make_job(db, tmp_path, range(1, 1001), {}, export__where="id <= 250",
                         export__keys_per_file=100)
    dry = run_cli(config, "--export-keys", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would write 250 keys in 3 files" in dry.stdout
    assert exported(tmp_path) == [] and manifests(tmp_path) == []
    export = run_cli(config, "--export-keys", "-q")
    assert (export.returncode, export.stdout, export.stderr) == (0, "", "")
    assert run_cli(config, "-q").returncode == 0
    assert db.count("rewards_archives") == 250


def test_the_cron_line_as_python_dash_m_archive_exports_stops_and_exits_as_the_script_does(
        db, tmp_path, spawn_cli):
    # the faster form of the cron line (cached bytecode): same files, same silence, same exit codes
    config, _ = make_job(db, tmp_path, range(1, 20_001), {}, export__where="id % 4 = 0",
                         export__keys_per_file=1000, controls__sleep_seconds=0.05)
    proc = spawn_cli(config, "--export-keys", module=True)
    wait_until(lambda: len(list((tmp_path / "csv").glob(".*.tmp"))) >= 2, timeout=60)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 6, proc.read_stderr()
    assert list((tmp_path / "csv").iterdir()) == []
    assert "INTERRUPTED: export of rewards" in proc.read_stdout()
    export = run_cli(config, "--export-keys", "-q", "--sleep", "0", module=True)
    assert (export.returncode, export.stdout, export.stderr) == (0, "", "")
    keys = [int(row[0]) for f in exported(tmp_path) for row in list(csv.reader(f.open()))[1:]]
    assert keys == list(range(4, 20_001, 4))
    again = run_cli(config, "--export-keys", module=True)
    assert again.returncode == 0 and "EXPORT SKIPPED" in again.stdout
    assert run_cli(config, "-q", "--sleep", "0", module=True).returncode == 0
    assert db.count("rewards_archives") == 5000
    wrong = config.with_name("wrong.ini")
    wrong.write_text(config.read_text().replace("where = id % 4 = 0", "where = id IN (SELECT 1)"))
    refused = [run_cli(wrong, "--export-keys", module=module) for module in (True, False)]
    assert refused[0].returncode == refused[1].returncode == 2
    assert refused[0].stderr == refused[1].stderr and refused[0].stderr.count("\n") == 1


KEY_TYPES = {
    # name: (column type, keys (SQL literals), key_time_zone)
    "bigint unsigned": ("BIGINT UNSIGNED", ["0", "1", "18446744073709551615", "9223372036854775808"], None),
    "signed int": ("INT", ["-2147483648", "-1", "0", "2147483647"], None),
    "varbinary": ("VARBINARY(8)", ["X'00'", "X'0000'", "X'FF0A2C22'", "X'61'", "X'41'"], None),
    "binary": ("BINARY(3)", ["X'000000'", "X'0A0D22'", "X'2C2C2C'"], None),
    "date": ("DATE", ["'1000-01-01'", "'2024-02-29'", "'9999-12-31'"], None),
    "datetime(3)": ("DATETIME(3)", ["'2024-01-01 00:00:00.000'", "'2024-01-01 00:00:00.001'",
                                    "'2024-03-31 02:30:00.500'"], None),
    "timestamp(6)": ("TIMESTAMP(6) NOT NULL DEFAULT '2000-01-01'",
                     ["FROM_UNIXTIME(1)", "FROM_UNIXTIME(1700000000.000001)", "FROM_UNIXTIME(1711846800)",
                      "FROM_UNIXTIME(2147483647.999999)"], "Europe/Berlin"),
    # utf8mb4_bin: twins by case, accents and trailing space... are distinct keys here
    "varchar bin": ("VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
                    ["'a'", "'A'", "'ä'", "'a,b'", "'say \"hi\"'", "'two\\nlines'", "'cr\\r\\nlf'",
                     "' lead'", "'trail '", "'😀'", "'\\\\N'", "'NULL'"], None),
    "varchar latin1 ci": ("VARCHAR(20) CHARACTER SET latin1 COLLATE latin1_swedish_ci",
                          ["'abc'", "'ÄBC'", "'x,\"y\"'", "'€'"], None),
}


def key_job(db: ScratchDatabase, tmp_path: Path, column_type: str, keys: list[str], zone: str | None,
            composite: bool = False) -> Path:
    """A source and archive keyed by k (or by (k, n)), each key twice with flag 1 and 0 (or NULL)."""
    key = "k, n" if composite else "k"
    for table in ("src", "arc"):
        db.execute(f"CREATE TABLE {table} (k {column_type}, n INT NOT NULL, flag INT NULL, "
                   f"PRIMARY KEY ({key})) ENGINE=InnoDB")
    rows = []
    for i, literal in enumerate(keys):
        if composite:
            rows += [f"({literal}, {i}, 1)", f"({literal}, {i + 1000}, NULL)", f"({literal}, {i + 2000}, 0)"]
        else:
            rows.append(f"({literal}, {i}, {'1' if i % 2 == 0 else 'NULL' if i % 4 == 1 else '0'})")
    db.execute(f"INSERT INTO src (k, n, flag) VALUES {', '.join(rows)}")
    extra = {"archive__key_time_zone": zone} if zone else {}
    return write_config(tmp_path, db, archive__source_table="src", archive__archive_table="arc",
                        archive__key_column="k, n" if composite else "k", archive__csv_column=None,
                        export__where="flag = 1", export__keys_per_file=2, **extra)


def rows_of(db: ScratchDatabase, table: str) -> set[tuple[Any, ...]]:
    """Every row of the table, by the bytes of each value."""
    return set(db.query(f"SELECT HEX(k), n, flag FROM {table}"))


@pytest.mark.parametrize("kind", sorted(KEY_TYPES))
def test_every_kind_of_key_exports_and_archives_exactly_the_selected_rows(db, tmp_path, kind):
    column_type, keys, zone = KEY_TYPES[kind]
    config = key_job(db, tmp_path, column_type, keys, zone)
    before = rows_of(db, "src")
    selected = {row for row in before if row[2] == 1}
    export = run_cli(config, "--export-keys")
    assert export.returncode == 0, export.stderr
    assert sum(len(f.read_bytes().splitlines()) > 0 for f in exported(tmp_path)) == -(-len(selected) // 2)
    run = run_cli(config)
    assert run.returncode == 0, run.stderr + run.stdout
    assert "not found 0" in run.stdout and "skipped by guard 0" in run.stdout
    assert rows_of(db, "arc") == selected
    assert rows_of(db, "src") == before - selected


@pytest.mark.parametrize("kind", ["varchar bin", "timestamp(6)", "varbinary", "datetime(3)", "signed int"])
def test_composite_keys_export_every_part_and_archive_exactly_the_selected_rows(db, tmp_path, kind):
    column_type, keys, zone = KEY_TYPES[kind]
    config = key_job(db, tmp_path, column_type, keys, zone, composite=True)
    before = rows_of(db, "src")
    selected = {row for row in before if row[2] == 1}
    assert run_cli(config, "--export-keys").returncode == 0
    header = exported(tmp_path)[0].read_text().splitlines()[0]
    assert header == "k,n"
    run = run_cli(config)
    assert run.returncode == 0, run.stderr + run.stdout
    assert rows_of(db, "arc") == selected and rows_of(db, "src") == before - selected


def test_a_ci_collation_twin_that_does_not_meet_the_condition_stays(db, tmp_path):
    # 'abc' and 'ABC ' are one value to the collation: only the listed row's bytes move
    config = key_job(db, tmp_path, "VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci",
                     ["'abc'", "'x'"], None, composite=True)
    db.execute("UPDATE src SET k = 'ABC ' WHERE n = 1000")
    before = rows_of(db, "src")
    assert run_cli(config, "--export-keys").returncode == 0
    assert run_cli(config).returncode == 0
    assert rows_of(db, "arc") == {row for row in before if row[2] == 1}


def test_an_export_killed_midway_leaves_no_file_and_a_rerun_completes(db, tmp_path, spawn_cli):
    config, original = make_job(db, tmp_path, range(1, 20_001), {}, export__where="id % 2 = 0",
                                export__keys_per_file=500, controls__sleep_seconds=0.05)
    proc = spawn_cli(config, "--export-keys")
    wait_until(lambda: len(list((tmp_path / "csv").glob(".*.tmp"))) >= 2, timeout=60)
    kill_process_group(proc, signal.SIGKILL)
    assert exported(tmp_path) == [] and manifests(tmp_path) == []
    rerun = run_cli(config.with_name(config.name), "--export-keys", "--sleep", "0")
    assert rerun.returncode == 0, rerun.stderr
    assert "left by an export that was killed" in rerun.stdout
    assert list((tmp_path / "csv").glob(".*")) == []
    assert len(exported(tmp_path)) == 20
    assert run_cli(config, "--sleep", "0").returncode == 0
    assert set(snapshot(db, "rewards_archives")) == {k for k in original if k % 2 == 0}


def test_a_stopped_export_writes_nothing_and_exits_6(db, tmp_path, spawn_cli):
    config, _ = make_job(db, tmp_path, range(1, 20_001), {}, export__where="id > 0",
                         export__keys_per_file=500, controls__sleep_seconds=0.05)
    proc = spawn_cli(config, "--export-keys")
    wait_until(lambda: len(list((tmp_path / "csv").glob(".*.tmp"))) >= 2, timeout=60)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 6
    assert list((tmp_path / "csv").iterdir()) == []
    assert "INTERRUPTED: export of rewards" in proc.read_stdout()
    assert run_cli(config, "--export-keys", "--max-runtime", "0.01").returncode == 6
    assert list((tmp_path / "csv").iterdir()) == []


def test_an_application_writing_during_the_export(db, tmp_path, spawn_cli):
    """Rows inserted or changed during the export may or may not be listed; none is listed twice;
    a listed row that no longer matches is held back by the default guard (the condition)."""
    config, _ = make_job(db, tmp_path, range(1, 20_001), {}, export__where="user_id > 0 AND note IS NOT NULL",
                         export__keys_per_file=1000, controls__sleep_seconds=0.02)
    proc = spawn_cli(config, "--export-keys")
    stop = threading.Event()
    app = db.connect(autocommit=True)
    touched: set[int] = set()

    def write() -> None:
        cursor, key = app.cursor(), 30_000
        while not stop.is_set():
            key += 1
            cursor.execute("INSERT INTO rewards (id, user_id, kind, note, amount, created_at, updated_at) "
                           "VALUES (%s, 1, 'bonus', 'new', 1, NOW(), NOW())", (key,))
            victim = (key * 7919) % 20_000 + 1
            cursor.execute("UPDATE rewards SET note = IF(note IS NULL, 'now', NULL) WHERE id = %s", (victim,))
            touched.add(victim)

    thread = threading.Thread(target=write)
    thread.start()
    try:
        assert proc.wait(timeout=120) == 0, proc.read_stderr()
    finally:
        stop.set()
        thread.join()
        app.close()
    keys = [int(row[0]) for f in exported(tmp_path) for row in list(csv.reader(f.open()))[1:]]
    assert len(keys) == len(set(keys)), "a key is listed twice"
    matching = db.query("SELECT id FROM rewards WHERE id <= 20000 AND note IS NOT NULL")
    steady = {k for (k,) in matching} - touched
    assert steady <= set(keys), "a row that matched all along is missing"
    before = snapshot(db, "rewards")
    assert run_cli(config).returncode == 0
    archived = snapshot(db, "rewards_archives")
    assert set(archived) <= set(keys)
    assert all(row[3] is not None for row in archived.values()), "a row that no longer matched was archived"
    held = set(keys) & set(snapshot(db, "rewards"))
    assert all(before[k][3] is None for k in held)


def test_a_second_export_while_the_first_is_pending_is_skipped(db, tmp_path):
    config, _ = make_job(db, tmp_path, range(1, 501), {}, export__where="id <= 300 OR note = 'late'",
                         export__keys_per_file=100)
    assert run_cli(config, "--export-keys").returncode == 0
    first = exported(tmp_path)
    second = run_cli(config, "--export-keys")
    assert second.returncode == 0, second.stderr
    assert "EXPORT SKIPPED: 3 files of an earlier export still to be archived" in second.stdout
    assert exported(tmp_path) == first and len(manifests(tmp_path)) == 1
    assert "EXPORT SKIPPED" in read_text_logs(tmp_path / "logs")
    assert run_cli(config, "-q").returncode == 0  # archives them (they stay in csv_dir, finished)
    db.execute("UPDATE rewards SET note = 'late' WHERE id BETWEEN 401 AND 410")  # these match now
    third = run_cli(config, "--export-keys")
    assert third.returncode == 0, third.stderr
    new = sorted(set(exported(tmp_path)) - set(first))
    assert [int(row[0]) for f in new for row in list(csv.reader(f.open()))[1:]] == list(range(401, 411))
    assert run_cli(config, "-q").returncode == 0
    assert db.count("rewards_archives") == 310


def test_a_condition_that_would_widen_or_write_is_refused_before_anything_is_read(db, tmp_path):
    config, original = make_job(db, tmp_path, range(1, 11), {}, export__where="id < 3) OR (1 = 1")
    result = run_cli(config, "--export-keys")
    assert result.returncode == 2 and "[export] where" in result.stderr
    config = write_config(tmp_path, db, export__where="id IN (SELECT id FROM rewards_archives)")
    result = run_cli(config, "--export-keys")
    assert result.returncode == 2 and "[export] where" in result.stderr
    assert exported(tmp_path) == [] and snapshot(db, "rewards") == original


def test_export_settings_the_run_could_not_read_back_are_refused(db, tmp_path):
    config, _ = make_job(db, tmp_path, range(1, 11), {}, archive__csv_dialect="mysql", export__where="id > 0")
    result = run_cli(config, "--export-keys")
    assert result.returncode == 2 and "[archive] csv_dialect" in result.stderr
    config = write_config(tmp_path, db, archive__csv_pattern="keys-*.csv", export__where="id > 0")
    result = run_cli(config, "--export-keys")
    assert result.returncode == 2 and "[export] file_prefix" in result.stderr
    config = write_config(tmp_path, db)
    result = run_cli(config, "--export-keys")
    assert result.returncode == 2 and "[export] where: is required" in result.stderr


def test_files_without_a_header_put_the_key_at_its_field_number(db, tmp_path):
    config, _ = make_job(db, tmp_path, range(1, 101), {}, archive__csv_header="no", archive__csv_column="2",
                         export__where="id > 90", export__file_prefix="nightly")
    assert run_cli(config, "--export-keys").returncode == 0
    [file] = exported(tmp_path)
    assert file.name.startswith("nightly-") and file.read_text().splitlines()[:2] == [",91", ",92"]
    assert run_cli(config).returncode == 0
    assert set(snapshot(db, "rewards_archives")) == set(range(91, 101))


def test_the_default_guard_is_the_export_condition(db, tmp_path):
    config, _ = make_job(db, tmp_path, range(1, 101), {}, export__where="user_id > 0")
    assert archive.load_config(config).guard == "user_id > 0"
    assert run_cli(config, "--export-keys").returncode == 0
    db.execute("UPDATE rewards SET user_id = 0 WHERE id = 5")  # no longer meets the condition
    result = run_cli(config)
    assert result.returncode == 0, result.stderr
    assert "skipped by guard 1" in result.stdout
    assert 5 in snapshot(db, "rewards") and db.count("rewards_archives") == 99
    config = write_config(tmp_path, db, export__where="user_id > 0", controls__guard="id > 0")
    assert archive.load_config(config).guard == "id > 0"





def test_composite_latin1_keys_with_non_ascii_text_are_found_by_the_run(db, tmp_path):
    column_type, keys, zone = KEY_TYPES["varchar latin1 ci"]
    config = key_job(db, tmp_path, column_type, keys, zone, composite=True)
    before = rows_of(db, "src")
    assert run_cli(config, "--export-keys").returncode == 0
    assert run_cli(config).returncode == 0
    assert rows_of(db, "arc") == {row for row in before if row[2] == 1}



def test_the_export_reads_the_source_of_a_job_into_another_server(db, dest_db, tmp_path):
    config, original = remote_job(db, dest_db, tmp_path, range(1, 201), [], export__where="id > 150")
    (tmp_path / "csv" / "ids.csv").unlink()  # remote_job's own key file: this job's keys are exported
    result = run_cli(config, "--export-keys")
    assert result.returncode == 0, result.stderr
    assert run_cli(config).returncode == 0
    assert_exactly_once(db, dest_db, original, set(range(151, 201)))


def test_the_export_obeys_the_runs_throttles(db, tmp_path):
    config, _ = make_job(db, tmp_path, range(1, 101), {}, export__where="id > 0",
                         controls__max_load="Uptime=0")  # a server that is up pauses the export
    result = run_cli(config, "--export-keys", "--max-runtime", "2")
    assert result.returncode == 6, result.stderr
    assert "PAUSE" in result.stdout and "Uptime" in result.stdout
    assert list((tmp_path / "csv").iterdir()) == []
    stop = tmp_path / "stop"
    stop.touch()
    config = write_config(tmp_path, db, export__where="id > 0", controls__stop_file=stop)
    result = run_cli(config, "--export-keys")
    assert result.returncode == 6 and "stop file" in result.stdout
    assert list((tmp_path / "csv").iterdir()) == []


def test_one_export_of_a_prefix_at_a_time(db, tmp_path, spawn_cli):
    config, _ = make_job(db, tmp_path, range(1, 101), {}, export__where="id > 0",
                         controls__max_load="Uptime=0")
    first = spawn_cli(config, "--export-keys", "--max-runtime", "30")
    wait_until(lambda: "PAUSE" in first.read_stdout(), timeout=60)
    second = run_cli(config, "--export-keys")
    assert second.returncode == 5 and "another --export-keys for prefix rewards" in second.stderr
    kill_process_group(first, signal.SIGTERM)
    assert first.returncode == 6


def walk_one_by_one(session: Any, walk: Any) -> tuple[int, list[Any]]:
    """Walk the index one entry per chunk, as walk_export does: (chunks, keys found)."""
    last = session.read(walk.last_sql())[0]
    found: list[Any] = []
    after, chunks = None, 0
    while True:
        if walk.packed:
            chunk = session.read(*walk.one_pass_sql(after, last, 1))
            if not chunk:
                return chunks, found
            after = (chunk[0][0],)
            found += archive.unpack_keys(int(chunk[0][1]), chunk[0][2])
        else:
            bound = session.read(*walk.bound_sql(after, last, 1))
            if not bound:
                return chunks, found
            found += session.read(*walk.keys_sql(after, bound[0]))
            after = bound[0]
        chunks += 1


def walk_in_small_chunks(session: Any, walk: Any, rows: int) -> list[tuple[Any, Any, Any]]:
    """Walk the index as walk_export does, its chunks `rows` entries at most: (plan, after, chunk)."""
    end = session.read(walk.last_sql())[0]
    plan, after = archive.ChunkPlan(rows), None
    chunks: list[tuple[Any, Any, Any]] = []
    while True:
        with session.reading():
            chunk = archive.read_chunk(session, walk, after, end, plan)
        if chunk.last is None:
            return chunks
        chunks.append((plan, after, chunk))
        plan = dataclasses.replace(archive.next_chunk(plan, 0.0, len(chunk.keys), chunk.entries,
                                                      archive.chunk_width(walk, after, chunk)), rows=rows)
        after = chunk.last


def test_a_walk_through_dense_and_sparse_integer_keys_lists_each_key_once(db, tmp_path):
    # dense keys are read as spans, sparse ones counted out; where they meet, each side's chunks hold
    # at most their entries, and every key meeting the condition is listed once, in key order
    keys = [*range(1, 61), *range(1000, 3000, 97), *range(5000, 5040), *range(9000, 9300, 7)]
    db.execute("CREATE TABLE src (k BIGINT NOT NULL PRIMARY KEY, flag INT NULL) ENGINE=InnoDB")
    flags = ", ".join(f"({k}, {'NULL' if k % 5 == 0 else k % 3})" for k in keys)
    db.execute(f"INSERT INTO src VALUES {flags}")
    db.execute("CREATE TABLE arc LIKE src")
    path = write_config(tmp_path, db, archive__source_table="src", archive__archive_table="arc",
                        archive__key_column="k", export__where="flag > 0")
    config = archive.load_config(path)
    session = archive.Database(config.db)
    try:
        plan = archive.require_plan(session, config)
        walk = archive.KeyWalk("src", plan.source_index, plan.key, archive.index_order(session, plan),
                               plan.key_type, "flag > 0", ",")
        chunks = walk_in_small_chunks(session, walk, 8)
    finally:
        session.close()
    spans = [(after, chunk) for plan, after, chunk in chunks if plan.span]
    assert spans and len(spans) < len(chunks)  # both kinds of chunk were walked
    for after, chunk in spans:
        assert chunk.last[0] - after[0] <= 8 and chunk.entries is None
    listed = [int(key) for _, _, chunk in chunks for key in chunk.keys]
    assert listed == [k for k in keys if k % 5 and k % 3]


def export_context(session: Any, config: Any) -> Any:
    """The context --export-keys walks with, on `session` (its preflight passed), logging nowhere."""
    log = archive.SilentLog(config.log_dir, dt.datetime.now())
    context, _ = archive.open_export(config, session, None, log, archive.Reporter(0), archive.StopSignal())
    return context


def connections(db: ScratchDatabase) -> int:
    """Connections the server has accepted so far."""
    return int(db.query("SHOW GLOBAL STATUS LIKE 'Connections'")[0][1])


def test_spans_read_two_at_a_time_by_two_sessions_list_each_matching_key_once(db, tmp_path):
    """Dense keys are read as spans, two at a time (the second by a side session); with an application
    inserting and updating meanwhile, every key that matched all along is listed, none that never
    matched, none twice, in key order."""
    dense, sparse = range(1, 60_001), range(100_000, 200_000, 50)
    db.execute("CREATE TABLE src (k BIGINT NOT NULL PRIMARY KEY, flag INT NULL) ENGINE=InnoDB")
    for part in (dense, sparse):
        numbers = f"seq_{part.start}_to_{part.stop - 1}_step_{part.step}"  # the sequence engine's table
        db.execute(f"INSERT INTO src SELECT seq, IF(seq % 3, 1, NULL) FROM {numbers}")
    db.execute("CREATE TABLE arc LIKE src")
    path = write_config(tmp_path, db, archive__source_table="src", archive__archive_table="arc",
                        archive__key_column="k", export__where="flag = 1")
    config = archive.load_config(path)
    session = archive.Database(config.db)
    app = db.connect(autocommit=True)
    stop, touched = threading.Event(), set()

    def write() -> None:
        cursor, n = app.cursor(), 0
        while not stop.is_set():
            n += 1
            gap = 100_000 + 50 * (n % 2000) + 1 + n // 2000  # a new key inside the walked range
            cursor.execute("INSERT IGNORE INTO src VALUES (%s, 1)", (gap,))
            # above the last key: may be listed (a loaded machine's walk reaches the end later), or not
            cursor.execute("INSERT INTO src VALUES (%s, 1)", (300_000 + n,))
            victim = (n * 7919) % 60_000 + 1
            cursor.execute("UPDATE src SET flag = IF(flag IS NULL, 1, NULL) WHERE k = %s", (victim,))
            touched.update({gap, victim, 300_000 + n})

    listed: list[int] = []
    thread = threading.Thread(target=write)
    try:
        context = export_context(session, config)
        walk = archive.KeyWalk("src", context.plan.source_index, context.plan.key, (0,),
                               context.plan.key_type, "flag = 1", ",")
        thread.start()
        before = connections(db)
        total = archive.walk_export(context, walk, lambda keys: listed.extend(map(int, keys)))
        opened = connections(db) - before
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()
        app.close()
        session.close()
    assert opened == 1, "the spans were not read by a second session"
    assert total == len(listed) == len(set(listed)), "a key is listed twice"
    assert listed == sorted(listed)
    steady = {k for (k,) in db.query("SELECT k FROM src WHERE flag = 1 AND k < 300000")} - touched
    assert steady <= set(listed), "a key that matched all along is missing"
    assert set(listed) - steady <= touched, "a key that never matched is listed"


def test_a_side_session_that_cannot_read_hands_its_span_back_to_the_main_one(db, tmp_path):
    path, _ = make_job(db, tmp_path, range(1, 5001), {}, export__where="id % 3 = 0")
    config = archive.load_config(path)
    session = archive.Database(config.db)
    nowhere = dataclasses.replace(config.db, unix_socket=str(tmp_path / "no-server.sock"), hosts=())
    side = archive.SideSession(dataclasses.replace(config, db=nowhere))
    try:
        context = export_context(session, config)
        walk = archive.KeyWalk("rewards", context.plan.source_index, context.plan.key, (0,),
                               context.plan.key_type, "id % 3 = 0", ",")
        chunks = archive.read_pair(context, side, walk, (0,), (5000,), archive.ChunkPlan(2000, span=True))
    finally:
        side.close()
        session.close()
    assert side.broken
    assert [c.last for c in chunks] == [(2000,), (4000,)]
    assert [int(k) for c in chunks for k in c.keys] == list(range(3, 4001, 3))


@pytest.mark.parametrize("composite", [False, True])
@pytest.mark.parametrize("kind", sorted(KEY_TYPES))
def test_a_walk_of_one_entry_per_chunk_visits_every_row_once(db, tmp_path, kind, composite):
    # the runs above fit in one chunk; here every step of the keyset pagination is taken
    column_type, keys, zone = KEY_TYPES[kind]
    config = archive.load_config(key_job(db, tmp_path, column_type, keys, zone, composite))
    session = archive.Database(config.db)
    try:
        plan = archive.require_plan(session, config)
        plain = kind.endswith("int") and not composite
        walk = archive.KeyWalk(config.source_table, plan.source_index, plan.key,
                               archive.index_order(session, plan), plan.key_type, "flag = 1",
                               "," if plain else None)
        chunks, found = walk_one_by_one(session, walk)
    finally:
        session.close()
    assert chunks == db.count("src")
    assert len(found) == len(set(map(str, found))) == db.count("src", "flag = 1")
