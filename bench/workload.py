"""``--workload``: what archiving costs an application working on the same table.

See bench.py's docstring, item 7.  Client threads in this process (one connection each)
send paced point reads and single-row updates to rows the archivers do not touch; the
same threads, pacing and connection code run in every phase, so the measuring overhead
is the same whether an archiver runs or not.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

import mysql.connector
from benchlib import (
    BenchError,
    Env,
    Mode,
    Result,
    RunOutput,
    failure_note,
    fmt_ms,
    log,
    non_negative_float,
    percentile,
    positive_int,
    prepare,
    run_archive_py,
    scalar,
    verify,
    write_csv,
)
from contenders import run_pt_archiver

WRITE_SHARE = 0.2   # updates among the operations; the rest are point reads
WARMUP = 0.5        # seconds the workload runs before a phase's window opens
LOGGED_ERRORS = 3   # failed operations per thread and phase shown on stderr (all are counted)


@dataclass
class Sample:
    """One operation: when it started (perf_counter), how long it took, and what it was."""

    start: float
    seconds: float
    write: bool
    error: str = ""  # the server's error number and message, when it failed


@dataclass
class PhaseStats:
    """Operations of one or more runs of a phase, inside their windows."""

    reads: list[float] = field(default_factory=list)
    writes: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)  # error -> how often
    window: float = 0.0           # seconds the windows lasted, summed
    runs: int = 0                 # windows counted
    archiver: list[float] = field(default_factory=list)  # archiver seconds per run
    rows: int = 0                 # rows the archiver moved per run
    note: str = ""

    def add(self, samples: Sequence[Sample], start: float, end: float) -> None:
        """Count the samples that started inside [start, end]."""
        for s in samples:
            if start <= s.start <= end:
                if s.error:
                    self.errors[s.error] += 1
                else:
                    (self.writes if s.write else self.reads).append(s.seconds)
        self.window += end - start
        self.runs += 1

    @property
    def ops_per_s(self) -> float | None:
        """Operations completed per second of window."""
        return (len(self.reads) + len(self.writes)) / self.window if self.window else None


class Workload:
    """Paced point reads and single-row updates from threads with their own connections."""

    def __init__(self, connect: Callable[[], Any], table: str, ids: Sequence[int], threads: int,
                 rate: float):
        self.connect, self.ids, self.threads, self.rate = connect, list(ids), threads, rate
        self.read_sql = f"SELECT * FROM {table} WHERE id = %s"
        self.write_sql = f"UPDATE {table} SET status = (status + 1) % 3 WHERE id = %s"
        self.stop_event = threading.Event()
        self.samples: list[list[Sample]] = []
        self.workers: list[threading.Thread] = []
        self.failures: list[BaseException] = []

    def start(self) -> None:
        """Open the connections and start the threads; return once every thread is connected."""
        self.stop_event.clear()
        self.samples = [[] for _ in range(self.threads)]
        self.failures = []
        ready = threading.Barrier(self.threads + 1)
        self.workers = [threading.Thread(target=self.worker, args=(n, ready), daemon=True)
                        for n in range(self.threads)]
        for w in self.workers:
            w.start()
        ready.wait(timeout=60)

    def stop(self) -> list[Sample]:
        """Stop the threads and return every sample they took."""
        self.stop_event.set()
        for w in self.workers:
            w.join(timeout=120)
        if self.failures:
            raise BenchError(f"workload thread failed: {self.failures[0]}")
        return [s for per_thread in self.samples for s in per_thread]

    def worker(self, n: int, ready: threading.Barrier) -> None:
        """One client: connect, then operate at the pace until told to stop."""
        try:
            conn = self.connect()
        except BaseException as exc:  # reported by stop(); the barrier must still be met
            self.failures.append(exc)
            ready.wait(timeout=60)
            return
        ready.wait(timeout=60)
        try:
            self.operate(conn.cursor(), random.Random(n), self.samples[n])
        finally:
            conn.close()

    def operate(self, cur: Any, rng: random.Random, samples: list[Sample]) -> None:
        """The paced loop: a late operation starts at once; more than 1 s late, the pace restarts."""
        interval = 1.0 / self.rate if self.rate else 0.0
        due, failures = time.perf_counter(), 0
        while not self.stop_event.is_set():
            key, write = rng.choice(self.ids), rng.random() < WRITE_SHARE
            t0 = time.perf_counter()
            error = ""
            try:
                cur.execute(self.write_sql if write else self.read_sql, (key,))
                if not write:
                    cur.fetchall()
            except mysql.connector.Error as exc:
                error = f"{'update' if write else 'read'}: {exc.errno} {exc.msg}"[:120]
                failures += 1
                if failures <= LOGGED_ERRORS:
                    log(f"workload: {error.split(':')[0]} of id {key} failed: {exc.errno} {exc.msg}")
            samples.append(Sample(t0, time.perf_counter() - t0, write, error))
            if interval:
                due += interval
                wait = due - time.perf_counter()
                if wait > 0:
                    self.stop_event.wait(wait)
                elif wait < -1.0:
                    due = time.perf_counter()


@dataclass
class Phase:
    """One phase: a name and the archiver it runs (None: idle for --workload-seconds)."""

    name: str
    archiver: Callable[[], RunOutput] | None
    stats: PhaseStats = field(default_factory=PhaseStats)


def run_phase(env: Env, workload: Workload, phase: Phase, idle_seconds: float,
              moved: tuple[int, int]) -> None:
    """Reset, start the workload, run the archiver (or wait), stop, verify; add to phase.stats."""
    log(f"workload, {phase.name}: reset")
    prepare(env)
    workload.start()
    try:
        time.sleep(WARMUP)
        log(f"workload, {phase.name}: running")
        start = time.perf_counter()
        if phase.archiver is None:
            time.sleep(idle_seconds)
        else:
            out = phase.archiver()
            phase.stats.archiver.append(out[0] if isinstance(out, tuple) else out)
        end = time.perf_counter()
    finally:
        samples = workload.stop()
    phase.stats.add(samples, start, end)
    if phase.archiver is None:
        left = scalar(env.conn, f"SELECT COUNT(*) FROM {env.schema.table(env.schema.source)}")
        if left != env.rows:
            raise BenchError(f"idle phase: {left} rows in the source, expected {env.rows}")
    else:
        phase.stats.rows = verify(env.conn, f"workload, {phase.name}", moved, env.schema)
    log(f"workload, {phase.name}: {end - start:.2f}s, {len(samples)} operations")


def build_phases(env: Env, args: argparse.Namespace, keys: Sequence[int]) -> list[Phase]:
    """Idle, archive.py, pt-archiver (same rows, same batch size), archive.py throttled."""
    csv = env.workdir / "workload" / "ids_archived.csv"
    write_csv(csv, keys)
    bs = args.batch_size
    throttle = ",".join(f"{k}={v}" for k, v in args.throttle.items())
    phases = [Phase("idle (no archiver)", None),
              Phase("archive.py", lambda: run_archive_py(env, "workload", bs, csv))]
    if env.pt_missing is None:
        phases.append(Phase("pt-archiver", lambda: run_pt_archiver(env, bs, f"id <= {keys[-1]}")))
    else:
        log(f"workload: no pt-archiver phase ({env.pt_missing})")
    phases.append(Phase(f"archive.py {throttle}",
                        lambda: run_archive_py(env, "workload-throttled", bs, csv, args.throttle)))
    return phases


def error_note(errors: Counter[str]) -> str:
    """The most frequent workload error, for the note column."""
    if not errors:
        return ""
    (text, count), more = errors.most_common(1)[0], len(errors) - 1
    return f"{count}x {text}" + (f" (+{more} other kinds)" if more else "")


def print_table(env: Env, args: argparse.Namespace, phases: list[Phase], archived: int) -> None:
    """Latency and throughput per phase, with the archiver's rate."""
    pace = f"{args.workload_rate:g} ops/s each" if args.workload_rate else "unpaced"
    print(f"\n== application workload while archiving: {args.workload_threads} threads ({pace}), "
          f"{100 - WRITE_SHARE * 100:.0f}% point reads / {WRITE_SHARE * 100:.0f}% single-row updates "
          f"of rows not archived; {archived} of {env.rows} rows archived, batch {args.batch_size} ==")
    name_width = max(28, *(len(p.name) for p in phases))
    print(f"{'phase':<{name_width}} {'seconds':>8} {'ops/s':>8} {'read p50':>8} {'read p99':>8} "
          f"{'upd p50':>8} {'upd p99':>8} {'errors':>6} {'archiver rows/s':>15}  note")
    for p in phases:
        s = p.stats
        seconds = s.window / s.runs if s.runs else 0.0
        rps = (f"{s.rows / statistics.median(s.archiver):15.0f}" if s.archiver and s.rows
               else f"{'-':>15}")
        ops = f"{s.ops_per_s:8.1f}" if s.ops_per_s else f"{'-':>8}"
        print(f"{p.name:<{name_width}} {seconds:8.2f} {ops} {fmt_ms(percentile(s.reads, 50))} "
              f"{fmt_ms(percentile(s.reads, 99))} {fmt_ms(percentile(s.writes, 50))} "
              f"{fmt_ms(percentile(s.writes, 99))} {sum(s.errors.values()):6d} {rps}  "
              f"{s.note or error_note(s.errors)}".rstrip())
    print("(latencies in ms; seconds = mean window per run, the archiver's whole run for its phases)")
    sys.stdout.flush()


def run_workload(env: Env, args: argparse.Namespace, ids: Sequence[int]) -> list[Result]:
    """The four phases, --repeat rounds interleaved; print the table."""
    half = max(1, len(ids) // 2)
    keys, kept = ids[:half], ids[half:]
    if not kept:
        return [Result("workload", None, 0, note="SKIPPED: needs --rows >= 2")]
    workload = Workload(lambda: env.server.connect(env.schema.db), env.schema.source, kept,
                        args.workload_threads, args.workload_rate)
    phases = build_phases(env, args, keys)
    for round_no in range(1, args.repeat + 1):
        if args.repeat > 1:
            log(f"workload round {round_no}/{args.repeat}")
        for phase in phases:
            if phase.stats.note:
                continue
            try:
                run_phase(env, workload, phase, args.workload_seconds, (keys[0], keys[-1]))
            except BenchError as exc:
                log(f"FAILED: {exc}")
                phase.stats.note = failure_note(exc)
    print_table(env, args, phases, len(keys))
    return [Result(f"workload: {p.name}", statistics.median(p.stats.archiver) if p.stats.archiver else None,
                   p.stats.rows, note=p.stats.note) for p in phases]


def parse_throttle(text: str) -> dict[str, str]:
    """'sleep_seconds=0.05,max_threads_running=3' -> {'sleep_seconds': '0.05', ...}."""
    pairs = [p.strip() for p in text.split(",") if p.strip()]
    if not pairs or any("=" not in p for p in pairs):
        raise argparse.ArgumentTypeError("expected KEY=VALUE[,KEY=VALUE...] of archive.py [controls]")
    return {k.strip(): v.strip() for k, v in (p.split("=", 1) for p in pairs)}


def add_args(p: argparse.ArgumentParser) -> None:
    """--workload and its shape."""
    g = p.add_argument_group("application workload while archiving (--workload)")
    g.add_argument("--workload", action="store_true",
                   help="p50/p99 latency and ops/s of point reads and single-row updates on rows not "
                        "archived: idle, during archive.py, pt-archiver, archive.py throttled")
    g.add_argument("--workload-threads", type=positive_int, default=4, help="client threads (4)")
    g.add_argument("--workload-rate", type=non_negative_float, default=200.0,
                   help="ops/s per thread, 0 = unpaced (200)")
    g.add_argument("--workload-seconds", type=non_negative_float, default=10.0,
                   help="length of the idle phase (10)")
    g.add_argument("--throttle", type=parse_throttle, default={"sleep_seconds": "0.05"},
                   help="[controls] of the throttled archive.py phase (sleep_seconds=0.05)")


MODE = Mode("workload", add_args, run_workload)
