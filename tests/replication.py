"""A real primary/replica pair of throwaway MariaDB servers, for the replica-lag controls.

The session ``server`` fixture runs without a binary log, so the replica tests
start a pair of their own: a primary with ``--log-bin`` and ROW format on TCP
127.0.0.1:<free port>, and a replica on another free port that replicates from
it by binlog file and position.  On the replica a monitoring user ``mon`` (only
the SLAVE MONITOR privilege) is created, so archive.py can watch it with an
ordinary ``mysql://mon:pw@127.0.0.1:port`` spec.

``ReplicationPair`` offers the few operations the tests need: stop or start the
SQL thread or all of replication, wait until the replica has applied
everything the primary logged, and read the replica's status.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

from helpers import query, query_dicts
from throwaway_server import ThrowawayMariaDB

REPL_USER, REPL_PASSWORD = "repl", "repl_pw_42"
MONITOR_USER, MONITOR_PASSWORD = "mon", "mon_secret_77"

PRIMARY_ARGS = ["--log-bin=mysql-bin", "--server-id=1", "--binlog-format=ROW"]
REPLICA_ARGS = ["--relay-log=relay-bin", "--read-only=OFF", "--skip-slave-start"]
RELAY_ARGS = ("--log-bin=mysql-bin", "--log-slave-updates", "--binlog-format=ROW")  # a replica in a chain


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ReplicationPair:
    """A primary and a replica replicating from it, both ThrowawayMariaDB.

    ``primary`` makes a chain: the replica of an existing pair (started with ``relay_args``, so
    that it logs what it applies) as the primary of this one, whose replica gets ``server_id``.
    """

    def __init__(self, basedir: Path, primary: ThrowawayMariaDB | None = None, server_id: int = 2,
                 replica_args: tuple[str, ...] = ()) -> None:
        """Prepare both servers (started by ``start()``)."""
        self.primary = primary or ThrowawayMariaDB(basedir / "primary", PRIMARY_ARGS, port=free_port())
        self.replica = ThrowawayMariaDB(basedir / "replica", [*REPLICA_ARGS, f"--server-id={server_id}",
                                                              *replica_args], port=free_port())

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start both servers and set up replication; raise if it does not run."""
        self.primary.start()
        self.replica.start()
        prim = self.primary.connect()
        try:
            query(prim, f"CREATE USER IF NOT EXISTS '{REPL_USER}'@'%' IDENTIFIED BY '{REPL_PASSWORD}'")
            query(prim, f"GRANT REPLICATION SLAVE ON *.* TO '{REPL_USER}'@'%'")
            status = query_dicts(prim, "SHOW MASTER STATUS")[0]
        finally:
            prim.close()
        rep = self.replica.connect()
        try:
            query(rep, f"CREATE USER '{MONITOR_USER}'@'%' IDENTIFIED BY '{MONITOR_PASSWORD}'")
            query(rep, f"GRANT SLAVE MONITOR ON *.* TO '{MONITOR_USER}'@'%'")
            query(rep,
                  "CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = %s, "
                  "MASTER_USER = %s, MASTER_PASSWORD = %s, MASTER_LOG_FILE = %s, "
                  "MASTER_LOG_POS = %s, MASTER_CONNECT_RETRY = 1, MASTER_USE_GTID = no",
                  (self.primary.port, REPL_USER, REPL_PASSWORD, status["File"],
                   int(status["Position"])))
            query(rep, "START SLAVE")
        finally:
            rep.close()
        self.wait_running()
        self.sync()

    def stop(self) -> None:
        """Shut both servers down (replica first)."""
        try:
            self.replica.stop()
        finally:
            self.primary.stop()

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        """The replica's SHOW SLAVE STATUS row."""
        conn = self.replica.connect()
        try:
            rows = query_dicts(conn, "SHOW SLAVE STATUS")
        finally:
            conn.close()
        if not rows:
            raise AssertionError("the replica has no replication configured")
        return rows[0]

    def lag(self) -> Any:
        """The replica's Seconds_Behind_Master (None when unknown)."""
        return self.status()["Seconds_Behind_Master"]

    def wait_running(self, timeout: float = 20) -> None:
        """Wait until both replication threads run; raise with the status otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.status()
            if st["Slave_IO_Running"] == "Yes" and st["Slave_SQL_Running"] == "Yes":
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"replication is not running: IO={st['Slave_IO_Running']} "
                    f"SQL={st['Slave_SQL_Running']} io_error={st['Last_IO_Error']!r} "
                    f"sql_error={st['Last_SQL_Error']!r}")
            time.sleep(0.05)

    def sync(self, timeout: int = 20) -> None:
        """Wait until the replica has applied everything the primary has logged so far."""
        prim = self.primary.connect()
        try:
            status = query_dicts(prim, "SHOW MASTER STATUS")[0]
        finally:
            prim.close()
        rep = self.replica.connect()
        try:
            got = query_dicts(rep, "SELECT MASTER_POS_WAIT(%s, %s, %s) AS w",
                              (status["File"], int(status["Position"]), timeout))[0]["w"]
        finally:
            rep.close()
        if got is None or int(got) < 0:
            raise AssertionError(f"replica did not reach {status['File']}:{status['Position']} "
                                 f"within {timeout}s (MASTER_POS_WAIT={got}): {self.status()}")

    # ----------------------------------------------------------------- control
    def execute_on_replica(self, sql: str) -> None:
        """Run one statement on the replica with a short-lived root connection."""
        conn = self.replica.connect()
        try:
            query(conn, sql)
        finally:
            conn.close()

    def stop_sql_thread(self) -> None:
        """STOP SLAVE SQL_THREAD: events are still received but no longer applied."""
        self.execute_on_replica("STOP SLAVE SQL_THREAD")

    def stop_replication(self) -> None:
        """STOP SLAVE: both threads stop."""
        self.execute_on_replica("STOP SLAVE")

    def start_replication(self) -> None:
        """START SLAVE (both threads) and wait until they run."""
        self.execute_on_replica("START SLAVE")
        self.wait_running()

    def heal(self) -> None:
        """Bring replication back to normal after a test: running, no delay, caught up."""
        self.execute_on_replica("STOP SLAVE")
        self.execute_on_replica("CHANGE MASTER TO MASTER_DELAY = 0")
        self.start_replication()
        self.sync()

    def monitor_spec(self) -> str:
        """A [controls] replicas entry for the replica over TCP, as the monitoring user."""
        return f"mysql://{MONITOR_USER}:{MONITOR_PASSWORD}@127.0.0.1:{self.replica.port}"

    def socket_spec(self) -> str:
        """A [controls] replicas entry for the replica over its unix socket, as root."""
        return f"mysql://root@localhost?socket={self.replica.socket}"
