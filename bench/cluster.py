"""``--galera``: the side-by-side on a real 3-node Galera cluster next to the single server.

See bench.py's docstring, item 9.  The cluster is ``tests/galera.py``'s ``GaleraCluster``
(nodes run as the mysql user, from a base dir under /tmp); its nodes get the bench's
server options on top of the test options, so durability matches the single server.
"""
from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
from collections.abc import Sequence
from typing import Any

from benchlib import (
    SERVER_ARGS,
    BenchError,
    Contender,
    Env,
    Mode,
    Result,
    create_schema,
    failure_note,
    fmt_rps,
    log,
    measure,
    pristine_ids,
    query,
    scalar,
)
from contenders import side_by_side

from galera import GaleraCluster, ensure_requirements, make_basedir

# After the test options (later options win): the single server's durability and charset,
# LOAD DATA LOCAL for pt-archiver, and a buffer pool that holds the data on each of 3 nodes.
NODE_ARGS = [*SERVER_ARGS, "--innodb-buffer-pool-size=256M"]
SINGLE, CLUSTER = "single server: ", "3-node Galera: "


def cluster_conn(cluster: GaleraCluster, i: int) -> Any:
    """A connection to node i whose reads wait until the node has applied every earlier write."""
    conn = cluster.connect(i)
    query(conn, "SET SESSION wsrep_sync_wait = 1")
    return conn


def start_cluster(keep: bool) -> GaleraCluster:
    """Start a 3-node cluster with the bench's server options; stop it again if it fails."""
    cluster = GaleraCluster(make_basedir("bench-galera-"))
    for node in cluster.nodes:
        node.extra_args += NODE_ARGS
    log(f"galera: starting 3 nodes in {cluster.basedir}")
    try:
        cluster.start()
    except BaseException:
        stop_cluster(cluster, keep)
        raise
    conn = cluster.connect(0)
    flush = scalar(conn, "SELECT @@innodb_flush_log_at_trx_commit")
    conn.close()
    log(f"galera: cluster up in {cluster.startup_seconds:.1f}s ({cluster.host_list()}), "
        f"flush_log_at_trx_commit={flush}")
    return cluster


def stop_cluster(cluster: GaleraCluster, keep: bool) -> None:
    """Stop every node and remove the base dir (unless --keep)."""
    try:
        cluster.stop()
    finally:
        if keep:
            log(f"galera: kept {cluster.basedir}")
        else:
            shutil.rmtree(cluster.basedir, ignore_errors=True)


def cluster_env(env: Env, cluster: GaleraCluster, args: argparse.Namespace, ids: Sequence[int]) -> Env:
    """The same rows on the cluster, built through node 0; archive.py gets every node's address."""
    conns = [cluster_conn(cluster, i) for i in range(len(cluster.nodes))]
    create_schema(conns[0], args.rows, args.id_step, env.schema)
    if pristine_ids(conns[0], env.schema) != list(ids):
        raise BenchError("galera: the cluster's rows differ from the single server's")
    workdir = env.workdir / "galera"
    workdir.mkdir(exist_ok=True)
    return dataclasses.replace(env, server=cluster.nodes[0], conn=conns[0], workdir=workdir,
                               hosts=cluster.host_list(), peers=conns[1:])


def print_table(args: argparse.Namespace, single: list[Result], clustered: list[Result]) -> None:
    """rows/s on the single server and on the cluster, per contender."""
    print(f"\n== single server vs 3-node Galera: {args.rows} rows, batch size {args.batch_size}, "
          f"flush_log_at_trx_commit=1 on every server ==")
    print(f"{'contender':<36} {'single rows/s':>13} {'Galera rows/s':>13} {'Galera/single':>13}  note")
    for one, three in zip(single, clustered):
        name = one.name[len(SINGLE):]
        ratio = (f"{three.rows_per_s / one.rows_per_s:12.2f}x" if one.rows_per_s and three.rows_per_s
                 else f"{'-':>13}")
        note = "; ".join(n for n in (one.note, three.note) if n)
        print(f"{name:<36} {fmt_rps(one):>13} {fmt_rps(three):>13} {ratio}  {note}".rstrip())
    sys.stdout.flush()


def interleave(first: list[Contender], second: list[Contender]) -> list[Contender]:
    """a1 a2 b1 b2 ...: each single-server run next to its cluster run."""
    return [c for pair in zip(first, second) for c in pair]


def run_galera(env: Env, args: argparse.Namespace, ids: Sequence[int]) -> list[Result]:
    """Start the cluster, time the contenders there and on the single server, print, stop."""
    problem = ensure_requirements()
    if problem:
        print(f"\n== Galera: skipped: {problem} ==")
        return [Result("galera", None, 0, note=f"SKIPPED: {problem}")]
    try:
        cluster = start_cluster(args.keep)
    except Exception as exc:  # a cluster that cannot start is a failed measurement
        log(f"FAILED: galera cluster did not start: {exc}")
        return [Result("galera", None, 0, note=failure_note(exc))]
    try:
        genv = cluster_env(env, cluster, args, ids)
        single, single_skipped = side_by_side(env, args.batch_size, ids, args.id_step > 1, SINGLE)
        clustered, cluster_skipped = side_by_side(genv, args.batch_size, ids, args.id_step > 1, CLUSTER)
        results = measure(env, interleave(single, clustered), args.repeat)
        by_name = {r.name: r for r in results + single_skipped + cluster_skipped}
        one = sorted((r for n, r in by_name.items() if n.startswith(SINGLE)), key=lambda r: r.name)
        three = sorted((r for n, r in by_name.items() if n.startswith(CLUSTER)), key=lambda r: r.name)
        print_table(args, one, three)
        for conn in [genv.conn, *genv.peers]:
            conn.close()
        return one + three
    finally:
        stop_cluster(cluster, args.keep)


def add_args(p: argparse.ArgumentParser) -> None:
    """--galera."""
    g = p.add_argument_group("Galera (--galera)")
    g.add_argument("--galera", action="store_true",
                   help="the side-by-side on a real 3-node Galera cluster next to the single server")


MODE = Mode("galera", add_args, run_galera)
