"""Child tables: `[child NAME]` rows move with the parent rows they reference, in the same batch.

Pure tests first (how the sections are read and refused), then runs on the throwaway server:
a three-level family with RESTRICT and CASCADE foreign keys, a composite parent key, identical
and differing archived children, max_batch_rows splitting a batch into parts, a kill -9
between parts, a parent too big for one transaction, and what the preflight refuses.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest

import archive
from checks import assert_batches_once, text_log
from helpers import (
    ScratchDatabase,
    kill_process_group,
    read_text_logs,
    run_cli,
    wait_for_a_lock_wait,
    wait_until,
    write_config,
    write_csv,
)
from proxy import need_socket
from test_destination import dest_keys, kill_between_the_commits
from test_resume import assert_like_fresh

ITEMS = {"child items__source_table": "order_items", "child items__archive_table": "order_items_archive",
         "child items__parent_columns": "order_id"}
OPTIONS = {"child options__source_table": "item_options",
           "child options__archive_table": "item_options_archive",
           "child options__parent_columns": "item_id", "child options__parent": "items"}


# --------------------------------------------------------------------------- pure: the config

def config_text(tmp_path: Path, extra: str) -> Path:
    """A minimal config with `extra` sections appended."""
    (tmp_path / "csv").mkdir(exist_ok=True)
    (tmp_path / "logs").mkdir(exist_ok=True)
    path = tmp_path / "c.ini"
    path.write_text("[database]\ndatabase = app\n[archive]\nsource_table = orders\narchive_table = "
                    "orders_archive\nkey_column = id\ncsv_dir = csv\nlog_dir = logs\n" + extra)
    return path


def test_child_sections_are_read_parents_first(tmp_path):
    config = archive.load_config(config_text(tmp_path, (
        "[child opts]\nsource_table = item_options\narchive_table = item_options_archive\n"
        "parent_columns = item_id\nparent = items\n"
        "[child items]\nsource_table = order_items\narchive_table = order_items_archive\n"
        "parent_columns = order_id\n")))
    assert [c.name for c in config.children] == ["items", "opts"]
    assert config.children[1].parent == "items" and config.children[0].parent_columns == ("order_id",)
    assert config.batch_rows == 10 * config.batch_size


@pytest.mark.parametrize("extra, message", [
    ("[child items]\nsource_table = order_items\narchive_table = a\nparent_colums = x\n",
     "[child items] parent_colums: unknown key; did you mean parent_columns?"),
    ("[child items]\nsource_table = order_items\narchive_table = a\n",
     "[child items] parent_columns: is required"),
    ("[child items]\nsource_table = order_items\narchive_table = a\nparent_columns = x\nparent = nope\n",
     "[child items] parent: no section [child nope]"),
    (("[child a]\nsource_table = t1\narchive_table = t1a\nparent_columns = x\nparent = b\n"
      "[child b]\nsource_table = t2\narchive_table = t2a\nparent_columns = x\nparent = a\n"),
     "the parents form a cycle"),
    ("[child items]\nsource_table = orders_archive\narchive_table = a\nparent_columns = x\n",
     "`orders_archive` is already [archive] archive_table"),
    (("[child a]\nsource_table = t1\narchive_table = t1a\nparent_columns = x\n"
      "[child b]\nsource_table = t1\narchive_table = t2a\nparent_columns = x\n"),
     "[child b] source_table: `t1` is already [child a] source_table"),
    ("[child it;ems]\nsource_table = t1\narchive_table = t1a\nparent_columns = x\n",
     "NAME must be a plain identifier"),
    ("[child items]\nsource_table = t1\narchive_table = t1a\nparent_columns = a, a\n",
     "names a more than once"),
])
def test_a_bad_child_section_is_refused_naming_it(tmp_path, extra, message):
    with pytest.raises(archive.ConfigError) as raised:
        archive.load_config(config_text(tmp_path, extra))
    assert message in str(raised.value)


def test_a_batch_of_parts_is_recorded_as_one_batch():
    one = archive.BatchOutcome(archive.Counters(1, 5, 5, 1), (3,), "COMPLETED_WITH_DUPLICATES", (),
                               5, (("items", 10, 11, 1),), ((3, "why"),))
    two = archive.BatchOutcome(archive.Counters(1, 4, 4), (), "COMPLETED", (9,), 5, (("items", 8, 8, 0),))
    whole = archive.merge_outcomes(one, two)
    assert whole.counts == archive.Counters(1, 9, 9, 1)
    assert whole.tables == (("items", 18, 19, 1),) and whole.status == "COMPLETED_WITH_DUPLICATES"
    assert whole.conflicts == (3,) and whole.held == (9,) and whole.details == ((3, "why"),)
    assert archive.merge_outcomes(None, two) is two


def two_level_plan() -> archive.TablePlan:
    """orders <- order_items <- item_options, as the preflight would plan them."""
    int_type = archive.KeyType("int", -2 ** 31, 2 ** 31 - 1, sql_type="int(11)")
    items = archive.ChildPlan("items", "order_items", "order_items_archive", ("id",),
                              (archive.Column("id", "int", ""), archive.Column("order_id", "int", "")),
                              None, ("order_id",), ("id",))
    options = archive.ChildPlan("options", "item_options", "item_options_archive", ("item_id", "opt"),
                                (archive.Column("item_id", "int", ""),
                                 archive.Column("opt", "varchar", "utf8mb4")), "items", ("item_id",), ("id",))
    return archive.TablePlan("orders", "orders_archive", ("id",), (archive.Column("id", "int", ""),),
                             int_type, children=(items, options))


def test_a_grandchild_is_joined_up_to_the_listed_rows_and_locked_as_each_server_takes_it():
    plan = two_level_plan()
    options = plan.children[1]
    assert plan.family_sql(options) == (
        "`item_options` c JOIN `order_items` p1 ON c.`item_id` = p1.`id` "
        "JOIN `orders` s FORCE INDEX (`PRIMARY`) ON p1.`order_id` = s.`id`")
    mysql = archive.Dialect("MySQL", (8, 0, 36))
    # MySQL 8.0.22+: FOR UPDATE needs DELETE on every table it locks; the archive is only read
    assert plan.child_classify_sql(options, "s.`id` = 1", True, mysql).endswith(
        "WHERE s.`id` = 1 FOR UPDATE OF c, p1, s FOR SHARE OF a")
    assert plan.child_classify_sql(options, "s.`id` = 1").endswith("WHERE s.`id` = 1 FOR UPDATE")
    assert plan.child_delete_sql(options, "s.`id` = 1").startswith("DELETE c FROM `item_options` c JOIN")


UTF8, LATIN1 = archive.KeyType("str", charset="utf8mb4"), archive.KeyType("str", charset="latin1")


@pytest.mark.parametrize("key_type, key", [
    (archive.KeyType("int"), 12),
    (UTF8, "résumé 😀"),
    (LATIN1, "caf\u00e9\x81\u20ac"),  # cp1252's euro and one of its five bytes that stand for themselves
    (archive.KeyType("str", charset="ascii"), "abc "),
    (archive.KeyType("bytes"), b"\x00\xff,"),
    (archive.KeyType("date"), dt.date(2024, 2, 29)),
    (archive.KeyType("datetime", fsp=3), dt.datetime(2024, 3, 31, 2, 30, 0, 125000)),
    (archive.KeyType("timestamp", fsp=6, zone="+00:00"),
     dt.datetime(2024, 10, 27, 1, 30, 0, 999999, tzinfo=dt.timezone.utc)),
    (archive.KeyType("tuple", parts=(archive.KeyType("int"), UTF8)), (7, "a,b")),
])
def test_a_child_key_read_from_the_server_decodes_to_the_key_whose_bytes_it_is(key_type, key):
    # Into another server a child row's own key is read as key_text_sql's bytes and looked up on the
    # destination as a key: decode must give back exactly the key those bytes encode.
    assert key_type.decode(key_type.encode(key)) == key
    assert key_type.encode(key_type.decode(key_type.encode(key))) == key_type.encode(key)


def test_a_child_row_into_another_server_is_read_joined_up_to_its_listed_row():
    items = archive.ChildPlan("items", "order_items", "order_items_archive", ("id",),
                              (archive.Column("id", "int"), archive.Column("sku", "varchar", "utf8mb4")),
                              None, ("order_id",), ("id",), key_type=archive.KeyType("int"))
    plan = archive.TablePlan("orders", "orders_archive", ("id",), (archive.Column("id", "int"),),
                             archive.KeyType("int"), children=(items,))
    remote = archive.RemotePlan(plan, items)
    read = remote.read_sql("s.`id` IN (1)")
    assert read.startswith("SELECT s.`id`, c.`id`, ")
    assert read.endswith("FROM `order_items` c JOIN `orders` s FORCE INDEX (`PRIMARY`) ON "
                         "c.`order_id` = s.`id` WHERE s.`id` IN (1) FOR UPDATE")
    assert remote.insert_sql(["(1,'a')"]) == "INSERT INTO `order_items_archive` (`id`, `sku`) VALUES (1,'a')"
    assert "FROM `order_items_archive` a FORCE INDEX (`PRIMARY`) WHERE a.`id` IN (1)" in remote.lookup_sql(
        "a.`id` IN (1)")


# --------------------------------------------------------------------------- the real server

FAMILY = (
    "CREATE TABLE orders (id INT PRIMARY KEY, customer VARCHAR(20), total DECIMAL(10,2))",
    "CREATE TABLE orders_archive LIKE orders",
    ("CREATE TABLE order_items (id INT PRIMARY KEY, order_id INT NOT NULL, sku VARCHAR(20) COLLATE "
     "utf8mb4_general_ci, qty INT, KEY (order_id), CONSTRAINT fk_item_order FOREIGN KEY (order_id) "
     "REFERENCES orders (id) ON DELETE RESTRICT)"),
    ("CREATE TABLE order_items_archive (id INT PRIMARY KEY, order_id INT NOT NULL, sku VARCHAR(20) COLLATE "
     "utf8mb4_general_ci, qty INT, KEY (order_id))"),
    ("CREATE TABLE item_options (item_id INT NOT NULL, opt VARCHAR(10) NOT NULL, val VARCHAR(20), "
     "PRIMARY KEY (item_id, opt), CONSTRAINT fk_opt_item FOREIGN KEY (item_id) REFERENCES order_items (id) "
     "ON DELETE CASCADE)"),
    ("CREATE TABLE item_options_archive (item_id INT NOT NULL, opt VARCHAR(10) NOT NULL, val VARCHAR(20), "
     "PRIMARY KEY (item_id, opt))"),
)


DEST_FAMILY = (
    "CREATE TABLE orders_archive (id INT PRIMARY KEY, customer VARCHAR(20), total DECIMAL(10,2))",
    FAMILY[3],
    FAMILY[5],
)


def numbers(first: int, last: int) -> str:
    """A derived table `n` of the integers first..last in column `seq`: MariaDB's seq_1_to_N
    tables (its SEQUENCE engine) do not exist on MySQL (ARCHIVE_TEST_DSN)."""
    return "(" + " UNION ALL ".join(f"SELECT {k} AS seq" for k in range(first, last + 1)) + ") n"


def family_job(db: ScratchDatabase, tmp_path: Path, orders: int, listed: list[int],
               dest: ScratchDatabase | None = None, **config: Any) -> Path:
    """Orders 1..n, order k with items 3k-3..3k-1, each even item with two options (so an odd order
    moves 8 rows, an even one 6); a key file of `listed`. With `dest`, the three archive tables are
    there, and the config's [destination] names it."""
    for ddl in FAMILY if dest is None else (FAMILY[0], FAMILY[2], FAMILY[4]):
        db.execute(ddl)
    if dest is not None:
        for ddl in DEST_FAMILY:
            dest.execute(ddl)
    db.execute(f"INSERT INTO orders SELECT seq, CONCAT('c', seq), seq * 1.5 FROM {numbers(1, orders)}")
    db.execute(f"INSERT INTO order_items SELECT seq, seq DIV 3 + 1, CONCAT('sku', seq), seq MOD 7 "
               f"FROM {numbers(0, 3 * orders - 1)}")
    db.execute("INSERT INTO item_options SELECT i.id, o.opt, CONCAT(o.opt, i.id) FROM order_items i "
               "JOIN (SELECT 'color' AS opt UNION SELECT 'size') o WHERE i.id MOD 2 = 0")
    there = dest_keys(dest) if dest is not None else {}
    path = write_config(tmp_path, db, archive__source_table="orders", archive__archive_table="orders_archive",
                        **there, **ITEMS, **OPTIONS, **config)
    write_csv(tmp_path / "csv" / "orders.csv", listed)
    return path


def family_of(db: ScratchDatabase, table: str) -> list[tuple[Any, ...]]:
    """Every row of a table, in key order."""
    return db.query(f"SELECT * FROM `{table}` ORDER BY 1, 2")


def whole_family(db: ScratchDatabase) -> dict[str, list[tuple[Any, ...]]]:
    """Source plus archive rows of each table: what must never change."""
    return {t: sorted(family_of(db, t) + family_of(db, f"{t}_archive"))
            for t in ("orders", "order_items", "item_options")}


def test_a_three_level_family_moves_exactly_with_its_listed_parents(db, tmp_path):
    listed = [2, 3, 5, 8, 13, 21, 34]
    config = family_job(db, tmp_path, 40, listed, archive__batch_size=3)
    before = whole_family(db)
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert whole_family(db) == before
    assert [r[0] for r in family_of(db, "orders_archive")] == listed
    items = [r for r in before["order_items"] if r[1] in listed]
    assert family_of(db, "order_items_archive") == items
    assert sorted(family_of(db, "item_options_archive")) == sorted(
        r for r in before["item_options"] if r[0] in {i[0] for i in items})
    assert db.scalar("SELECT COUNT(*) FROM order_items WHERE order_id IN (2, 3, 5, 8, 13, 21, 34)") == 0
    counts = [json.loads(t) for (t,) in db.query(
        "SELECT table_counts FROM batch_processing_logs ORDER BY batch_number")]
    assert sum(c["items"]["archived"] for c in counts) == len(items) == 21
    assert sum(c["options"]["deleted"] for c in counts) == 2 * sum(1 for i in items if i[0] % 2 == 0)
    assert "child rows archived items 21, options 22" in result.stdout
    status = run_cli(config, "--status")
    assert "  child table items: rows archived 21, rows deleted 21, rows duplicates 0" in status.stdout
    report = json.loads(run_cli(config, "--status", "--json").stdout)
    assert report["child_tables"]["options"] == {"archived": 22, "deleted": 22, "duplicates": 0}


def acct_job(db: ScratchDatabase, tmp_path: Path, line: str, line_archive: str, lines: str, **settings: Any
             ) -> Path:
    """acct keyed by (tenant, id), the child `line` on (aid, t); the key file lists (1, 'a')."""
    db.execute("CREATE TABLE acct (tenant VARCHAR(8) NOT NULL, id INT NOT NULL, PRIMARY KEY (tenant, id))")
    db.execute("CREATE TABLE acct_archive LIKE acct")
    db.execute(line)
    db.execute(line_archive)
    db.execute("INSERT INTO acct VALUES ('a', 1), ('b', 1), ('a', 2)")
    db.execute(f"INSERT INTO line VALUES {lines}")
    config = write_config(tmp_path, db, archive__source_table="acct", archive__archive_table="acct_archive",
                          archive__key_column="id, tenant", archive__csv_column=None,
                          **{"child l__source_table": "line", "child l__archive_table": "line_archive",
                             "child l__parent_columns": "aid, t"}, **settings)
    (tmp_path / "csv" / "k.csv").write_text('id,tenant\n1,"a"\n')
    return config


def test_a_composite_parent_key_joins_on_every_column_in_key_order(db, tmp_path):
    config = acct_job(db, tmp_path, "CREATE TABLE line (lid INT PRIMARY KEY, t VARCHAR(8) NOT NULL, aid INT "
                      "NOT NULL, KEY (aid, t))", "CREATE TABLE line_archive LIKE line",
                      "(1, 'a', 1), (2, 'b', 1), (3, 'a', 2), (4, 'A', 1)")
    refused = run_cli(config, "--check")  # no foreign key: the columns must be confirmed
    assert refused.returncode == 1, refused.stdout
    assert ("[child l]: `line` has no foreign key to `acct`, so nothing in the schema says that (aid, t) "
            "hold the parent's key: check it, then set [child l] without_foreign_key = yes") in refused.stdout
    config.write_text(config.read_text() + "without_foreign_key = yes\n")  # the last section: [child l]
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert db.query("SELECT * FROM acct ORDER BY tenant, id") == [("a", 2), ("b", 1)]
    # 'A' equals 'a' under the column's collation, as a foreign key would match it: it moves too
    assert db.query("SELECT lid FROM line_archive ORDER BY lid") == [(1,), (4,)]


def test_a_differing_archived_child_keeps_its_whole_family_until_resolved(db, tmp_path):
    config = family_job(db, tmp_path, 10, [4, 5, 6])
    db.execute("INSERT INTO order_items_archive SELECT id, order_id, sku, qty + 1 FROM order_items "
               "WHERE id = 12")
    db.execute("INSERT INTO order_items_archive SELECT * FROM order_items WHERE id = 13")  # an identical twin
    db.execute("INSERT INTO order_items_archive SELECT id, order_id, 'SKU15', qty FROM order_items "
               "WHERE id = 15")  # 'SKU15' = 'sku15' by collation, yet another value
    result = run_cli(config)
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert [r[0] for r in family_of(db, "orders")] == [1, 2, 3, 5, 6, 7, 8, 9, 10]
    assert db.scalar("SELECT COUNT(*) FROM order_items WHERE order_id = 5") == 3
    assert db.scalar("SELECT COUNT(*) FROM item_options WHERE item_id IN (12, 14)") == 4
    details = db.query("SELECT key_value, detail FROM conflict_logs ORDER BY key_value")
    assert details == [("5", "`order_items` row (id) = (12) is archived with a different row"),
                       ("6", "`order_items` row (id) = (15) is archived with a different row")]
    assert db.query("SELECT rows_archived, conflicts FROM process_logs") == [(1, 2)]
    db.execute("DELETE FROM order_items_archive WHERE id IN (12, 15)")
    again = run_cli(config)
    assert again.returncode == 0, (again.stdout, again.stderr)
    assert [r[0] for r in family_of(db, "orders")] == [1, 2, 3, 7, 8, 9, 10]
    assert db.scalar("SELECT COUNT(*) FROM order_items WHERE order_id IN (4, 5, 6)") == 0
    assert db.scalar("SELECT COUNT(*) FROM order_items_archive WHERE order_id IN (4, 5, 6)") == 9


def test_batches_that_meet_archived_rows_after_quick_ones_move_exactly(db, tmp_path):
    # Attack on the quick path (no locked reads while every row is new): batch 1 goes quickly; batch 2
    # meets an identical archived option two levels down, after its orders and items were copied in
    # the same round trip; batch 3 an identical archived item; batch 4 an item archived differently
    config = family_job(db, tmp_path, 12, list(range(1, 13)), archive__batch_size=3)
    db.execute("INSERT INTO item_options_archive SELECT * FROM item_options WHERE item_id = 14 LIMIT 1")
    db.execute("INSERT INTO order_items_archive SELECT * FROM order_items WHERE id = 22")
    db.execute("INSERT INTO order_items_archive SELECT id, order_id, sku, qty + 1 FROM order_items "
               "WHERE id = 28")
    rows = {t: set(family_of(db, t)) for t in ("orders", "order_items", "item_options")}
    differing = family_of(db, "order_items_archive")[-1]
    result = run_cli(config)
    assert result.returncode == 3, (result.stdout, result.stderr)
    stayed = {"orders": {r for r in rows["orders"] if r[0] == 10},
              "order_items": {r for r in rows["order_items"] if r[1] == 10},
              "item_options": {r for r in rows["item_options"] if r[0] == 28}}
    for table, source in stayed.items():
        assert set(family_of(db, table)) == source, table
        archived = family_of(db, f"{table}_archive")
        assert len(archived) == len(set(archived)), f"{table}: a row archived twice"
        assert set(archived) == (rows[table] - source) | ({differing} if table == "order_items" else set())
    assert db.query("SELECT rows_archived, duplicates, conflicts FROM process_logs") == [(11, 0, 1)]
    shown = json.loads(run_cli(config, "--status", "--json").stdout)["child_tables"]
    assert shown["items"] == {"archived": 32, "deleted": 33, "duplicates": 1}, shown
    options = shown["options"]
    assert options["duplicates"] == 1 and options["deleted"] == options["archived"] + 1, shown


def test_orphans_of_a_listed_key_that_is_not_found_stay_in_the_source(db, tmp_path):
    # Attack on the quick path's child rows read by their own column (order_id BETWEEN ...), not a
    # join up to the listed orders: without a foreign key, rows may hold the id of an order that
    # does not exist. Listed, that id must not take them along, and the other orders still move
    db.execute("CREATE TABLE orders (id INT PRIMARY KEY, total INT)")
    db.execute("CREATE TABLE orders_archive LIKE orders")
    db.execute("CREATE TABLE notes (id INT PRIMARY KEY, order_id INT NOT NULL, txt VARCHAR(20), "
               "KEY (order_id))")
    db.execute("CREATE TABLE notes_archive LIKE notes")
    db.execute("INSERT INTO orders SELECT seq, seq * 10 FROM seq_1_to_6")
    # two notes per order, and two of order 7, which does not exist
    db.execute("INSERT INTO notes SELECT seq, (seq - 1) DIV 2 + 1, CONCAT('n', seq) FROM seq_1_to_14")
    notes = {"child notes__source_table": "notes", "child notes__archive_table": "notes_archive",
             "child notes__parent_columns": "order_id", "child notes__without_foreign_key": "yes"}
    config = write_config(tmp_path, db, archive__source_table="orders",
                          archive__archive_table="orders_archive",
                          **notes)
    write_csv(tmp_path / "csv" / "orders.csv", list(range(1, 8)))
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert db.query("SELECT id FROM orders") == [] and db.count("orders_archive") == 6
    assert db.query("SELECT id, order_id FROM notes ORDER BY id") == [(13, 7), (14, 7)]
    assert db.count("notes_archive") == 12
    assert db.query("SELECT rows_archived, not_found FROM process_logs") == [(6, 1)]
    write_csv(tmp_path / "csv" / "more.csv", [7])  # listed alone: nothing found, nothing moves
    again = run_cli(config)
    assert again.returncode == 0, (again.stdout, again.stderr)
    assert db.count("notes") == 2 and db.count("notes_archive") == 12


def test_only_a_childs_own_integer_column_under_an_integer_key_is_read_directly():
    parent = archive.TablePlan("orders", "orders_archive", ("id",), (archive.Column("id", "int"),),
                               archive.KeyType("int", low=-2 ** 31, high=2 ** 31 - 1, sql_type="int"))
    items = archive.ChildPlan("items", "order_items", "order_items_archive", ("id",),
                              (archive.Column("id", "int"), archive.Column("order_id", "BIGINT")), None,
                              ("order_id",), ("id",))
    assert parent.direct_rows(items, [3, 1, 4, 2, 9]) == (
        "`order_items` c", "(c.`order_id` BETWEEN 1 AND 4 OR c.`order_id` IN (9))", ())
    text = dataclasses.replace(items, columns=(archive.Column("id", "int"),
                                               archive.Column("order_id", "varchar")))
    grandchild = dataclasses.replace(items, parent="items")
    by_text = dataclasses.replace(parent, key_type=archive.KeyType("str", max_length=9, charset="utf8mb4"))
    assert parent.direct_rows(text, [1]) is None and parent.direct_rows(grandchild, [1]) is None
    assert by_text.direct_rows(items, ["1"]) is None


def leave_a_partial_batch(db: ScratchDatabase, config: Path, spawn_cli: Any) -> None:
    """Run the 20-key job of batch_size 10 and max_batch_rows 40 and kill -9 it while the second part
    of batch 1 waits for a lock: batch 1 is left PARTIAL with its first 5 keys moved."""
    holder = db.connect()
    holder.autocommit = False
    cursor = holder.cursor()
    cursor.execute("SELECT * FROM order_items WHERE id = 16 FOR UPDATE")  # order 6: the second part
    cursor.fetchall()
    proc = spawn_cli(config)
    wait_until(lambda: db.table_exists("batch_processing_logs") and db.scalar(
        "SELECT COUNT(*) FROM batch_processing_logs WHERE status = 'PARTIAL'"), timeout=60,
        message="the first part's commit")
    wait_for_a_lock_wait(db, "the second part to wait for its lock", lambda: proc.poll() is not None)
    assert proc.poll() is None, proc.read_stdout() + proc.read_stderr()  # it must not have ended instead
    kill_process_group(proc, signal.SIGKILL)
    holder.rollback()
    holder.close()


def partial_job(db: ScratchDatabase, tmp_path: Path, spawn_cli: Any) -> Path:
    """Orders 1..20 listed, batch_size 10, max_batch_rows 40 (5 orders a part), batch 1 left PARTIAL."""
    config = family_job(db, tmp_path, 30, list(range(1, 21)), archive__batch_size=10,
                        archive__max_batch_rows=40)
    leave_a_partial_batch(db, config, spawn_cli)
    return config


def test_max_batch_rows_moves_a_batch_in_parts_and_a_kill_between_them_resumes_exactly(
        db, tmp_path, spawn_cli):
    listed = list(range(1, 21))
    config = family_job(db, tmp_path, 30, listed, archive__batch_size=10, archive__max_batch_rows=40)
    before = whole_family(db)
    leave_a_partial_batch(db, config, spawn_cli)
    parts = db.query("SELECT batch_number, keys_in_batch, rows_archived FROM batch_processing_logs")
    assert parts == [(1, 5, 5)]
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "Resuming batch 1 at key 6" in result.stdout
    assert whole_family(db) == before
    assert [r[0] for r in family_of(db, "orders_archive")] == listed
    runs = db.query("SELECT rows_archived, not_found FROM process_logs ORDER BY id")
    assert [r[0] for r in runs] == [5, 15] and all(r[1] == 0 for r in runs)
    rows = db.query("SELECT process_log_id, batch_number, status, keys_in_batch, rows_archived FROM "
                    "batch_processing_logs ORDER BY id")
    assert [r[1:] for r in rows] == [(1, "PARTIAL", 5, 5), (1, "COMPLETED", 10, 5), (2, "COMPLETED", 10, 10)]
    parts = read_text_logs(tmp_path / "logs")
    assert "PART: Batch 2 - 5 of 10 keys moved" in parts


def test_a_parent_whose_family_alone_is_over_max_batch_rows_fails_its_file_naming_the_key(db, tmp_path):
    config = family_job(db, tmp_path, 10, [2, 1, 3], archive__batch_size=3, archive__max_batch_rows=7)
    result = run_cli(config)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "key 1 moves 8 rows with its child rows, more than [archive] max_batch_rows 7" in result.stderr
    assert [r[0] for r in family_of(db, "orders_archive")] == [2]  # the part before it, complete
    assert db.count("order_items_archive") == 3 and db.count("item_options_archive") == 2
    assert db.query("SELECT status FROM file_processing_logs") == [("FAILED",)]


def test_dry_run_predicts_a_conflict_in_a_child_row(db, tmp_path):
    config = family_job(db, tmp_path, 10, [4, 5])
    db.execute("INSERT INTO order_items_archive SELECT id, order_id, sku, qty + 1 FROM order_items "
               "WHERE id = 12")
    result = run_cli(config, "--dry-run", "--json")
    assert result.returncode == 0, (result.stdout, result.stderr)
    totals = json.loads(result.stdout)["total"]
    assert (totals["rows_to_archive"], totals["conflicts"]) == (1, 1)
    assert json.loads(result.stdout)["child_tables"] == {
        "items": {"rows_to_archive": 3, "rows_to_delete": 3},
        "options": {"rows_to_archive": 2, "rows_to_delete": 2}}  # order 4: items 9-11, options of 10
    text = run_cli(config, "--dry-run").stdout
    assert "child table items: 3 rows to archive, 3 to delete" in text
    assert db.count("orders_archive") == 0


@pytest.mark.parametrize("change, message", [
    ("ALTER TABLE order_items DROP FOREIGN KEY fk_item_order, DROP KEY order_id",
     "`order_items` has no index starting with (order_id)"),
    ("ALTER TABLE order_items DROP FOREIGN KEY fk_item_order, MODIFY order_id BIGINT NOT NULL",
     "`order_items`.`order_id` is bigint but the parent's `id` is int: they must be the same"),
    ("ALTER TABLE order_items_archive DROP PRIMARY KEY",
     "`order_items_archive` needs a unique key on (id)"),
    ("ALTER TABLE order_items_archive DROP COLUMN qty", "[child items]: archive table has no column `qty`"),
    ("ALTER TABLE item_options ENGINE=MyISAM", "`item_options` must be a transactional base table"),
    (("CREATE TABLE notes (id INT PRIMARY KEY, item INT, FOREIGN KEY (item) REFERENCES order_items (id) "
      "ON DELETE CASCADE)"), "[child items]: deleting rows of `order_items` changes child tables"),
    (("ALTER TABLE item_options ADD COLUMN other INT, ADD CONSTRAINT fk_other FOREIGN KEY (other) "
      "REFERENCES order_items (id) ON DELETE SET NULL"), "fk_other: ON DELETE SET NULL"),
])
def test_the_preflight_refuses_a_child_it_cannot_move_exactly(db, tmp_path, change, message):
    config = family_job(db, tmp_path, 3, [1])
    if "ENGINE=MyISAM" in change:
        db.execute("ALTER TABLE item_options DROP FOREIGN KEY fk_opt_item")
    db.execute(change)
    result = run_cli(config, "--check")
    assert result.returncode == 1 and message in result.stdout, result.stdout
    assert run_cli(config).returncode == 1 and db.count("orders") == 3


def test_check_names_each_child_and_an_unlisted_cascading_child_is_refused(db, tmp_path):
    config = family_job(db, tmp_path, 3, [1])
    result = run_cli(config, "--check")
    assert result.returncode == 0, result.stdout
    assert ("ok: child `item_options` -> `item_options_archive` moves with `order_items` (item_id = id), "
            "compared by its key (item_id, opt), 3 columns copied") in result.stdout
    text = config.read_text()
    config.write_text(text[:text.index("[child options]")])
    refused = run_cli(config, "--check")
    assert refused.returncode == 1
    assert "item_options (fk_opt_item: ON DELETE CASCADE" in refused.stdout


def test_a_child_column_of_another_collation_than_its_parents_key_is_refused(db, tmp_path):
    db.execute("CREATE TABLE codes (code VARCHAR(5) COLLATE utf8mb4_bin PRIMARY KEY)")
    db.execute("CREATE TABLE codes_archive LIKE codes")
    db.execute("CREATE TABLE uses (id INT PRIMARY KEY, code VARCHAR(5) COLLATE utf8mb4_general_ci, "
               "KEY (code))")
    db.execute("CREATE TABLE uses_archive LIKE uses")
    db.execute("INSERT INTO codes VALUES ('a'), ('A')")
    db.execute("INSERT INTO uses VALUES (1, 'a'), (2, 'A')")  # 'A' = 'a' under general_ci: not a's
    config = write_config(tmp_path, db, archive__source_table="codes", archive__archive_table="codes_archive",
                          archive__key_column="code", archive__csv_column=None,
                          **{"child u__source_table": "uses", "child u__archive_table": "uses_archive",
                             "child u__parent_columns": "code"})
    (tmp_path / "csv" / "k.csv").write_text('code\n"a"\n')
    result = run_cli(config)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert ("`uses`.`code` is varchar(5) utf8mb4 utf8mb4_general_ci but the parent's `code` is varchar(5) "
            "utf8mb4 utf8mb4_bin") in result.stderr
    assert db.count("uses") == 2 and db.count("codes") == 2


def test_keys_exported_by_a_condition_move_their_families(db, tmp_path):
    config = family_job(db, tmp_path, 30, [], export__where="total > 30")  # orders 21..30
    (tmp_path / "csv" / "orders.csv").unlink()
    before = whole_family(db)
    exported = run_cli(config, "--export-keys", "-q")
    assert exported.returncode == 0 and exported.stdout == "", (exported.stdout, exported.stderr)
    result = run_cli(config, "-q")
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert whole_family(db) == before
    assert [r[0] for r in family_of(db, "orders_archive")] == list(range(21, 31))
    assert db.scalar("SELECT MIN(order_id), COUNT(*) FROM order_items_archive") == 21
    assert db.count("order_items_archive") == 30 and db.scalar("SELECT MAX(order_id) FROM order_items") == 20


# --------------------------------------------------------------------------- red team

def test_a_composite_foreign_key_declared_in_another_column_order_is_covered(db, tmp_path):
    # red team: the foreign key (t, aid) -> (tenant, id) is what parent_columns "aid, t" declare for
    # key_column "id, tenant"; compared pair by pair in order it was taken for an undeclared child,
    # and its CASCADE refused every run
    config = acct_job(db, tmp_path,
                      "CREATE TABLE line (lid INT PRIMARY KEY, t VARCHAR(8) NOT NULL, aid INT NOT NULL, "
                      "CONSTRAINT fk_line FOREIGN KEY (t, aid) REFERENCES acct (tenant, id) "
                      "ON DELETE CASCADE)",
                      "CREATE TABLE line_archive (lid INT PRIMARY KEY, t VARCHAR(8) NOT NULL, "
                      "aid INT NOT NULL)",
                      "(1, 'a', 1), (2, 'b', 1), (3, 'a', 2)")
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert db.query("SELECT lid FROM line_archive") == [(1,)] and db.count("line") == 2


def test_the_recheck_of_a_conflict_moves_no_family_over_max_batch_rows(db, tmp_path):
    # red team: the recheck moved a settled conflict's family in one transaction whatever its size
    # (order 1 moves 8 rows, max_batch_rows is 7): the batch path refuses that key, so must the recheck
    config = family_job(db, tmp_path, 10, [1], archive__max_batch_rows=7)
    db.execute("INSERT INTO order_items_archive SELECT id, order_id, sku, qty + 1 FROM order_items "
               "WHERE id = 0")
    assert run_cli(config).returncode == 3
    db.execute("DELETE FROM order_items_archive")
    result = run_cli(config)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "key 1 moves 8 rows with its child rows, more than [archive] max_batch_rows 7" in result.stderr
    assert db.count("orders", "id = 1") == 1 and db.count("order_items", "order_id = 1") == 3
    assert db.count("order_items_archive") == 0


def test_the_recheck_of_many_conflicts_goes_on_in_parts_of_max_batch_rows(db, tmp_path):
    # (the recheck cut to max_batch_rows goes on after each cut: the keys past one are rechecked in
    # the next transaction, never closed as gone)
    config = family_job(db, tmp_path, 10, [1, 3, 5, 7], archive__batch_size=4, archive__max_batch_rows=9)
    before = whole_family(db)
    db.execute("INSERT INTO order_items_archive SELECT id, order_id, sku, qty + 1 FROM order_items "
               "WHERE id IN (0, 6, 12, 18)")  # one differing item in each order
    assert run_cli(config).returncode == 3
    db.execute("DELETE FROM order_items_archive")
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "RECHECK: orders.csv: 4 of 4 earlier conflict(s) resolved" in result.stdout
    assert whole_family(db) == before and [r[0] for r in family_of(db, "orders_archive")] == [1, 3, 5, 7]
    resolutions = db.query("SELECT DISTINCT resolution FROM conflict_logs")
    assert resolutions == [("archived copy was gone: row archived",)]


def test_dry_run_after_a_partial_batch_predicts_its_settled_keys_as_settled(db, tmp_path, spawn_cli):
    # red team: the dry run classified batch 1 from its first key, predicting 5 keys not found
    # that the run skips (it resumes after them)
    config = partial_job(db, tmp_path, spawn_cli)
    result = run_cli(config, "--dry-run", "--json")
    totals = json.loads(result.stdout)["total"]
    assert (totals["rows_to_archive"], totals["not_found"]) == (15, 0), totals
    again = run_cli(config)
    assert again.returncode == 0 and db.query(
        "SELECT rows_archived, not_found FROM process_logs ORDER BY id") == [(5, 0), (15, 0)]


def test_a_rerun_in_another_batch_size_after_a_partial_batch_counts_no_key_twice(db, tmp_path, spawn_cli):
    # red team: with batch 1 left in parts and no checkpoint, the rerun took the new batch_size: its
    # batch 1 was then keys 1-3, only 2 of them skipped, and keys 3-5 (archived by the first run)
    # were counted again as not found
    config = partial_job(db, tmp_path, spawn_cli)
    config.write_text(config.read_text().replace("batch_size = 10", "batch_size = 3"))
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "keeps batch_size 10" in result.stdout
    assert db.query("SELECT rows_archived, not_found FROM process_logs ORDER BY id") == [(5, 0), (15, 0)]
    assert [r[0] for r in family_of(db, "orders_archive")] == list(range(1, 21))


def test_dry_run_predicts_the_failure_of_a_family_over_max_batch_rows(db, tmp_path):
    # red team: the dry run predicted all 3 keys moved and exit 0; the run moves key 2, then fails
    # its file at key 1 (8 rows, max_batch_rows 7) and exits 1
    config = family_job(db, tmp_path, 10, [2, 1, 3], archive__batch_size=3, archive__max_batch_rows=7)
    result = run_cli(config, "--dry-run", "--json")
    assert result.returncode == 1, (result.stdout, result.stderr)
    row = json.loads(result.stdout)["files"][0]
    assert (row["rows_to_archive"], row["not_found"]) == (1, 0)
    assert row["status"].startswith("FAILS at batch 1: key 1 moves 8 rows with its child rows, more than "
                                    "[archive] max_batch_rows 7")
    assert db.count("orders_archive") == 0
    assert run_cli(config).returncode == 1 and db.query("SELECT rows_archived FROM process_logs") == [(1,)]


def test_the_summary_counts_the_child_rows_a_recheck_moves(db, tmp_path):
    # red team: a held parent that the recheck moved with its family showed "rows archived 1" and no
    # "child rows archived" at all: the recheck's child rows were counted nowhere
    config = family_job(db, tmp_path, 10, [2, 3, 4], controls__guard="total < 5")
    first = run_cli(config)
    assert first.returncode == 0, (first.stdout, first.stderr)
    assert [r[0] for r in family_of(db, "orders_archive")] == [2, 3]  # 4 (total 6.0) is held back
    assert db.count("order_items", "order_id = 4") == 3 and db.count("item_options") == 2 * 15 - 6
    config.write_text(config.read_text().replace("total < 5", "total < 50"))
    again = run_cli(config)
    assert again.returncode == 0, (again.stdout, again.stderr)
    assert db.count("order_items", "order_id = 4") == 0
    assert db.count("order_items_archive", "order_id = 4") == 3
    assert "rows archived 1 |" in again.stdout and "child rows archived items 3, options 2" in again.stdout
    # ... and --status says the same of the run: the recheck's child rows are in no batch
    shown = json.loads(run_cli(config, "--status", "--json").stdout)
    assert shown["rows_archived"] == 1, shown
    assert shown["child_tables"] == {"items": {"archived": 3, "deleted": 3, "duplicates": 0},
                                     "options": {"archived": 2, "deleted": 2, "duplicates": 0}}, shown


def test_schema_5_child_counts_read_as_they_were_and_the_next_run_upgrades_them(db, tmp_path, server):
    # schema 6 added process_logs.recheck_counts: a read-only command on schema-5 tables must read
    # the batches' child counts without it, and the next run adds it (the tables then a fresh install's)
    config = family_job(db, tmp_path, 10, [2, 3])
    assert run_cli(config).returncode == 0
    db.execute("ALTER TABLE process_logs DROP COLUMN recheck_counts, "
               "COMMENT = 'archive.py tracking schema 5'")
    shown = run_cli(config, "--status", "--json")
    assert shown.returncode == 0, (shown.stdout, shown.stderr)
    assert json.loads(shown.stdout)["child_tables"]["items"]["archived"] == 6, shown.stdout
    assert "tracking tables are schema 5; the next run upgrades them" in run_cli(config, "--check").stdout
    again = run_cli(config, "-v")
    assert again.returncode == 0, (again.stdout, again.stderr)
    assert f"MIGRATED: tracking tables to schema {archive.SCHEMA_VERSION}" in text_log(tmp_path)
    assert_like_fresh(db, server)


def test_a_key_listed_twice_in_a_batch_cut_between_them_is_not_counted_not_found(db, tmp_path):
    # red team: a batch lists a key once (its IN list, the dry run's prediction), but a cut between a
    # key's two listings counted its second as not found: the counts hung on max_batch_rows
    config = family_job(db, tmp_path, 30, [1, 2, 3, 4, 5, 1, 6, 7, 2], archive__batch_size=9,
                        archive__max_batch_rows=20)
    before = whole_family(db)
    predicted = json.loads(run_cli(config, "--dry-run", "--json").stdout)["total"]
    assert (predicted["rows_to_archive"], predicted["not_found"]) == (7, 0)
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "PART: Batch 1 - 2 of 9 keys moved" in result.stdout
    assert whole_family(db) == before
    assert db.query("SELECT rows_archived, not_found FROM process_logs") == [(7, 0)]
    batches = db.query("SELECT keys_in_batch, rows_archived, not_found FROM batch_processing_logs")
    assert batches == [(9, 7, 0)]


@pytest.fixture(scope="module")
def folding_server(own_server: Any) -> Any:
    """A throwaway server with lower_case_table_names = 1 (names stored in lower case)."""
    return own_server("lctn", "--lower-case-table-names=1")


def test_mixed_case_child_tables_work_where_the_server_folds_names(folding_server, tmp_path):
    # red team: folded_names lower-cased the source and archive names but not the children's, so on a
    # server with lower_case_table_names = 1 `Order_Items` "did not exist" (the source's mixed case works)
    db = ScratchDatabase.create(folding_server, "Folded_Family")
    try:
        db.execute("CREATE TABLE Orders (id INT PRIMARY KEY)")
        db.execute("CREATE TABLE Orders_Archive LIKE Orders")
        db.execute("CREATE TABLE Order_Items (id INT PRIMARY KEY, order_id INT NOT NULL, CONSTRAINT fk_o "
                   "FOREIGN KEY (order_id) REFERENCES Orders (id) ON DELETE CASCADE)")
        db.execute("CREATE TABLE Order_Items_Archive (id INT PRIMARY KEY, order_id INT NOT NULL)")
        db.execute("CREATE TABLE Notes (id INT PRIMARY KEY, item INT, CONSTRAINT fk_n FOREIGN KEY (item) "
                   "REFERENCES Order_Items (id) ON DELETE CASCADE)")
        db.execute("INSERT INTO Orders VALUES (1), (2)")
        db.execute("INSERT INTO Order_Items VALUES (10, 1), (20, 2)")
        db.execute("INSERT INTO Notes VALUES (100, 10)")
        config = write_config(tmp_path, db, archive__source_table="Orders",
                              archive__archive_table="Orders_Archive",
                              **{"child items__source_table": "Order_Items",
                                 "child items__archive_table": "Order_Items_Archive",
                                 "child items__parent_columns": "order_id"})
        write_csv(tmp_path / "csv" / "k.csv", [1])
        refused = run_cli(config)  # the cascade into the unlisted Notes is seen under the folded name
        assert refused.returncode == 1 and "notes (fk_n: ON DELETE CASCADE" in refused.stderr, refused.stderr
        assert db.count("notes") == 1
        db.execute("DROP TABLE Notes")
        result = run_cli(config)
        assert result.returncode == 0, (result.stdout, result.stderr)
        assert db.query("SELECT * FROM order_items_archive") == [(10, 1)]
        assert db.query("SELECT * FROM order_items") == [(20, 2)]
    finally:
        db.drop()


def test_parent_columns_other_than_the_childs_foreign_key_are_refused(db, tmp_path):
    # red team: parent_columns = customer (an indexed INT, like orders.id) while the schema's foreign key
    # says order_items references orders by order_id: --check said READY and the run archived order 4's
    # items with order 2 (their customer), out from under order 4, which stayed in the source
    config = family_job(db, tmp_path, 10, [2])
    db.execute("DELETE FROM order_items WHERE order_id = 2")
    db.execute("ALTER TABLE order_items ADD COLUMN customer INT NOT NULL DEFAULT 0, ADD KEY (customer)")
    db.execute("ALTER TABLE order_items_archive ADD COLUMN customer INT NOT NULL DEFAULT 0")
    db.execute("UPDATE order_items SET customer = 2 WHERE order_id = 4")
    config.write_text(config.read_text().replace("parent_columns = order_id", "parent_columns = customer"))
    check = run_cli(config, "--check")
    assert check.returncode == 1, check.stdout
    assert ("`order_items` references `orders` by its foreign key fk_item_order (order_id), not by "
            "parent_columns (customer)") in check.stdout
    assert run_cli(config).returncode == 1
    assert db.count("order_items", "order_id = 4") == 3 and db.count("order_items_archive") == 0


def test_status_does_not_count_a_batch_left_in_parts_as_processed(db, tmp_path, spawn_cli):
    # red team: every part set the file's processed_batches to its batch's number, so with batch 1
    # left PARTIAL (5 of its 10 keys) --status said "1/2 batches"
    config = partial_job(db, tmp_path, spawn_cli)
    status = run_cli(config, "--status")
    assert "orders.csv  0/2 batches  PROCESSING" in status.stdout, status.stdout
    assert run_cli(config).returncode == 0
    assert db.query("SELECT processed_batches FROM file_processing_logs ORDER BY id") == [(0,), (2,)]


# --------------------------------------------------------------------------- into another server



def remote_family_job(db: ScratchDatabase, dest: ScratchDatabase, tmp_path: Path, orders: int,
                      listed: list[int], **config: Any) -> Path:
    """family_job's tables and rows on the source, its three archive tables on the destination."""
    return family_job(db, tmp_path, orders, listed, dest, **config)


def split_family(db: ScratchDatabase, dest: ScratchDatabase, settled: bool = True
                 ) -> dict[str, list[tuple[Any, ...]]]:
    """The rows of each table in the source or on the destination (what must never change), once
    each; `settled`: no row is in both (a kill between the two commits leaves identical twins)."""
    tables = {}
    for table in ("orders", "order_items", "item_options"):
        here, there = family_of(db, table), family_of(dest, f"{table}_archive")
        both = sorted(set(here) & set(there))
        assert not settled or not both, f"{table}: in both: {both[:5]}"
        tables[table] = sorted(set(here) | set(there))
    return tables


def assert_no_orphans(db: ScratchDatabase, dest: ScratchDatabase) -> None:
    """No child row stayed whose parent moved, and none moved whose parent stayed."""
    orders, items = {r[0] for r in family_of(db, "orders")}, family_of(db, "order_items")
    assert all(item[1] in orders for item in items), "an item stayed whose order was archived"
    assert all(o[0] in {i[0] for i in items} for o in family_of(db, "item_options"))
    archived = {r[0] for r in family_of(dest, "orders_archive")}
    moved_items = family_of(dest, "order_items_archive")
    assert all(item[1] in archived for item in moved_items), "an item was archived whose order stayed"
    assert all(o[0] in {i[0] for i in moved_items} for o in family_of(dest, "item_options_archive"))


def test_a_three_level_family_moves_into_another_server_exactly(db, dest_db, tmp_path):
    listed = [2, 3, 5, 8, 13, 21, 34]
    config = remote_family_job(db, dest_db, tmp_path, 40, listed, archive__batch_size=3)
    before = split_family(db, dest_db)
    check = run_cli(config, "--check")
    assert check.returncode == 0 and "Verdict: READY." in check.stdout, check.stdout
    there = f"on root@{dest_keys(dest_db)['destination__unix_socket']}"
    assert f"ok: child `item_options` -> `item_options_archive` {there} moves with `order_items`" \
        in check.stdout, check.stdout
    dry = run_cli(config, "--dry-run", "--json")
    assert dry.returncode == 0, (dry.stdout, dry.stderr)
    assert json.loads(dry.stdout)["child_tables"] == {
        "items": {"rows_to_archive": 21, "rows_to_delete": 21},
        "options": {"rows_to_archive": 22, "rows_to_delete": 22}}
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert split_family(db, dest_db) == before
    assert_no_orphans(db, dest_db)
    assert [r[0] for r in family_of(dest_db, "orders_archive")] == listed
    items = [r for r in before["order_items"] if r[1] in listed]
    assert family_of(dest_db, "order_items_archive") == items
    options = sorted(r for r in before["item_options"] if r[0] in {i[0] for i in items})
    assert sorted(family_of(dest_db, "item_options_archive")) == options
    counts = [json.loads(t) for (t,) in db.query(
        "SELECT table_counts FROM batch_processing_logs ORDER BY batch_number")]
    assert sum(c["items"]["archived"] for c in counts) == len(items) == 21
    assert sum(c["options"]["deleted"] for c in counts) == len(options) == 22
    assert "child rows archived items 21, options 22" in result.stdout
    assert not dest_db.table_exists("batch_processing_logs"), "tracking stays with the source"
    again = run_cli(config)
    assert again.returncode == 0 and split_family(db, dest_db) == before


def test_archived_children_on_the_destination_are_twins_or_keep_their_family(db, dest_db, tmp_path):
    config = remote_family_job(db, dest_db, tmp_path, 10, [4, 5, 6, 7])
    copy = ("INSERT INTO `{db}`.order_items_archive VALUES (%s, %s, %s, %s)")
    item = {r[0]: r for r in family_of(db, "order_items")}
    dest_db.execute(copy.format(db=dest_db.name), (12, 5, "sku12", item[12][3] + 1))  # differs: order 5 stays
    dest_db.execute(copy.format(db=dest_db.name), item[13])  # identical: a twin of order 5's
    dest_db.execute(copy.format(db=dest_db.name), item[18])  # identical: order 7's
    dest_db.execute(copy.format(db=dest_db.name), (15, 6, "SKU15", item[15][3]))  # 'SKU15' = 'sku15', not it
    dest_db.execute("INSERT INTO orders_archive VALUES (7, 'c7', 10.50)")  # order 7 itself: a twin
    dry = json.loads(run_cli(config, "--dry-run", "--json").stdout)
    assert (dry["total"]["rows_to_archive"], dry["total"]["conflicts"]) == (1, 2)
    assert dry["child_tables"] == {  # order 4: items 9-11, options of 10; order 7: 19, 20 new, 18 a twin
        "items": {"rows_to_archive": 5, "rows_to_delete": 6},
        "options": {"rows_to_archive": 6, "rows_to_delete": 6}}
    result = run_cli(config)
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert [r[0] for r in family_of(db, "orders")] == [1, 2, 3, 5, 6, 8, 9, 10]
    assert db.scalar("SELECT COUNT(*) FROM order_items WHERE order_id IN (5, 6)") == 6
    assert db.scalar("SELECT COUNT(*) FROM item_options WHERE item_id IN (12, 14, 16)") == 6
    assert db.query("SELECT key_value, detail FROM conflict_logs ORDER BY key_value") == [
        ("5", "`order_items` row (id) = (12) is archived with a different row"),
        ("6", "`order_items` row (id) = (15) is archived with a different row")]
    assert db.query("SELECT rows_archived, duplicates, conflicts FROM process_logs") == [(1, 1, 2)]
    assert db.scalar("SELECT COUNT(*) FROM order_items WHERE order_id IN (4, 7)") == 0
    assert dest_db.scalar("SELECT COUNT(*) FROM order_items_archive WHERE order_id IN (4, 7)") == 6
    dest_db.execute("DELETE FROM order_items_archive WHERE id IN (12, 15)")
    again = run_cli(config)
    assert again.returncode == 0, (again.stdout, again.stderr)
    assert [r[0] for r in family_of(db, "orders")] == [1, 2, 3, 8, 9, 10]
    assert_no_orphans(db, dest_db)


def test_random_kills_into_another_server_never_lose_double_or_orphan_a_row(db, dest_db, tmp_path, spawn_cli):
    listed = list(range(1, 61))
    config = remote_family_job(db, dest_db, tmp_path, 70, listed, archive__batch_size=6,
                               archive__max_batch_rows=20)  # 6 or 8 rows an order: 2 or 3 orders a part
    before = split_family(db, dest_db)
    rng = random.Random(21)
    for _ in range(8):
        proc = spawn_cli(config)
        time.sleep(rng.uniform(0.3, 1.5))  # a kill at a random point of the run, wherever it is
        kill_process_group(proc, signal.SIGKILL)
        assert split_family(db, dest_db, settled=False) == before  # nothing lost, nothing changed
        assert_no_orphans(db, dest_db)
    final = run_cli(config)
    assert final.returncode == 0, (final.stdout, final.stderr)
    assert split_family(db, dest_db) == before
    assert_no_orphans(db, dest_db)
    assert [r[0] for r in family_of(dest_db, "orders_archive")] == listed
    assert_batches_once(db, "orders.csv", 10)


def test_a_kill_between_the_two_commits_leaves_twins_the_rerun_settles(db, dest_db, server, tmp_path,
                                                                       spawn_cli):
    need_socket(server)
    config = remote_family_job(db, dest_db, tmp_path, 10, [3, 4, 5], archive__batch_size=3)
    sources = {t: family_of(db, t) for t in ("orders", "order_items", "item_options")}
    kill_between_the_commits(db, tmp_path, spawn_cli, **dest_keys(dest_db), **ITEMS, **OPTIONS,
                             archive__source_table="orders", archive__archive_table="orders_archive",
                             archive__batch_size=3)
    assert dest_db.count("orders_archive") == 3 and db.count("orders") == 10  # the window was hit
    assert dest_db.count("order_items_archive") == 9 and db.count("order_items") == 30
    rerun = run_cli(config)
    assert rerun.returncode == 0, (rerun.stdout, rerun.stderr)
    assert db.query("SELECT rows_archived, duplicates FROM process_logs ORDER BY id") == [(0, 0), (0, 3)]
    counts = json.loads(db.scalar("SELECT table_counts FROM batch_processing_logs"))
    assert counts["items"] == {"archived": 0, "deleted": 9, "duplicates": 9}
    assert split_family(db, dest_db) == {t: sorted(rows) for t, rows in sources.items()}
    assert_no_orphans(db, dest_db)


def test_a_child_key_equal_to_an_archived_one_only_by_collation_keeps_its_family(db, dest_db, tmp_path):
    config = remote_family_job(db, dest_db, tmp_path, 10, [4, 5])
    dest_db.execute("INSERT INTO item_options_archive VALUES (10, 'COLOR', 'color10')")  # order 4's 'color'
    result = run_cli(config)
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert [r[0] for r in family_of(db, "orders")] == [1, 2, 3, 4, 6, 7, 8, 9, 10]
    detail = ("`item_options` row (item_id, opt) = (10,\"color\") equals an archived row's key under its "
              "collation")
    assert db.query("SELECT key_value, detail FROM conflict_logs") == [("4", detail)]
    assert db.count("order_items") == 27 and dest_db.count("item_options_archive") == 1 + 4  # order 5's


@pytest.mark.parametrize("change, message", [
    ("DROP TABLE item_options_archive",
     "[child options]: table `item_options_archive` does not exist on the destination"),
    ("ALTER TABLE order_items_archive DROP PRIMARY KEY", "`order_items_archive` needs a unique key on (id)"),
    ("ALTER TABLE order_items_archive MODIFY qty BIGINT", "[child items]: "),
    ("ALTER TABLE item_options_archive ENGINE=MyISAM", "`item_options_archive` must be a transactional"),
])
def test_the_preflight_checks_child_archives_on_the_destination(db, dest_db, tmp_path, change, message):
    config = remote_family_job(db, dest_db, tmp_path, 5, [1])
    dest_db.execute(change)
    check = run_cli(config, "--check")
    assert check.returncode == 1 and message in check.stdout, check.stdout
    assert run_cli(config).returncode == 1 and db.count("orders") == 5


def test_a_child_whose_own_key_cannot_be_looked_up_exactly_is_refused_into_another_server(
        db, dest_db, tmp_path):
    config = remote_family_job(db, dest_db, tmp_path, 5, [1])
    for side in (db, dest_db):
        side.execute("DROP TABLE IF EXISTS item_options" if side is db else "DROP TABLE item_options_archive")
        side.execute(f"CREATE TABLE item_options{'' if side is db else '_archive'} (code DECIMAL(8,2) "
                     "PRIMARY KEY, item_id INT NOT NULL, KEY (item_id)"
                     + (", FOREIGN KEY (item_id) REFERENCES order_items (id))" if side is db else ")"))
    check = run_cli(config, "--check")
    assert check.returncode == 1, check.stdout
    assert ("[child options]: its key (code) cannot be looked up exactly on the destination: key column "
            "type decimal(8,2) is not supported") in check.stdout, check.stdout


# --------------------------------------------------------------------------- red team: the quick path

def quick_job_behind(db: ScratchDatabase, tmp_path: Path, spawn_cli: Any, hold: list[str],
                     then: list[str], **config: Any) -> tuple[Path, Any, Any]:
    """Orders 1..12, 1..6 listed in batches of 3: another session runs `hold` (its locks stop the first
    quick batch), the run starts and waits for them, then the session runs `then` (uncommitted)."""
    path = family_job(db, tmp_path, 12, list(range(1, 7)), archive__batch_size=3, **config)
    holder = db.connect()
    holder.autocommit = False
    cursor = holder.cursor()
    for sql in hold:
        cursor.execute(sql)
    proc = spawn_cli(path)
    wait_for_a_lock_wait(db, "the quick batch to wait for the held rows", lambda: proc.poll() is not None)
    assert proc.poll() is None, proc.read_stdout() + proc.read_stderr()
    for sql in then:
        cursor.execute(sql)
    return path, holder, proc


def family_snapshot(db: ScratchDatabase) -> dict[str, list[tuple[Any, ...]]]:
    """whole_family as one consistent read: a batch the run commits meanwhile is in it or not, whole."""
    conn = db.connect()
    try:
        cursor = conn.cursor()
        cursor.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        found = {}
        for table in ("orders", "order_items", "item_options"):
            rows = []
            for name in (table, f"{table}_archive"):
                cursor.execute(f"SELECT * FROM `{name}`")
                rows += cursor.fetchall()
            found[table] = sorted(rows)
        conn.rollback()
        return found
    finally:
        conn.close()


def listed_families_moved_exactly(db: ScratchDatabase, before: dict[str, list[tuple[Any, ...]]],
                                  listed: set[int]) -> None:
    """Every row is in exactly one table; the listed orders' families (as they are now) are archived,
    nothing else is."""
    assert whole_family(db) == before
    items = [r for r in before["order_items"] if r[1] in listed]
    item_ids = {r[0] for r in items}
    assert family_of(db, "orders_archive") == [r for r in before["orders"] if r[0] in listed]
    assert family_of(db, "order_items_archive") == items
    assert family_of(db, "item_options_archive") == [r for r in before["item_options"] if r[0] in item_ids]
    for table in ("orders", "order_items", "item_options"):
        assert not set(family_of(db, table)) & set(family_of(db, f"{table}_archive")), table


@pytest.mark.parametrize("commit", [True, False])
def test_a_quick_batch_behind_a_writer_that_adds_moves_and_deletes_child_rows_moves_the_family_it_finds(
        db, tmp_path, spawn_cli, commit):
    # Attack on the quick path's claim that INSERT ... SELECT's shared locks make each DELETE remove
    # exactly what was copied: while the items copy waits for item 4 (order 2), the other session adds
    # an item to order 2, moves item 30 (with its options) from order 11 into it and item 5 out of
    # it, deletes and adds options of item 4; then commits or rolls back
    _, holder, proc = quick_job_behind(db, tmp_path, spawn_cli, [
        "UPDATE order_items SET qty = qty + 100 WHERE id = 4"], [
        "INSERT INTO order_items VALUES (1000, 2, 'new', 1)",
        "UPDATE order_items SET order_id = 2 WHERE id = 30",
        "UPDATE order_items SET order_id = 11 WHERE id = 5",
        "DELETE FROM item_options WHERE item_id = 4 AND opt = 'size'",
        "INSERT INTO item_options VALUES (4, 'new', 'x'), (1000, 'color', 'y')"])
    release_and_check(db, holder, proc, commit)
    if commit:
        assert (1000, 2, "new", 1) in family_of(db, "order_items_archive")
        assert db.scalar("SELECT order_id FROM order_items WHERE id = 5") == 11


def release_and_check(db: ScratchDatabase, holder: Any, proc: Any, commit: bool = True) -> None:
    """The other session commits (or rolls back) and lets go; the run then ends well and has moved
    exactly the listed orders' families as they are now."""
    if commit:
        holder.commit()
    else:
        holder.rollback()
    before = family_snapshot(db)
    holder.close()
    assert proc.wait(timeout=120) == 0, proc.read_stdout() + proc.read_stderr()
    listed_families_moved_exactly(db, before, set(range(1, 7)))


def test_a_quick_batch_behind_a_locked_parent_whose_session_adds_children_moves_them_too(
        db, tmp_path, spawn_cli):
    # The parents' copy waits for order 2, whose session then gives it an item with two options
    _, holder, proc = quick_job_behind(db, tmp_path, spawn_cli, [
        "UPDATE orders SET total = 99 WHERE id = 2"], [
        "INSERT INTO order_items VALUES (1000, 2, 'new', 1)",
        "INSERT INTO item_options VALUES (1000, 'a', 'x'), (1000, 'b', 'y')"])
    release_and_check(db, holder, proc)
    assert db.scalar("SELECT COUNT(*) FROM item_options_archive WHERE item_id = 1000") == 2


def test_a_quick_batch_waiting_for_a_grandchild_while_its_session_moves_an_option_in_moves_exactly(
        db, tmp_path, spawn_cli):
    # The options copy (the last INSERT) waits for option (4, color); the other session then moves
    # option (32, size) of order 11 under item 4 and changes the key of option (4, size)
    _, holder, proc = quick_job_behind(db, tmp_path, spawn_cli, [
        "UPDATE item_options SET val = 'held' WHERE item_id = 4 AND opt = 'color'"], [
        "UPDATE item_options SET item_id = 4, opt = 'moved' WHERE item_id = 32 AND opt = 'size'",
        "UPDATE item_options SET opt = 'zz' WHERE item_id = 4 AND opt = 'size'"])
    release_and_check(db, holder, proc)


def test_a_kill_9_while_a_quick_batch_waits_leaves_every_row_once_and_the_rerun_moves_exactly(
        db, tmp_path, spawn_cli):
    config, holder, proc = quick_job_behind(db, tmp_path, spawn_cli, [
        "UPDATE item_options SET val = 'held' WHERE item_id = 10 AND opt = 'size'"], [])
    before = family_snapshot(db)
    kill_process_group(proc, signal.SIGKILL)
    holder.rollback()
    holder.close()
    assert whole_family(db) == before
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    listed_families_moved_exactly(db, before, set(range(1, 7)))


def test_a_child_added_while_a_quick_batch_at_max_batch_rows_waits_sends_it_careful_and_in_parts(
        db, tmp_path, spawn_cli):
    # Orders 1, 2, 3 move 8 + 6 + 8 = 22 rows: exactly max_batch_rows by the lock-free count, so the
    # batch goes quickly; while it waits for item 4, order 3 gets a 23rd row: the copies count 23,
    # the quick batch is rolled back, and the careful path moves orders 1 and 2, then order 3
    config = family_job(db, tmp_path, 12, [1, 2, 3, 4, 5, 6], archive__batch_size=3,
                        archive__max_batch_rows=22)
    holder = db.connect()
    holder.autocommit = False
    cursor = holder.cursor()
    cursor.execute("UPDATE order_items SET qty = qty + 100 WHERE id = 4")
    proc = spawn_cli(config)
    wait_for_a_lock_wait(db, "the quick batch to wait for item 4", lambda: proc.poll() is not None)
    assert proc.poll() is None, proc.read_stdout() + proc.read_stderr()
    cursor.execute("INSERT INTO order_items VALUES (1000, 3, 'new', 1)")
    holder.commit()
    holder.close()
    before = family_snapshot(db)
    assert proc.wait(timeout=120) == 0, proc.read_stdout() + proc.read_stderr()
    listed_families_moved_exactly(db, before, set(range(1, 7)))
    assert "PART: Batch 1 - 2 of 3 keys moved" in proc.read_stdout()


def test_random_kills_during_quick_family_batches_never_lose_double_or_orphan_a_row(db, tmp_path, spawn_cli):
    listed = list(range(1, 121))
    config = family_job(db, tmp_path, 130, listed, archive__batch_size=4)
    before = whole_family(db)
    def batches() -> int:
        return db.scalar("SELECT COUNT(*) FROM batch_processing_logs") if db.table_exists(
            "batch_processing_logs") else 0

    for _ in range(6):  # each kill as soon as the run committed a batch more: wherever its next one is
        done = batches()
        proc = spawn_cli(config)
        wait_until(lambda: batches() > done or proc.poll() is not None, timeout=60)  # noqa: B023
        kill_process_group(proc, signal.SIGKILL)
        assert family_snapshot(db) == before
        assert db.scalar("SELECT COUNT(*) FROM order_items i LEFT JOIN orders o ON o.id = i.order_id "
                         "WHERE o.id IS NULL") == 0
        assert db.scalar("SELECT COUNT(*) FROM order_items_archive i LEFT JOIN orders_archive o "
                         "ON o.id = i.order_id WHERE o.id IS NULL") == 0
    final = run_cli(config)
    assert final.returncode == 0, (final.stdout, final.stderr)
    listed_families_moved_exactly(db, before, set(listed))
    assert_batches_once(db, "orders.csv", 30)


def test_a_quick_batch_moves_children_whose_foreign_key_sets_null_before_their_parent_goes(db, tmp_path):
    # ON DELETE SET NULL would alter an item left behind: each child goes first, bottom up
    db.execute(FAMILY[0])
    db.execute(FAMILY[1])
    for name in ("order_items", "order_items_archive"):
        fk = (", CONSTRAINT fk_n FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE SET NULL"
              if name == "order_items" else "")
        db.execute(f"CREATE TABLE {name} (id INT PRIMARY KEY, order_id INT NULL, sku VARCHAR(20), "
                   f"KEY (order_id){fk})")
    db.execute("INSERT INTO orders VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 3)")
    db.execute("INSERT INTO order_items VALUES (1, 1, 'x'), (2, 2, 'y'), (3, 2, 'z'), (4, NULL, 'w')")
    config = write_config(tmp_path, db, archive__source_table="orders",
                          archive__archive_table="orders_archive", **ITEMS)
    write_csv(tmp_path / "csv" / "orders.csv", [2, 3, 4])
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert db.query("SELECT * FROM order_items_archive ORDER BY id") == [(2, 2, "y"), (3, 2, "z")]
    assert db.query("SELECT * FROM order_items ORDER BY id") == [(1, 1, "x"), (4, None, "w")]
    assert db.query("SELECT rows_archived, not_found FROM process_logs") == [(2, 1)]


def test_a_quick_batch_behind_a_writer_that_replaces_a_listed_order_moves_the_new_family(
        db, tmp_path, spawn_cli):
    # The parents' copy waits for order 2; the other session deletes order 3 with its family and
    # makes a new order 3 with one new item (a key reused): the new family moves, the old one is gone
    _, holder, proc = quick_job_behind(db, tmp_path, spawn_cli, [
        "UPDATE orders SET total = 99 WHERE id = 2"], [
        "DELETE FROM item_options WHERE item_id IN (6, 8)", "DELETE FROM order_items WHERE order_id = 3",
        "DELETE FROM orders WHERE id = 3", "INSERT INTO orders VALUES (3, 'new', 0)",
        "INSERT INTO order_items VALUES (2000, 3, 'n', 0)"])
    release_and_check(db, holder, proc)
    assert db.query("SELECT id FROM order_items_archive WHERE order_id = 3") == [(2000,)]


def test_a_quick_batch_without_foreign_keys_leaves_orphans_and_moves_duplicated_keys_once(db, tmp_path):
    # without_foreign_key = yes: rows whose parent is not listed, not in the source (an orphan of an
    # order archived before) or listed twice in the file
    db.execute(FAMILY[0])
    db.execute(FAMILY[1])
    db.execute(FAMILY[3].replace("order_items_archive", "order_items"))
    db.execute(FAMILY[3])
    db.execute("INSERT INTO orders VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 3)")
    db.execute("INSERT INTO orders_archive VALUES (9, 'z', 9)")
    db.execute("INSERT INTO order_items VALUES (1, 1, 'x', 1), (2, 2, 'y', 1), (3, 9, 'orphan', 1), "
               "(4, 7, 'orphan', 1), (5, 2, 'y2', 1)")
    config = write_config(tmp_path, db, archive__source_table="orders",
                          archive__archive_table="orders_archive", archive__batch_size=5, **ITEMS,
                          **{"child items__without_foreign_key": "yes"})
    write_csv(tmp_path / "csv" / "orders.csv", [2, 9, 2, 7, 3])
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert db.query("SELECT id FROM orders_archive ORDER BY id") == [(2,), (3,), (9,)]
    assert db.query("SELECT id FROM order_items_archive ORDER BY id") == [(2,), (5,)]
    assert db.query("SELECT id FROM order_items ORDER BY id") == [(1,), (3,), (4,)]
    assert db.query("SELECT rows_archived, not_found FROM process_logs") == [(2, 2)]
