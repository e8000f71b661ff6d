"""The dialect decisions, pure: which server a session is on (from what MySQL 8.0, 8.4, 9.x,
Percona Server, Percona XtraDB Cluster, Aurora MySQL and MariaDB answer, captured in
fixtures/servers.json) and the statement each one gets; COLUMN_TYPE as MySQL 8.0.19+ prints it
against MariaDB's and older servers'; MySQL-only functions in a guard; MySQL errors retried."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import mysql.connector
import pytest

import archive

SERVERS = {name: answer for name, answer in json.loads(
    (Path(__file__).parent / "fixtures" / "servers.json").read_text()).items() if not name.startswith("_")}


def dialect(name: str) -> archive.Dialect:
    """The Dialect of a captured server."""
    return archive.dialect_of(SERVERS[name])


@pytest.mark.parametrize("name, vendor, version, galera, shown", [
    ("mysql-8.0.36", "MySQL", (8, 0, 36), False, "MySQL 8.0.36"),
    ("mysql-8.4.3", "MySQL", (8, 4, 3), False, "MySQL 8.4.3"),
    ("mysql-9.1.0", "MySQL", (9, 1, 0), False, "MySQL 9.1.0"),
    ("percona-8.0.35", "Percona Server", (8, 0, 35), False, "Percona Server 8.0.35"),
    ("pxc-8.0.35", "Percona Server", (8, 0, 35), True, "Percona Server 8.0.35, Galera"),
    ("aurora-3.04.0", "Aurora MySQL", (8, 0, 28), False, "Aurora MySQL 3.04.0 (MySQL 8.0.28)"),
    ("aurora-3.01.0", "Aurora MySQL", (8, 0, 23), False, "Aurora MySQL 3.01.0 (MySQL 8.0.23)"),
    ("mariadb-10.11.19", "MariaDB", (10, 11, 19), False, "MariaDB 10.11.19"),
    ("mariadb-galera-10.6.16", "MariaDB", (10, 6, 16), True, "MariaDB 10.6.16, Galera"),
])
def test_the_server_is_told_from_its_variables(name, vendor, version, galera, shown):
    found = dialect(name)
    assert (found.vendor, found.version, found.galera, found.name) == (vendor, version, galera, shown)
    assert found.mysql == (vendor != "MariaDB")


def test_on_duplicate_key_update_uses_a_row_alias_from_mysql_8_0_19_and_values_elsewhere():
    for name in ("mysql-8.0.36", "mysql-8.4.3", "mysql-9.1.0", "percona-8.0.35", "aurora-3.01.0"):
        assert (dialect(name).row_alias, dialect(name).new_value("error_message")) == (
            " AS new", "new.`error_message`"), name
    for name in ("mysql-8.0.18", "mariadb-10.11.19", "mariadb-galera-10.6.16"):
        assert (dialect(name).row_alias, dialect(name).new_value("error_message")) == (
            "", "VALUES(`error_message`)"), name


def test_replication_is_read_with_the_statement_each_server_has():
    assert dialect("mariadb-10.11.19").replica_status_sql == "SHOW ALL SLAVES STATUS"
    assert dialect("mysql-8.4.3").replica_status_sql == "SHOW REPLICA STATUS"  # SHOW SLAVE is gone in 8.4
    assert dialect("aurora-3.01.0").replica_status_sql == "SHOW REPLICA STATUS"  # 8.0.23
    assert archive.dialect_of({"version": "8.0.21"}).replica_status_sql == "SHOW SLAVE STATUS"


def test_an_invisible_or_ignored_index_is_not_a_usable_key():
    assert dialect("mysql-8.4.3").index_usable_sql() == "IS_VISIBLE = 'YES'"  # MySQL 8.0's column
    assert dialect("mariadb-10.11.19").index_usable_sql() == "IGNORED = 'NO'"  # MariaDB 10.6's


def test_foreign_keys_of_hidden_tables_are_read_from_the_innodb_list_each_server_has():
    """MySQL 8.0 renamed INNODB_SYS_FOREIGN to INNODB_FOREIGN: asking for the MariaDB name fell back
    to REFERENTIAL_CONSTRAINTS, which omits the tables this user cannot see, so a hidden child table
    with ON DELETE CASCADE would have lost rows with every batch."""
    for name in ("mysql-8.0.36", "mysql-8.4.3", "mysql-9.1.0", "percona-8.0.35", "aurora-3.04.0"):
        table = dialect(name).foreign_keys_table
        assert "FROM information_schema.INNODB_FOREIGN WHERE REF_NAME = " in archive.referencing_keys_sql(
            "app", "rewards", table), name
    for name in ("mariadb-10.11.19", "mariadb-galera-10.6.16"):
        assert dialect(name).foreign_keys_table == "INNODB_SYS_FOREIGN", name
    assert "REFERENTIAL_CONSTRAINTS" in archive.referencing_keys_sql("app", "rewards", "")


def column(name: str, column_type: str, charset: str | None = None, collation: str | None = None,
           data_type: str | None = None) -> dict[str, Any]:
    """An information_schema.COLUMNS row as fetch_columns reads it."""
    return {"name": name, "data_type": data_type or column_type.split("(")[0].split()[0],
            "column_type": column_type, "charset": charset, "collation": collation, "max_length": None,
            "nullable": "NO", "col_default": None, "extra": "", "expression": None}


# The same table as MySQL 8.0.19+ prints it, and as MariaDB (or MySQL 5.7, before the upgrade) does.
MYSQL_8 = [column("id", "bigint unsigned"), column("n", "int"), column("flag", "tinyint(1)"),
           column("y", "year"), column("z", "int(5) unsigned zerofill"),
           column("name", "varchar(20)", "utf8mb3", "utf8mb3_general_ci"),
           column("kind", "enum('Int(11)','b')", "utf8mb4", "utf8mb4_bin", "enum")]
MARIADB = [column("id", "bigint(20) unsigned"), column("n", "int(11)"), column("flag", "tinyint(4)"),
           column("y", "year(4)"), column("z", "int(5) unsigned zerofill"),
           column("name", "varchar(20)", "utf8", "utf8_general_ci"),
           column("kind", "enum('Int(11)','b')", "utf8mb4", "utf8mb4_bin", "enum")]


def test_column_types_that_name_the_same_type_compare_equal():
    mysql_rows = [archive.normalized_column(c) for c in MYSQL_8]
    mariadb_rows = [archive.normalized_column(c) for c in MARIADB]
    for ours, theirs in zip(mysql_rows, mariadb_rows):
        assert archive.same_type(ours, theirs), (ours, theirs)
        assert ours["collation"] == theirs["collation"]
    found = archive.Preflight()
    copied, _ = archive.compare_columns(mysql_rows, mariadb_rows, found)
    assert found.problems == [] and len(copied) == len(MYSQL_8)
    assert mariadb_rows[-1]["column_type"] == "enum('Int(11)','b')"  # members are values: untouched


@pytest.mark.parametrize("source, archive_type", [
    ("int", "bigint"), ("int unsigned", "int"), ("year", "date"), ("varchar(20)", "varchar(21)"),
    ("enum('a','B')", "enum('a','b')"), ("decimal(10,2)", "decimal(10,0)"),
])
def test_types_that_differ_still_differ(source, archive_type):
    a, b = (archive.normalized_column(column("c", t)) for t in (source, archive_type))
    assert not archive.same_type(a, b)


def test_a_utf8_collation_matches_only_its_own_utf8mb3_name():
    a = archive.normalized_column(column("c", "varchar(5)", "utf8", "utf8_general_ci"))
    b = archive.normalized_column(column("c", "varchar(5)", "utf8mb3", "utf8mb3_unicode_ci"))
    assert a["charset"] == b["charset"] == "utf8mb3" and a["collation"] != b["collation"]


@pytest.mark.parametrize("guard", [
    "SOURCE_POS_WAIT('binlog.000001', 4) = 0", "WAIT_FOR_EXECUTED_GTID_SET('x:1', 1) = 0",
    "service_get_write_locks('ns', 'lock', 0) = 1", "VERSION_TOKENS_LOCK_EXCLUSIVE('t', 1) = 1",
    "group_replication_set_as_primary('uuid') IS NULL",
    "asynchronous_connection_failover_add_source('ch', 'h', 3306, '', 50) IS NULL",
])
def test_mysql_waiting_and_locking_functions_are_refused_in_a_guard(guard):
    with pytest.raises(ValueError, match="is not allowed"):
        archive.parse_guard(guard)


def test_read_only_after_a_failover_is_retried_on_the_next_address():
    demoted = mysql.connector.errors.get_mysql_exception(
        1290, "The MySQL server is running with the --super-read-only option so it cannot execute this "
              "statement", "HY000")
    assert archive.is_connection_error(demoted) and archive.is_transient(demoted)


def test_an_aurora_reader_is_refused_as_a_replica_unless_its_lag_comes_from_a_heartbeat():
    problem = archive.unwatchable_replica(dialect("aurora-3.04.0"), "mon@reader-1:3306", None)
    assert problem is not None and problem.startswith("[controls] replicas: mon@reader-1:3306 is an Aurora "
                                                      "MySQL 3.04.0 (MySQL 8.0.28) reader")
    assert "replica_lag_source = heartbeat:DB.TABLE" in problem
    assert archive.unwatchable_replica(dialect("aurora-3.04.0"), "r", ("percona", "heartbeat")) is None
    assert archive.unwatchable_replica(dialect("mysql-8.4.3"), "r", None) is None


def test_mysql_json_travels_as_utf8mb4_text_with_the_type_of_every_value_it_holds():
    json_column = archive.Column("doc", "json")
    literal = archive.literal_sql(json_column, "s")
    assert "CONCAT('_utf8mb4 X''', HEX(s.`doc`), ''' /* ', " in literal  # not X'..' alone: error 3144
    # the types follow in a comment the INSERT ignores and the destination's proof renders again
    assert f", ''' /* ', {archive.json_types_sql('s.`doc`')}, ' */')" in literal
    assert "JSON_TABLE(JSON_EXTRACT(s.`doc`, '$', '$**.*', '$**[*]'), '$[*]' COLUMNS" in literal
    text = archive.literal_sql(archive.Column("note", "varchar", "utf8mb4"), "s")
    assert "CONCAT('_utf8mb4 X''', HEX(s.`note`), '''')" in text  # MariaDB's JSON is text like this


def test_mysql_json_compares_the_type_of_every_nested_value_not_only_the_top_one():
    """[1] and [1.0] as MySQL prints a DOUBLE and a DECIMAL element, or [1] of an INTEGER and of an
    UNSIGNED, have the same text: the types of every value of one walk must be the same list."""
    same = archive.same_value_sql(archive.Column("doc", "json"), "s", "a")
    assert same.startswith("(CAST(s.`doc` AS BINARY) <=> CAST(a.`doc` AS BINARY) AND (s.`doc` IS NULL OR (")
    for side in ("s", "a"):
        assert (f"(SELECT IF(SUM(CHAR_LENGTH(JSON_TYPE(t.v)) + 1) > @@SESSION.group_concat_max_len, NULL, "
                f"GROUP_CONCAT(JSON_TYPE(t.v) ORDER BY t.n SEPARATOR ',')) FROM JSON_TABLE(JSON_EXTRACT("
                f"{side}.`doc`, '$', '$**.*', '$**[*]'), '$[*]' COLUMNS (n FOR ORDINALITY, v JSON PATH '$')) "
                "AS t)") in same
    # a list group_concat_max_len would cut short is NULL, and NULL = NULL is not true: not identical
    assert ") = (SELECT IF(" in same and "<=> (SELECT IF(" not in same


def test_no_statement_uses_what_mysql_deprecates_or_lacks():
    columns = (archive.Column("f", "float"), archive.Column("e", "enum"), archive.Column("b", "blob"))
    sql = archive.identical_expression(columns) + archive.row_literal_sql(columns, "s")
    assert "BINARY s." not in sql and "BINARY a." not in sql  # the BINARY operator (deprecated 8.0.27)
    assert "AS DOUBLE" not in sql  # CAST(... AS DOUBLE) needs MySQL 8.0.17


def test_mysql_locks_only_the_rows_it_writes_for_update_and_the_archive_for_share():
    """MySQL 8.0.22+ wants DELETE, UPDATE or LOCK TABLES for FOR UPDATE on every table it locks;
    the README grants only SELECT, INSERT on the archive. MariaDB has no OF: it keeps FOR UPDATE."""
    key = archive.key_type_from_column({"data_type": "int", "column_type": "int", "max_length": None})
    plan = archive.TablePlan("src", "arc", ("id",), (archive.Column("id", "int"),), key)
    mysql_8, mariadb = dialect("mysql-8.0.36"), dialect("mariadb-10.11.19")
    assert plan.classify_sql("s.`id` IN (1)", True, mysql_8).endswith(
        "WHERE s.`id` IN (1) FOR UPDATE OF s FOR SHARE OF a")
    assert plan.classify_sql("s.`id` IN (1)", True, mariadb).endswith("WHERE s.`id` IN (1) FOR UPDATE")
    assert plan.classify_sql("s.`id` IN (1)", False, mysql_8).endswith("WHERE s.`id` IN (1)")
    remote = archive.RemotePlan(plan)
    assert remote.lookup_sql("a.`id` IN (1)", True, mysql_8).endswith("WHERE a.`id` IN (1) FOR SHARE OF a")
    assert remote.lookup_sql("a.`id` IN (1)", True, mariadb).endswith("WHERE a.`id` IN (1) FOR UPDATE")
    watched = (archive.Watched("src", "DELETE"), archive.Watched("arc", "INSERT"))
    checks = archive.Definitions(watched)
    assert checks.lock_sql(mysql_8) == ("SELECT 1 FROM `src`, `arc` WHERE FALSE FOR UPDATE OF `src` "
                                        "FOR SHARE OF `arc`")
    assert checks.lock_sql(mariadb) == "SELECT 1 FROM `src`, `arc` WHERE FALSE FOR UPDATE"
    only_archive = archive.Definitions((archive.Watched("arc", "INSERT"),))  # a destination's
    assert only_archive.lock_sql(mysql_8) == "SELECT 1 FROM `arc` WHERE FALSE FOR SHARE OF `arc`"


def test_the_test_server_is_told_apart_as_archive_py_tells_it(server, db):
    """What the mariadb_only marker asks; here, a real MariaDB (or the server of ARCHIVE_TEST_DSN)."""
    from throwaway_server import DSN_ENV_VAR, server_dialect
    found = server_dialect(server)
    version = db.query("SELECT VERSION()")[0][0]
    assert found.name.split(", ")[0].split(" ")[-1] in version or found.vendor == "Aurora MySQL"
    if not os.environ.get(DSN_ENV_VAR):
        assert found.vendor == "MariaDB" and not found.mysql
    assert found.index_usable_sql() in {"IGNORED = 'NO'", "IS_VISIBLE = 'YES'"}
    assert db.query(f"SELECT COUNT(*) FROM information_schema.STATISTICS WHERE {found.index_usable_sql()} "
                    "AND TABLE_SCHEMA = 'mysql' AND TABLE_NAME = 'db'")[0][0] > 0  # the column exists


JSON_PAIRS = [  # (source, archive, identical?): MariaDB's JSON is text, so these differ by text too
    ('{"a": [1, {"b": 1.5}], "c": "x"}', '{"a": [1, {"b": 1.5}], "c": "x"}', 1),
    ("[1]", "[1.0]", 0), ('{"a": 1}', '{"a": "1"}', 0), ("[[1, 2], [3]]", "[[1, 2], [3]]", 1),
    (None, None, 1), (None, "[]", 0), ("1", "1", 1), ("[]", "{}", 0),
]


def test_the_json_walk_runs_on_a_real_server_and_its_literal_inserts_and_proves_again(server, db):
    """The MySQL JSON statements (same_value_sql, literal_sql of a `json` column), run on this
    MariaDB, whose JSON_TABLE, JSON_EXTRACT paths and JSON_TYPE are MySQL's: the comparison holds
    for equal values only, the walk lists every value's type, and a row literal with its types'
    comment inserts, and renders the same literal from what was stored."""
    from throwaway_server import DSN_ENV_VAR
    if os.environ.get(DSN_ENV_VAR):
        pytest.skip("the columns are MariaDB's JSON text, not MySQL's JSON")
    for table in ("s", "a", "c"):
        db.execute(f"CREATE TABLE `{table}` (id INT PRIMARY KEY, doc LONGTEXT NULL)")
    db.executemany("INSERT INTO s VALUES (%s, %s)", [(i, pair[0]) for i, pair in enumerate(JSON_PAIRS)])
    db.executemany("INSERT INTO a VALUES (%s, %s)", [(i, pair[1]) for i, pair in enumerate(JSON_PAIRS)])
    column = archive.Column("doc", "json")
    same = db.query(f"SELECT s.id, COALESCE({archive.same_value_sql(column, 's', 'a')}, 0) FROM s "
                    "JOIN a ON a.id = s.id ORDER BY s.id")
    assert [flag for _, flag in same] == [pair[2] for pair in JSON_PAIRS]
    types = db.scalar(f"SELECT {archive.json_types_sql('s.doc')} FROM s WHERE id = 0")
    assert sorted(types.split(",")) == ["ARRAY", "DOUBLE", "INTEGER", "OBJECT", "OBJECT", "STRING"]
    literals = db.query(f"SELECT id, {archive.literal_sql(column, 's')} FROM s ORDER BY id")
    assert literals[0][1].endswith(f"' /* {types} */") and literals[4][1] == "NULL"
    db.execute("INSERT INTO c (id, doc) VALUES " + ", ".join(f"({i}, {text})" for i, text in literals))
    assert db.query(f"SELECT id, {archive.literal_sql(column, 'c')} FROM c ORDER BY id") == literals


GROUP = json.loads((Path(__file__).parent / "fixtures" / "group_replication.json").read_text())


def workers(name: str) -> list[dict[str, Any]]:
    """Captured applier worker rows, their times as the connector returns them (datetime or None)."""
    return [{key: dt.datetime.fromisoformat(value) if key != "applying" and value else value
             for key, value in row.items()} for row in GROUP["workers"][name]]


def group_lag(status: str, member: str | None, worker_rows: str) -> tuple[float | None, str]:
    """replica_lag_from on captured rows of a Group Replication member."""
    return archive.replica_lag_from(GROUP["status"][status], GROUP["member"][member] if member else None,
                                    workers(worker_rows), "mon@gr2:3306")


def test_a_group_replication_secondary_has_a_lag_not_an_unknown_one():
    """Its channels' Seconds_Behind_Source is NULL: read that way it was 'lag unknown' at every look,
    and every run paused until replica_timeout and ended exit 6."""
    assert group_lag("group_secondary", "idle", "idle") == (
        0.0, ("Group Replication SECONDARY, ONLINE: the age of the oldest transaction its applier has "
              "not applied"))
    assert group_lag("group_secondary", "busy", "applying")[0] == 12.5  # the oldest being applied
    assert group_lag("group_secondary", "busy", "between_two")[0] == 4.0  # the newest applied: the queued
    # are younger


def test_a_group_member_that_is_not_online_or_not_timed_has_an_unknown_lag():
    assert group_lag("group_secondary", "recovering", "applying")[0] is None
    assert group_lag("group_secondary", "busy", "not_timed")[0] is None


def test_a_group_member_without_performance_schema_is_refused_naming_the_heartbeat():
    with pytest.raises(archive.ArchiveError, match=r"mon@gr2:3306 is a Group Replication member .* "
                                                   r"set replica_lag_source = heartbeat:DB\.TABLE"):
        group_lag("group_secondary", None, "idle")


def test_a_replica_lags_by_its_slowest_channel_and_says_what_it_watched():
    lag, watched = group_lag("group_secondary_with_async_channel", "busy", "applying")
    assert lag == 12.5 and watched.startswith("Seconds_Behind_Source of 1 channel; Group Replication")
    assert group_lag("group_secondary_with_async_channel", "idle", "idle")[0] == 7.0
    assert archive.replica_lag_from(GROUP["status"]["async_replica"], None, [], "r") == (
        3.0, "Seconds_Behind_Source of 1 channel")
    assert archive.replica_lag_from([], None, [], "r") == (None, "no replication channel")
    offline = {"state": "OFFLINE", "role": "", "queued": 0}  # the plugin installed, not started
    mixed = GROUP["status"]["group_secondary_with_async_channel"]
    assert archive.replica_lag_from(mixed, offline, [], "r") == (
        7.0, "Seconds_Behind_Source of 1 channel; Group Replication member, OFFLINE: not started")
    assert archive.replica_lag_from(GROUP["status"]["group_secondary"], offline, [], "r")[0] is None
    stopped = [{"Connection_name": "", "Seconds_Behind_Master": None}]  # MariaDB's, SQL thread stopped
    assert archive.replica_lag_from(stopped, None, [], "r") == (None, "Seconds_Behind_Master of 1 channel")


def test_a_json_type_list_group_concat_would_cut_is_never_identical_nor_copied(server, db):
    """Cut at group_concat_max_len, two lists that differ after the cut would read the same."""
    from throwaway_server import DSN_ENV_VAR
    if os.environ.get(DSN_ENV_VAR):
        pytest.skip("the columns are MariaDB's JSON text, not MySQL's JSON")
    for table in ("s", "a"):
        db.execute(f"CREATE TABLE `{table}` (id INT PRIMARY KEY, doc LONGTEXT NULL)")
        db.execute(f"INSERT INTO `{table}` VALUES (1, '[1]'), (2, '[1, 2, 3, 4, 5]')")
    db.execute("SET SESSION group_concat_max_len = 30")  # ARRAY,INTEGER,... of [1, 2, 3, 4, 5] is 45
    column = archive.Column("doc", "json")
    found = db.query(f"SELECT s.id, COALESCE({archive.same_value_sql(column, 's', 'a')}, 0), "
                     f"{archive.literal_sql(column, 's')} IS NULL FROM s JOIN a ON a.id = s.id ORDER BY s.id")
    assert found == [(1, 1, 0), (2, 0, 1)]  # a NULL literal is a row refused as too large to copy


def test_a_copy_that_differs_with_mysql_json_names_the_types_json_text_cannot_carry():
    def hint(*columns: archive.Column) -> str:
        plan = archive.TablePlan("t", "t_archive", ("id",), columns, archive.KeyType("int"))
        return archive.json_hint(plan)
    assert "DECIMAL, DATE, TIME, DATETIME, binary, UNSIGNED below 2^63" in hint(
        archive.Column("id", "int"), archive.Column("doc", "json"))
    assert hint(archive.Column("doc", "longtext", "utf8mb4")) == ""  # MariaDB's JSON travels as its bytes
