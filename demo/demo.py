#!/usr/bin/env python3
"""A narrated tour of archive.py: sample data, preflight, a crash mid-run, resume, verification.

Run it with `make demo`. It starts a private MariaDB on a socket in a temp directory
(never a server you already run) and removes everything at the end, even on Ctrl-C.
"""
from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO)]  # the tests' helpers, and archive.py itself
# E402: these imports work only after the sys.path line above.
from archive import sorted_log_files  # noqa: E402 - needs sys.path above
from checks import completed_batches  # noqa: E402 - needs sys.path above
from helpers import (  # noqa: E402 - needs sys.path above
    ScratchDatabase,
    create_rewards_tables,
    insert_rewards,
    write_config,
    write_csv,
)
from throwaway_server import ThrowawayMariaDB  # noqa: E402 - needs sys.path above

ARCHIVE = (sys.executable, "-u", str(REPO / "archive.py"), "config.ini")  # -u: unbuffered output
ROWS = 50_000
IDS_PER_FILE = 20_000  # per CSV file, drawn from its pool below; ids above ROWS are not in `rewards`
CSV_POOLS = {"rewards_2025-08-16.csv": range(1, 25_001), "rewards_2025-08-17.csv": range(25_001, 50_501)}
# config.ini: the tests' config for the demo database, with paths relative to the work directory
CONFIG = {"archive__csv_dir": "csv/", "archive__log_dir": "logs/", "archive__batch_size": 500}


def header(title: str) -> None:
    """Print a section header."""
    print(f"\n== {title} ==", flush=True)


def show(lines: list[str]) -> None:
    """Print lines indented, as quoted output."""
    print("\n".join(("    " + line).rstrip() for line in lines), flush=True)


def archive(workdir: Path, *args: str) -> int:
    """Run `archive.py config.ini ARGS` in workdir, stream its output indented, return its exit code."""
    print(f"$ python archive.py config.ini {' '.join(args)}".rstrip(), flush=True)
    proc = subprocess.Popen([*ARCHIVE, *args], cwd=workdir, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        print("    " + line, end="", flush=True)
    code = proc.wait()
    print(f"    (exit code {code})", flush=True)
    return code


def show_query(db: ScratchDatabase, sql: str) -> None:
    """Print a query and its result as a small aligned table."""
    cur = db.conn.cursor()
    cur.execute(sql)
    rows, cols = cur.fetchall(), cur.column_names
    cur.close()
    cells = [["NULL" if v is None else str(v).replace("\n", " ") for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(cols)]
    print(f"sql> {sql}")
    show(["  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in [list(cols)] + cells])


def prepare(db: ScratchDatabase, workdir: Path) -> int:
    """Create and fill the tables, write the CSV key files and config.ini; return the rows to archive."""
    create_rewards_tables(db)
    print(f"Inserted {insert_rewards(db, range(1, ROWS + 1)):,} rows into demo.rewards (ids 1-{ROWS:,}).")
    show_query(db, "SELECT id, user_id, kind, amount, created_at FROM rewards LIMIT 3")
    rng, expected = random.Random(2025), 0
    for name, pool in CSV_POOLS.items():
        ids = sorted(rng.sample(pool, IDS_PER_FILE))
        write_csv(workdir / "csv" / name, ids)
        missing = sum(i > ROWS for i in ids)
        expected += len(ids) - missing
        print(f"Wrote csv/{name}: {len(ids):,} ids ({ids[0]}..{ids[-1]}), {missing} not in rewards.")
    config = write_config(workdir, db, filename="config.ini", **CONFIG)
    print(f"Wrote config.ini in {workdir}:")
    show(config.read_text().splitlines())
    return expected


def crash_midway(db: ScratchDatabase, workdir: Path) -> None:
    """Start a slow verbose run, wait for 5 committed batches, then SIGKILL it."""
    print("$ python archive.py config.ini -v --sleep 0.05   (in the background)", flush=True)
    with open(workdir / "crashed-run.out", "w") as out:
        proc = subprocess.Popen([*ARCHIVE, "-v", "--sleep", "0.05"], cwd=workdir, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while completed_batches(db) < 5:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the background run ended or stalled (exit code {proc.poll()})")
            time.sleep(0.05)
    finally:
        proc.kill()  # SIGKILL: no handler, no cleanup, exactly like a crash or a power cut
        proc.wait()
    print(f"Simulating a crash / reboot: SIGKILL after {completed_batches(db)} batches. What it printed:")
    show((workdir / "crashed-run.out").read_text().splitlines())
    for _ in range(100):  # wait (up to 5 s) for the server to drop the dead client and its run lock
        if not db.scalar("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = 'demo' "
                         "AND ID <> CONNECTION_ID()"):
            break
        time.sleep(0.05)


def verify(db: ScratchDatabase, expected: int, codes: dict[str, int]) -> bool:
    """Print and check the end state; True when every check passes."""
    src, arc = db.count("rewards"), db.count("rewards_archives")
    both = db.scalar("SELECT COUNT(*) FROM rewards JOIN rewards_archives USING (id)")
    checks = [(f"source {src:,} + archive {arc:,} = {src + arc:,} (original {ROWS:,})", src + arc == ROWS),
              (f"ids in both tables: {both} (expected 0)", both == 0),
              (f"archived {arc:,} rows (expected {expected:,}: the CSV ids that exist)", arc == expected),
              (f"archive.py exit codes {codes} (expected all 0)", not any(codes.values()))]
    for text, ok in checks:
        print(f"  [{'OK' if ok else 'FAIL'}] {text}")
    return all(ok for _, ok in checks)


def demo(server: ThrowawayMariaDB, workdir: Path) -> bool:
    """Run sections 2-8 against the started server; True when the final checks pass."""
    db = ScratchDatabase.create(server, "demo")
    header("2. Sample data: demo.rewards, demo.rewards_archives, two CSV key files, config.ini")
    expected = prepare(db, workdir)
    header("3. Preflight: --check and --dry-run (both change nothing)")
    codes = {"--check": archive(workdir, "--check"), "--dry-run": archive(workdir, "--dry-run")}
    header("4. A run that crashes: -v --sleep 0.05, killed with SIGKILL after 5 batches")
    crash_midway(db, workdir)
    print("The crashed run still says RUNNING in process_logs, but no process holds its lock:")
    archive(workdir, "--status")
    header("5. Rerun: marks the dead run INTERRUPTED and resumes at the first batch not done")
    codes["rerun"] = archive(workdir)
    header("6. Monitoring: the tracking tables and --status")
    show_query(db, "SELECT id, status, processed_files, total_files, rows_archived, error_message "
                   "FROM process_logs ORDER BY id")
    show_query(db, "SELECT process_log_id, file_name, status, processed_batches, total_batches, "
                   "last_processed_batch FROM file_processing_logs ORDER BY id")
    codes["--status"] = archive(workdir, "--status")
    header("7. The text log (last 8 lines)")
    log = sorted_log_files(workdir / "logs")[-1]  # the newest day: today
    print(f"logs/{log.name}:")
    show(log.read_text().splitlines()[-8:])
    header("8. Verification")
    ok = verify(db, expected, codes)
    db.close()
    return ok


def main() -> int:
    """Start the throwaway server, run the demo, always stop the server and remove the temp dir."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` cleans up like Ctrl-C
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="archive-demo-"))
    server = ThrowawayMariaDB(workdir / "mariadb")
    try:
        header("1. A throwaway MariaDB server")
        server.start()
        print(f"mariadbd pid {server.pid}, socket {server.socket} (networking off)")
        ok = demo(server, workdir)
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        return 130
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        print(f"\nStopped the server and removed {workdir} ({time.monotonic() - started:.1f}s in all).")
    print("Demo OK: every row is in exactly one table." if ok else "Demo FAILED: see the checks above.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
