"""Tests of the Galera cluster harness itself (tests/galera.py) on a real 3-node cluster."""

from __future__ import annotations

import os
import pwd
import socket
import threading
from pathlib import Path

import mysql.connector
import pytest

import galera
from galera import NODE_OS_USER, GaleraCluster
from helpers import ScratchDatabase, wait_until


def _uid_of(pid: int) -> int:
    """The real uid of process *pid*."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


def _count_on(cluster: GaleraCluster, i: int, db: str) -> int:
    """COUNT(*) of table t in *db*, read on node *i* after it has applied all it received."""
    conn = cluster.connect(i, db)
    try:
        cur = conn.cursor()
        cur.execute("SET SESSION wsrep_sync_wait = 1")  # causal read: wait for the apply queue
        cur.execute("SELECT COUNT(*) FROM t")
        return int(cur.fetchone()[0])
    finally:
        conn.close()


def test_cluster_is_formed(galera_cluster: GaleraCluster) -> None:
    """Three Synced nodes in one primary component, each reachable as root over TCP."""
    assert len(galera_cluster.nodes) == 3
    uuids = set()
    for i, node in enumerate(galera_cluster.nodes):
        assert galera_cluster.status(i, "wsrep_local_state_comment") == "Synced"
        assert galera_cluster.status(i, "wsrep_cluster_size") == "3"
        assert galera_cluster.status(i, "wsrep_cluster_status") == "Primary"
        uuids.add(galera_cluster.status(i, "wsrep_cluster_state_uuid"))
        kw = galera_cluster.connection_kwargs(i)
        assert (kw["host"], kw["port"], kw["user"]) == ("127.0.0.1", node.port, "root")
        raw = mysql.connector.connect(**kw)
        cur = raw.cursor()
        cur.execute("SELECT @@wsrep_on, @@port, @@binlog_format, @@innodb_autoinc_lock_mode")
        assert cur.fetchone() == (1, node.port, "ROW", 2)
        raw.close()
        if os.geteuid() == 0:
            assert node.pid is not None
            assert _uid_of(node.pid) == pwd.getpwnam(NODE_OS_USER).pw_uid
    assert len(uuids) == 1
    ports = [n.port for n in galera_cluster.nodes]
    assert galera_cluster.host_list() == ", ".join(f"127.0.0.1:{p}" for p in ports)


def test_write_on_node0_is_read_on_node2(galera_cluster: GaleraCluster,
                                         galera_db: ScratchDatabase) -> None:
    """A committed write on node 0 (and the DDL before it) is visible on node 2."""
    galera_db.execute("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))")
    galera_db.execute("INSERT INTO t VALUES (1, 'from node 0'), (2, 'also')")
    conn = galera_cluster.connect(2, galera_db.name)
    try:
        cur = conn.cursor()
        cur.execute("SET SESSION wsrep_sync_wait = 1")
        cur.execute("SELECT id, v FROM t ORDER BY id")
        assert cur.fetchall() == [(1, "from node 0"), (2, "also")]
    finally:
        conn.close()


def test_killed_node_leaves_a_primary_of_two(galera_cluster: GaleraCluster,
                                             galera_db: ScratchDatabase) -> None:
    """After SIGKILL of node 1, nodes 0 and 2 stay a writable primary component of 2."""
    galera_db.execute("CREATE TABLE t (id INT PRIMARY KEY)")
    galera_cluster.kill(1)
    assert galera_cluster.running() == [0, 2]
    for i in (0, 2):
        galera_cluster.wait_synced(i, timeout=30)
        assert galera_cluster.status(i, "wsrep_cluster_size") == "2"
    galera_db.execute("INSERT INTO t VALUES (1), (2), (3)")
    assert _count_on(galera_cluster, 2, galera_db.name) == 3


def test_restarted_node_resyncs(galera_cluster: GaleraCluster,
                                galera_db: ScratchDatabase) -> None:
    """A killed node restarted with start_node() catches up on what it missed."""
    galera_db.execute("CREATE TABLE t (id INT PRIMARY KEY)")
    galera_db.execute("INSERT INTO t VALUES (1)")
    galera_cluster.kill(1)
    galera_cluster.wait_synced(0, timeout=30)
    galera_db.execute("INSERT INTO t VALUES (2), (3)")  # node 1 misses these
    galera_cluster.start_node(1)
    for i in range(3):
        assert galera_cluster.status(i, "wsrep_cluster_size") == "3"
    assert galera_cluster.status(1, "wsrep_local_state_comment") == "Synced"
    assert _count_on(galera_cluster, 1, galera_db.name) == 3


def test_a_joiner_whose_sst_port_is_taken_for_a_moment_still_joins(galera_cluster: GaleraCluster,
                                                                   galera_db: ScratchDatabase) -> None:
    """The rsync SST daemon cannot bind while another socket holds its port: start again."""
    galera_db.execute("CREATE TABLE t (id INT PRIMARY KEY)")
    galera_cluster.kill(2)
    galera_cluster.wait_synced(0, timeout=30)
    galera_db.execute("INSERT INTO t VALUES (1)")
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", galera_cluster.nodes[2].sst_port))
    holder.listen()
    failed = "Failed to prepare for 'rsync' SST"
    log = galera_cluster.nodes[2].error_log
    seen = log.read_text(errors="replace").count(failed) if log.exists() else 0

    def release_once_refused() -> None:
        """Hold the port until the first start has failed on it (not for a guessed time)."""
        try:
            wait_until(lambda: log.exists() and log.read_text(errors="replace").count(failed) > seen,
                       timeout=180, message="the joiner to fail on its held SST port")
        finally:
            holder.close()

    releaser = threading.Thread(target=release_once_refused)
    releaser.start()
    try:
        galera_cluster.start_node(2)
    finally:
        releaser.join()
    assert log.read_text(errors="replace").count(failed) > seen
    assert galera_cluster.status(2, "wsrep_local_state_comment") == "Synced"
    assert _count_on(galera_cluster, 2, galera_db.name) == 1


def test_lost_quorum_answers_1047_until_bootstrapped(galera_cluster: GaleraCluster,
                                                     galera_db: ScratchDatabase) -> None:
    """Alone after two nodes die, node 0 refuses queries (1047) until pc.bootstrap."""
    galera_db.execute("CREATE TABLE t (id INT PRIMARY KEY)")
    galera_db.close()
    galera_cluster.kill(1)
    galera_cluster.kill(2)
    wait_until(lambda: galera_cluster.status(0, "wsrep_cluster_status") == "non-Primary",
               timeout=30, message="node 0 to lose its primary component")
    assert galera_cluster.status(0, "wsrep_ready") == "OFF"
    conn = galera_cluster.connect(0, galera_db.name)
    try:
        cur = conn.cursor()
        with pytest.raises(mysql.connector.Error) as info:
            cur.execute("SELECT COUNT(*) FROM t")
        assert info.value.errno == 1047  # WSREP has not yet prepared node for application use
    finally:
        conn.close()
    galera_cluster.bootstrap_primary(0)
    assert galera_cluster.status(0, "wsrep_cluster_size") == "1"
    assert _count_on(galera_cluster, 0, galera_db.name) == 0


def test_isolated_node_rejoins(galera_cluster: GaleraCluster,
                               galera_db: ScratchDatabase) -> None:
    """isolate(2) splits off node 2 (non-Primary) while 0 and 1 go on; it then catches up."""
    galera_db.execute("CREATE TABLE t (id INT PRIMARY KEY)")
    galera_cluster.isolate(2)
    wait_until(lambda: galera_cluster.status(2, "wsrep_cluster_status") == "non-Primary",
               timeout=30, message="node 2 to leave the primary component")
    galera_cluster.nodes[0].wait_synced(cluster_size=2, timeout=30)
    galera_db.execute("INSERT INTO t VALUES (1)")
    galera_cluster.isolate(2, False)
    galera_cluster.wait_synced(2, timeout=60)
    assert _count_on(galera_cluster, 2, galera_db.name) == 1


def test_missing_galera_is_reported_with_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    """Not root and no provider library: nothing is installed, the message names the packages."""
    monkeypatch.setattr(galera, "GALERA_PROVIDER", str(tmp_path / "libgalera_smm.so"))
    monkeypatch.setattr(galera.os, "geteuid", lambda: 1000)
    assert galera.missing_requirements() == ["galera-4"]
    message = galera.ensure_requirements()
    assert message is not None and "apt-get install galera-4 rsync" in message
