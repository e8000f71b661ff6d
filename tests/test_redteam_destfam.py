"""Red team on child tables into another server ([child NAME] with [destination]).

Each test is an attack a hostile (or merely unlucky) user can mount on a family moved into
another server; each asserts what the README promises: nothing lost, no row in both places once
a run finished, no child orphaned or archived without its parent, counts that add up, and a clear
error instead of a crash.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mysql.connector
import pytest

from checks import completed_batches
from helpers import ScratchDatabase, run_cli, wait_until, write_config, write_csv
from proxy import CuttingProxy, need_socket
from test_child_tables import (
    DEST_FAMILY,
    FAMILY,
    ITEMS,
    OPTIONS,
    assert_no_orphans,
    family_of,
    remote_family_job,
    split_family,
)
from test_destination import dest_keys, kill_between_the_commits


def dry_run(config: Path) -> dict[str, Any]:
    """--dry-run --json of a config, which must succeed."""
    result = run_cli(config, "--dry-run", "--json")
    assert result.returncode == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)


def status(config: Path) -> dict[str, Any]:
    """--status --json of a config."""
    result = run_cli(config, "--status", "--json")
    assert result.returncode in (0, 3), (result.stdout, result.stderr)
    return json.loads(result.stdout)


def family_config(tmp_path: Path, db: ScratchDatabase, dest: ScratchDatabase, **config: Any) -> Path:
    """remote_family_job's config again, with `config` (section__key) on top."""
    keys = {**dest_keys(dest), **config}
    return write_config(tmp_path, db, archive__source_table="orders", archive__archive_table="orders_archive",
                        **ITEMS, **OPTIONS, **keys)


def table_counts(db: ScratchDatabase) -> dict[str, dict[str, int]]:
    """batch_processing_logs.table_counts summed over every batch of every run."""
    totals: dict[str, dict[str, int]] = {}
    for (text,) in db.query("SELECT table_counts FROM batch_processing_logs WHERE table_counts IS NOT NULL"):
        for name, values in json.loads(text).items():
            for what, n in values.items():
                totals.setdefault(name, {}).setdefault(what, 0)
                totals[name][what] += n
    return totals


# --------------------------------------------------------------------------- child keys

def datetime_child_job(db: ScratchDatabase, dest: ScratchDatabase, tmp_path: Path, table: str,
                       rows: str) -> Path:
    """Orders 1-3 and a child `table` keyed by a DATETIME (`rows` its VALUES, inserted with sql_mode
    '', so zero dates go in) whose archive is on the destination; orders 1 and 2 listed."""
    db.execute(FAMILY[0])
    db.execute(f"CREATE TABLE {table} (at DATETIME NOT NULL PRIMARY KEY, order_id INT NOT NULL, note "
               "VARCHAR(10), KEY (order_id), FOREIGN KEY (order_id) REFERENCES orders (id))")
    dest.execute(DEST_FAMILY[0])
    dest.execute(f"CREATE TABLE {table}_archive (at DATETIME NOT NULL PRIMARY KEY, order_id INT NOT NULL, "
                 "note VARCHAR(10), KEY (order_id))")
    db.execute("INSERT INTO orders VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 3)")
    db.execute(f"SET STATEMENT sql_mode = '' FOR INSERT INTO {table} VALUES {rows}")
    child = {"child ch__source_table": table, "child ch__archive_table": f"{table}_archive",
             "child ch__parent_columns": "order_id"}
    config = write_config(tmp_path, db, archive__source_table="orders",
                          archive__archive_table="orders_archive", **dest_keys(dest), **child)
    write_csv(tmp_path / "csv" / "orders.csv", [1, 2])
    return config


def test_a_child_with_a_zero_datetime_key_is_refused_clearly_not_a_crash(db, dest_db, tmp_path):
    # Attack: a legacy child table whose DATETIME key holds '0000-00-00 00:00:00' (MariaDB's default
    # sql_mode allows it). FamilyElsewhere decodes every child key read from the source in Python to
    # look it up on the destination; year 0 is no Python datetime.
    config = datetime_child_job(db, dest_db, tmp_path, "shipments",
                                "('0000-00-00 00:00:00', 2, 'zero'), ('2024-01-01 10:00:00', 1, 'one')")
    dry = run_cli(config, "--dry-run")
    said = dry.stdout + dry.stderr
    assert "internal error" not in said and "0000-00-00" in said, said
    result = run_cli(config)
    assert "Traceback" not in result.stderr, result.stderr[-1500:]
    assert "internal error" not in result.stderr, result.stderr
    assert result.returncode in (0, 1), (result.stdout, result.stderr)
    here, there = family_of(db, "shipments"), family_of(dest_db, "shipments_archive")
    assert len(here) + len(there) == 2 and not set(here) & set(there)
    if result.returncode == 1:
        assert "0000-00-00" in result.stdout + result.stderr, (result.stdout, result.stderr)


# --------------------------------------------------------------------------- after a kill

def test_a_child_moved_to_another_parent_after_a_kill_is_not_left_in_both_places(
        db, dest_db, server, tmp_path, spawn_cli):
    # Attack: a kill between the destination's commit and the source's leaves order 3 and its items
    # 6, 7, 8 (with item 6's and 8's options) on both sides. Before the rerun the application moves
    # item 8 to order 9, which is not listed. The rerun finds order 3 an identical twin, reads its
    # children as they are now (6 and 7), and deletes them: item 8 is in the source (order 9) and
    # in the archive (order 3), and the run says all is well.
    need_socket(server)
    config = remote_family_job(db, dest_db, tmp_path, 10, [3], archive__batch_size=3)
    kill_between_the_commits(db, tmp_path, spawn_cli, **dest_keys(dest_db), **ITEMS, **OPTIONS,
                             archive__source_table="orders", archive__archive_table="orders_archive",
                             archive__batch_size=3)
    assert dest_db.count("order_items_archive") == 3 and db.count("order_items") == 30  # the window was hit
    db.execute("UPDATE order_items SET order_id = 9 WHERE id = 8")
    rerun = run_cli(config)
    archived = {r[0] for r in family_of(dest_db, "order_items_archive")}
    both = sorted(archived & {r[0] for r in family_of(db, "order_items")})
    assert rerun.returncode != 0 or not both, (
        f"exit {rerun.returncode} with items {both} in the source and the archive: {rerun.stdout[-500:]}")
    # Order 3's family stays as a conflict, both versions kept, the stale copy named
    assert rerun.returncode == 3, (rerun.stdout, rerun.stderr)
    stale = ("`order_items_archive` on the destination holds row (id) = (8) under it, which `order_items` "
             "no longer has under it")
    assert db.query("SELECT key_value, detail FROM conflict_logs") == [("3", stale)]


# --------------------------------------------------------------------------- counts

def test_the_child_rows_a_recheck_moves_are_in_the_status_as_in_the_summary(db, dest_db, tmp_path):
    # Attack: two orders are conflicts (a differing archived item); a human fixes the destination; the
    # next run's recheck moves both families. Its SUMMARY counts their items; --status (which reads
    # batch_processing_logs.table_counts) must say the same of the run.
    config = remote_family_job(db, dest_db, tmp_path, 10, [4, 5, 6])
    item = {r[0]: r for r in family_of(db, "order_items")}
    for key, order in ((12, 5), (15, 6)):  # each differs from its source row
        dest_db.execute("INSERT INTO order_items_archive VALUES (%s, %s, %s, %s)",
                        (key, order, f"sku{key}", item[key][3] + 1))
    first = run_cli(config)
    assert first.returncode == 3, (first.stdout, first.stderr)
    dest_db.execute("DELETE FROM order_items_archive WHERE id IN (12, 15)")
    predicted = dry_run(config)
    again = run_cli(config)
    assert again.returncode == 0, (again.stdout, again.stderr)
    assert_no_orphans(db, dest_db)
    assert "child rows archived items 6, options 6" in again.stdout, again.stdout
    assert predicted["child_tables"]["items"] == {"rows_to_archive": 6, "rows_to_delete": 6}
    shown = status(config)
    assert shown["rows_archived"] == 2, shown
    assert shown["child_tables"].get("items", {}).get("archived") == 6, shown["child_tables"]


# --------------------------------------------------------------------------- a deeper family

DEEP_SOURCE = (
    ("CREATE TABLE option_notes (id INT PRIMARY KEY, item_id INT NOT NULL, opt VARCHAR(10) NOT NULL, "
     "note VARCHAR(40), at DATETIME(6) NOT NULL, loud VARCHAR(40) AS (UPPER(note)) VIRTUAL, "
     "len INT AS (CHAR_LENGTH(note)) STORED, KEY (item_id, opt), "
     "FOREIGN KEY (item_id, opt) REFERENCES item_options (item_id, opt))"),
)
DEEP_DEST = (
    ("CREATE TABLE option_notes_archive (id INT PRIMARY KEY, item_id INT NOT NULL, opt VARCHAR(10) NOT NULL, "
     "note VARCHAR(40), at DATETIME(6) NOT NULL, loud VARCHAR(40) AS (UPPER(note)) VIRTUAL, "
     "len INT AS (CHAR_LENGTH(note)) STORED, KEY (item_id, opt))"),
)
NOTES = {"child notes__source_table": "option_notes", "child notes__archive_table": "option_notes_archive",
         "child notes__parent_columns": "item_id, opt", "child notes__parent": "options"}


def deep_family_job(db: ScratchDatabase, dest: ScratchDatabase, tmp_path: Path, listed: list[int],
                    **config: Any) -> Path:
    """remote_family_job's three levels and a fourth: notes on options, with generated columns."""
    path = remote_family_job(db, dest, tmp_path, 20, listed, **NOTES, **config)
    db.execute(DEEP_SOURCE[0])
    dest.execute(DEEP_DEST[0])
    db.execute("INSERT INTO option_notes (id, item_id, opt, note, at) SELECT ROW_NUMBER() OVER (ORDER BY "
               "item_id, opt, seq), item_id, opt, CONCAT('n', item_id, opt, seq), "
               "'2024-03-31 01:59:59.123456' + INTERVAL seq SECOND FROM item_options JOIN seq_1_to_2")
    return path


def test_a_four_level_family_with_generated_columns_moves_as_the_dry_run_says(db, dest_db, tmp_path):
    listed = [2, 3, 5, 8, 13]
    config = deep_family_job(db, dest_db, tmp_path, listed, archive__batch_size=2, archive__max_batch_rows=30)
    notes_before = sorted(family_of(db, "option_notes"))
    predicted = dry_run(config)
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert_no_orphans(db, dest_db)
    moved_options = {(o[0], o[1]) for o in family_of(dest_db, "item_options_archive")}
    archived_notes = family_of(dest_db, "option_notes_archive")
    assert archived_notes and all((n[1], n[2]) in moved_options for n in archived_notes)
    assert all((n[1], n[2]) not in moved_options for n in family_of(db, "option_notes"))
    assert sorted(family_of(db, "option_notes") + archived_notes) == notes_before
    counts = table_counts(db)
    for name, table in (("items", "order_items_archive"), ("options", "item_options_archive"),
                        ("notes", "option_notes_archive")):
        assert predicted["child_tables"][name]["rows_to_archive"] == dest_db.count(table), name
        assert counts[name]["archived"] == counts[name]["deleted"] == dest_db.count(table), (name, counts)
    assert predicted["total"]["rows_to_archive"] == len(listed) == dest_db.count("orders_archive")


def test_a_guard_holding_back_some_parents_keeps_their_families_and_counts_them(db, dest_db, tmp_path):
    # orders 1..12 with total 1.5 * id: the guard passes those under 10, so 7, 8 and 9 of the listed
    # stay with all their rows
    listed = [2, 4, 5, 7, 8, 9]
    config = remote_family_job(db, dest_db, tmp_path, 12, listed, archive__batch_size=4,
                               controls__guard="total < 10")
    before = split_family(db, dest_db)
    predicted = dry_run(config)
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert split_family(db, dest_db) == before
    assert_no_orphans(db, dest_db)
    assert [r[0] for r in family_of(dest_db, "orders_archive")] == [2, 4, 5]
    assert db.count("order_items", "order_id IN (7, 8, 9)") == 9
    counts = table_counts(db)
    assert counts["items"]["archived"] == dest_db.count("order_items_archive") == 9
    assert predicted["child_tables"]["items"] == {"rows_to_archive": 9, "rows_to_delete": 9}
    assert predicted["total"]["skipped_by_guard"] == 3, predicted["total"]
    assert db.query("SELECT rows_archived, skipped_by_guard FROM process_logs") == [(3, 3)]


# --------------------------------------------------------------------------- text child keys

TAGS = {"child tags__source_table": "tags", "child tags__archive_table": "tags_archive",
        "child tags__parent_columns": "order_id"}
TAGS_DDL = ("CREATE TABLE {name} (order_id INT NOT NULL, tag VARCHAR(10) CHARACTER SET latin1 COLLATE "
            "latin1_swedish_ci NOT NULL, label VARCHAR(10) COLLATE utf8mb4_general_ci NOT NULL, n INT, "
            "PRIMARY KEY (order_id, tag, label){fk})")


def test_latin1_and_padded_case_folded_child_keys_are_matched_by_their_bytes(db, dest_db, tmp_path):
    # Attack: a child keyed by (INT, latin1 text, utf8mb4 text) with accents, trailing spaces and
    # case differences, partly archived already: twins must be found by the bytes of every part
    # (decoded from what the source returns), keys equal only by collation must be conflicts.
    db.execute(FAMILY[0])
    db.execute(TAGS_DDL.format(name="tags", fk=", FOREIGN KEY (order_id) REFERENCES orders (id)"))
    dest_db.execute("CREATE TABLE orders_archive (id INT PRIMARY KEY, customer VARCHAR(20), "
                    "total DECIMAL(10,2))")
    dest_db.execute(TAGS_DDL.format(name="tags_archive", fk=""))
    db.execute("INSERT INTO orders VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 3), (4, 'd', 4), (5, 'e', 5)")
    rows = [(1, "é", "x ", 1), (1, "É2", "y", 2), (2, "café", "ab ", 3), (2, "\u20ac", "Ab", 4),
            (3, "zz", "Q", 5), (4, "a", "b ", 6), (5, "ÿ", "\u00df", 7)]
    db.executemany("INSERT INTO tags VALUES (%s, %s, %s, %s)", rows)
    dest_db.executemany("INSERT INTO tags_archive VALUES (%s, %s, %s, %s)", [
        (2, "café", "ab ", 3),  # a twin of order 2's
        (3, "ZZ", "q", 5),  # equal to order 3's only by collation: order 3 is a conflict
        (4, "a", "b", 6)])  # 'b' = 'b ' under PAD SPACE: order 4 is a conflict
    config = write_config(tmp_path, db, archive__source_table="orders",
                          archive__archive_table="orders_archive", **dest_keys(dest_db), **TAGS)
    write_csv(tmp_path / "csv" / "orders.csv", [1, 2, 3, 4, 5])
    predicted = dry_run(config)
    result = run_cli(config)
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert [r[0] for r in family_of(db, "orders")] == [3, 4]
    stayed = sorted(db.query("SELECT order_id, tag, label, n FROM tags"))
    assert stayed == [(3, "zz", "Q", 5), (4, "a", "b ", 6)]
    archived = sorted(dest_db.query("SELECT order_id, tag, label, n FROM tags_archive"))
    assert archived == sorted([r for r in rows if r[0] in (1, 2, 5)] + [(3, "ZZ", "q", 5), (4, "a", "b", 6)])
    assert [k for (k,) in db.query("SELECT key_value FROM conflict_logs ORDER BY key_value")] == ["3", "4"]
    assert predicted["child_tables"]["tags"] == {"rows_to_archive": 4, "rows_to_delete": 5}
    assert table_counts(db)["tags"] == {"archived": 4, "deleted": 5, "duplicates": 1}


# --------------------------------------------------------------------------- faults

def test_a_kill_between_the_commits_of_a_part_resumes_with_counts_that_add_up(
        db, dest_db, server, tmp_path, spawn_cli):
    # Attack: max_batch_rows cuts the batch into parts [1, 2], [3, 4], [5, 6] (14 rows each); the
    # first part's destination commit happens, its source commit never does (kill -9). The rerun
    # goes on inside the batch: every table's rows must be counted once, as archived or as twins.
    need_socket(server)
    settings = {"archive__batch_size": 6, "archive__max_batch_rows": 20}
    config = remote_family_job(db, dest_db, tmp_path, 10, [1, 2, 3, 4, 5, 6], **settings)
    before = split_family(db, dest_db)
    kill_between_the_commits(db, tmp_path, spawn_cli, **dest_keys(dest_db), **ITEMS, **OPTIONS,
                             archive__source_table="orders", archive__archive_table="orders_archive",
                             **settings)
    assert dest_db.count("orders_archive") == 2 and db.count("orders") == 10  # the window was hit
    config = family_config(tmp_path, db, dest_db, **settings)  # the kill's config went through its proxy
    predicted = dry_run(config)
    rerun = run_cli(config)
    assert rerun.returncode == 0, (rerun.stdout, rerun.stderr)
    assert split_family(db, dest_db) == before
    assert_no_orphans(db, dest_db)
    assert dest_db.count("orders_archive") == 6 and dest_db.count("order_items_archive") == 18
    counts = table_counts(db)
    for name, table in (("items", "order_items_archive"), ("options", "item_options_archive")):
        assert counts[name]["deleted"] == dest_db.count(table), (name, counts)
        assert counts[name]["archived"] + counts[name]["duplicates"] == dest_db.count(table), (name, counts)
        assert predicted["child_tables"][name]["rows_to_delete"] == dest_db.count(table), name
    assert db.query("SELECT SUM(rows_archived), SUM(duplicates), SUM(rows_deleted) FROM process_logs") == [
        (4, 2, 6)]
    shown = status(config)["child_tables"]
    assert shown["items"] == {"archived": 12, "deleted": 18, "duplicates": 6}, shown


def test_a_lost_commit_answer_on_the_destination_settles_every_table(db, dest_db, dest_server, tmp_path):
    # Attack: the destination commits batch 1's family, and the answer never comes back (the link
    # dies). The source must roll back, the retry find every table's rows as twins, and the run end
    # with each row in exactly one place and counted once.
    need_socket(dest_server)
    remote_family_job(db, dest_db, tmp_path, 10, [1, 2, 3, 4, 5, 6])
    before = split_family(db, dest_db)
    proxy = CuttingProxy(tmp_path / "dest.sock", dest_server.client_socket,
                         lambda data: b"\x03commit" in data.lower(), delay=0.2, forward=True)
    try:
        result = run_cli(family_config(tmp_path, db, dest_db, archive__batch_size=3,
                                       destination__unix_socket=proxy.path))
    finally:
        proxy.close()
    assert proxy.cuts == 1
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "RETRY: Batch 1" in result.stdout, result.stdout  # the cut hit the batch's commit
    assert split_family(db, dest_db) == before
    assert_no_orphans(db, dest_db)
    assert dest_db.count("orders_archive") == 6
    counts = table_counts(db)
    assert counts["items"]["deleted"] == 18 == counts["items"]["archived"] + counts["items"]["duplicates"]
    assert counts["options"]["deleted"] == dest_db.count("item_options_archive")
    assert db.scalar("SELECT SUM(rows_deleted) FROM process_logs") == 6


def test_child_archives_with_foreign_keys_to_the_parent_archive_on_the_destination(db, dest_db, tmp_path):
    # Attack: the destination's archive tables reference each other by foreign keys; a twin child
    # already there forces the step-by-step path (1062), whose inserts must still go top down.
    config = remote_family_job(db, dest_db, tmp_path, 10, [2, 3, 4, 5])
    dest_db.execute("ALTER TABLE order_items_archive ADD FOREIGN KEY (order_id) REFERENCES "
                    "orders_archive (id)")
    dest_db.execute("ALTER TABLE item_options_archive ADD FOREIGN KEY (item_id) REFERENCES "
                    "order_items_archive (id)")
    order = db.query("SELECT * FROM orders WHERE id = 3")[0]
    dest_db.execute("INSERT INTO orders_archive VALUES (%s, %s, %s)", order)
    dest_db.execute("INSERT INTO order_items_archive SELECT * FROM (SELECT %s a, %s b, %s c, %s d) t",
                    db.query("SELECT * FROM order_items WHERE id = 7")[0])  # order 3's, identical
    before = split_family(db, dest_db, settled=False)
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert split_family(db, dest_db) == before
    assert_no_orphans(db, dest_db)
    assert [r[0] for r in family_of(dest_db, "orders_archive")] == [2, 3, 4, 5]


def test_a_datetime_child_key_before_the_year_1000_finds_its_archived_twin(db, dest_db, tmp_path):
    # Attack: '0001-01-01 00:00:00' is a common "no date" sentinel (.NET's DateTime.MinValue). A
    # child keyed by it whose identical copy is archived already (a kill between the commits leaves
    # exactly that) sends the batch down the step-by-step path, which maps what the destination
    # returns back to the keys by their bytes: Python's strftime writes the year 1 as '1', the
    # server as '0001'.
    config = datetime_child_job(db, dest_db, tmp_path, "events", "('0001-01-01 00:00:00', 1, 'never'), "
                                "('0999-12-31 23:59:59', 2, 'old'), ('2024-01-01 10:00:00', 2, 'new')")
    dest_db.execute("INSERT INTO events_archive VALUES ('0001-01-01 00:00:00', 1, 'never')")  # a twin
    predicted = dry_run(config)
    assert predicted["child_tables"]["ch"] == {"rows_to_archive": 2, "rows_to_delete": 3}
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert db.count("events") == 0 and dest_db.count("events_archive") == 3
    assert [r[0] for r in family_of(dest_db, "orders_archive")] == [1, 2]
    assert table_counts(db)["ch"] == {"archived": 2, "deleted": 3, "duplicates": 1}


# --------------------------------------------------------------------------- an application at work

def write_items(db: ScratchDatabase, first_id: int, orders: list[int], running: Callable[[], bool],
                written: list[tuple[Any, ...]]) -> None:
    """An application thread: an item and its option at a time for the orders, until not running;
    each family it committed goes into `written` as (item, order), a refused one as ("refused", errno)."""
    conn = db.connect()
    conn.autocommit = False
    cursor = conn.cursor()
    key = first_id
    try:
        while running() and key < first_id + 3 * 150:  # about 6 more rows an order at most
            order = orders[key % len(orders)]
            try:
                cursor.execute("INSERT INTO order_items VALUES (%s, %s, %s, %s)",
                               (key, order, f"app{key}", 1))
                cursor.execute("INSERT INTO item_options VALUES (%s, 'app', %s)", (key, f"v{key}"))
                conn.commit()
                written.append((key, order))
            except mysql.connector.Error as exc:
                conn.rollback()
                written.append(("refused", exc.errno))
            key += 3
    finally:
        conn.close()


def test_an_application_adding_child_rows_during_the_run_never_orphans_or_loses_one(
        db, dest_db, tmp_path, spawn_cli):
    # Attack: three application threads keep adding items (each with an option) to listed and
    # unlisted orders while the run moves the listed ones. Every item committed must end up exactly
    # once, with its order: in the source with an unlisted order, in the archive with a listed one.
    listed = list(range(1, 61))
    config = remote_family_job(db, dest_db, tmp_path, 80, listed, archive__batch_size=4,
                               archive__max_batch_rows=40, controls__sleep_seconds=0.05)
    proc = spawn_cli(config)
    wait_until(lambda: completed_batches(db) >= 1 or proc.poll() is not None, timeout=60)
    written: list[tuple[Any, ...]] = []
    running = lambda: proc.poll() is None  # noqa: E731
    threads = [threading.Thread(target=write_items, args=(db, 1000 + i, list(range(1, 81)), running, written))
               for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert proc.wait(timeout=60) == 0, proc.read_stderr()
    refused = {errno for what, errno in written if what == "refused"}
    assert refused <= {1452, 1205, 1213}, refused  # an order archived meanwhile, or a lock wait
    written = [(key, order) for key, order in written if key != "refused"]
    assert any(order in listed for _, order in written), "no application write overlapped the run"
    assert_no_orphans(db, dest_db)
    here = {r[0]: r for r in family_of(db, "order_items")}
    there = {r[0]: r for r in family_of(dest_db, "order_items_archive")}
    assert not set(here) & set(there)
    for key, order in written:
        place = there if order in listed else here
        assert key in place and place[key][1] == order, (key, order, order in listed)
    assert [r[0] for r in family_of(dest_db, "orders_archive")] == listed
    assert table_counts(db)["items"]["deleted"] == len(there)


@pytest.mark.parametrize("change", [
    "ALTER TABLE item_options_archive MODIFY val VARCHAR(7)",  # later copies would be cut short
    "ALTER TABLE order_items_archive ADD COLUMN note VARCHAR(10) NULL",
])
def test_a_child_archive_altered_on_the_destination_mid_run_loses_nothing(
        db, dest_db, tmp_path, spawn_cli, change):
    # Attack: a DBA alters a child's archive table on the destination while the run goes on.
    listed = list(range(1, 41))
    config = remote_family_job(db, dest_db, tmp_path, 50, listed, archive__batch_size=2,
                               controls__sleep_seconds=0.05)
    before = split_family(db, dest_db)
    proc = spawn_cli(config)
    wait_until(lambda: completed_batches(db) >= 2 or proc.poll() is not None, timeout=60)
    dest_db.execute(change)
    code = proc.wait(timeout=120)
    assert "Traceback" not in proc.read_stderr() and "internal error" not in proc.read_stderr()
    if "MODIFY" in change:
        assert code == 1, proc.read_stderr()  # the approved definition is gone: the run stops
        dest_db.execute("ALTER TABLE item_options_archive MODIFY val VARCHAR(20)")
        code = run_cli(config).returncode
    assert code == 0, proc.read_stderr()
    after = split_family(db, dest_db)
    if "ADD" in change:  # the archive's copies have one more column, NULL
        after["order_items"] = sorted(r[:4] for r in after["order_items"])
    assert after == before
    assert_no_orphans(db, dest_db)
    assert [r[0] for r in family_of(dest_db, "orders_archive")] == listed


# --------------------------------------------------------------------------- packets

def test_many_uuid_keyed_child_rows_fit_the_destinations_max_allowed_packet_or_are_refused(
        db, dest_db, tmp_path):
    # Attack: the preflight checks that a batch's key conditions fit max_allowed_packet for the
    # listed keys (batch_size of them), but a batch looks up and verifies every child row's own key
    # on the destination: up to max_batch_rows of them, here UUIDs. With a destination whose packet
    # is small (256 KiB), the preflight says READY and then every batch fails.
    db.execute(FAMILY[0])
    db.execute("CREATE TABLE order_lines (uid CHAR(36) CHARACTER SET ascii NOT NULL PRIMARY KEY, "
               "order_id INT NOT NULL, KEY (order_id), FOREIGN KEY (order_id) REFERENCES orders (id))")
    dest_db.execute("CREATE TABLE orders_archive (id INT PRIMARY KEY, customer VARCHAR(20), "
                    "total DECIMAL(10,2))")
    dest_db.execute("CREATE TABLE order_lines_archive (uid CHAR(36) CHARACTER SET ascii NOT NULL "
                    "PRIMARY KEY, order_id INT NOT NULL, KEY (order_id))")
    db.execute("INSERT INTO orders SELECT seq, 'c', 1 FROM seq_1_to_100")
    db.execute("INSERT INTO order_lines SELECT UUID(), o.seq FROM seq_1_to_100 o JOIN seq_1_to_40 n")
    lines = {"child lines__source_table": "order_lines",
             "child lines__archive_table": "order_lines_archive",
             "child lines__parent_columns": "order_id"}
    config = write_config(tmp_path, db, archive__source_table="orders",
                          archive__archive_table="orders_archive", archive__batch_size=100,
                          archive__max_batch_rows=5000, **dest_keys(dest_db), **lines)
    write_csv(tmp_path / "csv" / "orders.csv", range(1, 101))
    before = dest_db.scalar("SELECT @@GLOBAL.max_allowed_packet")
    dest_db.execute("SET GLOBAL max_allowed_packet = 262144")
    try:
        check = run_cli(config, "--check")
        refused = run_cli(config)
        untouched = dest_db.count("order_lines_archive") == 0 and db.count("order_lines") == 4000
        fits = re.search(r"use max_batch_rows (\d+) or less", check.stdout)
        assert fits, check.stdout
        config = write_config(tmp_path, db, archive__source_table="orders",
                              archive__archive_table="orders_archive", archive__batch_size=100,
                              archive__max_batch_rows=fits[1], **dest_keys(dest_db), **lines)
        result = run_cli(config)
    finally:
        dest_db.execute("SET GLOBAL max_allowed_packet = %s", (before,))
    assert check.returncode == 1, check.stdout
    assert "[archive] max_batch_rows 5000: a batch of [child lines] char(36) ascii keys" in check.stdout
    assert refused.returncode == 1 and untouched
    assert result.returncode == 0, (result.stdout, result.stderr)  # the advice works
    assert db.count("order_lines") == 0 and dest_db.count("order_lines_archive") == 4000
