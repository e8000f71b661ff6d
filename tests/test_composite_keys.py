"""Composite keys: a listed (tenant, id), (id, created_at) or (id, TIMESTAMP) moves exactly its own row.

Pure tests first (how a composite or temporal key is read, written back and matched), then
runs on the throwaway server: collation traps in every text part, a RANGE-partitioned table
keyed by (id, DATETIME(6)) around its partition boundaries, TIMESTAMP keys written in a zone
with DST, conflicts, resume after kill -9, --dry-run and the destination mode.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import itertools
import json
import random
import signal
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import archive
from checks import completed_batches
from helpers import (
    ScratchDatabase,
    global_time_zone,
    kill_process_group,
    read_text_logs,
    run_cli,
    wait_for_a_lock_wait,
    wait_until,
    write_config,
)
from test_destination import dest_keys


def column(data_type: str, column_type: str, length: int = 0, charset: str = "", name: str = "k"
           ) -> dict[str, Any]:
    """A key column as information_schema describes it."""
    return {"name": name, "data_type": data_type, "column_type": column_type, "max_length": length,
            "charset": charset}


TENANT = archive.key_type_from_column(column("varchar", "varchar(20)", 20, "utf8mb4"))
ID = archive.key_type_from_column(column("int", "int(11)"))
DATETIME6 = archive.key_type_from_column(column("datetime", "datetime(6)"))
DATETIME0 = archive.key_type_from_column(column("datetime", "datetime"))
DATE = archive.key_type_from_column(column("date", "date"))
BERLIN_TS = archive.key_type_from_column(column("timestamp", "timestamp(3)"), "Europe/Berlin")
TENANT_ID = archive.composite_key_type([TENANT, ID])
ID_TS = archive.composite_key_type([ID, BERLIN_TS])


# --------------------------------------------------------------------------- pure: reading keys

def fields(*texts: str) -> list[tuple[str, int]]:
    """A record's fields, written bare."""
    return [(t, archive.BARE) for t in texts]


def test_a_composite_key_is_read_from_its_fields_in_key_order():
    assert archive.parse_fields(fields("x", "7", "T1"), [2, 1], TENANT_ID) == ("T1", 7)
    with pytest.raises(ValueError, match="row has 2 field"):
        archive.parse_fields(fields("T1", "7"), [0, 2], TENANT_ID)
    with pytest.raises(ValueError, match="not a whole number"):
        archive.parse_fields(fields("T1", "7x"), [0, 1], TENANT_ID)


def test_every_exactness_rule_of_a_single_key_holds_per_part():
    quoted = [(" a ", archive.QUOTED), (" 7 ", archive.QUOTED)]
    assert archive.parse_fields(quoted, [0, 1], TENANT_ID) == (" a ", 7)  # text kept as quoted
    with pytest.raises(ValueError, match="spaces outside the quotes"):
        archive.parse_fields([("a", archive.PADDED), ("7", archive.BARE)], [0, 1], TENANT_ID)
    with pytest.raises(ValueError, match="out of range"):
        archive.parse_fields(fields("a", "2147483648"), [0, 1], TENANT_ID)
    with pytest.raises(ValueError, match="longer than"):
        archive.parse_fields(fields("x" * 21, "1"), [0, 1], TENANT_ID)
    with pytest.raises(ValueError, match="NULL"):
        archive.parse_fields([("a", archive.BARE), ("N", archive.NULL)], [0, 1], TENANT_ID)


def test_dates_and_times_are_read_exactly_and_what_the_column_cannot_hold_is_refused():
    assert archive.parse_key("2024-02-29", archive.BARE, DATE) == dt.date(2024, 2, 29)
    assert archive.parse_key(" 2024-01-01 00:00:00.000001 ", archive.BARE, DATETIME6) == \
        dt.datetime(2024, 1, 1, 0, 0, 0, 1)
    assert archive.parse_key("2024-01-01", archive.BARE, DATETIME0) == dt.datetime(2024, 1, 1)
    # what DATE_FORMAT(..., '%f') prints for a DATETIME(0): six zeros, which change nothing
    assert archive.parse_key("2024-01-01 10:00:00.000000", archive.BARE, DATETIME0) == \
        dt.datetime(2024, 1, 1, 10)
    refused = [("2023-02-29", DATE, "no date"), ("2024-01-01 10:00:00", DATE, "not a date"),
               ("2024-01-01 10:00:00.5", DATETIME0, "has 1 fractional digits; a datetime holds 0"),
               ("2024-01-01 10:00:00.000100", DATETIME0, "has 4 fractional digits; a datetime holds 0"),
               ("2024-01-01 10:00:00.1234567", DATETIME6, "not a datetime"),
               ("2024-01-01T10:00:00", DATETIME6, "not a datetime"), ("24-01-01", DATE, "not a date"),
               ("2024-01-01 24:00:00", DATETIME6, "no date and time"),
               ("1970-01-01 00:59:59", BERLIN_TS, "outside a TIMESTAMP's range")]
    for text, key_type, message in refused:
        with pytest.raises(ValueError, match=message):
            archive.parse_key(text, archive.BARE, key_type)


def test_a_timestamp_written_in_a_zone_is_one_instant_and_dst_folds_and_gaps_are_refused():
    summer = archive.parse_key("2024-07-01 12:00:00.250", archive.BARE, BERLIN_TS)
    assert BERLIN_TS.encode(summer) == b"1719828000.250"  # 10:00:00.25 UTC
    assert BERLIN_TS.encode(archive.parse_key("2024-10-27 03:30:00", archive.BARE, BERLIN_TS)) == \
        b"1729996200.000"  # after the fold: CET
    with pytest.raises(ValueError, match="twice"):  # 02:30 happens in CEST and again in CET
        archive.parse_key("2024-10-27 02:30:00", archive.BARE, BERLIN_TS)
    with pytest.raises(ValueError, match="never"):  # clocks jump from 02:00 to 03:00
        archive.parse_key("2024-03-31 02:30:00", archive.BARE, BERLIN_TS)
    utc = archive.key_type_from_column(column("timestamp", "timestamp(6)"), "UTC")
    assert utc.encode(archive.parse_key("2038-01-19 03:14:07.999999", archive.BARE, utc)) == \
        b"2147483647.999999"  # a TIMESTAMP's last instant
    with pytest.raises(ValueError, match="outside a TIMESTAMP's range"):
        archive.parse_key("2038-01-19 03:14:08", archive.BARE, utc)
    # stored with its offset, a key reads back as the same instant whatever key_time_zone says later
    assert archive.format_key(summer) == "2024-07-01 12:00:00.250000+02:00"
    assert archive.parse_stored_key(archive.format_key(summer), utc) == summer
    fixed = archive.key_type_from_column(column("timestamp", "timestamp"), "+05:30")
    assert fixed.encode(archive.parse_key("2024-01-01 05:30:00", archive.BARE, fixed)) == b"1704067200"


def test_a_timestamp_key_needs_key_time_zone():
    with pytest.raises(archive.ArchiveError, match=r"\[archive\] key_time_zone"):
        archive.key_type_from_column(column("timestamp", "timestamp(6)", name="created_at"))


KEYS = [("T1", 7), ('say "hi", then, go', -3), ("", 0), ("two\nlines", 1), ("0x41", 2), ("\\N", 3)]


@pytest.mark.parametrize("key", KEYS)
def test_a_stored_composite_key_reads_back_as_the_same_key(key):
    text = archive.format_key(key)
    assert archive.parse_stored_key(text, TENANT_ID) == key
    assert archive.format_key(("T1", 7)) == '"T1",7'


def test_stored_temporal_and_binary_parts_read_back():
    key_type = archive.composite_key_type([ID, DATETIME6, DATE, archive.key_type_from_column(
        column("varbinary", "varbinary(4)", 4))])
    key = (5, dt.datetime(2024, 1, 1, 0, 0, 0, 120000), dt.date(2023, 12, 31), b"\x00,\"")
    assert archive.parse_stored_key(archive.format_key(key), key_type) == key


def test_a_composite_condition_uses_the_key_index_then_the_bytes_of_every_part():
    sql, params = archive.key_condition(["`tenant`", "`id`"], [("b", 2), ("a", 1), ("b", 2)], TENANT_ID)
    assert sql == ("((`tenant`, `id`) IN ((%s, 1), (%s, 2)) AND CAST(CONCAT_WS(',', "
                   "HEX(CAST(`tenant` AS BINARY)), HEX(CAST(`id` AS BINARY))) AS BINARY) IN (%s, %s))")
    assert params == ("a", "b", b"61,31", b"62,32")  # text as parameters, numbers inline
    ints = archive.composite_key_type([ID, DATETIME6])
    assert archive.key_condition(["`a`", "`b`"], [(1, dt.datetime(2024, 1, 1, 0, 0, 0, 5))], ints) == (
        "((`a`, `b`) IN ((1, '2024-01-01 00:00:00.000005')))", ())  # exact by value: no byte filter


def test_a_batch_of_integer_and_time_parts_goes_as_their_box_filtered_by_the_row_in():
    plan = archive.TablePlan("events", "events_archive", ("id", "at"),
                             (archive.Column("id", "bigint"), archive.Column("at", "datetime")),
                             archive.composite_key_type([ID, DATETIME6]))
    new_year = dt.datetime(2024, 1, 1)
    keys = [(7, new_year), (3, dt.datetime(2024, 5, 6, 7, 8, 9, 5)), (7, new_year)]
    span = plan.span_of(keys)
    assert span is not None
    assert span.condition == ("`id` BETWEEN 3 AND 7 AND `at` BETWEEN '2024-01-01 00:00:00' AND "
                              "'2024-05-06 07:08:09.000005' AND ((`id`, `at`) IN ((3, '2024-05-06 "
                              "07:08:09.000005'), (7, '2024-01-01 00:00:00'))) IS TRUE")
    # the box's rows beyond the two keys it lists: above 0, the batch takes its key list instead
    assert span.unlisted_sql == ("SELECT GREATEST(COUNT(*) - 2, 0) INTO @archive_py_unlisted FROM `events` "
                                 "FORCE INDEX (`PRIMARY`) WHERE `id` BETWEEN 3 AND 7 AND `at` BETWEEN "
                                 "'2024-01-01 00:00:00' AND '2024-05-06 07:08:09.000005'")
    for parts in ([TENANT, ID], [ID, BERLIN_TS]):  # their order on the server is not Python's
        assert dataclasses.replace(plan, key_type=archive.composite_key_type(parts)).span_of(keys) is None


def test_a_timestamp_part_is_matched_by_a_wide_range_then_by_its_seconds_since_the_epoch():
    key = (1, archive.parse_key("2024-07-01 12:00:00", archive.BARE, BERLIN_TS))
    sql, params = archive.key_condition(["`id`", "`ts`"], [key], ID_TS)
    assert sql == ("(`id` IN (1) AND `ts` BETWEEN FROM_UNIXTIME(1719741600) AND FROM_UNIXTIME(1719914401) "
                   "AND CAST(CONCAT_WS(',', HEX(CAST(`id` AS BINARY)), "
                   "HEX(CAST(UNIX_TIMESTAMP(`ts`) AS BINARY))) AS BINARY) IN (%s))")
    assert params == (b"31,313731393832383030302E303030",)


def test_a_composite_key_is_config_with_csv_columns_in_the_same_order(tmp_path):
    def load(**archive_keys: str) -> archive.Config:
        lines = ["[database]", "user = u", "database = d", "[archive]", "source_table = s",
                 "archive_table = a", f"csv_dir = {tmp_path}", f"log_dir = {tmp_path}"]
        lines += [f"{k} = {v}" for k, v in archive_keys.items()]
        (tmp_path / "c.ini").write_text("\n".join(lines) + "\n")
        return archive.load_config(tmp_path / "c.ini", environ={})

    config = load(key_column="tenant_id, id")
    assert (config.key_column, config.csv_column) == (("tenant_id", "id"), ("tenant_id", "id"))
    assert config.reading == "key tenant_id, id from columns 'tenant_id', 'id', delimiter ','"
    assert load(key_column="id").reading == "key id from column 'id', delimiter ','"  # as 2.0 wrote it
    assert load(key_column="a,b", csv_column="B, A").csv_column == ("B", "A")
    # a TIMESTAMP key's zone decides which rows its keys name: a checkpoint holds only for the same zone
    assert load(key_column="id, ts", key_time_zone="Europe/Berlin").reading == \
        "key id, ts from columns 'id', 'ts', delimiter ',', times in Europe/Berlin"
    for keys, message in [({"key_column": "a, b", "csv_column": "a"}, r"\[archive\] csv_column.*1 CSV"),
                          ({"key_column": "a, A"}, r"\[archive\] key_column.*names a more than once"),
                          ({"key_column": "a, b", "csv_column": "x, x"}, "one CSV column for two"),
                          ({"key_column": "a", "csv_header": "no"}, "set csv_column to the key's field"),
                          ({"key_column": "a", "key_time_zone": "Mars/Olympus"}, "key_time_zone")]:
        with pytest.raises(archive.ConfigError, match=message):
            load(**keys)


def read_keys(path: Path, key_type: archive.KeyType, columns: tuple[str, ...] = ("id", "at")) -> list[Any]:
    """Every (line, offset, key) of a file, as a run reads them."""
    return list(archive.iter_csv_keys(path, archive.CsvFormat(columns=columns), key_type))


def test_plain_numbers_and_times_take_the_fast_reader_and_read_exactly_as_the_careful_one(tmp_path):
    key_type = archive.composite_key_type([ID, DATETIME6])
    lines = [f"{n},2024-01-01 00:00:{n % 60:02d}.{n:06d}" for n in range(1, 30001)]
    lines[20000] = '20001,"2024-01-01 00:00:21.020001"'  # a quoted field: the careful reader from here
    lines[20001] = " 20002 , 2024-01-01 00:00:22.020002 "  # spaces around numbers and times are no data
    path = tmp_path / "k.csv"
    path.write_text("id,at\n" + "\n".join(lines) + "\n")
    keys = read_keys(path, key_type)
    assert [k for _, _, k in keys] == [(n, dt.datetime(2024, 1, 1, 0, 0, n % 60, n)) for n in range(1, 30001)]
    ends = list(itertools.accumulate([len("id,at\n")] + [len(line) + 1 for line in lines]))
    assert [(line, offset) for line, offset, _ in keys] == list(zip(range(2, 30002), ends[1:]))


def test_a_composite_key_is_read_by_field_numbers_and_in_the_mysql_dialect(tmp_path):
    path = tmp_path / "k.tsv"
    path.write_bytes(b"x\t7\tT1\n\\N\t8\tt2\ny\t9\ta\\\tb\n")  # mysql -B -N: tab, \\t and \\N escapes
    mysql = archive.CsvFormat(dialect="mysql", delimiter="\t", columns=("3", "2"), header=False)
    keys = [k for _, _, k in archive.iter_csv_keys(path, mysql, TENANT_ID)]
    assert keys == [("T1", 7), ("t2", 8), ("a\tb", 9)]
    path.write_bytes(b"x\t7\t\\N\n")
    with pytest.raises(archive.RejectedFile, match=r"k.tsv line 1: \\N is NULL"):
        list(archive.iter_csv_keys(path, mysql, TENANT_ID))


def test_the_fast_reader_hands_a_bad_line_to_the_careful_one_which_names_it(tmp_path):
    key_type = archive.composite_key_type([ID, DATE])
    body = "".join(f"{n},2024-01-{1 + n % 28:02d}\n" for n in range(1, 20001))
    for bad, message in [("7,2024-02-30", "line 15002: '2024-02-30' is no date"),
                         ("7,2024-02-01 10:00:00", "line 15002: '2024-02-01 10:00:00' is not a date"),
                         ("7", "line 15002: row has 1 field")]:
        lines = body.splitlines()
        lines[15000] = bad
        path = tmp_path / "k.csv"
        path.write_text("id,at\n" + "\n".join(lines) + "\n")
        with pytest.raises(archive.RejectedFile, match=message):
            read_keys(path, key_type)
    lines = body.splitlines()
    lines[15000:15000] = ["", "   "]  # blank lines are skipped, as the careful reader does
    path.write_text("id,at\n" + "\n".join(lines) + "\n")
    keys = read_keys(path, key_type)
    assert len(keys) == 20000 and keys[15000][0] == 15004



def test_every_line_the_exact_reader_takes_reads_as_the_careful_reader_reads_it(tmp_path):
    """A block of exact fields (one pattern for the block, no field matched again) gives the keys
    parse_fields gives, and what it cannot read (out of range, no such date, more digits than the
    column holds) goes to the careful reader, which names the line."""
    key_type = archive.composite_key_type([ID, DATETIME6, DATE])
    fields = ["0,2024-01-01 00:00:01.5,2024-01-01", "-7,2024-02-29,2024-12-31",
              "007,1999-12-31 23:59:59,1000-01-01", "2147483647,2024-01-01 00:00:00.000001,9999-12-31",
              "-2147483648,2024-01-01 00:00:00.12,2024-01-02"]
    lines = [fields[n % len(fields)] for n in range(20000)]
    path = tmp_path / "k.csv"
    path.write_text("id,at,day\n" + "\n".join(lines) + "\n")
    keys = [k for _, _, k in read_keys(path, key_type, ("id", "at", "day"))]
    careful = [archive.parse_fields([(f, archive.BARE) for f in line.split(",")], [0, 1, 2], key_type)
               for line in fields]
    assert keys == [careful[n % len(fields)] for n in range(20000)]
    assert careful[0] == (0, dt.datetime(2024, 1, 1, 0, 0, 1, 500000), dt.date(2024, 1, 1))
    for bad, message in [("2147483648,2024-01-01,2024-01-01", "line 15002: 2147483648 is out of range"),
                         ("1,2023-02-29,2024-01-01", "line 15002: '2023-02-29' is no date"),
                         ("1,2024-01-01,2024-13-01", "line 15002: '2024-13-01' is no date"),
                         ("1,2024-01-01 00:00:00.1234567,2024-01-01",
                          r"line 15002: .* is not a datetime\(6\) key")]:
        broken = lines.copy()
        broken[15000] = bad
        path.write_text("id,at,day\n" + "\n".join(broken) + "\n")
        with pytest.raises(archive.RejectedFile, match=message):
            read_keys(path, key_type, ("id", "at", "day"))

# --------------------------------------------------------------------------- on a real server

def write_keys(path: Path, header: list[str], rows: list[tuple[Any, ...]]) -> None:
    """An RFC 4180 key file, every field as str() of its value."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([[str(v) for v in row] for row in rows])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(buf.getvalue(), encoding="utf-8")


TENANT_TABLE = """CREATE TABLE {name} (
  tenant VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NOT NULL,
  id INT NOT NULL,
  note VARCHAR(40) NULL,
  PRIMARY KEY (tenant, id)
) ENGINE=InnoDB"""


def tenant_job(db: ScratchDatabase, tmp_path: Path, rows: list[tuple[str, int]],
               listed: list[tuple[Any, ...]], **overrides: Any) -> Path:
    """src/arc keyed by (tenant, id), the CSV listing `listed` as id,tenant (the other order)."""
    for name in ("src", "arc"):
        db.execute(TENANT_TABLE.format(name=name))
    db.executemany("INSERT INTO src VALUES (%s, %s, %s)", [(t, i, f"{t!r}/{i}") for t, i in rows])
    write_keys(tmp_path / "csv" / "keys.csv", ["id", "tenant"], [(i, t) for t, i in listed])
    settings = {"archive__key_column": "id, tenant", "archive__csv_column": None, "archive__batch_size": 3}
    return write_config(tmp_path, db, archive__source_table="src", archive__archive_table="arc",
                        **{**settings, **overrides})


def keys_in(db: ScratchDatabase, table: str, columns: str = "tenant, id") -> list[tuple[Any, ...]]:
    """A table's keys, text as bytes so that collation cannot blur them."""
    return sorted(tuple(bytes(v) if isinstance(v, (bytes, bytearray)) else v for v in row)
                  for row in db.query(
        f"SELECT {', '.join(f'CAST({c} AS BINARY)' if c == 'tenant' else c for c in columns.split(', '))} "
        f"FROM {table}"))


def test_every_text_part_is_matched_by_its_bytes_not_its_collation(db, tmp_path):
    stored = [("ABC", 1), ("abc ", 2), ("résumé", 3), ("T1", 4), ("t2", 4), ("x", 5)]
    listed = [("abc", 1), ("abc", 2), ("resume", 3), ("t1", 4), ("T2", 4), ("x", 5), ("X", 6)]
    config = tenant_job(db, tmp_path, stored, listed)
    dry = json.loads(run_cli(config, "--dry-run", "--json").stdout)
    assert (dry["rows_to_archive"], dry["total"]["not_found"]) == (1, 6)
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert keys_in(db, "arc") == [(b"x", 5)]
    assert keys_in(db, "src") == sorted((t.encode(), i) for t, i in stored if (t, i) != ("x", 5))
    assert db.query("SELECT rows_archived, not_found FROM process_logs") == [(1, 6)]
    assert db.query("SELECT first_key, last_key FROM batch_processing_logs ORDER BY batch_number") == [
        ('1,"abc"', '3,"resume"'), ('4,"t1"', '5,"x"'), ('6,"X"', '6,"X"')]


def test_a_differing_archived_copy_of_a_composite_key_is_a_conflict_rechecked_by_its_stored_key(db, tmp_path):
    config = tenant_job(db, tmp_path, [("a,\"b\"", 1), ("c", 2)], [("a,\"b\"", 1), ("c", 2)])
    db.execute("INSERT INTO arc VALUES ('a,\"b\"', 1, 'another note')")
    result = run_cli(config)
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert db.query("SELECT key_value FROM conflict_logs WHERE status = 'OPEN'") == [('1,"a,""b"""',)]
    status = run_cli(config, "--status")
    assert "Open conflicts" in status.stdout and "  keys.csv: 1 key" in status.stdout, status.stdout
    assert json.loads(status.stdout.rsplit("  ", 1)[1]) == ['1,"a,""b"""'], status.stdout
    assert 'CONFLICT: 1 key archived with different rows; both versions kept: 1,"a,""b"""' in \
        read_text_logs(tmp_path / "logs")
    assert keys_in(db, "src") == [(b'a,"b"', 1)] and keys_in(db, "arc") == [(b'a,"b"', 1), (b"c", 2)]
    db.execute("UPDATE arc SET note = %s WHERE tenant = 'a,\"b\"'", ("'a,\"b\"'/1",))
    again = run_cli(config)
    assert again.returncode == 0, (again.stdout, again.stderr)
    assert db.query("SELECT status FROM conflict_logs") == [("RESOLVED",)]
    assert keys_in(db, "src") == []


PARTITIONED = """CREATE TABLE {name} (
  id BIGINT NOT NULL,
  created_at DATETIME(6) NOT NULL,
  amount DECIMAL(12, 2) NOT NULL,
  PRIMARY KEY (id, created_at)
) ENGINE=InnoDB
PARTITION BY RANGE COLUMNS (created_at) (
  PARTITION p2023 VALUES LESS THAN ('2024-01-01'),
  PARTITION p2024 VALUES LESS THAN ('2025-01-01'),
  PARTITION pmax VALUES LESS THAN (MAXVALUE))"""

BOUNDARY = ["2023-12-31 23:59:59.999999", "2024-01-01 00:00:00.000000", "2024-12-31 23:59:59.999999",
            "2025-01-01 00:00:00.000000"]


def events_config(tmp_path: Path, db: ScratchDatabase, **overrides: Any) -> Path:
    """A job on events -> events_archive keyed by (id, created_at)."""
    return write_config(tmp_path, db, archive__source_table="events", archive__archive_table="events_archive",
                        archive__key_column="id, created_at", archive__csv_column=None, **overrides)


def test_a_partitioned_table_keyed_by_id_and_datetime6_moves_exactly_the_listed_rows(db, tmp_path):
    for name in ("events", "events_archive"):
        db.execute(PARTITIONED.format(name=name))
    rows = [(n, when, n) for n in range(1, 5) for when in BOUNDARY]  # each id at each boundary
    db.executemany("INSERT INTO events VALUES (%s, %s, %s)", rows)
    listed = [(1, BOUNDARY[0]), (1, BOUNDARY[1]), (2, BOUNDARY[3]), (3, BOUNDARY[2]),
              (4, "2024-01-01 00:00:00.000001"), (4, "2024-01-01")]  # 1 µs off: no row; midnight: a row
    write_keys(tmp_path / "csv" / "keys.csv", ["id", "created_at"], listed)
    config = events_config(tmp_path, db, archive__batch_size=2)
    check = run_cli(config, "--check")
    assert check.returncode == 0 and "on key (`id`, `created_at`)" in check.stdout, check.stdout
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    moved = [(1, BOUNDARY[0]), (1, BOUNDARY[1]), (2, BOUNDARY[3]), (3, BOUNDARY[2]), (4, BOUNDARY[1])]
    as_rows = sorted((n, dt.datetime.fromisoformat(w)) for n, w in moved)
    assert db.query("SELECT id, created_at FROM events_archive ORDER BY id, created_at") == as_rows
    left = sorted((n, dt.datetime.fromisoformat(w)) for n, w, _ in rows if (n, w) not in moved)
    assert db.query("SELECT id, created_at FROM events ORDER BY id, created_at") == left
    assert db.query("SELECT rows_archived, not_found FROM process_logs") == [(5, 1)]


def test_the_box_of_a_batch_never_moves_the_unlisted_rows_inside_it(db, tmp_path):
    # Attack on the box (each part's smallest to largest key): a listed key that is gone leaves
    # room for an unlisted row inside the box without the box holding more rows than the batch
    # lists, so the range is taken, and only the row IN keeps (1, B1) and (1, B2) in the source
    for name in ("events", "events_archive"):
        db.execute(PARTITIONED.format(name=name))
    db.executemany("INSERT INTO events VALUES (%s, %s, %s)",
                   [(1, BOUNDARY[0], 1), (1, BOUNDARY[1], 2), (1, BOUNDARY[3], 3), (2, BOUNDARY[2], 4)])
    listed = [(1, BOUNDARY[0]), (1, "2024-06-01 12:00:00"), (1, "2024-09-01"), (1, BOUNDARY[3])]
    write_keys(tmp_path / "csv" / "keys.csv", ["id", "created_at"], listed)
    result = run_cli(events_config(tmp_path, db, archive__batch_size=4))
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert db.query("SELECT id, created_at FROM events_archive ORDER BY created_at") == [
        (1, dt.datetime.fromisoformat(BOUNDARY[0])), (1, dt.datetime.fromisoformat(BOUNDARY[3]))]
    assert db.query("SELECT id, created_at FROM events ORDER BY created_at") == [
        (1, dt.datetime.fromisoformat(BOUNDARY[1])), (2, dt.datetime.fromisoformat(BOUNDARY[2]))]
    assert db.query("SELECT rows_archived, not_found FROM process_logs") == [(2, 2)]


EXTREMES = """CREATE TABLE {name} (
  a BIGINT UNSIGNED NOT NULL,
  b BIGINT NOT NULL,
  d DATE NOT NULL,
  v INT NOT NULL,
  PRIMARY KEY (b DESC, d, a)
) ENGINE=InnoDB"""


def test_the_box_of_extreme_integers_and_dates_under_a_desc_index_moves_exactly_the_listed_rows(db, tmp_path):
    # Attack on the box: BIGINT UNSIGNED and BIGINT at their extremes, DATE from 1000 to 9999, the
    # key listed (a, d, b) against a PRIMARY KEY (b DESC, d, a); as many missing keys as the box has
    # unlisted rows, so that its count lets the box be taken with 40 unlisted rows inside it
    for name in ("m", "m_archive"):
        db.execute(EXTREMES.format(name=name))
    values = itertools.product([0, 1, 2 ** 64 - 2, 2 ** 64 - 1], [-2 ** 63, -1, 0, 2 ** 63 - 1],
                               [dt.date(1000, 1, 1), dt.date(2024, 2, 29), dt.date(9999, 12, 31)])
    rows = [(a, b, d, n) for n, (a, b, d) in enumerate(values)]
    db.executemany("INSERT INTO m VALUES (%s, %s, %s, %s)", rows)
    rng = random.Random(7)
    listed = rng.sample([(a, d, b) for a, b, d, _ in rows], 8)
    listed.append((0, dt.date(1000, 1, 1), -2 ** 63))  # the box's corners, if not drawn already
    listed.append((2 ** 64 - 1, dt.date(9999, 12, 31), 2 ** 63 - 1))
    missing = [(a, dt.date(2000, 1, n), b) for n in range(1, 21) for a, b in ((5, 7), (2 ** 64 - 3, -5))]
    write_keys(tmp_path / "csv" / "keys.csv", ["a", "d", "b"], [*listed, *missing])
    assert len(rows) <= len(set(listed)) + len(missing)  # the box holds them all: it is taken
    config = write_config(tmp_path, db, archive__source_table="m", archive__archive_table="m_archive",
                          archive__key_column="a, d, b", archive__csv_column=None, archive__batch_size=60)
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    moved = sorted(r for r in rows if (r[0], r[2], r[1]) in set(listed))
    assert sorted(db.query("SELECT * FROM m_archive")) == moved
    assert sorted(db.query("SELECT * FROM m")) == sorted(set(rows) - set(moved))
    assert db.query("SELECT rows_archived, not_found FROM process_logs") == [(len(moved), len(missing))]


def assert_moves_exactly(db: ScratchDatabase, tmp_path: Path, table: str, key: tuple[str, str],
                         rows: list[tuple[Any, ...]], listed: list[Any], missing: list[Any],
                         batch_size: int) -> None:
    """A job on `table` keyed by `key` lists `listed` and `missing` (keys of no row): exactly the
    listed rows move."""
    write_keys(tmp_path / "csv" / "keys.csv", list(key), [*listed, *missing])
    config = write_config(tmp_path, db, archive__source_table=table,
                          archive__archive_table=f"{table}_archive", archive__key_column=", ".join(key),
                          archive__csv_column=None,
                          archive__batch_size=batch_size)
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    moved = sorted(r for r in rows if r[:2] in listed)
    order = ", ".join(key)
    assert db.query(f"SELECT * FROM {table}_archive ORDER BY {order}") == moved
    assert db.query(f"SELECT * FROM {table} ORDER BY {order}") == sorted(set(rows) - set(moved))


@pytest.mark.parametrize("fsp", [0, 3, 6])
def test_the_box_of_negative_ids_and_datetimes_of_every_precision_moves_exactly_the_listed_rows(
        db, tmp_path, fsp):
    table = "CREATE TABLE {name} (id INT NOT NULL, at DATETIME(%d) NOT NULL, v INT, PRIMARY KEY (id, at))"
    for name in ("t", "t_archive"):
        db.execute(table.format(name=name) % fsp)
    step = dt.timedelta(microseconds=10 ** (6 - fsp)) if fsp else dt.timedelta(seconds=1)
    base = dt.datetime(2024, 12, 31, 23, 59, 59)
    times = [base - step, base, base + step, base + 2 * step]
    rows = [(i, t, n) for n, (i, t) in enumerate(itertools.product([-3, -2, -1, 0], times))]
    db.executemany("INSERT INTO t VALUES (%s, %s, %s)", rows)
    listed = [(-3, times[0]), (-1, times[1]), (0, times[3]), (-2, times[2])]
    missing = [(-3, base - 5 * step), (0, base + 9 * step)] + [(-1, base + k * step) for k in range(3, 15)]
    assert_moves_exactly(db, tmp_path, "t", ("id", "at"), rows, listed, missing, 20)


def test_rows_that_come_into_the_box_while_its_batch_waits_for_a_lock_stay_unless_listed(
        db, tmp_path, spawn_cli):
    # Attack on the box with a concurrent writer: the box's copy waits for listed row (1, T0); the
    # other session then adds an unlisted row inside the box, the missing listed key (3, T2), and
    # moves listed row (2, T2) to an unlisted key inside the box: only the listed keys move
    table = "CREATE TABLE {name} (id BIGINT NOT NULL, at DATETIME(6) NOT NULL, v INT, PRIMARY KEY (id, at))"
    for name in ("e", "e_archive"):
        db.execute(table.format(name=name))
    t = [dt.datetime(2024, 1, 1, 0, 0, 0, n) for n in range(5)]
    db.executemany("INSERT INTO e VALUES (%s, %s, %s)",
                   [(1, t[0], 1), (1, t[2], 2), (2, t[0], 3), (2, t[2], 4), (9, t[0], 5)])
    listed = [(1, t[0]), (1, t[2]), (2, t[0]), (2, t[2]), (3, t[2])]
    write_keys(tmp_path / "csv" / "keys.csv", ["id", "at"], listed)
    config = write_config(tmp_path, db, archive__source_table="e", archive__archive_table="e_archive",
                          archive__key_column="id, at", archive__csv_column=None, archive__batch_size=5)
    holder = db.connect()
    holder.autocommit = False
    cursor = holder.cursor()
    cursor.execute("UPDATE e SET v = 10 WHERE id = 1 AND at = %s", (t[0],))
    proc = spawn_cli(config)
    wait_for_a_lock_wait(db, "the box's copy to wait for (1, T0)", lambda: proc.poll() is not None)
    assert proc.poll() is None, proc.read_stdout() + proc.read_stderr()
    cursor.execute("INSERT INTO e VALUES (1, %s, 6), (3, %s, 7)", (t[1], t[2]))
    cursor.execute("UPDATE e SET at = %s WHERE id = 2 AND at = %s", (t[1], t[2]))
    holder.commit()
    holder.close()
    assert proc.wait(timeout=120) == 0, proc.read_stdout() + proc.read_stderr()
    assert db.query("SELECT * FROM e_archive ORDER BY id, at") == [
        (1, t[0], 10), (1, t[2], 2), (2, t[0], 3), (3, t[2], 7)]
    assert db.query("SELECT * FROM e ORDER BY id, at") == [(1, t[1], 6), (2, t[1], 4), (9, t[0], 5)]


def test_a_key_the_column_cannot_hold_rejects_its_file_naming_the_line(db, tmp_path):
    for name in ("events", "events_archive"):
        db.execute(PARTITIONED.format(name=name).replace("DATETIME(6)", "DATETIME(3)"))
    db.execute("INSERT INTO events VALUES (1, '2024-01-01 00:00:00.123', 1)")
    write_keys(tmp_path / "csv" / "keys.csv", ["id", "created_at"], [(1, "2024-01-01 00:00:00.123"),
                                                                     (1, "2024-01-01 00:00:00.1234")])
    config = events_config(tmp_path, db)
    result = run_cli(config)
    assert result.returncode == 4, (result.stdout, result.stderr)
    output = result.stdout + result.stderr
    assert "keys.csv line 3: '2024-01-01 00:00:00.1234' has 4 fractional digits" in output
    assert db.scalar("SELECT COUNT(*) FROM events") == 1


TS_TABLE = """CREATE TABLE {name} (
  id INT NOT NULL,
  ts TIMESTAMP(3) NOT NULL,
  note VARCHAR(20) NULL,
  PRIMARY KEY (ts, id)
) ENGINE=InnoDB"""


def test_timestamp_keys_written_in_a_dst_zone_match_their_instant_whatever_the_session_zone(db, tmp_path):
    for name in ("src", "arc"):
        db.execute(TS_TABLE.format(name=name))
    # instants around the autumn change in Berlin (03:00 CEST = 02:00 CET = 01:00 UTC on 2024-10-27)
    instants = [1729985400, 1729987200, 1729989000, 1729990800, 1729994400]  # 23:30, 00:00 .. 02:00 UTC
    with global_time_zone(db, "+00:00"):
        db.executemany("INSERT INTO src VALUES (%s, FROM_UNIXTIME(%s), 'n')", [(1, s) for s in instants])
    listed = [(1, "2024-10-27 01:30:00"),  # 23:30 UTC (CEST, before the fold)
              (1, "2024-10-27 03:00:00"),  # 02:00 UTC (CET)
              (1, "2024-10-27 01:59:59.999")]  # no such row
    write_keys(tmp_path / "csv" / "keys.csv", ["id", "ts"], listed)
    config = write_config(tmp_path, db, archive__source_table="src", archive__archive_table="arc",
                          archive__key_column="id, ts", archive__csv_column=None,
                          archive__key_time_zone="Europe/Berlin")
    with global_time_zone(db, "-07:00"):  # the run's sessions are in another zone: no matter
        result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    archived = [(Decimal("1729985400.000"),), (Decimal("1729994400.000"),)]
    assert db.query("SELECT UNIX_TIMESTAMP(ts) FROM arc ORDER BY ts") == archived
    assert db.scalar("SELECT COUNT(*) FROM src") == 3
    assert db.query("SELECT not_found FROM process_logs") == [(1,)]
    write_keys(tmp_path / "csv" / "fold.csv", ["id", "ts"], [(1, "2024-10-27 02:30:00")])
    folded = run_cli(config)
    assert folded.returncode == 4, (folded.stdout, folded.stderr)
    assert "fold.csv line 2: 2024-10-27 02:30:00 happens twice (clocks go back) in Europe/Berlin" in \
        folded.stdout + folded.stderr
    assert db.scalar("SELECT COUNT(*) FROM src") == 3


def test_a_timestamp_key_without_key_time_zone_is_refused_by_check(db, tmp_path):
    for name in ("src", "arc"):
        db.execute(TS_TABLE.format(name=name))
    config = write_config(tmp_path, db, archive__source_table="src", archive__archive_table="arc",
                          archive__key_column="id, ts", archive__csv_column=None)
    result = run_cli(config, "--check")
    assert result.returncode == 1 and "set [archive] key_time_zone" in result.stdout, result.stdout


def test_key_columns_that_are_not_exactly_a_unique_key_are_refused_saying_which_keys_there_are(db, tmp_path):
    for name in ("events", "events_archive"):
        db.execute(PARTITIONED.format(name=name))
    db.execute("CREATE TABLE heap (id INT, v INT) ENGINE=InnoDB")
    db.execute("CREATE TABLE heap_archive (id INT, v INT) ENGINE=InnoDB")
    cases = [("events", "id", ("`id` is not the primary key or a unique key of the source: its keys are "
                               "PRIMARY (id, created_at)")),
             ("heap", "id", "it has no primary or unique key, so no key names exactly one row"),
             ("events", "id, amount", "(id, amount) are not the columns of the primary key")]
    for table, key, message in cases:
        config = write_config(tmp_path, db, archive__source_table=table,
                              archive__archive_table=f"{table}_archive", archive__key_column=key,
                              archive__csv_column=None)
        result = run_cli(config, "--check")
        assert result.returncode == 1 and message in result.stdout, (key, result.stdout)


def test_kill_9_at_random_points_leaves_every_composite_row_in_exactly_one_table(db, tmp_path, spawn_cli):
    rng = random.Random(20261202)
    rows = [(f"t{n % 7}", n) for n in range(1, 12001)]
    listed = rows[:10000]
    rng.shuffle(listed)
    config = tenant_job(db, tmp_path, rows, listed, archive__batch_size=10)
    for _ in range(5):
        before = completed_batches(db)
        proc = spawn_cli(config)
        wait_until(lambda: completed_batches(db) > before, timeout=60)  # noqa: B023 (called at once)
        time.sleep(rng.uniform(0.0, 0.2))
        kill_process_group(proc, signal.SIGKILL)
        proc.wait(timeout=10)
    final = run_cli(config)
    assert final.returncode == 0, (final.stdout, final.stderr)
    archived, left = keys_in(db, "arc"), keys_in(db, "src")
    assert archived == sorted((t.encode(), n) for t, n in listed)
    assert left == sorted((t.encode(), n) for t, n in rows[10000:])
    assert db.scalar("SELECT COUNT(*) FROM arc a JOIN src s USING (tenant, id)") == 0
    assert db.query("SELECT COUNT(DISTINCT batch_number), SUM(keys_in_batch) FROM batch_processing_logs "
                    "WHERE status <> 'FAILED'") == [(1000, Decimal(10000))]


def test_composite_keys_into_another_server_move_exactly_once(db, dest_db, tmp_path):
    stored = [("ABC", 1), ("abc", 2), ("x", 3), ("y", 4)]
    config = tenant_job(db, tmp_path, stored, [("abc", 1), ("x", 3), ("y", 4)], **dest_keys(dest_db))
    dest_db.execute(TENANT_TABLE.format(name="arc"))
    dest_db.execute("INSERT INTO arc VALUES ('Y', 4, 'collides by collation')")
    result = run_cli(config)
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert keys_in(dest_db, "arc") == [(b"Y", 4), (b"x", 3)]
    assert keys_in(db, "src") == [(b"ABC", 1), (b"abc", 2), (b"y", 4)]
    assert db.query("SELECT key_value FROM conflict_logs") == [('4,"y"',)]



def test_the_guard_and_identical_twins_work_per_composite_key(db, tmp_path):
    rows = [("a", 1), ("a", 2), ("b", 1), ("b", 2)]
    config = tenant_job(db, tmp_path, rows, rows, controls__guard="note <> 'keep'")
    db.execute("UPDATE src SET note = 'keep' WHERE tenant = 'b' AND id = 1")
    db.execute("INSERT INTO arc SELECT * FROM src WHERE tenant = 'a' AND id = 2")  # an identical twin
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert keys_in(db, "src") == [(b"b", 1)]
    assert keys_in(db, "arc") == [(b"a", 1), (b"a", 2), (b"b", 2)]
    assert db.query("SELECT rows_archived, duplicates, skipped_by_guard FROM process_logs") == [(2, 1, 1)]


TEXT_TS_TABLE = """CREATE TABLE {name} (
  tenant VARCHAR(10) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NOT NULL,
  ts TIMESTAMP(6) NOT NULL,
  note VARCHAR(20) NULL,
  PRIMARY KEY (tenant, ts)
) ENGINE=InnoDB"""


def test_text_and_timestamp_keys_into_another_server_set_aside_collisions_and_move_the_rest(
        db, dest_db, tmp_path):
    db.execute(TEXT_TS_TABLE.format(name="src"))
    dest_db.execute(TEXT_TS_TABLE.format(name="arc"))
    with global_time_zone(db, "+00:00"):
        db.executemany("INSERT INTO src VALUES (%s, FROM_UNIXTIME(%s), 'n')",
                       [("a", 1700000000.5), ("b", 1700000000.5), ("a", 1700003600)])
    with global_time_zone(dest_db, "+00:00"):
        # 'B' equals the listed 'b' by collation: a collision, kept for a human
        dest_db.execute("INSERT INTO arc VALUES ('B', FROM_UNIXTIME(1700000000.5), 'other')")
    write_keys(tmp_path / "csv" / "keys.csv", ["tenant", "ts"],
               [("a", "2023-11-14 23:13:20.5"), ("b", "2023-11-14 23:13:20.5"), ("a", "2023-11-15 00:13:20")])
    config = write_config(tmp_path, db, archive__source_table="src", archive__archive_table="arc",
                          archive__key_column="tenant, ts", archive__csv_column=None,
                          archive__key_time_zone="+01:00", **dest_keys(dest_db))
    dry = json.loads(run_cli(config, "--dry-run", "--json").stdout)
    assert dry["rows_to_archive"] == 2, dry
    result = run_cli(config)
    assert result.returncode == 3, (result.stdout, result.stderr)
    left = db.query("SELECT CAST(tenant AS BINARY), UNIX_TIMESTAMP(ts) FROM src")
    assert left == [(b"b", Decimal("1700000000.500000"))]
    assert dest_db.scalar("SELECT COUNT(*) FROM arc") == 3
    assert db.query("SELECT key_value FROM conflict_logs") == [('"b",2023-11-14 23:13:20.500000+01:00',)]


def test_a_run_resumes_a_composite_key_file_from_the_text_log(db, tmp_path):
    rows = [(f"t{n % 3}", n) for n in range(1, 61)]
    config = tenant_job(db, tmp_path, rows, rows, archive__batch_size=6, controls__max_runtime="1s",
                        controls__sleep_seconds=0.4)
    assert run_cli(config).returncode == 6
    done = completed_batches(db)
    assert 1 <= done < 10
    for table in archive.TRACKING_TABLES:  # the tracking tables are lost; the text log still says
        db.execute(f"DROP TABLE {table}")
    result = run_cli(config, "--max-runtime", "1h", "--sleep", "0")
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert f"Resuming file keys.csv from batch {done + 1}" in result.stdout
    assert keys_in(db, "src") == [] and len(keys_in(db, "arc")) == 60
    assert db.scalar("SELECT SUM(rows_archived) FROM file_processing_logs") == 60 - 6 * done


def test_key_columns_are_matched_to_a_unique_key_by_name_not_by_the_schema_collation_order(db, tmp_path):
    # information_schema sorts `ab` before `a_b` (utf8mb3_general_ci compares '_' above letters),
    # Python after it: comparing the two orders refused the table's own primary key.
    for name in ("src", "arc"):
        db.execute(f"CREATE TABLE {name} (a_b INT NOT NULL, ab INT NOT NULL, code VARCHAR(40) NOT NULL, "
                   "PRIMARY KEY (a_b, ab), UNIQUE KEY ux_code (code(10))) ENGINE=InnoDB")
    config = write_config(tmp_path, db, archive__source_table="src", archive__archive_table="arc",
                          archive__key_column="ab, a_b", archive__csv_column=None)
    check = run_cli(config, "--check")
    assert check.returncode == 0 and "on key (`ab`, `a_b`)" in check.stdout, check.stdout
    prefix = write_config(tmp_path, db, archive__source_table="src", archive__archive_table="arc",
                          archive__key_column="code", archive__csv_column=None)
    refused = run_cli(prefix, "--check")
    assert refused.returncode == 1, refused.stdout
    assert "`code` is not the primary key or a unique key of the source: its keys are PRIMARY (a_b, ab); " \
        "ux_code (code(10))" in refused.stdout


@pytest.mark.parametrize("sql_type, stored, listed, zone", [
    ("DATETIME(3)", ["2024-01-01 00:00:00.000", "2024-01-01 00:00:00.001", "2024-02-29 23:59:59.999"],
     ["2024-01-01", "2024-02-29 23:59:59.999", "2024-02-29 23:59:59.99"], None),
    ("DATE", ["2024-01-01", "2024-01-02"], ["2024-01-02", "2023-12-31"], None),
    ("TIMESTAMP(0)", ["2024-03-31 00:30:00", "2024-03-31 01:30:00"], ["2024-03-31 03:30:00"],
     "Europe/Berlin"),
])
def test_a_single_date_or_time_key_moves_exactly_its_own_row(db, tmp_path, sql_type, stored, listed, zone):
    for name in ("src", "arc"):
        db.execute(f"CREATE TABLE {name} (at {sql_type} NOT NULL PRIMARY KEY, note VARCHAR(10)) "
                   "ENGINE=InnoDB")
    with global_time_zone(db, "+00:00"):  # TIMESTAMPs stored as UTC instants
        db.executemany("INSERT INTO src VALUES (%s, 'n')", [(v,) for v in stored])
    write_keys(tmp_path / "csv" / "keys.csv", ["at"], [(v,) for v in listed])
    config = write_config(tmp_path, db, archive__source_table="src", archive__archive_table="arc",
                          archive__key_column="at", archive__csv_column=None,
                          **({"archive__key_time_zone": zone} if zone else {}))
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    with global_time_zone(db, "+00:00"):
        archived = [str(v) for (v,) in db.query("SELECT CAST(at AS CHAR) FROM arc ORDER BY at")]
    expected = {"DATETIME(3)": ["2024-01-01 00:00:00.000", "2024-02-29 23:59:59.999"],
                "DATE": ["2024-01-02"], "TIMESTAMP(0)": ["2024-03-31 01:30:00"]}[sql_type]  # 03:30 CEST
    assert archived == expected
    assert db.scalar("SELECT not_found FROM process_logs") == len(listed) - len(expected)


def test_a_reading_longer_than_its_column_still_resumes(db, tmp_path):
    # file_processing_logs.reading holds 255 bytes: a longer reading (long key column names) was
    # stored cut, never equalled the config's again, and every rerun restarted its files.
    names = [f"{letter}_{'x' * 60}" for letter in "abc"]
    for table in ("src", "arc"):
        db.execute(f"CREATE TABLE {table} ({', '.join(f'{n} INT NOT NULL' for n in names)}, "
                   f"PRIMARY KEY ({', '.join(names)})) ENGINE=InnoDB")
    db.executemany("INSERT INTO src VALUES (%s, %s, %s)", [(n, n, n) for n in range(1, 41)])
    write_keys(tmp_path / "csv" / "keys.csv", names, [(n, n, n) for n in range(1, 41)])
    config = write_config(tmp_path, db, archive__source_table="src", archive__archive_table="arc",
                          archive__key_column=", ".join(names), archive__csv_column=None,
                          archive__batch_size=4, controls__max_runtime="1s", controls__sleep_seconds=0.4)
    assert run_cli(config).returncode == 6
    done = completed_batches(db)
    assert 1 <= done < 10
    for log in (tmp_path / "logs").iterdir():  # the database's checkpoint alone, not the text log's
        log.unlink()
    result = run_cli(config, "--max-runtime", "1h", "--sleep", "0")
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert f"Resuming file keys.csv from batch {done + 1}" in result.stdout
    assert db.scalar("SELECT SUM(not_found) FROM process_logs") == 0


def test_latin1_text_parts_with_non_ascii_characters_are_found(db, tmp_path):
    # MariaDB 10.11 finds no row for (latin1 text, int) IN ((utf8mb4 'é', 1), ...) once two rows are
    # listed: each text part must be sent in its column's character set
    for name in ("src", "arc"):
        db.execute(f"CREATE TABLE {name} (tenant VARCHAR(20) CHARACTER SET latin1 NOT NULL, id INT NOT NULL, "
                   "note VARCHAR(40) NULL, PRIMARY KEY (tenant, id))")
    rows = [("é", 1), ("ü", 2), ("a", 3), ("E", 4)]
    db.executemany("INSERT INTO src VALUES (%s, %s, 'n')", rows)
    write_keys(tmp_path / "csv" / "keys.csv", ["id", "tenant"], [(1, "é"), (2, "ü"), (4, "e")])
    config = write_config(tmp_path, db, archive__source_table="src", archive__archive_table="arc",
                          archive__key_column="id, tenant", archive__csv_column=None)
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert keys_in(db, "arc") == [("é".encode("latin1"), 1), ("ü".encode("latin1"), 2)]
    assert db.query("SELECT rows_archived, not_found FROM process_logs") == [(2, 1)]  # 'e' is not 'E'


def test_a_timestamp_key_in_the_types_last_second_is_found(db, tmp_path):
    for name in ("src", "arc"):
        db.execute(f"CREATE TABLE {name} (id INT NOT NULL, ts TIMESTAMP(6) NOT NULL, PRIMARY KEY (id, ts))")
    db.execute("SET time_zone = '+00:00'")
    db.execute("INSERT INTO src VALUES (1, '2038-01-19 03:14:07.999999'), (2, '2038-01-19 03:14:07')")
    write_keys(tmp_path / "csv" / "keys.csv", ["id", "ts"], [(1, "2038-01-19 03:14:07.999999"),
                                                             (2, "2038-01-19 03:14:07")])
    config = write_config(tmp_path, db, archive__source_table="src", archive__archive_table="arc",
                          archive__key_column="id, ts", archive__csv_column=None,
                          archive__key_time_zone="UTC")
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert db.query("SELECT rows_archived, not_found FROM process_logs") == [(2, 0)]


def test_keys_of_many_tenants_whose_box_holds_unlisted_rows_go_as_key_lists_and_move_exactly(db, tmp_path):
    # The box of (tenant, id) keys spread over 40 tenants holds every tenant's other rows: its count
    # is over the keys listed, so the batch (and the rest of the run) takes its key list
    table = "CREATE TABLE {name} (tenant INT NOT NULL, id BIGINT NOT NULL, v INT, PRIMARY KEY (tenant, id))"
    for name in ("mt", "mt_archive"):
        db.execute(table.format(name=name))
    rows = [(t, i, t * i) for t in range(1, 41) for i in range(-5, 6)]
    db.executemany("INSERT INTO mt VALUES (%s, %s, %s)", rows)
    listed = [(t, (t % 11) - 5) for t in range(1, 41, 2)] + [(41, 0), (3, 6)]
    assert_moves_exactly(db, tmp_path, "mt", ("tenant", "id"), rows, listed, [], 7)
    assert db.query("SELECT rows_archived, not_found FROM process_logs") == [(20, 2)]


@pytest.mark.parametrize("unlisted", [False, True])
def test_a_batch_of_1500_integer_and_datetime6_keys_moves_every_listed_row(db, tmp_path, unlisted):
    # Past in_predicate_conversion_threshold (1000), MariaDB may make an IN list a subquery over its
    # constants, compared by their type: whole-second times written without fractions must still
    # find their DATETIME(6) rows, in the box and (with unlisted rows in it) as a key list
    table = "CREATE TABLE {name} (id INT NOT NULL, at DATETIME(6) NOT NULL, PRIMARY KEY (id, at))"
    for name in ("ev", "ev_archive"):
        db.execute(table.format(name=name))
    base = dt.datetime(2024, 1, 1)
    rows = [(n, base + dt.timedelta(seconds=n % 97, microseconds=0 if n % 3 else 250)) for n in range(3000)]
    db.executemany("INSERT INTO ev VALUES (%s, %s)", rows)
    listed = rows[::2] if unlisted else rows[:1500]
    write_keys(tmp_path / "csv" / "keys.csv", ["id", "at"], listed)
    config = write_config(tmp_path, db, archive__source_table="ev", archive__archive_table="ev_archive",
                          archive__key_column="id, at", archive__csv_column=None, archive__batch_size=1500)
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert db.query("SELECT rows_archived, not_found FROM process_logs") == [(1500, 0)]
    assert db.query("SELECT * FROM ev_archive ORDER BY id, at") == sorted(listed)


def test_zero_dates_inside_the_box_of_date_keys_stay_and_the_listed_rows_move(db, tmp_path):
    # Zero dates and zero-in-date days (allowed without NO_ZERO_DATE / NO_ZERO_IN_DATE) sort inside
    # the box of the listed dates or below it; no key can name them, so they never move
    table = "CREATE TABLE {name} (id INT NOT NULL, d DATE NOT NULL, v INT, PRIMARY KEY (id, d))"
    for name in ("zd", "zd_archive"):
        db.execute(table.format(name=name))
    db.execute("SET SESSION sql_mode = ''")
    db.execute("INSERT INTO zd VALUES (1, '0000-00-00', 1), (1, '2024-00-00', 2), (1, '2024-01-00', 3), "
               "(1, '2023-12-31', 4), (1, '2024-01-01', 5), (2, '2024-00-15', 6), (2, '2024-01-01', 7)")
    listed = [(1, "2023-12-31"), (1, "2024-01-01"), (2, "2024-01-01"), (2, "2023-12-30"), (1, "2023-12-30"),
              (2, "2023-12-31"), (1, "2023-12-29"), (2, "2023-12-29")]
    write_keys(tmp_path / "csv" / "keys.csv", ["id", "d"], listed)
    config = write_config(tmp_path, db, archive__source_table="zd", archive__archive_table="zd_archive",
                          archive__key_column="id, d", archive__csv_column=None, archive__batch_size=8)
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert db.query("SELECT id, CAST(d AS CHAR), v FROM zd_archive ORDER BY v") == [
        (1, "2023-12-31", 4), (1, "2024-01-01", 5), (2, "2024-01-01", 7)]
    assert db.query("SELECT id, CAST(d AS CHAR), v FROM zd ORDER BY v") == [
        (1, "0000-00-00", 1), (1, "2024-00-00", 2), (1, "2024-01-00", 3), (2, "2024-00-15", 6)]
