"""--export-keys against the floor: `mariadb -N -B -e "SELECT id ..." > file`, for growing tables.

For each size (default 100k, 1M; add 3M with --sizes) the rewards table is filled with that many
rows (ids from 1,000,000 up) and both write the ids of the rows with a note (note IS NOT NULL: 80%
of them) into files in a fresh folder. The mariadb client writes one
file, archive.py its key files (keys_per_file 100,000) and manifest, with its preflight, keyset
walk of the primary key, throttle checks between chunks, fsync and rename. Each is timed (wall
clock, best of --repeat) and its peak RSS read with GNU time; the two outputs are checked to
hold the same ids. archive.py is timed in both its forms: as a script (`python archive.py`, which
Python compiles on every run) and as a module (`python -m archive` from its folder, which runs the
bytecode cached in __pycache__; the bench compiles it there first, as the first run after an
upgrade does). The start-up columns are `--version` in each form (the interpreter, compiling
archive.py or not, and importing the connector): the part of every export that does not grow with
the table. With --compare, another archive.py (e.g. main's: git show main:archive.py) is timed
as a script the same way in the same run, each attempt running the floor, it and this archive.py
in turn.

    python bench/export.py [--sizes 100000,1000000,3000000] [--repeat 3] [--workdir DIR]
                           [--compare ARCHIVE_PY]
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import py_compile
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


def program(archive_py: Path, module: bool) -> tuple[list[str], Path | None]:
    """(argv, cwd) that start archive_py: as a script, or as `python -m archive` from its folder."""
    if module:
        return [sys.executable, "-m", archive_py.stem], archive_py.parent
    return [sys.executable, str(archive_py)], None


def export_once(env: Env, start: tuple[list[str], Path | None], rundir: Path, tag: str
                ) -> tuple[float, int | None, list[int]]:
    """(seconds, peak RSS KB, ids in its key files) of one `archive.py --export-keys` into rundir/tag."""
    config = write_config(env, rundir / tag, 1000, env.ids_csv)
    (rundir / tag / "csv" / env.ids_csv.name).unlink()
    config.write_text(config.read_text() + f"\n[export]\nwhere = {CONDITION}\nkeys_per_file = 100000\n")
    argv, cwd = start
    seconds, status, rss = run_child([*argv, str(config), "--export-keys", "-q"], rundir / f"{tag}.log",
                                     env.time_bin, cwd)
    if status:
        raise SystemExit(f"{' '.join(argv)} --export-keys failed: {(rundir / f'{tag}.log').read_text()}")
    return seconds, rss, exported_ids(rundir / tag / "csv")


def measure_size(env: Env, rows: int, repeat: int, contenders: dict[str, tuple[list[str], Path | None]]
                 ) -> tuple[dict[str, float], dict[str, int | None], int]:
    """({name: best seconds}, {name: peak RSS KB}, keys) for one size: the floor ("mariadb") and
    each archive.py, run in turn within every attempt."""
    create_schema(env.conn, rows, schema=REWARDS)
    reset(env.conn, REWARDS)
    best: dict[str, float] = {}
    peak: dict[str, int | None] = {}
    keys = 0
    for attempt in range(repeat):
        rundir = Path(tempfile.mkdtemp(prefix=f"export-{rows}-{attempt}-", dir=env.workdir))
        floor_file = rundir / "floor.tsv"
        seconds, status, rss = run_child(floor_argv(env, floor_file), rundir / "floor.log", env.time_bin)
        if status:
            raise SystemExit(f"mariadb client failed: {(rundir / 'floor.log').read_text()}")
        best["mariadb"], peak["mariadb"] = min(best.get("mariadb", seconds), seconds), rss
        floor_ids = sorted(int(line) for line in floor_file.read_text().split())
        for form, module in (("start-up", False), ("start-up -m", True)):
            argv, cwd = program(env.archive_py, module)
            seconds, _, _ = run_child([*argv, "--version"], rundir / "start.log", None, cwd)
            best[form] = min(best.get(form, seconds), seconds)
        for name, start in contenders.items():
            seconds, rss, ids = export_once(env, start, rundir, name)
            if ids != floor_ids:
                raise SystemExit(f"{name} exported other ids than the mariadb client")
            best[name] = min(best.get(name, seconds), seconds)
            peak[name] = max(rss or 0, peak.get(name) or 0)
            keys = len(ids)
        shutil.rmtree(rundir)
    return best, peak, keys


def main() -> None:
    """Measure each size and print the table the README shows."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--compare", type=Path, metavar="ARCHIVE_PY",
                        help="time another archive.py too, side by side (e.g. git show main:archive.py)")
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
        py_compile.compile(str(archive_py), cfile=importlib.util.cache_from_source(str(archive_py)),
                           doraise=True)  # what the first `python -m archive` after an upgrade writes
        contenders = {"archive.py": program(archive_py, False),
                      "python -m archive": program(archive_py, True)}
        if args.compare:
            contenders = {"compared": program(args.compare.resolve(), False), **contenders}
        names = [name for name in contenders if name == "compared"]
        head = ("| rows | keys | mariadb -N -B > file | "
                + "".join(f"{args.compare.name} | ratio | " for _ in names)
                + "archive.py --export-keys | ratio | python -m archive --export-keys | ratio "
                + "| of which start-up (script / -m) | peak RSS (client / archive.py / -m) |")
        lines = [head, "|---:|---:|---:|" + "---:|---:|" * (len(names) + 2) + "---:|---:|"]
        for rows in (int(size) for size in args.sizes.split(",")):
            best, peak, keys = measure_size(env, rows, args.repeat, contenders)
            floor = best["mariadb"]
            log(f"{rows} rows: " + ", ".join(f"{name} {seconds:.2f}s" for name, seconds in best.items())
                + ", RSS " + " / ".join(f"{name} {rss} KB" for name, rss in peak.items()))
            cells = "".join(f"{best[name]:.2f} s | {best[name] / floor:.2f}x | " for name in names)
            ours = "".join(f"{best[name]:.2f} s | {best[name] / floor:.2f}x | "
                           for name in ("archive.py", "python -m archive"))
            lines.append(f"| {rows:,} | {keys:,} | {floor:.2f} s | {cells}{ours}"
                         f"{best['start-up']:.2f} s / {best['start-up -m']:.2f} s | "
                         + " / ".join(f"{(peak[name] or 0) / 1024:.0f} MB"
                                      for name in ("mariadb", "archive.py", "python -m archive")) + " |")
        print("\n".join(lines))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
