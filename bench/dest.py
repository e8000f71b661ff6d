"""``--dest``: archiving into another server, archive.py's ``[destination]`` next to pt-archiver.

See bench.py's docstring, item 10.  A second throwaway server, started with the main
server's settings (``start_server``: durability on, the same buffer pool and charset),
holds the archive table; the source table, its pristine copy and archive.py's tracking
tables, text log and run lock stay on the main server.  The archive table has the source
table's own name and database (``bench.rewards`` on the destination: an archive server
mirroring the primary's names, which archive.py allows) plus ``archived_at``.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import probes
from benchlib import (
    BenchError,
    Contender,
    Env,
    Mode,
    Result,
    Schema,
    archive_ddl,
    archive_py_flags,
    database_section,
    failure_note,
    fmt_note,
    fmt_ratio,
    fmt_rps,
    fmt_rss,
    fmt_seconds,
    log,
    measure,
    prepare,
    query,
    run_archive_config,
    scalar,
    settle,
    start_server,
    verify,
    write_config,
)
from contenders import pt_archiver_dsn, run_pt_archiver

RSS_GOAL_MB = 100


@dataclasses.dataclass(frozen=True)
class Target:
    """The two servers: the source's Env (the main server) and the destination's."""

    source: Env
    dest: Env

    def prepare(self) -> None:
        """Empty the destination's archive table, then reset the source; both settle."""
        d = self.dest.schema
        query(self.dest.conn, f"TRUNCATE TABLE {d.table(d.archive)}")
        settle(self.dest.conn, d)
        prepare(self.source)

    def check(self, name: str, moved: tuple[int, int] | None = None) -> int:
        """The source holds exactly the unlisted rows, the destination exactly the listed ones,
        intact (the same checksum SQL on both servers); nothing else was written on either
        side's archive path.  Returns the rows moved."""
        s, d = self.source.schema, self.dest.schema
        count = verify(self.source.conn, name, moved, s, archive=(self.dest.conn, d))
        problems = []
        local = scalar(self.source.conn, f"SELECT COUNT(*) FROM {s.table(s.archive)}")
        if local:
            problems.append(f"the source's own {s.archive} has {local} rows, expected none")
        others = [r[0] for r in query(self.dest.conn, "SELECT TABLE_NAME FROM information_schema.TABLES "
                                                      "WHERE TABLE_SCHEMA=%s AND TABLE_NAME<>%s",
                                      (d.db, d.archive))]
        if others:
            problems.append(f"tables appeared on the destination: {', '.join(sorted(others))}")
        if problems:
            raise BenchError(f"{name}: verification failed: " + "; ".join(problems))
        return count


def dest_schema(schema: Schema) -> Schema:
    """The destination's tables: only the archive, named like the source table, same database."""
    return dataclasses.replace(schema, archive=schema.source, pristine=schema.source, fill_sql="")


def run_archive_dest(target: Target, tag: str, batch_size: int, csv_file: Path) -> tuple[float, int | None]:
    """archive.py once with a [destination] section; return (seconds, peak RSS KB)."""
    env = target.source
    rundir = Path(tempfile.mkdtemp(prefix=f"archive-py-{tag}-", dir=env.workdir))
    # archive_table names the destination's table; [database] stays the source's
    names = dataclasses.replace(env, schema=dataclasses.replace(env.schema,
                                                                archive=target.dest.schema.archive))
    config = write_config(names, rundir, batch_size, csv_file,
                          extra=database_section(target.dest, "destination"))
    return run_archive_config(env, config, rundir / "output.log")


def run_pt_dest(target: Target, batch_size: int) -> tuple[float, int | None]:
    """pt-archiver once, --dest being the other server's archive table."""
    dsn = pt_archiver_dsn(target.dest, target.dest.schema.archive)
    return run_pt_archiver(target.source, batch_size, dest=dsn)


def contenders(target: Target, batch_size: int,
               compare: Path | None = None) -> tuple[list[Contender], list[Result]]:
    """a (archive.py [destination]), b (pt-archiver --dest) or b SKIPPED, and with --compare e (another
    archive.py, the same [destination] config)."""
    env = target.source
    a, b = "a archive.py [destination]", "b pt-archiver --dest --bulk-insert"
    timed = [Contender(a, lambda: run_archive_dest(target, "dest", batch_size, env.ids_csv),
                       prepare=target.prepare, check=lambda: target.check(a))]
    if compare is not None:
        other = dataclasses.replace(target, source=dataclasses.replace(
            env, archive_py=compare.resolve(), flags=archive_py_flags(compare)))
        e = f"e archive.py {compare.name}"
        timed.append(Contender(e, lambda: run_archive_dest(other, "compare", batch_size, env.ids_csv),
                               prepare=target.prepare, check=lambda: target.check(e)))
    if env.pt_missing is not None:
        return timed, [Result(b, None, 0, note=f"SKIPPED: {env.pt_missing}")]
    timed.append(Contender(b, lambda: run_pt_dest(target, batch_size),
                           prepare=target.prepare, check=lambda: target.check(b)))
    return timed, []


def print_table(results: list[Result], args: argparse.Namespace) -> None:
    """Seconds, rows/s and peak RSS of a and b, and the ratio a/b."""
    print(f"\n== Archiving into another server: {args.rows} rows, batch size {args.batch_size} "
          f"(two servers, innodb_flush_log_at_trx_commit=1 on both) ==")
    print(f"{'contender':<36} {'seconds':>9} {'rows/s':>10} {'peak RSS':>9}  note")
    for r in results:
        print(f"{r.name:<36} {fmt_seconds(r)} {fmt_rps(r)} {fmt_rss(r)}  {fmt_note(r)}".rstrip())
    by_key = {r.name[0]: r for r in results}
    print(f"ratio a/b (archive.py / pt-archiver; goal <= 0.70): "
          f"{fmt_ratio(by_key.get('a'), by_key.get('b'))}")
    if "e" in by_key:
        print(f"ratio e/b (the other archive.py / pt-archiver): "
              f"{fmt_ratio(by_key.get('e'), by_key.get('b'))}")
        print(f"ratio a/e (archive.py / the other archive.py): {fmt_ratio(by_key.get('a'), by_key.get('e'))}")
    sys.stdout.flush()


def run_rss(target: Target, batch_size: int) -> list[Result]:
    """probes.run_rss with every run going into the destination; then the goal."""
    def into_dest(name: str, tag: str, csv: Path, moved: tuple[int, int]) -> Contender:
        return Contender(name, lambda: run_archive_dest(target, tag, batch_size, csv), moved=moved,
                         prepare=target.prepare, check=lambda: target.check(name, moved))

    results = probes.run_rss(target.source, batch_size, into_dest, "into another server")
    peaks = [r.rss_kb / 1024 for r in results if r.rss_kb]
    if len(peaks) == 2:
        verdict = "met" if max(peaks) < RSS_GOAL_MB and peaks[1] <= peaks[0] * 1.10 else "NOT met"
        print(f"goal (under {RSS_GOAL_MB} MB, flat within 10% from 30k to 3M keys): {verdict}")
    sys.stdout.flush()
    return results


def destination_env(env: Env, server: Any) -> Env:
    """The destination's Env: its own server, connection, workdir and (archive-only) schema."""
    workdir = env.workdir / "dest"
    workdir.mkdir(exist_ok=True)
    return dataclasses.replace(env, server=server, conn=server.connect(), workdir=workdir,
                               schema=dest_schema(env.schema), hosts=None, peers=[])


def run_dest(env: Env, args: argparse.Namespace, _ids: Sequence[int] = ()) -> list[Result]:
    """Start the destination server, time a and b (and the RSS probe with --rss), stop it."""
    log("dest: starting the destination server")
    try:
        server = start_server(env.workdir / "dest")
    except Exception as exc:  # a server that cannot start is a failed measurement
        log(f"FAILED: the destination server did not start: {exc}")
        return [Result("dest", None, 0, note=failure_note(exc))]
    try:
        target = Target(env, destination_env(env, server))
        d = target.dest.schema
        query(target.dest.conn, f"DROP DATABASE IF EXISTS `{d.db}`")
        query(target.dest.conn, f"CREATE DATABASE `{d.db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci")
        query(target.dest.conn, archive_ddl(d))
        timed, skipped = contenders(target, args.batch_size, args.compare)
        results = sorted(measure(env, timed, args.repeat) + skipped, key=lambda r: r.name)
        print_table(results, args)
        if args.rss:
            results += run_rss(target, args.batch_size)
        target.dest.conn.close()
        return [dataclasses.replace(r, name=f"dest: {r.name}") for r in results]
    finally:
        server.stop()


def add_args(p: argparse.ArgumentParser) -> None:
    """--dest."""
    g = p.add_argument_group("another server (--dest)")
    g.add_argument("--dest", action="store_true",
                   help="archive into a second server: archive.py [destination] vs pt-archiver --dest "
                        "(with --rss: archive.py's peak RSS into the destination, 30k vs 3M keys)")


MODE = Mode("dest", add_args, run_dest)
