#!/usr/bin/env python3
"""Benchmark archive.py against pt-archiver and an in-server stored-procedure floor.

Usage (from the repo root, with the venv that has mysql-connector-python)::

    python bench/bench.py [--rows 200000] [--batch-size 1000] [--id-step 1]
                          [--sweep 100,500,1000,2000,5000,10000]
                          [--repeat 1] [--rss] [--resume-probe] [--keep] [--no-main]
                          [--history [--history-days 365] [--history-lines 20000]
                                     [--history-batches 1000000]]
                          [--workload [--workload-threads 4] [--workload-rate 200]
                                      [--workload-seconds 10] [--throttle sleep_seconds=0.05]]
                          [--wide [--wide-rows 5000]] [--galera] [--dest]
                          [--batch-checks [--check-batches 200]]
                          [--composite [--composite-rows 1000000]]

The code: ``bench.py`` (this entry point and the main table), ``benchlib.py`` (server,
tables, reset/settle/verify, child runs, measuring), ``contenders.py`` (a-d below),
``probes.py`` (4, 5), ``history.py`` (6), ``workload.py`` (7), ``wide.py`` (8),
``cluster.py`` (9), ``dest.py`` (10), ``schema_checks.py`` (11) and ``composite.py`` (12).
Every mode verifies the data after each run it times.

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

3. Times, at ``--batch-size``, moving all rows with (``--no-main`` skips this and the sweep):

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
   d. Only with sparse keys (``--id-step`` 2+): "in-server loop, same statements", the
      floor for key lists.  A stored procedure runs, per batch, the ``INSERT ... SELECT``
      and ``DELETE`` texts archive.py's key lists make for that batch (its own
      ``TablePlan``/``key_condition``: ``BETWEEN`` for runs of 4+ consecutive ids, an
      ``IN (...)`` list for the rest) through ``EXECUTE IMMEDIATE``, one transaction per
      batch.  The statements are stored before the clock starts.  archive.py itself sends
      such a batch as a key range filtered by a bitmap when the range holds no unlisted
      row (``TablePlan.span_of``), which reads the same rows as c's ranges: c is the floor
      for that, d for key lists.

   After each contender the result is verified: ``rewards`` must hold exactly the
   rows not listed, ``rewards_archives`` exactly the listed ones, and a CRC32
   checksum over all data columns of the archive must equal the pristine rows'
   checksum.  A failed verification is reported as FAILED and the exit status is 1.

   Prints a table (contender, seconds, rows/s, ratios a/c, a/b and, sparse, a/d), then a
   batch-size sweep of archive.py alone (``--sweep``; ``--sweep ''`` skips it).
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

6. ``--history``: start-up cost with a year of history.  The history describes
   ``--history-days`` (365) earlier daily runs of the same job, 3 files each (names
   ``history_YYYYMMDD_N.csv``, content hash = sha256 of the name; none of them is the
   file being run):

   * text logs: one ``DataProcessingAllDetails_DD_MM_YYYY.txt`` per day before today, in
     the exact format archive.py writes (its ``log_file_name``, ``file_info_line`` and
     ``batch_log_line`` are called or matched line for line): the run's two header lines
     (``=== Script Starts at ...``, ``RUN_ID ... | JOB: bench.rewards -> bench.rewards_archives
     ...``), per file ``STARTING`` and ``FILE_INFO`` (with ``JOB:``), a ``PROCESSING`` and a
     ``COMPLETED`` line per batch (``--history-lines`` (20,000) batch lines per log), and the
     ``SUMMARY`` line.  Written once per bench run (~620 MB at the defaults).
   * tracking rows: archive.py's own ``TRACKING_DDL``, then one ``process_logs`` row per
     day, 3 ``file_processing_logs`` rows per run and ``--history-batches`` (1,000,000)
     ``batch_processing_logs`` rows spread over those files, all COMPLETED, loaded with
     ``INSERT ... SELECT`` from ``seq_1_to_N`` (a few seconds per million rows).

   Logs and tables name the same files and hashes; their batch counts follow their own
   options (batch lines are rounded down to whole batches of 3 files, 2 lines each).

   Three runs of archive.py on a CSV of 5 batches (``--batch-size``) are timed: empty
   history (archive.py's tracking tables created but empty, so a first run's one-off DDL
   is not counted; empty log_dir); history, first run (no ``.archive-log-index.json``
   yet: it parses every log and writes the index); history, second run (same log_dir and
   tracking tables; it reads the index and re-parses only today's log, which the first
   run wrote).  Measured from outside: the bench reads the server clock (``NOW(6)``)
   just before it spawns archive.py; afterwards the ``created_at`` (``DATETIME(6)``,
   server clock) of the new run's first ``batch_processing_logs`` row gives "process
   start to first batch", which includes interpreter start-up and excludes only the
   few-ms COMMIT right after that insert; nothing polls the server while it runs.  Also
   reported: the whole run, peak RSS, the index size, and the ratio to the empty run
   (target: <= 1.5 for the run using the index).  ``--repeat N`` repeats the three runs
   N times (history tables reloaded each time) and takes medians.

7. ``--workload``: the cost to the application while archiving.  The CSV lists the first
   half of the rows; ``--workload-threads`` (4) threads in the bench process, each with
   its own connection (mysql-connector-python, autocommit), send point reads by primary
   key (``SELECT *``, 80%) and single-row updates (``UPDATE ... SET status = ...``, 20%)
   of random rows from the *other* half, paced at ``--workload-rate`` (200) ops/s per
   thread (0 = as fast as they can), so the offered load is the same in every phase and
   latency shows the interference.  Four phases, each after a reset and settle, with a
   0.5 s warm-up that is not counted: idle (no archiver, ``--workload-seconds``),
   archive.py, pt-archiver at the same batch size (``--where 'id <= <last listed id>'``:
   the same rows) and archive.py with ``[controls]`` throttles (``--throttle``, default
   ``sleep_seconds=0.05``; e.g. ``sleep_seconds=0.02,max_threads_running=3``).  The
   archiver phases last as long as the archiver takes (equal rows).  Prints, per phase,
   its length, ops/s achieved, p50/p99 latency (ms) of reads and of updates, workload
   errors and the archiver's rows/s.  ``--repeat N`` interleaves N rounds of the four
   phases and pools the latencies.

8. ``--wide``: database ``bench_wide``, table ``documents`` with about 8 KB of TEXT and
   JSON per row (``--wide-rows``, default 5,000: ~40 MB): a, b and c at ``--batch-size``,
   reporting seconds, rows/s, MB/s (logical bytes of the data columns, 10^6 per MB) and
   peak RSS (GNU time), verified like the main table.

9. ``--galera``: a real 3-node Galera cluster (``tests/galera.py``'s ``GaleraCluster``;
   nodes run as the mysql user from a base dir under /tmp; needs galera-4 and rsync)
   with the bench's server options on each node (flush_log_at_trx_commit=1 like the
   single server; 256M buffer pool each).  The same ``rewards`` rows are built through
   node 0; archive.py connects with ``[database] host = 127.0.0.1:P1, 127.0.0.1:P2,
   127.0.0.1:P3``, pt-archiver and the floor go to node 0.  Every node catches up
   (``wsrep_sync_wait``) and settles before each run.  The same contenders are timed on the
   single server and on the cluster, interleaved, and printed side by side (rows/s and
   the cluster/single ratio).  The cluster is stopped at the end.

10. ``--dest``: archiving into another server.  A second throwaway MariaDB is started in the
   temp dir with the same settings (durability on); it holds the archive table, named like the
   source table in a database named like the source's (``bench.rewards``, plus
   ``archived_at``), while ``rewards``, its pristine copy, archive.py's tracking tables, text
   log and run lock stay on the main server.  Timed side by side (interleaved with
   ``--repeat``), at ``--batch-size``, moving every row:

   a. archive.py with a ``[destination]`` section (the second server's socket and database);
   b. ``pt-archiver --source <server 1> --dest <server 2> --bulk-insert --bulk-delete
      --commit-each --limit B`` with the main table's DSN options on both sides (``L=1``,
      ``F=<cnf>`` for utf8mb4, ``--no-check-columns``); it too commits the destination first.

   Before each run the destination's archive table is truncated and both servers settle (the
   source is reset as for the main table).  After each run: the source holds exactly the
   unlisted rows, the destination's archive exactly the listed ones, and the checksum of 2.'s
   verification, run on the destination over the archived rows, equals the one run on the
   source over the pristine rows (the same SQL on both servers); the source's own
   ``rewards_archives`` stays empty and no other table appears on the destination.  Prints
   seconds, rows/s, peak RSS and the ratio a/b (goal: <= 0.7).  With ``--rss`` too, 4.'s
   30k-key and 3M-key runs are repeated into the destination (goal: under 100 MB and flat).
   The second server is stopped at the end.

11. ``--batch-checks``: the cost of the check of the table definitions every batch makes
   (``archive.run_checked``: the metadata locks, the gate on engines, triggers and
   referencing foreign keys, and SHOW CREATE TABLE of source and archive).  The fast path's
   data round trip for a batch of 1000 keys (``INSERT ... SELECT`` and ``DELETE``, rolled back so
   that every batch moves the same rows) is timed with and without those statements,
   interleaved, ``--check-batches`` times each; medians in ms.  Foreign keys are read from
   InnoDB's list (what a user with PROCESS gets), then from information_schema's
   REFERENTIAL_CONSTRAINTS, each also with 1,000 more tables on the server.

12. ``--composite``: a table partitioned by RANGE COLUMNS (created_at) into 4 partitions, keyed by
   ``PRIMARY KEY (id, created_at DATETIME(6))`` (``--composite-rows``, 1,000,000), all its keys
   in one CSV (``id,created_at`` with 6 fractional digits, in key order): a archive.py with
   ``key_column = id, created_at`` against b pt-archiver (the same flags as 3b), which ascends
   the same primary key, and c the stored-procedure floor of 3c (id ranges: ids are unique in
   this table).  Verified like 3; prints a/b (goal at most 0.50) and c/b.

13. ``--family``: orders with their items (``--family-orders``, 200,000; ``--family-items``, 5 per
   order; the items' foreign key ``ON DELETE RESTRICT``): a archive.py with ``[child items]``,
   every order listed, against b pt-archiver (the same flags as 3b) on the items, then on the
   orders (one table per invocation; the two runs added up), and c an in-server floor: a stored
   procedure moving a batch of orders and their items by order id range, one commit each.
   Verified: both archives equal their pristine copies, both sources empty; prints a/b (goal at
   most 0.50) and c/b.

   With ``--compare``, 12 and 13 also time e, the other archive.py, interleaved with a and b, and
   print e/b too: a change measured side by side with what it changes, in one run.

Progress goes to stderr, result tables to stdout.  ``--keep`` leaves the temp dir
(server datadir, CSVs, configs, logs) in place and prints its path.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import cluster
import composite
import dest
import family
import history
import probes
import schema_checks
import wide
import workload
from benchlib import (
    REPO,
    BenchError,
    Contender,
    Env,
    Mode,
    Result,
    archive_py_flags,
    create_schema,
    find_gnu_time,
    fmt_note,
    fmt_ratio,
    fmt_rps,
    fmt_rss,
    fmt_seconds,
    log,
    measure,
    run_archive_py,
    scalar,
    start_server,
    write_ids_csv,
)
from contenders import ensure_pt_archiver, side_by_side

MODES: tuple[Mode, ...] = (history.MODE, workload.MODE, wide.MODE, cluster.MODE, dest.MODE,
                           schema_checks.MODE, composite.MODE, family.MODE)


def print_main_table(results: list[Result], rows: int, batch_size: int) -> None:
    """Print the side-by-side table and ratios to stdout."""
    print(f"\n== Moving {rows} rows, batch size {batch_size} (innodb_flush_log_at_trx_commit=1) ==")
    print(f"{'contender':<36} {'seconds':>9} {'rows/s':>10} {'peak RSS':>9}  note")
    for r in results:
        print(f"{r.name:<36} {fmt_seconds(r)} {fmt_rps(r)} {fmt_rss(r)}  {fmt_note(r)}".rstrip())
    by_key = {r.name[0]: r for r in results}
    print(f"ratio a/c (archive.py / stored proc): {fmt_ratio(by_key.get('a'), by_key.get('c'))}")
    print(f"ratio a/b (archive.py / pt-archiver): {fmt_ratio(by_key.get('a'), by_key.get('b'))}")
    if "d" in by_key:
        print(f"ratio a/d (archive.py / in-server loop of its own statements): "
              f"{fmt_ratio(by_key.get('a'), by_key.get('d'))}")
    if "e" in by_key:
        print(f"ratio a/e (archive.py / the other archive.py): {fmt_ratio(by_key.get('a'), by_key.get('e'))}")
    sys.stdout.flush()


def run_main(env: Env, args: argparse.Namespace, ids: Sequence[int]) -> list[Result]:
    """The side-by-side table (a, b, c and, for sparse keys, d; with --compare, e: another archive.py)."""
    contenders, skipped = side_by_side(env, args.batch_size, ids, sparse=args.id_step > 1)
    if args.compare:
        other = dataclasses.replace(env, archive_py=args.compare.resolve(),
                                    flags=archive_py_flags(args.compare))
        contenders.append(Contender(f"e archive.py {args.compare.name}", lambda: run_archive_py(
            other, "compare", args.batch_size), env=other))
    results = sorted(measure(env, contenders, args.repeat) + skipped, key=lambda r: r.name)
    print_main_table(results, args.rows, args.batch_size)
    return results


def run_sweep(env: Env, sizes: list[int], repeat: int) -> list[Result]:
    """Time archive.py at each batch size and print the sweep table."""
    def contender(bs: int) -> Contender:
        return Contender(f"archive.py batch={bs}", lambda: run_archive_py(env, f"sweep{bs}", bs))

    results = measure(env, [contender(bs) for bs in sizes], repeat)
    print(f"\n== archive.py batch-size sweep ({env.rows} rows) ==")
    print(f"{'batch size':>10} {'batches':>8} {'seconds':>9} {'rows/s':>10} {'peak RSS':>9}  note")
    for bs, r in zip(sizes, results):
        print(f"{bs:>10} {-(-env.rows // bs):>8} {fmt_seconds(r)} {fmt_rps(r)} {fmt_rss(r)}  "
              f"{fmt_note(r)}".rstrip())
    sys.stdout.flush()
    return results


# --------------------------------------------------------------------------- command line

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    doc = __doc__ or ""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                epilog="Each mode is described in detail in bench/bench.py's docstring.",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=200_000, help="rows in the table (default 200000)")
    p.add_argument("--batch-size", type=int, default=1000, help="batch size for the side-by-side")
    p.add_argument("--id-step", type=int, default=1,
                   help="gap between row ids: 1 = contiguous (ranges apply), 2+ = sparse (IN lists; "
                        "adds contender d, the in-server loop of archive.py's own statements)")
    p.add_argument("--sweep", default="100,500,1000,2000,5000,10000",
                   help="comma-separated batch sizes for the archive.py sweep ('' to skip)")
    p.add_argument("--repeat", type=int, default=1, help="runs per measurement (median reported)")
    p.add_argument("--no-main", action="store_true",
                   help="skip the side-by-side table and the sweep (run only the modes asked for)")
    p.add_argument("--rss", action="store_true", help="measure archive.py peak RSS, 30k vs 3M ids")
    p.add_argument("--resume-probe", action="store_true",
                   help="time resuming a 10,000-batch file after 9,000 done batches")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (datadir, CSVs, logs)")
    p.add_argument("--archive-py", type=Path, default=REPO / "archive.py", help=argparse.SUPPRESS)
    p.add_argument("--compare", type=Path, metavar="ARCHIVE_PY",
                   help="time another archive.py too, side by side (e.g. a release: git show v:archive.py)")
    for mode in MODES:
        mode.add_args(p)
    args = p.parse_args(argv)
    args.sweep_sizes = [int(s) for s in args.sweep.split(",") if s.strip()]
    if min(args.rows, args.batch_size, args.repeat, args.id_step, *args.sweep_sizes) < 1:
        p.error("--rows, --batch-size, --repeat, --id-step and --sweep values must be positive")
    return args


# --------------------------------------------------------------------------- main

def skipped(name: str, why: str) -> list[Result]:
    """A SKIPPED result, also printed."""
    print(f"\n== {name}: skipped: {why} ==")
    return [Result(name, None, 0, note=f"SKIPPED: {why}")]


def run_modes(env: Env, args: argparse.Namespace, ids: Sequence[int]) -> list[Result]:
    """Every measurement asked for beyond the main table, in the order of the docstring."""
    wanted = [m for m in ("rss", "resume_probe") if getattr(args, m)]
    wanted += [m.flag for m in MODES if getattr(args, m.flag)]
    if not env.archive_py.is_file():
        return [r for m in wanted for r in skipped(m, f"{env.archive_py} missing")]
    results: list[Result] = []
    if args.rss:
        results += probes.run_rss(env, args.batch_size)
    if args.resume_probe:
        results += probes.resume_probe(env, ids)
    for mode in MODES:
        if getattr(args, mode.flag):
            results += mode.run(env, args, ids)
    return results


def run_bench(args: argparse.Namespace, workdir: Path) -> bool:
    """Run every requested measurement inside workdir; return True if nothing failed."""
    server = start_server(workdir)
    try:
        conn = server.connect()
        create_schema(conn, args.rows, args.id_step)
        ids_csv = workdir / "ids.csv"
        ids = write_ids_csv(conn, ids_csv)
        log(f"wrote {len(ids)} ids to {ids_csv}")
        env = Env(server, conn, workdir, ids_csv, args.rows, args.archive_py.resolve(), find_gnu_time())
        if env.archive_py.is_file():
            env.flags = archive_py_flags(env.archive_py)
            log(f"archive.py flags: {env.flags or 'none'}")
        env.pt_missing = ensure_pt_archiver()
        if env.pt_missing:
            log(f"skipping pt-archiver: {env.pt_missing}")
        print(f"# {scalar(conn, 'SELECT @@version')}, {os.cpu_count()} CPUs, "
              f"python {sys.version.split()[0]}, rows={args.rows}, batch={args.batch_size}, "
              f"id step={args.id_step}")
        results: list[Result] = []
        if not args.no_main:
            results += run_main(env, args, ids)
            if env.archive_py.is_file() and args.sweep_sizes:
                results += run_sweep(env, args.sweep_sizes, args.repeat)
        results += run_modes(env, args, ids)
        conn.close()
        return not any(r.failed for r in results)
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
