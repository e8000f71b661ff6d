"""Shared machinery of the benchmark: server, tables, reset/settle/verify, child runs, timing.

Everything here is used by several modes of ``bench/bench.py`` (see its docstring for what
each mode measures).  A ``Schema`` names one set of bench tables (source, archive, pristine
copy) in its own database, so the same reset/verify/contender code serves the 9-column
``rewards`` table and the wide ``documents`` table alike; an ``Env`` says which server (or
cluster) and which schema a contender runs against.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Union

REPO = Path(__file__).resolve().parent.parent
for _path in (REPO / "tests", REPO):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

# The tests' helpers (one implementation each of queries, CSV and config writing) and server.
# E402: these imports work only after the sys.path lines above.
from helpers import (  # noqa: E402 - needs sys.path above
    REWARDS_COLUMN_DDL,
    ScratchDatabase,
    query,
    scalar,
    write_csv,
)
from helpers import write_config as write_test_config  # noqa: E402 - needs sys.path above
from throwaway_server import ThrowawayMariaDB  # noqa: E402 - needs sys.path above

SERVER_ARGS = [
    "--innodb-buffer-pool-size=512M",
    "--innodb-flush-log-at-trx-commit=1",
    "--innodb-log-file-size=256M",
    "--local-infile=1",
    "--character-set-server=utf8mb4",
    "--collation-server=utf8mb4_general_ci",
]
ID_BASE = 1_000_000  # row ids are ID_BASE + step, + 2*step, ...; smaller keys never match a row
BATCHES = "bench_batches"        # (batch_no, lo, hi) ranges for the stored-procedure floor
STATEMENTS = "bench_statements"  # (batch_no, insert_sql, delete_sql) for the same-statement floor
DONE_STATUSES = "('COMPLETED','COMPLETED_WITH_DUPLICATES')"


@dataclass(frozen=True)
class Schema:
    """One set of bench tables in its own database: what contenders move and verify."""

    db: str
    source: str
    archive: str
    pristine: str
    columns: tuple[str, ...]   # data columns, in order (the archive adds archived_at)
    columns_ddl: str           # their definitions
    keys_ddl: str              # secondary keys of source and archive
    fill_sql: str              # INSERT INTO {pristine} ... with {rows}, {id_base}, {id_step}
    primary_key: str = "id"    # the key's columns (archive.py's key_column)
    partitions: str = ""       # the source's PARTITION BY clause, if any

    @property
    def ours(self) -> frozenset[str]:
        """Tables reset() keeps; every other table in db is archive.py's and is dropped."""
        return frozenset((self.source, self.archive, self.pristine, BATCHES, STATEMENTS))

    def table(self, name: str) -> str:
        """A table of this schema, qualified with its database."""
        return f"`{self.db}`.`{name}`"


REWARDS_COLUMNS = ("id", "user_id", "kind", "note", "payload", "amount",
                   "created_at", "updated_at", "status")
REWARDS_FILL = f"""
INSERT INTO {{pristine}} ({", ".join(REWARDS_COLUMNS)})
SELECT {{id_base}} + seq * {{id_step}},
       1 + (seq * 7919) % 50000,
       ELT(1 + seq % 4, 'signup', 'referral', 'purchase', 'bonus'),
       CASE WHEN seq % 5 = 0 THEN NULL
            ELSE CONCAT('reward #', seq,
                        IF(seq % 3 = 0, ' \U0001F389 félicitations', ''),
                        IF(seq % 11 = 0, ' \U0001F680', ''),
                        ' ', REPEAT('x', seq % 60)) END,
       CASE WHEN seq % 7 = 0 THEN NULL
            ELSE JSON_OBJECT('campaign', CONCAT('c', seq % 100),
                             'tags', JSON_ARRAY('a', 'b', seq % 13),
                             'ref', seq, 'msg', 'ok \U0001F389') END,
       (seq % 100000) / 100,
       TIMESTAMP('2022-01-01') + INTERVAL seq * 37 SECOND + INTERVAL seq % 1000000 MICROSECOND,
       TIMESTAMP('2022-01-02') + INTERVAL seq * 37 SECOND,
       seq % 3
FROM seq_1_to_{{rows}}
"""
REWARDS = Schema(
    db="bench", source="rewards", archive="rewards_archives", pristine="rewards_pristine",
    columns=REWARDS_COLUMNS,
    columns_ddl=REWARDS_COLUMN_DDL + ",\n  status TINYINT NOT NULL",  # the tests' table plus a 9th
    keys_ddl="KEY idx_user_id (user_id), KEY idx_created_at (created_at)",
    fill_sql=REWARDS_FILL)


class BenchError(RuntimeError):
    """A contender failed or produced wrong data."""


@dataclass
class Result:
    """Outcome of one measured contender run."""

    name: str
    seconds: float | None
    rows: int
    rss_kb: int | None = None
    note: str = ""
    times: list[float] = field(default_factory=list)

    @property
    def rows_per_s(self) -> float | None:
        """Throughput, or None when the run did not complete."""
        return self.rows / self.seconds if self.seconds else None

    @property
    def failed(self) -> bool:
        """True when this measurement failed (a skip is not a failure)."""
        return self.note.startswith("FAILED")


@dataclass
class Env:
    """Everything a contender needs: server, connection, paths, sizes, schema.

    ``hosts`` (a Galera cluster) replaces the unix socket in archive.py's config with a
    ``[database] host`` list; ``peers`` are connections to the other cluster nodes, which
    must catch up and settle too before a contender starts.
    """

    server: Any
    conn: Any
    workdir: Path
    ids_csv: Path
    rows: int
    archive_py: Path
    time_bin: str | None
    flags: list[str] = field(default_factory=list)
    pt_missing: str | None = None  # why pt-archiver cannot run, or None
    schema: Schema = REWARDS
    hosts: str | None = None
    peers: list[Any] = field(default_factory=list)


RunOutput = Union[float, tuple[float, Union[int, None]]]


@dataclass
class Contender:
    """One thing to time: a name, a run() returning seconds or (seconds, RSS KB).

    ``env`` (default: the one measure() gets) lets one measure() call interleave
    contenders on different servers.  ``prepare`` and ``check`` replace the reset before
    and the verification after the run (check returns the rows moved) when the data
    does not stay on env's server alone (``--dest``).
    """

    name: str
    run: Callable[[], RunOutput]
    moved: tuple[int, int] | None = None  # id range expected to move (default: all rows)
    env: Env | None = None
    prepare: Callable[[], None] | None = None
    check: Callable[[], int] | None = None


@dataclass(frozen=True)
class Mode:
    """A measurement beyond the main table: its flag, its options, and how to run it.

    run(env, args, ids) gets the main server's Env and the main table's sorted ids,
    prints its own table and returns Results (a FAILED note makes the bench exit 1).
    """

    flag: str  # the option without dashes: "history" for --history
    add_args: Callable[[argparse.ArgumentParser], None]
    run: Callable[[Env, argparse.Namespace, Sequence[int]], list[Result]]


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a number >= 0."""
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, not {value}")
    return value


def log(msg: str) -> None:
    """Print a progress line to stderr."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def chunks(seq: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    """Yield consecutive slices of seq of at most size items."""
    for i in range(0, len(seq), size):
        yield seq[i:i + size]


def status_value(conn: Any, name: str) -> int:
    """A numeric global status variable."""
    return int(query(conn, "SHOW GLOBAL STATUS LIKE %s", (name,))[0][1])


# --------------------------------------------------------------------------- setup

def start_server(workdir: Path) -> Any:
    """Start the throwaway MariaDB and check the settings we asked for took effect."""
    server = ThrowawayMariaDB(str(workdir / "server"), extra_args=list(SERVER_ARGS))
    server.start()
    conn = server.connect()
    got = query(conn, "SELECT @@version, @@innodb_flush_log_at_trx_commit, "
                      "@@innodb_buffer_pool_size, @@local_infile, @@innodb_doublewrite")[0]
    conn.close()
    log(f"server {got[0]}: flush_log_at_trx_commit={got[1]} "
        f"buffer_pool={int(got[2]) >> 20}M local_infile={got[3]} doublewrite={got[4]}")
    if int(got[1]) != 1:
        server.stop()
        raise BenchError("innodb_flush_log_at_trx_commit is not 1; extra_args were not applied")
    return server


def archive_ddl(schema: Schema) -> str:
    """CREATE TABLE for the schema's archive table: the data columns plus archived_at."""
    s = schema
    return (f"CREATE TABLE {s.table(s.archive)} ({s.columns_ddl},\n"
            f"  archived_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,\n"
            f"  PRIMARY KEY ({s.primary_key}), {s.keys_ddl}) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")


def create_schema(conn: Any, rows: int, id_step: int = 1, schema: Schema = REWARDS) -> None:
    """Create the schema's database and tables and fill the pristine copy once."""
    if not query(conn, "SELECT 1 FROM information_schema.ENGINES "
                       "WHERE ENGINE='SEQUENCE' AND SUPPORT IN ('YES','DEFAULT')"):
        raise BenchError("MariaDB Sequence engine not available (needed for seq_1_to_N)")
    s = schema
    query(conn, f"DROP DATABASE IF EXISTS `{s.db}`")
    query(conn, f"CREATE DATABASE `{s.db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci")
    query(conn, f"USE `{s.db}`")
    query(conn, f"CREATE TABLE {s.source} ({s.columns_ddl},\n  PRIMARY KEY ({s.primary_key}), {s.keys_ddl}"
                f") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 {s.partitions}")
    query(conn, archive_ddl(s))
    query(conn, f"CREATE TABLE {s.pristine} ({s.columns_ddl}, PRIMARY KEY ({s.primary_key}))"
                f" ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
    query(conn, f"CREATE TABLE {BATCHES} (batch_no INT NOT NULL PRIMARY KEY,"
                f" lo BIGINT NOT NULL, hi BIGINT NOT NULL) ENGINE=InnoDB")
    query(conn, f"CREATE TABLE {STATEMENTS} (batch_no INT NOT NULL PRIMARY KEY,"
                f" insert_sql MEDIUMTEXT NOT NULL, delete_sql MEDIUMTEXT NOT NULL) ENGINE=InnoDB")
    t0 = time.perf_counter()
    query(conn, s.fill_sql.format(pristine=s.pristine, rows=int(rows), id_base=ID_BASE,
                                  id_step=int(id_step)))
    log(f"filled {s.db}.{s.pristine} with {rows} rows in {time.perf_counter() - t0:.1f}s")


def pristine_ids(conn: Any, schema: Schema = REWARDS) -> list[int]:
    """Every pristine id, sorted."""
    return [r[0] for r in query(conn, f"SELECT id FROM {schema.table(schema.pristine)} ORDER BY id")]


def write_ids_csv(conn: Any, path: Path, schema: Schema = REWARDS) -> list[int]:
    """Write all pristine ids (sorted, header 'id') to path and return them."""
    ids = pristine_ids(conn, schema)
    write_csv(path, ids)
    return ids


# --------------------------------------------------------------------------- reset, settle, verify

def reset(conn: Any, schema: Schema = REWARDS, keep_tracking: bool = False) -> None:
    """Restore the source from the pristine copy, empty the archive, drop tracking tables
    (every table of the schema's database that is not ours) unless keep_tracking."""
    s = schema
    query(conn, f"USE `{s.db}`")
    if not keep_tracking:
        drop_foreign_tables(conn, s)
    query(conn, f"TRUNCATE TABLE {s.source}")
    query(conn, f"TRUNCATE TABLE {s.archive}")
    query(conn, f"INSERT INTO {s.source} SELECT * FROM {s.pristine}")
    settle(conn, s)


def drop_foreign_tables(conn: Any, schema: Schema) -> None:
    """Drop archive.py's tables (all but ours) in the schema's database."""
    foreign = [r[0] for r in query(conn, "SELECT TABLE_NAME FROM information_schema.TABLES "
                                         "WHERE TABLE_SCHEMA=%s", (schema.db,))
               if r[0] not in schema.ours]
    if foreign:
        query(conn, "SET SESSION foreign_key_checks=0")
        query(conn, "DROP TABLE IF EXISTS " + ", ".join(schema.table(t) for t in foreign))
        query(conn, "SET SESSION foreign_key_checks=1")


def settle(conn: Any, schema: Schema = REWARDS, timeout: float = 120.0) -> None:
    """Wait for purge to finish and dirty pages to be flushed, then refresh stats.

    Flushing at the default innodb_io_capacity=200 takes ~50s for 200k rows, so the
    I/O capacity is raised only while we wait and restored before the contender runs.
    """
    tables = dict.fromkeys((schema.source, schema.archive))  # one table when both are one (--dest)
    query(conn, "ANALYZE TABLE " + ", ".join(schema.table(t) for t in tables))
    query(conn, "SET GLOBAL innodb_max_purge_lag_wait=0")  # blocks until history is purged
    saved = query(conn, "SELECT @@innodb_max_dirty_pages_pct, @@innodb_max_dirty_pages_pct_lwm, "
                        "@@innodb_io_capacity, @@innodb_io_capacity_max")[0]
    for var, value in (("innodb_io_capacity_max", 100000), ("innodb_io_capacity", 50000),
                       ("innodb_max_dirty_pages_pct_lwm", 0), ("innodb_max_dirty_pages_pct", 0)):
        query(conn, f"SET GLOBAL {var}={value}")
    deadline = time.monotonic() + timeout
    dirty = 0
    try:
        while True:
            dirty = status_value(conn, "Innodb_buffer_pool_pages_dirty")
            if dirty <= 16 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        pct, lwm, cap, cap_max = saved
        restore: list[tuple[str, float]] = [
            ("innodb_max_dirty_pages_pct", float(pct)), ("innodb_max_dirty_pages_pct_lwm", float(lwm)),
            ("innodb_io_capacity", int(cap)), ("innodb_io_capacity_max", int(cap_max))]
        for var, old in restore:
            query(conn, f"SET GLOBAL {var}={old}")
    if dirty > 16:
        log(f"warning: {dirty} dirty pages left after {timeout:.0f}s")


def prepare(env: Env, keep_tracking: bool = False) -> None:
    """Reset the data through env.conn; on a cluster, let every other node catch up and settle."""
    reset(env.conn, env.schema, keep_tracking)
    for peer in env.peers:
        scalar(peer, f"SELECT COUNT(*) FROM {env.schema.table(env.schema.source)}")  # wsrep_sync_wait
        settle(peer, env.schema)


def checksum_sql(schema: Schema, table: str, where: str = "1=1") -> str:
    """SQL giving (count, crc-sum) over the data columns of a table of the schema."""
    parts = ", ".join(f"IFNULL(`{c}`, '<NULL>')" for c in schema.columns)
    return (f"SELECT COUNT(*), IFNULL(SUM(CRC32(CONCAT_WS('|', {parts}))), 0) "
            f"FROM {schema.table(table)} WHERE {where}")


def verify(conn: Any, name: str, moved: tuple[int, int] | None = None, schema: Schema = REWARDS,
           archive: tuple[Any, Schema] | None = None) -> int:
    """Check exactly the pristine rows with id in moved=(lo, hi) (default: all) were moved
    intact and the others are still in the source; return the number moved.

    `archive` = (connection, schema) says where the archive table is read (its schema's
    ``archive``) when it is not on conn's server (``--dest``); the checksum is the same SQL
    on both sides."""
    s = schema
    archive_conn, archived = archive or (conn, s)
    where = "1=1" if moved is None else f"id BETWEEN {int(moved[0])} AND {int(moved[1])}"
    want_count, want_sum = query(conn, checksum_sql(s, s.pristine, where))[0]
    total = scalar(conn, f"SELECT COUNT(*) FROM {s.table(s.pristine)}")
    left = scalar(conn, f"SELECT COUNT(*) FROM {s.table(s.source)}")
    got_count, got_sum = query(archive_conn, checksum_sql(archived, archived.archive))[0]
    problems = []
    if left != total - want_count:
        problems.append(f"{s.source} has {left} rows, expected {total - want_count}")
    if got_count != want_count:
        problems.append(f"{archived.archive} has {got_count} rows, expected {want_count}")
    elif got_sum != want_sum:
        problems.append(f"{archived.archive} checksum {got_sum} != pristine {want_sum} (data altered)")
    if problems:
        raise BenchError(f"{name}: verification failed: " + "; ".join(problems))
    return int(want_count)


# --------------------------------------------------------------------------- child processes

def run_child(argv: list[str], logfile: Path, time_bin: str | None,
              cwd: Path | None = None) -> tuple[float, int, int | None]:
    """Run argv with output to logfile; return (seconds, exit status, peak RSS KB or None).

    Peak RSS comes from GNU time (``-f %M``).  os.wait4()/RUSAGE_CHILDREN are no good
    here: on Linux a child's ru_maxrss includes the parent's RSS at fork/exec time.
    """
    rss_file = logfile.with_suffix(".maxrss")
    if time_bin:
        argv = [time_bin, "-f", "%M", "-o", str(rss_file), *argv]
    with open(logfile, "wb") as out:
        t0 = time.perf_counter()
        status = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                                stdin=subprocess.DEVNULL).returncode
        seconds = time.perf_counter() - t0
    rss = None
    if time_bin:
        match = re.search(r"^(\d+)\s*$", rss_file.read_text(errors="replace"), re.M)
        rss = int(match.group(1)) if match else None
    return seconds, status, rss


def find_gnu_time() -> str | None:
    """Path of GNU time for peak-RSS measurement (apt-installing 'time' as root), or None."""
    path = shutil.which("time", path="/usr/bin:/bin:/usr/local/bin")
    if path is None and os.geteuid() == 0 and shutil.which("apt-get"):
        log("installing GNU time via apt-get ...")
        subprocess.run(["apt-get", "install", "-y", "time"], capture_output=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        path = shutil.which("time", path="/usr/bin:/bin:/usr/local/bin")
    if path is None:
        log("GNU time not available: peak RSS will not be reported")
    return path


def tail(path: Path, lines: int = 25) -> str:
    """Last lines of a log file, indented, for error messages."""
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return "    (no log)"
    return "\n".join("    " + line for line in text)


def archive_py_flags(archive_py: Path) -> list[str]:
    """Return ['-q'] if archive.py --help advertises it, else []."""
    try:
        out = subprocess.run([sys.executable, str(archive_py), "--help"], capture_output=True,
                             text=True, timeout=60, cwd=REPO)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return ["-q"] if re.search(r"(^|[\s,\[])-q\b", out.stdout + out.stderr) else []


def database_section(env: Env, section: str = "database") -> str:
    """archive.py's [database] (or [destination]) lines: the socket, a TCP address, or a
    cluster's host list, and env's database."""
    kw = env.server.connection_kwargs()
    if env.hosts:
        where = f"host = {env.hosts}\n"
    elif kw.get("unix_socket"):
        where = f"unix_socket = {kw['unix_socket']}\n"
    else:
        where = f"host = {kw['host']}\nport = {kw['port']}\n"
    return (f"[{section}]\n{where}user = {kw.get('user', 'root')}\n"
            f"password = {kw.get('password') or ''}\ndatabase = {env.schema.db}\n")


def write_config(env: Env, rundir: Path, batch_size: int, csv_file: Path,
                 controls: dict[str, str] | None = None, log_dir: Path | None = None,
                 extra: str = "") -> Path:
    """The tests' write_config for the schema's tables in a fresh rundir, with csv_file copied into
    its csv dir; a cluster's host list replaces the server's address; log_dir (default: the
    rundir's own) may be shared between runs; `extra` is appended as is (e.g. a [destination]
    section).  Returns the config's path."""
    (rundir / "csv").mkdir(parents=True)  # a fresh csv dir: only csv_file is archived
    settings: dict[str, Any] = {"archive__source_table": env.schema.source,
                                "archive__archive_table": env.schema.archive,
                                "archive__batch_size": batch_size,
                                "archive__key_column": env.schema.primary_key, "archive__csv_column": None}
    if env.hosts:
        settings.update(database__host=env.hosts, database__port=None, database__unix_socket=None)
    if log_dir is not None:
        settings["archive__log_dir"] = log_dir
    settings.update({f"controls__{key}": value for key, value in (controls or {}).items()})
    config = write_test_config(rundir, ScratchDatabase(env.server, env.schema.db), **settings)
    shutil.copyfile(csv_file, rundir / "csv" / csv_file.name)
    if extra:
        config.write_text(config.read_text() + extra)
    return config


def archive_py_argv(env: Env, config: Path) -> list[str]:
    """The command line running archive.py on a config."""
    return [sys.executable, str(env.archive_py), *env.flags, str(config)]


def run_archive_py(env: Env, tag: str, batch_size: int, csv_file: Path | None = None,
                   controls: dict[str, str] | None = None) -> tuple[float, int | None]:
    """Run archive.py once on csv_file (default: all ids); return (seconds, peak RSS KB)."""
    rundir = Path(tempfile.mkdtemp(prefix=f"archive-py-{tag}-", dir=env.workdir))
    config = write_config(env, rundir, batch_size, csv_file or env.ids_csv, controls)
    return run_archive_config(env, config, rundir / "output.log")


def run_archive_config(env: Env, config: Path, logfile: Path) -> tuple[float, int | None]:
    """Run archive.py on an existing config, failing on a non-zero exit; return (seconds, RSS KB)."""
    argv = archive_py_argv(env, config)
    seconds, status, rss = run_child(argv, logfile, env.time_bin, cwd=REPO)
    if status != 0:
        raise BenchError(f"archive.py exited with {status} ({' '.join(argv)}):\n{tail(logfile)}")
    return seconds, rss


def server_now(conn: Any) -> Any:
    """The server's clock (DATETIME(6)), to compare with timestamps archive.py's rows get."""
    return scalar(conn, "SELECT NOW(6)")


def first_batch_delay(conn: Any, schema: Schema, spawned: Any) -> float:
    """Seconds from `spawned` (server clock) to the first batch row of the newest run.

    batch_processing_logs.created_at is set by the server when archive.py inserts the
    batch's row, inside the batch's transaction, in the round trip before its COMMIT.
    """
    first = scalar(conn, f"SELECT MIN(created_at) FROM {schema.table('batch_processing_logs')} "
                         f"WHERE process_log_id = (SELECT MAX(id) FROM {schema.table('process_logs')})")
    if first is None:
        raise BenchError("the run recorded no batch")
    return float((first - spawned).total_seconds())


# --------------------------------------------------------------------------- measuring

def run_once(env: Env, contender: Contender) -> tuple[float, int | None, int]:
    """Reset, run and verify one contender; return (seconds, peak RSS KB, rows moved)."""
    env = contender.env or env
    log(f"{contender.name}: reset")
    if contender.prepare:
        contender.prepare()
    else:
        prepare(env)
    log(f"{contender.name}: running")
    out = contender.run()
    seconds, rss = out if isinstance(out, tuple) else (out, None)
    moved = (contender.check() if contender.check
             else verify(env.conn, contender.name, contender.moved, env.schema))
    log(f"{contender.name}: {seconds:.2f}s, {moved} rows verified")
    return seconds, rss, moved


def failure_note(exc: BaseException) -> str:
    """The first line of an error, as a table note."""
    return f"FAILED: {str(exc).splitlines()[0][:150]}" if str(exc) else f"FAILED: {type(exc).__name__}"


def versus(env: Env, ours: Contender, pt: Contender, repeat: int, title: str, schema: Schema, prefix: str,
           other: Contender | None = None, floor: Contender | None = None) -> list[Result]:
    """A mode's archive.py (a) against pt-archiver (b, when it can run), its in-server floor (c, if
    given), and with --compare another archive.py (e), interleaved: measured, printed with a/b (c/b,
    e/b), the mode's database dropped."""
    timed = ([ours] + ([pt] if env.pt_missing is None else []) + ([floor] if floor is not None else [])
             + ([other] if other is not None else []))
    results = measure(env, timed, repeat)
    print_versus(title, results, pt_ran=env.pt_missing is None)
    return close_mode(env, schema, results, prefix)


def compare_env(env: Env, compare: Path | None) -> Env | None:
    """With --compare: the mode's Env running that other archive.py instead; else None."""
    if compare is None:
        return None
    return dataclasses.replace(env, archive_py=compare.resolve(), flags=archive_py_flags(compare))


def print_versus(title: str, results: list[Result], pt_ran: bool = True) -> None:
    """A mode's table of archive.py (a) against pt-archiver (b), and each archive.py/b against the
    0.50 goal (with --compare, e/b too)."""
    print(f"\n== {title} ==")
    print(f"{'contender':<46} {'seconds':>9} {'rows/s':>10} {'peak RSS':>9}  note")
    for r in results:
        print(f"{r.name:<46} {fmt_seconds(r)} {fmt_rps(r)} {fmt_rss(r)}  {fmt_note(r)}".rstrip())
    if pt_ran and len(results) >= 2:
        for r in results[:1] + results[2:]:
            print(f"{r.name[0]}/b = {fmt_ratio(r, results[1])} (goal: at most 0.50)")


def close_mode(env: Env, schema: Schema, results: list[Result], prefix: str) -> list[Result]:
    """After a mode printed its table on its own database: drop the database, name the results
    after the mode."""
    sys.stdout.flush()
    query(env.conn, f"DROP DATABASE `{schema.db}`")
    return [dataclasses.replace(r, name=f"{prefix}: {r.name}") for r in results]


def measure(env: Env, contenders: list[Contender], repeat: int) -> list[Result]:
    """Run every contender repeat times, interleaved (a b c a b c ...); median per contender.

    Interleaving spreads any background load on the machine evenly over the contenders.
    A contender that fails once is reported as FAILED and not run again.
    """
    times: dict[str, list[float]] = {c.name: [] for c in contenders}
    rss: dict[str, list[int]] = {c.name: [] for c in contenders}
    moved: dict[str, int] = {}
    failed: dict[str, str] = {}
    for round_no in range(1, repeat + 1):
        if repeat > 1:
            log(f"round {round_no}/{repeat}")
        for c in contenders:
            if c.name in failed:
                continue
            try:
                seconds, peak, moved[c.name] = run_once(env, c)
            except BenchError as exc:
                log(f"FAILED: {exc}")
                failed[c.name] = failure_note(exc)
                continue
            times[c.name].append(seconds)
            if peak is not None:
                rss[c.name].append(peak)
    return [Result(c.name, None, 0, note=failed[c.name]) if c.name in failed else
            Result(c.name, statistics.median(times[c.name]), moved[c.name],
                   max(rss[c.name]) if rss[c.name] else None, times=times[c.name])
            for c in contenders]


def percentile(values: Sequence[float], pct: float) -> float | None:
    """The pct-th percentile (nearest rank) of values, or None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(len(ordered) * pct / 100)) - 1]


# --------------------------------------------------------------------------- formatting

def fmt_ratio(a: Result | None, b: Result | None) -> str:
    """a.seconds / b.seconds formatted, or n/a."""
    if a is None or b is None or not a.seconds or not b.seconds:
        return "n/a"
    return f"{a.seconds / b.seconds:.2f}x"


def fmt_seconds(r: Result) -> str:
    """Median seconds, 9 wide."""
    return f"{r.seconds:9.2f}" if r.seconds else f"{'-':>9}"


def fmt_rps(r: Result) -> str:
    """Rows per second, 10 wide."""
    return f"{r.rows_per_s:10.0f}" if r.rows_per_s else f"{'-':>10}"


def fmt_rss(r: Result) -> str:
    """Peak RSS in MB, 9 wide."""
    return f"{r.rss_kb / 1024:7.1f}MB" if r.rss_kb else f"{'-':>9}"


def fmt_note(r: Result) -> str:
    """Individual run times (when repeated) and any note."""
    runs = f"runs: {', '.join(f'{t:.2f}' for t in r.times)} " if len(r.times) > 1 else ""
    return runs + r.note


def fmt_ms(seconds: float | None) -> str:
    """Milliseconds, 8 wide, or '-'."""
    return f"{seconds * 1000:8.2f}" if seconds is not None else f"{'-':>8}"
