"""Into another server by LOAD DATA LOCAL into a staging table: every odd value arrives exact through
the file, and a destination with local_infile OFF gets today's literal INSERTs, which --check names."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from helpers import ScratchDatabase, run_cli, write_config, write_csv
from test_destination import assert_exactly_once, dest_keys, remote_job

ODD_DDL = """CREATE TABLE t (
  id INT NOT NULL PRIMARY KEY,
  vb VARBINARY(64) NULL, bl BLOB NULL, tx TEXT CHARACTER SET utf8mb4 NULL,
  vc VARCHAR(32) CHARACTER SET utf8mb4 NULL, ch CHAR(8) CHARACTER SET latin1 NULL, js JSON NULL,
  dt DATETIME(6) NULL, tm TIME(6) NULL, ts TIMESTAMP(6) NULL DEFAULT NULL, bt BIT(9) NULL,
  fl FLOAT NULL, db DOUBLE NULL, de DECIMAL(30,10) NULL, yr YEAR NULL,
  en ENUM('NULL','\\\\N','a') NULL, st SET('x','y') NULL, ub BIGINT UNSIGNED NULL
) ENGINE=InnoDB"""

# The bytes a tab-separated file could get wrong: tab, line feed, carriage return, backslash,
# 0x00, the four letters NULL and the two characters backslash N, trailing spaces, 4-byte UTF-8.
ODD_ROWS = [
    ("(1, x'090a5c000d', x'5c4e', 'line 1\\nline 2\\ttab \\\\ back\\r\\n', 'NULL', 'a  ', "
     "'{\"k\": \"\\\\n\\\\t\", \"n\": null}', '2024-01-01 00:00:00.000001', '-838:59:59.000000', "
     "FROM_UNIXTIME(1700000000.5), b'111111111', 3.4028234e38, 1.0000000000000002, "
     "-12345678901234567890.0123456789, 0, 'NULL', 'x,y', 18446744073709551615)"),
    ("(2, x'', x'00', '', '\\\\N', '', '[]', '0000-00-00 00:00:00', '00:00:00', "
     "'0000-00-00 00:00:00', b'0', -1e-50, -0e0, 0, 2000, '\\\\N', '', 0)"),
    ("(3, x'4e554c4c', x'0a', 'trailing  ', 'x  ', 'é', '\"\\\\u0000\"', '9999-12-31 23:59:59.999999', "
     "'838:59:59.999999', FROM_UNIXTIME(2147483647.999999), b'1', 1.17549435e-38, 2.2250738585072014e-308, "
     "0.0000000001, 2155, 'a', 'y', 1)"),
    "(4, " + ", ".join(["NULL"] * 18) + ")",
    ("(5, x'5c5c5c', x'ff00fe', '😀\\\\', 'tab\\there', 'a\\tb', '{\"a\": 1.5e300}', '2024-02-29 12:00:00', "
     "'-00:00:00.000001', FROM_UNIXTIME(1), b'100000000', -1.5, -1e-320, -0.5, 1901, NULL, 'x', NULL)"),
]

# Every column by its bytes or exact value, NULL apart from every value (IS NULL first).
ODD_FINGERPRINT = (
    "SELECT id, HEX(vb), HEX(bl), HEX(tx), HEX(vc), HEX(ch), HEX(js), CAST(dt AS CHAR), CAST(tm AS CHAR), "
    "UNIX_TIMESTAMP(ts), bt + 0, CONCAT(CAST(fl AS DOUBLE), SIGN(ATAN2(fl, -1))), "
    "CONCAT(db, SIGN(ATAN2(db, -1))), CAST(de AS CHAR), yr + 0, en + 0, st + 0, ub, "
    "CONCAT_WS(',', vb IS NULL, bl IS NULL, tx IS NULL, vc IS NULL, ch IS NULL, js IS NULL, dt IS NULL, "
    "ts IS NULL, fl IS NULL, en IS NULL, ub IS NULL) FROM t ORDER BY id")


def loads(dest: ScratchDatabase) -> int:
    """LOAD DATA statements the destination server has run (all sessions)."""
    return int(dest.query("SHOW GLOBAL STATUS LIKE 'Com_load'")[0][1])


@pytest.fixture
def infile_off(dest_db: ScratchDatabase) -> Iterator[ScratchDatabase]:
    """The destination server with local_infile OFF for the test; ON again afterwards."""
    dest_db.execute("SET GLOBAL local_infile = 0")
    try:
        yield dest_db
    finally:
        dest_db.execute("SET GLOBAL local_infile = 1")


def test_every_odd_value_arrives_exact_through_the_staging_file(db, dest_db, tmp_path):
    for session in (db, dest_db):
        session.execute(ODD_DDL)
    conn = db.connect()
    cur = conn.cursor()
    cur.execute("SET SESSION time_zone = '+00:00', sql_mode = 'NO_ENGINE_SUBSTITUTION'")
    cur.execute("INSERT INTO t VALUES " + ", ".join(ODD_ROWS))
    conn.commit()
    conn.close()
    original = db.query(ODD_FINGERPRINT)
    assert len(original) == len(ODD_ROWS)
    write_csv(tmp_path / "csv" / "ids.csv", [row[0] for row in original])
    config = write_config(tmp_path, db, archive__source_table="t", archive__archive_table="t",
                          **dest_keys(dest_db))
    check = run_cli(config, "--check")
    assert "rows travel by LOAD DATA LOCAL into a staging table" in check.stdout, check.stdout
    before = loads(dest_db)
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert loads(dest_db) > before  # the rows came through the file, not as literals
    assert db.query("SELECT COUNT(*) FROM t")[0][0] == 0
    assert dest_db.query(ODD_FINGERPRINT) == original


def test_a_destination_with_local_infile_off_gets_literal_inserts_and_check_says_so(db, infile_off, tmp_path):
    config, original = remote_job(db, infile_off, tmp_path, range(1, 61), range(1, 41),
                                  archive__batch_size=15)
    check = run_cli(config, "--check")
    assert check.returncode == 0 and "Verdict: READY." in check.stdout, check.stdout
    assert ("rows travel as multi-row INSERTs split to fit it (local_infile is OFF on the destination: "
            "no LOAD DATA LOCAL staging)") in check.stdout, check.stdout
    before = loads(infile_off)
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert loads(infile_off) == before
    assert_exactly_once(db, infile_off, original, set(range(1, 41)))


def test_an_archived_key_is_a_duplicate_through_the_staging_table_too(db, dest_db, tmp_path):
    config, _ = remote_job(db, dest_db, tmp_path, range(1, 31), range(1, 31), archive__batch_size=10)
    # key 5 archived identical (a twin), key 7 archived with another note (a conflict)
    columns = "id, user_id, kind, note, payload, amount, created_at, updated_at"
    for key, note in ((5, None), (7, "'changed'")):
        row = db.query(f"SELECT {columns} FROM rewards WHERE id = %s", (key,))[0]
        values = list(row)
        marks = ", ".join(["%s"] * len(values))
        dest_db.execute(f"INSERT INTO rewards_archives ({columns}) VALUES ({marks})", values)
        if note:
            dest_db.execute(f"UPDATE rewards_archives SET note = {note} WHERE id = %s", (key,))
    before = loads(dest_db)
    result = run_cli(config)
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert loads(dest_db) > before
    assert [r[0] for r in db.query("SELECT id FROM rewards ORDER BY id")] == [7]
    assert dest_db.query("SELECT COUNT(*) FROM rewards_archives")[0][0] == 30
