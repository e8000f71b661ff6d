"""``--family``: orders with their items, moved by archive.py in one job (``[child items]``) and by
pt-archiver in two (the items, then the orders).

See bench.py's docstring, item 13.  The items reference their order by a foreign key (``ON DELETE
RESTRICT``), so a parent cannot go before its children; pt-archiver runs one table per invocation,
so it is timed on the children first and the parents after, and the two runs are added up.  The
tables live in their own database (``bench_family``) on the same server.
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Sequence
from typing import Any

from benchlib import (
    BenchError,
    Contender,
    Env,
    Mode,
    Result,
    Schema,
    compare_env,
    positive_int,
    query,
    run_archive_config,
    scalar,
    versus,
    write_config,
)
from contenders import batch_loop_sql, create_proc, insert_rows, run_pt_archiver

DB = "bench_family"
ORDERS = ("CREATE TABLE {name} (id INT NOT NULL PRIMARY KEY, customer VARCHAR(40) NOT NULL, "
          "total DECIMAL(12,2) NOT NULL, created_at DATETIME(6) NOT NULL) ENGINE=InnoDB")
ITEMS = ("CREATE TABLE {name} (id INT NOT NULL PRIMARY KEY, order_id INT NOT NULL, sku VARCHAR(20) NOT NULL, "
         "qty INT NOT NULL, price DECIMAL(10,2) NOT NULL, note VARCHAR(60) CHARACTER SET utf8mb4 NULL, "
         "KEY idx_order (order_id){fk}) ENGINE=InnoDB")
FK = ", CONSTRAINT fk_item_order FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE RESTRICT"
SCHEMA = Schema(db=DB, source="orders", archive="orders_archive", pristine="orders_pristine",
                columns=("id", "customer", "total", "created_at"), columns_ddl="", keys_ddl="", fill_sql="")
TRACKING = "process_logs, file_processing_logs, batch_processing_logs, conflict_logs, run_locks"
CHILD = ("\n[child items]\nsource_table = order_items\narchive_table = order_items_archive\n"
         "parent_columns = order_id\n")


FLOOR = batch_loop_sql(  # the in-server floor: each batch's orders and their items by id range, one commit
    "bench_move_families", "v_lo, v_hi", "BIGINT", "SELECT lo, hi FROM bench_batches ORDER BY batch_no",
    "INSERT INTO order_items_archive SELECT * FROM order_items WHERE order_id BETWEEN v_lo AND v_hi;\n"
    "    INSERT INTO orders_archive SELECT * FROM orders WHERE id BETWEEN v_lo AND v_hi;\n"
    "    DELETE FROM order_items WHERE order_id BETWEEN v_lo AND v_hi;\n"
    "    DELETE FROM orders WHERE id BETWEEN v_lo AND v_hi;")


def create_tables(env: Env, orders: int, items: int) -> None:
    """The pristine copies, filled once; the source and archive tables, empty."""
    conn = env.conn
    query(conn, f"DROP DATABASE IF EXISTS `{DB}`")
    query(conn, f"CREATE DATABASE `{DB}` CHARACTER SET utf8mb4")
    query(conn, f"USE `{DB}`")
    for name in ("orders", "orders_archive", "orders_pristine"):
        query(conn, ORDERS.format(name=name))
    for name, fk in (("order_items", FK), ("order_items_archive", ""), ("items_pristine", "")):
        query(conn, ITEMS.format(name=name, fk=fk))
    query(conn, f"INSERT INTO orders_pristine SELECT seq, CONCAT('customer ', seq % 5000), seq * 1.5, "
                f"TIMESTAMP('2024-01-01') + INTERVAL seq MINUTE + INTERVAL seq % 1000 MICROSECOND "
                f"FROM seq_1_to_{orders}")
    query(conn, f"INSERT INTO items_pristine SELECT seq, seq DIV {items} + 1, CONCAT('sku', seq % 9973), "
                f"1 + seq % 7, (seq % 10000) / 100, IF(seq % 3 = 0, CONCAT('gift \U0001F381 ', seq), NULL) "
                f"FROM seq_0_to_{orders * items - 1}")
    query(conn, "CREATE TABLE bench_batches (batch_no INT NOT NULL PRIMARY KEY, lo BIGINT NOT NULL, "
                "hi BIGINT NOT NULL) ENGINE=InnoDB")


def run_floor(env: Env, args: argparse.Namespace) -> float:
    """The in-server floor once: a batch_size of orders per transaction, their items first."""
    conn, orders = env.conn, args.family_orders
    query(conn, f"USE `{DB}`")
    query(conn, "TRUNCATE TABLE bench_batches")
    insert_rows(conn, "INSERT INTO bench_batches VALUES (%s, %s, %s)",
                [(n, lo, min(lo + args.batch_size - 1, orders))
                 for n, lo in enumerate(range(1, orders + 1, args.batch_size), 1)])
    create_proc(conn, SCHEMA, "bench_move_families", FLOOR)
    t0 = time.perf_counter()
    query(conn, "CALL bench_move_families()")
    return time.perf_counter() - t0


def reset(env: Env) -> None:
    """Every order and item back in the source, the archives empty, no tracking tables."""
    for sql in (f"USE `{DB}`", f"DROP TABLE IF EXISTS {TRACKING}", "SET FOREIGN_KEY_CHECKS = 0",
                "TRUNCATE order_items", "TRUNCATE orders", "TRUNCATE order_items_archive",
                "TRUNCATE orders_archive", "INSERT INTO orders SELECT * FROM orders_pristine",
                "INSERT INTO order_items SELECT * FROM items_pristine", "SET FOREIGN_KEY_CHECKS = 1"):
        query(env.conn, sql)


def fingerprint(env: Env, table: str, columns: str) -> str:
    """Rows and an order-free checksum of every column (NULL told apart from text)."""
    return str(scalar(env.conn, f"SELECT CONCAT(COUNT(*), ':', COALESCE(BIT_XOR(CRC32(CONCAT_WS('|', "
                                f"{columns}))), 0)) FROM `{DB}`.{table}"))


def check(env: Env) -> int:
    """Both archives hold exactly the pristine rows, both sources are empty; the rows moved."""
    moved = 0
    for archive, pristine, columns in (
            ("orders_archive", "orders_pristine", "id, customer, total, created_at"),
            ("order_items_archive", "items_pristine", "id, order_id, sku, qty, price, note, ISNULL(note)")):
        got, want = fingerprint(env, archive, columns), fingerprint(env, pristine, columns)
        if got != want:
            raise BenchError(f"{archive} differs from {pristine}: {got} vs {want}")
        moved += int(got.split(":")[0])
    left = scalar(env.conn, f"SELECT (SELECT COUNT(*) FROM `{DB}`.orders) + (SELECT COUNT(*) FROM "
                            f"`{DB}`.order_items)")
    if left:
        raise BenchError(f"{left} rows left in the source tables")
    return moved


def run_archive_py(env: Env, args: argparse.Namespace) -> tuple[float, int | None]:
    """archive.py: one job, the orders listed, their items moved with them."""
    rundir = env.workdir / "family" / f"run-{scalar(env.conn, 'SELECT UUID_SHORT()')}"
    config = write_config(env, rundir, args.batch_size, env.ids_csv, extra=CHILD)
    return run_archive_config(env, config, rundir / "output.log")


def run_pt_two_jobs(env: Env, args: argparse.Namespace) -> tuple[float, int | None]:
    """pt-archiver: the items first (a parent cannot go before its children), then the orders."""
    items = dataclasses.replace(env, schema=dataclasses.replace(SCHEMA, source="order_items",
                                                                archive="order_items_archive"))
    first, rss_first = run_pt_archiver(items, args.batch_size)
    second, rss_second = run_pt_archiver(env, args.batch_size)
    return first + second, max(rss_first or 0, rss_second or 0) or None


def run_family(env: Env, args: argparse.Namespace, _ids: Sequence[int] = ()) -> list[Result]:
    """Build the tables, time both contenders interleaved, print the table."""
    orders, items = args.family_orders, args.family_items
    family = dataclasses.replace(env, schema=SCHEMA, rows=orders * (items + 1),
                                 ids_csv=env.workdir / "family" / "orders.csv", peers=[])
    create_tables(env, orders, items)
    family.ids_csv.parent.mkdir(parents=True, exist_ok=True)
    family.ids_csv.write_text("id\n" + "".join(f"{k}\n" for k in range(1, orders + 1)))
    hooks: dict[str, Any] = {"env": family, "prepare": lambda: reset(family), "check": lambda: check(family)}
    other = compare_env(family, args.compare)
    compared = None if other is None else Contender(
        f"e archive.py {args.compare.name}", lambda: run_archive_py(other, args), **{**hooks, "env": other})
    return versus(family, Contender("a archive.py, orders with [child items]",
                                    lambda: run_archive_py(family, args), **hooks),
                  Contender("b pt-archiver: items, then orders", lambda: run_pt_two_jobs(family, args),
                            **hooks),
                  args.repeat, f"child tables: {orders} orders with {items} items each "
                  f"({orders * (items + 1)} rows), batch size {args.batch_size}", SCHEMA, "family",
                  compared, Contender("c stored procedure (floor), order ranges",
                                      lambda: run_floor(family, args), **hooks))


def add_args(p: argparse.ArgumentParser) -> None:
    """--family and its sizes."""
    g = p.add_argument_group("child tables (--family)")
    g.add_argument("--family", action="store_true",
                   help="orders with their items: archive.py with [child items] against pt-archiver run "
                        "on the items, then the orders")
    g.add_argument("--family-orders", type=positive_int, default=200_000, help="orders (200000)")
    g.add_argument("--family-items", type=positive_int, default=5, help="items per order (5)")


MODE = Mode("family", add_args, run_family)
