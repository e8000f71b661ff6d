"""The contenders of the side-by-side tables: archive.py, pt-archiver and two in-server floors.

a. archive.py (``benchlib.run_archive_py``): a subprocess, start-up and all.
b. pt-archiver ``--bulk-insert --bulk-delete --commit-each --limit B``.
c. a stored procedure looping over id ranges (``BETWEEN lo AND hi`` per batch): the floor.
d. (sparse keys only) a stored procedure running, per batch, the very ``INSERT ... SELECT``
   and ``DELETE`` texts archive.py sends (built with archive.py's own ``TablePlan``, so runs
   of 4+ consecutive ids become ``BETWEEN`` and the rest an ``IN (...)`` list), each through
   PREPARE/EXECUTE: a fair floor for sparse keys, where c's ranges are cheaper statements
   than anything a key-file tool can send.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from typing import Any

from benchlib import (
    BATCHES,
    STATEMENTS,
    BenchError,
    Contender,
    Env,
    Result,
    Schema,
    chunks,
    log,
    query,
    run_archive_py,
    run_child,
    tail,
)

# --------------------------------------------------------------------------- b: pt-archiver


def pt_archiver_dsn(env: Env, table: str | None = None) -> str:
    """pt-archiver's DSN for a table of env's server (default: the source table): socket or
    TCP, utf8mb4 from an option file, LOAD DATA LOCAL on.

    The connection charset comes from an option file (DSN ``F=``): pt-archiver 3.2.1
    dies on ``--charset utf8mb4`` (Perl has no encoding of that name), ``--charset utf8``
    is utf8mb3 on MariaDB (4-byte chars lost), and the default latin1 connection with
    ``--no-check-charset`` silently mangles every non-ASCII character.
    """
    cnf = env.workdir / "pt-client.cnf"
    cnf.write_text("[client]\ndefault-character-set=utf8mb4\n")
    kw = env.server.connection_kwargs()
    where = (f"h=localhost,S={kw['unix_socket']}" if kw.get("unix_socket")
             else f"h={kw['host']},P={kw['port']}")
    dsn = (f"{where},u={kw.get('user', 'root')},D={env.schema.db},t={table or env.schema.source},"
           f"L=1,F={cnf}")
    if kw.get("password"):
        dsn += f",p={kw['password']}"
    return dsn


def pt_archiver_argv(env: Env, batch_size: int, where: str = "1=1", dest: str | None = None) -> list[str]:
    """Command line for pt-archiver moving the rows matching `where` in batches of batch_size,
    into the archive table on the same server or into the `dest` DSN."""
    return ["pt-archiver", "--source", pt_archiver_dsn(env), "--dest", dest or f"t={env.schema.archive}",
            "--where", where, "--limit", str(batch_size), "--commit-each",
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


def run_pt_archiver(env: Env, batch_size: int, where: str = "1=1",
                    dest: str | None = None) -> tuple[float, int | None]:
    """Run pt-archiver once (into the `dest` DSN if given); return (seconds, peak RSS KB)."""
    logfile = env.workdir / f"pt-archiver-{time.monotonic_ns()}.log"
    seconds, status, rss = run_child(pt_archiver_argv(env, batch_size, where, dest), logfile, env.time_bin)
    if status != 0:
        raise BenchError(f"pt-archiver exited with {status}:\n{tail(logfile)}")
    text = logfile.read_text(errors="replace")
    summary = re.findall(r"^(?:SELECT|INSERT|DELETE) \d+$|^Exiting.*$", text, re.M)
    log("pt-archiver: " + "; ".join(summary))
    return seconds, rss


# --------------------------------------------------------------------------- c: range floor

def batch_loop_sql(name: str, variables: str, sql_type: str, select: str, body: str) -> str:
    """A procedure that fetches each row of `select` into `variables` and runs `body` on it
    in a transaction of its own: one batch per row, as the in-server floors need."""
    return f"""
CREATE PROCEDURE {name}()
BEGIN
  DECLARE done INT DEFAULT 0;
  DECLARE {variables} {sql_type};
  DECLARE cur CURSOR FOR {select};
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET done = 1;
  OPEN cur;
  batch_loop: LOOP
    FETCH cur INTO {variables};
    IF done THEN LEAVE batch_loop; END IF;
    START TRANSACTION;
    {body}
    COMMIT;
  END LOOP;
  CLOSE cur;
END
"""


def range_proc_sql(schema: Schema) -> str:
    """The range-loop procedure: one INSERT ... SELECT and DELETE by BETWEEN per batch."""
    cols = ", ".join(schema.columns)
    return batch_loop_sql(
        "bench_move_batches", "v_lo, v_hi", "BIGINT", f"SELECT lo, hi FROM {BATCHES} ORDER BY batch_no",
        f"INSERT INTO {schema.archive} ({cols})\n"
        f"      SELECT {cols} FROM {schema.source} WHERE id BETWEEN v_lo AND v_hi;\n"
        f"    DELETE FROM {schema.source} WHERE id BETWEEN v_lo AND v_hi;")


STATEMENTS_PROC_SQL = batch_loop_sql(
    "bench_run_statements", "v_insert, v_delete", "MEDIUMTEXT",
    f"SELECT insert_sql, delete_sql FROM {STATEMENTS} ORDER BY batch_no",
    "EXECUTE IMMEDIATE v_insert;\n    EXECUTE IMMEDIATE v_delete;")


def insert_rows(conn: Any, sql: str, rows: Sequence[tuple]) -> None:
    """executemany in slices (untimed preparation)."""
    cur = conn.cursor()
    try:
        for part in chunks(rows, 2000):
            cur.executemany(sql, part)
    finally:
        cur.close()


def create_proc(conn: Any, schema: Schema, name: str, sql: str) -> None:
    """(Re)create a procedure in the schema's database."""
    query(conn, f"USE `{schema.db}`")
    query(conn, f"DROP PROCEDURE IF EXISTS {name}")
    query(conn, sql)


def load_batches(conn: Any, schema: Schema, ids: Sequence[int], batch_size: int) -> None:
    """Fill the batch-range table from the sorted CSV ids (untimed preparation)."""
    query(conn, f"TRUNCATE TABLE {schema.table(BATCHES)}")
    ranges = [(n, chunk[0], chunk[-1]) for n, chunk in enumerate(chunks(ids, batch_size), 1)]
    insert_rows(conn, f"INSERT INTO {schema.table(BATCHES)} (batch_no, lo, hi) VALUES (%s, %s, %s)",
                ranges)
    create_proc(conn, schema, "bench_move_batches", range_proc_sql(schema))


def run_stored_proc(env: Env, batch_size: int, ids: Sequence[int]) -> float:
    """Run the stored-procedure floor once; return seconds for the CALL."""
    load_batches(env.conn, env.schema, ids, batch_size)
    t0 = time.perf_counter()
    query(env.conn, "CALL bench_move_batches()")
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- d: same statements

def archive_statements(schema: Schema, ids: Sequence[int], batch_size: int) -> list[tuple[int, str, str]]:
    """(batch, INSERT, DELETE) exactly as archive.py's fast path words them for these batches.

    archive.py batches the CSV's keys in file order (here: sorted ids) and builds the
    fast path's condition: one BETWEEN for contiguous keys, TablePlan.span_of()'s range and
    bitmap for sparse keys (after a read that checks the range holds no unlisted row: here
    it never does, so that read is left out), IN lists for scattered ones.  Integer keys are
    inlined, so the statements take no parameters.
    """
    import archive  # the product itself: the statements cannot drift from what it sends

    plan = archive.TablePlan(schema.source, schema.archive, ("id",),
                             tuple(archive.Column(c, "") for c in schema.columns),
                             archive.KeyType("int"))
    out = []
    for number, keys in enumerate(chunks(ids, batch_size), 1):
        span = plan.span_of(keys)  # the bench's ranges hold no unlisted row: the check would pass
        condition, params = (span.condition, ()) if span else plan.condition(keys)
        if params:
            raise BenchError("archive.py sent parameters for integer keys; update the bench")
        out.append((number, plan.insert_sql(condition), plan.delete_sql(condition, len(set(keys)))))
    return out


def run_same_statements(env: Env, batch_size: int, ids: Sequence[int]) -> float:
    """Run archive.py's statements in an in-server loop once; return seconds for the CALL."""
    conn, schema = env.conn, env.schema
    query(conn, f"TRUNCATE TABLE {schema.table(STATEMENTS)}")
    insert_rows(conn, f"INSERT INTO {schema.table(STATEMENTS)} (batch_no, insert_sql, delete_sql) "
                      f"VALUES (%s, %s, %s)", archive_statements(schema, ids, batch_size))
    create_proc(conn, schema, "bench_run_statements", STATEMENTS_PROC_SQL)
    t0 = time.perf_counter()
    query(conn, "CALL bench_run_statements()")
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- the line-up

def side_by_side(env: Env, batch_size: int, ids: Sequence[int], sparse: bool = False,
                 prefix: str = "") -> tuple[list[Contender], list[Result]]:
    """Contenders a, b, c (and d when keys are sparse) on env, plus SKIPPED results.

    `ids` are every row id in env.ids_csv (sorted); `prefix` goes before each name
    ("a archive.py" -> "<prefix>a archive.py") so several servers can share one table.
    """
    contenders: list[Contender] = []
    skipped: list[Result] = []
    if env.archive_py.is_file():
        contenders.append(Contender(f"{prefix}a archive.py", lambda: run_archive_py(
            env, "main", batch_size), env=env))
    else:
        skipped.append(Result(f"{prefix}a archive.py", None, 0,
                              note=f"SKIPPED: {env.archive_py} missing"))
    if env.pt_missing is None:
        contenders.append(Contender(f"{prefix}b pt-archiver --bulk-insert",
                                    lambda: run_pt_archiver(env, batch_size), env=env))
    else:
        skipped.append(Result(f"{prefix}b pt-archiver --bulk-insert", None, 0,
                              note=f"SKIPPED: {env.pt_missing}"))
    contenders.append(Contender(f"{prefix}c stored procedure (floor)",
                                lambda: run_stored_proc(env, batch_size, ids), env=env))
    if sparse:
        contenders.append(Contender(f"{prefix}d in-server loop, same statements",
                                    lambda: run_same_statements(env, batch_size, ids), env=env))
    return contenders, skipped
