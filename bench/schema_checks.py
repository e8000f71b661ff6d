"""``--batch-checks``: what every batch's check of the table definitions costs.

See bench.py's docstring, item 11.  Each batch of archive.py locks the tables it writes, compares
their engines, firing triggers and referencing foreign keys with what the preflight approved (a
gate its INSERT and DELETE are conditioned on) and reads back SHOW CREATE TABLE of each
(archive.Definitions, archive.run_checked).  This times the fast path's round trip of one batch
of 1000 keys (INSERT ... SELECT and DELETE, rolled back so every batch moves the same rows) with
and without those statements, interleaved, and reports medians; the difference is the check.
It does so with foreign keys read from InnoDB's list (PROCESS privilege), and again from
information_schema.REFERENTIAL_CONSTRAINTS on a server with 1,000 more tables in another
database, whose cost grows with the tables on the server.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchlib import Env, Mode, Result, log, positive_int, query, reset, write_config

import archive

EXTRA_TABLES = 1000


def timed(db: archive.Database, checks: archive.Definitions | None, plan: archive.TablePlan,
          keys: Sequence[int]) -> float:
    """Milliseconds of one batch's data round trip (with the checks when given), rolled back."""
    condition, params = plan.condition(keys)
    if checks is not None:
        condition = f"({condition}) AND {archive.GATED}"
    statements = [(plan.insert_sql(condition), params), (plan.delete_sql(condition, len(keys)), params)]
    start = time.perf_counter()
    if checks is None:
        counts = db.execute_script(statements)
    else:
        _, counts, holds = archive.run_checked(db, checks, statements)
        assert holds, "the definitions check failed on unchanged tables"
    took = (time.perf_counter() - start) * 1000
    db.rollback()
    assert list(counts) == [len(keys), len(keys)], counts
    return took


def compare(db: archive.Database, plan: archive.TablePlan, checks: archive.Definitions,
            ids: Sequence[int], batches: int) -> tuple[float, float]:
    """Median ms per batch without and with the checks, over `batches` interleaved pairs."""
    plain, checked = [], []
    for n in range(batches):
        keys = ids[(n % 20) * 1000:(n % 20) * 1000 + 1000]
        plain.append(timed(db, None, plan, keys))
        checked.append(timed(db, checks, plan, keys))
    return statistics.median(plain), statistics.median(checked)


def make_extra_tables(env: Env, create: bool) -> None:
    """Another database with EXTRA_TABLES tables, or drop it."""
    query(env.conn, "DROP DATABASE IF EXISTS bench_many")
    if create:
        query(env.conn, "CREATE DATABASE bench_many")
        for i in range(EXTRA_TABLES):
            query(env.conn, f"CREATE TABLE bench_many.t{i} (id INT PRIMARY KEY, v INT) ENGINE=InnoDB")


def run_checks(env: Env, args: argparse.Namespace, ids: Sequence[int]) -> list[Result]:
    """Print ms per batch with and without the definitions check, each way foreign keys are read."""
    reset(env.conn)
    rundir = Path(tempfile.mkdtemp(prefix="batch-checks-", dir=env.workdir))
    config = archive.load_config(write_config(env, rundir, 1000, env.ids_csv))
    db = archive.Database(config.db)
    results: list[Result] = []
    try:
        plan = archive.require_plan(db, config)
        assert plan.definitions is not None
        innodb = plan.definitions
        schema = dataclasses.replace(innodb, referencing_sql=archive.referencing_keys_sql(
            config.database, config.source_table, innodb=""))
        print(f"\n== the definitions check of every batch: ms per batch of 1000 keys (INSERT ... SELECT "
              f"and DELETE, rolled back), median of {args.check_batches} ==")
        print(f"{'foreign keys read from':<52} {'without':>8} {'with':>8} {'cost':>8}")
        for label, checks, extra in (("InnoDB's list (PROCESS)", innodb, False),
                                     ("REFERENTIAL_CONSTRAINTS", read(db, schema), False),
                                     (f"REFERENTIAL_CONSTRAINTS, {EXTRA_TABLES} more tables", schema, True),
                                     (f"InnoDB's list, {EXTRA_TABLES} more tables", innodb, True)):
            if extra:
                make_extra_tables(env, True)
                checks = read(db, checks)
            without, with_checks = compare(db, plan, checks, ids, args.check_batches)
            print(f"{label:<52} {without:8.2f} {with_checks:8.2f} {with_checks - without:8.2f}")
            results.append(Result(f"batch checks: {label}", with_checks / 1000, 1000,
                                  note=f"{with_checks - without:.2f} ms per batch"))
        sys.stdout.flush()
    finally:
        make_extra_tables(env, False)
        db.close()
    log("batch checks: done")
    return results


def read(db: archive.Database, spec: archive.Definitions) -> archive.Definitions:
    """The approved definitions as they read now (the FK list differs between the two ways)."""
    found = archive.read_definitions(db, spec)
    assert found is not None
    return found


def add_args(p: argparse.ArgumentParser) -> None:
    """--batch-checks and how many batches it times."""
    g = p.add_argument_group("the per-batch definitions check (--batch-checks)")
    g.add_argument("--batch-checks", action="store_true",
                   help="ms per batch of 1000 keys with and without the check of the table definitions")
    g.add_argument("--check-batches", type=positive_int, default=200,
                   help="batches timed per way (200)")


MODE = Mode("batch_checks", add_args, run_checks)
