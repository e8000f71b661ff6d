"""Grants and upgrades as a new user meets them: the README's admin block works as written on a
fresh database, --check is NOT READY whenever a needed CREATE, ALTER or write privilege is
missing, and a schema-1 database is upgraded for a least-privilege user by one --setup."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import archive
from checks import V1_SCHEMA
from helpers import (
    REPO,
    ScratchDatabase,
    create_rewards_tables,
    insert_rewards,
    run_cli,
    write_config,
    write_csv,
)

KEYS = list(range(1, 21))  # listed; the source has 1-30


def statements(sql: str) -> list[str]:
    """The statements of an SQL script, comments dropped."""
    return [s.strip() for s in re.sub(r"--.*$", "", sql, flags=re.M).split(";") if s.strip()]


def readme_admin_block(database: str, user: str, password: str, host: str = "localhost") -> list[str]:
    """The README's least-privilege block, statement by statement, for `database` and user@host;
    `SOURCE schema.sql` becomes schema.sql's own statements."""
    readme = (REPO / "README.md").read_text()
    block = readme.split("Least-privilege grants", 1)[1].split("```sql", 1)[1].split("```", 1)[0]
    done: list[str] = []
    for sql in statements(block):
        if sql == "SOURCE schema.sql":
            done += statements((REPO / "schema.sql").read_text())
            continue
        sql = re.sub(r"^USE app$", f"USE `{database}`", sql).replace(" app.", f" `{database}`.")
        done.append(sql.replace("'archiver'@'%'", f"'{user}'@'{host}'").replace("'...'", f"'{password}'"))
    return done


@pytest.fixture
def user(server: Any) -> Iterator[tuple[str, str, str]]:
    """A fresh user name, password and host (where the tests connect from); dropped afterwards."""
    name, password, host = f"g_{uuid.uuid4().hex[:8]}", "Grant-pw-1", server.client_host()
    yield name, password, host
    root = server.connect()
    try:
        root.cursor().execute(f"DROP USER IF EXISTS '{name}'@'{host}'")
    finally:
        root.close()


def as_root(server: Any, database: str, sqls: list[str]) -> None:
    """Run statements as the server's admin, in order, in `database`."""
    root = server.connect(database)
    try:
        cursor = root.cursor()
        for sql in sqls:
            cursor.execute(sql)
            if cursor.with_rows:
                cursor.fetchall()
    finally:
        root.close()


def job(tmp_path: Path, db: ScratchDatabase, user: tuple[str, str, str], **overrides: Any) -> Path:
    """A config running as `user`, with its key file."""
    write_csv(tmp_path / "csv" / "ids.csv", KEYS)
    return write_config(tmp_path, db, archive__batch_size=10, database__user=user[0],
                        database__password=user[1], **overrides)


def fails(output: str) -> list[str]:
    """The FAIL lines of --check."""
    return [line for line in output.splitlines() if line.startswith("FAIL: ")]


def test_the_readme_block_works_as_written_on_a_fresh_database(db, tmp_path, server, user):
    create_rewards_tables(db, archive=None)  # no archive table, no tracking tables
    insert_rewards(db, range(1, 31))
    as_root(server, db.name, readme_admin_block(db.name, *user))  # every statement succeeds, in order
    config = job(tmp_path, db, user)
    check = run_cli(config, "--check")
    assert check.returncode == 0 and "Verdict: READY." in check.stdout, check.stdout
    result = run_cli(config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert db.count("rewards") == 10 and db.count("rewards_archives") == 20
    assert db.query("SELECT DISTINCT status FROM process_logs") == [("COMPLETED",)]


def test_check_is_not_ready_when_the_tracking_tables_cannot_be_created(db, tmp_path, server, user):
    create_rewards_tables(db)
    insert_rewards(db, range(1, 31))
    where = f"'{user[0]}'@'{user[2]}'"
    as_root(server, db.name, [f"CREATE USER {where} IDENTIFIED BY '{user[1]}'",
                              f"GRANT SELECT, INSERT, UPDATE, DELETE ON `{db.name}`.* TO {where}",
                              f"GRANT PROCESS ON *.* TO {where}"])
    config = job(tmp_path, db, user)
    check = run_cli(config, "--check")
    assert check.returncode == 1 and "Verdict: NOT READY" in check.stdout, check.stdout
    assert [line.split(" (")[0] for line in fails(check.stdout)] == [
        f"FAIL: cannot CREATE tracking table {table}" for table in archive.TRACKING_TABLES], check.stdout
    assert "CREATE command denied" in check.stdout and "load schema.sql or run archive.py with --setup" \
        in check.stdout
    assert db.query("SHOW TABLES") == [("rewards",), ("rewards_archives",)]  # the probes created nothing
    assert "will be created by the first run" not in check.stdout
    as_root(server, db.name, [f"GRANT CREATE ON `{db.name}`.* TO {where}"])
    check = run_cli(config, "--check")
    assert check.returncode == 0 and fails(check.stdout) == [], check.stdout
    assert "will be created by the first run" in check.stdout


def test_a_schema_1_database_is_upgraded_for_a_least_privilege_user_by_one_setup(db, tmp_path, server, user):
    create_rewards_tables(db)
    insert_rewards(db, range(1, 31))
    as_root(server, db.name, statements(V1_SCHEMA))
    old_grants = [sql for sql in readme_admin_block(db.name, *user) if sql.startswith("CREATE USER")
                  or (sql.startswith("GRANT") and not re.search("conflict_logs|run_locks", sql))]
    as_root(server, db.name, old_grants)  # what a schema-1 user had: its tables exist
    config = job(tmp_path, db, user)
    check = run_cli(config, "--check")
    assert check.returncode == 1, check.stdout
    assert "note: tracking tables" not in check.stdout  # "the next run upgrades/creates them": it cannot
    refused = {line.split(":")[1].strip() for line in fails(check.stdout)}
    hint = "(as an admin, load schema.sql or run archive.py with --setup once; see the README's grants)"
    expected = {f"cannot CREATE tracking table {t} {hint}" for t in ("conflict_logs", "run_locks")}
    expected |= {f"cannot ALTER tracking table {t} to upgrade it from schema 1 {hint}"
                 for t in ("process_logs", "file_processing_logs", "batch_processing_logs")}
    assert refused >= expected, check.stdout
    result = run_cli(config)
    assert result.returncode == 1 and db.count("rewards_archives") == 0, result.stdout + result.stderr
    admin = write_config(tmp_path, db, filename="admin.ini")  # the same job as the admin
    setup = run_cli(admin, "--setup")
    assert setup.returncode == 0, setup.stdout + setup.stderr
    assert "created: tracking table conflict_logs\ncreated: tracking table run_locks\n" in setup.stdout
    assert f"MIGRATED: tracking tables to schema {archive.SCHEMA_VERSION}" in setup.stdout
    assert setup.stdout.endswith(f"are schema {archive.SCHEMA_VERSION}; a run needs only the README's "
                                 "grants now\n"), setup.stdout
    assert db.count("rewards_archives") == 0  # --setup moved nothing
    as_root(server, db.name, [sql for sql in readme_admin_block(db.name, *user) if sql.startswith("GRANT")])
    check = run_cli(config, "--check")
    assert check.returncode == 0 and "Verdict: READY." in check.stdout, check.stdout
    result = run_cli(config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert db.count("rewards") == 10 and db.count("rewards_archives") == 20


def grants_without_one() -> list[tuple[str, str]]:
    """(privilege, table) for every privilege the README grants on a table or *.*, but SLAVE MONITOR
    (only with [controls] replicas)."""
    block = readme_admin_block("app", "u", "pw")
    found = []
    for sql in block:
        match = re.match(r"GRANT (.+) ON (\S+) TO", sql)
        if match and match.group(1) != "SLAVE MONITOR":
            found += [(privilege, match.group(2)) for privilege in match.group(1).split(", ")]
    return found


def without(sqls: list[str], privilege: str, where: str) -> list[str]:
    """The statements with `privilege` dropped from the GRANT on `where` (and that GRANT, if it was
    its only one)."""
    done = []
    for sql in sqls:
        match = re.match(r"GRANT (.+) ON (\S+) (TO .*)", sql)
        if match and match.group(2) == where:
            kept = [p for p in match.group(1).split(", ") if p != privilege]
            if kept:
                done.append(f"GRANT {', '.join(kept)} ON {where} {match.group(3)}")
            continue
        done.append(sql)
    return done


@pytest.mark.parametrize("privilege, where", grants_without_one())
def test_check_is_not_ready_without_any_one_of_the_readme_grants(db, tmp_path, server, user,
                                                                 privilege, where):
    """A run that would fail on a privilege is never READY: each of the README's grants in turn left out."""
    create_rewards_tables(db, archive=None)
    insert_rewards(db, range(1, 31))
    target = where.replace("`app`.", f"`{db.name}`.")
    as_root(server, db.name, without(readme_admin_block(db.name, *user), privilege, target))
    check = run_cli(job(tmp_path, db, user), "--check")
    assert check.returncode == 1 and "Verdict: NOT READY" in check.stdout, check.stdout
    assert fails(check.stdout), check.stdout


def itself_as_replica(server: Any) -> str:
    """A [controls] replicas entry for the test server itself (user and password: the job's)."""
    kw = server.connection_kwargs()
    return (f"mysql://localhost/?unix_socket={kw['unix_socket']}" if "unix_socket" in kw
            else f"mysql://{kw['host']}:{kw['port']}")


def test_check_is_not_ready_without_the_replica_grant_when_it_watches_replicas(db, tmp_path, server, user):
    """[controls] replicas: SHOW REPLICA STATUS needs the README's SLAVE MONITOR (MariaDB 10.5.9+; its
    REPLICATION CLIENT no longer does), else every lag read was "unknown" and the run exit 6 after
    replica_timeout while --check failed on a bare 1227 (here the server watches itself)."""
    create_rewards_tables(db, archive=None)
    insert_rewards(db, range(1, 31))
    replica = itself_as_replica(server)
    block = readme_admin_block(db.name, *user)
    monitor = [sql for sql in block if "SLAVE MONITOR" in sql]
    as_root(server, db.name, [sql for sql in block if sql not in monitor])
    config = job(tmp_path, db, user, controls__replicas=replica, controls__replica_timeout="600")
    check = run_cli(config, "--check")
    assert check.returncode == 1 and "Verdict: NOT READY" in check.stdout, check.stdout + check.stderr
    assert "cannot read its lag, MySQL Error 1227" in check.stdout, check.stdout
    assert "GRANT SLAVE MONITOR (MariaDB) or REPLICATION CLIENT (MySQL) ON *.* to this user" in check.stdout
    result = run_cli(config)  # refused at its first lag read, not paused for replica_timeout
    assert result.returncode == 1 and "cannot read its lag" in result.stderr, result.stdout + result.stderr
    assert db.count("rewards_archives") == 0
    as_root(server, db.name, monitor)
    check = run_cli(config, "--check")
    assert check.returncode == 0 and "replica: " in check.stdout, check.stdout


def test_check_is_not_ready_when_the_heartbeat_table_cannot_be_read(db, tmp_path, server, user):
    """replica_lag_source = heartbeat:DB.TABLE: without SELECT on pt-heartbeat's table every lag read
    was "unknown", so every run paused until replica_timeout (exit 6), and --check did not look."""
    create_rewards_tables(db, archive=None)
    insert_rewards(db, range(1, 31))
    db.execute("CREATE TABLE heartbeat (ts VARCHAR(26) NOT NULL, "  # pt-heartbeat's, in short
               "server_id INT UNSIGNED NOT NULL PRIMARY KEY)")
    db.execute("INSERT INTO heartbeat VALUES (UTC_TIMESTAMP(6), @@server_id)")
    replica = itself_as_replica(server)
    as_root(server, db.name, readme_admin_block(db.name, *user))
    config = job(tmp_path, db, user, controls__replicas=replica, controls__replica_timeout="600",
                 controls__replica_lag_source=f"heartbeat:{db.name}.heartbeat")
    check = run_cli(config, "--check")
    assert check.returncode == 1 and "Verdict: NOT READY" in check.stdout, check.stdout + check.stderr
    assert "cannot read its lag, MySQL Error 1142" in check.stdout, check.stdout
    assert f"GRANT SELECT ON `{db.name}`.`heartbeat` to this user" in check.stdout, check.stdout
    result = run_cli(config)  # refused at its first lag read, not paused for replica_timeout
    assert result.returncode == 1 and "cannot read its lag" in result.stderr, result.stdout + result.stderr
    assert db.count("rewards_archives") == 0
    as_root(server, db.name, [f"GRANT SELECT ON `{db.name}`.heartbeat TO '{user[0]}'@'{user[2]}'"])
    check = run_cli(config, "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert re.search(rf"lag [0-9]+s \(the heartbeat table {db.name}\.heartbeat\)", check.stdout), check.stdout
