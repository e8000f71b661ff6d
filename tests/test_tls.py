"""TLS against a real MariaDB started with a CA and a server certificate made here with openssl,
and require_secure_transport=ON: a verified session works; a certificate signed by another CA, an
expired one or one for another host name is refused before anything is touched."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from checks import text_log
from helpers import (
    ScratchDatabase,
    create_rewards_tables,
    insert_rewards,
    rewards_source_ddl,
    run_cli,
    unique_db_name,
    write_config,
    write_csv,
)
from replication import free_port
from throwaway_server import ThrowawayMariaDB

pytestmark = [pytest.mark.server,
              pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")]

SERVER_NAMES = "subjectAltName=IP:127.0.0.1,DNS:localhost\n"  # not 127.0.0.2: the wrong host name


def openssl(directory: Path, *args: str) -> None:
    """Run one openssl command in *directory*."""
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=60)


def make_ca(directory: Path, name: str) -> None:
    """A self-signed CA: name.pem and name.key."""
    openssl(directory, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN=archive.py test {name}")


def make_server_certs(directory: Path) -> None:
    """ca.pem signs server.pem (valid for 127.0.0.1 and localhost) and expired.pem (same key)."""
    make_ca(directory, "ca")
    make_ca(directory, "wrong-ca")
    openssl(directory, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1")
    (directory / "names.cnf").write_text(SERVER_NAMES)
    for name, days in (("server.pem", "2"), ("expired.pem", "-1")):  # -1: expired a day before it began
        openssl(directory, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", name, "-days", days, "-extfile", "names.cnf")
    shutil.copy(directory / "server.pem", directory / "good.pem")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory of the CA, the wrong CA and the server's certificates."""
    directory = tmp_path_factory.mktemp("certs")
    make_server_certs(directory)
    return directory


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory, certs: Path) -> Iterator[ThrowawayMariaDB]:
    """A MariaDB on TCP that takes only encrypted connections, listening on 127.0.0.1 and
    127.0.0.2 (the address its certificate does not name)."""
    srv = ThrowawayMariaDB(tmp_path_factory.mktemp("tls"), [
        f"--ssl-ca={certs / 'ca.pem'}", f"--ssl-cert={certs / 'server.pem'}",
        f"--ssl-key={certs / 'server.key'}",
        "--require-secure-transport=ON", "--bind-address=127.0.0.1,127.0.0.2"], port=free_port())
    srv.start()
    yield srv
    srv.stop()
    shutil.rmtree(srv.basedir, ignore_errors=True)


@pytest.fixture
def tls_db(tls_server: ThrowawayMariaDB, request: pytest.FixtureRequest) -> Iterator[ScratchDatabase]:
    """A fresh database with 30 rewards rows and a key file for ids 1-20."""
    scratch = ScratchDatabase.create(tls_server, unique_db_name(request.node.name))
    try:
        create_rewards_tables(scratch)
        insert_rewards(scratch, range(1, 31))
        yield scratch
    finally:
        scratch.drop()


def tls_config(tmp_path: Path, db: ScratchDatabase, **overrides: Any) -> Path:
    """A config for *db* with its key file written."""
    path = write_config(tmp_path, db, **overrides)
    write_csv(tmp_path / "csv" / "keys.csv", range(1, 21))
    return path


def untouched(db: ScratchDatabase) -> bool:
    """Every row still in the source, nothing archived, no tracking table created."""
    tables = {row[0] for row in db.query("SHOW TABLES")}
    counts = db.query("SELECT (SELECT COUNT(*) FROM rewards), (SELECT COUNT(*) FROM rewards_archives)")
    return tables == {"rewards", "rewards_archives"} and counts == [(30, 0)]


def test_a_verified_session_runs_on_a_server_that_requires_tls(
        tmp_path: Path, tls_db: ScratchDatabase, certs: Path) -> None:
    config = tls_config(tmp_path, tls_db, database__ssl_ca=certs / "ca.pem")
    check = run_cli(config, "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    tls_line = next(line for line in check.stdout.splitlines() if line.startswith("tls: "))
    assert "encrypted (TLSv1." in tls_line
    assert f"certificate verified against {certs / 'ca.pem'}, host name checked" in tls_line
    result = run_cli(config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert tls_db.query("SELECT COUNT(*) FROM rewards") == [(10,)]
    # the run's text log says so too, for every run, not only a --check
    logged = [line for line in text_log(tmp_path).splitlines() if "TLS: " in line]
    assert len(logged) == 1 and tls_line[len("tls: "):] in logged[0], (logged, tls_line)
    assert tls_db.query("SELECT COUNT(*) FROM rewards_archives") == [(20,)]


def test_check_says_when_the_certificate_is_not_verified(tmp_path: Path, tls_db: ScratchDatabase) -> None:
    check = run_cli(tls_config(tmp_path, tls_db), "--check")
    assert "certificate NOT verified (set [database] ssl_ca to verify it)" in check.stdout, check.stdout


@pytest.mark.parametrize("setting, cause", [
    ({"database__ssl_ca": "wrong-ca.pem"}, "certificate verify failed"),
    ({"database__host": "127.0.0.2"}, "certificate verify failed"),
    ({"database__ssl_disabled": "yes"}, "Access denied"),  # require_secure_transport refuses plain text
])
def test_an_unverified_server_is_refused_before_anything_is_touched(
        tmp_path: Path, tls_db: ScratchDatabase, certs: Path, setting: dict[str, str], cause: str) -> None:
    settings = {"database__ssl_ca": certs / "ca.pem", **setting}
    if "database__ssl_disabled" in setting:
        settings.pop("database__ssl_ca")
    else:
        settings["database__ssl_ca"] = certs / Path(str(settings["database__ssl_ca"])).name
    result = run_cli(tls_config(tmp_path, tls_db, **settings))
    assert result.returncode == 1, result.stdout + result.stderr
    assert cause in result.stderr and "cannot connect to" in result.stderr, result.stderr
    if "database__ssl_disabled" not in setting:
        assert "(TLS: the server's certificate is not signed by [database] ssl_ca" in result.stderr
    assert untouched(tls_db)


def test_an_expired_certificate_is_refused(tmp_path: Path, tls_db: ScratchDatabase, certs: Path) -> None:
    config = tls_config(tmp_path, tls_db, database__ssl_ca=certs / "ca.pem")
    shutil.copy(certs / "expired.pem", certs / "server.pem")
    try:
        tls_db.execute("FLUSH SSL")  # the server reads its certificate files again
        result = run_cli(config)
    finally:
        shutil.copy(certs / "good.pem", certs / "server.pem")
        tls_db.execute("FLUSH SSL")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "certificate verify failed" in result.stderr and "has expired" in result.stderr, result.stderr
    assert untouched(tls_db)
    assert run_cli(config).returncode == 0  # the good certificate again


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThrowawayMariaDB]:
    """A MariaDB on TCP without TLS."""
    srv = ThrowawayMariaDB(tmp_path_factory.mktemp("plain"), port=free_port())
    srv.start()
    yield srv
    srv.stop()
    shutil.rmtree(srv.basedir, ignore_errors=True)


def test_a_server_without_tls_is_refused_when_a_ca_is_given(
        tmp_path: Path, plain_server: ThrowawayMariaDB, certs: Path, request: pytest.FixtureRequest) -> None:
    """The connector itself falls back to plain text with ssl_ca when the server offers no TLS."""
    scratch = ScratchDatabase.create(plain_server, unique_db_name(request.node.name))
    try:
        create_rewards_tables(scratch)
        insert_rewards(scratch, range(1, 31))
        config = tls_config(tmp_path, scratch, database__ssl_ca=certs / "ca.pem")
        result = run_cli(config)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "SSL is required but the server doesn't support it" in result.stderr, result.stderr
        assert "(TLS:" not in result.stderr  # no certificate was looked at
        # Without the host name check the connector falls back to plain text: archive.py refuses.
        result = run_cli(write_config(tmp_path, scratch, database__ssl_ca=certs / "ca.pem",
                                      database__ssl_verify_identity="no"))
        assert result.returncode == 1, result.stdout + result.stderr
        assert "the session is not encrypted although [database] ssl_ca is set" in result.stderr, \
            result.stderr
        assert untouched(scratch)
        where = f"127.0.0.1:{plain_server.port}"
        replica = f"mysql://root@{where}/?ssl_ca={certs / 'ca.pem'}&ssl_verify_identity=no"
        check = run_cli(write_config(tmp_path, scratch, controls__replicas=replica))
        assert check.returncode == 1, check.stdout + check.stderr
        assert f"[controls] replicas {replica!r} ssl_ca is set" in check.stderr, check.stderr
    finally:
        scratch.drop()


def test_a_destination_is_verified_with_its_own_ca(
        tmp_path: Path, db: ScratchDatabase, tls_db: ScratchDatabase, certs: Path) -> None:
    """The source on the session's server, the archive on the TLS server as [destination]."""
    db.execute(rewards_source_ddl())
    insert_rewards(db, range(1, 31))
    tls_db.execute("DROP TABLE rewards")  # the destination holds only the archive
    kw = tls_db.connection_kwargs()
    dest = {"destination__host": f"{kw['host']}:{kw['port']}", "destination__user": kw["user"],
            "destination__password": kw["password"], "destination__database": tls_db.name}
    wrong = tls_config(tmp_path, db, **dest, destination__ssl_ca=certs / "wrong-ca.pem")
    refused = run_cli(wrong)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "(TLS: the server's certificate is not signed by [destination] ssl_ca" in refused.stderr
    assert db.count("rewards") == 30 and tls_db.count("rewards_archives") == 0
    config = write_config(tmp_path, db, **dest, destination__ssl_ca=certs / "ca.pem")
    check = run_cli(config, "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"tls: root@{kw['host']}:{kw['port']}: encrypted (TLSv1." in check.stdout, check.stdout
    result = run_cli(config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert db.count("rewards") == 10 and tls_db.count("rewards_archives") == 20


def test_a_user_created_require_x509_logs_in_with_its_client_certificate(
        tmp_path: Path, tls_server: ThrowawayMariaDB, tls_db: ScratchDatabase, certs: Path) -> None:
    """ssl_cert and ssl_key: the client's certificate, signed by the server's CA."""
    if not (certs / "client.pem").exists():
        openssl(certs, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key", "-out", "client.csr",
                "-subj", "/CN=archiver")
        openssl(certs, "x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", "client.pem", "-days", "2")
    user, host = "x509_archiver", tls_server.client_host()
    tls_db.execute(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY 'X509-pw-1' REQUIRE X509")
    try:
        tls_db.execute(f"GRANT ALL ON `{tls_db.name}`.* TO '{user}'@'{host}'")
        tls_db.execute(f"GRANT PROCESS ON *.* TO '{user}'@'{host}'")
        settings: dict[str, Any] = {"database__user": user, "database__password": "X509-pw-1",
                                    "database__ssl_ca": certs / "ca.pem"}
        refused = run_cli(tls_config(tmp_path, tls_db, **settings))
        assert refused.returncode == 1 and "Access denied" in refused.stderr, refused.stdout + refused.stderr
        assert untouched(tls_db)
        result = run_cli(write_config(tmp_path, tls_db, **settings, database__ssl_cert=certs / "client.pem",
                                      database__ssl_key=certs / "client.key"))
        assert result.returncode == 0, result.stdout + result.stderr
        assert tls_db.count("rewards") == 10 and tls_db.count("rewards_archives") == 20
    finally:
        tls_db.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")
