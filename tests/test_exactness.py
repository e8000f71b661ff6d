"""A listed key moves exactly its own row, and "identical" means identical for every type.

Each test builds its own tables on the throwaway server, runs archive.py as cron
would, and compares every row of both tables before and after.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from helpers import ScratchDatabase, read_text_logs, run_cli, write_config, write_csv
from throwaway_server import find_mariadb_binary

KEY_TABLE = """CREATE TABLE {table} (
  code VARCHAR(32) CHARACTER SET {charset} COLLATE {collation} NOT NULL PRIMARY KEY,
  note VARCHAR(40) NULL
) ENGINE=InnoDB"""


def text_key_job(db: ScratchDatabase, tmp_path: Path, codes: list[str], listed: list[Any],
                 charset: str = "utf8mb4", collation: str = "utf8mb4_general_ci",
                 quote: bool = False) -> Path:
    """Source and archive keyed by a text column holding `codes`; a CSV listing `listed`."""
    for table in ("src", "arc"):
        db.execute(KEY_TABLE.format(table=table, charset=charset, collation=collation))
    db.executemany("INSERT INTO src (code, note) VALUES (%s, %s)", [(c, f"row {c!r}") for c in codes])
    lines = ["code"] + [('"' + str(k).replace('"', '""') + '"') if quote else str(k) for k in listed]
    (tmp_path / "csv").mkdir(parents=True, exist_ok=True)
    (tmp_path / "csv" / "keys.csv").write_bytes(("\n".join(lines) + "\n").encode())
    return write_config(tmp_path, db, archive__source_table="src", archive__archive_table="arc",
                        archive__key_column="code", archive__csv_column="code", archive__batch_size=50)


def codes_in(db: ScratchDatabase, table: str) -> list[str]:
    """The keys in a table, compared as bytes so collation cannot blur them."""
    return sorted(r[0] for r in db.query(f"SELECT code FROM {table} ORDER BY BINARY code"))


@pytest.mark.parametrize("charset, collation, stored, listed", [
    ("utf8mb4", "utf8mb4_general_ci", ["ABC", "résumé", "def ", "tag🐬"], ["abc", "resume", "def", "tag🐳"]),
    ("utf8mb4", "utf8mb4_bin", ["def "], ["def"]),
    ("latin1", "latin1_swedish_ci", ["Müller", "ABC"], ["Myller", "abc"]),
    ("utf8mb3", "utf8mb3_general_ci", ["Straße", "ABC"], ["Strasse", "abc"]),
])
def test_collation_equality_never_moves_an_unlisted_row(db, tmp_path, charset, collation, stored, listed):
    config = text_key_job(db, tmp_path, stored, listed, charset, collation)
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert codes_in(db, "src") == sorted(stored), "an unlisted row moved"
    assert codes_in(db, "arc") == []
    assert f"not found {len(listed)}" in result.stdout
    assert db.query("SELECT not_found, rows_archived FROM process_logs") == [(len(listed), 0)]
    assert db.query("SELECT not_found FROM batch_processing_logs") == [(len(listed),)]
    assert db.query("SELECT not_found FROM file_processing_logs") == [(len(listed),)]


def test_the_exact_keys_still_move_and_the_rest_is_counted_as_not_found(db, tmp_path):
    stored = ["ABC", "abd", "résumé", "def ", "tag🐬", "x"]
    config = text_key_job(db, tmp_path, stored, ["ABC", "résumé", "def ", "tag🐬", "abc", "nope"], quote=True)
    dry = json.loads(run_cli(config, "--dry-run", "--json").stdout)
    assert (dry["rows_to_archive"], dry["total"]["not_found"]) == (4, 2)
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert codes_in(db, "arc") == sorted(["ABC", "résumé", "def ", "tag🐬"])
    assert codes_in(db, "src") == ["abd", "x"]
    assert db.query("SELECT rows_archived, not_found FROM process_logs") == [(4, 2)]


def test_whitespace_inside_quotes_is_data(db, tmp_path):
    stored = ["x1", " x1", "tab", "tab\t", "nb", "nb\u00a0", "two\nlines", "two"]
    config = text_key_job(db, tmp_path, stored, [" x1", "tab\t", "nb\u00a0", "two\nlines"],
                          collation="utf8mb4_bin", quote=True)
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert codes_in(db, "arc") == sorted([" x1", "tab\t", "nb\u00a0", "two\nlines"])
    assert codes_in(db, "src") == sorted(["x1", "tab", "nb", "two"])


# --------------------------------------------------------------------------- key files as users make them

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
CNF, DATABASE, CSV_DIR = "/home/archiver/.archiver.cnf", "app", "/srv/archive/incoming/"


def readme_recipes() -> list[tuple[str, str, dict[str, str]]]:
    """The README's "Making key files" recipes: (language, code, its [archive] config lines)."""
    section = README.split("### Making key files\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```(\w+)\n(.*?)^```$", section, re.M | re.S)
    recipes = []
    for (language, code), (ini, lines) in zip(blocks[::2], blocks[1::2]):
        assert ini == "ini" and lines.startswith("[archive]\n"), lines
        recipes.append((language, code, dict(re.findall(r"^(\w+) = (.+)$", lines, re.M))))
    return recipes


RECIPES = readme_recipes()

# Listed (old) keys and their unlisted (new) near-twins: what each export format must keep apart.
OLD_KEYS = [" lead", "tail ", "   ", "x\\y", "tab\there", "new\nline", "cr\r", "crlf\r\n", "\\N", "NULL",
            'quote"s', "it's", "a,b", "Grüße 🐳", "e\u0301", "\\", "ends\\", "nul\0byte"]
NEW_KEYS = ["lead", "tail", " ", "", "x\\\\y", "tab\\there", "tab", "new\\nline", "cr", "crlf", "N", "nul",
            "nul\\0byte", "quotes", "é", "Grusse", "ends", None]


def test_the_readme_has_a_recipe_for_each_way_of_making_key_files():
    assert [(language, code.split()[0], config.get("csv_dialect"), config.get("csv_header"))
            for language, code, config in RECIPES] == [
        ("python", "import", None, None), ("sh", "mariadb", "mysql", "no"), ("sh", "mariadb", "mysql", "no"),
        ("sh", "mariadb", "mysql", None)]
    assert "INTO OUTFILE" in RECIPES[1][1] and " -B -N " in RECIPES[2][1] and " -B -e " in RECIPES[3][1]
    for _, code, _ in RECIPES:
        assert code.count(CNF) == 1 and code.count(CSV_DIR) == 1
        assert len(re.findall(rf"\b{DATABASE}\b", code)) == 1


def run_recipe(db: ScratchDatabase, tmp_path: Path, language: str, code: str) -> None:
    """Run a README recipe as written, with this test's credentials, database and csv_dir."""
    kw = db.connection_kwargs()
    where = (f"socket = {kw['unix_socket']}" if kw.get("unix_socket")
             else f"host = {kw['host']}\nport = {kw['port']}")
    cnf = tmp_path / "archiver.cnf"
    user, password = kw.get("user", "root"), kw.get("password", "")
    cnf.write_text(f"[client]\n{where}\nuser = {user}\npassword = {password}\n")
    code = code.replace(CNF, str(cnf)).replace(CSV_DIR, f"{tmp_path}/csv/")
    code = re.sub(rf"\b{DATABASE}\b", db.name, code)
    command = [sys.executable, "-c", code] if language == "python" else ["sh", "-c", code]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (code, done.stdout, done.stderr)


@pytest.mark.parametrize("key_type", ["VARCHAR(40) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin",
                                      "BIGINT"], ids=["text", "int"])
@pytest.mark.parametrize("recipe", range(len(RECIPES)), ids=["python-csv", "outfile", "B-N", "B"])
def test_each_readme_recipe_makes_a_key_file_that_moves_exactly_the_listed_rows(db, server, tmp_path, recipe,
                                                                                key_type):
    """Read as CSV, an OUTFILE or mariadb -B file moved the never-listed row x\\\\y and left x\\y, exit 0;
    a file written by Python's csv module with the key ' lead' moved the unlisted row 'lead'."""
    language, code, config = RECIPES[recipe]
    if "INTO OUTFILE" in code and not server.can_control:
        pytest.skip("INTO OUTFILE writes on the server's host: needs the throwaway server")
    if find_mariadb_binary("mariadb") is None and language == "sh":
        pytest.skip("the mariadb client is not installed (package mariadb-client)")
    text = key_type.startswith("VARCHAR")
    old: list[Any] = OLD_KEYS if text else list(range(1, 40))
    new: list[Any] = NEW_KEYS if text else list(range(40, 50))
    if language == "python" and text:  # RFC 4180 has no NUL: that key is not exported (and must stay)
        old, new = [k for k in old if k != "nul\0byte"], [*new, "nul\0byte"]
    for table in ("rewards", "rewards_archives"):
        db.execute(f"CREATE TABLE {table} (id {key_type} NULL, created_at DATETIME NOT NULL, "
                   "note VARCHAR(20) NULL, UNIQUE KEY ux_id (id)) ENGINE=InnoDB")
    db.executemany("INSERT INTO rewards (id, created_at, note) VALUES (%s, %s, %s)",
                   [(k, "2020-01-01", "old") for k in old] + [(k, "2999-01-01", "new") for k in new])
    job = write_config(tmp_path, db, **{f"archive__{key}": value for key, value in config.items()})
    run_recipe(db, tmp_path, language, code)
    dry = json.loads(run_cli(job, "--dry-run", "--json").stdout)
    result = run_cli(job)
    assert result.returncode == 0, (result.stdout, result.stderr)
    stored = "CAST(id AS BINARY)" if text else "id"  # the stored bytes: no collation, no conversion

    def rows_in(table: str) -> list[Any]:
        return sorted((r[0] for r in db.query(f"SELECT {stored} FROM {table}")), key=repr)

    def as_stored(keys: list[Any]) -> list[Any]:
        return sorted((k.encode() if isinstance(k, str) else k for k in keys), key=repr)

    assert rows_in("rewards_archives") == as_stored(old)
    assert rows_in("rewards") == as_stored(new)
    assert db.query("SELECT rows_archived, not_found FROM process_logs") == [(len(old), 0)]
    assert (dry["rows_to_archive"], dry["total"]["not_found"]) == (len(old), 0)


def test_an_outfile_with_a_null_key_is_rejected_naming_the_line(db, server, tmp_path):
    if not server.can_control:
        pytest.skip("INTO OUTFILE writes on the server's host: needs the throwaway server")
    _, code, config = RECIPES[1]
    for table in ("rewards", "rewards_archives"):
        db.execute(f"CREATE TABLE {table} (id INT NULL, created_at DATETIME NOT NULL, UNIQUE KEY ux (id))")
    db.execute("INSERT INTO rewards VALUES (1, '2020-01-01'), (NULL, '2020-01-02'), (3, '2020-01-03')")
    job = write_config(tmp_path, db, **{f"archive__{key}": value for key, value in config.items()})
    run_recipe(db, tmp_path, "sh", code)
    result = run_cli(job)
    assert result.returncode == 4, (result.stdout, result.stderr)
    assert "rewards-old.csv line " in result.stderr and "\\N is NULL" in result.stderr
    assert db.count("rewards") == 3 and db.count("rewards_archives") == 0


def test_sql_client_syntax_in_keys_and_file_names_is_data(db, tmp_path):
    # mysql-connector-python rewrites a statement in which it sees `delimiter <x>` outside
    # quotes, and its quote scan ignores backslash escapes: a key it had quoted as
    # 'x\' delimiter $ \'' came out as the different key "x';\n'".
    listed, rewritten = "x' delimiter $ '", "x';\n'"
    config = text_key_job(db, tmp_path, [], [listed], quote=True)
    for code in (listed, rewritten, "y"):  # inserted as hex, out of the driver's reach
        db.execute(f"INSERT INTO src (code, note) VALUES (_utf8mb4 X'{code.encode().hex()}', 'row')")
    name = "keys delimiter $ '.csv"
    (tmp_path / "csv" / "keys.csv").rename(tmp_path / "csv" / name)
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert codes_in(db, "arc") == [listed]
    assert codes_in(db, "src") == sorted([rewritten, "y"])
    assert db.query("SELECT file_name, status FROM file_processing_logs") == [(name, "COMPLETED")]
    assert run_cli(config).returncode == 0 and codes_in(db, "arc") == [listed]


def test_a_key_the_column_cannot_hold_rejects_its_file_before_any_batch(db, tmp_path):
    config = text_key_job(db, tmp_path, ["Lodz", "ok1", "ok2"], ["ok1", "Łódź"], "latin1",
                          "latin1_swedish_ci")
    (tmp_path / "csv" / "later.csv").write_text("code\nok2\n")
    result = run_cli(config)
    assert result.returncode == 4, (result.stdout, result.stderr)
    assert "keys.csv line 3" in result.stderr and "latin1 column cannot hold" in result.stderr
    assert codes_in(db, "arc") == ["ok2"], "the later file must still run"
    assert codes_in(db, "src") == ["Lodz", "ok1"], "nothing of the rejected file may move"
    assert db.query("SELECT file_name, status FROM file_processing_logs ORDER BY id") == [
        ("keys.csv", "FAILED"), ("later.csv", "COMPLETED")]
    again = run_cli(config)
    assert again.returncode == 4 and codes_in(db, "arc") == ["ok2"]


def test_binary_uuid_keys_are_listed_in_hex(db, tmp_path):
    db.execute("CREATE TABLE src (id BINARY(16) NOT NULL PRIMARY KEY, note VARCHAR(20))")
    db.execute("CREATE TABLE arc LIKE src")
    keys = [bytes.fromhex(f"{n:02x}" * 16) for n in (1, 2, 3)]
    db.executemany("INSERT INTO src VALUES (%s, %s)", [(k, k.hex()[:6]) for k in keys])
    db.execute("INSERT INTO src VALUES (%s, 'padded')", (b"\x01\x02" + b"\x00" * 14,))
    write_csv(tmp_path / "csv" / "ids.csv", ["0x" + keys[0].hex(), keys[2].hex().upper()])
    config = write_config(tmp_path, db, archive__source_table="src", archive__archive_table="arc")
    assert "Verdict: READY." in run_cli(config, "--check").stdout
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert sorted(r[0] for r in db.query("SELECT id FROM arc")) == [keys[0], keys[2]]
    write_csv(tmp_path / "csv" / "short.csv", ["0x0102"])
    short = run_cli(config)
    assert short.returncode == 4 and "short.csv line 2" in short.stderr and "exactly 16" in short.stderr
    assert db.count("src") == 2


def test_auto_increment_id_0_is_archived_as_0(db, tmp_path):
    db.execute("CREATE TABLE src (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, note VARCHAR(20))")
    db.execute("CREATE TABLE arc LIKE src")
    db.execute("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_AUTO_VALUE_ON_ZERO')")
    db.execute("INSERT INTO src VALUES (0, 'zero'), (1, 'one'), (2, 'two')")
    write_csv(tmp_path / "csv" / "ids.csv", [0, 2])
    config = write_config(tmp_path, db, archive__source_table="src", archive__archive_table="arc")
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert db.query("SELECT id, note FROM arc ORDER BY id") == [(0, "zero"), (2, "two")]
    assert db.query("SELECT id, note FROM src") == [(1, "one")]


# --------------------------------------------------------------------------- every type

# (column, type, value in the source row, value in the archived copy one step away)
STEPS = [
    ("ti", "TINYINT", "1", "2"),
    ("su", "SMALLINT UNSIGNED", "65534", "65535"),
    ("mi", "MEDIUMINT", "-1", "0"),
    ("i", "INT", "2147483646", "2147483647"),
    ("bu", "BIGINT UNSIGNED", "18446744073709551614", "18446744073709551615"),
    ("de", "DECIMAL(20,6)", "1.000001", "1.000002"),
    ("fl", "FLOAT", "0.1234567", "0.1234568"),
    ("fl", "FLOAT", "16777216", "16777218"),
    ("fl", "FLOAT", "-1e-50", "0"),  # FLOAT keeps -0, which equals 0 as a number
    ("fm", "FLOAT(7,4)", "1.2345", "1.2346"),
    ("db", "DOUBLE", "1", "1.0000000000000002"),
    ("bt", "BIT(64)", "b'1'", "b'11'"),
    ("da", "DATE", "'2024-01-01'", "'2024-01-02'"),
    ("tm", "TIME(6)", "'10:00:00.000001'", "'10:00:00.000002'"),
    ("dt", "DATETIME(6)", "'2024-01-01 00:00:00.000001'", "'2024-01-01 00:00:00.000002'"),
    # DST: the same wall time, an hour apart
    ("ts", "TIMESTAMP(6) NULL", "FROM_UNIXTIME(1698539400)", "FROM_UNIXTIME(1698543000)"),
    ("ts", "TIMESTAMP(6) NULL", "FROM_UNIXTIME(1700000000.000001)", "FROM_UNIXTIME(1700000000.000002)"),
    ("yr", "YEAR", "2001", "2002"),
    ("ch", "CHAR(10) COLLATE utf8mb4_general_ci", "'abc'", "'ABC'"),
    ("vc", "VARCHAR(20) COLLATE utf8mb4_general_ci", "'abc'", "'abc '"),
    ("vl", "VARCHAR(20) CHARACTER SET latin1", "'e'", "'é'"),
    ("bn", "BINARY(4)", "x'00000001'", "x'00000002'"),
    ("vb", "VARBINARY(8)", "x'01'", "x'0100'"),
    ("tx", "TEXT", "'a'", "'A'"),
    ("tx", "TEXT", "NULL", "''"),
    ("bl", "BLOB", "x'00'", "x'0000'"),
    ("en", "ENUM('','a','b')", "''", "'zz'"),  # an invalid value is stored as index 0
    ("st", "SET('x','y')", "'x'", "'x,y'"),
    ("js", "JSON", "'{\"a\": 1, \"b\": 2}'", "'{\"b\": 2, \"a\": 1}'"),
    ("ge", "POINT NULL", "ST_GeomFromText('POINT(1 2)')", "ST_GeomFromText('POINT(1 2.0000001)')"),
    ("i4", "INET4", "'10.0.0.1'", "'10.0.0.2'"),
    ("i6", "INET6", "'::1'", "'::2'"),
    ("uu", "UUID", "'123e4567-e89b-12d3-a456-426614174000'", "'123e4567-e89b-12d3-a456-426614174001'"),
]


MARIADB_TYPES = pytest.mark.mariadb_only(
    reason="STEPS has INET4, INET6 and UUID columns, MariaDB's types, and a JSON step (key order) that "
           "MySQL's JSON normalises away")


def step_columns() -> dict[str, str]:
    """Every column STEPS names, with the type of its first step, in order."""
    columns: dict[str, str] = {}
    for name, sql_type, _, _ in STEPS:
        columns.setdefault(name, sql_type)
    return columns


def step_table_ddl(table: str) -> str:
    """CREATE TABLE for *table*: an INT key `id` and every column of step_columns()."""
    ddl = ", ".join(f"`{n}` {t}" for n, t in step_columns().items())
    return f"CREATE TABLE {table} (id INT NOT NULL PRIMARY KEY, {ddl}) ENGINE=InnoDB"


STEP_HEX = ", ".join(f"HEX(`{n}`)" for n in step_columns())  # each step column's stored bytes


@pytest.fixture
def berlin_time(server):
    """The server's time zone set to Europe/Berlin (DST) for this test, then back to SYSTEM."""
    tool = find_mariadb_binary("mariadb-tzinfo-to-sql", "mysql_tzinfo_to_sql")
    if tool is None:
        pytest.skip("mariadb-tzinfo-to-sql not found (package mariadb-server)")
    assert tool is not None  # pytest is Any to mypy (see pyproject.toml): it cannot see skip() never returns
    conn = server.connect("mysql")
    cur = conn.cursor()
    cur.execute("SELECT COUNT(*) FROM time_zone_name WHERE Name = 'Europe/Berlin'")
    if not cur.fetchone()[0]:
        sql = subprocess.run([tool, "/usr/share/zoneinfo/Europe/Berlin", "Europe/Berlin"], check=True,
                             capture_output=True, text=True).stdout
        for statement in (s for s in sql.split(";\n") if s.strip()):
            cur.execute(statement)
        conn.commit()
    cur.execute("SET GLOBAL time_zone = 'Europe/Berlin'")
    try:
        yield
    finally:
        cur.execute("SET GLOBAL time_zone = 'SYSTEM'")
        conn.close()


@MARIADB_TYPES
def test_a_one_step_difference_in_any_type_is_a_conflict(db, tmp_path, berlin_time):
    for table in ("src", "arc"):
        db.execute(step_table_ddl(table))
    conn = db.connect()
    cur = conn.cursor()
    # UTC here: in Berlin, FROM_UNIXTIME of the second 02:30 on the DST night maps back to the first.
    cur.execute("SET SESSION time_zone = '+00:00', sql_mode = ''")  # '' lets the invalid ENUM in
    for key, (name, _, source_value, _) in enumerate(STEPS, start=1):
        cur.execute(f"INSERT INTO src (id, `{name}`) VALUES ({key}, {source_value})")
    twin = len(STEPS) + 1
    cur.execute(f"INSERT INTO src (id, ti, ts, tx) VALUES ({twin}, 7, FROM_UNIXTIME(1698539400), NULL)")
    cur.execute("INSERT INTO arc SELECT * FROM src")
    for key, (name, _, _, archived_value) in enumerate(STEPS, start=1):
        cur.execute(f"UPDATE arc SET `{name}` = {archived_value} WHERE id = {key}")
        assert cur.rowcount == 1, f"{name}: {archived_value} did not change the archived copy"
    conn.commit()
    conn.close()
    fingerprint = f"SELECT id, HEX(CONCAT_WS('|', {STEP_HEX})), UNIX_TIMESTAMP(ts), fl FROM {{}} ORDER BY id"
    before = {t: db.query(fingerprint.format(t)) for t in ("src", "arc")}
    write_csv(tmp_path / "csv" / "ids.csv", range(1, twin + 1))
    config = write_config(tmp_path, db, archive__source_table="src", archive__archive_table="arc")
    result = run_cli(config)
    assert result.returncode == 3, (result.stdout, result.stderr)
    kept = [r[0] for r in db.query("SELECT id FROM src ORDER BY id")]
    judged_identical = [f"{STEPS[k - 1][0]}: {STEPS[k - 1][2]} vs {STEPS[k - 1][3]}"
                        for k in range(1, twin) if k not in kept]
    assert not judged_identical, f"different values judged identical, source row deleted: {judged_identical}"
    assert kept == list(range(1, twin)), "the identical twin must leave the source"
    assert db.query("SELECT conflicts, duplicates FROM process_logs") == [(len(STEPS), 1)]
    after = {t: db.query(fingerprint.format(t)) for t in ("src", "arc")}
    assert after["arc"] == before["arc"]
    assert after["src"] == [row for row in before["src"] if row[0] != twin]


@MARIADB_TYPES
def test_every_type_is_copied_exactly(db, tmp_path, berlin_time):
    """The archived copy of a row of every type is the same stored value, not a rendering of it."""
    for table in ("src", "arc"):
        db.execute(step_table_ddl(table))
    conn = db.connect()
    cur = conn.cursor()
    cur.execute("SET SESSION time_zone = '+00:00', sql_mode = ''")
    for key, (name, _, source_value, archived_value) in enumerate(STEPS, start=1):
        cur.execute(f"INSERT INTO src (id, `{name}`) VALUES ({key}, {source_value})")
        cur.execute(f"INSERT INTO src (id, `{name}`) VALUES ({key + 100}, {archived_value})")
    conn.commit()
    conn.close()
    fingerprint = (f"SELECT id, {STEP_HEX}, UNIX_TIMESTAMP(ts), fl, "
                   "ATAN2(fl, -1), en + 0 FROM {table} ORDER BY id")
    original = db.query(fingerprint.format(table="src"))
    write_csv(tmp_path / "csv" / "ids.csv", [r[0] for r in original])
    result = run_cli(write_config(tmp_path, db, archive__source_table="src", archive__archive_table="arc"))
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert db.count("src") == 0
    assert db.query(fingerprint.format(table="arc")) == original


@pytest.mark.parametrize("source_type, archive_type, value", [
    ("ENUM('x','Y')", "ENUM('x','y')", "Y"),
    ("SET('x','Y')", "SET('x','y')", "x,Y"),
])
def test_enum_members_differing_only_in_case_alter_the_archived_row(db, tmp_path, source_type, archive_type,
                                                                    value):
    """Found by a red team: same_type() lowercases COLUMN_TYPE, so ENUM('x','Y') passes as
    ENUM('x','y'); the copy then stores 'y' for 'Y' and the source row is deleted: the archived row
    is not the row that left."""
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


def test_text_log_records_not_found_keys(db, tmp_path):
    config = text_key_job(db, tmp_path, ["a"], ["a", "b", "c"])
    result = run_cli(config)
    assert result.returncode == 0
    assert "not found 2" in read_text_logs(tmp_path / "logs")
