"""Shared helpers for archive.py tests: scratch databases, rewards data, CSVs, configs, CLI runs.

Everything here is a plain function or class so tests (and the demo) can import
it; the pytest fixtures that use them live in ``conftest.py``.

Conventions:

* ``db`` arguments are ``ScratchDatabase`` objects (the ``db`` fixture), or
  anything with the same ``execute``/``query``/``connection_kwargs`` methods.
* Reward rows are a pure function of their id (``reward_row``), so a test can
  always recompute what a row should contain.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar, Union

import mysql.connector

import archive
from archive import quote_ident

REPO = Path(__file__).resolve().parent.parent
ARCHIVE_SCRIPT = REPO / "archive.py"

REWARD_KINDS = ("signup", "referral", "purchase", "bonus")

# Columns of the rewards source table, in table order; the archive table has
# these plus ``archived_at``.
REWARDS_COLUMNS = (
    "id", "user_id", "kind", "note", "payload", "amount", "created_at", "updated_at",
)

MAX_IDENTIFIER_LENGTH = 64

T = TypeVar("T")
Params = Union[Sequence[Any], Mapping[str, Any], None]  # a statement's parameters, if any


# --------------------------------------------------------------------------
# Queries on any connection
# --------------------------------------------------------------------------

def _fetch(conn: Any, sql: str, params: Params, dictionary: bool) -> list[Any]:
    """Run one statement on *conn*; return all its rows (none when it has no result set)."""
    cur = conn.cursor(dictionary=dictionary)
    try:
        cur.execute(sql, params)
        return list(cur.fetchall()) if cur.with_rows else []
    finally:
        cur.close()


def query(conn: Any, sql: str, params: Params = None) -> list[tuple[Any, ...]]:
    """Run one statement on *conn*; return its rows as tuples (empty when it returns none)."""
    return [tuple(row) for row in _fetch(conn, sql, params, dictionary=False)]


def query_dicts(conn: Any, sql: str, params: Params = None) -> list[dict[str, Any]]:
    """Run one statement on *conn*; return its rows as dicts keyed by column name."""
    return _fetch(conn, sql, params, dictionary=True)


def scalar(conn: Any, sql: str, params: Params = None) -> Any:
    """Run a query on *conn*; return the first column of the first row (or None)."""
    rows = query(conn, sql, params)
    return rows[0][0] if rows else None


# --------------------------------------------------------------------------
# Scratch databases
# --------------------------------------------------------------------------

def unique_db_name(test_name: str, prefix: str = "t_") -> str:
    """Return a fresh database name derived from *test_name*, at most 64 chars."""
    suffix = "_" + uuid.uuid4().hex[:6]
    base = re.sub(r"[^a-z0-9_]+", "_", test_name.lower()).strip("_") or "test"
    base = re.sub(r"_+", "_", base)
    room = MAX_IDENTIFIER_LENGTH - len(prefix) - len(suffix)
    return prefix + base[:room].rstrip("_") + suffix


class ScratchDatabase:
    """A database of one test's own on a test server, with small query helpers."""

    def __init__(self, server: Any, name: str) -> None:
        """Wrap the existing database *name* on *server* (see ``create``)."""
        self.server = server
        self.name = name
        self._conn: Any = None

    @classmethod
    def create(cls, server: Any, name: str) -> ScratchDatabase:
        """Create database *name* (utf8mb4) on *server* and return it."""
        conn = server.connect()
        try:
            cur = conn.cursor()
            cur.execute(
                f"CREATE DATABASE {quote_ident(name)} "
                "CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
            )
            cur.close()
        finally:
            conn.close()
        return cls(server, name)

    def __repr__(self) -> str:
        """Show the database name."""
        return f"<ScratchDatabase {self.name}>"

    @property
    def conn(self) -> Any:
        """Autocommit connection to this database, reopened if the old one died."""
        if self._conn is not None:
            try:
                alive = self._conn.is_connected()
            except mysql.connector.Error:
                alive = False
            if not alive:
                self._close_quietly()
        if self._conn is None:
            self._conn = self.connect()
        return self._conn

    def connect(self, **kw: Any) -> Any:
        """Open a new autocommit connection to this database (caller closes it)."""
        return self.server.connect(self.name, **kw)

    def connection_kwargs(self) -> dict[str, Any]:
        """Return mysql.connector.connect() keyword arguments for this database."""
        return self.server.connection_kwargs(self.name)

    def execute(self, sql: str, params: Params = None) -> int:
        """Run one statement; return its rowcount (any result set is discarded)."""
        cur = self.conn.cursor()
        try:
            cur.execute(sql, params)
            if cur.with_rows:
                cur.fetchall()
            return cur.rowcount
        finally:
            cur.close()

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        """Run one statement for many parameter rows; return the rowcount."""
        cur = self.conn.cursor()
        try:
            cur.executemany(sql, list(rows))
            return cur.rowcount
        finally:
            cur.close()

    def query(self, sql: str, params: Params = None) -> list[tuple[Any, ...]]:
        """Run a query and return all rows as tuples."""
        return query(self.conn, sql, params)

    def query_dicts(self, sql: str, params: Params = None) -> list[dict[str, Any]]:
        """Run a query and return all rows as dicts keyed by column name."""
        return query_dicts(self.conn, sql, params)

    def scalar(self, sql: str, params: Params = None) -> Any:
        """Run a query and return the first column of the first row (or None)."""
        return scalar(self.conn, sql, params)

    def count(self, table: str, where: str | None = None) -> int:
        """Return ``SELECT COUNT(*)`` of *table* (optionally with a WHERE clause)."""
        sql = f"SELECT COUNT(*) FROM {quote_ident(table)}"
        if where:
            sql += f" WHERE {where}"
        return int(self.scalar(sql))

    def table_exists(self, table: str) -> bool:
        """Return True if *table* exists in this database."""
        return bool(self.scalar(
            "SELECT COUNT(*) FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
            (self.name, table),
        ))

    def _close_quietly(self) -> None:
        """Close the cached connection, ignoring errors from a dead server."""
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None

    def close(self) -> None:
        """Close the cached connection."""
        self._close_quietly()

    def drop(self, lock_wait_timeout: int = 10) -> None:
        """Kill other sessions using this database, then drop it."""
        self._close_quietly()
        conn = self.server.connect()
        try:
            cur = conn.cursor()
            cur.execute(
                "SELECT ID FROM information_schema.PROCESSLIST "
                "WHERE DB = %s AND ID <> CONNECTION_ID()",
                (self.name,),
            )
            for (conn_id,) in cur.fetchall():
                try:
                    cur.execute(f"KILL {int(conn_id)}")
                except mysql.connector.Error:
                    pass  # already gone
            cur.execute(f"SET SESSION lock_wait_timeout = {int(lock_wait_timeout)}")
            cur.execute(f"DROP DATABASE IF EXISTS {quote_ident(self.name)}")
            cur.close()
        finally:
            conn.close()


@contextlib.contextmanager
def global_time_zone(db: ScratchDatabase, zone: str) -> Iterator[None]:
    """The server's time zone is *zone* for the sessions opened in the body (SET GLOBAL time_zone,
    as a DBA or a DST change would have it); what it was before afterwards."""
    before = db.scalar("SELECT @@GLOBAL.time_zone")
    db.execute("SET GLOBAL time_zone = %s", (zone,))
    try:
        yield
    finally:
        db.execute("SET GLOBAL time_zone = %s", (before,))


KEEP_ENV_VAR = "ARCHIVE_TEST_KEEP_SERVER"  # set: the test servers' data stays for a post-mortem


def remove_unless_kept(*paths: str | os.PathLike[str]) -> None:
    """Delete what test servers left in *paths* (data directories, base directories), unless
    KEEP_ENV_VAR is set: every fixture that starts a server calls it when it stops the server."""
    if not os.environ.get(KEEP_ENV_VAR):
        for path in paths:
            shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------
# Rewards tables and data
# --------------------------------------------------------------------------

REWARDS_COLUMN_DDL = """
  id BIGINT NOT NULL,
  user_id INT NOT NULL,
  kind ENUM('signup','referral','purchase','bonus') NOT NULL,
  note VARCHAR(191) CHARACTER SET utf8mb4 NULL,
  payload JSON NULL,
  amount DECIMAL(12,2) NOT NULL,
  created_at DATETIME(6) NOT NULL,
  updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP"""


def rewards_source_ddl(table: str = "rewards") -> str:
    """Return the CREATE TABLE statement of the rewards source table."""
    return (
        f"CREATE TABLE {quote_ident(table)} ({REWARDS_COLUMN_DDL},\n"
        "  PRIMARY KEY (id),\n  KEY idx_user_id (user_id),\n  KEY idx_created_at (created_at)\n"
        ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    )


def rewards_archive_ddl(table: str = "rewards_archives") -> str:
    """Return the CREATE TABLE statement of the rewards archive table."""
    return (
        f"CREATE TABLE {quote_ident(table)} ({REWARDS_COLUMN_DDL},\n"
        "  archived_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,\n"
        "  PRIMARY KEY (id),\n  KEY idx_user_id (user_id),\n  KEY idx_created_at (created_at)\n"
        ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    )


def create_rewards_tables(db: ScratchDatabase, source: str = "rewards",
                          archive: str | None = "rewards_archives") -> None:
    """Create the rewards source table and (unless *archive* is None) its archive table."""
    db.execute(rewards_source_ddl(source))
    if archive is not None:
        db.execute(rewards_archive_ddl(archive))


_NOTES = (
    None,
    "🎉 bonus 𝄞",
    "plain note",
    "O'Brien said \"hi\", then; left \\ back\\slash",
    "",
    "line one\nline two\ttabbed",
    "Grüße, ñandú — ünïcödé",
)
FIXED_PAYLOAD = '{"a": [1, 2], "ü": null}'
_CREATED_BASE = datetime(2021, 3, 1, 0, 0, 0)
_UPDATED_BASE = datetime(2022, 6, 1, 0, 0, 0)  # a month with no DST change anywhere common


def reward_row(key: int) -> tuple[Any, ...]:
    """Return the deterministic row (in ``REWARDS_COLUMNS`` order) for id *key*."""
    k = int(key)
    note = _NOTES[k % len(_NOTES)]
    payload: str | None = None  # k % 3 == 0
    if k % 3 == 1:
        payload = FIXED_PAYLOAD
    elif k % 3 == 2:
        payload = json.dumps({"id": k, "tags": ["x", "🎉"], "nested": {"n": k % 7}},
                             ensure_ascii=False)
    cents = (k * 7919) % 100_000_000
    amount = Decimal(cents).scaleb(-2)
    if k % 11 == 0:
        amount = -amount
    created_at = _CREATED_BASE + timedelta(
        seconds=(k * 61) % (4 * 365 * 86400), microseconds=(k * 7) % 1_000_000
    )
    updated_at = _UPDATED_BASE + timedelta(seconds=k % (28 * 86400))
    return (k, (k * 31) % 100_000 + 1, REWARD_KINDS[k % 4], note, payload, amount,
            created_at, updated_at)


def insert_rewards(db: ScratchDatabase, ids: Iterable[int], table: str = "rewards",
                   chunk_size: int = 5000) -> int:
    """Insert ``reward_row(id)`` for every id, in multi-row chunks; return rows inserted."""
    cols = ", ".join(REWARDS_COLUMNS)
    marks = ", ".join(["%s"] * len(REWARDS_COLUMNS))
    sql = f"INSERT INTO {quote_ident(table)} ({cols}) VALUES ({marks})"
    total = 0
    chunk: list[tuple[Any, ...]] = []
    for key in ids:
        chunk.append(reward_row(key))
        if len(chunk) >= chunk_size:
            db.executemany(sql, chunk)
            total += len(chunk)
            chunk = []
    if chunk:
        db.executemany(sql, chunk)
        total += len(chunk)
    return total


def table_columns(db: ScratchDatabase, table: str) -> list[str]:
    """Return the column names of *table* in table order."""
    rows = db.query(
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
        (db.name, table),
    )
    return [r[0] for r in rows]


def snapshot(db: ScratchDatabase, table: str, columns: Sequence[str] | str | None = None,
             key: str = "id") -> dict[Any, tuple[Any, ...]]:
    """Return every row of *table* as ``{key value: row tuple}``.

    *columns* None means ``REWARDS_COLUMNS`` (so source and archive snapshots
    compare equal row for row), ``"*"`` means all of the table's columns, or
    give an explicit sequence.  *key* must be among the columns.
    """
    if columns is None:
        cols = list(REWARDS_COLUMNS)
    elif isinstance(columns, str):
        cols = table_columns(db, table) if columns == "*" else [columns]
    else:
        cols = list(columns)
    if key not in cols:
        raise ValueError(f"key column {key!r} not in {cols}")
    idx = cols.index(key)
    sql = (f"SELECT {', '.join(quote_ident(c) for c in cols)} FROM {quote_ident(table)} "
           f"ORDER BY {quote_ident(key)}")
    return {row[idx]: row for row in db.query(sql)}


# --------------------------------------------------------------------------
# CSV files and config files
# --------------------------------------------------------------------------

def write_csv(path: str | os.PathLike[str], ids: Iterable[Any], header: str | None = "id", *,
              crlf: bool = False, bom: bool = False, extra_columns: Sequence[str] = (),
              blank_lines: bool = False, encoding: str = "utf-8") -> Path:
    """Write a CSV of keys to *path* (parent dirs created) and return the path.

    Each id is written as ``str(id)`` (so strings like ``" 12 "`` or ``"x"``
    go in verbatim).  ``header=None`` writes no header row.  Options:
    ``crlf`` ends lines with CRLF; ``bom`` prepends a UTF-8 BOM;
    ``extra_columns`` adds columns after the key (header names given, values
    ``"<column>-<id>"``); ``blank_lines`` adds an empty line after the header,
    one after every 3rd data row and two at the end.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    newline = "\r\n" if crlf else "\n"
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator=newline)
    if header is not None:
        writer.writerow([header, *extra_columns])
        if blank_lines:
            buf.write(newline)
    for n, key in enumerate(ids, start=1):
        writer.writerow([str(key), *(f"{col}-{key}" for col in extra_columns)])
        if blank_lines and n % 3 == 0:
            buf.write(newline)
    if blank_lines:
        buf.write(newline * 2)
    data = buf.getvalue().encode(encoding)
    if bom:
        data = b"\xef\xbb\xbf" + data
    path.write_bytes(data)
    return path


def _config_value(value: Any) -> str:
    """Render a Python value as an INI value string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def text_log_files(log_dir: str | os.PathLike[str]) -> list[Path]:
    """archive.py's text logs in *log_dir*, oldest day first (archive.sorted_log_files), then any
    file with the log prefix but no valid date, so a misnamed log still counts as written."""
    dated = archive.sorted_log_files(Path(log_dir))
    return dated + sorted(set(Path(log_dir).glob(f"{archive.LOG_PREFIX}*.txt")) - set(dated))


def read_text_logs(log_dir: str | os.PathLike[str]) -> str:
    """Everything archive.py wrote to the text logs in *log_dir*."""
    return "".join(p.read_text(encoding="utf-8", errors="replace") for p in text_log_files(log_dir))


def write_config(tmp_path: str | os.PathLike[str], db: ScratchDatabase, *,
                 filename: str = "archive.ini", **overrides: Any) -> Path:
    """Write an archive.py INI config for *db* under *tmp_path* and return its path.

    Overrides are keyword arguments named ``section__key`` (two underscores):
    ``write_config(tmp_path, db, archive__batch_size=50, database__password=None)``.
    A value of None removes the key; an unknown section or key is added;
    values are written with ``str()`` (bools as ``true``/``false``).
    ``<tmp_path>/csv`` and ``<tmp_path>/logs`` are created.
    """
    base = Path(tmp_path)
    csv_dir = base / "csv"
    log_dir = base / "logs"
    csv_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    kw = db.connection_kwargs()
    database: dict[str, Any] = {}
    if kw.get("unix_socket"):
        database["unix_socket"] = kw["unix_socket"]
    else:
        database["host"] = kw["host"]
        database["port"] = kw["port"]
    database.update(user=kw.get("user", "root"), password=kw.get("password", ""),
                    database=db.name)
    sections: dict[str, dict[str, Any]] = {
        "database": database,
        "archive": {
            "source_table": "rewards",
            "archive_table": "rewards_archives",
            "key_column": "id",
            "csv_dir": csv_dir,
            "csv_pattern": "*.csv",
            "csv_column": "id",
            "batch_size": 100,
            "log_dir": log_dir,
        },
    }
    for name, value in overrides.items():
        section, sep, key = name.partition("__")
        if not sep or not section or not key:
            raise ValueError(f"override {name!r} must be named section__key")
        if value is None:
            sections.get(section, {}).pop(key, None)
        else:
            sections.setdefault(section, {})[key] = value
    lines: list[str] = []
    for section, values in sections.items():
        if lines:
            lines.append("")
        lines.append(f"[{section}]")
        lines += [f"{k} = {_config_value(v)}".rstrip() for k, v in values.items()]
    path = base / filename
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------
# Running the CLI
# --------------------------------------------------------------------------

def cli_command(config_path: str | os.PathLike[str], *args: Any, module: bool = False) -> list[str]:
    """Return the argv that runs archive.py with *config_path* and *args* (with *module*, as
    ``python -m archive``: _cli_env puts the repository on PYTHONPATH)."""
    program = ["-m", "archive"] if module else [str(ARCHIVE_SCRIPT)]
    return [sys.executable, *program, str(config_path), *map(str, args)]


def _cli_env(env: Mapping[str, str] | None, config_path: str | os.PathLike[str],
             module: bool = False) -> dict[str, str]:
    """Return the environment for a CLI run: ours, unbuffered, TMPDIR beside the config, plus *env*
    (with *module*, the repository on PYTHONPATH, so ``python -m archive`` finds it from anywhere).

    TMPDIR is ``cli-tmp`` in the config's directory (the test's tmp_path): a command killed
    there leaves its temporary files (the dry run's list of moved keys) with the test's own,
    which pytest removes, not in /tmp.
    """
    merged = dict(os.environ)
    merged["PYTHONUNBUFFERED"] = "1"
    tmp = Path(config_path).parent / "cli-tmp"
    tmp.mkdir(exist_ok=True)
    merged["TMPDIR"] = str(tmp)
    if module:
        merged["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), merged.get("PYTHONPATH")]))
    if env:
        merged.update(env)
    return merged


def run_cli(config_path: str | os.PathLike[str], *args: Any, timeout: float = 120,
            env: Mapping[str, str] | None = None,
            cwd: str | os.PathLike[str] | None = None,
            input: str | None = None, module: bool = False) -> subprocess.CompletedProcess[str]:
    """Run archive.py to completion and return the CompletedProcess (text output captured).

    ``cwd`` defaults to the config file's directory; ``env`` entries are added
    to the current environment; ``module`` runs it as ``python -m archive``.
    """
    return subprocess.run(
        cli_command(config_path, *args, module=module),
        capture_output=True, text=True, timeout=timeout, check=False,
        env=_cli_env(env, config_path, module), cwd=str(cwd or Path(config_path).parent),
        input=input, stdin=None if input is not None else subprocess.DEVNULL,
    )


# Runs archive.py as __main__ and, as the process exits, writes its peak RSS (the kernel's
# VmHWM, in kB) to the file named by $ARCHIVE_TEST_PEAK_RSS.
PEAK_RSS_WRAPPER = """\
import atexit, os, runpy, sys
def report():
    with open("/proc/self/status") as status, open(os.environ["ARCHIVE_TEST_PEAK_RSS"], "w") as out:
        out.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
atexit.register(report)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_cli_peak_rss(config_path: str | os.PathLike[str], *args: Any, timeout: float = 300
                     ) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run archive.py like run_cli; return the result and the process's peak RSS in kB.

    The peak is the process's own VmHWM, read as it exits: a child's ru_maxrss (os.wait4,
    RUSAGE_CHILDREN) would include this test process's RSS, which Linux carries across exec.
    """
    peak_file = Path(config_path).parent / f"peak-rss-{uuid.uuid4().hex[:8]}"
    result = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_WRAPPER, *cli_command(config_path, *args)[1:]],
        capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL,
        env=_cli_env({"ARCHIVE_TEST_PEAK_RSS": str(peak_file)}, config_path),
        cwd=str(Path(config_path).parent))
    return result, int(peak_file.read_text())


class CliProcess(subprocess.Popen[str]):
    """A Popen of archive.py that knows where its output files are."""

    stdout_path: Path | None = None
    stderr_path: Path | None = None

    def read_stdout(self) -> str:
        """Return what the process has written to its stdout file so far."""
        return self.stdout_path.read_text(errors="replace") if self.stdout_path else ""

    def read_stderr(self) -> str:
        """Return what the process has written to its stderr file so far."""
        return self.stderr_path.read_text(errors="replace") if self.stderr_path else ""


def start_cli(config_path: str | os.PathLike[str], *args: Any, stdout: Any = None,
              stderr: Any = None, env: Mapping[str, str] | None = None,
              cwd: str | os.PathLike[str] | None = None, module: bool = False) -> CliProcess:
    """Start archive.py (``module``: as ``python -m archive``) in its own process group and return
    the CliProcess (text mode).

    By default stdout and stderr go to fresh files ``cli-XXXXXXXX.out``/``.err``
    next to the config (``proc.stdout_path``, ``proc.read_stdout()``), so a
    chatty process never blocks on a full pipe; pass ``subprocess.PIPE``, a
    file object or DEVNULL to choose otherwise.  ``cwd`` defaults to the
    config's directory.  Signal it with ``proc.send_signal(...)``;
    ``kill_process_group(proc)`` ends it.
    """
    config_dir = Path(config_path).parent
    tag = uuid.uuid4().hex[:8]
    opened = []
    paths: dict[str, Path] = {}
    if stdout is None:
        paths["stdout"] = config_dir / f"cli-{tag}.out"
        stdout = open(paths["stdout"], "w", encoding="utf-8")
        opened.append(stdout)
    if stderr is None:
        paths["stderr"] = config_dir / f"cli-{tag}.err"
        stderr = open(paths["stderr"], "w", encoding="utf-8")
        opened.append(stderr)
    try:
        proc = CliProcess(
            cli_command(config_path, *args, module=module),
            stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, text=True,
            env=_cli_env(env, config_path, module), cwd=str(cwd or config_dir),
            start_new_session=True,
        )
    finally:
        for f in opened:
            f.close()  # the child keeps its own copy of the descriptor
    proc.stdout_path = paths.get("stdout")
    proc.stderr_path = paths.get("stderr")
    return proc


def kill_process_group(proc: subprocess.Popen[Any], sig: int = signal.SIGKILL,
                       timeout: float = 30) -> int | None:
    """Send *sig* to *proc*'s process group (if still running), wait, return its exit code."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            if sig != signal.SIGKILL:
                return kill_process_group(proc, signal.SIGKILL, timeout)
            raise
    return proc.returncode


def waiting_for_a_metadata_lock(db: ScratchDatabase) -> bool:
    """Whether a session on db's server is waiting for a metadata lock (a statement in flight)."""
    return bool(db.scalar("SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                          "WHERE STATE = 'Waiting for table metadata lock'"))


def silenced_mid_query(server: Any, db: ScratchDatabase, table: str, proc: CliProcess,
                       wait: float = 60) -> int | None:
    """Freeze `server` (SIGSTOP) while `proc` has a statement in flight on it (pinned there by a
    LOCK TABLES of `table` from another session); return proc's exit code, None if it still waits."""
    holder = db.connect()
    try:
        holder.cursor().execute(f"LOCK TABLES `{table}` WRITE")
        wait_until(lambda: waiting_for_a_metadata_lock(db) or proc.poll() is not None, timeout=60,
                   message="the command's statement to wait on the server")
        assert proc.poll() is None, proc.read_stderr()
        os.kill(server.pid, signal.SIGSTOP)
        try:
            return proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            return None
        finally:
            os.kill(server.pid, signal.SIGCONT)
    finally:
        holder.close()


def wait_for_a_lock_wait(db: ScratchDatabase, what: str, ended: Callable[[], bool] = lambda: False) -> None:
    """Wait until a transaction waits on a row lock (the run's batch, behind the row the test holds),
    or until `ended` (the run ended instead: the caller says how).

    Polled every 0.25 s: InnoDB refreshes INNODB_TRX only when nobody read it for 0.1 s, so a poll
    every 0.05 s read the table as it was at the first poll for ever (a CI timeout, the run waiting
    all along)."""
    wait_until(lambda: ended() or db.scalar("SELECT COUNT(*) FROM information_schema.INNODB_TRX "
                                            "WHERE trx_state = 'LOCK WAIT'"),
               timeout=60, interval=0.25, message=what)


def wait_until(predicate: Callable[[], T | None], timeout: float = 30, interval: float = 0.05,
               message: str = "condition") -> T:
    """Poll *predicate* until it returns a truthy value and return it; TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)
