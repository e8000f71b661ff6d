"""A unix-socket proxy in front of a test server that can cut a connection at a chosen moment.

Used to lose the answer to a COMMIT for real: the statement reaches the server and
commits there, and the client sees only a dropped connection (error 2013), as
when a network link or a cluster node dies at the wrong instant.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers import ScratchDatabase, run_cli, write_config


class CuttingProxy:
    """Relays client connections to `target`; the first client packet matching `cut_after` is
    forwarded (or, with forward=False, dropped), then, after `delay` seconds, that connection is
    closed on both sides."""

    def __init__(self, path: Path, target: str, cut_after: Callable[[bytes], bool], delay: float = 0.5,
                 forward: bool = True):
        self.path, self.target, self.cut_after, self.delay = path, target, cut_after, delay
        self.forward = forward
        self.cuts = 0
        self.armed = True
        self.muted: set[int] = set()  # connections whose answers are no longer passed on
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(16)
        self.closing = False
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self) -> None:
        """Accept clients until closed; each gets its own pair of relay threads."""
        while not self.closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.connect(self.target)
            pair = (client, server)
            threading.Thread(target=self.relay, args=(client, server, pair, True), daemon=True).start()
            threading.Thread(target=self.relay, args=(server, client, pair, False), daemon=True).start()

    def relay(self, source: socket.socket, sink: socket.socket, pair: tuple[socket.socket, socket.socket],
              from_client: bool) -> None:
        """Copy bytes one way; on the trigger, forward, wait, then cut the whole connection."""
        try:
            while data := source.recv(65536):
                if not from_client and id(pair) in self.muted:
                    continue  # the answer is lost with the connection
                if from_client and self.armed and self.cut_after(data):
                    self.armed = False
                    self.muted.add(id(pair))
                if self.forward or id(pair) not in self.muted:
                    sink.sendall(data)
                if id(pair) in self.muted and from_client:
                    time.sleep(self.delay)  # let the server finish the statement before the cut
                    self.cuts += 1
                    for sock in pair:
                        with contextlib.suppress(OSError):
                            sock.shutdown(socket.SHUT_RDWR)
                    return
        except OSError:
            pass
        finally:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.close()

    def close(self) -> None:
        """Stop accepting (open relays end with their connections)."""
        self.closing = True
        with contextlib.suppress(OSError):
            self.listener.close()


def need_socket(server: Any) -> None:
    """Skip the test unless *server* is reached through a unix socket a proxy can stand in front of."""
    if not getattr(server, "client_socket", None):
        pytest.skip("needs the throwaway server's unix socket for the proxy")


def run_cli_cut(tmp_path: str | os.PathLike[str], db: ScratchDatabase, cut_after: Callable[[bytes], bool], *,
                delay: float = 0.5, forward: bool = True,
                **config: Any) -> tuple[subprocess.CompletedProcess[str], CuttingProxy]:
    """Run archive.py once on ``write_config(tmp_path, db, **config)`` with its connection to the
    source going through a CuttingProxy (`cut_after`, `delay`, `forward`) in front of db's server
    (see need_socket); return the run's result and the proxy, closed, to count its cuts."""
    proxy = CuttingProxy(Path(tmp_path) / "proxy.sock", db.server.client_socket, cut_after, delay, forward)
    try:
        return run_cli(write_config(tmp_path, db, database__unix_socket=proxy.path, **config)), proxy
    finally:
        proxy.close()
