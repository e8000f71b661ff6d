"""Config validation: every bad value exits 2 naming its [section] key, before any database work."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import archive

BASE = """
[database]
host = 127.0.0.1
port = 3306
user = archiver
password = secret
database = app
[archive]
source_table = rewards
archive_table = rewards_archives
key_column = id
csv_dir = {csv}
csv_pattern = *.csv
csv_column = id            ; header name of the key column in the CSV files
batch_size = 1000
log_dir = {logs}
"""


@pytest.fixture
def ini(tmp_path: Path):
    """Write a config with some lines replaced; return its path."""
    (tmp_path / "csv").mkdir()
    (tmp_path / "logs").mkdir()

    def write(replace: dict[str, str | None] | None = None, extra: str = "") -> Path:
        lines = BASE.format(csv=tmp_path / "csv", logs=tmp_path / "logs").splitlines()
        for key, value in (replace or {}).items():
            lines = [line for line in lines if not line.startswith(f"{key} =")]
            if value is not None:
                in_database = key.startswith("ssl_") or key in ("host", "port", "user", "password",
                                                                "database")
                section = "[database]" if in_database else "[archive]"
                lines.insert(lines.index(section) + 1, f"{key} = {value}")
        path = tmp_path / "config.ini"
        path.write_text("\n".join(lines) + "\n" + extra)
        return path

    return write


def expect_usage_error(path: Path, fragment: str) -> str:
    """Load must fail with exit code 2 and a message containing fragment."""
    with pytest.raises(archive.ConfigError) as info:
        archive.load_config(path, environ={})
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_valid_config_loads_with_defaults(ini):
    config = archive.load_config(ini(), environ={})
    assert config.batch_size == 1000
    assert config.csv_column == ("id",)  # the inline comment is stripped
    assert config.db.password == "secret"
    assert config.max_runtime is None and config.replicas == ()
    assert config.db.connect_kwargs()["host"] == "127.0.0.1"


def test_example_config_is_valid_apart_from_its_paths(tmp_path):
    text = (Path(archive.__file__).parent / "config.ini.example").read_text()
    text = text.replace("/srv/archive/incoming", str(tmp_path)).replace("/var/log/archiver", str(tmp_path))
    path = tmp_path / "c.ini"
    path.write_text(text)
    config = archive.load_config(path, environ={})
    assert (config.source_table, config.key_column, config.batch_size) == ("rewards", ("id",), 1000)


@pytest.mark.parametrize("key, value, fragment", [
    ("batch_size", "-5", "[archive] batch_size"),
    ("batch_size", "0", "[archive] batch_size"),
    ("batch_size", "1000000", "[archive] batch_size"),
    ("batch_size", "ten", "[archive] batch_size"),
    ("port", "99999", "[database] port"),
    ("source_table", "rewards; DROP TABLE users", "[archive] source_table"),
    ("archive_table", "rewards`x", "[archive] archive_table"),
    ("key_column", "id)--", "[archive] key_column"),
    ("csv_dir", "/no/such/dir", "[archive] csv_dir"),
    ("log_dir", "/no/such/logs", "[archive] log_dir"),
    ("source_table", None, "[archive] source_table: is required"),
    ("database", None, "[database] database: is required"),
    ("archive_table", "rewards", "[archive] archive_table: must differ"),
])
def test_bad_values_name_section_and_key(ini, key, value, fragment):
    expect_usage_error(ini({key: value}), fragment)


def test_unknown_key_suggests_the_probable_one(ini):
    message = expect_usage_error(ini({"batchsize": "10"}), "[archive] batchsize: unknown key")
    assert "did you mean batch_size?" in message


def test_unknown_section_is_refused(ini):
    expect_usage_error(ini(extra="[control]\nsleep_seconds = 1\n"), "did you mean [controls]?")


def test_controls_are_validated(ini):
    expect_usage_error(ini(extra="[controls]\nmax_runtime = soon\n"), "[controls] max_runtime")
    expect_usage_error(ini(extra="[controls]\nguard = 1=1; DELETE FROM users\n"), "[controls] guard")
    expect_usage_error(ini(extra="[controls]\nguard = id IN (SELECT id FROM x)\n"), "[controls] guard")
    expect_usage_error(ini(extra="[controls]\nreplicas = http://x\n"), "[controls] replicas")
    config = archive.load_config(ini(extra="[controls]\nmax_runtime = 1h30m\nguard = created_at < NOW() "
                                     "- INTERVAL 90 DAY\nreplicas = mysql://mon:pw@r1:3307\n"),
                                 environ={})
    assert config.max_runtime == 5400
    assert config.replicas[0].hosts == (("r1", 3307),)
    assert config.replicas[0].user == "mon" and config.replicas[0].password == "pw"


def test_unreadable_log_dir_is_refused(ini, tmp_path):
    if os.geteuid() == 0:
        # root can write anywhere, so make the path a file instead of a directory
        (tmp_path / "logs").rmdir()
        (tmp_path / "logs").write_text("")
        expect_usage_error(ini(), "[archive] log_dir")
    else:
        (tmp_path / "logs").chmod(0o500)
        expect_usage_error(ini(), "[archive] log_dir")


def test_missing_config_file_and_syntax_errors(tmp_path):
    with pytest.raises(archive.ConfigError) as info:
        archive.load_config(tmp_path / "nope.ini")
    assert "no such file" in str(info.value)
    bad = tmp_path / "bad.ini"
    bad.write_text("host = x\n")
    expect_usage_error(bad, "config:")


def test_mysql_pwd_fills_a_missing_password(ini):
    config = archive.load_config(ini({"password": None}), environ={"MYSQL_PWD": "from-env"})
    assert config.db.password == "from-env"
    config = archive.load_config(ini(), environ={"MYSQL_PWD": "from-env"})
    assert config.db.password == "secret"


def test_option_files_must_exist_and_only_set_keys_are_passed(ini, tmp_path):
    path = ini({"host": None, "user": None, "password": None})
    text = path.read_text().replace("[database]", "[database]\noption_files = /no/such.cnf")
    path.write_text(text)
    expect_usage_error(path, "[database] option_files")
    cnf = tmp_path / "my.cnf"
    cnf.write_text("[client]\nuser = fromfile\n")
    path.write_text(text.replace("/no/such.cnf", str(cnf)))
    kwargs = archive.load_config(path, environ={}).db.connect_kwargs()
    assert "user" not in kwargs and "password" not in kwargs and kwargs["option_files"] == [str(cnf)]


def test_cli_exit_code_2_for_bad_config_without_traceback(ini, capsys):
    code = archive.main([str(ini({"batch_size": "-1"}))])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "[archive] batch_size" in err and "Traceback" not in err


def test_cli_bad_option_and_help(capsys):
    assert archive.main(["--no-such-flag"]) == 2
    assert archive.main(["--help"]) == 0
    out = capsys.readouterr().out
    for word in ("--dry-run", "--status", "--check", "examples:", "exit codes"):
        assert word in out


def test_parse_duration():
    assert archive.parse_duration("90") == 90
    assert archive.parse_duration("2h") == 7200
    assert archive.parse_duration("1h30m") == 5400
    assert archive.parse_duration("45s") == 45
    for bad in ("", "0", "2 days", "h"):
        with pytest.raises(ValueError, match=r"is not a duration|must be longer than zero"):
            archive.parse_duration(bad)


@pytest.mark.parametrize("value, expected", [(";", ";"), ("semicolon", ";"), ("tab", "\t"), ('"#"', "#"),
                                             ("|", "|"), ("pipe", "|"), (",   ; a comment", ",")])
def test_delimiters_that_look_like_comments_still_work(ini, value, expected):
    config = archive.load_config(ini({"csv_delimiter": value}), environ={})
    assert config.csv_delimiter == expected


def test_the_mysql_dialect_reads_tabs_and_a_file_without_a_header_names_a_field_number(ini):
    mysql = {"csv_dialect": "mysql", "csv_header": "no", "csv_column": "2"}
    config = archive.load_config(ini(mysql), environ={})
    expected = archive.CsvFormat(dialect="mysql", delimiter="\t", columns=("2",), header=False)
    assert config.csv_format == expected
    assert archive.load_config(ini(), environ={}).csv_format == archive.CsvFormat(columns=("id",))
    tabs = archive.load_config(ini({"csv_dialect": "MySQL", "csv_delimiter": "tab"}), environ={})
    assert tabs.csv_delimiter == "\t"
    expect_usage_error(ini({"csv_dialect": "excel"}), "csv_dialect: 'excel' is not rfc4180 or mysql")
    expect_usage_error(ini({"csv_dialect": "mysql", "csv_delimiter": ","}),
                       "[archive] csv_delimiter: csv_dialect = mysql reads tab-separated files")
    for column in ("id", "0", "-1", "1.5"):
        expect_usage_error(ini({"csv_header": "no", "csv_column": column}),
                           "[archive] csv_column: with csv_header = no, csv_column is the key's field "
                           f"number (1 for the first field), not {column!r}")


def test_a_checkpoint_holds_only_for_the_same_dialect_and_header(ini):
    """Config.reading ties checkpoints to how the file was read; the default reads as it always did."""
    readings = {archive.load_config(ini(replace), environ={}).reading for replace in (
        {}, {"csv_dialect": "mysql"}, {"csv_header": "no", "csv_column": "1"},
        {"csv_dialect": "mysql", "csv_header": "no", "csv_column": "1"}, {"csv_delimiter": "tab"})}
    assert len(readings) == 5
    assert archive.load_config(ini(), environ={}).reading == "key id from column 'id', delimiter ','"


@pytest.mark.parametrize("pattern", ["/etc/*.csv", "~/x/*.csv", "../*.csv", "a/../../*.csv"])
def test_csv_pattern_must_stay_inside_csv_dir(ini, pattern):
    expect_usage_error(ini({"csv_pattern": pattern}), "[archive] csv_pattern: ")


@pytest.mark.parametrize("guard, fragment", [
    ("1) OR (1", "parentheses do not balance"),
    ("id > 0) OR (id < 0", "parentheses do not balance"),
    ("(id > 0", "parentheses do not balance"),
    ("RELEASE_ALL_LOCKS() = 0", "release_all_locks"),
    ("GET_LOCK('x', 0)", "get_lock"),
    ("IS_USED_LOCK('x') IS NULL", "is_used_lock"),
    ("@x := 1", ":="),
    ("id NOT IN (SELECT 1)", "select"),
])
def test_a_guard_can_never_widen_the_keys_or_touch_the_run_lock(ini, guard, fragment):
    message = expect_usage_error(ini(extra=f"[controls]\nguard = {guard}\n"), "[controls] guard")
    assert fragment in message.lower()


def test_a_guard_with_brackets_inside_quotes_is_fine(ini):
    config = archive.load_config(ini(extra="[controls]\nguard = note <> ')' AND (kind = 'a(b')\n"),
                                 environ={})
    assert config.guard == "note <> ')' AND (kind = 'a(b')"


def test_relative_directories_start_at_the_config_files_folder(ini, tmp_path, monkeypatch):
    path = ini({"csv_dir": "csv", "log_dir": "./logs"})
    monkeypatch.chdir("/")
    config = archive.load_config(path, environ={})
    assert config.csv_dir == tmp_path / "csv" and config.log_dir == tmp_path / "logs"


def test_host_lists_parse_and_fill_in_the_port(ini):
    config = archive.load_config(ini({"host": "10.0.0.1:3307, db2, [::1]:3308", "port": "3399"}), environ={})
    assert config.db.hosts == (("10.0.0.1", 3307), ("db2", 3399), ("::1", 3308))
    assert config.db.endpoints == 3
    assert config.db.connect_kwargs(1)["host"] == "db2" and config.db.connect_kwargs(1)["port"] == 3399
    assert config.db.describe() == "archiver@10.0.0.1:3307,db2:3399,::1:3308"
    expect_usage_error(ini({"host": "a:99999"}), "[database] host")
    expect_usage_error(ini({"host": "a:b:c"}), "[database] host")


def test_the_password_says_where_it_came_from(ini, tmp_path):
    assert archive.load_config(ini(), environ={}).db.password_source == "[database] password"
    no_password = ini({"password": None})
    assert archive.load_config(no_password, environ={"MYSQL_PWD": "x"}).db.password_source == \
        "the MYSQL_PWD environment variable"


@pytest.mark.parametrize("spec, fragment", [
    ("mysql://root@/?unix_socket=/run/x.sock&ssl=1", "unknown parameter 'ssl'"),
    ("mysql://root@/?sockett=/run/x.sock", "unknown parameter 'sockett'"),
    ("mysql://root@r1/otherdb", "is not mysql://"),
])
def test_replica_addresses_refuse_what_they_would_ignore(ini, spec, fragment):
    message = expect_usage_error(ini(extra=f"[controls]\nreplicas = {spec}\n"), "[controls] replicas")
    assert fragment in message


def test_replica_by_unix_socket(ini):
    config = archive.load_config(ini(extra="[controls]\nreplicas = mysql://root@/?unix_socket=/run/r.sock\n"),
                                 environ={})
    replica = config.replicas[0]
    assert replica.unix_socket == "/run/r.sock" and "host" not in replica.connect_kwargs()


def test_lock_lease_must_outlast_a_lock_wait(ini):
    expect_usage_error(ini({"lock_wait_timeout": "60", "lock_lease": "100"}), "[archive] lock_lease")


@pytest.mark.parametrize("line, fragment", [
    ("metrics_file = metrics/archive.txt", "[controls] metrics_file: "),
    ("max_load = Threads_running", "[controls] max_load: 'Threads_running' is not Variable_name=number"),
    ("critical_load = Threads_running=many", "[controls] critical_load: 'Threads_running=many': 'many'"),
    ("replica_lag_source = heartbeat:percona", "[controls] replica_lag_source: 'heartbeat:percona' is not"),
    ("revisit_held = maybe", "[controls] revisit_held: 'maybe' is not yes or no"),
])
def test_the_monitoring_and_load_keys_are_validated(ini, tmp_path, line, fragment):
    (tmp_path / "metrics").mkdir()
    expect_usage_error(ini(extra=f"[controls]\n{line}\n"), fragment)


def test_the_monitoring_and_load_keys_parse(ini, tmp_path):
    config = archive.load_config(ini(extra=(
        "[controls]\nmetrics_file = archive_py.prom\nmax_load = Threads_running=40, Threads_connected=800\n"
        "critical_load = Threads_running=200\nreplica_lag_source = heartbeat:percona.heartbeat\n"
        "revisit_held = no\n")), environ={})
    assert config.metrics_file == tmp_path / "archive_py.prom"  # relative to the config's folder
    assert config.max_load == (("Threads_running", 40.0), ("Threads_connected", 800.0))
    assert config.critical_load == (("Threads_running", 200.0),)
    assert config.replica_lag_source == ("percona", "heartbeat") and config.revisit_held is False
    default = archive.load_config(ini(), environ={})
    assert (default.metrics_file, default.max_load, default.replica_lag_source, default.revisit_held) == (
        None, (), None, True)


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    """A file that looks like a PEM certificate (load_config only checks it is one)."""
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    return path


def test_a_ca_turns_certificate_and_host_verification_on(ini, pem):
    kwargs = archive.load_config(ini({"ssl_ca": "ca.pem"}), environ={}).db.connect_kwargs()
    assert (kwargs["ssl_ca"], kwargs["ssl_verify_cert"], kwargs["ssl_verify_identity"]) == (
        str(pem), True, True)
    plain = archive.load_config(ini(), environ={}).db.connect_kwargs()
    assert not any(name.startswith("ssl_") for name in plain)
    loose = archive.load_config(ini({"ssl_ca": str(pem), "ssl_verify_identity": "no"}), environ={})
    assert loose.db.connect_kwargs()["ssl_verify_identity"] is False
    off = archive.load_config(ini({"ssl_disabled": "yes"}), environ={})
    assert off.db.connect_kwargs()["ssl_disabled"] is True


@pytest.mark.parametrize("replace, fragment", [
    ({"ssl_ca": "missing.pem"}, "[database] ssl_ca: {tmp}/missing.pem: no such file"),
    ({"ssl_ca": "config.ini"}, "[database] ssl_ca: {tmp}/config.ini: not a PEM file"),
    ({"ssl_ca": "ca.pem", "ssl_cert": "ca.pem"}, "[database] ssl_cert: ssl_cert and ssl_key go together"),
    ({"ssl_verify_identity": "yes"}, "[database] ssl_verify_identity: needs ssl_ca"),
    ({"ssl_ca": "ca.pem", "ssl_disabled": "yes"}, "[database] ssl_disabled: cannot go with ssl_ca"),
    ({"ssl_ca": "ca.pem", "unix_socket": "/run/x.sock"},
     "[database] ssl_ca: a unix socket is never encrypted"),
])
def test_tls_settings_that_cannot_work_are_refused(ini, pem, tmp_path, replace, fragment):
    if "unix_socket" in replace:
        replace = {**replace, "host": None}
        path = ini({k: v for k, v in replace.items() if k != "unix_socket"})
        path.write_text(path.read_text().replace("[database]\n", "[database]\nunix_socket = /run/x.sock\n"))
    else:
        path = ini(replace)
    expect_usage_error(path, fragment.format(tmp=tmp_path))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_certificate_is_refused(ini, pem, tmp_path):
    pem.chmod(0)
    expect_usage_error(ini({"ssl_ca": "ca.pem"}), f"[database] ssl_ca: {pem}: cannot read: Permission denied")


def test_replicas_inherit_tls_and_urls_may_change_it(ini, pem, tmp_path):
    other = tmp_path / "other.pem"
    other.write_bytes(pem.read_bytes())
    config = archive.load_config(ini({"ssl_ca": "ca.pem"}, extra=(
        f"[controls]\nreplicas = mysql://r1, mysql://r2/?ssl_ca={other}&ssl_verify_identity=no, "
        "mysql://root@/?unix_socket=/run/r.sock\n")), environ={})
    inherited, changed, local = (replica.connect_kwargs() for replica in config.replicas)
    assert (inherited["ssl_ca"], inherited["ssl_verify_identity"]) == (str(pem), True)
    assert (changed["ssl_ca"], changed["ssl_verify_identity"]) == (str(other), False)
    assert "ssl_ca" not in local  # a socket: nothing to encrypt
    message = expect_usage_error(ini(extra="[controls]\nreplicas = mysql://r1/?ssl_ca=/no/such.pem\n"),
                                 "[controls] replicas")
    assert "ssl_ca: /no/such.pem: no such file" in message


def test_the_user_lock_name_is_fixed_length_whatever_the_table_names(ini):
    """MySQL refuses GET_LOCK names over 64 characters (3057), and a run whose user lock is refused
    loses the instant takeover of a dead run: the name is the owner token, never the table's."""
    longest = "t" * 64
    config = archive.load_config(ini({"database": longest, "source_table": longest,
                                      "archive_table": "a" * 64}), environ={})
    names = {archive.RunLock(None, config).user_lock_name() for _ in range(3)}  # type: ignore[arg-type]
    assert len(names) == 3 and {len(name) for name in names} == {43}
    assert all(longest not in name for name in names)
