#!/usr/bin/env python3
"""Benchmark archive.py against pt-archiver and an in-server stored-procedure floor.

Usage (from the repo root, with the venv that has mysql-connector-python)::

    python bench/bench.py [--rows 200000] [--batch-size 1000]
                          [--sweep 100,500,1000,2000,5000,10000]
                          [--repeat 1] [--rss] [--resume-probe] [--keep]

What it does, in one run:

1. Starts a throwaway MariaDB (``ThrowawayMariaDB`` from ``tests/throwaway_server.py``)
   in a temp dir with default durability (``innodb_flush_log_at_trx_commit=1``,
   doublewrite on), a 512M buffer pool (everything fits in memory, so we measure
   commit/fsync and statement overhead, not disk reads), ``local_infile=ON`` (for
   ``pt-archiver --bulk-insert``) and utf8mb4 as server charset.

2. Builds database ``bench`` with a realistic 9-column ``rewards`` table (BIGINT PK,
   ENUM, utf8mb4 VARCHAR with some 4-byte chars, JSON, DECIMAL, DATETIME(6),
   TIMESTAMP, TINYINT; secondary keys on user_id and created_at) and
   ``rewards_archives`` (same columns + ``archived_at``).  Ids are 1,000,000 + step,
   + 2*step, ... (``--id-step``, default 1: contiguous, so archive.py can send ranges;
   2 or more leaves gaps, so it must send IN lists while the floor still uses ranges;
   keys below 1,000,000 never match a row).  A pristine copy ``rewards_pristine`` is filled once from
   the Sequence engine (``seq_1_to_N``); before every contender the data is *reset*:
   tracking tables dropped (every table in ``bench`` that is not ours), ``rewards`` and
   ``rewards_archives`` truncated, ``rewards`` refilled from the pristine copy, then
   the server is *settled* (purge finished via ``innodb_max_purge_lag_wait=0``, dirty
   pages flushed, ANALYZE) so each contender starts from a comparable state.
   The ids CSV (header ``id``, all ids, sorted) is written to the temp dir; every
   archive.py run gets a fresh copy of it in its own ``csv_dir`` and its own ``log_dir``.

3. Times, at ``--batch-size``, moving all rows with:

   a. ``archive.py CONFIG`` (subprocess, same interpreter; ``-q`` is added only if
      ``archive.py --help`` mentions it).  Wall clock includes interpreter start-up.
      Peak RSS of the child is recorded too (GNU time, see 4.).
   b. ``pt-archiver --bulk-insert --bulk-delete --commit-each --limit B`` with
      ``--where 1=1`` (it cannot read a key file; since the CSV lists every row this
      is the same work).  The DSN carries ``L=1`` (enable LOAD DATA LOCAL) and
      ``F=<cnf>`` with ``default-character-set=utf8mb4``: pt-archiver 3.2.1 dies on
      ``--charset utf8mb4``, ``--charset utf8`` means utf8mb3 on MariaDB, and the
      default latin1 connection plus ``--no-check-charset`` silently turns every
      non-ASCII char into '?' (the checksum check catches that).
      ``--no-check-columns`` because the archive has the extra ``archived_at``.
      Installed with ``apt-get install -y percona-toolkit`` when missing and we are
      root; otherwise skipped with a message.
   c. A stored procedure that loops over the CSV's id ranges (sorted ids cut into
      batches of B; ``INSERT ... SELECT ... WHERE id BETWEEN lo AND hi; DELETE ...;
      COMMIT``); as the CSV lists every row, each range holds exactly that batch's
      keys.  The range table is loaded before the clock starts; only the CALL is
      timed.  This is the practical floor: no client round trips, no bookkeeping.

   After each contender the result is verified: ``rewards`` must hold exactly the
   rows not listed, ``rewards_archives`` exactly the listed ones, and a CRC32
   checksum over all data columns of the archive must equal the pristine rows'
   checksum.  A failed verification is reported as FAILED and the exit status is 1.

   Prints a table (contender, seconds, rows/s, ratios a/c and a/b), then a batch-size
   sweep of archive.py alone (``--sweep``; ``--sweep ''`` skips it).
   ``--repeat N`` runs every measurement N times, interleaved (a b c a b c ...) so
   background load hits all contenders alike, and reports the median.

4. ``--rss``: peak RSS of archive.py for a 30k-id CSV (the first 30k existing ids,
   all moved) and a 3M-id CSV (ids 1..3,000,000 -- the table stays at ``--rows``,
   so the CSV covers every existing row (for rows <= 1M) and most ids simply miss,
   which still makes archive.py read, batch and query all 3M keys; building a 3M-row
   table would take far longer than the runs themselves and would not change what
   we are looking for: whether memory grows with the size of the key file).
   Peaks come from GNU ``/usr/bin/time -f %M`` (package ``time``, apt-installed as
   root if missing); ``os.wait4``/``RUSAGE_CHILDREN`` would report the bench's own
   RSS, because Linux carries the parent's high-water mark into the child's
   ru_maxrss across fork+exec.  Prints both peaks in MB and their ratio.

5. ``--resume-probe``: a 1,000,000-key file at batch size 100 (10,000 batches) whose
   batches 1..9,000 are done, then the resume is timed.  Keys: 899,998 ids below every
   row id (rows long gone) followed by 100,002 real ids, so batch 9,000 holds two real
   rows and batches 9,001..10,000 move 100 rows each (needs ``--rows >= 100002``).
   Phase 1 (untimed) uses only the public interface: the bench holds the second real
   row of batch 9,000 ``FOR UPDATE``; when archive.py blocks on it
   (``Innodb_row_lock_current_waits`` > 0) the bench creates the config's
   ``[controls] stop_file`` and releases the lock, so batch 9,000 commits and the run
   stops (exit 6) with exactly 9,000 batches done.  Phase 2 reruns the same config,
   timed.  It is compared with a fresh run (empty tracking tables) of a CSV holding
   only the keys of batches 9,001..10,000; the difference is the cost of resuming.

Progress goes to stderr, result tables to stdout.  ``--keep`` leaves the temp dir
(server datadir, CSVs, configs, logs) in place and prints its path.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from helpers import REWARDS_COLUMN_DDL  # noqa: E402
from throwaway_server import ThrowawayMariaDB  # noqa: E402

DB = "bench"
SOURCE = "rewards"
ARCHIVE = "rewards_archives"
PRISTINE = "rewards_pristine"
BATCHES = "bench_batches"
OUR_TABLES = {SOURCE, ARCHIVE, PRISTINE, BATCHES}
DATA_COLUMNS = ("id", "user_id", "kind", "note", "payload", "amount",
                "created_at", "updated_at", "status")
SERVER_ARGS = [
    "--innodb-buffer-pool-size=512M",
    "--innodb-flush-log-at-trx-commit=1",
    "--innodb-log-file-size=256M",
    "--local-infile=1",
    "--character-set-server=utf8mb4",
    "--collation-server=utf8mb4_general_ci",
]
ID_BASE = 1_000_000  # row ids are ID_BASE + step, + 2*step, ...; smaller keys never match a row
RSS_SMALL_IDS = 30_000
RSS_LARGE_IDS = 3_000_000
PROBE_KEYS = 1_000_000
PROBE_BATCH = 100
PROBE_DONE = 9_000

COLUMNS_DDL = REWARDS_COLUMN_DDL + ",\n  status TINYINT NOT NULL"  # the tests' table plus a 9th column

FILL_SQL = f"""
INSERT INTO {PRISTINE} ({", ".join(DATA_COLUMNS)})
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


@dataclass
class Env:
    """Everything a contender needs: server, connection, paths, sizes."""

    server: Any
    conn: Any
    workdir: Path
    ids_csv: Path
    rows: int
    archive_py: Path
    time_bin: str | None


def log(msg: str) -> None:
    """Print a progress line to stderr."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def query(conn: Any, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
    """Run one statement and return all rows (empty list for non-SELECTs)."""
    cur = conn.cursor()
    try:
        cur.execute(sql, params)
        return cur.fetchall() if cur.with_rows else []
    finally:
        cur.close()


def scalar(conn: Any, sql: str, params: Sequence[Any] = ()) -> Any:
    """Run a query returning a single value."""
    return query(conn, sql, params)[0][0]


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


def create_schema(conn: Any, rows: int, id_step: int = 1) -> None:
    """Create the bench tables and fill the pristine copy once."""
    if not query(conn, "SELECT 1 FROM information_schema.ENGINES "
                       "WHERE ENGINE='SEQUENCE' AND SUPPORT IN ('YES','DEFAULT')"):
        raise BenchError("MariaDB Sequence engine not available (needed for seq_1_to_N)")
    query(conn, f"DROP DATABASE IF EXISTS {DB}")
    query(conn, f"CREATE DATABASE {DB} CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci")
    query(conn, f"USE {DB}")
    query(conn, f"CREATE TABLE {SOURCE} ({COLUMNS_DDL},\n  PRIMARY KEY (id),"
                f" KEY idx_user_id (user_id), KEY idx_created_at (created_at)"
                f") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
    query(conn, f"CREATE TABLE {ARCHIVE} ({COLUMNS_DDL},\n"
                f"  archived_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,\n"
                f"  PRIMARY KEY (id), KEY idx_user_id (user_id), KEY idx_created_at (created_at)"
                f") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
    query(conn, f"CREATE TABLE {PRISTINE} ({COLUMNS_DDL}, PRIMARY KEY (id))"
                f" ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
    query(conn, f"CREATE TABLE {BATCHES} (batch_no INT NOT NULL PRIMARY KEY,"
                f" lo BIGINT NOT NULL, hi BIGINT NOT NULL) ENGINE=InnoDB")
    t0 = time.perf_counter()
    query(conn, FILL_SQL.format(rows=int(rows), id_base=ID_BASE, id_step=int(id_step)))
    log(f"filled {PRISTINE} with {rows} rows in {time.perf_counter() - t0:.1f}s")


def write_ids_csv(conn: Any, path: Path) -> list[int]:
    """Write all pristine ids (sorted, header 'id') to path and return them."""
    ids = [r[0] for r in query(conn, f"SELECT id FROM {PRISTINE} ORDER BY id")]
    write_csv(path, ids)
    return ids


def write_csv(path: Path, ids: Iterable[int]) -> None:
    """Write an ids CSV with header 'id'."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        fh.write("id\n")
        for chunk in _chunks(ids if isinstance(ids, (list, range)) else list(ids), 100_000):
            fh.write("\n".join(map(str, chunk)))
            fh.write("\n")


def _chunks(seq: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    """Yield consecutive slices of seq of at most size items."""
    for i in range(0, len(seq), size):
        yield seq[i:i + size]


def reset(conn: Any) -> None:
    """Restore rewards from the pristine copy, empty the archive, drop tracking tables."""
    query(conn, f"USE {DB}")
    foreign = [r[0] for r in query(conn, "SELECT TABLE_NAME FROM information_schema.TABLES "
                                         "WHERE TABLE_SCHEMA=%s", (DB,))
               if r[0] not in OUR_TABLES]
    query(conn, "SET SESSION foreign_key_checks=0")
    if foreign:
        query(conn, "DROP TABLE IF EXISTS " + ", ".join(f"`{t}`" for t in foreign))
    query(conn, "SET SESSION foreign_key_checks=1")
    query(conn, f"TRUNCATE TABLE {SOURCE}")
    query(conn, f"TRUNCATE TABLE {ARCHIVE}")
    query(conn, f"INSERT INTO {SOURCE} SELECT * FROM {PRISTINE}")
    settle(conn)


def settle(conn: Any, timeout: float = 120.0) -> None:
    """Wait for purge to finish and dirty pages to be flushed, then refresh stats.

    Flushing at the default innodb_io_capacity=200 takes ~50s for 200k rows, so the
    I/O capacity is raised only while we wait and restored before the contender runs.
    """
    query(conn, f"ANALYZE TABLE {SOURCE}, {ARCHIVE}")
    query(conn, "SET GLOBAL innodb_max_purge_lag_wait=0")  # blocks until history is purged
    saved = query(conn, "SELECT @@innodb_max_dirty_pages_pct, @@innodb_max_dirty_pages_pct_lwm, "
                        "@@innodb_io_capacity, @@innodb_io_capacity_max")[0]
    for var, value in (("innodb_io_capacity_max", 100000), ("innodb_io_capacity", 50000),
                       ("innodb_max_dirty_pages_pct_lwm", 0), ("innodb_max_dirty_pages_pct", 0)):
        query(conn, f"SET GLOBAL {var}={value}")
    deadline = time.monotonic() + timeout
    try:
        while True:
            dirty = int(query(conn, "SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'")[0][1])
            if dirty <= 16 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        pct, lwm, cap, cap_max = saved
        for var, value in (("innodb_max_dirty_pages_pct", float(pct)),
                           ("innodb_max_dirty_pages_pct_lwm", float(lwm)),
                           ("innodb_io_capacity", int(cap)), ("innodb_io_capacity_max", int(cap_max))):
            query(conn, f"SET GLOBAL {var}={value}")
    if dirty > 16:
        log(f"warning: {dirty} dirty pages left after {timeout:.0f}s")


def checksum_sql(table: str, where: str = "1=1") -> str:
    """SQL giving (count, crc-sum) over the data columns of table."""
    parts = ", ".join(f"IFNULL(`{c}`, '<NULL>')" for c in DATA_COLUMNS)
    return f"SELECT COUNT(*), IFNULL(SUM(CRC32(CONCAT_WS('|', {parts}))), 0) FROM {table} WHERE {where}"


def verify(conn: Any, name: str, moved: tuple[int, int] | None = None) -> int:
    """Check exactly the pristine rows with id in moved=(lo, hi) (default: all) were moved
    intact and the others are still in the source; return the number moved."""
    where = "1=1" if moved is None else f"id BETWEEN {int(moved[0])} AND {int(moved[1])}"
    want_count, want_sum = query(conn, checksum_sql(PRISTINE, where))[0]
    total = scalar(conn, f"SELECT COUNT(*) FROM {PRISTINE}")
    left = scalar(conn, f"SELECT COUNT(*) FROM {SOURCE}")
    got_count, got_sum = query(conn, checksum_sql(ARCHIVE))[0]
    problems = []
    if left != total - want_count:
        problems.append(f"{SOURCE} has {left} rows, expected {total - want_count}")
    if got_count != want_count:
        problems.append(f"{ARCHIVE} has {got_count} rows, expected {want_count}")
    elif got_sum != want_sum:
        problems.append(f"{ARCHIVE} checksum {got_sum} != pristine {want_sum} (data altered)")
    if problems:
        raise BenchError(f"{name}: verification failed: " + "; ".join(problems))
    return int(want_count)


# --------------------------------------------------------------------------- contenders

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


def write_config(env: Env, rundir: Path, batch_size: int, csv_file: Path,
                 controls: dict[str, str] | None = None) -> Path:
    """Create rundir with a fresh csv dir, log dir and INI config; return the config path."""
    csv_dir, log_dir = rundir / "csv", rundir / "logs"
    csv_dir.mkdir(parents=True)
    log_dir.mkdir()
    shutil.copyfile(csv_file, csv_dir / csv_file.name)
    kw = env.server.connection_kwargs()
    config = rundir / "archive.ini"
    config.write_text(
        "[database]\n"
        f"unix_socket = {env.server.socket}\n"
        f"user = {kw.get('user', 'root')}\n"
        f"password = {kw.get('password') or ''}\n"
        f"database = {DB}\n"
        "[archive]\n"
        f"source_table = {SOURCE}\n"
        f"archive_table = {ARCHIVE}\n"
        "key_column = id\n"
        f"csv_dir = {csv_dir}\n"
        "csv_pattern = *.csv\n"
        "csv_column = id\n"
        f"batch_size = {batch_size}\n"
        f"log_dir = {log_dir}\n"
        + ("[controls]\n" + "".join(f"{k} = {v}\n" for k, v in controls.items()) if controls else ""))
    return config


def run_archive_py(env: Env, tag: str, batch_size: int, flags: list[str],
                   csv_file: Path | None = None) -> tuple[float, int | None]:
    """Run archive.py once on csv_file (default: all ids); return (seconds, peak RSS KB)."""
    rundir = Path(tempfile.mkdtemp(prefix=f"archive-py-{tag}-", dir=env.workdir))
    config = write_config(env, rundir, batch_size, csv_file or env.ids_csv)
    logfile = rundir / "output.log"
    argv = [sys.executable, str(env.archive_py), *flags, str(config)]
    seconds, status, rss = run_child(argv, logfile, env.time_bin, cwd=REPO)
    if status != 0:
        raise BenchError(f"archive.py exited with {status} ({' '.join(argv)}):\n{tail(logfile)}")
    return seconds, rss


def pt_archiver_argv(env: Env, batch_size: int) -> list[str]:
    """Command line for pt-archiver moving every row in batches of batch_size.

    The connection charset comes from an option file (DSN ``F=``): pt-archiver 3.2.1
    dies on ``--charset utf8mb4`` (Perl has no encoding of that name), ``--charset utf8``
    is utf8mb3 on MariaDB (4-byte chars lost), and the default latin1 connection with
    ``--no-check-charset`` silently mangles every non-ASCII character.
    """
    cnf = env.workdir / "pt-client.cnf"
    cnf.write_text("[client]\ndefault-character-set=utf8mb4\n")
    kw = env.server.connection_kwargs()
    dsn = (f"h=localhost,S={env.server.socket},u={kw.get('user', 'root')},"
           f"D={DB},t={SOURCE},L=1,F={cnf}")
    if kw.get("password"):
        dsn += f",p={kw['password']}"
    return ["pt-archiver", "--source", dsn, "--dest", f"t={ARCHIVE}",
            "--where", "1=1", "--limit", str(batch_size), "--commit-each",
            "--bulk-insert", "--bulk-delete", "--no-check-columns",
            "--statistics", "--why-quit"]


def ensure_pt_archiver() -> str | None:
    """Return None if pt-archiver is usable (installing it as root if needed), else why not."""
    if shutil.which("pt-archiver"):
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "pt-archiver not installed (apt-get install percona-toolkit as root)"
    log("installing percona-toolkit via apt-get ...")
    proc = subprocess.run(["apt-get", "install", "-y", "percona-toolkit"], capture_output=True,
                          text=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if proc.returncode != 0 or not shutil.which("pt-archiver"):
        return "apt-get install percona-toolkit failed: " + proc.stderr.strip()[-300:]
    return None


def run_pt_archiver(env: Env, batch_size: int) -> tuple[float, int | None]:
    """Run pt-archiver once; return (seconds, peak RSS KB)."""
    logfile = env.workdir / f"pt-archiver-{time.monotonic_ns()}.log"
    argv = pt_archiver_argv(env, batch_size)
    seconds, status, rss = run_child(argv, logfile, env.time_bin)
    if status != 0:
        raise BenchError(f"pt-archiver exited with {status}:\n{tail(logfile)}")
    text = logfile.read_text(errors="replace")
    summary = re.findall(r"^(?:SELECT|INSERT|DELETE) \d+$|^Exiting.*$", text, re.M)
    log("pt-archiver: " + "; ".join(summary))
    return seconds, rss


PROC_SQL = f"""
CREATE PROCEDURE bench_move_batches()
BEGIN
  DECLARE done INT DEFAULT 0;
  DECLARE v_lo, v_hi BIGINT;
  DECLARE cur CURSOR FOR SELECT lo, hi FROM {BATCHES} ORDER BY batch_no;
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET done = 1;
  OPEN cur;
  batch_loop: LOOP
    FETCH cur INTO v_lo, v_hi;
    IF done THEN LEAVE batch_loop; END IF;
    START TRANSACTION;
    INSERT INTO {ARCHIVE} ({", ".join(DATA_COLUMNS)})
      SELECT {", ".join(DATA_COLUMNS)} FROM {SOURCE} WHERE id BETWEEN v_lo AND v_hi;
    DELETE FROM {SOURCE} WHERE id BETWEEN v_lo AND v_hi;
    COMMIT;
  END LOOP;
  CLOSE cur;
END
"""


def load_batches(conn: Any, ids: Sequence[int], batch_size: int) -> None:
    """Fill the batch-range table from the sorted CSV ids (untimed preparation)."""
    query(conn, f"USE {DB}")
    query(conn, f"TRUNCATE TABLE {BATCHES}")
    ranges = [(n, chunk[0], chunk[-1]) for n, chunk in enumerate(_chunks(ids, batch_size), 1)]
    cur = conn.cursor()
    for part in _chunks(ranges, 5000):
        cur.executemany(f"INSERT INTO {BATCHES} (batch_no, lo, hi) VALUES (%s, %s, %s)", part)
    cur.close()
    query(conn, "DROP PROCEDURE IF EXISTS bench_move_batches")
    query(conn, PROC_SQL)


def run_stored_proc(env: Env, batch_size: int, ids: Sequence[int]) -> float:
    """Run the stored-procedure floor once; return seconds for the CALL."""
    load_batches(env.conn, ids, batch_size)
    t0 = time.perf_counter()
    query(env.conn, "CALL bench_move_batches()")
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- measurements

@dataclass
class Contender:
    """One thing to time: a name, a run() returning seconds or (seconds, RSS KB)."""

    name: str
    run: Callable[[], float | tuple[float, int | None]]
    moved: tuple[int, int] | None = None  # id range expected to move (default: all rows)


def run_once(env: Env, contender: Contender) -> tuple[float, int | None, int]:
    """Reset, run and verify one contender; return (seconds, peak RSS KB, rows moved)."""
    log(f"{contender.name}: reset")
    reset(env.conn)
    log(f"{contender.name}: running")
    out = contender.run()
    seconds, rss = out if isinstance(out, tuple) else (out, None)
    moved = verify(env.conn, contender.name, contender.moved)
    log(f"{contender.name}: {seconds:.2f}s, {moved} rows verified")
    return seconds, rss, moved


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
                failed[c.name] = f"FAILED: {str(exc).splitlines()[0][:150]}"
                continue
            times[c.name].append(seconds)
            if peak is not None:
                rss[c.name].append(peak)
    return [Result(c.name, None, 0, note=failed[c.name]) if c.name in failed else
            Result(c.name, statistics.median(times[c.name]), moved[c.name],
                   max(rss[c.name]) if rss[c.name] else None, times=times[c.name])
            for c in contenders]


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


def print_main_table(results: list[Result], rows: int, batch_size: int) -> None:
    """Print the side-by-side table and ratios to stdout."""
    print(f"\n== Moving {rows} rows, batch size {batch_size} "
          f"(innodb_flush_log_at_trx_commit=1) ==")
    print(f"{'contender':<30} {'seconds':>9} {'rows/s':>10} {'peak RSS':>9}  note")
    for r in results:
        print(f"{r.name:<30} {fmt_seconds(r)} {fmt_rps(r)} {fmt_rss(r)}  {fmt_note(r)}".rstrip())
    by_key = {r.name[0]: r for r in results}
    print(f"ratio a/c (archive.py / stored proc): {fmt_ratio(by_key.get('a'), by_key.get('c'))}")
    print(f"ratio a/b (archive.py / pt-archiver): {fmt_ratio(by_key.get('a'), by_key.get('b'))}")
    sys.stdout.flush()


def run_sweep(env: Env, sizes: list[int], repeat: int, flags: list[str]) -> list[Result]:
    """Time archive.py at each batch size and print the sweep table."""
    results = measure(env, [Contender(f"archive.py batch={bs}",
                                      lambda bs=bs: run_archive_py(env, f"sweep{bs}", bs, flags))
                            for bs in sizes], repeat)
    print(f"\n== archive.py batch-size sweep ({env.rows} rows) ==")
    print(f"{'batch size':>10} {'batches':>8} {'seconds':>9} {'rows/s':>10} {'peak RSS':>9}  note")
    for bs, r in zip(sizes, results):
        print(f"{bs:>10} {-(-env.rows // bs):>8} {fmt_seconds(r)} {fmt_rps(r)} {fmt_rss(r)}  "
              f"{fmt_note(r)}".rstrip())
    sys.stdout.flush()
    return results


def run_rss(env: Env, batch_size: int, flags: list[str]) -> list[Result]:
    """Measure archive.py peak RSS on a 30k-id and a 3M-id CSV and print the comparison."""
    ids_all = [r[0] for r in query(env.conn, f"SELECT id FROM {DB}.{PRISTINE} ORDER BY id")]
    small_ids = ids_all[:RSS_SMALL_IDS]
    small = env.workdir / "rss-small" / "ids_30k.csv"
    large = env.workdir / "rss-large" / "ids_3m.csv"
    write_csv(small, small_ids)
    write_csv(large, range(1, RSS_LARGE_IDS + 1))
    del ids_all
    log(f"RSS CSVs: {small} ({len(small_ids)} ids), {large} ({RSS_LARGE_IDS} ids)")
    results = measure(env, [
        Contender(f"archive.py {len(small_ids)} ids",
                  lambda: run_archive_py(env, "rss30k", batch_size, flags, small),
                  moved=(small_ids[0], small_ids[-1])),
        Contender(f"archive.py {RSS_LARGE_IDS} ids",
                  lambda: run_archive_py(env, "rss3m", batch_size, flags, large),
                  moved=(1, RSS_LARGE_IDS)),
    ], 1)
    print(f"\n== archive.py peak RSS (batch size {batch_size}; table has {env.rows} rows, "
          f"ids beyond them simply miss) ==")
    for r in results:
        print(f"{r.name:<28} {fmt_rss(r)}  ({fmt_seconds(r).strip()}s, {r.rows} rows moved)  "
              f"{fmt_note(r)}".rstrip())
    if all(r.rss_kb for r in results):
        print(f"ratio 3M/30k: {results[1].rss_kb / results[0].rss_kb:.2f}x")
    sys.stdout.flush()
    return results


def probe_keys(ids: Sequence[int]) -> tuple[list[int], int, list[int]]:
    """Probe CSV keys, the id to lock, and the keys of the batches left after PROBE_DONE.

    PROBE_KEYS keys: PROBE_DONE * PROBE_BATCH - 2 ids below ID_BASE (no such rows; the
    file lists rows long gone), then real ids, so batch PROBE_DONE ends with two real rows
    and every later batch moves PROBE_BATCH rows.  The probe locks the second of those two:
    range scans of the earlier, empty batches lock the first row above their range
    (next-key locking) and would otherwise block on it.
    """
    misses = PROBE_DONE * PROBE_BATCH - 2
    real = list(ids[:PROBE_KEYS - misses])
    return list(range(1, misses + 1)) + real, real[1], real[2:]


def count_done_batches(conn: Any) -> int | None:
    """Batches archive.py recorded as done (None if its tracking table is unreadable)."""
    try:
        return int(scalar(conn, f"SELECT COUNT(*) FROM {DB}.batch_processing_logs "
                                f"WHERE status IN ('COMPLETED','COMPLETED_WITH_DUPLICATES')"))
    except Exception:  # noqa: BLE001 - tracking schema belongs to archive.py
        return None


def run_until_done(env: Env, config: Path, flags: list[str], lock_id: int, stop_file: Path,
                   logfile: Path, timeout: float = 1800.0) -> tuple[float, int]:
    """Run archive.py so that exactly batches 1..PROBE_DONE end up done; return (s, exit code).

    Through the public CLI only: a row of batch PROBE_DONE is held FOR UPDATE so that
    batch blocks; once archive.py waits on that lock (Innodb_row_lock_current_waits; a
    transaction that has not written yet is not listed in INNODB_TRX) the [controls]
    stop_file is created and the lock released, so the batch commits and the run stops
    before the next one.
    """
    locker = env.server.connect(DB)
    query(locker, "START TRANSACTION")
    query(locker, f"SELECT id FROM {SOURCE} WHERE id = %s FOR UPDATE", (lock_id,))
    t0 = time.perf_counter()
    with open(logfile, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(env.archive_py), *flags, str(config)],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=REPO)
    try:
        deadline = time.monotonic() + timeout
        while not int(query(env.conn, "SHOW GLOBAL STATUS LIKE "
                                      "'Innodb_row_lock_current_waits'")[0][1]):
            if proc.poll() is not None:
                raise BenchError(f"archive.py exited ({proc.returncode}) before reaching batch "
                                 f"{PROBE_DONE}:\n{tail(logfile)}")
            if time.monotonic() > deadline:
                raise BenchError(f"archive.py did not reach batch {PROBE_DONE} in {timeout:.0f}s")
            time.sleep(0.02)
        stop_file.touch()
    except BaseException:
        proc.terminate()
        proc.wait()
        raise
    finally:
        query(locker, "ROLLBACK")
        locker.close()
    status = proc.wait()
    stop_file.unlink(missing_ok=True)
    return time.perf_counter() - t0, status


def resume_probe(env: Env, ids: Sequence[int], flags: list[str]) -> list[Result]:
    """Time resuming a 10,000-batch file at batch 9,001 against a fresh run of the same tail.

    Phase 1 (untimed) leaves batches 1..9000 done (see run_until_done); phase 2 reruns the
    same config and is timed.  The comparison is a fresh run (fresh tracking tables) of a
    CSV holding only the keys of batches 9001..10000.  resume - fresh = cost of resuming.
    """
    print(f"\n== resume probe ({PROBE_KEYS} keys, batch {PROBE_BATCH} = "
          f"{PROBE_KEYS // PROBE_BATCH} batches; resume after batch {PROBE_DONE}) ==")
    need = PROBE_KEYS - PROBE_DONE * PROBE_BATCH + 2
    if len(ids) < need:
        print(f"skipped: needs --rows >= {need}")
        return []
    keys, lock_id, tail_keys = probe_keys(ids)
    probe_csv = env.workdir / "probe" / "ids_probe.csv"
    tail_csv = env.workdir / "probe-tail" / "ids_tail.csv"
    write_csv(probe_csv, keys)
    write_csv(tail_csv, tail_keys)
    rundir = env.workdir / "probe-run"
    stop_file = rundir / "STOP"
    config = write_config(env, rundir, PROBE_BATCH, probe_csv, {"stop_file": str(stop_file)})
    moved = (keys[PROBE_DONE * PROBE_BATCH - 2], tail_keys[-1])  # batch 9000's 2 rows + tail

    log("resume probe: reset")
    reset(env.conn)
    log(f"resume probe: phase 1, running archive.py up to batch {PROBE_DONE} (untimed)")
    try:
        seconds, status = run_until_done(env, config, flags, lock_id, stop_file,
                                         rundir / "phase1.log")
    except BenchError as exc:
        log(f"FAILED: {exc}")
        print(f"FAILED: {str(exc).splitlines()[0]}")
        return [Result("resume probe", None, 0, note="FAILED")]
    done = count_done_batches(env.conn)
    print(f"phase 1 (untimed): {seconds:.1f}s, exit {status}, batches recorded done: {done}")
    if status != 6 or done != PROBE_DONE:
        log(f"warning: phase 1 expected exit 6 and {PROBE_DONE} done batches")
    settle(env.conn)
    results: list[Result] = []
    log("resume probe: phase 2, resuming (timed)")
    logfile = rundir / "phase2.log"
    spawned = scalar(env.conn, "SELECT NOW(6)")
    t, status, rss = run_child([sys.executable, str(env.archive_py), *flags, str(config)],
                               logfile, env.time_bin, cwd=REPO)
    try:
        if status != 0:
            raise BenchError(f"resume run exited with {status}:\n{tail(logfile)}")
        rows = verify(env.conn, "resume probe", moved)
        first = scalar(env.conn, f"SELECT MIN(created_at) FROM {DB}.batch_processing_logs WHERE "
                                 f"process_log_id = (SELECT MAX(id) FROM {DB}.process_logs)")
        print(f"resume: process start to first batch committed: {(first - spawned).total_seconds():.2f}s")
        results.append(Result(f"resume after {done} done batches", t, len(tail_keys), rss,
                              note=f"({rows} rows in archive incl. phase 1)"))
    except BenchError as exc:
        log(f"FAILED: {exc}")
        results.append(Result(f"resume after {done} done batches", None, 0,
                              note=f"FAILED: {str(exc).splitlines()[0][:150]}"))
    results += measure(env, [Contender(
        f"fresh run of the same {len(tail_keys) // PROBE_BATCH} batches",
        lambda: run_archive_py(env, "probe-fresh", PROBE_BATCH, flags, tail_csv),
        moved=(tail_keys[0], tail_keys[-1]))], 1)
    for r in results:
        print(f"{r.name:<40} {fmt_seconds(r)}s {fmt_rps(r)} rows/s {fmt_rss(r)}  "
              f"{fmt_note(r)}".rstrip())
    if all(r.seconds for r in results):
        print(f"resume overhead: {results[0].seconds - results[1].seconds:+.2f}s "
              f"({results[0].seconds / results[1].seconds:.2f}x)")
    sys.stdout.flush()
    return results


# --------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=200_000, help="rows in the table (default 200000)")
    p.add_argument("--batch-size", type=int, default=1000, help="batch size for the side-by-side")
    p.add_argument("--id-step", type=int, default=1,
                   help="gap between row ids: 1 = contiguous (ranges apply), 2+ = sparse (IN lists)")
    p.add_argument("--sweep", default="100,500,1000,2000,5000,10000",
                   help="comma-separated batch sizes for the archive.py sweep ('' to skip)")
    p.add_argument("--repeat", type=int, default=1, help="runs per measurement (median reported)")
    p.add_argument("--rss", action="store_true", help="measure archive.py peak RSS, 30k vs 3M ids")
    p.add_argument("--resume-probe", action="store_true",
                   help="time resuming a 10,000-batch file after 9,000 done batches")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (datadir, CSVs, logs)")
    p.add_argument("--archive-py", type=Path, default=REPO / "archive.py", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.sweep_sizes = [int(s) for s in args.sweep.split(",") if s.strip()]
    if args.rows < 1 or args.batch_size < 1 or args.repeat < 1 or args.id_step < 1 or any(s < 1 for s in args.sweep_sizes):
        p.error("--rows, --batch-size, --repeat and --sweep values must be positive")
    return args


def run_bench(args: argparse.Namespace, workdir: Path) -> bool:
    """Run every requested measurement inside workdir; return True if nothing failed."""
    server = start_server(workdir)
    try:
        conn = server.connect()
        create_schema(conn, args.rows, args.id_step)
        ids_csv = workdir / "ids.csv"
        ids = write_ids_csv(conn, ids_csv)
        log(f"wrote {len(ids)} ids to {ids_csv}")
        env = Env(server, conn, workdir, ids_csv, args.rows, args.archive_py.resolve(),
                  find_gnu_time())
        print(f"# {scalar(conn, 'SELECT @@version')}, {os.cpu_count()} CPUs, "
              f"python {sys.version.split()[0]}, rows={args.rows}, batch={args.batch_size}, "
              f"id step={args.id_step}")

        flags: list[str] = []
        skipped: list[Result] = []
        contenders: list[Contender] = []
        have_archive_py = env.archive_py.is_file()
        if have_archive_py:
            flags = archive_py_flags(env.archive_py)
            log(f"archive.py flags: {flags or 'none'}")
            contenders.append(Contender("a archive.py", lambda: run_archive_py(
                env, "main", args.batch_size, flags)))
        else:
            skipped.append(Result("a archive.py", None, 0, note=f"SKIPPED: {env.archive_py} missing"))
        why_not = ensure_pt_archiver()
        if why_not is None:
            contenders.append(Contender("b pt-archiver --bulk-insert",
                                        lambda: run_pt_archiver(env, args.batch_size)))
        else:
            log(f"skipping pt-archiver: {why_not}")
            skipped.append(Result("b pt-archiver --bulk-insert", None, 0, note=f"SKIPPED: {why_not}"))
        contenders.append(Contender("c stored procedure (floor)",
                                    lambda: run_stored_proc(env, args.batch_size, ids)))
        results = sorted(measure(env, contenders, args.repeat) + skipped, key=lambda r: r.name)
        print_main_table(results, args.rows, args.batch_size)

        if have_archive_py and args.sweep_sizes:
            results += run_sweep(env, args.sweep_sizes, args.repeat, flags)
        if args.rss:
            results += (run_rss(env, args.batch_size, flags) if have_archive_py
                        else [Result("rss", None, 0, note="SKIPPED: archive.py missing")])
        if args.resume_probe:
            results += (resume_probe(env, ids, flags) if have_archive_py
                        else [Result("resume probe", None, 0, note="SKIPPED: archive.py missing")])
        conn.close()
        return not any(r.note.startswith("FAILED") for r in results)
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    """Entry point: set up the temp dir, run the bench, clean up."""
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="archive-bench-"))
    log(f"workdir {workdir}")
    try:
        ok = run_bench(args, workdir)
    except BenchError as exc:
        log(f"FATAL: {exc}")
        ok = False
    finally:
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if not ok:
        log("some measurement FAILED (see above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
