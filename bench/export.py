"""--export-keys against the floor: `mariadb -N -B -e "SELECT id ..." > file`, for growing tables.

For each size (default 100k, 1M; add 3M with --sizes) the rewards table is filled with that many
rows (ids from 1,000,000 up) and both write the ids of the rows with a note (note IS NOT NULL: 80%
of them) into files in a fresh folder. The mariadb client writes one
file, archive.py its key files (keys_per_file 100,000) and manifest, with its preflight, keyset
walk of the primary key, throttle checks between chunks, fsync and rename. Each is timed (wall
clock, best of --repeat) and its peak RSS read with GNU time; the two outputs are checked to
hold the same ids.

    python bench/export.py [--sizes 100000,1000000,3000000] [--repeat 3] [--workdir DIR]
"""
from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
from pathlib import Path

from benchlib import (
    REWARDS,
    Env,
    create_schema,
    find_gnu_time,
    log,
    reset,
    run_child,
    start_server,
    write_config,
)

CONDITION = "note IS NOT NULL"  # REWARDS_FILL leaves every 5th note NULL: 80% of the rows


def floor_argv(env: Env, out: Path) -> list[str]:
    """The mariadb client writing the same ids (the shell's `> file`, done by a shell)."""
    kw = env.server.connection_kwargs()
    where = (f"--socket={kw['unix_socket']}" if kw.get("unix_socket")
             else f"--host={kw['host']} --port={kw['port']}")
    sql = f"SELECT id FROM {REWARDS.source} WHERE {CONDITION}"
    return ["sh", "-c", f"mariadb {where} -u{kw.get('user', 'root')} -N -B -e \"{sql}\" {REWARDS.db} > {out}"]


def exported_ids(folder: Path) -> list[int]:
    """The ids in archive.py's key files, in file order."""
    return [int(row[0]) for path in sorted(folder.glob("*.csv")) for row in list(csv.reader(path.open()))[1:]]


def measure_size(env: Env, rows: int, repeat: int) -> tuple[float, float, int | None, int | None, int]:
    """(floor seconds, archive.py seconds, floor RSS KB, archive.py RSS KB, keys) for one size."""
    create_schema(env.conn, rows, schema=REWARDS)
    reset(env.conn, REWARDS)
    best_floor = best_export = float("inf")
    rss_floor = rss_export = None
    keys = 0
    for attempt in range(repeat):
        rundir = Path(tempfile.mkdtemp(prefix=f"export-{rows}-{attempt}-", dir=env.workdir))
        floor_file = rundir / "floor.tsv"
        seconds, status, rss = run_child(floor_argv(env, floor_file), rundir / "floor.log", env.time_bin)
        if status:
            raise SystemExit(f"mariadb client failed: {(rundir / 'floor.log').read_text()}")
        best_floor, rss_floor = min(best_floor, seconds), rss
        config = write_config(env, rundir, 1000, env.ids_csv)
        (rundir / "csv" / env.ids_csv.name).unlink()
        config.write_text(config.read_text() + f"\n[export]\nwhere = {CONDITION}\nkeys_per_file = 100000\n")
        argv = [sys.executable, str(env.archive_py), str(config), "--export-keys", "-q"]
        seconds, status, rss = run_child(argv, rundir / "export.log", env.time_bin)
        if status:
            raise SystemExit(f"archive.py --export-keys failed: {(rundir / 'export.log').read_text()}")
        best_export, rss_export = min(best_export, seconds), max(rss or 0, rss_export or 0)
        floor_ids = [int(line) for line in floor_file.read_text().split()]
        ids = exported_ids(rundir / "csv")
        if sorted(floor_ids) != ids:
            raise SystemExit("archive.py exported other ids than the mariadb client")
        keys = len(ids)
        shutil.rmtree(rundir)
    return best_floor, best_export, rss_floor, rss_export, keys


def main() -> None:
    """Measure each size and print the table the README shows."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="archive-export-bench-"))
    server = start_server(workdir)
    try:
        conn = server.connect()
        ids_csv = workdir / "ids.csv"
        ids_csv.write_text("id\n")
        archive_py = Path(__file__).resolve().parent.parent / "archive.py"
        env = Env(server=server, conn=conn, workdir=workdir, ids_csv=ids_csv, rows=0,
                  archive_py=archive_py, time_bin=find_gnu_time())
        head = ("| rows | keys | mariadb -N -B > file | archive.py --export-keys | ratio "
                "| peak RSS (client / archive.py) |")
        lines = [head, "|---:|---:|---:|---:|---:|---:|"]
        for rows in (int(size) for size in args.sizes.split(",")):
            floor, export, rss_floor, rss_export, keys = measure_size(env, rows, args.repeat)
            log(f"{rows} rows: floor {floor:.2f}s, export {export:.2f}s, RSS {rss_floor} / {rss_export} KB")
            lines.append(f"| {rows:,} | {keys:,} | {floor:.2f} s | {export:.2f} s | {export / floor:.2f}x | "
                         f"{(rss_floor or 0) / 1024:.0f} MB / {(rss_export or 0) / 1024:.0f} MB |")
        print("\n".join(lines))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
