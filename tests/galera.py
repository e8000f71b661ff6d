"""A real three-node MariaDB Galera cluster of throwaway servers, for the cluster tests.

Recipe (each node is a ``ThrowawayMariaDB`` with a few extra options):

* every node gets its own base directory ``<basedir>/node<i>`` with a data
  directory made by ``mariadb-install-db --no-defaults`` (installs run in
  parallel; the joiners' copies are replaced by their first state transfer);
* every node is ``mariadbd --no-defaults ...`` listening on loopback only, on
  four free ports: SQL (``--port``), group communication
  (``gmcast.listen_addr`` and the ``gcomm://`` list in
  ``wsrep_cluster_address``), incremental state transfer
  (``ist.recv_addr``) and full state transfer (``wsrep_sst_receive_address``);
* with ``wsrep_on=ON``, the galera-4 provider, ``binlog_format=ROW``,
  ``innodb_autoinc_lock_mode=2`` and ``wsrep_sst_method=rsync``; the EVS
  timeouts are shortened so a killed node is noticed in ~2-3 s, not ~15 s;
* node 0 is started first with ``--wsrep-new-cluster`` (bootstrap), then the
  others join one by one; ``start()`` returns only when every node answers a
  real query and reports ``wsrep_local_state_comment = Synced``,
  ``wsrep_cluster_status = Primary`` and ``wsrep_cluster_size = N``.

Why the nodes run as the ``mysql`` user: the joiner of an rsync state
transfer runs an rsync daemon, and when mariadbd runs as root that daemon
drops to ``nobody``, which then cannot write the root-owned data directory
("Permission denied") and the join fails.  So, when we are root, each node's
base directory (data, tmp, socket, pid and log files) is chowned to ``mysql``
and mariadbd is started as ``mysql`` (see ``ThrowawayMariaDB(os_user=...)``).
Every directory above the base directory must therefore be traversable by
``mysql``: pytest's ``tmp_path`` (under ``/tmp/pytest-of-root``, mode 0700)
is not, so use ``make_basedir()``, which creates one under ``/tmp``.  When we
are not root the nodes simply run as ourselves.

Clients use TCP ``127.0.0.1:<port>`` as root with no password
(``mariadb-install-db --auth-root-authentication-method=normal`` creates
``root@127.0.0.1``); ``host_list()`` gives ``"127.0.0.1:P1, 127.0.0.1:P2, ..."``.
Node processes get SIGTERM if the test process dies and are stopped at exit,
like every ``ThrowawayMariaDB``.

Example::

    cluster = GaleraCluster(make_basedir())
    cluster.start()
    cluster.kill(1)           # SIGKILL node 1; nodes 0 and 2 stay Primary
    cluster.start_node(1)     # it rejoins (full SST, ~3 s) and is Synced again
    cluster.stop()
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import mysql.connector

from helpers import query, query_dicts, wait_until
from replication import free_port
from throwaway_server import ServerStartError, ThrowawayMariaDB

GALERA_PROVIDER = "/usr/lib/galera/libgalera_smm.so"
GALERA_PACKAGES = ("galera-4", "rsync")
NODE_OS_USER = "mysql"

# Group-communication timeouts (ISO 8601 durations).  Defaults are 5 s suspect
# and 15 s inactive; a test that kills a node should not wait that long.
# Galera requires keepalive <= inactive_check <= suspect <= inactive and
# install_timeout <= inactive_timeout.
EVS_OPTIONS = (
    "evs.keepalive_period=PT0.5S",
    "evs.inactive_check_period=PT0.5S",
    "evs.suspect_timeout=PT2S",
    "evs.inactive_timeout=PT3S",
    "evs.install_timeout=PT3S",
)

NODE_OPTIONS = (
    "--wsrep-on=ON",
    f"--wsrep-provider={GALERA_PROVIDER}",
    "--wsrep-cluster-name=archive_test",
    "--wsrep-sst-method=rsync",
    "--binlog-format=ROW",
    "--innodb-autoinc-lock-mode=2",
    "--default-storage-engine=InnoDB",
    "--innodb-flush-log-at-trx-commit=2",  # three nodes share two cores and one disk
)

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --------------------------------------------------------------------------
# Requirements
# --------------------------------------------------------------------------

def missing_requirements() -> list[str]:
    """The Debian packages the cluster needs that are not installed (galera-4, rsync)."""
    missing = []
    if not os.path.exists(GALERA_PROVIDER):
        missing.append("galera-4")
    if shutil.which("rsync") is None:
        missing.append("rsync")
    return missing


def ensure_requirements() -> str | None:
    """Install missing packages when root; return why the cluster cannot run, or None.

    As root, ``apt-get install -y galera-4 rsync`` is run (non-interactively,
    with an ``apt-get update`` first if the plain install fails).  Otherwise
    nothing is installed and the returned message says what to install.
    """
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(NODE_OS_USER)
        except KeyError:
            return (f"no {NODE_OS_USER!r} OS user to run the Galera nodes as "
                    "(the mariadb-server package creates it)")
    missing = missing_requirements()
    if not missing:
        return None
    if os.geteuid() != 0:
        return (f"the Galera tests need {', '.join(missing)} ({GALERA_PROVIDER} and rsync); "
                f"install them with: sudo apt-get install {' '.join(GALERA_PACKAGES)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", *GALERA_PACKAGES]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
        done = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return f"{' '.join(install)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
    still = missing_requirements()
    return f"still missing after apt-get install: {', '.join(still)}" if still else None


def make_basedir(prefix: str = "galera-") -> Path:
    """A fresh directory under /tmp that the nodes' OS user can enter (mode 0755)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


def port_is_free(port: int) -> bool:
    """Whether a listening socket could be bound to 127.0.0.1:*port* now."""
    probe = socket.socket()
    try:
        probe.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def _unique_free_ports(count: int) -> list[int]:
    """*count* distinct free TCP ports on 127.0.0.1."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


# --------------------------------------------------------------------------
# One node
# --------------------------------------------------------------------------

class GaleraNode(ThrowawayMariaDB):
    """One cluster member: a ThrowawayMariaDB with wsrep options, waiting until Synced."""

    def __init__(self, basedir: Path, index: int, ports: dict[str, int],
                 cluster_address: str, *, startup_timeout: float = 180.0) -> None:
        """Prepare node *index*; ``ports`` maps sql/galera/ist/sst to port numbers."""
        self.index = index
        self.galera_port = ports["galera"]
        self.ist_port = ports["ist"]
        self.sst_port = ports["sst"]
        provider_options = ";".join([
            f"gmcast.listen_addr=tcp://127.0.0.1:{self.galera_port}",
            f"ist.recv_addr=127.0.0.1:{self.ist_port}",
            "gcache.size=64M",
            *EVS_OPTIONS,
        ])
        args = [
            *NODE_OPTIONS,
            f"--wsrep-cluster-address={cluster_address}",
            f"--wsrep-node-name=node{index}",
            f"--wsrep-node-address=127.0.0.1:{self.galera_port}",
            f"--wsrep-node-incoming-address=127.0.0.1:{ports['sql']}",
            f"--wsrep-provider-options={provider_options}",
            f"--wsrep-sst-receive-address=127.0.0.1:{self.sst_port}",
        ]
        super().__init__(basedir, args, port=ports["sql"], startup_timeout=startup_timeout,
                         os_user=NODE_OS_USER)
        self.bootstrap = False  # start with --wsrep-new-cluster (set by the cluster)

    def __repr__(self) -> str:
        """Show the node number, its SQL port and whether it runs."""
        return f"<GaleraNode {self.index} 127.0.0.1:{self.port} pid={self.pid}>"

    def command(self) -> list[str]:
        """The mariadbd command line, with ``--wsrep-new-cluster`` when bootstrapping."""
        cmd = super().command()
        return cmd + ["--wsrep-new-cluster"] if self.bootstrap else cmd

    def _wait_ready(self) -> None:
        """Wait until a query works and the node is Synced in a primary component."""
        super()._wait_ready()
        self.wait_synced()

    def wsrep_status(self) -> dict[str, str]:
        """All ``wsrep_%`` status variables of this node, by name."""
        conn = self.connect(connection_timeout=5)
        try:
            return {r["Variable_name"]: r["Value"]
                    for r in query_dicts(conn, "SHOW GLOBAL STATUS LIKE 'wsrep%'")}
        finally:
            conn.close()

    def wait_synced(self, cluster_size: int | None = None, timeout: float | None = None) -> None:
        """Wait until Synced, ready and Primary (and of *cluster_size*, if given)."""
        deadline = time.monotonic() + (self.startup_timeout if timeout is None else timeout)
        last: Any = None
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise ServerStartError(
                    f"node {self.index} exited with code {self._proc.returncode} while "
                    f"joining; error log {self.error_log}:\n{self.error_log_tail()}")
            try:
                st = self.wsrep_status()
                last = {k: st.get(k) for k in ("wsrep_local_state_comment", "wsrep_ready",
                                               "wsrep_cluster_status", "wsrep_cluster_size")}
                if (st.get("wsrep_local_state_comment") == "Synced"
                        and st.get("wsrep_ready") == "ON"
                        and st.get("wsrep_cluster_status") == "Primary"
                        and (cluster_size is None
                             or int(st.get("wsrep_cluster_size", 0)) == cluster_size)):
                    return
            except mysql.connector.Error as exc:
                last = exc
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"node {self.index} not Synced (cluster size {cluster_size}) in time; "
                    f"last: {last}; error log {self.error_log}:\n{self.error_log_tail()}")
            time.sleep(0.1)


# --------------------------------------------------------------------------
# The cluster
# --------------------------------------------------------------------------

class GaleraCluster:
    """*nodes* GaleraNode servers on loopback forming one Galera cluster."""

    def __init__(self, basedir: str | os.PathLike[str], nodes: int = 3, *,
                 startup_timeout: float = 180.0) -> None:
        """Choose ports and prepare the nodes (nothing starts until ``start()``)."""
        self.basedir = Path(basedir).resolve()
        ports = _unique_free_ports(4 * nodes)
        port_sets = [dict(zip(("sql", "galera", "ist", "sst"), ports[4 * i:4 * i + 4]))
                     for i in range(nodes)]
        address = "gcomm://" + ",".join(f"127.0.0.1:{p['galera']}" for p in port_sets)
        self.nodes = [GaleraNode(self.basedir / f"node{i}", i, port_sets[i], address,
                                 startup_timeout=startup_timeout)
                      for i in range(nodes)]
        self.startup_seconds: float | None = None  # how long the last start() took

    def __repr__(self) -> str:
        """Show the base directory and the nodes."""
        return f"<GaleraCluster {self.basedir} {self.nodes}>"

    def __enter__(self) -> GaleraCluster:
        """Start the cluster."""
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop the cluster."""
        self.stop()

    # ---------------------------------------------------------------- lifecycle
    def _check_basedir(self) -> None:
        """Create the base directory and make sure the nodes' OS user can write in it."""
        self.basedir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            return
        shutil.chown(self.basedir, NODE_OS_USER, NODE_OS_USER)
        probe = subprocess.run(["test", "-w", str(self.basedir), "-a", "-x", str(self.basedir)],
                               user=NODE_OS_USER, check=False)
        if probe.returncode != 0:
            raise ServerStartError(
                f"the {NODE_OS_USER} user cannot enter {self.basedir}: every directory above "
                f"it must be traversable by {NODE_OS_USER} (use galera.make_basedir())")

    def running(self) -> list[int]:
        """Indexes of the nodes whose mariadbd is alive."""
        return [n.index for n in self.nodes if n.is_running()]

    def start(self) -> None:
        """Bootstrap node 0, join the others one by one; wait until all are Synced."""
        began = time.monotonic()
        self._check_basedir()
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(lambda node: node.prepare(), self.nodes))
        try:
            if not self.running():
                self._bootstrap_start(0)
            for node in self.nodes:
                if not node.is_running():
                    self._join(node)
            for node in self.nodes:
                node.wait_synced(cluster_size=len(self.nodes))
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    def _join(self, node: GaleraNode, attempts: int = 3) -> None:
        """Start a node that joins the running ones.

        Its rsync SST daemon dies at once when something holds its port for a moment
        (seen once in a full run: "the rsync or stunnel daemon ... terminated
        unexpectedly"); the joiner then aborts before anything was copied, so it is
        simply started again.
        """
        for attempt in range(1, attempts + 1):
            try:
                node.start()
                return
            except ServerStartError as exc:
                if attempt == attempts or "Failed to prepare for 'rsync' SST" not in str(exc):
                    raise
                node._proc = None
                wait_until(lambda: port_is_free(node.sst_port), timeout=60,
                           message=f"node {node.index}'s SST port to be free again")

    def _bootstrap_start(self, i: int) -> None:
        """Start node *i* alone as a new cluster (``--wsrep-new-cluster``).

        Galera refuses to bootstrap from a node whose ``grastate.dat`` says
        ``safe_to_bootstrap: 0`` (it was not the last to leave); in this
        throwaway cluster we take the risk and mark it safe.
        """
        node = self.nodes[i]
        grastate = node.datadir / "grastate.dat"
        if grastate.exists():
            text = grastate.read_text()
            grastate.write_text(text.replace("safe_to_bootstrap: 0", "safe_to_bootstrap: 1"))
        node.bootstrap = True
        try:
            node.start()
        finally:
            node.bootstrap = False

    def stop(self) -> None:
        """Stop every node cleanly, highest index first (so node 0 leaves last)."""
        errors: list[BaseException] = []
        for node in reversed(self.nodes):
            try:
                node.stop()
            except (OSError, subprocess.SubprocessError) as exc:  # keep stopping the others
                errors.append(exc)
        if errors:
            raise errors[0]

    def kill(self, i: int) -> None:
        """SIGKILL node *i* (a crash: no clean leave, the others notice in ~3 s)."""
        self.nodes[i].kill()

    def stop_node(self, i: int) -> None:
        """Shut node *i* down cleanly (it leaves the cluster gracefully)."""
        self.nodes[i].stop()

    def start_node(self, i: int, timeout: float | None = None) -> None:
        """(Re)start node *i*; it joins the running nodes (or bootstraps if none runs).

        Returns when it is Synced in a primary component that includes every
        running node.  After a SIGKILL the node does not know its position
        (grastate.dat says seqno -1), so it gets a full rsync SST, not IST.
        """
        if not self.nodes[i].is_running():
            self.nodes[i]._proc = None
            if self.running():
                self._join(self.nodes[i])
            else:
                self._bootstrap_start(i)
        self.wait_synced(i, timeout=timeout)

    def bootstrap_primary(self, i: int) -> None:
        """Make node *i* form a new primary component after a quorum loss.

        ``SET GLOBAL wsrep_provider_options = 'pc.bootstrap=YES'``; only for a
        node left non-Primary (the nodes it can still see join it).
        """
        self.set_global(i, "wsrep_provider_options", "pc.bootstrap=YES")
        self.nodes[i].wait_synced(timeout=30)

    def isolate(self, i: int, isolated: bool = True) -> None:
        """Cut node *i* off from (or reconnect it to) the others, without stopping it.

        ``gmcast.isolate=1`` closes its group connections: a 3-node cluster
        splits into a Primary of two and a non-Primary node *i* (in ~3 s);
        ``isolated=False`` lets it rejoin (by IST).
        """
        self.set_global(i, "wsrep_provider_options", f"gmcast.isolate={int(isolated)}")

    def heal(self) -> None:
        """Bring the cluster back to N Synced nodes after a test that broke it.

        Reconnects isolated nodes, re-bootstraps a primary component if none
        is left, restarts dead nodes and waits until all are Synced.
        """
        running = self.running()
        if len(running) == len(self.nodes):
            try:
                for i in running:
                    self.wait_synced(i, timeout=10)
                return
            except ServerStartError:
                pass
        for i in running:
            try:
                self.isolate(i, False)
            except mysql.connector.Error:
                pass
        if running and not any(self._is_primary(i) for i in running):
            self.bootstrap_primary(running[0])
        for i in range(len(self.nodes)):
            self.start_node(i)
        for i in range(len(self.nodes)):
            self.wait_synced(i)

    def _is_primary(self, i: int) -> bool:
        """True when node *i* answers and is in a primary component."""
        try:
            return self.status(i, "wsrep_cluster_status") == "Primary"
        except mysql.connector.Error:
            return False

    # ----------------------------------------------------------------- clients
    def connection_kwargs(self, i: int, database: str | None = None) -> dict[str, Any]:
        """mysql.connector.connect() keyword arguments for node *i* (TCP, root)."""
        return self.nodes[i].connection_kwargs(database)

    def connect(self, i: int, database: str | None = None, **kw: Any) -> Any:
        """An autocommit utf8mb4 connection to node *i*."""
        return self.nodes[i].connect(database, **kw)

    def host_list(self) -> str:
        """Every node's SQL address: ``"127.0.0.1:P1, 127.0.0.1:P2, 127.0.0.1:P3"``."""
        return ", ".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def status(self, i: int, name: str) -> str | None:
        """The value of global status variable *name* on node *i* (None if absent)."""
        conn = self.connect(i, connection_timeout=5)
        try:
            rows = query_dicts(conn, "SHOW GLOBAL STATUS LIKE %s", (name,))
        finally:
            conn.close()
        return rows[0]["Value"] if rows else None

    def set_global(self, i: int, name: str, value: Any) -> None:
        """``SET GLOBAL name = value`` on node *i* (*value* is sent as a parameter)."""
        if not _NAME_RE.match(name):
            raise ValueError(f"not a variable name: {name!r}")
        conn = self.connect(i, connection_timeout=5)
        try:
            query(conn, f"SET GLOBAL {name} = %s", (value,))
        finally:
            conn.close()

    def wait_synced(self, i: int, timeout: float | None = None) -> None:
        """Wait until node *i* is Synced in a primary component of all running nodes and has
        applied every write set they had committed (a rejoined node may say Synced a moment
        before it applied the last of them: a table just created is then missing there)."""
        self.nodes[i].wait_synced(cluster_size=len(self.running()), timeout=timeout)
        target = max([self._last_committed(j) for j in self.running() if j != i] or [0])
        patience = timeout or self.nodes[i].startup_timeout
        wait_until(lambda: self._last_committed(i) >= target, timeout=patience,
                   message=f"node {i} to apply seqno {target}")

    def _last_committed(self, i: int) -> int:
        """wsrep_last_committed of node *i* (-1 when it does not answer as a Primary member)."""
        try:
            if self.status(i, "wsrep_cluster_status") != "Primary":
                return -1
            return int(self.status(i, "wsrep_last_committed") or -1)
        except mysql.connector.Error:
            return -1
