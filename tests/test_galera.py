"""archive.py on a real 3-node MariaDB Galera cluster: one run at a time across nodes, fencing,
node failover, certification conflicts, write-set limits and --status through any node."""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import mysql.connector
import pytest

import archive
from checks import (
    assert_batches_once,
    assert_conserved,
    completed_batches,
    drop_job,
    lease_expired,
    load_v1_half_done_file,
    make_job,
    race,
    text_log,
)
from galera import GaleraCluster
from helpers import ScratchDatabase, run_cli, silenced_mid_query, snapshot, wait_until, write_config
from test_child_tables import family_job, whole_family
from test_composite_keys import tenant_job
from test_schema_changes import ADD_CASCADE, CLAIMS, row_held, wait_for_a_lock_wait


def causal(db: ScratchDatabase) -> ScratchDatabase:
    """Make the test's own reads on node 0 wait for everything the cluster committed."""
    db.execute("SET SESSION wsrep_sync_wait = 1")
    return db


def hosts(cluster: GaleraCluster, *order: int) -> str:
    """A host list naming the nodes in this order."""
    return ", ".join(f"127.0.0.1:{cluster.nodes[i].port}" for i in order)


def cluster_job(db: ScratchDatabase, tmp_path: Path, cluster: GaleraCluster, keys: range, order=(0, 1, 2),
                **config: Any) -> tuple[Path, dict]:
    """The rewards job on the cluster, connecting through the nodes in `order`."""
    causal(db)
    return make_job(db, tmp_path, keys, {"ids.csv": list(keys)}, database__host=hosts(cluster, *order),
                    **config)


def test_two_runs_on_two_nodes_only_one_archives(galera_db, galera_cluster, tmp_path, spawn_cli):
    config, original = cluster_job(galera_db, tmp_path, galera_cluster, range(1, 201), archive__batch_size=10,
                                   controls__sleep_seconds=0.2)
    first = spawn_cli(config)
    wait_until(lambda: completed_batches(galera_db) >= 2, timeout=60)
    other_node = write_config(tmp_path / "node1", galera_db, database__host=hosts(galera_cluster, 1),
                              archive__batch_size=10, archive__csv_dir=tmp_path / "csv")
    second = run_cli(other_node)
    assert second.returncode == 5, (second.stdout, second.stderr)
    assert "already running" in second.stderr and "lease valid" in second.stderr
    status = run_cli(write_config(tmp_path / "node2", galera_db, database__host=hosts(galera_cluster, 2)),
                     "--status")
    assert "RUNNING (alive: heartbeat" in status.stdout, status.stdout
    assert first.wait(timeout=120) == 0, first.read_stderr()
    assert_conserved(galera_db, original, set(range(1, 201)))
    assert_batches_once(galera_db, "ids.csv", 20)
    assert galera_db.query("SELECT status FROM process_logs") == [("COMPLETED",)]


GALERA_RACE_TRIALS = 6


def test_runs_started_at_once_on_three_nodes_let_exactly_one_in(galera_db, galera_cluster, tmp_path,
                                                                spawn_cli):
    # A certification conflict (1213) at the lock row's commit, or a racing run's CREATE/ALTER of
    # the tracking tables (TOI DDL aborts the other nodes' transactions), ended a start with exit
    # 1, or every start with exit 5 and none archiving. Each trial starts from no tracking tables
    # or from schema-1 ones that the racing runs migrate.
    keys = range(1, 2001)
    configs = [write_config(tmp_path / f"node{i}", galera_db,
                            database__host=hosts(galera_cluster, i, (i + 1) % 3, (i + 2) % 3),
                            archive__batch_size=10, archive__csv_dir=tmp_path / "csv",
                            controls__sleep_seconds=0.05) for i in range(3)]
    problems = []
    for trial in range(GALERA_RACE_TRIALS):
        drop_job(galera_db)
        config, original = cluster_job(galera_db, tmp_path, galera_cluster, keys, archive__batch_size=10)
        if trial % 2:
            load_v1_half_done_file(galera_db, tmp_path, batches_done=4)
        problem = race(spawn_cli, configs)
        runs = galera_db.scalar("SELECT COUNT(*) FROM process_logs WHERE id <> 7")
        if problem or runs != 1:
            problems.append(f"trial {trial}: {problem or f'{runs} runs recorded'}")
    assert not problems, f"{len(problems)} of {GALERA_RACE_TRIALS} trials went wrong:\n" + "\n".join(problems)
    rerun = run_cli(config, "--sleep", "0")
    assert rerun.returncode == 0, rerun.stderr
    assert_conserved(galera_db, original, set(keys))
    assert_batches_once(galera_db, "ids.csv", 200)


def test_a_frozen_holder_whose_lease_expired_cannot_commit_again(galera_db, galera_cluster, tmp_path,
                                                                 spawn_cli):
    lease: dict[str, Any] = {"archive__lock_lease": "15s", "archive__lock_wait_timeout": 2}
    config, original = cluster_job(galera_db, tmp_path, galera_cluster, range(1, 301), archive__batch_size=10,
                                   controls__sleep_seconds=0.3, **lease)
    frozen = spawn_cli(config)
    wait_until(lambda: completed_batches(galera_db) >= 3, timeout=60)
    frozen.send_signal(signal.SIGSTOP)
    stopped_at = completed_batches(galera_db)
    taker = write_config(tmp_path / "node1", galera_db, database__host=hosts(galera_cluster, 1),
                         archive__batch_size=10, archive__csv_dir=tmp_path / "csv", **lease)
    assert run_cli(taker).returncode == 5  # the lease is still running
    wait_until(lambda: lease_expired(galera_db), timeout=60, message="the frozen run's lease to run out")
    result = run_cli(taker)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert completed_batches(galera_db) > stopped_at
    frozen.send_signal(signal.SIGCONT)
    assert frozen.wait(timeout=60) == 5, frozen.read_stderr()
    assert "lost the run lock" in frozen.read_stderr()
    assert_conserved(galera_db, original, set(range(1, 301)))
    assert_batches_once(galera_db, "ids.csv", 30)
    assert galera_db.query("SELECT status, stop_reason FROM process_logs ORDER BY id") == [
        ("INTERRUPTED", "process died"), ("COMPLETED", None)]


def test_the_run_moves_to_another_node_when_its_node_dies(galera_db, galera_cluster, tmp_path, spawn_cli):
    config, original = cluster_job(galera_db, tmp_path, galera_cluster, range(1, 401), order=(2, 1, 0),
                                   archive__batch_size=10, controls__sleep_seconds=0.1)
    proc = spawn_cli(config, "-v")
    wait_until(lambda: completed_batches(galera_db) >= 5, timeout=60)
    galera_cluster.kill(2)
    assert proc.wait(timeout=180) == 0, proc.read_stderr()
    out = proc.read_stdout()
    ports = [node.port for node in galera_cluster.nodes]
    assert re.search(rf"RECONNECTED: to root@127\.0\.0\.1:({ports[1]}|{ports[0]}) "
                     rf"\(was root@127\.0\.0\.1:{ports[2]}\)", out), out
    assert_conserved(galera_db, original, set(range(1, 401)))
    assert_batches_once(galera_db, "ids.csv", 40)


def test_a_node_lost_between_batches_is_survived_too(galera_db, galera_cluster, tmp_path, spawn_cli):
    # Quoted keys take the careful reader, so validating 600,000 of them takes seconds: the
    # node dies while the run is checking the file, heartbeating and recording it, not in a batch.
    config, original = cluster_job(galera_db, tmp_path, galera_cluster, range(1, 401), order=(2, 1, 0),
                                   archive__batch_size=10000, archive__lock_wait_timeout=1,
                                   archive__lock_lease=12)
    keys = 600_000
    (tmp_path / "csv" / "ids.csv").write_text("id\n" + "".join(f'"{k}"\n' for k in range(1, keys + 1)))
    proc = spawn_cli(config, "-v")
    wait_until(lambda: "1 file in" in proc.read_stdout(), timeout=60)  # printed after the preflight
    assert galera_db.count("file_processing_logs") == 0, "the node must die before the file is recorded"
    galera_cluster.kill(2)
    assert proc.wait(timeout=180) == 0, proc.read_stdout() + proc.read_stderr()
    assert "RECONNECTED: to root@127.0.0.1:" in proc.read_stdout()
    assert_conserved(galera_db, original, set(range(1, 401)))
    assert_batches_once(galera_db, "ids.csv", keys // 10000)
    assert galera_db.query("SELECT status FROM process_logs") == [("COMPLETED",)]
    assert galera_db.scalar("SELECT COUNT(*) FROM file_processing_logs WHERE status = 'PROCESSING'") == 0


def keep_updating(cluster: GaleraCluster, database: str, keys: range, stop: threading.Event,
                  counts: dict[str, int]) -> None:
    """Another application on node 1: single-row updates of the rows being archived, flat out."""
    conn = cluster.connect(1, database)
    cur = conn.cursor()
    n = 0
    while not stop.is_set():
        for key in keys:
            if stop.is_set():
                break
            n += 1
            try:
                cur.execute("UPDATE rewards SET user_id = %s WHERE id = %s", (n, key))
                counts["updates"] += cur.rowcount
            except Exception:  # a conflict with the archiver's batch is this writer's problem
                counts["errors"] += 1
    conn.close()


def test_a_batch_aborted_by_another_node_s_write_is_retried_and_nothing_is_lost(
        galera_db, galera_cluster, tmp_path, spawn_cli):
    # Made to happen, not hoped for: the batch on node 0 waits behind a row the application holds
    # there (it has already locked the rows before it), and then a write on node 1 to one of those
    # locked rows arrives: node 0's applier must abort the batch (a brute-force abort, 1213).
    keys = range(1, 301)
    config, original = cluster_job(galera_db, tmp_path, galera_cluster, keys, order=(0,),
                                   archive__batch_size=50, archive__lock_wait_timeout=120,
                                   archive__lock_lease=300)
    with row_held(galera_db, 25):
        proc = spawn_cli(config, "-v")
        wait_for_a_lock_wait(galera_db, "the first batch to wait behind row 25")
        other = galera_cluster.connect(1, galera_db.name)
        try:
            other.cursor().execute("UPDATE rewards SET user_id = 4242 WHERE id = 10")  # autocommit
        finally:
            other.close()
        wait_until(lambda: "1213" in proc.read_stdout(), timeout=60, message="the batch's retry after 1213")
    assert proc.wait(timeout=120) == 0, proc.read_stdout() + proc.read_stderr()
    assert "RETRY: Batch 1 attempt 2 after MySQL Error 1213" in proc.read_stdout()
    assert galera_db.count("rewards") == 0
    expected = {**original, 10: (10, 4242, *original[10][2:])}  # the other node's write, kept
    assert snapshot(galera_db, "rewards_archives") == expected
    assert_batches_once(galera_db, "ids.csv", 6)


def test_updates_from_another_node_flat_out_lose_no_row(galera_db, galera_cluster, tmp_path):
    # Certification conflicts come and go with the timing; whether or not one happens in a given
    # run (the test above makes one happen), no row may be lost or doubled.
    keys = range(1, 301)
    config, original = cluster_job(galera_db, tmp_path, galera_cluster, keys, order=(0,),
                                   archive__batch_size=50)
    stop, counts = threading.Event(), {"updates": 0, "errors": 0}
    writer = threading.Thread(target=keep_updating, args=(galera_cluster, galera_db.name, keys, stop, counts))
    writer.start()
    wait_until(lambda: counts["updates"] > 200, timeout=30)
    try:
        result = run_cli(config, "-v")
    finally:
        stop.set()
        writer.join()
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert galera_db.count("rewards") == 0
    archived = galera_db.query("SELECT id FROM rewards_archives ORDER BY id")
    assert [r[0] for r in archived] == list(keys)
    assert original  # rows changed under the run on purpose; each key exists exactly once
    assert_batches_once(galera_db, "ids.csv", 6)


def run_under_limit(cluster: GaleraCluster, config: Path, variable: str, value: int, default: int
                    ) -> tuple[Any, Any]:
    """A run and --check while node 0 has `variable` set to `value` (then back to `default`)."""
    cluster.set_global(0, variable, value)
    try:
        return run_cli(config), run_cli(config, "--check")
    finally:
        cluster.set_global(0, variable, default)


def test_a_batch_bigger_than_wsrep_max_ws_rows_is_refused_before_any_row_moves(
        galera_db, galera_cluster, tmp_path):
    config, original = cluster_job(galera_db, tmp_path, galera_cluster, range(1, 1201), order=(0,),
                                   archive__batch_size=1000)
    result, check = run_under_limit(galera_cluster, config, "wsrep_max_ws_rows", 500, 0)
    assert result.returncode == 1
    assert ("batch_size 1000 needs write sets of up to 2008 rows, but wsrep_max_ws_rows is 500"
            in result.stderr)
    assert "use batch_size 246 or less" in result.stderr
    assert "Galera node" in check.stdout and "Synced" in check.stdout and "NOT READY" in check.stdout
    assert_conserved(galera_db, original, set())


def test_a_batch_bigger_than_wsrep_max_ws_size_is_refused_naming_a_batch_size_that_fits(
        galera_db, galera_cluster, tmp_path):
    config, original = cluster_job(galera_db, tmp_path, galera_cluster, range(1, 1201), order=(0,),
                                   archive__batch_size=1000)
    galera_db.query("ANALYZE TABLE rewards")
    average = galera_db.scalar("SELECT AVG_ROW_LENGTH FROM information_schema.TABLES "
                               "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'rewards'")
    assert average > 0
    result, check = run_under_limit(galera_cluster, config, "wsrep_max_ws_size", 65536, 2147483647)
    assert result.returncode == 1 and check.returncode == 1
    expected = f"over wsrep_max_ws_size 65536 on root@127.0.0.1:{galera_cluster.nodes[0].port}; " \
               f"use batch_size {65536 // (4 * average)} or less"
    assert expected in result.stderr and expected in check.stdout, (result.stderr, check.stdout)
    assert_conserved(galera_db, original, set())


@pytest.fixture
def quorum_lost(galera_cluster: GaleraCluster):
    """Nodes 1 and 2 killed: node 0 is left without a primary component."""
    galera_cluster.kill(1)
    galera_cluster.kill(2)
    wait_until(lambda: galera_cluster.status(0, "wsrep_cluster_status") != "Primary", timeout=30)
    yield
    galera_cluster.heal()


def test_check_on_a_node_without_quorum_says_so(galera_db, galera_cluster, tmp_path, quorum_lost):
    config = write_config(tmp_path, galera_db, database__host=hosts(galera_cluster, 0))
    result = run_cli(config, "--check")
    assert result.returncode == 1
    assert "Galera node not ready" in result.stderr and "non-Primary" in result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr


def test_a_node_that_is_not_synced_pauses_the_run_visibly(galera_db, galera_cluster, tmp_path, spawn_cli):
    config, original = cluster_job(galera_db, tmp_path, galera_cluster, range(1, 201), order=(0,),
                                   archive__batch_size=10, controls__sleep_seconds=0.2,
                                   controls__check_interval=0.2)
    proc = spawn_cli(config)
    wait_until(lambda: completed_batches(galera_db) >= 2, timeout=60)
    galera_cluster.set_global(0, "wsrep_desync", "ON")
    try:
        def paused() -> str | None:
            out = run_cli(config, "--status").stdout
            return out if "PAUSED: Galera node" in out else None

        out = wait_until(paused, timeout=30, interval=0.3, message="--status to show the pause")
        assert "not Synced" in out
        held = completed_batches(galera_db)
        time.sleep(1.5)
        assert completed_batches(galera_db) == held, "no batch may run while the node is not synced"
    finally:
        galera_cluster.set_global(0, "wsrep_desync", "OFF")
    assert proc.wait(timeout=120) == 0, proc.read_stderr()
    log = text_log(tmp_path)
    assert "PAUSE: Galera node" in log and "RESUME: pause over" in log
    assert_conserved(galera_db, original, set(range(1, 201)))


def test_a_destination_on_another_node_of_the_same_cluster_is_the_source_and_is_refused(
        galera_db, galera_cluster, tmp_path):
    config, original = cluster_job(galera_db, tmp_path, galera_cluster, range(1, 101), order=(0,),
                                   archive__archive_table="rewards",
                                   destination__host=hosts(galera_cluster, 1), destination__user="root",
                                   destination__password="", destination__database=galera_db.name)
    result = run_cli(config)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "[destination] is a node of the source's Galera cluster and its archive table is the source " \
           "table itself" in result.stderr, result.stderr
    assert snapshot(galera_db, "rewards") == original


# The error texts as this cluster gives them (a node isolated mid-commit; the limits lowered).
NOT_PRIMARY = ("Error while appending streaming replication fragment(provider status: Not connected to "
               "Primary Component)")
WS_ROWS, WS_SIZE = "wsrep_max_ws_rows exceeded", "Maximum writeset size exceeded"


def test_a_commit_cut_off_from_the_primary_component_is_a_lost_node_not_a_write_set_limit():
    lost = mysql.connector.errors.DatabaseError(msg=NOT_PRIMARY, errno=1180)
    rows = mysql.connector.errors.DatabaseError(msg=WS_ROWS, errno=1180)
    size = mysql.connector.errors.DatabaseError(msg=WS_SIZE, errno=1105)
    assert archive.is_connection_error(lost) and archive.explain_write_set_error(lost, 10) is None
    for limit, name in ((rows, "wsrep_max_ws_rows"), (size, "wsrep_max_ws_size")):
        assert not archive.is_connection_error(limit)
        assert name in str(archive.explain_write_set_error(limit, 10))
    other = mysql.connector.errors.DatabaseError(msg="Got error 5 during COMMIT", errno=1180)
    assert not archive.is_connection_error(other) and archive.explain_write_set_error(other, 10) is None


def test_a_run_whose_node_is_cut_off_from_the_others_moves_to_the_primary_component(
        galera_db, galera_cluster, tmp_path, spawn_cli):
    # Error 1180 "Not connected to Primary Component" at COMMIT was taken for a write-set limit:
    # the run failed (exit 1, "lower batch_size") although two Synced nodes were in its host list.
    config, original = cluster_job(galera_db, tmp_path, galera_cluster, range(1, 401), order=(2, 1, 0),
                                   archive__batch_size=10, controls__sleep_seconds=0.05)
    proc = spawn_cli(config, "-v")
    wait_until(lambda: completed_batches(galera_db) >= 5, timeout=60)
    galera_cluster.isolate(2)
    assert proc.wait(timeout=180) == 0, proc.read_stdout()[-2000:] + proc.read_stderr()
    assert "RECONNECTED: to root@127.0.0.1:" in proc.read_stdout()
    assert_conserved(galera_db, original, set(range(1, 401)))
    assert_batches_once(galera_db, "ids.csv", 40)


def test_a_run_whose_node_is_desynced_moves_to_a_synced_node(galera_db, galera_cluster, tmp_path,
                                                             spawn_cli):
    # A donor (wsrep_desync=ON) paused the run for as long as it stayed desynced, holding the
    # lock and moving nothing, while the other nodes of its host list were Synced.
    config, original = cluster_job(galera_db, tmp_path, galera_cluster, range(1, 301), order=(0, 1, 2),
                                   archive__batch_size=10, controls__sleep_seconds=0.1,
                                   controls__check_interval=0.2)
    proc = spawn_cli(config, "-v")
    wait_until(lambda: completed_batches(galera_db) >= 2, timeout=60)
    galera_cluster.set_global(0, "wsrep_desync", "ON")
    try:
        moved = completed_batches(galera_db) + 5
        wait_until(lambda: completed_batches(galera_db) >= moved or proc.poll() is not None, timeout=60,
                   message="batches to run while node 0 is desynced")
    finally:
        galera_cluster.set_global(0, "wsrep_desync", "OFF")
    assert proc.wait(timeout=120) == 0, proc.read_stderr()
    port = galera_cluster.nodes[0].port
    assert re.search(rf"RECONNECTED: to \S+ \(was root@127\.0\.0\.1:{port}, not Synced\)", proc.read_stdout())
    assert "PAUSE:" not in text_log(tmp_path)
    assert_conserved(galera_db, original, set(range(1, 301)))


def test_a_write_set_limit_met_mid_run_fails_the_run_naming_batch_size(galera_db, galera_cluster, tmp_path,
                                                                       spawn_cli):
    config, original = cluster_job(galera_db, tmp_path, galera_cluster, range(1, 301), order=(0,),
                                   archive__batch_size=10, controls__sleep_seconds=0.1)
    proc = spawn_cli(config)
    wait_until(lambda: completed_batches(galera_db) >= 2, timeout=60)
    galera_cluster.set_global(0, "wsrep_max_ws_rows", 5)  # after the preflight: met by a batch
    try:
        code = proc.wait(timeout=120)
    finally:
        galera_cluster.set_global(0, "wsrep_max_ws_rows", 0)
    assert code == 1, proc.read_stderr()
    assert "writes more rows than wsrep_max_ws_rows allows on this node; lower [archive] batch_size" \
        in proc.read_stderr()
    assert run_cli(config, "--sleep", "0").returncode == 0
    assert_conserved(galera_db, original, set(range(1, 301)))


def test_status_moves_to_the_next_node_when_its_node_goes_silent(galera_db, galera_cluster, tmp_path,
                                                                 spawn_cli):
    # --status had no read timeout: through a node that stopped answering mid-statement it waited
    # for ever. It now gives a node lock_wait_timeout + connect_timeout and asks the next one.
    config, _ = cluster_job(galera_db, tmp_path, galera_cluster, range(1, 51), order=(1, 0, 2),
                            archive__lock_wait_timeout=5)
    assert run_cli(config).returncode == 0
    node1 = ScratchDatabase(galera_cluster.nodes[1], galera_db.name)
    proc = spawn_cli(config, "--status")
    # 40 s from the freeze (not from the start, which a loaded machine stretches): four times
    # lock_wait_timeout + connect_timeout, far below a wait for ever
    code = silenced_mid_query(galera_cluster.nodes[1], node1, "process_logs", proc, wait=40)
    assert code == 0, f"exit {code}: {proc.read_stderr()}"
    assert re.match(r"Run [0-9]+: COMPLETED", proc.read_stdout()), proc.read_stdout()


# Found by the issue-19 red team, now fixed: as on one server (test_schema_changes: a cascading foreign
# key added while a batch waits), a foreign key added to a child on another node (TOI) takes no metadata
# lock on the parent, so the applier neither waits for nor aborts the batch that has passed its gate, and
# its DELETE cascades
def test_a_cascading_foreign_key_added_on_another_node_mid_batch_deletes_no_child_row(
        galera_db, galera_cluster, tmp_path, spawn_cli):
    config, _ = cluster_job(galera_db, tmp_path, galera_cluster, range(1, 401), order=(0,),
                            archive__batch_size=20, archive__lock_wait_timeout=120, archive__lock_lease=300)
    galera_db.execute(CLAIMS)
    galera_db.execute("INSERT INTO reward_claims (reward_id) SELECT id FROM rewards")
    with row_held(galera_db, 10):  # the application holds a row of batch 1 on node 0
        proc = spawn_cli(config)
        wait_for_a_lock_wait(galera_db, "batch 1 to wait on row 10")
        other = galera_cluster.connect(1, galera_db.name)
        try:
            other.cursor().execute("SET SESSION foreign_key_checks = 0")
            other.cursor().execute(ADD_CASCADE)
        finally:
            other.close()
    assert proc.wait(timeout=120) == 1, proc.read_stdout() + proc.read_stderr()
    assert galera_db.count("reward_claims") == 400, "the batch's DELETE cascaded into reward_claims"


def test_a_composite_key_job_on_the_cluster_moves_exactly_its_rows(galera_db, galera_cluster, tmp_path):
    causal(galera_db)
    rows = [(f"t{n % 5}", n) for n in range(1, 1201)]
    traps = [("T1", 1), ("t1 ", 6)]  # equal to listed rows by collation only: not found
    config = tenant_job(galera_db, tmp_path, rows, rows[:1000] + traps, archive__batch_size=10,
                        database__host=hosts(galera_cluster, 0, 1, 2))
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    archived = galera_db.query("SELECT CAST(tenant AS BINARY), id FROM arc ORDER BY id")
    assert archived == [(t.encode(), n) for t, n in rows[:1000]]
    assert galera_db.scalar("SELECT COUNT(*) FROM src") == 200
    assert galera_db.query("SELECT rows_archived, not_found FROM process_logs") == [(1000, 2)]


def test_a_family_job_on_the_cluster_moves_children_with_parents_within_the_write_set_limit(
        galera_db, galera_cluster, tmp_path):
    causal(galera_db)
    listed = list(range(1, 41))
    config = family_job(galera_db, tmp_path, 60, listed, archive__batch_size=10,
                        archive__max_batch_rows=400, database__host=hosts(galera_cluster, 0, 1, 2))
    before = whole_family(galera_db)
    result, check = run_under_limit(galera_cluster, config, "wsrep_max_ws_rows", 500, 0)
    assert result.returncode == 1 and check.returncode == 1
    assert ("max_batch_rows 400 needs write sets of up to 808 rows, but wsrep_max_ws_rows is 500"
            in result.stderr)
    assert "use max_batch_rows 246 or less" in check.stdout
    config.write_text(config.read_text().replace("max_batch_rows = 400", "max_batch_rows = 40"))
    result, _ = run_under_limit(galera_cluster, config, "wsrep_max_ws_rows", 500, 0)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert whole_family(galera_db) == before
    assert [r[0] for r in galera_db.query("SELECT id FROM orders_archive ORDER BY id")] == listed
    assert galera_db.scalar("SELECT COUNT(*) FROM order_items WHERE order_id <= 40") == 0
    assert "PART: Batch 1 - 5 of 10 keys moved" in result.stdout


# Red team on the quick family path: it counts a batch's rows with a read that locks nothing, then
# copies and deletes them all in one round trip, and only then compares what it moved with
# max_batch_rows. Rows added to the family in between make its write set larger than the one the
# preflight fitted to wsrep_max_ws_rows (2 x max_batch_rows + 8), and Galera refuses it mid-script,
# where the careful path would have cut the batch into parts under its locks.
def test_children_added_while_a_quick_family_batch_waits_never_push_it_past_wsrep_max_ws_rows(
        galera_db, galera_cluster, tmp_path, spawn_cli):
    causal(galera_db)
    config = family_job(galera_db, tmp_path, 12, list(range(1, 7)), archive__batch_size=3,
                        archive__max_batch_rows=22, database__host=hosts(galera_cluster, 0))
    galera_cluster.set_global(0, "wsrep_max_ws_rows", 2 * 22 + archive.TRACKING_ROWS_PER_BATCH)
    try:
        holder = galera_cluster.connect(0, galera_db.name)
        holder.autocommit = False
        cursor = holder.cursor()
        cursor.execute("UPDATE order_items SET qty = qty + 100 WHERE id = 4")  # order 2, batch 1
        proc = spawn_cli(config)
        wait_for_a_lock_wait(galera_db, "the quick batch to wait for item 4", lambda: proc.poll() is not None)
        assert proc.poll() is None, proc.read_stdout() + proc.read_stderr()
        # orders 1-3 were 22 rows by the count; six more items of order 3 make 28
        cursor.execute("INSERT INTO order_items VALUES " + ", ".join(
            f"({1000 + n}, 3, 'new{n}', 1)" for n in range(6)))
        before = whole_family(galera_db)  # the quick batch still waits: nothing moved yet
        items = [(i, o, sku, qty + 100 if i == 4 else qty) for i, o, sku, qty in before["order_items"]]
        before["order_items"] = sorted(items + [(1000 + n, 3, f"new{n}", 1) for n in range(6)])
        holder.commit()
        holder.close()
        code = proc.wait(timeout=120)
    finally:
        galera_cluster.set_global(0, "wsrep_max_ws_rows", 0)
    assert code == 0, proc.read_stdout() + proc.read_stderr()
    assert whole_family(galera_db) == before
    assert [r[0] for r in galera_db.query("SELECT id FROM orders_archive ORDER BY id")] == list(range(1, 7))
    assert galera_db.scalar("SELECT COUNT(*) FROM order_items WHERE order_id <= 6") == 0


def test_a_quick_family_batch_aborted_by_another_node_s_writes_to_rows_it_copied_loses_nothing(
        galera_db, galera_cluster, tmp_path, spawn_cli):
    # The quick path's shared locks are node 0's own: the items copy has read items 0-3 (orders 1
    # and 2) and waits for item 4, held on node 0, when node 1 changes item 2 and gives order 1 a
    # new item. Node 0's applier must abort the batch (1213); the retry moves the families as they
    # are now, each row once
    causal(galera_db)
    config = family_job(galera_db, tmp_path, 12, list(range(1, 7)), archive__batch_size=3,
                        archive__lock_wait_timeout=120, archive__lock_lease=300,
                        database__host=hosts(galera_cluster, 0))
    holder = galera_cluster.connect(0, galera_db.name)
    holder.autocommit = False
    holder.cursor().execute("UPDATE order_items SET qty = qty + 100 WHERE id = 4")
    proc = spawn_cli(config, "-v")
    wait_for_a_lock_wait(galera_db, "the quick batch to wait for item 4", lambda: proc.poll() is not None)
    other = galera_cluster.connect(1, galera_db.name)
    try:
        other.cursor().execute("UPDATE order_items SET qty = 4242 WHERE id = 2")  # autocommit
        other.cursor().execute("INSERT INTO order_items VALUES (1000, 1, 'node1', 1)")
    finally:
        other.close()
    wait_until(lambda: "1213" in proc.read_stdout() or proc.poll() is not None, timeout=60,
               message="the batch's retry after 1213")
    before = whole_family(galera_db)  # the retry waits for item 4 again: nothing moved yet
    holder.rollback()
    holder.close()
    assert proc.wait(timeout=120) == 0, proc.read_stdout() + proc.read_stderr()
    assert "RETRY: Batch 1 attempt 2 after MySQL Error 1213" in proc.read_stdout()
    assert whole_family(galera_db) == before
    items = galera_db.query("SELECT * FROM order_items_archive WHERE id IN (2, 1000) ORDER BY id")
    assert items == [(2, 1, "sku2", 4242), (1000, 1, "node1", 1)]
    assert galera_db.scalar("SELECT COUNT(*) FROM order_items WHERE order_id <= 6") == 0
    assert [r[0] for r in galera_db.query("SELECT id FROM orders_archive ORDER BY id")] == list(range(1, 7))


def test_an_export_on_the_cluster_reads_a_synced_node_and_its_keys_archive_exactly(
        galera_db, galera_cluster, tmp_path):
    causal(galera_db)
    config, original = make_job(galera_db, tmp_path, range(1, 1201), {}, export__where="id % 3 = 0",
                                export__keys_per_file=150, database__host=hosts(galera_cluster, 0, 1, 2))
    galera_cluster.set_global(0, "wsrep_desync", "ON")  # node 0 is a donor: the export must go on to node 1
    try:
        exported = run_cli(config, "--export-keys")
    finally:
        galera_cluster.set_global(0, "wsrep_desync", "OFF")
    assert exported.returncode == 0, (exported.stdout, exported.stderr)
    manifest = json.loads(next((tmp_path / "logs").glob("*.export.json")).read_text())
    assert manifest["keys"] == 400 and len(manifest["files"]) == 3
    assert str(galera_cluster.nodes[1].port) in manifest["server"], manifest["server"]
    result = run_cli(config, "-q")
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert set(snapshot(galera_db, "rewards_archives")) == {k for k in original if k % 3 == 0}
    assert set(snapshot(galera_db, "rewards")) == {k for k in original if k % 3}
