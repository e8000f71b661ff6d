"""``--history``: archive.py's start-up cost with a year of text logs and tracking rows.

See bench.py's docstring, item 6.  The history is a year of earlier daily runs of the same
job on other files: text logs written line for line as archive.py writes them, and tracking
rows loaded in bulk from ``seq_1_to_N``.  Three runs are timed from outside (server clock
before the spawn vs ``created_at`` of the run's first batch row): empty history, history
without the log index, and history with the index the previous run wrote.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchlib import (
    REPO,
    BenchError,
    Env,
    Mode,
    Result,
    archive_py_argv,
    failure_note,
    first_batch_delay,
    log,
    positive_int,
    prepare,
    query,
    run_child,
    server_now,
    settle,
    tail,
    verify,
    write_config,
    write_csv,
)

import archive

FILES_PER_RUN = 3
RUN_BATCHES = 5          # batches in the CSV of each timed run
BATCH_SECONDS = 0.02     # spacing of the history's batch timestamps
KEY_BYTES = 8            # bytes per key line in the history's (imaginary) CSV files
RUN_START = dt.time(2, 0)
HISTORY_HOST = "bench-history"
# archive.py's Config.reading for the configs benchlib.write_config writes (key_column and
# csv_column id, the default delimiter): its checkpoints hold only for the same reading.
READING = "key id from column 'id', delimiter ','"
TARGET_RATIO = 1.5


@dataclass(frozen=True)
class History:
    """The size and shape of the generated history."""

    days: int
    lines: int             # batch lines per daily log (a PROCESSING and a final line per batch)
    batches: int           # rows wanted in batch_processing_logs
    batch_size: int
    job: str
    today: dt.date

    @property
    def db_batches_per_file(self) -> int:
        """batch_processing_logs rows per history file (so the total is about `batches`)."""
        return max(1, -(-self.batches // (self.days * FILES_PER_RUN)))

    @property
    def log_batches_per_file(self) -> int:
        """Batches a file has in its day's log (two lines each)."""
        return max(1, self.lines // 2 // FILES_PER_RUN)

    def day(self, run: int) -> dt.date:
        """The day of history run 1..days (run `days` was yesterday)."""
        return self.today - dt.timedelta(days=self.days - run + 1)


def file_name(day: dt.date, n: int) -> str:
    """The name of history file n of a day (never the name of a file the bench runs)."""
    return f"history_{day:%Y%m%d}_{n}.csv"


def file_sha(name: str) -> str:
    """The content hash the history gives a file: sha256 of its name (SHA2(name, 256) in SQL)."""
    return hashlib.sha256(name.encode()).hexdigest()


# --------------------------------------------------------------------------- text logs

def day_log_lines(h: History, run: int) -> list[str]:
    """One day's log, as archive.py writes it for a run of FILES_PER_RUN files."""
    start = dt.datetime.combine(h.day(run), RUN_START)
    per_file = h.log_batches_per_file
    seconds = int(FILES_PER_RUN * per_file * BATCH_SECONDS) + 2
    stamps = [f"{start + dt.timedelta(seconds=s):{archive.LOG_TIMESTAMP}}" for s in range(seconds)]
    lines = [f"=== Script Starts at: {start:%d_%m_%Y_%H_%M_%S} ===",
             (f"RUN_ID: {run} | archive.py {archive.__version__} (000000000000) | JOB: {h.job} "
              f"| HOST: {HISTORY_HOST} | PID: {1000 + run}")]
    done = 0
    for n in range(1, FILES_PER_RUN + 1):
        name = file_name(h.day(run), n)
        keys = per_file * h.batch_size
        scan = archive.FileScan(name, keys * KEY_BYTES + 3, file_sha(name), keys)
        lines.append(f"STARTING: {name} (Size: {scan.size} bytes)")
        lines.append(archive.file_info_line(scan, h.batch_size, READING, h.job))
        for batch in range(1, per_file + 1):
            stamp = stamps[int(done * BATCH_SECONDS)]
            lines.append(f"[{stamp}] FILE: {name} | BATCH: {batch} | STATUS: PROCESSING")
            lines.append(f"[{stamp}] FILE: {name} | BATCH: {batch} | STATUS: COMPLETED")
            done += 1
    rows = done * h.batch_size
    lines.append(f"SUMMARY: COMPLETED | run {run} | files {FILES_PER_RUN} ({FILES_PER_RUN} archived, "
                 f"0 already done, 0 rejected) | batches {done} | rows archived {rows} | rows deleted {rows} "
                 f"| duplicates 0 | conflicts 0 | not found 0 | skipped by guard 0 | failures 0 "
                 f"| paused 0.0s | elapsed {done * BATCH_SECONDS:.1f}s "
                 f"| {rows / (done * BATCH_SECONDS):,.0f} rows/s | stopped: all files done")
    return lines


def check_format(lines: list[str], h: History) -> None:
    """The generated batch lines are the ones archive.py would write, and parse as such."""
    sample = next(line for line in lines if line.startswith("["))
    match = archive.BATCH_LINE.match(sample)
    if not match:
        raise BenchError(f"generated batch line does not parse: {sample!r}")
    when = dt.datetime.strptime(match.group(1), archive.LOG_TIMESTAMP)
    if archive.batch_log_line(when, match.group(2), int(match.group(3)), match.group(4)) != sample:
        raise BenchError(f"generated batch line differs from archive.batch_log_line: {sample!r}")
    summary = archive.summarize_log(lines)
    if len(summary.progress) != FILES_PER_RUN or any(k[0] != h.job for k in summary.progress):
        raise BenchError(f"archive.py would not read the generated log as {FILES_PER_RUN} files of {h.job}")


def write_logs(h: History, log_dir: Path) -> tuple[set[str], int]:
    """Write the daily logs; return their names and total size in bytes."""
    log_dir.mkdir(parents=True, exist_ok=True)
    names, size = set(), 0
    for run in range(1, h.days + 1):
        lines = day_log_lines(h, run)
        if run == 1:
            check_format(lines, h)
        path = log_dir / archive.log_file_name(dt.datetime.combine(h.day(run), RUN_START))
        data = ("\n".join(lines) + "\n").encode()
        path.write_bytes(data)
        names.add(path.name)
        size += len(data)
    return names, size


def clean_log_dir(log_dir: Path, history_logs: set[str]) -> None:
    """Back to the generated history: no index, no log a timed run wrote."""
    for path in log_dir.iterdir():
        if path.name not in history_logs:
            path.unlink()


# --------------------------------------------------------------------------- tracking rows

def create_tracking_tables(conn: Any, env: Env) -> None:
    """archive.py's tracking tables, empty, made with its own DDL."""
    query(conn, f"USE `{env.schema.db}`")
    for ddl in archive.TRACKING_DDL:
        query(conn, ddl)


def load_tables(conn: Any, env: Env, h: History) -> None:
    """archive.py's tracking tables filled with the history's runs, files and batches."""
    t0 = time.perf_counter()
    create_tracking_tables(conn, env)
    source, target = env.schema.source, env.schema.archive
    per_file = h.db_batches_per_file
    query(conn, f"""
        INSERT INTO process_logs (id, source_table, archive_table, status, host, pid, start_time,
          end_time, total_files, processed_files, rows_archived, rows_deleted, job, version, last_seen)
        SELECT seq, %s, %s, 'COMPLETED', %s, 1000 + seq, d, d + INTERVAL 1 HOUR, {FILES_PER_RUN},
          {FILES_PER_RUN}, {FILES_PER_RUN * per_file * h.batch_size},
          {FILES_PER_RUN * per_file * h.batch_size}, %s, %s, d + INTERVAL 1 HOUR
        FROM (SELECT seq, TIMESTAMP(%s - INTERVAL ({h.days} - seq + 1) DAY, %s) AS d
              FROM seq_1_to_{h.days}) s""",
          (source, target, HISTORY_HOST, h.job, archive.__version__, h.today, RUN_START))
    query(conn, f"""
        INSERT INTO file_processing_logs (process_log_id, file_name, file_size, file_checksum, status,
          batch_size, total_keys, total_batches, start_batch, processed_batches, last_processed_batch,
          rows_archived, rows_deleted, started_at, finished_at, job)
        SELECT id, name, {per_file * h.batch_size * KEY_BYTES + 3}, SHA2(name, 256), 'COMPLETED',
          {h.batch_size}, {per_file * h.batch_size}, {per_file}, 1, {per_file}, {per_file},
          {per_file * h.batch_size}, {per_file * h.batch_size}, start_time, end_time, job
        FROM (SELECT p.id, p.start_time, p.end_time, p.job,
                     CONCAT('history_', REPLACE(DATE(p.start_time), '-', ''), '_', f.seq, '.csv') AS name
              FROM process_logs p JOIN seq_1_to_{FILES_PER_RUN} f) AS files
        ORDER BY id, name""")
    for low in range(1, h.days + 1, 30):  # 30 runs per statement keeps each transaction moderate
        insert_batches(conn, h, low, min(h.days, low + 29))
    query(conn, "ANALYZE TABLE process_logs, file_processing_logs, batch_processing_logs")
    rows = query(conn, "SELECT (SELECT COUNT(*) FROM process_logs), (SELECT COUNT(*) FROM "
                       "file_processing_logs), (SELECT COUNT(*) FROM batch_processing_logs)")[0]
    log(f"history tables: {rows[0]} runs, {rows[1]} files, {rows[2]} batches "
        f"in {time.perf_counter() - t0:.1f}s")


def insert_batches(conn: Any, h: History, first_run: int, last_run: int) -> None:
    """batch_processing_logs rows of history runs first_run..last_run."""
    bs, per_file = h.batch_size, h.db_batches_per_file
    query(conn, f"""
        INSERT INTO batch_processing_logs (process_log_id, file_name, batch_number, status, first_key,
          last_key, keys_in_batch, rows_archived, rows_deleted, end_offset, end_line, created_at)
        SELECT f.process_log_id, f.file_name, b.seq, 'COMPLETED', (b.seq - 1) * {bs} + 1, b.seq * {bs},
          {bs}, {bs}, {bs}, 3 + b.seq * {bs * KEY_BYTES}, 1 + b.seq * {bs},
          f.started_at + INTERVAL (b.seq * {int(BATCH_SECONDS * 1e6)}) MICROSECOND
        FROM file_processing_logs f JOIN seq_1_to_{per_file} b
        WHERE f.process_log_id BETWEEN {first_run} AND {last_run}""")


# --------------------------------------------------------------------------- timed runs

@dataclass
class Timing:
    """What the rounds measured for one kind of run."""

    name: str
    first: list[float] = field(default_factory=list)   # process start to first batch, s
    total: list[float] = field(default_factory=list)   # whole run, s
    rss: list[int] = field(default_factory=list)       # peak RSS, KB
    note: str = ""


def median(values: Sequence[float]) -> float | None:
    """The median, or None when a run never completed."""
    return statistics.median(values) if values else None


def timed_run(env: Env, config: Path, keys: Sequence[int], timing: Timing) -> None:
    """Run archive.py on config, verify, and add first-batch delay, wall time and RSS to timing."""
    logfile = config.parent / "output.log"
    spawned = server_now(env.conn)
    seconds, status, rss = run_child(archive_py_argv(env, config), logfile, env.time_bin, cwd=REPO)
    if status != 0:
        raise BenchError(f"archive.py exited with {status}:\n{tail(logfile)}")
    verify(env.conn, timing.name, (keys[0], keys[-1]), env.schema)
    timing.first.append(first_batch_delay(env.conn, env.schema, spawned))
    timing.total.append(seconds)
    if rss:
        timing.rss.append(rss)
    log(f"{timing.name}: first batch after {timing.first[-1]:.3f}s, {seconds:.2f}s in all")


def run_round(env: Env, h: History, keys: Sequence[int], history_dir: Path, history_logs: set[str],
              timings: list[Timing], round_no: int) -> int:
    """One round: empty history, history without index, history with index; return index bytes."""
    empty, first, cached = timings
    rundir = env.workdir / f"history-round{round_no}"
    csvs = [rundir / f"today_{kind}.csv" for kind in ("empty", "first", "cached")]
    for path in csvs:
        write_csv(path, keys)
    log(f"{empty.name}: reset")
    prepare(env)
    create_tracking_tables(env.conn, env)  # a run's first-ever DDL is not what we compare
    timed_run(env, write_config(env, rundir / "empty", h.batch_size, csvs[0]), keys, empty)
    log(f"{first.name}: reset, loading history tables")
    prepare(env)
    load_tables(env.conn, env, h)
    settle(env.conn, env.schema)
    clean_log_dir(history_dir, history_logs)
    timed_run(env, write_config(env, rundir / "first", h.batch_size, csvs[1], log_dir=history_dir),
              keys, first)
    index = history_dir / archive.LOG_INDEX_NAME
    index_bytes = index.stat().st_size if index.exists() else 0
    log(f"{cached.name}: reset (tracking tables kept)")
    prepare(env, keep_tracking=True)
    timed_run(env, write_config(env, rundir / "cached", h.batch_size, csvs[2], log_dir=history_dir),
              keys, cached)
    return index_bytes


def print_table(h: History, timings: list[Timing], log_bytes: int, index_bytes: int) -> None:
    """The start-up table: first batch, whole run, RSS, ratio to the empty run."""
    print(f"\n== start-up with history: {h.days} daily logs x {h.lines} batch lines "
          f"({log_bytes / 1e6:.0f} MB), {h.days} runs / {h.days * FILES_PER_RUN} files / "
          f"{h.days * FILES_PER_RUN * h.db_batches_per_file} batches in the tracking tables; "
          f"the timed CSV has {RUN_BATCHES} batches of {h.batch_size} ==")
    print(f"{'run':<36} {'1st batch s':>11} {'total s':>8} {'peak RSS':>9} {'vs empty':>9}  note")
    base = median(timings[0].first)
    for t in timings:
        first, total = median(t.first), median(t.total)
        ratio = f"{first / base:8.2f}x" if first and base else f"{'-':>9}"
        rss = f"{max(t.rss) / 1024:7.1f}MB" if t.rss else f"{'-':>9}"
        runs = f"runs: {', '.join(f'{x:.3f}' for x in t.first)} " if len(t.first) > 1 else ""
        print(f"{t.name:<36} {first or 0:11.3f} {total or 0:8.2f} {rss} {ratio}  {runs}{t.note}".rstrip())
    cached = median(timings[2].first)
    if cached and base:
        verdict = "OK" if cached / base <= TARGET_RATIO else "ABOVE TARGET"
        print(f"with the log index: {cached / base:.2f}x the empty run's start-up "
              f"(target <= {TARGET_RATIO}): {verdict}; index {index_bytes / 1024:.1f} KB")
    sys.stdout.flush()


def run_history(env: Env, args: argparse.Namespace, ids: Sequence[int]) -> list[Result]:
    """Generate the history, time the three kinds of run (--repeat rounds), print the table."""
    keys = list(ids[:RUN_BATCHES * args.batch_size])
    h = History(args.history_days, args.history_lines, args.history_batches, args.batch_size,
                f"{env.schema.db}.{env.schema.source} -> {env.schema.db}.{env.schema.archive}",
                dt.date.today())
    history_dir = env.workdir / "history-logs"
    t0 = time.perf_counter()
    history_logs, log_bytes = write_logs(h, history_dir)
    log(f"history: wrote {len(history_logs)} logs ({log_bytes / 1e6:.0f} MB) in "
        f"{time.perf_counter() - t0:.1f}s")
    timings = [Timing("empty history"), Timing("history, 1st run (builds index)"),
               Timing("history, 2nd run (uses index)")]
    index_bytes = 0
    try:
        for round_no in range(1, args.repeat + 1):
            index_bytes = run_round(env, h, keys, history_dir, history_logs, timings, round_no)
    except BenchError as exc:
        log(f"FAILED: {exc}")
        for t in timings:
            t.note = t.note or failure_note(exc)
    print_table(h, timings, log_bytes, index_bytes)
    return [Result(f"history: {t.name}", median(t.total), len(keys), note=t.note) for t in timings]


def add_args(p: argparse.ArgumentParser) -> None:
    """--history and its sizes."""
    g = p.add_argument_group("start-up with a year of history (--history)")
    g.add_argument("--history", action="store_true",
                   help="time process start to first committed batch with a year of text logs and "
                        "tracking rows, vs empty history; first run (builds the log index) and second")
    g.add_argument("--history-days", type=positive_int, default=365, help="daily text logs / runs (365)")
    g.add_argument("--history-lines", type=positive_int, default=20_000, help="batch lines per log (20000)")
    g.add_argument("--history-batches", type=positive_int, default=1_000_000,
                   help="rows in batch_processing_logs (1000000)")


MODE = Mode("history", add_args, run_history)
