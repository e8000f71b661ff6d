"""Tests of the test harness itself: throwaway server, scratch databases, helpers."""

from __future__ import annotations

import configparser
import os
import shutil
import signal
import socket
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import mysql.connector
import pytest

from checks import make_job
from helpers import (
    REPO,
    REWARDS_COLUMNS,
    ScratchDatabase,
    cli_command,
    create_rewards_tables,
    insert_rewards,
    kill_process_group,
    reward_row,
    snapshot,
    unique_db_name,
    wait_until,
    waiting_for_a_metadata_lock,
    write_config,
    write_csv,
)
from throwaway_server import (
    ExternalServer,
    ServerControlUnavailable,
    ThrowawayMariaDB,
    ThrowawayMySQL,
    find_mysql_binary,
    server_from_dsn,
    session_server_class,
)


def test_server_answers(server: Any) -> None:
    """The session server accepts connections through connect() and connection_kwargs()."""
    conn = server.connect()
    cur = conn.cursor()
    cur.execute("SELECT 1, @@autocommit, @@character_set_client")
    assert cur.fetchall() == [(1, 1, "utf8mb4")]
    conn.close()
    raw = mysql.connector.connect(**server.connection_kwargs())
    cur = raw.cursor()
    cur.execute("SELECT VERSION()")
    row = cur.fetchone()
    assert isinstance(row, tuple) and row[0], row
    raw.close()


def test_db_fixture_isolates(db: ScratchDatabase, server: Any) -> None:
    """Each test gets its own empty database; another scratch db does not see its tables."""
    assert db.name.startswith("t_test_db_fixture_isolates_")
    assert db.query("SELECT DATABASE()") == [(db.name,)]
    assert db.query("SHOW TABLES") == []
    db.execute("CREATE TABLE t (id INT PRIMARY KEY)")
    assert db.execute("INSERT INTO t VALUES (1), (2)") == 2
    other = ScratchDatabase.create(server, unique_db_name("other"))
    try:
        assert other.query("SHOW TABLES") == []
        assert not other.table_exists("t")
    finally:
        other.drop()
    assert db.count("t") == 2
    assert db.connection_kwargs()["database"] == db.name


@pytest.mark.parametrize("name", ["x" * 200, "test_weird[ü-🎉 / `quote`]", "___"])
def test_unique_db_name_is_safe(name: str) -> None:
    """Generated database names are short, plain and unique."""
    first, second = unique_db_name(name), unique_db_name(name)
    assert first != second
    for n in (first, second):
        assert len(n) <= 64
        assert n.replace("_", "").isalnum() and n.isascii()


def test_snapshot_round_trips_tricky_values(db: ScratchDatabase) -> None:
    """4-byte UTF-8, JSON, NULL, DECIMAL and microseconds survive insert -> snapshot -> copy."""
    create_rewards_tables(db)
    ids = list(range(1, 43)) + [2**40, 9_000_000_000_000_000_000]
    assert insert_rewards(db, ids) == len(ids)
    src = snapshot(db, "rewards")
    assert src == {i: reward_row(i) for i in ids}
    values = list(src.values())
    assert any(r[3] is None for r in values) and any(r[4] is None for r in values)
    assert any(r[3] == "🎉 bonus 𝄞" for r in values)
    assert any(r[4] == '{"a": [1, 2], "ü": null}' for r in values)
    assert any(r[6].microsecond for r in values)
    assert any(r[5] < 0 for r in values) and all(isinstance(r[5], Decimal) for r in values)

    cols = ", ".join(REWARDS_COLUMNS)
    db.execute(f"INSERT INTO rewards_archives ({cols}) SELECT {cols} FROM rewards")
    assert snapshot(db, "rewards_archives") == src
    full = snapshot(db, "rewards_archives", columns="*")
    assert all(len(row) == len(REWARDS_COLUMNS) + 1 for row in full.values())
    assert snapshot(db, "rewards", columns=["id", "note"])[1] == (1, "🎉 bonus 𝄞")


def test_kill_and_restart_keep_committed_data(controllable_server: Any, db: ScratchDatabase) -> None:
    """kill() crashes the server; restart() brings it back with committed data intact."""
    server = controllable_server
    create_rewards_tables(db)
    insert_rewards(db, range(1, 501))
    before = snapshot(db, "rewards")
    old_pid = server.pid
    server.kill()
    assert server.pid is None and not server.is_running()
    with pytest.raises(mysql.connector.Error):
        server.connect(connection_timeout=2)
    server.restart()
    assert server.pid not in (None, old_pid)
    assert snapshot(db, "rewards") == before  # db.conn reconnects by itself


def test_kill_leaves_server_dead_for_next_test(controllable_server: Any) -> None:
    """Kill the server and do not restart it: the next test must find it running again."""
    controllable_server.kill()
    assert not controllable_server.is_running()


def test_server_revived_after_previous_test_killed_it(server: Any, db: ScratchDatabase) -> None:
    """The autouse fixture restarted the server killed by the previous test."""
    assert server.is_running()
    assert db.query("SELECT 1") == [(1,)]


@pytest.mark.server
def test_second_server_with_binlog_and_tcp(tmp_path: Path) -> None:
    """extra_args and port reach mariadbd; the context manager stops the server."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = ThrowawayMariaDB(tmp_path / "binlog", ["--log-bin", "--server-id=7"], port=port)
    with srv:
        pid = srv.pid
        assert pid is not None
        assert srv.connection_kwargs()["port"] == port
        conn = srv.connect()
        cur = conn.cursor()
        cur.execute("SELECT @@log_bin, @@server_id, @@port")
        assert cur.fetchall() == [(1, 7, port)]
        conn.close()
    assert srv.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    shutil.rmtree(srv.datadir)  # ~70 MB; pytest keeps recent tmp dirs


def test_server_from_dsn_and_external_refuses_control() -> None:
    """DSNs parse into connection kwargs; kill/restart on an external server raise."""
    tcp = server_from_dsn("mysql://app:p%40ss@db.example:3307/")
    assert tcp.connection_kwargs("x") == {
        "user": "app", "password": "p@ss", "host": "db.example", "port": 3307, "database": "x",
    }
    sock = server_from_dsn("mysql://root@localhost/?unix_socket=/run/mysqld/mysqld.sock")
    assert sock.connection_kwargs() == {
        "user": "root", "password": "", "unix_socket": "/run/mysqld/mysqld.sock",
    }
    assert isinstance(sock, ExternalServer)
    assert not sock.can_control and sock.pid is None
    for action in (sock.kill, sock.restart):
        with pytest.raises(ServerControlUnavailable, match="external server"):
            action()
    with pytest.raises(ValueError, match="unsupported DSN scheme 'postgres'"):
        server_from_dsn("postgres://x@y/")


def test_write_config_and_csv(tmp_path: Path, db: ScratchDatabase) -> None:
    """write_config applies section__key overrides; write_csv honours its options."""
    path = write_config(tmp_path, db, archive__batch_size=50, database__password=None,
                        archive__dry_run=True, extra__thing="x")
    cfg = configparser.ConfigParser()
    cfg.read(path, encoding="utf-8")
    assert cfg["database"]["database"] == db.name
    assert "password" not in cfg["database"]
    assert cfg["archive"]["batch_size"] == "50"
    assert cfg["archive"]["dry_run"] == "true"
    assert cfg["extra"]["thing"] == "x"
    assert Path(cfg["archive"]["csv_dir"]).is_dir() and Path(cfg["archive"]["log_dir"]).is_dir()
    kw = db.connection_kwargs()
    assert cfg["database"].get("unix_socket") == kw.get("unix_socket")
    with pytest.raises(ValueError, match="must be named section__key"):
        write_config(tmp_path, db, batch_size=1)

    plain = write_csv(tmp_path / "csv" / "a.csv", [1, 2, " 3 "])
    assert plain.read_bytes() == b"id\n1\n2\n 3 \n"
    fancy = write_csv(tmp_path / "csv" / "b.csv", [1, 2, 3], header="reward_id", crlf=True,
                      bom=True, extra_columns=["user"], blank_lines=True)
    assert fancy.read_bytes() == (
        b"\xef\xbb\xbfreward_id,user\r\n\r\n1,user-1\r\n2,user-2\r\n3,user-3\r\n\r\n\r\n\r\n"
    )
    assert write_csv(tmp_path / "c.csv", [7], header=None).read_text() == "7\n"


def test_cli_command_and_kill_process_group(tmp_path: Path) -> None:
    """cli_command builds the archive.py argv; kill_process_group ends a whole group."""
    argv = cli_command(tmp_path / "archive.ini", "--dry-run", 5)
    assert argv[0] == sys.executable and argv[1].endswith("archive.py")
    assert argv[2:] == [str(tmp_path / "archive.ini"), "--dry-run", "5"]
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    assert kill_process_group(proc, signal.SIGTERM) == -signal.SIGTERM


# --------------------------------------------------------------------------- nothing left in /tmp

def test_a_socket_directory_made_for_a_deep_base_directory_goes_when_the_process_exits(
        tmp_path: Path) -> None:
    """A base directory too deep for a unix socket path gets its socket in a mdbsock-* directory
    of TMPDIR, outside anything a fixture removes: the process that made it removes it at exit."""
    deep = tmp_path / ("d" * 120)
    code = ("import sys; sys.path[:0] = sys.argv[1:3]; from throwaway_server import ThrowawayMariaDB; "
            "print(ThrowawayMariaDB(sys.argv[3]).socket)")
    done = subprocess.run([sys.executable, "-c", code, str(REPO), str(REPO / "tests"), str(deep)],
                          env={**os.environ, "TMPDIR": str(tmp_path)}, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    socket_dir = Path(done.stdout.strip()).parent
    assert socket_dir.parent == tmp_path and socket_dir.name.startswith("mdbsock-"), socket_dir
    assert not socket_dir.exists(), f"{socket_dir} outlived the process that made it"


def test_a_killed_command_leaves_its_temporary_files_in_the_test_s_own_directory(
        db: ScratchDatabase, tmp_path: Path, spawn_cli: Any) -> None:
    """The CLI runs with TMPDIR in the config's directory (helpers._cli_env): the dry run's list of
    moved keys, left behind by a SIGKILL, is then removed with the test's tmp_path, not left in /tmp."""
    config, _ = make_job(db, tmp_path, range(1, 11), {"ids.csv": list(range(1, 11))})
    holder = db.connect()
    try:
        holder.cursor().execute("LOCK TABLES `rewards` WRITE")
        proc = spawn_cli(config, "--dry-run")
        wait_until(lambda: waiting_for_a_metadata_lock(db) or proc.poll() is not None, timeout=60,
                   message="the dry run to wait for the locked table")
        assert proc.poll() is None, proc.read_stderr()
        kill_process_group(proc)
    finally:
        holder.close()
    left = [path.name for path in (tmp_path / "cli-tmp").iterdir()]
    assert len(left) == 1 and left[0].startswith("archive-dry-run-"), left


def test_a_mysql_mysqld_on_path_makes_the_session_server_a_throwaway_mysql(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Told by its --version (Debian's MariaDB installs a mysqld too); initialised insecure, with
    no X Protocol listener and no redo log size option; the caller's options still come last."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "mysqld"
    fake.write_text("#!/bin/sh\necho '/usr/sbin/mysqld  Ver 8.4.3 for Linux on x86_64 (MySQL Community "
                    "Server - GPL)'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert find_mysql_binary() == str(fake) and session_server_class() is ThrowawayMySQL
    srv = ThrowawayMySQL(tmp_path / "srv", ["--server-id=7"])
    assert srv.install_command()[:4] == [str(fake), "--no-defaults", "--initialize-insecure",
                                         f"--datadir={srv.datadir}"]
    command = srv.command()
    assert command[:2] == [str(fake), "--no-defaults"] and command[-1] == "--server-id=7"
    assert "--mysqlx=OFF" in command and f"--secure-file-priv={srv.tmpdir}" in command
    assert not any(arg.startswith("--innodb-log-file-size") for arg in command)
    fake.write_text("#!/bin/sh\necho '/usr/sbin/mysqld  Ver 10.11.19-MariaDB-0+deb12u1 for "
                    "debian-linux-gnu'\n")
    assert find_mysql_binary() is None and session_server_class() is ThrowawayMariaDB
