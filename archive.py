#!/usr/bin/env python3
"""archive.py: move the rows listed in CSV key files from a hot table into its archive table.

For each batch of keys it copies the source rows into the archive table, deletes
from the source only the rows whose copy it just made (or whose identical copy was
already archived), records the batch in the tracking tables and commits: one
transaction per batch. A crash at any instant leaves a batch either done and
recorded or not done at all, and the next run resumes at the first batch not done.

Usage:
    python archive.py config.ini              run the job (the cron form)
    python archive.py config.ini --dry-run    show what a run would move; change nothing
    python archive.py config.ini --status     show the latest run's progress (read-only)
    python archive.py config.ini --check      check tables, keys, privileges and foreign keys

Exit codes:
    0  success: every file archived (or nothing to do)
    1  the run FAILED: a database error, a failed preflight check or an internal error;
       the reason is in process_logs.error_message, the text log and stderr
    2  bad usage or configuration (names the [section] key); nothing was touched
    3  finished, but duplicate-key conflicts were found: rows whose archived copy
       differs were left in both tables for a human to resolve
    4  finished, but one or more CSV files were rejected as malformed (takes
       precedence over 3)
    5  another run for the same source table is already running; nothing was touched
    6  the run was INTERRUPTED (SIGTERM/SIGINT, max_runtime, stop_file or a replica
       that stayed unknown) after finishing or rolling back its current batch;
       rerun to resume
"""

from __future__ import annotations

import argparse
import configparser
import csv
import dataclasses
import datetime as dt
import difflib
import hashlib
import itertools
import math
import os
import re
import signal
import socket
import sys
import time
import traceback
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import mysql.connector
from mysql.connector import errorcode

# --------------------------------------------------------------------------- constants

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CONFLICTS = 3
EXIT_REJECTED = 4
EXIT_LOCKED = 5
EXIT_INTERRUPTED = 6

# MySQL turns an IN list into a full scan once it needs more than
# range_optimizer_max_mem_size (8 MB, roughly 36k values); stay well below.
MAX_BATCH_SIZE = 20_000
LOG_PREFIX = "DataProcessingAllDetails_"
LOG_TIMESTAMP = "%Y-%m-%d %H:%M:%S"
HASH_CHUNK = 1 << 20
RANGE_MIN_RUN = 4  # contiguous integer keys this long are sent as BETWEEN, not IN
SHOWN_KEYS = 20  # conflict keys printed in one message; all are stored in the DB
RETRY_BACKOFF_CAP = 4.0
MAX_MESSAGE = 20_000  # characters of an error kept in a TEXT column

DEADLOCK_ERRNOS = {errorcode.ER_LOCK_DEADLOCK, errorcode.ER_LOCK_WAIT_TIMEOUT}
CONNECTION_ERRNOS = {
    errorcode.CR_CONNECTION_ERROR, errorcode.CR_CONN_HOST_ERROR,
    errorcode.CR_SERVER_GONE_ERROR, errorcode.CR_SERVER_LOST,
    errorcode.CR_SERVER_LOST_EXTENDED, 2055, 1927, 4031, 1053,
    errorcode.ER_CON_COUNT_ERROR,
}
DONE_STATUSES = ("COMPLETED", "COMPLETED_WITH_DUPLICATES")
INT_RANGES = {
    "tinyint": 8, "smallint": 16, "mediumint": 24, "int": 32, "integer": 32, "bigint": 64,
}
STRING_TYPES = {"char", "varchar", "binary", "varbinary"}
IDENTIFIER = re.compile(r"^[A-Za-z0-9_$]{1,64}$")
GUARD_FORBIDDEN = re.compile(
    r";|--|#|/\*|\b(select|insert|update|delete|drop|alter|create|truncate|grant|revoke"
    r"|union|into|outfile|dumpfile|load_file|sleep|benchmark|get_lock|call|handler)\b",
    re.IGNORECASE,
)

TRACKING_DDL = (
    """CREATE TABLE IF NOT EXISTS `process_logs` (
  `id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  `source_table` VARCHAR(64) NOT NULL,
  `archive_table` VARCHAR(64) NOT NULL,
  `status` ENUM('RUNNING','COMPLETED','FAILED','INTERRUPTED') NOT NULL,
  `host` VARCHAR(255) NOT NULL,
  `pid` INT NOT NULL,
  `start_time` DATETIME NOT NULL,
  `end_time` DATETIME NULL,
  `total_files` INT NOT NULL DEFAULT 0,
  `processed_files` INT NOT NULL DEFAULT 0,
  `current_file` VARCHAR(255) NULL,
  `current_batch` INT NULL,
  `rows_archived` BIGINT NOT NULL DEFAULT 0,
  `rows_deleted` BIGINT NOT NULL DEFAULT 0,
  `duplicates` BIGINT NOT NULL DEFAULT 0,
  `conflicts` BIGINT NOT NULL DEFAULT 0,
  `skipped_by_guard` BIGINT NOT NULL DEFAULT 0,
  `stop_reason` VARCHAR(255) NULL,
  `pause_reason` VARCHAR(255) NULL,
  `paused_seconds` DOUBLE NOT NULL DEFAULT 0,
  `error_message` TEXT NULL,
  KEY `ix_process_status` (`source_table`, `status`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
    """CREATE TABLE IF NOT EXISTS `file_processing_logs` (
  `id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  `process_log_id` BIGINT UNSIGNED NOT NULL,
  `file_name` VARCHAR(255) NOT NULL,
  `file_size` BIGINT NOT NULL,
  `file_checksum` CHAR(64) NOT NULL,
  `status` ENUM('PROCESSING','COMPLETED','FAILED','INTERRUPTED') NOT NULL,
  `batch_size` INT NOT NULL,
  `total_keys` BIGINT NOT NULL DEFAULT 0,
  `total_batches` INT NOT NULL DEFAULT 0,
  `start_batch` INT NOT NULL DEFAULT 1,
  `processed_batches` INT NOT NULL DEFAULT 0,
  `last_processed_batch` INT NOT NULL DEFAULT 0,
  `rows_archived` BIGINT NOT NULL DEFAULT 0,
  `rows_deleted` BIGINT NOT NULL DEFAULT 0,
  `duplicates` BIGINT NOT NULL DEFAULT 0,
  `conflicts` BIGINT NOT NULL DEFAULT 0,
  `skipped_by_guard` BIGINT NOT NULL DEFAULT 0,
  `error_message` TEXT NULL,
  `started_at` DATETIME NOT NULL,
  `finished_at` DATETIME NULL,
  UNIQUE KEY `ux_file_run` (`process_log_id`, `file_name`),
  KEY `ix_file_checksum` (`file_name`, `file_checksum`, `status`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
    """CREATE TABLE IF NOT EXISTS `batch_processing_logs` (
  `id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  `process_log_id` BIGINT UNSIGNED NOT NULL,
  `file_name` VARCHAR(255) NOT NULL,
  `batch_number` INT NOT NULL,
  `status` ENUM('COMPLETED','COMPLETED_WITH_DUPLICATES','FAILED') NOT NULL,
  `first_key` VARCHAR(255) NULL,
  `last_key` VARCHAR(255) NULL,
  `keys_in_batch` INT NOT NULL DEFAULT 0,
  `rows_archived` INT NOT NULL DEFAULT 0,
  `rows_deleted` INT NOT NULL DEFAULT 0,
  `duplicates` INT NOT NULL DEFAULT 0,
  `conflicts` INT NOT NULL DEFAULT 0,
  `skipped_by_guard` INT NOT NULL DEFAULT 0,
  `conflict_keys` MEDIUMTEXT NULL,
  `end_offset` BIGINT NULL,
  `end_line` BIGINT NULL,
  `error_message` TEXT NULL,
  `created_at` DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  UNIQUE KEY `ux_batch_run` (`process_log_id`, `file_name`, `batch_number`),
  KEY `ix_batch_status` (`status`, `created_at`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
)
TRACKING_TABLES = ("process_logs", "file_processing_logs", "batch_processing_logs")


class ArchiveError(Exception):
    """An error a DBA can act on; main() prints it as one line and exits with its code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED):
        super().__init__(message)
        self.exit_code = exit_code


# --------------------------------------------------------------------------- configuration

REQUIRED = object()


@dataclass(frozen=True)
class Option:
    """One config key: where it lives, its default and how its text is parsed."""

    section: str
    key: str
    default: Any
    parse: Callable[[str], Any]
    help: str


@dataclass(frozen=True)
class DbSettings:
    """How to reach one server; None means "not set", so option files can supply it."""

    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = None
    database: str | None = None
    unix_socket: str | None = None
    option_files: tuple[str, ...] = ()
    option_groups: tuple[str, ...] = ()
    connect_timeout: int = 5

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for mysql.connector.connect()."""
        kwargs: dict[str, Any] = {"connection_timeout": self.connect_timeout}
        for name in ("host", "port", "user", "password", "database", "unix_socket"):
            value = getattr(self, name)
            if value is not None:
                kwargs[name] = value
        if self.unix_socket:
            kwargs.pop("host", None)
            kwargs.pop("port", None)
        if self.option_files:
            kwargs["option_files"] = list(self.option_files)
            if self.option_groups:
                kwargs["option_groups"] = list(self.option_groups)
        return kwargs

    def describe(self) -> str:
        """Where this server is, for messages (never the password)."""
        where = self.unix_socket or f"{self.host or 'localhost'}:{self.port or 3306}"
        return f"{self.user or '(option file user)'}@{where}"


@dataclass(frozen=True)
class Config:
    """Everything a run needs, validated once by load_config()."""

    path: Path
    db: DbSettings
    source_table: str
    archive_table: str
    key_column: str
    csv_dir: Path
    csv_pattern: str
    csv_column: str
    csv_delimiter: str
    batch_size: int
    log_dir: Path
    lock_wait_timeout: int
    max_retries: int
    allow_cascading_deletes: bool
    sleep_seconds: float
    max_runtime: float | None
    stop_file: Path | None
    guard: str | None
    max_threads_running: int | None
    replicas: tuple[DbSettings, ...]
    max_replica_lag: float
    replica_timeout: float
    check_interval: float

    @property
    def database(self) -> str:
        """The database holding the source, archive and tracking tables."""
        return self.db.database or ""


def parse_text(text: str) -> str:
    """Any non-empty text."""
    if not text.strip():
        raise ValueError("must not be empty")
    return text.strip()


def parse_identifier(text: str) -> str:
    """A table or column name: letters, digits, _ and $ only, so it cannot carry SQL."""
    if not IDENTIFIER.match(text.strip()):
        raise ValueError(f"{text!r} is not a plain identifier (letters, digits, _ and $; at most 64)")
    return text.strip()


def make_int_parser(low: int, high: int) -> Callable[[str], int]:
    """Build a parser for a whole number within [low, high]."""

    def parse_int(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise ValueError(f"{value} is out of range; use {low} to {high}")
        return value

    return parse_int


def make_float_parser(low: float, high: float) -> Callable[[str], float]:
    """Build a parser for a number of seconds within [low, high]."""

    def parse_float(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        if not low <= value <= high or math.isnan(value):
            raise ValueError(f"{value:g} is out of range; use {low:g} to {high:g}")
        return value

    return parse_float


def parse_bool(text: str) -> bool:
    """yes/no, true/false, on/off, 1/0."""
    lowered = text.strip().lower()
    if lowered in ("1", "yes", "true", "on"):
        return True
    if lowered in ("0", "no", "false", "off"):
        return False
    raise ValueError(f"{text!r} is not yes or no")


def parse_duration(text: str) -> float:
    """A duration such as 90, 45s, 30m, 2h or 1h30m, in seconds."""
    cleaned = text.strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(\.\d+)?", cleaned):
        seconds = float(cleaned)
    else:
        parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", cleaned)
        if not cleaned or not parts:
            raise ValueError(f"{text!r} is not a duration like 90s, 30m, 2h or 1h30m")
        hours, minutes, secs = (int(p or 0) for p in parts.groups())
        seconds = hours * 3600.0 + minutes * 60.0 + secs
    if seconds <= 0:
        raise ValueError("must be longer than zero")
    return seconds


def parse_list(text: str) -> tuple[str, ...]:
    """A comma-separated list."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def parse_delimiter(text: str) -> str:
    """One character; 'tab' for a tab."""
    value = "\t" if text.strip().lower() in ("tab", "\\t") else text.strip()
    if len(value) != 1 or value in "\"\r\n":
        raise ValueError(f"{text!r} must be one character (or 'tab')")
    return value


def parse_guard(text: str) -> str:
    """A boolean SQL condition on the source row, without statements or comments."""
    value = parse_text(text)
    bad = GUARD_FORBIDDEN.search(value)
    if bad:
        raise ValueError(f"{bad.group(0)!r} is not allowed; give a plain condition such as "
                         "created_at < NOW() - INTERVAL 90 DAY")
    return value


def parse_path(text: str) -> Path:
    """A file system path; ~ is expanded."""
    return Path(parse_text(text)).expanduser()


OPTIONS = (
    Option("database", "host", None, parse_text, "Server host name or address."),
    Option("database", "port", None, make_int_parser(1, 65535), "Server TCP port (3306)."),
    Option("database", "user", None, parse_text, "User name; may come from an option file."),
    Option("database", "password", None, str,
           "Password. Better: leave it out and use MYSQL_PWD or an option file."),
    Option("database", "database", REQUIRED, parse_identifier,
           "Database holding the source, archive and tracking tables."),
    Option("database", "unix_socket", None, parse_text,
           "Unix socket path; when set it is used instead of host and port."),
    Option("database", "option_files", (), parse_list,
           "MySQL option files to read credentials from, e.g. ~/.my.cnf."),
    Option("database", "option_groups", (), parse_list,
           "Groups to read in the option files (default: client, connector_python)."),
    Option("database", "connect_timeout", 5, make_int_parser(1, 300),
           "Seconds to wait for a connection before giving up."),
    Option("archive", "source_table", REQUIRED, parse_identifier, "The hot table rows leave."),
    Option("archive", "archive_table", REQUIRED, parse_identifier,
           "The table rows are copied into; it has every source column."),
    Option("archive", "key_column", REQUIRED, parse_identifier,
           "The source column the CSV keys match; its primary or a unique key."),
    Option("archive", "csv_dir", REQUIRED, parse_path, "Directory holding the CSV key files."),
    Option("archive", "csv_pattern", "*.csv", parse_text,
           "Glob of the files to process, in name order."),
    Option("archive", "csv_column", REQUIRED, parse_text,
           "Header name of the key column in the CSV files."),
    Option("archive", "csv_delimiter", ",", parse_delimiter, "CSV field delimiter ('tab' for tabs)."),
    Option("archive", "batch_size", 1000, make_int_parser(1, MAX_BATCH_SIZE),
           "Keys per batch; one batch is one transaction."),
    Option("archive", "log_dir", REQUIRED, parse_path,
           "Directory for the DataProcessingAllDetails_DD_MM_YYYY.txt text logs."),
    Option("archive", "lock_wait_timeout", 10, make_int_parser(1, 3600),
           "Seconds a batch waits for a row lock before it is rolled back and retried."),
    Option("archive", "max_retries", 4, make_int_parser(0, 20),
           "Retries of a batch after a deadlock, lock wait timeout or lost connection."),
    Option("archive", "allow_cascading_deletes", False, parse_bool,
           "Proceed although foreign keys cascade deletes into child tables (yes/no)."),
    Option("controls", "sleep_seconds", 0.0, make_float_parser(0, 3600),
           "Pause between batches, outside any transaction."),
    Option("controls", "max_runtime", None, parse_duration,
           "Stop cleanly (INTERRUPTED, exit 6) after this long, e.g. 2h or 45m."),
    Option("controls", "stop_file", None, parse_path,
           "Stop cleanly (INTERRUPTED, exit 6) between batches once this file exists."),
    Option("controls", "guard", None, parse_guard,
           "SQL condition every archived row must also meet; others stay, counted as skipped."),
    Option("controls", "max_threads_running", None, make_int_parser(1, 100_000),
           "Pause while the server's Threads_running is above this."),
    Option("controls", "replicas", (), parse_list,
           "Replicas to watch: mysql://user:pw@host:port or mysql://user@localhost?socket=/path, "
           "or group:NAME for an option-file group."),
    Option("controls", "max_replica_lag", 10.0, make_float_parser(0, 86400),
           "Pause while any replica is more than this many seconds behind."),
    Option("controls", "replica_timeout", 600.0, make_float_parser(1, 7 * 86400),
           "Give up (INTERRUPTED, exit 6) after a replica's lag stays unknown or high this long."),
    Option("controls", "check_interval", 1.0, make_float_parser(0.05, 600),
           "Seconds between checks while paused."),
)
OPTION_INDEX = {(o.section, o.key): o for o in OPTIONS}


def config_error(section: str, key: str, message: str) -> ArchiveError:
    """An exit-2 error naming the [section] key."""
    return ArchiveError(f"config: [{section}] {key}: {message}", EXIT_USAGE)


def read_ini(path: Path) -> configparser.ConfigParser:
    """Read the INI file, turning every parse problem into a usage error."""
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";", "#"))
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except FileNotFoundError:
        raise ArchiveError(f"config: {path}: no such file", EXIT_USAGE) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ArchiveError(f"config: {path}: cannot read: {exc}", EXIT_USAGE) from None
    except configparser.Error as exc:
        raise ArchiveError(f"config: {path}: {' '.join(str(exc).split())}", EXIT_USAGE) from None
    return parser


def reject_unknown_keys(parser: configparser.ConfigParser) -> None:
    """Refuse sections and keys we do not know, suggesting the one probably meant."""
    sections = sorted({o.section for o in OPTIONS})
    for section in parser.sections():
        if section not in sections:
            hint = difflib.get_close_matches(section, sections, 1)
            extra = f"; did you mean [{hint[0]}]?" if hint else f"; known: {', '.join(sections)}"
            raise ArchiveError(f"config: [{section}]: unknown section{extra}", EXIT_USAGE)
        known = [o.key for o in OPTIONS if o.section == section]
        for key in parser[section]:
            if key not in known:
                hint = difflib.get_close_matches(key, known, 1)
                extra = f"did you mean {hint[0]}?" if hint else "not a known key"
                raise config_error(section, key, f"unknown key; {extra}")


def read_options(parser: configparser.ConfigParser) -> dict[tuple[str, str], Any]:
    """Parse every known key, applying defaults and naming the key on error."""
    values: dict[tuple[str, str], Any] = {}
    for option in OPTIONS:
        raw = parser.get(option.section, option.key, fallback=None)
        if raw is None or (raw.strip() == "" and option.key != "password"):
            if option.default is REQUIRED:
                raise config_error(option.section, option.key, "is required")
            values[(option.section, option.key)] = option.default
            continue
        try:
            values[(option.section, option.key)] = option.parse(raw)
        except ValueError as exc:
            raise config_error(option.section, option.key, str(exc)) from None
    return values


def check_directories(values: dict[tuple[str, str], Any]) -> None:
    """The CSV directory must be readable and the log directory writable."""
    csv_dir = values[("archive", "csv_dir")]
    if not csv_dir.is_dir():
        raise config_error("archive", "csv_dir", f"{csv_dir} is not a directory")
    if not os.access(csv_dir, os.R_OK | os.X_OK):
        raise config_error("archive", "csv_dir", f"{csv_dir} is not readable")
    log_dir = values[("archive", "log_dir")]
    if not log_dir.is_dir():
        raise config_error("archive", "log_dir", f"{log_dir} is not a directory")
    if not os.access(log_dir, os.R_OK | os.W_OK | os.X_OK):
        raise config_error("archive", "log_dir", f"{log_dir} is not readable and writable")


def build_db_settings(values: dict[tuple[str, str], Any], environ: dict[str, str]) -> DbSettings:
    """The primary's connection settings; MYSQL_PWD fills a password left out of the file."""
    def get(key: str) -> Any:
        return values[("database", key)]

    password = get("password")
    if password is None and environ.get("MYSQL_PWD") is not None:
        password = environ["MYSQL_PWD"]
    if get("option_files"):
        for name in get("option_files"):
            if not Path(name).expanduser().is_file():
                raise config_error("database", "option_files", f"{name}: no such file")
    return DbSettings(
        host=get("host") if get("host") or get("option_files") else "127.0.0.1",
        port=get("port"), user=get("user"), password=password, database=get("database"),
        unix_socket=get("unix_socket"),
        option_files=tuple(str(Path(n).expanduser()) for n in get("option_files")),
        option_groups=get("option_groups"), connect_timeout=get("connect_timeout"),
    )


def parse_replica(spec: str, primary: DbSettings) -> DbSettings:
    """One replica from a mysql:// DSN or group:NAME, inheriting the primary's credentials."""
    if spec.startswith("group:"):
        if not primary.option_files:
            raise ValueError(f"{spec}: group: needs [database] option_files")
        return dataclasses.replace(primary, host=None, port=None, unix_socket=None,
                                   option_groups=(spec[len("group:"):],))
    url = urllib.parse.urlsplit(spec)
    if url.scheme != "mysql" or not (url.hostname or "socket" in url.query):
        raise ValueError(f"{spec!r} is not mysql://user:password@host:port or group:NAME")
    query = urllib.parse.parse_qs(url.query)
    try:
        port = url.port
    except ValueError:
        raise ValueError(f"{spec!r} has a bad port") from None
    return dataclasses.replace(
        primary, host=url.hostname, port=port or (None if query.get("socket") else 3306),
        user=urllib.parse.unquote(url.username) if url.username else primary.user,
        password=urllib.parse.unquote(url.password) if url.password is not None else primary.password,
        unix_socket=(query.get("socket") or [None])[0], database=None,
    )


def load_config(path: str | Path, environ: dict[str, str] | None = None) -> Config:
    """Read and validate the whole config file before anything touches the database."""
    path = Path(path)
    parser = read_ini(path)
    reject_unknown_keys(parser)
    values = read_options(parser)
    check_directories(values)
    db = build_db_settings(values, dict(os.environ if environ is None else environ))
    try:
        replicas = tuple(parse_replica(s, db) for s in values[("controls", "replicas")])
    except ValueError as exc:
        raise config_error("controls", "replicas", str(exc)) from None
    if values[("archive", "source_table")] == values[("archive", "archive_table")]:
        raise config_error("archive", "archive_table", "must differ from source_table")
    archive = {key: values[("archive", key)] for (section, key) in values if section == "archive"}
    controls = {key: values[("controls", key)] for (section, key) in values if section == "controls"}
    controls["replicas"] = replicas
    return Config(path=path, db=db, **archive, **controls)


# --------------------------------------------------------------------------- CSV reading

@dataclass(frozen=True)
class KeyType:
    """What a valid key looks like, read from the source's key column."""

    kind: str  # "int" or "str"
    low: int = 0
    high: int = 0
    max_length: int = 0
    sql_type: str = ""


@dataclass(frozen=True)
class FileScan:
    """A CSV file's identity and key count."""

    name: str
    size: int
    sha256: str
    keys: int = 0


@dataclass(frozen=True)
class Batch:
    """One batch of keys in file order, and where it ends in the file."""

    number: int
    keys: tuple
    end_offset: int
    end_line: int


def key_type_from_column(data_type: str, column_type: str, max_length: int | None) -> KeyType:
    """Describe the keys a column accepts; only integer and string keys are supported."""
    data_type = data_type.lower()
    if data_type in INT_RANGES:
        bits = INT_RANGES[data_type]
        if "unsigned" in column_type.lower():
            return KeyType("int", 0, 2 ** bits - 1, sql_type=column_type)
        return KeyType("int", -(2 ** (bits - 1)), 2 ** (bits - 1) - 1, sql_type=column_type)
    if data_type in STRING_TYPES:
        return KeyType("str", max_length=int(max_length or 0), sql_type=column_type)
    raise ArchiveError(f"key column type {column_type} is not supported; use an integer or "
                       "(VAR)CHAR key column")


def parse_key(text: str, key_type: KeyType) -> int | str:
    """Turn one CSV cell into a key, or raise ValueError saying why it is not one."""
    value = text.strip()
    if not value:
        raise ValueError("empty key")
    if key_type.kind == "str":
        if len(value) > key_type.max_length:
            raise ValueError(f"key {value[:40]!r} is longer than {key_type.sql_type}")
        return value
    if not re.fullmatch(r"[+-]?\d{1,20}", value):
        raise ValueError(f"{value[:40]!r} is not a whole number for {key_type.sql_type}")
    number = int(value)
    if not key_type.low <= number <= key_type.high:
        raise ValueError(f"{number} is out of range for {key_type.sql_type}")
    return number


def hash_file(path: Path) -> FileScan:
    """Size and SHA-256 of a file, read in large chunks (fast; no parsing)."""
    digest = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(HASH_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise ArchiveError(f"{path.name}: cannot read: {exc.strerror}") from None
    return FileScan(path.name, size, digest.hexdigest())


def find_key_field(header: list[str], column: str, delimiter: str, name: str) -> int:
    """Index of the key column in the header row, or a message naming what is wrong."""
    cleaned = [cell.strip() for cell in header]
    if column in cleaned:
        return cleaned.index(column)
    hint = ""
    if len(cleaned) == 1 and any(d in cleaned[0] for d in ",;\t|" if d != delimiter):
        hint = f" (wrong delimiter? csv_delimiter is {delimiter!r})"
    raise ArchiveError(f"{name} line 1: no column {column!r} in header {cleaned}{hint}")


def split_csv_line(line: str, delimiter: str) -> list[str]:
    """Split one CSV line, honouring quotes."""
    return next(csv.reader([line], delimiter=delimiter, strict=True), [])


def iter_csv_keys(path: Path, column: str, delimiter: str, key_type: KeyType,
                  start: tuple[int, int] = (0, 0)) -> Iterator[tuple[int, int, int | str]]:
    """Yield (line number, byte offset after the line, key) for every key in a CSV file.

    Streams line by line. Raises ArchiveError naming the file and line for anything
    that is not a clean key: bad UTF-8, a NUL byte, a short row, a bad value.
    `start` is (offset, line) of a line boundary after the header, to resume mid-file.
    """
    name = path.name
    with open(path, "rb") as handle:
        header_line = handle.readline()
        if not header_line.strip(b"\r\n\t \xef\xbb\xbf"):
            return
        header = decode_line(header_line, name, 1, strip_bom=True)
        try:
            index = find_key_field(split_csv_line(header, delimiter), column, delimiter, name)
        except csv.Error as exc:
            raise ArchiveError(f"{name} line 1: {exc}") from None
        offset, line_no = handle.tell(), 1
        if start[0]:
            handle.seek(start[0])
            offset, line_no = start
        # Most lines are one plain number; ASCII digits need no decoding, splitting or regex.
        fast, high = key_type.kind == "int" and index == 0, key_type.high
        for raw in handle:
            line_no += 1
            offset += len(raw)
            if fast and (stripped := raw.strip()).isdigit() and (number := int(stripped)) <= high:
                yield line_no, offset, number
                continue
            text = decode_line(raw, name, line_no)
            if not text.strip():
                continue
            try:
                cells = split_csv_line(text, delimiter)
                if index >= len(cells):
                    raise ValueError(f"row has {len(cells)} field(s); the key is field {index + 1}")
                yield line_no, offset, parse_key(cells[index], key_type)
            except (ValueError, csv.Error) as exc:
                raise ArchiveError(f"{name} line {line_no}: {exc}") from None


def decode_line(raw: bytes, name: str, line_no: int, strip_bom: bool = False) -> str:
    """Decode one line as UTF-8 without its line end, refusing NUL bytes."""
    if b"\x00" in raw:
        raise ArchiveError(f"{name} line {line_no}: contains a NUL byte (binary or UTF-16 file?)")
    try:
        text = raw.decode("utf-8-sig" if strip_bom else "utf-8")
    except UnicodeDecodeError:
        raise ArchiveError(f"{name} line {line_no}: not valid UTF-8") from None
    return text.rstrip("\r\n")


def count_keys(path: Path, column: str, delimiter: str, key_type: KeyType) -> int:
    """Validate a whole file and count its keys, before any of its batches run."""
    return sum(1 for _ in iter_csv_keys(path, column, delimiter, key_type))


def iter_batches(keys: Iterable[tuple[int, int, int | str]], batch_size: int,
                 first_number: int = 1) -> Iterator[Batch]:
    """Group (line, offset, key) triples into numbered batches of batch_size keys."""
    keys = iter(keys)
    number = first_number
    while chunk := list(itertools.islice(keys, batch_size)):
        line, offset, _ = chunk[-1]
        yield Batch(number, tuple(key for _, _, key in chunk), offset, line)
        number += 1


def skip_keys(keys: Iterator[tuple[int, int, int | str]], count: int) -> Iterator:
    """Drop the first `count` keys (for resuming without a stored offset)."""
    for _ in range(count):
        if next(keys, None) is None:
            break
    return keys


def list_csv_files(csv_dir: Path, pattern: str) -> list[Path]:
    """The files to process, in name order."""
    return sorted((p for p in csv_dir.glob(pattern) if p.is_file()), key=lambda p: p.name)


def group_runs(numbers: Sequence[int]) -> list[tuple[int, int]]:
    """Split sorted unique integers into (first, last) runs of consecutive values."""
    runs: list[tuple[int, int]] = []
    for number in numbers:
        if runs and number == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], number)
        else:
            runs.append((number, number))
    return runs


# --------------------------------------------------------------------------- SQL building

def quote_ident(name: str) -> str:
    """Quote an identifier for MySQL."""
    return "`" + name.replace("`", "``") + "`"


def key_condition(column_sql: str, keys: Iterable, key_type: KeyType) -> tuple[str, tuple]:
    """A WHERE condition matching exactly `keys`: BETWEEN for long runs, IN for the rest."""
    unique = sorted(set(keys))
    if key_type.kind == "str":
        return f"{column_sql} IN ({', '.join(['%s'] * len(unique))})", tuple(unique)
    terms: list[str] = []
    singles: list[int] = []
    for low, high in group_runs(unique):
        if high - low + 1 >= RANGE_MIN_RUN:
            terms.append(f"{column_sql} BETWEEN {low} AND {high}")
        else:
            singles.extend(range(low, high + 1))
    if singles:
        terms.append(f"{column_sql} IN ({','.join(map(str, singles))})")
    return (terms[0] if len(terms) == 1 else "(" + " OR ".join(terms) + ")"), ()


def identical_expression(columns: Sequence[str], left: str = "s", right: str = "a") -> str:
    """True when two rows agree byte for byte in every column, NULLs included."""
    return " AND ".join(
        f"BINARY {left}.{quote_ident(c)} <=> BINARY {right}.{quote_ident(c)}" for c in columns
    )


@dataclass(frozen=True)
class TablePlan:
    """The checked shape of the copy: what to copy and how keys look."""

    source: str
    archive: str
    key: str
    columns: tuple[str, ...]
    key_type: KeyType
    guard: str | None = None

    def column_list(self, alias: str = "") -> str:
        """The copied columns, quoted, optionally prefixed by a table alias."""
        prefix = f"{alias}." if alias else ""
        return ", ".join(prefix + quote_ident(c) for c in self.columns)

    def insert_sql(self, condition: str) -> str:
        """Copy matching source rows into the archive; never INSERT IGNORE."""
        return (f"INSERT INTO {quote_ident(self.archive)} ({self.column_list()}) "
                f"SELECT {self.column_list()} FROM {quote_ident(self.source)} WHERE {condition}")

    def delete_sql(self, condition: str) -> str:
        """Delete matching source rows."""
        return f"DELETE FROM {quote_ident(self.source)} WHERE {condition}"

    def classify_sql(self, condition: str) -> str:
        """Source rows of the batch with their guard verdict and archived twin, locked."""
        # The guard names source columns unqualified; a subquery on the source alone keeps
        # them from clashing with the archive's identical column names.
        guard = (f"(SELECT ({self.guard}) IS TRUE FROM {quote_ident(self.source)} g "
                 f"WHERE g.{quote_ident(self.key)} = s.{quote_ident(self.key)})") if self.guard else "1"
        return (f"SELECT s.{quote_ident(self.key)}, {guard}, a.{quote_ident(self.key)} IS NOT NULL, "
                f"COALESCE({identical_expression(self.columns)}, 0) "
                f"FROM {quote_ident(self.source)} s LEFT JOIN {quote_ident(self.archive)} a "
                f"ON a.{quote_ident(self.key)} = s.{quote_ident(self.key)} "
                f"WHERE {condition} FOR UPDATE")

    def delete_identical_sql(self, condition: str) -> str:
        """Delete source rows whose identical copy is already in the archive."""
        return (f"DELETE s FROM {quote_ident(self.source)} s JOIN {quote_ident(self.archive)} a "
                f"ON a.{quote_ident(self.key)} = s.{quote_ident(self.key)} "
                f"WHERE {condition} AND {identical_expression(self.columns)}")

    def count_sql(self, condition: str) -> str:
        """Count source rows a batch would move (read-only)."""
        guard = f" AND ({self.guard})" if self.guard else ""
        return f"SELECT COUNT(*) FROM {quote_ident(self.source)} s WHERE {condition}{guard}"


def lock_name(database: str, table: str) -> str:
    """The server-wide lock that keeps two runs off one source table (at most 64 chars)."""
    name = f"archive.py/{database}/{table}"
    if len(name) > 64:
        name = "archive.py/" + hashlib.sha1(name.encode()).hexdigest()
    return name


# --------------------------------------------------------------------------- text log

BATCH_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\] FILE: (.+?) \| BATCH: (\d+) \| STATUS: ([A-Z_]+)$")
FILE_INFO_LINE = re.compile(
    r"^FILE_INFO: (.+?) \| SHA256: ([0-9a-f]{64}) \| BATCH_SIZE: (\d+) \| KEYS: (\d+) \| TABLE: (\S+)$")
LOG_NAME = re.compile(rf"^{LOG_PREFIX}(\d\d)_(\d\d)_(\d{{4}})\.txt$")


@dataclass(frozen=True)
class Checkpoint:
    """How far a file with this exact content got: batches done at a fixed batch size."""

    batch_size: int
    total_keys: int
    last_batch: int
    end_offset: int = 0
    end_line: int = 0
    source: str = "db"


def log_file_name(when: dt.datetime) -> str:
    """The seed's text log name for a day."""
    return f"{LOG_PREFIX}{when:%d_%m_%Y}.txt"


def batch_log_line(when: dt.datetime, file_name: str, batch: int, status: str) -> str:
    """The seed's batch line."""
    return f"[{when:{LOG_TIMESTAMP}}] FILE: {file_name} | BATCH: {batch} | STATUS: {status}"


def file_info_line(scan: FileScan, batch_size: int, keys: int, target: str) -> str:
    """Our checkpoint identity line: which content and batch size the batch lines refer to."""
    return (f"FILE_INFO: {scan.name} | SHA256: {scan.sha256} | BATCH_SIZE: {batch_size} "
            f"| KEYS: {keys} | TABLE: {target}")


def sorted_log_files(log_dir: Path) -> list[Path]:
    """Every text log in log_dir, oldest day first."""
    found = []
    for path in log_dir.glob(f"{LOG_PREFIX}*.txt"):
        match = LOG_NAME.match(path.name)
        if match:
            day, month, year = (int(g) for g in match.groups())
            found.append(((year, month, day), path))
    return [path for _, path in sorted(found)]


def parse_log_checkpoints(lines: Iterable[str], target: str,
                          found: dict[tuple[str, str], Checkpoint]) -> None:
    """Fold one log's lines into found[(file, sha256)]; batch lines count only after FILE_INFO."""
    current: dict[str, tuple[str, int, int]] = {}
    for line in lines:
        info = FILE_INFO_LINE.match(line)
        if info:
            name, sha, size, keys, table = info.groups()
            if table == target:
                current[name] = (sha, int(size), int(keys))
            else:
                current.pop(name, None)
            continue
        batch = BATCH_LINE.match(line)
        if not batch or batch.group(4) not in DONE_STATUSES or batch.group(2) not in current:
            continue
        sha, size, keys = current[batch.group(2)]
        number = int(batch.group(3))
        old = found.get((batch.group(2), sha))
        if old is None or (old.batch_size == size and number > old.last_batch):
            found[(batch.group(2), sha)] = Checkpoint(size, keys, number, source="log")


def read_log_lines(path: Path) -> list[str]:
    """A log's complete lines; a torn last line (no newline) is ignored."""
    try:
        data = path.read_bytes()
    except OSError:
        return []
    lines = data.split(b"\n")
    return [line.decode("utf-8", "replace").rstrip("\r") for line in lines[:-1]]


def read_log_checkpoints(log_dir: Path, target: str) -> dict[tuple[str, str], Checkpoint]:
    """Checkpoints from every DataProcessingAllDetails_*.txt, because runs cross midnight."""
    found: dict[tuple[str, str], Checkpoint] = {}
    for path in sorted_log_files(log_dir):
        parse_log_checkpoints(read_log_lines(path), target, found)
    return found


def best_checkpoint(*candidates: Checkpoint | None) -> Checkpoint | None:
    """The checkpoint that got furthest into the file."""
    present = [c for c in candidates if c is not None]
    return max(present, key=lambda c: (c.last_batch * c.batch_size, c.source == "db"), default=None)


class TextLog:
    """The seed-format text log; COMPLETED lines are forced to disk after the commit."""

    def __init__(self, log_dir: Path, started: dt.datetime):
        self.path = log_dir / log_file_name(started)
        try:
            self.handle = open(self.path, "a", encoding="utf-8")
        except OSError as exc:
            raise ArchiveError(f"cannot open text log {self.path}: {exc.strerror}") from None

    def write(self, text: str, durable: bool = False) -> None:
        """Append one line; with durable, fsync it before returning."""
        self.handle.write(text.replace("\n", " ") + "\n")
        self.handle.flush()
        if durable:
            os.fsync(self.handle.fileno())

    def batch(self, file_name: str, number: int, status: str) -> None:
        """A batch status line; final statuses are made durable."""
        self.write(batch_log_line(dt.datetime.now(), file_name, number, status),
                   durable=status != "PROCESSING")

    def close(self) -> None:
        """Flush and close."""
        self.handle.close()


# --------------------------------------------------------------------------- terminal output

class Reporter:
    """What the operator sees: quiet for cron, a live progress line on a terminal."""

    def __init__(self, verbosity: int, stream: Any = None):
        self.stream = stream or sys.stdout
        self.verbosity = verbosity
        self.live = verbosity == 1 and self.stream.isatty()
        self.pending = False

    def say(self, text: str, level: int = 1) -> None:
        """Print a line when the verbosity allows it."""
        if self.verbosity >= level:
            self.clear_progress()
            print(text, file=self.stream, flush=True)

    def batch(self, text: str) -> None:
        """A per-batch line: only with -v (a terminal shows the progress line instead)."""
        self.say(text, level=2)

    def progress(self, text: str) -> None:
        """Redraw the single progress line on a terminal."""
        if self.live:
            self.stream.write("\r" + text[:200] + "\x1b[K")
            self.stream.flush()
            self.pending = True

    def clear_progress(self) -> None:
        """Erase the progress line before printing a normal line."""
        if self.pending:
            self.stream.write("\r\x1b[K")
            self.pending = False


# --------------------------------------------------------------------------- database access

def is_connection_error(exc: BaseException) -> bool:
    """The connection is gone (server down, killed, network), as opposed to a SQL error."""
    errno = getattr(exc, "errno", None)
    return errno in CONNECTION_ERRNOS or (
        isinstance(exc, mysql.connector.errors.OperationalError) and errno in (None, -1))


def is_transient(exc: BaseException) -> bool:
    """Worth retrying the whole batch: deadlock, lock wait timeout or a lost connection."""
    return getattr(exc, "errno", None) in DEADLOCK_ERRNOS or is_connection_error(exc)


def describe_mysql_error(exc: BaseException) -> str:
    """MySQL error text with its number, on one line."""
    errno = getattr(exc, "errno", None)
    text = getattr(exc, "msg", None) or str(exc)
    return " ".join(f"MySQL Error {errno}: {text}".split()) if errno and errno > 0 else " ".join(str(exc).split())


class Database:
    """One connection to the primary, with a session set up for safe archiving."""

    def __init__(self, config: Config, read_only: bool = False):
        self.config = config
        self.read_only = read_only
        self.conn: Any = None
        self.cursor: Any = None  # one cursor per session: a new one costs a ping
        self.lock: str | None = None
        self.connect()

    def connect(self) -> None:
        """Connect, or raise a critical error naming the server."""
        try:
            self.reconnect()
        except mysql.connector.Error as exc:
            raise ArchiveError(f"cannot connect to {self.config.db.describe()}: "
                               f"{describe_mysql_error(exc)}") from exc

    def reconnect(self) -> None:
        """(Re)connect and set up the session; after a reconnect take the run lock back."""
        self.drop()
        self.conn = mysql.connector.connect(
            **self.config.db.connect_kwargs(), autocommit=True, charset="utf8mb4",
            use_unicode=True, get_warnings=False)
        self.cursor = self.conn.cursor()
        try:
            self.session_setup()
            if self.lock:
                self.reacquire_lock()
        except Exception:
            self.drop()
            raise

    def drop(self) -> None:
        """Forget a connection that is gone or unwanted."""
        conn, self.conn, self.cursor = self.conn, None, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # closing a dead connection can fail in many ways
                pass

    def session_setup(self) -> None:
        """Strict mode turns silent truncation into errors; RR gives gap locks on keys."""
        modes = [m for m in (self.query("SELECT @@SESSION.sql_mode")[0][0] or "").split(",") if m]
        if "STRICT_ALL_TABLES" not in modes:
            modes.append("STRICT_ALL_TABLES")
        self.execute("SET SESSION sql_mode = %s", (",".join(modes),))
        self.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        self.execute(f"SET SESSION innodb_lock_wait_timeout = {int(self.config.lock_wait_timeout)}")
        if not self.read_only:
            self.execute("SET SESSION wait_timeout = 3600")
        self.execute("SET SESSION autocommit = 0")

    def run_sql(self, sql: str, params: Sequence = ()) -> list[tuple]:
        """Run one statement on the session's cursor; return its rows, if any."""
        self.cursor.execute(sql, tuple(params) if params else None)
        return self.cursor.fetchall() if self.cursor.with_rows else []

    def execute(self, sql: str, params: Sequence = ()) -> int:
        """Run one statement; return the affected row count."""
        self.run_sql(sql, params)
        return self.cursor.rowcount

    def execute_script(self, statements: Sequence[tuple[str, Sequence]]) -> list[int]:
        """Run statements in one round trip (the server stops at the first error); return row counts."""
        params = tuple(p for _, ps in statements for p in ps)
        self.cursor.execute("; ".join(sql for sql, _ in statements), params or None)
        counts = [self.cursor.rowcount]
        try:
            while self.cursor.nextset():
                counts.append(self.cursor.rowcount)
        except mysql.connector.Error:
            raise
        except Exception as exc:  # the C extension's nextset() raises server errors untranslated
            if not getattr(exc, "errno", None):
                raise
            raise mysql.connector.errors.get_mysql_exception(
                exc.errno, msg=exc.msg, sqlstate=exc.sqlstate) from exc
        return counts

    def query(self, sql: str, params: Sequence = ()) -> list[tuple]:
        """Run one query; return all rows."""
        return self.run_sql(sql, params)

    def query_dicts(self, sql: str, params: Sequence = ()) -> list[dict[str, Any]]:
        """Run one query; return rows as dicts."""
        rows = self.run_sql(sql, params)
        names = [column[0] for column in self.cursor.description]
        return [dict(zip(names, row)) for row in rows]

    def commit(self) -> None:
        """Commit the open transaction."""
        self.conn.commit()

    def rollback(self) -> None:
        """Roll back, ignoring a connection that is already gone."""
        try:
            if self.conn is not None:
                self.conn.rollback()
        except Exception:  # the C extension raises its own error type for a dead socket
            self.drop()

    def write(self, sql: str, params: Sequence = ()) -> int:
        """Run one tracking statement in its own transaction."""
        count = self.execute(sql, params)
        self.commit()
        return count

    def acquire_lock(self, name: str) -> None:
        """Take the run lock or raise "already running" naming its holder."""
        got = self.query("SELECT GET_LOCK(%s, 0)", (name,))[0][0]
        if got != 1:
            holder = self.query("SELECT IS_USED_LOCK(%s)", (name,))[0][0]
            raise ArchiveError(
                f"another archive.py run is already running for `{self.config.database}`."
                f"`{self.config.source_table}` (server connection {holder} holds lock '{name}'); "
                f"if that process is dead, KILL {holder} on the server", EXIT_LOCKED)
        self.lock = name

    def reacquire_lock(self) -> None:
        """After a reconnect the lock died with the old session; take it back or stop."""
        name, self.lock = self.lock, None
        try:
            self.acquire_lock(name)
        except ArchiveError as exc:
            raise ArchiveError(f"lost the run lock while reconnecting: {exc}") from None

    def close(self) -> None:
        """Close; the server releases the run lock with the session."""
        self.drop()


def fetch_columns(db: Database, table: str) -> list[dict[str, Any]]:
    """A table's columns from information_schema, in table order."""
    return db.query_dicts(
        "SELECT COLUMN_NAME AS name, DATA_TYPE AS data_type, COLUMN_TYPE AS column_type, "
        "CHARACTER_SET_NAME AS charset, CHARACTER_MAXIMUM_LENGTH AS max_length, "
        "IS_NULLABLE AS nullable, COLUMN_DEFAULT AS col_default, EXTRA AS extra "
        "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s "
        "ORDER BY ORDINAL_POSITION", (table,))


def is_generated(column: dict[str, Any]) -> bool:
    """Generated columns cannot be inserted into and are recomputed anyway."""
    extra = (column["extra"] or "").upper()
    return any(k in extra for k in ("VIRTUAL GENERATED", "STORED GENERATED", "PERSISTENT GENERATED"))


def has_unique_key_on(db: Database, table: str, column: str) -> bool:
    """Whether `column` alone is the primary key or a unique key of `table`."""
    rows = db.query(
        "SELECT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() "
        "AND TABLE_NAME = %s AND NON_UNIQUE = 0 GROUP BY INDEX_NAME "
        "HAVING COUNT(*) = 1 AND MAX(COLUMN_NAME) = %s", (table, column))
    return bool(rows)


def child_foreign_keys(db: Database, table: str) -> list[tuple[str, str, str, str]]:
    """(schema, child table, constraint, ON DELETE rule) of every foreign key to `table`."""
    return db.query(
        "SELECT CONSTRAINT_SCHEMA, TABLE_NAME, CONSTRAINT_NAME, DELETE_RULE "
        "FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE UNIQUE_CONSTRAINT_SCHEMA = DATABASE() "
        "AND REFERENCED_TABLE_NAME = %s", (table,))


def describe_foreign_keys(children: list[tuple[str, str, str, str]]) -> tuple[list[str], list[str]]:
    """Split child foreign keys into those whose ON DELETE changes child rows and those that block."""
    cascades = [f"{schema}.{child} ({name}: ON DELETE {rule})" for schema, child, name, rule in children
                if rule in ("CASCADE", "SET NULL", "SET DEFAULT")]
    restricts = [f"{schema}.{child} ({name}) restricts deletes: a batch with a still-referenced row "
                 "fails with error 1451 and is rolled back" for schema, child, name, rule in children
                 if rule in ("RESTRICT", "NO ACTION")]
    return cascades, restricts


@dataclass
class Preflight:
    """The outcome of checking the tables: a plan, or the problems that block one."""

    plan: TablePlan | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def describe_type(column: dict[str, Any]) -> str:
    """A column's type with its character set, for messages."""
    return " ".join(filter(None, (column["column_type"], column["charset"])))


def compare_columns(source: list[dict], archive: list[dict], found: Preflight) -> tuple[str, ...]:
    """Pick the columns to copy and record mismatches that would lose or change data."""
    by_name = {c["name"].lower(): c for c in archive}
    copied = []
    for column in source:
        twin = by_name.get(column["name"].lower())
        if is_generated(column):
            found.notes.append(f"generated column `{column['name']}` is not copied")
        elif twin is None:
            found.problems.append(f"archive table has no column `{column['name']}`")
        elif is_generated(twin):
            found.notes.append(f"archive column `{column['name']}` is generated; not copied")
        elif (twin["column_type"].lower(), twin["charset"]) != (column["column_type"].lower(), column["charset"]):
            found.problems.append(
                f"column `{column['name']}` is {describe_type(column)} in the source but "
                f"{describe_type(twin)} in the archive")
        else:
            copied.append(column["name"])
    names = {c.lower() for c in copied} | {c["name"].lower() for c in source}
    for column in archive:
        needs_value = column["nullable"] == "NO" and column["col_default"] is None and not (
            is_generated(column) or "auto_increment" in (column["extra"] or "").lower())
        if column["name"].lower() not in names and needs_value:
            found.problems.append(f"archive column `{column['name']}` is NOT NULL without a default")
    return tuple(copied)


def check_privileges(db: Database, plan: TablePlan, found: Preflight) -> None:
    """EXPLAIN needs the same privileges as the statement, so it tests them without writing."""
    condition = f"{quote_ident(plan.key)} IN (NULL)"
    for label, sql in (("INSERT ... SELECT into the archive", plan.insert_sql(condition)),
                       ("DELETE from the source", plan.delete_sql(condition))):
        try:
            db.query("EXPLAIN " + sql)
        except mysql.connector.Error as exc:
            if is_connection_error(exc):
                raise
            found.problems.append(f"cannot {label}: {describe_mysql_error(exc)}")
    db.rollback()


def check_guard(db: Database, plan: TablePlan, found: Preflight) -> None:
    """The guard must be a condition the server accepts on the source table."""
    try:
        db.query(f"SELECT 1 FROM {quote_ident(plan.source)} s WHERE ({plan.guard}) LIMIT 0")
    except mysql.connector.Error as exc:
        if is_connection_error(exc):
            raise
        found.problems.append(f"[controls] guard is not valid SQL here: {describe_mysql_error(exc)}")
    db.rollback()


def run_preflight(db: Database, config: Config) -> Preflight:
    """Check tables, key, columns, privileges and cascading foreign keys; touch nothing."""
    found = Preflight()
    source = fetch_columns(db, config.source_table)
    archive = fetch_columns(db, config.archive_table)
    for table, columns in ((config.source_table, source), (config.archive_table, archive)):
        if not columns:
            found.problems.append(f"table `{config.database}`.`{table}` does not exist")
    if found.problems:
        return found
    key = next((c for c in source if c["name"].lower() == config.key_column.lower()), None)
    if key is None:
        found.problems.append(f"source table has no column `{config.key_column}`")
        return found
    if not has_unique_key_on(db, config.source_table, key["name"]):
        found.problems.append(f"`{key['name']}` is not the primary key or a unique key of the source")
    if not has_unique_key_on(db, config.archive_table, key["name"]):
        found.problems.append(f"`{key['name']}` is not the primary key or a unique key of the archive")
    columns = compare_columns(source, archive, found)
    cascades, restricts = describe_foreign_keys(child_foreign_keys(db, config.source_table))
    if cascades and not config.allow_cascading_deletes:
        found.problems.append(
            "deleting source rows would cascade into child tables whose rows would vanish "
            f"unarchived: {', '.join(cascades)}; archive those first, or set "
            "[archive] allow_cascading_deletes = yes to accept it")
    elif cascades:
        found.notes.append(f"cascading deletes accepted by config: {', '.join(cascades)}")
    try:
        key_type = key_type_from_column(key["data_type"], key["column_type"], key["max_length"])
    except ArchiveError as exc:
        found.problems.append(str(exc))
        return found
    plan = TablePlan(config.source_table, config.archive_table, key["name"], columns, key_type, config.guard)
    if key["name"] not in columns:
        found.problems.append(f"key column `{key['name']}` must be copied, but is generated")
    if not found.problems:  # the EXPLAINs would only repeat a column problem as a grant problem
        check_privileges(db, plan, found)
    if config.guard and key_type.kind == "str" and "%s" in config.guard:
        found.problems.append("[controls] guard must not contain '%s' with a string key column "
                              "(it would be taken for a key parameter)")
    if config.guard and not found.problems:
        check_guard(db, plan, found)
    found.notes.extend(restricts)
    if not found.problems:
        found.plan = plan
    return found


def require_plan(db: Database, config: Config) -> TablePlan:
    """Preflight, raising a critical error with every problem found."""
    found = run_preflight(db, config)
    if found.plan is None:
        raise ArchiveError("preflight failed: " + "; ".join(found.problems))
    return found.plan


def existing_tracking_tables(db: Database) -> set[str]:
    """Which tracking tables exist in the database."""
    rows = db.query("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
                    "AND TABLE_NAME IN ('process_logs', 'file_processing_logs', 'batch_processing_logs')")
    return {r[0] for r in rows}


def ensure_tracking_tables(db: Database) -> None:
    """Create the tracking tables that are missing (so no CREATE privilege is needed after)."""
    present = existing_tracking_tables(db)
    for name, ddl in zip(TRACKING_TABLES, TRACKING_DDL):
        if name not in present:
            db.execute(ddl)
    db.commit()


# --------------------------------------------------------------------------- run bookkeeping

@dataclass
class Counters:
    """Row counts of one batch, file or run."""

    batches: int = 0
    archived: int = 0
    deleted: int = 0
    duplicates: int = 0
    conflicts: int = 0
    skipped_by_guard: int = 0
    missing: int = 0

    def add(self, other: "Counters") -> None:
        """Accumulate another set of counts."""
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass
class RunState:
    """What one run has done so far; owned by run(), never module-wide."""

    run_id: int = 0
    started: float = field(default_factory=time.monotonic)
    totals: Counters = field(default_factory=Counters)
    files_done: int = 0
    files_skipped: int = 0
    rejected: list[str] = field(default_factory=list)
    conflict_files: list[str] = field(default_factory=list)
    stop_reason: str | None = None
    paused_seconds: float = 0.0


@dataclass
class StopSignal:
    """Set by SIGTERM/SIGINT or a control; checked between batches."""

    reason: str | None = None

    def handler(self, signum: int, _frame: Any) -> None:
        """Signal handler: remember why, and let the current batch finish or roll back."""
        self.reason = f"received {signal.Signals(signum).name}"


def start_run(db: Database, config: Config, total_files: int) -> int:
    """Mark runs that died without an end as INTERRUPTED, then record this run as RUNNING."""
    host, pid = socket.gethostname(), os.getpid()
    db.execute(
        "UPDATE file_processing_logs f JOIN process_logs p ON p.id = f.process_log_id "
        "SET f.status = 'INTERRUPTED', f.finished_at = NOW() "
        "WHERE p.status = 'RUNNING' AND p.source_table = %s AND f.status = 'PROCESSING'",
        (config.source_table,))
    db.execute(
        "UPDATE process_logs SET status = 'INTERRUPTED', end_time = NOW(), "
        "stop_reason = 'process died', error_message = NULLIF(CONCAT_WS('; ', error_message, %s), '') "
        "WHERE status = 'RUNNING' AND source_table = %s",
        (f"run ended without recording an outcome (killed or lost its server); found by a run "
         f"started on {host} pid {pid}", config.source_table))
    db.execute(
        "INSERT INTO process_logs (source_table, archive_table, status, host, pid, start_time, "
        "total_files) VALUES (%s, %s, 'RUNNING', %s, %s, NOW(), %s)",
        (config.source_table, config.archive_table, host, pid, total_files))
    run_id = db.query("SELECT LAST_INSERT_ID()")[0][0]
    db.commit()
    return int(run_id)


def finish_run(db: Database, state: RunState, status: str, error: str | None) -> None:
    """Record the run's end (its own small transaction); long texts are cut to fit."""
    db.write(
        "UPDATE process_logs SET status = %s, end_time = NOW(), stop_reason = %s, pause_reason = NULL, "
        "paused_seconds = %s, error_message = NULLIF(CONCAT_WS('; ', error_message, %s), '') WHERE id = %s",
        (status, state.stop_reason and state.stop_reason[:255], round(state.paused_seconds, 3),
         error and error[:MAX_MESSAGE], state.run_id))


def db_completed_run(db: Database, scan: FileScan) -> int | None:
    """The run that completed a file with this exact content, if any."""
    rows = db.query("SELECT process_log_id FROM file_processing_logs WHERE file_name = %s "
                    "AND file_checksum = %s AND status = 'COMPLETED' LIMIT 1", (scan.name, scan.sha256))
    return rows[0][0] if rows else None


def db_checkpoint(db: Database, scan: FileScan) -> Checkpoint | None:
    """The furthest committed batch for a file with this exact content."""
    rows = db.query(
        "SELECT f.batch_size, f.total_keys, b.batch_number, b.end_offset, b.end_line "
        "FROM file_processing_logs f JOIN batch_processing_logs b "
        "ON b.process_log_id = f.process_log_id AND b.file_name = f.file_name "
        "WHERE f.file_name = %s AND f.file_checksum = %s "
        "AND b.status IN ('COMPLETED', 'COMPLETED_WITH_DUPLICATES') "
        "ORDER BY b.batch_number * f.batch_size DESC LIMIT 1", (scan.name, scan.sha256))
    if not rows:
        return None
    size, keys, number, offset, line = rows[0]
    return Checkpoint(int(size), int(keys), int(number), int(offset or 0), int(line or 0))


def db_other_checksums(db: Database, scan: FileScan) -> list[str]:
    """Checksums recorded earlier for a file of this name with different content."""
    rows = db.query("SELECT DISTINCT file_checksum FROM file_processing_logs WHERE file_name = %s "
                    "AND file_checksum <> %s AND last_processed_batch > 0", (scan.name, scan.sha256))
    return [r[0] for r in rows]


def start_file(db: Database, run_id: int, scan: FileScan, batch_size: int, total_batches: int,
               start_batch: int) -> int:
    """Record a file as PROCESSING with the batches already done before this run."""
    done = start_batch - 1
    db.execute(
        "INSERT INTO file_processing_logs (process_log_id, file_name, file_size, file_checksum, "
        "status, batch_size, total_keys, total_batches, start_batch, processed_batches, "
        "last_processed_batch, started_at) VALUES (%s, %s, %s, %s, 'PROCESSING', %s, %s, %s, %s, "
        "%s, %s, NOW())",
        (run_id, scan.name, scan.size, scan.sha256, batch_size, scan.keys, total_batches,
         start_batch, done, done))
    file_id = db.query("SELECT LAST_INSERT_ID()")[0][0]
    db.execute("UPDATE process_logs SET current_file = %s, current_batch = %s WHERE id = %s",
               (scan.name, done or None, run_id))
    db.commit()
    return int(file_id)


def finish_file(db: Database, file_id: int, run_id: int, status: str, error: str | None) -> None:
    """Record a file's end; a completed or rejected file counts as processed."""
    db.execute("UPDATE file_processing_logs SET status = %s, finished_at = NOW(), "
               "error_message = %s WHERE id = %s", (status, error, file_id))
    if status != "INTERRUPTED":
        db.execute("UPDATE process_logs SET processed_files = processed_files + 1 WHERE id = %s",
                   (run_id,))
    db.commit()


def reject_file(db: Database, run_id: int, scan: FileScan, batch_size: int, error: str) -> None:
    """Record a malformed file as FAILED with its reason; none of its batches ran."""
    file_id = start_file(db, run_id, scan, batch_size, 0, 1)
    finish_file(db, file_id, run_id, "FAILED", error)


# --------------------------------------------------------------------------- one batch

@dataclass(frozen=True)
class BatchContext:
    """Where a batch belongs: run, file row and file name."""

    run_id: int
    file_id: int
    file_name: str


def classify_batch(db: Database, plan: TablePlan, condition: str, params: tuple
                   ) -> tuple[list, list, list, int]:
    """Lock the batch's source rows; split keys into to-copy, identical twins and conflicts."""
    to_copy, identical, conflicts, skipped = [], [], [], 0
    for key, passes_guard, archived, same in db.query(plan.classify_sql(condition), params):
        if not passes_guard:
            skipped += 1
        elif not archived:
            to_copy.append(key)
        elif same:
            identical.append(key)
        else:
            conflicts.append(key)
    return to_copy, identical, conflicts, skipped


def move_rows(db: Database, plan: TablePlan, keys: Sequence, column: str = "") -> tuple[int, int]:
    """Copy then delete exactly `keys`; the two counts must agree or nothing happens."""
    if not keys:
        return 0, 0
    condition, params = key_condition(column or quote_ident(plan.key), keys, plan.key_type)
    copied = db.execute(plan.insert_sql(condition), params)
    deleted = db.execute(plan.delete_sql(condition), params)
    return copied, deleted


def archive_batch(db: Database, plan: TablePlan, batch: Batch) -> tuple[Counters, list]:
    """Move one batch inside the open transaction; return its counts and conflicting keys.

    The fast path copies then deletes the batch's keys: INSERT ... SELECT takes shared
    locks on the rows it copies, so the DELETE removes exactly those rows. A duplicate
    key, a guard or a count mismatch sends the batch down the careful path, which locks
    and compares every row first.
    """
    condition, params = key_condition(quote_ident(plan.key), batch.keys, plan.key_type)
    result = Counters(batches=1)
    if not plan.guard:
        try:
            copied, deleted = db.execute_script([(plan.insert_sql(condition), params),
                                                 (plan.delete_sql(condition), params)])
            if copied == deleted:
                result.archived = result.deleted = copied
                result.missing = len(set(batch.keys)) - copied
                return result, []
            db.rollback()
        except mysql.connector.Error as exc:
            if exc.errno != errorcode.ER_DUP_ENTRY:
                raise
    return archive_batch_carefully(db, plan, batch)


def archive_batch_carefully(db: Database, plan: TablePlan, batch: Batch) -> tuple[Counters, list]:
    """Lock and compare each row: copy new ones, drop identical twins, keep conflicts."""
    aliased, params = key_condition("s." + quote_ident(plan.key), batch.keys, plan.key_type)
    to_copy, identical, conflicts, skipped = classify_batch(db, plan, aliased, params)
    copied, deleted = move_rows(db, plan, to_copy)
    if copied != len(to_copy) or deleted != len(to_copy):
        raise ArchiveError(f"safety check failed: locked {len(to_copy)} rows but copied {copied} "
                           f"and deleted {deleted}; the batch was rolled back")
    twins = 0
    if identical:
        twin_condition, twin_params = key_condition("s." + quote_ident(plan.key), identical, plan.key_type)
        twins = db.execute(plan.delete_identical_sql(twin_condition), twin_params)
        if twins != len(identical):
            raise ArchiveError(f"safety check failed: {len(identical)} identical duplicates but "
                               f"{twins} deleted; the batch was rolled back")
    result = Counters(batches=1, archived=copied, deleted=deleted + twins, duplicates=len(identical),
                      conflicts=len(conflicts), skipped_by_guard=skipped)
    result.missing = len(set(batch.keys)) - copied - len(identical) - len(conflicts) - skipped
    return result, conflicts


def batch_record_statements(ctx: BatchContext, batch: Batch, counts: Counters, conflicts: list,
                            status: str) -> list[tuple[str, tuple]]:
    """The tracking writes of a batch; they run inside its transaction and commit with it."""
    return [(
        "INSERT INTO batch_processing_logs (process_log_id, file_name, batch_number, status, "
        "first_key, last_key, keys_in_batch, rows_archived, rows_deleted, duplicates, conflicts, "
        "skipped_by_guard, conflict_keys, end_offset, end_line) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (ctx.run_id, ctx.file_name, batch.number, status, str(batch.keys[0])[:255],
         str(batch.keys[-1])[:255], len(batch.keys), counts.archived, counts.deleted,
         counts.duplicates, counts.conflicts, counts.skipped_by_guard,
         ",".join(map(str, conflicts)) or None, batch.end_offset, batch.end_line)), (
        "UPDATE file_processing_logs f JOIN process_logs p ON p.id = f.process_log_id SET "
        "f.processed_batches = %s, f.last_processed_batch = %s, f.rows_archived = f.rows_archived + %s, "
        "f.rows_deleted = f.rows_deleted + %s, f.duplicates = f.duplicates + %s, "
        "f.conflicts = f.conflicts + %s, f.skipped_by_guard = f.skipped_by_guard + %s, "
        "p.current_batch = %s, p.rows_archived = p.rows_archived + %s, "
        "p.rows_deleted = p.rows_deleted + %s, p.duplicates = p.duplicates + %s, "
        "p.conflicts = p.conflicts + %s, p.skipped_by_guard = p.skipped_by_guard + %s WHERE f.id = %s",
        (batch.number, batch.number, counts.archived, counts.deleted, counts.duplicates,
         counts.conflicts, counts.skipped_by_guard, batch.number, counts.archived, counts.deleted,
         counts.duplicates, counts.conflicts, counts.skipped_by_guard, ctx.file_id))]


def batch_committed(db: Database, ctx: BatchContext, number: int) -> bool:
    """After a connection died during COMMIT: did the batch make it?"""
    rows = db.query("SELECT 1 FROM batch_processing_logs WHERE process_log_id = %s AND file_name = %s "
                    "AND batch_number = %s AND status <> 'FAILED'", (ctx.run_id, ctx.file_name, number))
    db.rollback()
    return bool(rows)


def run_batch_once(db: Database, plan: TablePlan, ctx: BatchContext, batch: Batch
                   ) -> tuple[Counters, list, str]:
    """One attempt: move, record and commit the batch as one transaction."""
    counts, conflicts = archive_batch(db, plan, batch)
    status = "COMPLETED_WITH_DUPLICATES" if counts.duplicates or counts.conflicts else "COMPLETED"
    # One round trip for the tracking rows and the COMMIT: the batch's only commit.
    db.execute_script(batch_record_statements(ctx, batch, counts, conflicts, status) + [("COMMIT", ())])
    return counts, conflicts, status


def run_batch(db: Database, plan: TablePlan, ctx: BatchContext, batch: Batch, log: TextLog,
              say: Callable[[str], None]) -> tuple[Counters, list, str] | None:
    """Run a batch, retrying deadlocks, lock waits and lost connections with capped backoff.

    Returns None when a COMMIT whose answer was lost turns out to have committed.
    """
    retries = db.config.max_retries
    for attempt in range(1, retries + 2):
        try:
            if db.conn is None:
                db.reconnect()
                if batch_committed(db, ctx, batch.number):
                    return None
            return run_batch_once(db, plan, ctx, batch)
        except mysql.connector.Error as exc:
            db.rollback()
            if is_connection_error(exc):
                db.drop()
            if not is_transient(exc) or attempt > retries:
                raise
            wait = min(0.5 * 2 ** (attempt - 1), RETRY_BACKOFF_CAP)
            message = (f"RETRY: Batch {batch.number} attempt {attempt + 1}/{retries + 1} after "
                       f"{describe_mysql_error(exc)}; waiting {wait:.1f}s")
            log.write(message)
            say(message)
            time.sleep(wait)
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- pauses and stops

def replica_lag(conn: Any) -> float | None:
    """Seconds_Behind_Master of a replica, or None when replication is not running."""
    cursor = conn.cursor(dictionary=True)
    try:
        try:
            cursor.execute("SHOW REPLICA STATUS")
        except mysql.connector.Error as exc:
            if exc.errno != errorcode.ER_PARSE_ERROR:
                raise
            cursor.execute("SHOW SLAVE STATUS")
        rows = cursor.fetchall()
    finally:
        cursor.close()
    if not rows:
        return None
    lags = [row.get("Seconds_Behind_Master", row.get("Seconds_Behind_Source")) for row in rows]
    return None if any(lag is None for lag in lags) else float(max(lags))


class Controls:
    """Everything that may pause or stop a run between batches, each visible in the log."""

    def __init__(self, config: Config, db: Database, stop: StopSignal, log: TextLog,
                 reporter: Reporter, state: RunState):
        self.config, self.db, self.stop, self.log = config, db, stop, log
        self.reporter, self.state = reporter, state
        self.replica_conns: dict[int, Any] = {}
        self.batches_seen = 0

    def stop_reason(self) -> str | None:
        """Why the run must stop now, if it must."""
        if self.stop.reason:
            return self.stop.reason
        elapsed = time.monotonic() - self.state.started
        if self.config.max_runtime and elapsed >= self.config.max_runtime:
            return f"max_runtime {self.config.max_runtime:g}s reached after {elapsed:.0f}s"
        if self.config.stop_file and self.config.stop_file.exists():
            return f"stop file {self.config.stop_file} exists"
        return None

    def sleep(self, seconds: float) -> str | None:
        """Sleep in short steps so a signal or stop file ends the wait early."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            reason = self.stop_reason()
            if reason:
                return reason
            time.sleep(min(left, 0.2))
        return self.stop_reason()

    def before_batch(self) -> str | None:
        """Sleep, then wait out load and replica lag; return a stop reason or None."""
        self.batches_seen += 1
        if self.batches_seen > 1 and self.config.sleep_seconds:
            reason = self.sleep(self.config.sleep_seconds)
            if reason:
                return reason
        return self.wait_until_clear()

    def wait_until_clear(self) -> str | None:
        """Pause while the server is busy or a replica lags; give up after replica_timeout."""
        paused_at = replica_since = last_reason = None
        while True:
            stop = self.stop_reason()
            reason, replica_problem = (None, False) if stop else self.pause_reason()
            now = time.monotonic()
            if reason is None or stop:
                if paused_at is not None:
                    self.state.paused_seconds += now - paused_at
                    self.note(f"RESUME: pause over after {now - paused_at:.1f}s" if not stop else
                              f"PAUSE ENDED: {stop}")
                return stop
            paused_at = paused_at or now
            replica_since = (replica_since or now) if replica_problem else None
            if reason != last_reason:
                self.note(f"PAUSE: {reason}", pause=reason)
                last_reason = reason
            if replica_since is not None and now - replica_since >= self.config.replica_timeout:
                self.state.paused_seconds += now - paused_at
                stop = f"gave up after {now - replica_since:.0f}s: {reason}"
                self.note(f"PAUSE ENDED: {stop}")
                return stop
            self.sleep(self.config.check_interval)  # cut short by a signal; the loop top sees why

    def pause_reason(self) -> tuple[str | None, bool]:
        """(why to pause, whether it is about replicas), or (None, False) to go on."""
        for index, replica in enumerate(self.config.replicas):
            lag = self.read_lag(index, replica)
            if lag is None:
                return f"replica {replica.describe()} lag unknown (replication stopped or unreachable)", True
            if lag > self.config.max_replica_lag:
                return (f"replica {replica.describe()} is {lag:g}s behind "
                        f"(max_replica_lag {self.config.max_replica_lag:g}s)"), True
        if self.config.max_threads_running:
            if self.db.conn is None:
                self.db.reconnect()
            running = int(self.db.query("SHOW GLOBAL STATUS LIKE 'Threads_running'")[0][1])
            self.db.rollback()
            if running > self.config.max_threads_running:
                return (f"Threads_running is {running} "
                        f"(max_threads_running {self.config.max_threads_running})"), False
        return None, False

    def read_lag(self, index: int, replica: DbSettings) -> float | None:
        """One replica's lag, reconnecting as needed; None when it cannot be known."""
        try:
            conn = self.replica_conns.get(index)
            if conn is None:
                conn = mysql.connector.connect(**replica.connect_kwargs(), autocommit=True)
                self.replica_conns[index] = conn
            return replica_lag(conn)
        except mysql.connector.Error:
            self.replica_conns.pop(index, None)
            return None

    def note(self, text: str, pause: str | None = None) -> None:
        """A pause or resume line: text log, terminal, and process_logs for --status."""
        self.log.write(text)
        self.reporter.say(text)
        try:
            self.db.write("UPDATE process_logs SET pause_reason = %s, paused_seconds = %s WHERE id = %s",
                          (pause and pause[:255], round(self.state.paused_seconds, 3), self.state.run_id))
        except mysql.connector.Error:
            self.db.drop()  # the next batch reconnects (and retries) or fails the run

    def close(self) -> None:
        """Close replica connections."""
        for conn in self.replica_conns.values():
            try:
                conn.close()
            except Exception:  # a dead replica connection may fail to close; nothing to do
                pass


# --------------------------------------------------------------------------- one file

@dataclass
class RunContext:
    """What a run passes around: settings, connection, logs and state."""

    config: Config
    db: Database
    plan: TablePlan
    log: TextLog
    reporter: Reporter
    state: RunState
    controls: Controls
    log_checkpoints: dict[tuple[str, str], Checkpoint]

    @property
    def target(self) -> str:
        """database.source_table, as written in FILE_INFO lines."""
        return f"{self.config.database}.{self.config.source_table}"

    def say(self, text: str, log: bool = True) -> None:
        """Tell the operator, and the text log."""
        if log:
            self.log.write(text)
        self.reporter.say(text)


def skip_completed_file(run: RunContext, scan: FileScan, run_id: int) -> None:
    """A file completed before with this exact content: count it and move on."""
    run.say(f"SKIPPING: {scan.name} (completed by run {run_id}; same content)")
    run.state.files_skipped += 1
    run.db.write("UPDATE process_logs SET processed_files = processed_files + 1 WHERE id = %s",
                 (run.state.run_id,))


def plan_file(run: RunContext, path: Path) -> tuple[FileScan, Checkpoint | None] | None:
    """Identify a file and find its checkpoint; None when it is done or rejected."""
    scan = hash_file(path)
    done_by = db_completed_run(run.db, scan)
    if done_by is not None:
        run.db.rollback()
        skip_completed_file(run, scan, done_by)
        return None
    checkpoint = best_checkpoint(db_checkpoint(run.db, scan),
                                 run.log_checkpoints.get((scan.name, scan.sha256)))
    others = db_other_checksums(run.db, scan) + [
        sha for (name, sha) in run.log_checkpoints if name == scan.name and sha != scan.sha256]
    run.db.rollback()
    if others and checkpoint is None:
        run.say(f"CHANGED: {scan.name} differs from its earlier checkpoint (sha256 {others[0][:12]}… "
                f"now {scan.sha256[:12]}…); not resuming by batch number, starting at batch 1")
    if checkpoint is not None:
        return dataclasses.replace(scan, keys=checkpoint.total_keys), checkpoint
    try:
        keys = count_keys(path, run.config.csv_column, run.config.csv_delimiter, run.plan.key_type)
    except ArchiveError as exc:
        reject(run, scan, str(exc))
        return None
    return dataclasses.replace(scan, keys=keys), None


def reject(run: RunContext, scan: FileScan, reason: str) -> None:
    """A malformed file: FAILED with its reason, none of its batches run, the run goes on."""
    run.log.write(f"STARTING: {scan.name} (Size: {scan.size} bytes)")
    run.say(f"ERROR: rejected {reason}")
    print(f"archive.py: rejected {reason}", file=sys.stderr)
    reject_file(run.db, run.state.run_id, scan, run.config.batch_size, f"rejected: {reason}")
    run.state.rejected.append(scan.name)


def open_keys(run: RunContext, path: Path, checkpoint: Checkpoint | None) -> Iterator:
    """The file's keys from the first batch not done: seek to a stored offset, else skip."""
    config = run.config
    if checkpoint and checkpoint.end_offset and checkpoint.source == "db":
        return iter_csv_keys(path, config.csv_column, config.csv_delimiter, run.plan.key_type,
                             start=(checkpoint.end_offset, checkpoint.end_line))
    keys = iter_csv_keys(path, config.csv_column, config.csv_delimiter, run.plan.key_type)
    done = checkpoint.last_batch * checkpoint.batch_size if checkpoint else 0
    return skip_keys(keys, done)


def process_file(run: RunContext, path: Path) -> None:
    """Archive one file batch by batch from its first batch not done."""
    planned = plan_file(run, path)
    if planned is None:
        return
    scan, checkpoint = planned
    batch_size = checkpoint.batch_size if checkpoint else run.config.batch_size
    total = math.ceil(scan.keys / batch_size)
    start = checkpoint.last_batch + 1 if checkpoint else 1
    run.log.write(f"STARTING: {scan.name} (Size: {scan.size} bytes)")
    run.log.write(file_info_line(scan, batch_size, scan.keys, run.target))
    file_id = start_file(run.db, run.state.run_id, scan, batch_size, total, start)
    run.reporter.say(f"STARTING: {scan.name} ({scan.size} bytes, {scan.keys} keys, {total} batches)")
    if start > 1:
        run.say(f"Resuming file {scan.name} from batch {start}")
        run.say(f"Skipping already processed batches 1-{start - 1} (checkpoint from {checkpoint.source})")
    if batch_size != run.config.batch_size:
        run.say(f"NOTE: {scan.name} keeps batch_size {batch_size} from its checkpoint")
    ctx = BatchContext(run.state.run_id, file_id, scan.name)
    file_counts = Counters()
    for batch in iter_batches(open_keys(run, path, checkpoint), batch_size, start):
        reason = run.controls.before_batch()
        if reason:
            run.state.stop_reason = reason
            finish_file(run.db, file_id, run.state.run_id, "INTERRUPTED", reason)
            return
        file_counts.add(archive_one(run, ctx, batch, total))
    if file_counts.conflicts:
        run.state.conflict_files.append(scan.name)
    finish_file(run.db, file_id, run.state.run_id, "COMPLETED", None)
    run.state.files_done += 1
    run.reporter.say(f"FINISHED: {scan.name} ({file_counts.archived} rows archived, "
                     f"{file_counts.duplicates} duplicates, {file_counts.conflicts} conflicts)")


def archive_one(run: RunContext, ctx: BatchContext, batch: Batch, total: int) -> Counters:
    """Run one batch with its log lines; on failure record it and raise."""
    run.log.batch(ctx.file_name, batch.number, "PROCESSING")
    run.reporter.batch(f"Processing batch {batch.number}/{total} - IDs: {batch.keys[0]} to {batch.keys[-1]}")
    try:
        outcome = run_batch(run.db, run.plan, ctx, batch, run.log, run.reporter.say)
    except (mysql.connector.Error, ArchiveError) as exc:
        message = f"Error processing batch {batch.number} in file {ctx.file_name}: " + (
            describe_mysql_error(exc) if isinstance(exc, mysql.connector.Error) else str(exc))
        run.log.write(f"ERROR: {message}")
        run.log.batch(ctx.file_name, batch.number, "FAILED")
        record_batch_failure(run.db, ctx, batch, message)
        raise ArchiveError(message) from exc
    if outcome is None:
        run.log.batch(ctx.file_name, batch.number, "COMPLETED")
        return Counters(batches=1)
    counts, conflicts, status = outcome
    run.log.batch(ctx.file_name, batch.number, status)
    report_duplicates(run, batch, counts, conflicts)
    run.state.totals.add(counts)
    show_progress(run, ctx.file_name, batch.number, total)
    return counts


def report_duplicates(run: RunContext, batch: Batch, counts: Counters, conflicts: list) -> None:
    """DUPLICATE_KEY_ERROR lines: identical twins were removed, conflicts were kept."""
    if counts.duplicates:
        run.say(f"DUPLICATE_KEY_ERROR: Batch {batch.number} - {counts.duplicates} key(s) already "
                "archived with identical rows; removed from the source")
    if conflicts:
        shown = ", ".join(map(str, conflicts[:SHOWN_KEYS]))
        more = f" and {len(conflicts) - SHOWN_KEYS} more" if len(conflicts) > SHOWN_KEYS else ""
        run.say(f"DUPLICATE_KEY_ERROR: Batch {batch.number} - CONFLICT: {len(conflicts)} key(s) "
                f"archived with different rows; both versions kept: {shown}{more}")


def show_progress(run: RunContext, file_name: str, number: int, total: int) -> None:
    """The terminal's single progress line: file, batch, rows, rate and ETA."""
    elapsed = max(time.monotonic() - run.state.started, 1e-6)
    rate = run.state.totals.archived / elapsed
    done_here = run.state.totals.batches
    eta = (total - number) * elapsed / done_here if done_here else 0
    run.reporter.progress(f"{file_name}  batch {number}/{total}  {run.state.totals.archived} rows  "
                          f"{rate:,.0f} rows/s  ETA {format_seconds(eta)}")


def format_seconds(seconds: float) -> str:
    """1h02m03s style."""
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def record_batch_failure(db: Database, ctx: BatchContext, batch: Batch, message: str) -> None:
    """Record the FAILED batch and file; the batch's own work was rolled back."""
    db.rollback()
    try:
        if db.conn is None:
            db.reconnect()
        db.execute(
            "INSERT INTO batch_processing_logs (process_log_id, file_name, batch_number, status, "
            "first_key, last_key, keys_in_batch, error_message) VALUES (%s, %s, %s, 'FAILED', %s, %s, "
            "%s, %s) ON DUPLICATE KEY UPDATE status = 'FAILED', error_message = VALUES(error_message)",
            (ctx.run_id, ctx.file_name, batch.number, str(batch.keys[0])[:255],
             str(batch.keys[-1])[:255], len(batch.keys), message))
        db.execute("UPDATE file_processing_logs SET status = 'FAILED', finished_at = NOW(), "
                   "error_message = %s WHERE id = %s", (message, ctx.file_id))
        db.commit()
    except (mysql.connector.Error, ArchiveError):
        db.drop()  # run() reports that the database could not be written


# --------------------------------------------------------------------------- run

def install_signal_handlers(stop: StopSignal) -> dict[int, Any]:
    """Route SIGTERM and SIGINT to the stop flag; return the previous handlers."""
    previous = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, stop.handler)
    return previous


def restore_signal_handlers(previous: dict[int, Any]) -> None:
    """Put back the handlers that were there before the run."""
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def summary_line(state: RunState, status: str, total_files: int) -> str:
    """One line that says what the run did and why it stopped."""
    t = state.totals
    elapsed = time.monotonic() - state.started
    why = state.stop_reason or ("failed" if status == "FAILED" else "all files done")
    return (f"SUMMARY: {status} | files {total_files} ({state.files_done} archived, "
            f"{state.files_skipped} already done, {len(state.rejected)} rejected) | batches {t.batches} "
            f"| rows archived {t.archived} | rows deleted {t.deleted} | duplicates {t.duplicates} "
            f"| conflicts {t.conflicts} | skipped by guard {t.skipped_by_guard} "
            f"| failures {1 if status == 'FAILED' else 0} | paused {state.paused_seconds:.1f}s "
            f"| elapsed {elapsed:.1f}s | {t.archived / max(elapsed, 1e-6):,.0f} rows/s | stopped: {why}")


def outcome_of(state: RunState) -> tuple[str, int, str | None]:
    """The run's final status, exit code and error message for process_logs."""
    if state.stop_reason:
        return "INTERRUPTED", EXIT_INTERRUPTED, None
    problems = []
    if state.rejected:
        problems.append(f"rejected malformed file(s): {', '.join(state.rejected)}")
    if state.conflict_files:
        problems.append(f"{state.totals.conflicts} duplicate-key conflict(s) kept in both tables "
                        f"in: {', '.join(state.conflict_files)}")
    code = EXIT_REJECTED if state.rejected else EXIT_CONFLICTS if state.conflict_files else EXIT_OK
    return "COMPLETED", code, "; ".join(problems) or None


def record_run_failure(db: Database | None, state: RunState, message: str, log: TextLog) -> None:
    """Write FAILED and the error into process_logs; if the DB is gone, say so in the log."""
    if db is None or not state.run_id:
        return
    try:
        db.rollback()
        if db.conn is None:
            db.reconnect()
        state.stop_reason = None
        finish_run(db, state, "FAILED", message)
    except (mysql.connector.Error, ArchiveError) as exc:
        note = f"could not record the failure in process_logs: {exc}; the next run will mark run " \
               f"{state.run_id} INTERRUPTED"
        log.write(f"ERROR: {note}")
        print(f"archive.py: {note}", file=sys.stderr)


def execute_run(run: RunContext, files: list[Path]) -> int:
    """Walk the files; return the exit code."""
    for path in files:
        reason = run.controls.stop_reason()
        if reason:
            run.state.stop_reason = reason
            break
        process_file(run, path)
        if run.state.stop_reason:
            break
    status, code, error = outcome_of(run.state)
    if status == "INTERRUPTED":
        run.say(f"INTERRUPTED: {run.state.stop_reason}; rerun to resume")
    finish_run(run.db, run.state, status, error)
    run.reporter.clear_progress()
    return code


def run(config: Config, verbosity: int = 1) -> int:
    """Archive every CSV file; the whole job, as cron runs it."""
    state, stop, reporter = RunState(), StopSignal(), Reporter(verbosity)
    log = TextLog(config.log_dir, dt.datetime.now())
    log.write(f"=== Script Starts at: {dt.datetime.now():%d_%m_%Y_%H_%M_%S} ===")
    previous = install_signal_handlers(stop)
    db: Database | None = None
    status, code, files = "FAILED", EXIT_FAILED, []
    try:
        db = Database(config)
        ensure_tracking_tables(db)
        db.acquire_lock(lock_name(config.database, config.source_table))
        files = list_csv_files(config.csv_dir, config.csv_pattern)
        state.run_id = start_run(db, config, len(files))
        reporter.say(f"Run {state.run_id}: {len(files)} file(s) in {config.csv_dir}", level=2)
        plan = require_plan(db, config)
        controls = Controls(config, db, stop, log, reporter, state)
        context = RunContext(config, db, plan, log, reporter, state, controls,
                             read_log_checkpoints(config.log_dir, f"{config.database}.{config.source_table}"))
        try:
            code = execute_run(context, files)
        finally:
            controls.close()
        status = "INTERRUPTED" if code == EXIT_INTERRUPTED else "COMPLETED"
        return code
    except (ArchiveError, mysql.connector.Error) as exc:
        error = exc if isinstance(exc, ArchiveError) else ArchiveError(describe_mysql_error(exc))
        code = error.exit_code
        log.write(f"ERROR: {error}")
        if code == EXIT_FAILED:
            record_run_failure(db, state, str(error), log)
        raise error from exc
    finally:
        restore_signal_handlers(previous)
        reporter.clear_progress()
        if code != EXIT_LOCKED:
            line = summary_line(state, status, len(files))
            log.write(line)
            reporter.say(line, level=1 if code == EXIT_OK else 0)
        if db is not None:
            db.close()
        log.close()


# --------------------------------------------------------------------------- read-only commands

def format_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> list[str]:
    """Left-aligned text columns."""
    cells = [[("" if r[c] is None else str(r[c])) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return [line.rstrip() for line in lines]


def show_status(config: Config, out: Any = None) -> int:
    """Print the latest run, its files and recent problem batches; read-only."""
    out = out or sys.stdout
    db = Database(config, read_only=True)
    try:
        if existing_tracking_tables(db) != set(TRACKING_TABLES):
            print(f"No runs recorded yet in `{config.database}` (tracking tables not created).", file=out)
            return EXIT_OK
        runs = db.query_dicts(
            "SELECT id, status, start_time, end_time, TIMESTAMPDIFF(SECOND, start_time, "
            "COALESCE(end_time, NOW())) AS seconds, current_file, current_batch, processed_files, "
            "total_files, rows_archived, duplicates, conflicts, skipped_by_guard, stop_reason, "
            "pause_reason, paused_seconds, error_message, host, pid FROM process_logs WHERE source_table = %s ORDER BY id DESC LIMIT 1",
            (config.source_table,))
        if not runs:
            print(f"No runs recorded yet for `{config.source_table}`.", file=out)
            return EXIT_OK
        print_run(db, config, runs[0], out)
        return EXIT_OK
    finally:
        db.close()


def print_run(db: Database, config: Config, run_row: dict[str, Any], out: Any) -> None:
    """The status report for one run."""
    r = run_row
    holder = db.query("SELECT IS_USED_LOCK(%s)", (lock_name(config.database, config.source_table),))[0][0]
    live = "" if r["status"] != "RUNNING" else (
        f" (alive: server connection {holder})" if holder else " (no process holds the run lock: it died;"
        " the next run marks it INTERRUPTED)")
    print(f"Run {r['id']}: {r['status']}{live}", file=out)
    print(f"  started {r['start_time']} on {r['host']} pid {r['pid']}, "
          f"{'ended ' + str(r['end_time']) if r['end_time'] else 'running'} "
          f"({format_seconds(r['seconds'] or 0)})", file=out)
    print(f"  files {r['processed_files']}/{r['total_files']}, current file {r['current_file'] or '-'} "
          f"batch {r['current_batch'] or '-'}", file=out)
    print(f"  rows archived {r['rows_archived']}, duplicates {r['duplicates']}, conflicts "
          f"{r['conflicts']}, skipped by guard {r['skipped_by_guard']}", file=out)
    if r["pause_reason"] and r["status"] == "RUNNING":
        print(f"  PAUSED: {r['pause_reason']}", file=out)
    if r["paused_seconds"]:
        print(f"  paused {r['paused_seconds']:.1f}s in all", file=out)
    if r["stop_reason"]:
        print(f"  stop reason: {r['stop_reason']}", file=out)
    if r["error_message"]:
        print(f"  error: {r['error_message']}", file=out)
    files = db.query_dicts(
        "SELECT file_name, CONCAT(processed_batches, '/', total_batches, ' batches') AS progress, "
        "status, rows_archived, conflicts, error_message FROM file_processing_logs "
        "WHERE process_log_id = %s ORDER BY id", (r["id"],))
    if files:
        print("Files:", file=out)
        for line in format_table(files, ("file_name", "progress", "status", "rows_archived",
                                         "conflicts", "error_message")):
            print("  " + line, file=out)
    problems = db.query_dicts(
        "SELECT process_log_id AS run, file_name, batch_number AS batch, b.status, b.duplicates, b.conflicts, "
        "LEFT(COALESCE(b.error_message, conflict_keys, ''), 120) AS detail, created_at "
        "FROM batch_processing_logs b JOIN process_logs p ON p.id = b.process_log_id "
        "WHERE p.source_table = %s AND b.status IN ('FAILED', 'COMPLETED_WITH_DUPLICATES') "
        "ORDER BY b.id DESC LIMIT 10", (config.source_table,))
    if problems:
        print("Recent FAILED or duplicate batches:", file=out)
        for line in format_table(problems, ("run", "file_name", "batch", "status", "duplicates",
                                            "conflicts", "detail")):
            print("  " + line, file=out)
    db.rollback()


def check_tables(config: Config, out: Any = None) -> int:
    """Preflight only, with a readable verdict; exit 0 when a run could proceed."""
    out = out or sys.stdout
    db = Database(config, read_only=True)
    try:
        found = run_preflight(db, config)
        tracking = existing_tracking_tables(db)
    finally:
        db.close()
    for note in found.notes:
        print(f"note: {note}", file=out)
    for problem in found.problems:
        print(f"FAIL: {problem}", file=out)
    missing = sorted(set(TRACKING_TABLES) - tracking)
    if missing:
        print(f"note: tracking tables {', '.join(missing)} will be created by the first run "
              "(needs the CREATE privilege once)", file=out)
    if found.plan is None:
        print("Verdict: NOT READY: fix the FAIL lines above.", file=out)
        return EXIT_FAILED
    print(f"ok: `{config.source_table}` -> `{config.archive_table}` on key `{found.plan.key}` "
          f"({found.plan.key_type.sql_type}), {len(found.plan.columns)} columns copied", file=out)
    print("Verdict: READY.", file=out)
    return EXIT_OK


def dry_run(config: Config, out: Any = None) -> int:
    """Validate every file and count the rows a run would move, with read-only queries."""
    out = out or sys.stdout
    db = Database(config, read_only=True)
    try:
        plan = require_plan(db, config)
        tracked = existing_tracking_tables(db) == set(TRACKING_TABLES)
        logs = read_log_checkpoints(config.log_dir, f"{config.database}.{config.source_table}")
        rows, bad = [], 0
        for path in list_csv_files(config.csv_dir, config.csv_pattern):
            row = dry_run_file(db, config, plan, path, tracked, logs)
            bad += row["status"].startswith("REJECTED")
            rows.append(row)
    finally:
        db.close()
    total = {"file": "TOTAL", "batches": sum(r["batches"] for r in rows),
             "rows_to_move": sum(r["rows_to_move"] for r in rows), "status": f"{len(rows)} file(s)"}
    for line in format_table(rows + [total], ("file", "batches", "rows_to_move", "status")):
        print(line, file=out)
    print("Dry run: nothing was changed.", file=out)
    return EXIT_REJECTED if bad else EXIT_OK


def dry_run_file(db: Database, config: Config, plan: TablePlan, path: Path, tracked: bool,
                 logs: dict[tuple[str, str], Checkpoint]) -> dict[str, Any]:
    """One file's line of the dry run: batches left and rows that would move."""
    scan = hash_file(path)
    row = {"file": scan.name, "batches": 0, "rows_to_move": 0, "status": "to do"}
    if tracked and db_completed_run(db, scan) is not None:
        row["status"] = "already done"
        return row
    checkpoint = best_checkpoint(db_checkpoint(db, scan) if tracked else None,
                                 logs.get((scan.name, scan.sha256)))
    try:
        keys = iter_csv_keys(path, config.csv_column, config.csv_delimiter, plan.key_type)
        count_keys(path, config.csv_column, config.csv_delimiter, plan.key_type)
    except ArchiveError as exc:
        row["status"] = f"REJECTED: {exc}"
        return row
    size = checkpoint.batch_size if checkpoint else config.batch_size
    done = checkpoint.last_batch if checkpoint else 0
    if done:
        row["status"] = f"resumes at batch {done + 1}"
    for batch in iter_batches(skip_keys(keys, done * size), size, done + 1):
        condition, params = key_condition("s." + quote_ident(plan.key), batch.keys, plan.key_type)
        row["rows_to_move"] += int(db.query(plan.count_sql(condition), params)[0][0])
        row["batches"] += 1
    db.rollback()
    return row


# --------------------------------------------------------------------------- command line

EPILOG = """examples:
  python archive.py /etc/archiver/config.ini            run the job (what cron runs)
  python archive.py config.ini --dry-run                what would move, per file; changes nothing
  python archive.py config.ini --status                 progress of the latest (or current) run
  python archive.py config.ini --check                  are the tables, keys and grants ready?
  python archive.py config.ini -q --max-runtime 2h      cron: silent unless something needs a human

crontab:
  15 1 * * *  cd /srv/archive && .venv/bin/python archive.py config.ini -q

exit codes: 0 ok, 1 failed, 2 bad usage or config, 3 duplicate conflicts kept,
  4 malformed CSV file rejected, 5 already running, 6 interrupted (rerun to resume)
"""


def build_parser() -> argparse.ArgumentParser:
    """The command line, with help that teaches."""
    parser = argparse.ArgumentParser(
        prog="archive.py", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Move the rows listed in CSV key files from a source table into its archive "
                    "table, one transaction per batch, resuming where an earlier run stopped.")
    parser.add_argument("config", help="The INI file with [database], [archive] and [controls].")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true",
                      help="Validate the config and every CSV file, run the preflight checks and "
                           "count the batches and rows a run would move. Changes nothing.")
    mode.add_argument("--status", action="store_true",
                      help="Show the latest run, its files and recent failed or duplicate batches. "
                           "Read-only; safe while a run is going on.")
    mode.add_argument("--check", action="store_true",
                      help="Check tables, key, columns, privileges and cascading foreign keys, "
                           "and print a verdict. Changes nothing.")
    talk = parser.add_mutually_exclusive_group()
    talk.add_argument("-v", "--verbose", action="store_true",
                      help="Print a line per batch (the default on a terminal is one progress line).")
    talk.add_argument("-q", "--quiet", action="store_true",
                      help="Print nothing unless the run needs attention (exit code not 0).")
    parser.add_argument("--max-runtime", metavar="DURATION",
                        help="Override [controls] max_runtime for this run, e.g. 2h or 45m.")
    parser.add_argument("--sleep", metavar="SECONDS", type=float,
                        help="Override [controls] sleep_seconds for this run.")
    parser.add_argument("--debug", action="store_true",
                        help="Show a full traceback when something goes wrong.")
    return parser


def apply_overrides(config: Config, args: argparse.Namespace) -> Config:
    """One-off command-line overrides of config keys, validated like the file."""
    changes: dict[str, Any] = {}
    if args.max_runtime is not None:
        try:
            changes["max_runtime"] = parse_duration(args.max_runtime)
        except ValueError as exc:
            raise ArchiveError(f"--max-runtime: {exc}", EXIT_USAGE) from None
    if args.sleep is not None:
        if not 0 <= args.sleep <= 3600:
            raise ArchiveError("--sleep: use 0 to 3600 seconds", EXIT_USAGE)
        changes["sleep_seconds"] = args.sleep
    return dataclasses.replace(config, **changes) if changes else config


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the chosen command and map errors to exit codes."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_OK
    try:
        config = apply_overrides(load_config(args.config), args)
        if args.status:
            return show_status(config)
        if args.check:
            return check_tables(config)
        if args.dry_run:
            return dry_run(config)
        return run(config, verbosity=0 if args.quiet else 2 if args.verbose else 1)
    except ArchiveError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"archive.py: {exc}", file=sys.stderr)
        return exc.exit_code
    except mysql.connector.Error as exc:
        if args.debug:
            traceback.print_exc()
        print(f"archive.py: {describe_mysql_error(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # a bug: still one line for cron, the traceback with --debug
        if args.debug:
            traceback.print_exc()
        print(f"archive.py: internal error: {type(exc).__name__}: {exc} (rerun with --debug)",
              file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
