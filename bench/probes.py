"""``--rss`` (archive.py peak RSS, 30k vs 3M keys) and ``--resume-probe`` (resuming at batch 9,001).

See bench.py's docstring, items 4 and 5, for what they measure and why this way.
"""
from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchlib import (
    DONE_STATUSES,
    REPO,
    BenchError,
    Contender,
    Env,
    Result,
    archive_py_argv,
    failure_note,
    first_batch_delay,
    fmt_note,
    fmt_rps,
    fmt_rss,
    fmt_seconds,
    log,
    measure,
    prepare,
    pristine_ids,
    query,
    run_archive_py,
    run_child,
    scalar,
    server_now,
    settle,
    status_value,
    tail,
    verify,
    write_config,
    write_csv,
)

RSS_SMALL_IDS = 30_000
RSS_LARGE_IDS = 3_000_000
PROBE_KEYS = 1_000_000
PROBE_BATCH = 100
PROBE_DONE = 9_000


# (name, tag, csv file, id range expected to move) -> the contender timing archive.py on it
RssContender = Callable[[str, str, Path, "tuple[int, int]"], Contender]


def run_rss(env: Env, batch_size: int, contender: RssContender | None = None,
            where: str = "") -> list[Result]:
    """Measure archive.py peak RSS on a 30k-id and a 3M-id CSV and print the comparison.

    `contender` builds the runs (default: archive.py on env's server alone); `where` is
    added to the heading (e.g. "into another server").
    """
    def same_server(name: str, tag: str, csv: Path, moved: tuple[int, int]) -> Contender:
        return Contender(name, lambda: run_archive_py(env, tag, batch_size, csv), moved=moved)

    build = contender or same_server
    small_ids = pristine_ids(env.conn, env.schema)[:RSS_SMALL_IDS]
    small = env.workdir / "rss-small" / "ids_30k.csv"
    large = env.workdir / "rss-large" / "ids_3m.csv"
    write_csv(small, small_ids)
    write_csv(large, range(1, RSS_LARGE_IDS + 1))
    log(f"RSS CSVs: {small} ({len(small_ids)} ids), {large} ({RSS_LARGE_IDS} ids)")
    results = measure(env, [
        build(f"archive.py {len(small_ids)} ids", "rss30k", small, (small_ids[0], small_ids[-1])),
        build(f"archive.py {RSS_LARGE_IDS} ids", "rss3m", large, (1, RSS_LARGE_IDS)),
    ], 1)
    print(f"\n== archive.py peak RSS{' ' + where if where else ''} (batch size {batch_size}; "
          f"table has {env.rows} rows, ids beyond them simply miss) ==")
    for r in results:
        print(f"{r.name:<28} {fmt_rss(r)}  ({fmt_seconds(r).strip()}s, {r.rows} rows moved)  "
              f"{fmt_note(r)}".rstrip())
    if results[0].rss_kb and results[1].rss_kb:
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


def count_done_batches(env: Env) -> int | None:
    """Batches archive.py recorded as done (None if its tracking table is unreadable)."""
    try:
        return int(scalar(env.conn, f"SELECT COUNT(*) FROM {env.schema.table('batch_processing_logs')} "
                                    f"WHERE status IN {DONE_STATUSES}"))
    except Exception:  # the tracking schema belongs to archive.py
        return None


def run_until_done(env: Env, config: Path, lock_id: int, stop_file: Path,
                   logfile: Path, timeout: float = 1800.0) -> tuple[float, int]:
    """Run archive.py so that exactly batches 1..PROBE_DONE end up done; return (s, exit code).

    Through the public CLI only: a row of batch PROBE_DONE is held FOR UPDATE so that
    batch blocks; once archive.py waits on that lock (Innodb_row_lock_current_waits; a
    transaction that has not written yet is not listed in INNODB_TRX) the [controls]
    stop_file is created and the lock released, so the batch commits and the run stops
    before the next one.
    """
    locker = env.server.connect(env.schema.db)
    query(locker, "START TRANSACTION")
    query(locker, f"SELECT id FROM {env.schema.source} WHERE id = %s FOR UPDATE", (lock_id,))
    t0 = time.perf_counter()
    with open(logfile, "wb") as out:
        proc = subprocess.Popen(archive_py_argv(env, config), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=REPO)
    try:
        deadline = time.monotonic() + timeout
        while not status_value(env.conn, "Innodb_row_lock_current_waits"):
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


def resume_probe(env: Env, ids: Sequence[int]) -> list[Result]:
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
    prepare(env)
    log(f"resume probe: phase 1, running archive.py up to batch {PROBE_DONE} (untimed)")
    try:
        seconds, status = run_until_done(env, config, lock_id, stop_file, rundir / "phase1.log")
    except BenchError as exc:
        log(f"FAILED: {exc}")
        print(f"FAILED: {str(exc).splitlines()[0]}")
        return [Result("resume probe", None, 0, note="FAILED")]
    done = count_done_batches(env)
    print(f"phase 1 (untimed): {seconds:.1f}s, exit {status}, batches recorded done: {done}")
    if status != 6 or done != PROBE_DONE:
        log(f"warning: phase 1 expected exit 6 and {PROBE_DONE} done batches")
    settle(env.conn, env.schema)
    results = [timed_resume(env, config, rundir / "phase2.log", moved, len(tail_keys), done)]
    results += measure(env, [Contender(
        f"fresh run of the same {len(tail_keys) // PROBE_BATCH} batches",
        lambda: run_archive_py(env, "probe-fresh", PROBE_BATCH, tail_csv),
        moved=(tail_keys[0], tail_keys[-1]))], 1)
    for r in results:
        print(f"{r.name:<40} {fmt_seconds(r)}s {fmt_rps(r)} rows/s {fmt_rss(r)}  "
              f"{fmt_note(r)}".rstrip())
    if results[0].seconds and results[1].seconds:
        print(f"resume overhead: {results[0].seconds - results[1].seconds:+.2f}s "
              f"({results[0].seconds / results[1].seconds:.2f}x)")
    sys.stdout.flush()
    return results


def timed_resume(env: Env, config: Path, logfile: Path, moved: tuple[int, int], rows: int,
                 done: Any) -> Result:
    """Phase 2 of the probe: rerun the interrupted config, timed and verified."""
    name = f"resume after {done} done batches"
    log("resume probe: phase 2, resuming (timed)")
    spawned = server_now(env.conn)
    t, status, rss = run_child(archive_py_argv(env, config), logfile, env.time_bin, cwd=REPO)
    try:
        if status != 0:
            raise BenchError(f"resume run exited with {status}:\n{tail(logfile)}")
        in_archive = verify(env.conn, "resume probe", moved, env.schema)
        delay = first_batch_delay(env.conn, env.schema, spawned)
        print(f"resume: process start to first batch committed: {delay:.2f}s")
        return Result(name, t, rows, rss, note=f"({in_archive} rows in archive incl. phase 1)")
    except BenchError as exc:
        log(f"FAILED: {exc}")
        return Result(name, None, 0, note=failure_note(exc))
