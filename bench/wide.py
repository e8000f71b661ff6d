"""``--wide``: rows of about 8 KB of TEXT and JSON, moved by archive.py, pt-archiver and the floor.

See bench.py's docstring, item 8.  The wide table lives in its own database (``bench_wide``)
on the same server, so reset/verify and the contenders are the main table's, given another
``Schema``.
"""
from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence

from benchlib import (
    Env,
    Mode,
    Result,
    Schema,
    close_mode,
    create_schema,
    fmt_note,
    fmt_rps,
    fmt_rss,
    fmt_seconds,
    measure,
    positive_int,
    query,
    write_ids_csv,
)
from contenders import side_by_side

WIDE_COLUMNS = ("id", "account_id", "title", "body", "attrs", "created_at")
# body: 78 x (32 + 1 + 40 + 5) = 6,084 bytes of TEXT (with a 3-byte char per chunk);
# attrs: a JSON object of ~2 KB; title: ~30 bytes.  About 8 KB of data per row.
WIDE_FILL = f"""
INSERT INTO {{pristine}} ({", ".join(WIDE_COLUMNS)})
SELECT {{id_base}} + seq * {{id_step}},
       1 + (seq * 7919) % 5000,
       CONCAT('document #', seq, ' \u2014 r\u00e9sum\u00e9'),
       REPEAT(CONCAT(MD5(seq), ' ', SHA1(seq), ' \u2713 '), 78),
       JSON_OBJECT('id', seq, 'tags', JSON_ARRAY('alpha', 'beta', seq % 17),
                   'notes', REPEAT(SHA2(seq, 256), 30), 'ok', TRUE),
       TIMESTAMP('2022-01-01') + INTERVAL seq * 37 SECOND
FROM seq_1_to_{{rows}}
"""
WIDE = Schema(
    db="bench_wide", source="documents", archive="documents_archives", pristine="documents_pristine",
    columns=WIDE_COLUMNS,
    columns_ddl="""
  id BIGINT NOT NULL,
  account_id INT NOT NULL,
  title VARCHAR(200) CHARACTER SET utf8mb4 NOT NULL,
  body TEXT CHARACTER SET utf8mb4 NOT NULL,
  attrs JSON NULL,
  created_at DATETIME(6) NOT NULL""",
    keys_ddl="KEY idx_account_id (account_id)",
    fill_sql=WIDE_FILL)


def data_bytes(env: Env) -> int:
    """Logical bytes of the data columns over all rows (what MB/s counts)."""
    s = env.schema
    total = " + ".join(f"IFNULL(LENGTH(`{c}`), 0)" for c in s.columns)
    return int(query(env.conn, f"SELECT SUM({total}) FROM {s.table(s.pristine)}")[0][0] or 0)


def run_wide(env: Env, args: argparse.Namespace, _ids: Sequence[int] = ()) -> list[Result]:
    """Build the wide table, time a, b and c on it, print rows/s, MB/s and peak RSS."""
    wide_env = dataclasses.replace(env, schema=WIDE, rows=args.wide_rows,
                                   ids_csv=env.workdir / "wide" / "ids.csv", peers=[])
    create_schema(env.conn, args.wide_rows, 1, WIDE)
    ids = write_ids_csv(env.conn, wide_env.ids_csv, WIDE)
    size = data_bytes(wide_env)
    contenders, skipped = side_by_side(wide_env, args.batch_size, ids)
    results = sorted(measure(wide_env, contenders, args.repeat) + skipped, key=lambda r: r.name)
    print(f"\n== wide rows: {args.wide_rows} rows of {size / args.wide_rows / 1024:.1f} KB "
          f"(TEXT + JSON; {size / 1e6:.1f} MB of data), batch size {args.batch_size} ==")
    print(f"{'contender':<36} {'seconds':>9} {'rows/s':>10} {'MB/s':>7} {'peak RSS':>9}  note")
    for r in results:
        mbps = f"{size / r.seconds / 1e6:7.1f}" if r.seconds else f"{'-':>7}"
        print(f"{r.name:<36} {fmt_seconds(r)} {fmt_rps(r)} {mbps} {fmt_rss(r)}  {fmt_note(r)}".rstrip())
    return close_mode(env, WIDE, results, "wide")


def add_args(p: argparse.ArgumentParser) -> None:
    """--wide and its size."""
    g = p.add_argument_group("wide rows (--wide)")
    g.add_argument("--wide", action="store_true",
                   help="~8 KB TEXT/JSON per row: rows/s, MB/s, peak RSS of archive.py, pt-archiver, floor")
    g.add_argument("--wide-rows", type=positive_int, default=5000, help="rows in the wide table (5000)")


MODE = Mode("wide", add_args, run_wide)
