"""``--composite``: a partitioned table keyed by ``PRIMARY KEY (id, created_at)``, moved by archive.py
(``key_column = id, created_at``) and by pt-archiver ascending the same key.

See bench.py's docstring, item 12.  MariaDB and MySQL require the partitioning column in every
unique key, so a table partitioned by date has this key and no unique ``id``: the shape of
partition-aware retention.  The table lives in its own database (``bench_composite``) on the
same server; reset/verify are the main table's, given another ``Schema``.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
from collections.abc import Sequence
from pathlib import Path

from benchlib import (
    Contender,
    Env,
    Mode,
    Result,
    Schema,
    compare_env,
    create_schema,
    positive_int,
    pristine_ids,
    query,
    run_archive_py,
    versus,
)
from contenders import run_pt_archiver, run_stored_proc

EVENT_COLUMNS = ("id", "created_at", "account_id", "kind", "amount", "note")
EVENT_FILL = """
INSERT INTO {pristine} (id, created_at, account_id, kind, amount, note)
SELECT {id_base} + seq * {id_step},
       TIMESTAMP('2023-01-01') + INTERVAL seq * 31 SECOND + INTERVAL seq % 1000000 MICROSECOND,
       1 + (seq * 7919) % 50000,
       ELT(1 + seq % 4, 'view', 'click', 'purchase', 'refund'),
       (seq % 100000) / 100,
       CONCAT('event #', seq, IF(seq % 3 = 0, ' r\u00e9sum\u00e9 \U0001F389', ''))
FROM seq_1_to_{rows}
"""
EVENTS = Schema(
    db="bench_composite", source="events", archive="events_archives", pristine="events_pristine",
    columns=EVENT_COLUMNS,
    columns_ddl="""
  id BIGINT NOT NULL,
  created_at DATETIME(6) NOT NULL,
  account_id INT NOT NULL,
  kind ENUM('view', 'click', 'purchase', 'refund') NOT NULL,
  amount DECIMAL(12, 2) NOT NULL,
  note VARCHAR(100) CHARACTER SET utf8mb4 NULL""",
    keys_ddl="KEY idx_account_id (account_id)",
    fill_sql=EVENT_FILL,
    primary_key="id, created_at",
    partitions="PARTITION BY RANGE COLUMNS (created_at) (PARTITION p2023 VALUES LESS THAN ('2023-07-01'), "
               "PARTITION p2023h2 VALUES LESS THAN ('2024-01-01'), PARTITION p2024 VALUES LESS THAN "
               "('2025-01-01'), PARTITION pmax VALUES LESS THAN (MAXVALUE))")


def write_keys_csv(env: Env, path: Path) -> int:
    """Every pristine key (id, created_at with its 6 fractional digits), in key order."""
    rows = query(env.conn, f"SELECT id, DATE_FORMAT(created_at, '%Y-%m-%d %H:%i:%s.%f') FROM "
                           f"{EVENTS.table(EVENTS.pristine)} ORDER BY id, created_at")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["id", "created_at"])
        writer.writerows(rows)
    return len(rows)


def run_composite(env: Env, args: argparse.Namespace, _ids: Sequence[int] = ()) -> list[Result]:
    """Build the partitioned table, time archive.py and pt-archiver on it, print the table."""
    composite = dataclasses.replace(env, schema=EVENTS, rows=args.composite_rows,
                                    ids_csv=env.workdir / "composite" / "keys.csv", peers=[])
    create_schema(env.conn, args.composite_rows, 1, EVENTS)
    write_keys_csv(composite, composite.ids_csv)
    ids = pristine_ids(env.conn, EVENTS)  # unique here (the partitioning needs created_at in the key)
    other = compare_env(composite, args.compare)
    compared = None if other is None else Contender(
        f"e archive.py {args.compare.name}", lambda: run_archive_py(other, "compare", args.batch_size),
        env=other)
    return versus(composite, Contender("a archive.py, key (id, created_at)",
                                       lambda: run_archive_py(composite, "composite", args.batch_size),
                                       env=composite),
                  Contender("b pt-archiver --bulk-insert, ascending the key",
                            lambda: run_pt_archiver(composite, args.batch_size), env=composite),
                  args.repeat, f"composite key: {args.composite_rows} rows, PRIMARY KEY (id, created_at "
                  f"DATETIME(6)), 4 RANGE partitions, batch size {args.batch_size}", EVENTS, "composite",
                  compared, Contender("c stored procedure (floor), id ranges", env=composite,
                                      run=lambda: run_stored_proc(composite, args.batch_size, ids)))


def add_args(p: argparse.ArgumentParser) -> None:
    """--composite and its size."""
    g = p.add_argument_group("composite key (--composite)")
    g.add_argument("--composite", action="store_true",
                   help="a partitioned table keyed by (id, created_at): archive.py against pt-archiver")
    g.add_argument("--composite-rows", type=positive_int, default=1_000_000,
                   help="rows in the partitioned table (1000000)")


MODE = Mode("composite", add_args, run_composite)
