"""Shared pytest fixtures: a private MariaDB per session and a scratch database per test.

Fixtures:

* ``server`` (session): a ``ThrowawayMariaDB`` in a temp dir (a ``ThrowawayMySQL``, made by
  ``mysqld --initialize-insecure``, when a MySQL mysqld is on PATH), or the server named by
  ``$ARCHIVE_TEST_DSN``; stopped at the end of the session.  Before
  each test that uses it, it is restarted if a previous test killed it.
* ``controllable_server``: the same server, but the test is skipped when it
  is external (cannot be killed or restarted).
* ``db``: a fresh database for this test (``helpers.ScratchDatabase``),
  dropped afterwards.
* ``spawn_cli``: ``spawn_cli(config, *args, **kw)`` starts archive.py like
  ``helpers.start_cli`` and kills whatever is still running at teardown.
* ``@pytest.mark.mariadb_only(reason=...)``: the test is skipped, with its reason, when the
  ``server`` is MySQL (``$ARCHIVE_TEST_DSN``): it uses INET4, INET6, UUID or MariaDB's JSON text.
* ``own_server`` (module): ``own_server(name, *options)`` starts a throwaway server of the
  module's own with server options (``--lower-case-table-names=1``), stopped after the module.
* ``galera_cluster`` (session, started only when a test asks for it): a real
  3-node ``galera.GaleraCluster`` on loopback (~10-12 s to form).  Before each
  test that uses it, nodes an earlier test killed are restarted and a lost
  quorum is re-bootstrapped.  Skipped when galera-4 or rsync is missing and
  we are not root (as root they are installed with apt-get).
* ``galera_db``: a fresh database on that cluster (created through node 0,
  a ``ScratchDatabase`` on node 0), dropped afterwards.

Set ``ARCHIVE_TEST_KEEP_SERVER=1`` to keep the throwaway servers' data dirs and logs; pytest
itself removes its temp dirs after a green run (``tmp_path_retention_policy`` in pyproject.toml),
so add ``-o tmp_path_retention_policy=all`` (or ``--basetemp DIR``, which it never removes).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from galera import GaleraCluster, ensure_requirements, make_basedir
from helpers import (
    CliProcess,
    ScratchDatabase,
    kill_process_group,
    remove_unless_kept,
    start_cli,
    unique_db_name,
)
from throwaway_server import (
    DSN_ENV_VAR,
    ThrowawayMariaDB,
    find_mysql_binary,
    server_dialect,
    server_from_dsn,
    session_server_class,
)


def _serve(server: Any, leftovers: Path) -> Iterator[Any]:
    """Start *server* (a server or cluster), yield it, stop it and remove *leftovers* (its data;
    see remove_unless_kept): the body of the session fixtures. A start that fails removes them
    too (a Galera base directory is in /tmp itself, outside pytest's temp dirs)."""
    try:
        server.start()
        yield server
    finally:
        server.stop()
        remove_unless_kept(leftovers)


def _scratch(server: Any, name: str, revive: Callable[[], None]) -> Iterator[ScratchDatabase]:
    """A fresh database *name* on *server* for one test; afterwards *revive* undoes what the
    test may have killed and the database is dropped: the body of the per-test fixtures."""
    scratch = ScratchDatabase.create(server, name)
    try:
        yield scratch
    finally:
        revive()
        scratch.drop()


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., ThrowawayMariaDB]]:
    """``own_server(name, *options)``: a throwaway server of the test module's own, started with
    server options a session server must not have; stopped and removed after the module. Skipped
    with an external server."""
    started: list[ThrowawayMariaDB] = []

    def start(name: str, *options: str) -> ThrowawayMariaDB:
        if os.environ.get(DSN_ENV_VAR):
            pytest.skip(f"starts a server of its own ({DSN_ENV_VAR} is set)")
        srv = ThrowawayMariaDB(tmp_path_factory.mktemp(name), list(options))
        started.append(srv)
        srv.start()
        return srv

    yield start
    for srv in started:
        srv.stop()
        remove_unless_kept(srv.basedir)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The server for the whole session: external via DSN, else a throwaway one (a MySQL when a
    MySQL mysqld is on PATH, else MariaDB)."""
    dsn = os.environ.get(DSN_ENV_VAR)
    if dsn:
        external = server_from_dsn(dsn)
        external.start()
        yield external
        return
    srv = session_server_class()(tmp_path_factory.mktemp("mariadb"))
    yield from _serve(srv, srv.datadir)


@pytest.fixture(scope="session")
def dest_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThrowawayMariaDB]:
    """A second throwaway server, the destination of the archive-into-another-server tests."""
    if os.environ.get(DSN_ENV_VAR):
        pytest.skip(f"needs a second throwaway server ({DSN_ENV_VAR} is set)")
    srv = ThrowawayMariaDB(tmp_path_factory.mktemp("dest"))
    yield from _serve(srv, srv.datadir)


@pytest.fixture
def dest_db(dest_server: ThrowawayMariaDB, request: pytest.FixtureRequest) -> Iterator[ScratchDatabase]:
    """A fresh database on the destination server; dropped afterwards."""
    dest_server.ensure_running()
    yield from _scratch(dest_server, unique_db_name(request.node.name, prefix="d_"),
                        dest_server.ensure_running)  # the test may have killed it


@pytest.fixture(autouse=True)
def _revive_server(request: pytest.FixtureRequest) -> None:
    """Restart the session server if an earlier test killed it (only for tests using it)."""
    if "server" in request.fixturenames:
        request.getfixturevalue("server").ensure_running()
    if "galera_cluster" in request.fixturenames:
        request.getfixturevalue("galera_cluster").heal()


@pytest.fixture(autouse=True)
def _skip_mariadb_only(request: pytest.FixtureRequest) -> None:
    """A test marked ``mariadb_only(reason=...)`` is skipped, saying why, when the server is MySQL."""
    marker = request.node.get_closest_marker("mariadb_only")
    if marker is None or "server" not in request.fixturenames:
        return
    found = server_dialect(request.getfixturevalue("server"))
    if found.mysql:
        pytest.skip(f"MariaDB only, the server is {found.name}: {marker.kwargs['reason']}")


@pytest.fixture
def controllable_server(server: Any) -> Any:
    """The session server; skips the test if it cannot be killed/restarted."""
    if not server.can_control:
        pytest.skip(f"needs a throwaway server it can kill/restart ({DSN_ENV_VAR} is set)")
    return server


@pytest.fixture
def db(server: Any, request: pytest.FixtureRequest) -> Iterator[ScratchDatabase]:
    """A fresh, empty utf8mb4 database named after the test; dropped afterwards."""
    yield from _scratch(server, unique_db_name(request.node.name),
                        server.ensure_running)  # the test may have killed the server


@pytest.fixture(scope="session")
def galera_cluster() -> Iterator[GaleraCluster]:
    """A 3-node Galera cluster for the whole session (its nodes run as the mysql user)."""
    problem = ensure_requirements()
    if problem:
        pytest.skip(problem)
    cluster = GaleraCluster(make_basedir())
    yield from _serve(cluster, cluster.basedir)


@pytest.fixture
def galera_db(galera_cluster: GaleraCluster,
              request: pytest.FixtureRequest) -> Iterator[ScratchDatabase]:
    """A fresh database on the cluster, made through node 0; dropped afterwards."""
    yield from _scratch(galera_cluster.nodes[0], unique_db_name(request.node.name),
                        galera_cluster.heal)  # the test may have killed nodes


@pytest.fixture
def spawn_cli() -> Iterator[Callable[..., CliProcess]]:
    """Factory starting archive.py processes; any still running at teardown are SIGKILLed."""
    procs: list[CliProcess] = []

    def spawn(config_path: Any, *args: Any, **kw: Any) -> CliProcess:
        proc = start_cli(config_path, *args, **kw)
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        kill_process_group(proc)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


# --------------------------------------------------------------------------- markers

# Fixtures that start or need MariaDB: this file's ``server`` (and so ``db`` and
# ``controllable_server``) and test_controls.py's primary+replica ``pair``.
SERVER_FIXTURES = frozenset({"server", "pair", "galera_cluster", "galera_db", "dest_server", "dest_db",
                             "own_server"})


# Fixtures that start MariaDB servers of their own (a cluster, a replica, TLS, server options).
OWN_SERVER_FIXTURES = (SERVER_FIXTURES - {"server"}) | {"tls_server", "tls_db", "plain_server"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs MariaDB with ``server``: those using a SERVER_FIXTURES
    fixture, directly or through another one (a test that starts mariadbd itself carries
    ``@pytest.mark.server``).  ``pytest -m "not server"`` runs the rest, the pure tests,
    without MariaDB; ``./dev.sh py39`` does.  With ``$ARCHIVE_TEST_DSN``, or a MySQL session
    server, a test that starts MariaDB servers of its own is skipped, as the README says: only
    that server is under test (and its machine may have no MariaDB to start, nor want galera-4
    installed as root)."""
    external = bool(os.environ.get(DSN_ENV_VAR))
    why = f"{DSN_ENV_VAR} is set" if external else "the session's server is a MySQL"
    external = external or find_mysql_binary() is not None
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if SERVER_FIXTURES.intersection(names):
            item.add_marker(pytest.mark.server)
        if external and (OWN_SERVER_FIXTURES.intersection(names) or (
                item.get_closest_marker("server") is not None and "server" not in names)):
            item.add_marker(pytest.mark.skip(reason=f"starts MariaDB servers of its own ({why})"))
