"""Into another server, the values a text transport most easily gets wrong arrive exact: tab, line
feed, backslash, 0x00, the text NULL and backslash-N beside NULL, trailing spaces, JSON, fractions,
BIT, FLOAT and DOUBLE extremes, zero dates (kept from measuring LOAD DATA LOCAL staging, issue 25)."""

from __future__ import annotations

from helpers import run_cli, write_config, write_csv
from test_destination import dest_keys

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
    "(4, " + ", ".join(["NULL"] * 17) + ")",
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


def test_every_odd_value_arrives_exact_on_the_destination(db, dest_db, tmp_path):
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
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert db.query("SELECT COUNT(*) FROM t")[0][0] == 0
    assert dest_db.query(ODD_FINGERPRINT) == original
