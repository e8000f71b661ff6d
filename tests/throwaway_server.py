"""Private, disposable MariaDB servers for the test suite.

``ThrowawayMariaDB`` initialises a data directory under a base directory of
your choosing and runs its own ``mariadbd`` there, on a private unix socket and
(by default) with networking disabled, so tests never touch a real server.  It
can be stopped cleanly, SIGKILLed (to simulate a crash) and restarted on the
same data directory.

``ExternalServer`` (built by ``server_from_dsn``) wraps an already-running
server described by a DSN such as ``mysql://root:pw@127.0.0.1:3306`` or
``mysql://root@localhost/?unix_socket=/run/mysqld/mysqld.sock``.  It offers
the same ``connect``/``connection_kwargs`` API, but ``kill``/``restart`` raise
``ServerControlUnavailable``; tests that need them should skip.

Example::

    with ThrowawayMariaDB("/tmp/mdb") as srv:
        conn = srv.connect()
        cur = conn.cursor()
        cur.execute("SELECT VERSION()")
"""

from __future__ import annotations

import atexit
import ctypes
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import mysql.connector

import archive

__all__ = [
    "DSN_ENV_VAR",
    "ExternalServer",
    "ServerControlUnavailable",
    "ServerStartError",
    "ThrowawayMariaDB",
    "ThrowawayMySQL",
    "find_mariadb_binary",
    "find_mysql_binary",
    "server_dialect",
    "server_from_dsn",
    "session_server_class",
]

DSN_ENV_VAR = "ARCHIVE_TEST_DSN"

# Directories searched in addition to $PATH (mariadbd lives in /usr/sbin on
# Debian, which is often not on a non-root user's PATH).
_EXTRA_BIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/usr/local/mysql/bin", "/usr/libexec")

# Longest unix socket path we dare use (sun_path is 108 bytes on Linux).
_MAX_SOCKET_PATH = 100

# Options every throwaway server gets (after --no-defaults and the path options).
DEFAULT_SERVER_OPTIONS = (
    "--innodb-buffer-pool-size=64M",
    "--innodb-log-file-size=48M",
    "--max-connections=200",
    "--character-set-server=utf8mb4",
    "--collation-server=utf8mb4_general_ci",
    "--skip-name-resolve",
)

# Collation pinned by connect(), so test connections behave the same on
# MariaDB and MySQL (MySQL 8 would otherwise default to utf8mb4_0900_ai_ci).
CONNECT_COLLATION = "utf8mb4_general_ci"


class ServerStartError(RuntimeError):
    """The server could not be initialised or did not become ready."""


class ServerControlUnavailable(RuntimeError):
    """The server is external, so it cannot be killed, stopped or restarted."""


def find_mariadb_binary(*names: str) -> str | None:
    """Return the full path of the first of *names* found on PATH or in sbin dirs."""
    search = os.pathsep.join([os.environ.get("PATH", ""), *_EXTRA_BIN_DIRS])
    for name in names:
        found = shutil.which(name, path=search)
        if found:
            return found
    return None


def _term_when_parent_dies() -> None:
    """In the forked child: ask Linux for SIGTERM when the parent dies (no-op elsewhere)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def _tail(path: Path, lines: int = 40) -> str:
    """Return the last *lines* lines of a text file, or a note if it is missing."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def _chown_tree(path: Path, user: str) -> None:
    """Give *path* and everything below it to *user* and that user's primary group."""
    pw = pwd.getpwnam(user)
    for top, dirs, files in os.walk(path):
        for name in [top, *(os.path.join(top, n) for n in dirs + files)]:
            os.chown(name, pw.pw_uid, pw.pw_gid, follow_symlinks=False)


def _as_user(user: str | None) -> dict[str, Any]:
    """Popen keyword arguments that run the child as *user* with only its primary group."""
    if user is None:
        return {}
    pw = pwd.getpwnam(user)
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


class _ServerBase:
    """What both kinds of test server share: connecting and the context-manager protocol."""

    user: str
    password: str
    host: str | None  # None when clients use the unix socket
    port: int | None

    @property
    def client_socket(self) -> str | None:
        """The unix socket clients should use, or None for TCP."""
        raise NotImplementedError

    def start(self) -> None:
        """Make the server answer (subclasses say how)."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the server, if it is ours to stop (subclasses say how)."""
        raise NotImplementedError

    def __enter__(self) -> Any:
        """Start the server (an external one is only checked)."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server (an external one is left alone)."""
        self.stop()

    def connection_kwargs(self, database: str | None = None) -> dict[str, Any]:
        """Return mysql.connector.connect() keyword arguments for this server."""
        kw: dict[str, Any] = {"user": self.user, "password": self.password}
        if self.client_socket:
            kw["unix_socket"] = self.client_socket
        else:
            kw.update(host=self.host, port=self.port)
        if database is not None:
            kw["database"] = database
        return kw

    def connect(self, database: str | None = None, **kw: Any) -> Any:
        """Open an autocommit utf8mb4 mysql.connector connection."""
        return _connect(self.connection_kwargs(database), kw)

    def client_host(self) -> str:
        """The host part of an account the tests connect as, as the server sees them: 'localhost'
        through a socket, over TCP the client's address (or its name, if the server resolves
        names), so a user created at it can log in from an ARCHIVE_TEST_DSN server too."""
        conn = self.connect()
        try:
            cursor = conn.cursor()
            cursor.execute("SELECT SUBSTRING_INDEX(USER(), '@', -1)")
            return str(cursor.fetchall()[0][0])
        finally:
            conn.close()


class ThrowawayMariaDB(_ServerBase):
    """A mariadbd of our own, running on a data directory inside *basedir*."""

    def __init__(
        self,
        basedir: str | os.PathLike[str],
        extra_args: list[str] | None = None,
        *,
        port: int | None = None,
        startup_timeout: float = 60.0,
        shutdown_timeout: float = 60.0,
        die_with_parent: bool = True,
        os_user: str | None = None,
    ) -> None:
        """Prepare paths; nothing is started until ``start()``.

        ``extra_args`` are appended to the mariadbd command line (later options
        win), e.g. ``["--log-bin", "--server-id=1"]``.  ``port`` enables TCP on
        127.0.0.1:port instead of ``--skip-networking``.  With
        ``die_with_parent`` (Linux) mariadbd gets SIGTERM when the thread that
        called ``start()`` dies, so a killed test run leaves no server behind.
        ``os_user`` (only when we are root) runs mariadbd as that OS user
        instead of root: *basedir* is chowned to it and the process is started
        as that user, not through ``--user`` (Linux clears the parent-death
        signal when a process changes its own uid).
        """
        self.basedir = Path(basedir).resolve()
        self.extra_args: list[str] = list(extra_args or [])
        self.port = port
        self.host = "127.0.0.1" if port is not None else None
        self.startup_timeout = startup_timeout
        self.die_with_parent = die_with_parent
        self.shutdown_timeout = shutdown_timeout
        self.os_user = os_user if os.geteuid() == 0 else None
        self.datadir = self.basedir / "data"
        self.tmpdir = self.basedir / "tmp"
        self.error_log = self.basedir / "mariadbd.err"
        self.install_log = self.basedir / "install-db.log"
        self.stdout_log = self.basedir / "mariadbd.out"
        self.pid_file = self.basedir / "mariadbd.pid"
        self.socket = str(self.basedir / "mysqld.sock")
        if len(self.socket) > _MAX_SOCKET_PATH:
            short = tempfile.mkdtemp(prefix="mdbsock-")
            # In TMPDIR, outside basedir: nothing else removes it. At exit, after the server
            # stopped (atexit runs the later _stop_at_exit first): its socket is gone with it.
            atexit.register(shutil.rmtree, short, True)
            self.socket = os.path.join(short, "mysqld.sock")
        self.user = "root"
        self.password = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._atexit_registered = False

    # ------------------------------------------------------------------ info
    @property
    def pid(self) -> int | None:
        """PID of the running mariadbd, or None when it is not running."""
        if self._proc is None or self._proc.poll() is not None:
            return None
        return self._proc.pid

    @property
    def can_control(self) -> bool:
        """True: this server can be killed, stopped and restarted."""
        return True

    def is_running(self) -> bool:
        """Return True while our mariadbd process is alive."""
        return self.pid is not None

    def error_log_tail(self, lines: int = 40) -> str:
        """Return the last lines of the server's error log."""
        return _tail(self.error_log, lines)

    def __repr__(self) -> str:
        """Show where the server lives and whether it runs."""
        return f"<ThrowawayMariaDB {self.basedir} pid={self.pid}>"

    # -------------------------------------------------------------- lifecycle
    def _install(self) -> None:
        """Create the system tables in a fresh data directory (first start only)."""
        install_db = find_mariadb_binary("mariadb-install-db", "mysql_install_db")
        if install_db is None:
            raise ServerStartError(
                "mariadb-install-db not found; install the mariadb-server package "
                f"(apt-get install mariadb-server) or set {DSN_ENV_VAR}"
            )
        cmd = [
            install_db,
            "--no-defaults",
            f"--datadir={self.datadir}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
            "--innodb-log-file-size=48M",
            f"--tmpdir={self.tmpdir}",  # concurrent installs clash over /tmp/#sql-temptable-*
        ]
        if os.geteuid() == 0:
            cmd.append(f"--user={self.os_user or 'root'}")
        with open(self.install_log, "wb") as log:
            result = subprocess.run(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                check=False, timeout=self.startup_timeout,
            )
        if result.returncode != 0:
            shutil.rmtree(self.datadir, ignore_errors=True)
            raise ServerStartError(
                f"{' '.join(cmd)} failed with exit code {result.returncode}:\n"
                + _tail(self.install_log)
            )

    def binary(self) -> str:
        """The server program to run."""
        mariadbd = find_mariadb_binary("mariadbd", "mysqld")
        if mariadbd is None:
            raise ServerStartError(
                "mariadbd not found; install the mariadb-server package "
                f"(apt-get install mariadb-server) or set {DSN_ENV_VAR}"
            )
        return mariadbd

    def command(self) -> list[str]:
        """Return the mariadbd command line (``--no-defaults`` first)."""
        mariadbd = self.binary()
        cmd = [
            mariadbd,
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--socket={self.socket}",
            f"--pid-file={self.pid_file}",
            f"--log-error={self.error_log}",
            f"--tmpdir={self.tmpdir}",
        ]
        if self.port is None:
            cmd.append("--skip-networking")
        else:
            cmd += [f"--port={self.port}", "--bind-address=127.0.0.1"]
        if os.geteuid() == 0 and self.os_user is None:
            cmd.append("--user=root")
        cmd += DEFAULT_SERVER_OPTIONS
        if not any(a.startswith(("--log-bin", "--log_bin")) for a in self.extra_args):
            cmd.append("--skip-log-bin")
        return cmd + self.extra_args

    def prepare(self) -> None:
        """Create the directories and install the data directory, unless done before."""
        self.basedir.mkdir(parents=True, exist_ok=True)
        self.tmpdir.mkdir(exist_ok=True)
        self._give_to_os_user()  # install-db's bootstrap server writes tmpdir too
        if not (self.datadir / "mysql").is_dir():
            self._install()
            self._give_to_os_user()

    def start(self) -> None:
        """Install the data directory if needed, launch mariadbd and wait until usable."""
        if self.is_running():
            return
        self.prepare()
        with open(self.stdout_log, "ab") as out:
            self._proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=_term_when_parent_dies if self.die_with_parent else None,
                **_as_user(self.os_user),
            )
        if not self._atexit_registered:
            atexit.register(self._stop_at_exit)
            self._atexit_registered = True
        try:
            self._wait_ready()
        except BaseException:
            self._kill_process()
            raise

    def _give_to_os_user(self) -> None:
        """With ``os_user``: chown the base directory (and a separate socket dir) to it."""
        if self.os_user is None:
            return
        _chown_tree(self.basedir, self.os_user)
        socket_dir = Path(self.socket).parent
        if socket_dir != self.basedir:
            _chown_tree(socket_dir, self.os_user)

    def _wait_ready(self) -> None:
        """Poll until a real connection runs ``SELECT 1``, or raise ServerStartError."""
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                raise ServerStartError(
                    f"mariadbd exited with code {code} during startup; "
                    f"error log {self.error_log}:\n{self.error_log_tail()}"
                )
            try:
                conn = self.connect(connection_timeout=2)
                try:
                    cur = conn.cursor()
                    cur.execute("SELECT 1")
                    cur.fetchall()
                    cur.close()
                    return
                finally:
                    conn.close()
            except mysql.connector.Error as exc:
                last_error = exc
            time.sleep(0.1)
        raise ServerStartError(
            f"mariadbd not ready after {self.startup_timeout:.0f}s "
            f"(last error: {last_error}); error log {self.error_log}:\n"
            f"{self.error_log_tail()}"
        )

    def stop(self) -> None:
        """Shut down cleanly (SIGTERM, wait), SIGKILL after ``shutdown_timeout``."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=self.shutdown_timeout)
            except subprocess.TimeoutExpired:
                self._kill_process()
        self._proc = None

    def kill(self) -> None:
        """SIGKILL mariadbd and reap it, simulating a server crash."""
        if self._proc is None or self._proc.poll() is not None:
            raise RuntimeError("kill(): mariadbd is not running")
        self._kill_process()

    def _kill_process(self) -> None:
        """SIGKILL our mariadbd process group (if alive) and wait for it."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)
        self._proc = None

    def restart(self) -> None:
        """Stop (if running) and start again on the same data directory."""
        self.stop()
        self.start()

    def ensure_running(self) -> None:
        """Start the server again if its process has died (e.g. after ``kill()``)."""
        if not self.is_running():
            self._proc = None
            self.start()

    def _stop_at_exit(self) -> None:
        """atexit safety net: never leave a mariadbd behind."""
        try:
            self.stop()
        except Exception:  # pragma: no cover - best effort at interpreter exit
            self._kill_process()

    @property
    def client_socket(self) -> str | None:
        """The private socket, unless the server was started on a TCP port."""
        return str(self.socket) if self.port is None else None


def find_mysql_binary() -> str | None:
    """A MySQL mysqld (not MariaDB's: Debian's mariadb-server installs a mysqld too) on PATH or in
    the sbin dirs, told by what its --version prints; None without one."""
    mysqld = find_mariadb_binary("mysqld")
    if mysqld is None:
        return None
    try:
        version = subprocess.run([mysqld, "--version"], capture_output=True, text=True, timeout=30,
                                 check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return mysqld if " Ver " in version and "mariadb" not in version.lower() else None


class ThrowawayMySQL(ThrowawayMariaDB):
    """A MySQL 8.0+ mysqld of our own, initialised with ``mysqld --initialize-insecure`` (root
    without a password on the private socket); otherwise a ThrowawayMariaDB. Not run where this
    was written (no MySQL could be installed there): the options follow the MySQL 8.0/8.4 manual."""

    def binary(self) -> str:
        """The MySQL mysqld found on PATH."""
        mysqld = find_mysql_binary()
        if mysqld is None:
            raise ServerStartError("no MySQL mysqld on PATH (a MariaDB one does not count)")
        return mysqld

    def install_command(self) -> list[str]:
        """mysqld --initialize-insecure on an empty data directory (it must not exist yet):
        https://dev.mysql.com/doc/refman/8.0/en/data-directory-initialization.html"""
        cmd = [self.binary(), "--no-defaults", "--initialize-insecure", f"--datadir={self.datadir}",
               f"--tmpdir={self.tmpdir}", f"--log-error={self.install_log}"]
        if os.geteuid() == 0:
            cmd.append(f"--user={self.os_user or 'root'}")
        return cmd

    def _install(self) -> None:
        """Create the system tables in a fresh data directory (first start only)."""
        cmd = self.install_command()
        result = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, check=False, timeout=self.startup_timeout)
        if result.returncode != 0:
            shutil.rmtree(self.datadir, ignore_errors=True)
            raise ServerStartError(f"{' '.join(cmd)} failed with exit code {result.returncode}:\n"
                                   + _tail(self.install_log))

    def command(self) -> list[str]:
        """The mariadbd command line, for MySQL: no X Protocol listener (its port 33060 and socket
        would clash between servers), secure_file_priv in our tmpdir (a packaged default directory
        may not exist, and the server would not start), and no redo log size option (MySQL
        8.0.30 deprecates innodb_log_file_size)."""
        cmd = super().command()
        own = len(cmd) - len(self.extra_args)  # the caller's options come last, and win
        head = [arg for arg in cmd[:own] if not arg.startswith("--innodb-log-file-size")]
        return [*head, "--mysqlx=OFF", f"--secure-file-priv={self.tmpdir}", *cmd[own:]]


def session_server_class() -> type[ThrowawayMariaDB]:
    """The throwaway server the session's tests run on: a MySQL when a MySQL mysqld is on PATH."""
    return ThrowawayMySQL if find_mysql_binary() is not None else ThrowawayMariaDB


class ExternalServer(_ServerBase):
    """An already-running server reached through a DSN; it cannot be controlled."""

    def __init__(
        self,
        user: str = "root",
        password: str = "",
        host: str | None = "127.0.0.1",
        port: int | None = 3306,
        unix_socket: str | None = None,
    ) -> None:
        """Remember how to connect; use ``server_from_dsn`` to build one from a DSN."""
        self.user = user
        self.password = password
        self.socket = unix_socket
        self.host = None if unix_socket else host
        self.port = None if unix_socket else port

    @property
    def pid(self) -> int | None:
        """Always None: the process is not ours."""
        return None

    @property
    def can_control(self) -> bool:
        """False: kill/stop/restart are unavailable."""
        return False

    def __repr__(self) -> str:
        """Show where the server is."""
        where = self.socket or f"{self.host}:{self.port}"
        return f"<ExternalServer {self.user}@{where}>"

    def _refuse(self, what: str) -> None:
        """Raise ServerControlUnavailable for *what*."""
        raise ServerControlUnavailable(
            f"{what}() is not possible on an external server ({self!r}, from "
            f"{DSN_ENV_VAR}); unset {DSN_ENV_VAR} to use a throwaway server"
        )

    def start(self) -> None:
        """Check the server answers (it is not ours to start)."""
        conn = self.connect(connection_timeout=5)
        conn.close()

    def stop(self) -> None:
        """Do nothing: the server is not ours to stop."""

    def is_running(self) -> bool:
        """Assume the external server is up."""
        return True

    def ensure_running(self) -> None:
        """Do nothing: the server is not ours to restart."""

    def kill(self) -> None:
        """Refuse: raise ServerControlUnavailable."""
        self._refuse("kill")

    def restart(self) -> None:
        """Refuse: raise ServerControlUnavailable."""
        self._refuse("restart")

    def error_log_tail(self, lines: int = 40) -> str:
        """Return a note: the error log of an external server is not available."""
        return "<external server: error log not available>"

    @property
    def client_socket(self) -> str | None:
        """The socket named in the DSN, if any."""
        return self.socket or None


def _connect(base: dict[str, Any], extra: dict[str, Any]) -> Any:
    """Connect with *base* kwargs, autocommit and utf8mb4, overridable by *extra*."""
    kw: dict[str, Any] = {
        **base,
        "autocommit": True,
        "charset": "utf8mb4",
        "collation": CONNECT_COLLATION,
    }
    kw.update(extra)
    return mysql.connector.connect(**kw)


_DIALECTS: dict[int, archive.Dialect] = {}


def server_dialect(server: Any) -> archive.Dialect:
    """Which server *server* is (MariaDB, MySQL, ...), as archive.py tells it; asked once."""
    if id(server) not in _DIALECTS:
        conn = server.connect()
        try:
            cur = conn.cursor()
            cur.execute(archive.DIALECT_SQL)
            _DIALECTS[id(server)] = archive.dialect_of({str(k).lower(): str(v) for k, v in cur.fetchall()})
        finally:
            conn.close()
    return _DIALECTS[id(server)]


def server_from_dsn(dsn: str) -> ExternalServer:
    """Build an ExternalServer from ``mysql://user:pw@host:port/?unix_socket=PATH``.

    Parsed by archive.py's own reader of ``[controls] replicas`` entries (the same
    form; ``socket=`` works too); ``mariadb://`` is read as ``mysql://``.  User
    defaults to root, port to 3306, password to empty; percent-escapes in user
    and password are decoded.
    """
    scheme, _, rest = dsn.partition("://")
    if scheme not in ("mysql", "mariadb"):
        raise ValueError(f"unsupported DSN scheme {scheme!r} in {dsn!r}; use mysql://")
    settings = archive.parse_replica("mysql://" + rest, archive.DbSettings())
    host, port = settings.hosts[0] if settings.hosts else (None, None)
    return ExternalServer(user=settings.user or "root", password=settings.password or "",
                          host=host, port=port, unix_socket=settings.unix_socket)
