#!/usr/bin/env python3
"""archive.py: move the rows listed in CSV key files from a hot table into its archive table.

For each batch of keys it copies the source rows into the archive table, deletes
from the source only the rows whose identical copy it just made (or found already
archived), records the batch in the tracking tables and commits: one transaction per
batch. A crash at any instant leaves a batch either done and recorded or not done at
all, and the next run resumes at the first batch not done.

Usage:
    python archive.py config.ini              run the job (the cron form)
    python archive.py config.ini --dry-run    predict exactly what a run would do; change nothing
    python archive.py config.ini --status     show the latest run's progress (read-only)
    python archive.py config.ini --check      check tables, keys, privileges and side effects
    python archive.py config.ini --export-keys    write key files of the rows [export] where selects
    python archive.py admin.ini --setup       create or upgrade the tracking tables (once, as an admin)

How a run flows ("->" calls, "then" comes next; every function on a run's path is named here):
    main -> dispatch -> run -> install_signal_handlers, open_destination, open_run, then
        execute_run; when it fails describe_failure and record_run_failure; always finish_output
        (open_conflict_lines with exit 3), publish_end (MetricsFile.publish),
        restore_signal_handlers and RunLock.release.
    open_run -> TrackingSchema.ensure (MIGRATIONS), RunLock.acquire (hooks: RunLock.retake,
        say_everywhere), Tracking.start_run, write_header (script_hash), then
        require_plan -> run_preflight (read_definitions, examine, read_definitions), make_mover.
    execute_run -> retry_transaction(recheck_conflicts), retry_transaction(note_open_rows: the first
        metrics write), file_size, then for each file retry_transaction(Controls.stop_reason) and
        retry_file -> retry_transaction(archive_file), then retry_transaction(end_run).
    archive_file -> plan_file -> identify_file, Tracking.finished_record (then skip_finished_file),
        resume_point -> verify_log_checkpoint, count_keys (key_blocks: exact_record_reader, else
        plain_record_reader, else the careful reader; or reject); then resume_inside
        (Tracking.settled_keys), Tracking.start_file, open_keys, then for each batch of iter_batches:
        file_identity, Controls.before_batch, archive_batch (settled_in); then finish_file (or
        file_changed), move_to_done_dir.
    archive_batch -> commit_batch -> commit_part (once, or once per part of a batch too big for
        one transaction) -> retry_transaction(attempt, recover), then report_duplicates and
        show_progress (or, when it failed: record_batch_failure, BatchFailed).
    commit_part's attempt -> Mover.batch: SameServer.batch (SameServer.by_span or SameServer.move,
        else SameServer.carefully), Family.batch (child tables: InParts.part_of, InParts.fit,
        Family.move_family), OtherServer.batch (OtherServer.carefully -> OtherServer.read_checked,
        OtherServer.move_read -> OtherServer.move_side_by_side) or FamilyElsewhere.batch (child
        tables into another server: InParts.part_of, FamilyElsewhere.carefully, the same steps over
        every table: FamilyElsewhere.read_children, FamilyElsewhere.copies,
        FamilyElsewhere.delete_locked); then
        Tracking.batch_statements and COMMIT in one round trip: the batch's one commit (or part's). Its
        recover -> Tracking.committed_batch: a COMMIT whose answer was lost is read back before
        anything is done again.
    retry_transaction is called by execute_run (the recheck, end_run), retry_file, commit_part
        and recheck_conflicts (per chunk); it retries deadlocks, lock waits and lost nodes, and
        after a changed table (or an error with definitions_changed) -> adopt_definitions ->
        current_definitions, run_preflight.
    end_run -> Tracking.open_conflict_count, Tracking.run_counts, outcome_of, Tracking.finish_run,
        open_rows_by_file.
Where child tables live: ChildSpec ([child NAME]), ChildPlan and TablePlan.family_sql (the join up
    to the source rows), examine_children (preflight), Family and FamilyElsewhere (the movers,
    InParts what they share), commit_batch (parts,
    PARTIAL rows), resume_inside and Tracking.settled_keys (a rerun goes on inside a batch left in
    parts, in its batch size) and recheck_file (a recheck goes on in parts too: Classified.cut).
Where resume lives: resume_point (max of Tracking.checkpoint and the text log's
    log_checkpoints, verify_log_checkpoint for a log ahead of the database) and open_keys.
Where the run lock lives: RunLock.acquire, RunLock.fence (the first statement of every batch,
    in Mover.guarded), RunLock.heartbeat (between batches: Controls.keep_lock, RunContext.tick),
    RunLock.retake (after a reconnect) and RunLock.release.
Where the tables are checked: run_preflight (once, reading the definitions it approves with
    read_definitions), run_checked (every batch, under the batch's metadata locks: Definitions)
    and adopt_definitions (a table changed during the run: a new plan, or a stop).
Where conflicts are: found by SameServer.classify and OtherServer.compare, recorded by
    Tracking.batch_statements (in the conflict logs), settled by recheck_conflicts at the start
    of every run, counted into exit 3 by outcome_of.
Where the destination mode lives: OtherServer and DestinationError (destination mode),
    RemotePlan (its statements, of the job's table or a child's), FamilyElsewhere (with child
    tables), check_destination_server (what a destination must be).
Where Galera lives: Database.connect and Database.check_node_ready (a Synced node of the host
    list), Database.move_to_synced, is_lost_quorum and retry_transaction (failover, 1213),
    check_write_set and explain_write_set_error (write-set limits), Controls.galera_pause_reason.
Where keys live: KeyType (one column, or a composite key's "tuple" of parts), parse_fields and
    parse_key (a CSV record's key), format_key and parse_stored_key (as the tracking tables hold
    it), key_condition and row_key_condition (the SQL that matches exactly the listed rows).
Where servers differ: Dialect (the statement forms), read once per session by Database.session_setup
    (dialect_of); normalized_column (fetch_columns: one spelling of a COLUMN_TYPE),
    unwatchable_replica (open_replica, for Controls.read_lag and --check's replica_lines: an Aurora
    reader), replica_lag -> replica_lag_from (a Group Replication member: group_member_lag); MySQL's
    JSON in same_value_sql and literal_sql (json_values_sql: the type of every nested value).
    TLS: TlsSettings (build_tls, replica_tls at load), Database.check_encryption (encryption_of)
    and Database.encryption (--check).
Where the tracking tables are created outside a run: setup_tracking (--setup) -> TrackingSchema.ensure;
    their privileges are probed by TrackingSchema.privilege_problems (refused_statements).
Where exit codes live: the list below; outcome_of (a finished run), exit_code_of (an error), main.
Where monitoring lives: METRICS and MetricsFile (the Prometheus textfile: merge_metrics,
    write_metrics), written by Controls.publish (start, between batches, pauses) and publish_end;
    status_metrics gives --status --json the same values from the tracking tables.
Where the key export lives (--export-keys): export_keys -> check_export_config, export_lock,
    open_export (require_plan, ExportControls), remove_stale_exports, pending_exports
    (Tracking.finished_record), run_export -> free_stamp, walk_export (KeyWalk.last_sql, then per
    chunk Controls.before_batch, export_chunk -> read_chunk: a span (KeyWalk.span_end,
    KeyWalk.keys_sql), else KeyWalk.one_pass_sql or KeyWalk.bound_sql and KeyWalk.keys_sql;
    unpack_keys; spans two at a time: read_pair, the second by a SideSession; then next_chunk,
    chunk_width), KeyFileWriter (write, publish or abandon),
    write_manifest (export_manifest).
Where held rows live: Tracking.batch_statements records the keys the guard held back in the
    conflict logs as kind HELD; recheck_conflicts revisits them with the conflicts (unless
    the config turns revisiting off).

Sections, in this order:
    constants, errors, configuration,
    keys, CSV records, key files, batching, SQL text, key conditions, row comparison, table plans,
    remote plans, table definitions, preflight decisions, text log, outcomes, pause decisions,
    terminal output, metrics, key walk, key export files
                                                        (pure: no database)
    server errors, session settings, database connection, table checks, privileges, preflight,
    tracking tables, tracking schema, run lock, tracking records, one batch, child tables,
    the batch transaction, destination mode, families elsewhere, conflicts, job reports,
    pauses and stops
                                                        (database code)
    one file, run                                       (the run)
    status, check and setup, dry run, key export, command line
                                                        (--status, --check/--setup, --dry-run,
                                                        --export-keys, main)

Exit codes:
    0  success: every file archived (or nothing to do)
    1  the run FAILED: a database error, a failed preflight check or an internal error;
       the reason is in process_logs.error_message, the text log and stderr
    2  bad usage or configuration (names the [section] key); nothing was touched
       (--export-keys: also an [export] where that is not a plain condition on the row)
    3  finished, but duplicate-key conflicts are open: rows whose archived copy differs
       are kept in both tables for a human to resolve (rechecked every run)
    4  finished, but one or more CSV files were rejected (malformed, a key the column
       cannot hold, a file that changed while it ran); takes precedence over 3
    5  another run for the same source table is already running (nothing was touched),
       or this run lost its run lock to another run and stopped (--export-keys: another
       export of the same file prefix is running)
    6  the run was INTERRUPTED (SIGTERM/SIGINT/SIGHUP, max_runtime, stop_file, critical_load
       or a replica that stayed unknown) after finishing or rolling back its current batch;
       rerun to resume (--export-keys: the export wrote nothing; rerun it)
"""

from __future__ import annotations

import abc
import argparse
import concurrent.futures
import configparser
import contextlib
import csv
import dataclasses
import datetime as dt
import difflib
import fcntl
import functools
import gc
import hashlib
import io
import itertools
import json
import math
import operator
import os
import random
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import sys
import tempfile
import time
import traceback
import urllib.parse
import zoneinfo
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO, Callable, Optional, TypeVar, Union, cast

import mysql.connector
from mysql.connector import errorcode
from mysql.connector.constants import ClientFlag

T = TypeVar("T")

# --------------------------------------------------------------------------- constants

__version__ = "2.0.0"

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
LOG_INDEX_NAME = ".archive-log-index.json"
LOG_INDEX_FORMAT = 2
HASH_CHUNK = 1 << 20
SESSION_SQL_MODE = "STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION"  # see session_setup
LOG_SYNC_SECONDS = 1.0  # the text log is forced to disk at most this often (see TextLog)
MAX_RECORD = 1 << 20  # characters a record (a quoted field with line breaks) may span
BLOCK_KEYS = 256  # keys per block from the careful reader (a heartbeat may follow each block)
KEY_BLOCK_BYTES = 1 << 14  # plain-number blocks: big enough to be fast, small enough to stay flat
PLAIN_INTS = re.compile(rb"(?:[0-9]{1,18}\n)*")  # a block of plain numbers, LF line ends
RANGE_MIN_RUN = 4  # contiguous integer keys this long are sent as BETWEEN, not IN
SPAN_FACTOR = 4  # sparse integer keys go as one filtered range while it spans at most 4x the keys
SHOWN_KEYS = 20  # conflict keys printed in one message; all are stored in the DB
RETRY_BACKOFF_CAP = 4.0
TRACKING_ROWS_PER_BATCH = 8  # rows a batch writes besides its data rows (Galera write-set limit)
USER_LOCK_PREFIX = "archive_py_"  # + a run's owner token: the user lock it holds on its node

# MySQL's latin1 is Windows-1252, except that the five bytes cp1252 leaves unassigned
# stand for the C1 control characters of the same number.
LATIN1_PASSTHROUGH = frozenset((0x81, 0x8D, 0x8F, 0x90, 0x9D))
KEY_CHARSETS = frozenset(("utf8mb4", "utf8mb3", "utf8", "latin1", "ascii"))
INT_KEY = re.compile(r"[+-]?[0-9]{1,20}")  # ASCII digits only: Python's \d takes any script's digits
HEX_KEY = re.compile(r"(?:[0-9A-Fa-f]{2})+")
TEMPORAL_KEY = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})"  # YYYY-MM-DD[ HH:MM:SS[.ffffff]]
                          r"(?: ([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,6}))?)?")
TEMPORAL_KINDS = ("date", "datetime", "timestamp")
PLAIN_KINDS = ("int", *TEMPORAL_KINDS)  # key parts a plain field of digits, signs, spaces, . : and - holds
STORED_PART = re.compile(r'(?:"((?:[^"]|"")*)"|([^,"]*)),')  # a part of a composite key format_key wrote

ER_LOCK_WAIT_TIMEOUT = errorcode.ER_LOCK_WAIT_TIMEOUT  # 1205
ER_LOCK_DEADLOCK = errorcode.ER_LOCK_DEADLOCK  # 1213: also a Galera certification conflict
ER_DUP_ENTRY = errorcode.ER_DUP_ENTRY  # 1062
ER_WSREP_NOT_READY = 1047  # "WSREP has not yet prepared node for application use"
# 1180 "error during COMMIT": "wsrep_max_ws_rows exceeded", or (a node cut off from the others)
# "... (provider status: Not connected to Primary Component)"; 1105 "Maximum writeset size exceeded"
ER_WSREP_MAX_WS_ROWS = 1180
ER_WSREP_MAX_WS_SIZE = 1105
ER_QUERY_INTERRUPTED = 1317
ER_SPECIFIC_ACCESS_DENIED = errorcode.ER_SPECIFIC_ACCESS_DENIED_ERROR  # 1227: e.g. PROCESS needed
ER_CONNECTION_KILLED = 1927
ER_SERVER_SHUTDOWN = 1053
ER_CLIENT_INTERACTION_TIMEOUT = 4031
CR_CONNECTION_ERROR = errorcode.CR_CONNECTION_ERROR  # 2002: no server at the socket
# 1290 "running with the --read-only (or --super-read-only) option": a primary demoted by a managed
# failover (Aurora, RDS, Orchestrator): the batch is retried on the next address of the host list.
ER_READ_ONLY = errorcode.ER_OPTION_PREVENTS_STATEMENT
CR_CONN_HOST_ERROR = errorcode.CR_CONN_HOST_ERROR  # 2003: no server at host:port
CR_SERVER_GONE_ERROR = errorcode.CR_SERVER_GONE_ERROR  # 2006
CR_SERVER_LOST = errorcode.CR_SERVER_LOST  # 2013
CR_SERVER_LOST_EXTENDED = errorcode.CR_SERVER_LOST_EXTENDED  # 2055
CR_SSL_CONNECTION_ERROR = errorcode.CR_SSL_CONNECTION_ERROR  # 2026: e.g. a certificate that did not verify
RETRY_ERRNOS = frozenset((ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT))
CONNECTION_ERRNOS = frozenset((
    CR_CONNECTION_ERROR, CR_CONN_HOST_ERROR, CR_SERVER_GONE_ERROR, CR_SERVER_LOST,
    CR_SERVER_LOST_EXTENDED, ER_CONNECTION_KILLED, ER_CLIENT_INTERACTION_TIMEOUT,
    ER_SERVER_SHUTDOWN, errorcode.ER_CON_COUNT_ERROR, ER_WSREP_NOT_READY,
    ER_READ_ONLY,
))

DONE_STATUSES = ("COMPLETED", "COMPLETED_WITH_DUPLICATES")
INT_RANGES = {
    "tinyint": 8, "smallint": 16, "mediumint": 24, "int": 32, "integer": 32, "bigint": 64,
}
IDENTIFIER = re.compile(r"^[A-Za-z0-9_$]{1,64}$")
# A guard is one condition on the source row. These words would let it read other
# tables, write, sleep, or touch the run lock; parentheses are checked separately.
GUARD_FORBIDDEN = re.compile(
    r";|--|#|/\*|:=|\b(select|insert|update|delete|replace|drop|alter|create|truncate|grant|revoke"
    r"|union|into|outfile|dumpfile|load_file|sleep|benchmark|get_lock|release_lock|release_all_locks"
    r"|is_free_lock|is_used_lock|master_pos_wait|master_gtid_wait|nextval|setval|lastval|call|handler"
    r"|next\s+value\s+for|previous\s+value\s+for"
    # MySQL's own: waiting for replication, the locking service and version tokens' locks, and the
    # functions that reconfigure replication (https://dev.mysql.com/doc/refman/8.0/en/locking-service.html)
    r"|source_pos_wait|wait_for_executed_gtid_set|wait_until_sql_thread_after_gtids"
    r"|service_get_read_locks|service_get_write_locks|service_release_locks"
    r"|version_tokens_lock_shared|version_tokens_lock_exclusive|version_tokens_unlock"
    r"|group_replication_\w+|asynchronous_connection_failover_\w+"
    r"|run_locks|process_logs|file_processing_logs|batch_processing_logs|conflict_logs)\b",
    re.IGNORECASE,
)
# An export condition is a guard, and also none of these: they set session state, answer
# differently on every call (the export and the run's guard would disagree), or lock.
EXPORT_FORBIDDEN = re.compile(
    r"@|\b(last_insert_id|rand|uuid|uuid_short|sys_guid|sys_exec|sys_eval|row_count|found_rows"
    r"|for\s+update|lock\s+in\s+share\s+mode|skip\s+locked)\b",
    re.IGNORECASE,
)


TRACKING_TABLES = ("process_logs", "file_processing_logs", "batch_processing_logs", "conflict_logs",
                   "run_locks")


# --------------------------------------------------------------------------- errors

class ArchiveError(Exception):
    """An error a DBA can act on; main() prints it as one line and exits 1 (the run FAILED)."""


class ConfigError(ArchiveError):
    """Bad usage or configuration, found before anything was touched (exit 2)."""


class RejectedFile(ArchiveError):
    """A CSV file that cannot be archived as listed; the run goes on without it (exit 4)."""


class AlreadyRunning(ArchiveError):
    """Another run holds the job's run lock (exit 5)."""


class LostLock(AlreadyRunning):
    """This run's lease expired and another run took the lock over; it stopped (exit 5)."""


class Unreachable(ArchiveError):
    """No address of the server answered as a usable node (retried for retry_timeout in a run)."""


class BatchFailed(ArchiveError):
    """A batch failed after its retries; the text log already says so."""


class NodeNotReady(Exception):
    """A cluster node that answers but must not take writes (not synced, not primary)."""


class SessionRefused(NodeNotReady, ArchiveError):
    """A session that is not encrypted although the config requires it (an ssl_ca is given)."""


class SchemaChanged(ArchiveError):
    """A table a batch writes is no longer what the preflight approved; the batch was rolled back."""


class DestinationError(ArchiveError):
    """A server error on the [destination], wrapped so that only the destination's session is
    replaced while the retry logic still judges the cause (a deadlock, a lost connection ...)."""

    def __init__(self, message: str, cause: Exception):
        super().__init__(message)
        self.cause = cause


# --------------------------------------------------------------------------- configuration

REQUIRED = object()
Endpoint = tuple[str, Optional[int]]  # (host, port); port None means the [database] port or 3306


@dataclass(frozen=True)
class Option:
    """One config key: where it lives, its default and how its text is parsed."""

    section: str
    key: str
    default: Any
    parse: Callable[[str], Any]
    help: str


@dataclass(frozen=True)
class TlsSettings:
    """How a session is encrypted: a CA given means TLS is required and the certificate verified."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    verify_identity: bool = True  # with a CA: the certificate must also name the host connected to
    disabled: bool = False
    where: str = "[database]"  # the config section (or replica) these came from, for messages

    def connect_kwargs(self) -> dict[str, Any]:
        """mysql.connector.connect() options: without them the connector encrypts when the server
        offers TLS but accepts any certificate, so a CA turns verification on explicitly."""
        if self.disabled:
            return {"ssl_disabled": True}
        kwargs: dict[str, Any] = {name: value for name, value in
                                  (("ssl_cert", self.cert), ("ssl_key", self.key)) if value}
        if self.ca:
            kwargs.update(ssl_ca=self.ca, ssl_verify_cert=True, ssl_verify_identity=self.verify_identity)
        return kwargs

    def describe(self, version: str, cipher: str) -> str:
        """What --check says about a session's encryption: encrypted? verified how?"""
        if not cipher:
            return ("NOT encrypted (ssl_disabled)" if self.disabled else
                    f"NOT encrypted: the server offers no TLS (set {self.where} ssl_ca to require it)")
        if not self.ca:
            return (f"encrypted ({version}, {cipher}), certificate NOT verified (set {self.where} ssl_ca "
                    "to verify it)")
        name = ", host name checked" if self.verify_identity else ", host name NOT checked"
        return f"encrypted ({version}, {cipher}), certificate verified against {self.ca}{name}"


@dataclass(frozen=True)
class DbSettings:
    """How to reach one server or cluster; None means "not set", so option files can supply it."""

    hosts: tuple[Endpoint, ...] = ()
    user: str | None = None
    password: str | None = None
    database: str | None = None
    unix_socket: str | None = None
    option_files: tuple[str, ...] = ()
    option_groups: tuple[str, ...] = ()
    connect_timeout: int = 5
    password_source: str = ""  # where the password came from, for "access denied" messages
    tls: TlsSettings = dataclasses.field(default_factory=lambda: TlsSettings())

    @property
    def endpoints(self) -> int:
        """How many addresses to try: the host list, or one (socket, option file or default)."""
        return 1 if self.unix_socket or not self.hosts else len(self.hosts)

    def connect_kwargs(self, index: int = 0) -> dict[str, Any]:
        """Keyword arguments for mysql.connector.connect() to endpoint `index`."""
        kwargs: dict[str, Any] = {"connection_timeout": self.connect_timeout}
        for name in ("user", "password", "database", "unix_socket"):
            value = getattr(self, name)
            if value is not None:
                kwargs[name] = value
        if self.hosts and not self.unix_socket:
            host, port = self.hosts[index % len(self.hosts)]
            kwargs["host"] = host
            if port is not None:
                kwargs["port"] = port
        if self.option_files:
            kwargs["option_files"] = list(self.option_files)
            if self.option_groups:
                kwargs["option_groups"] = list(self.option_groups)
        return {**kwargs, **self.tls.connect_kwargs()}

    def describe(self, index: int | None = None) -> str:
        """Where this server is, for messages (never the password)."""
        if self.unix_socket:
            where = self.unix_socket
        elif not self.hosts:
            where = "(option file host)"
        else:
            chosen = self.hosts if index is None else (self.hosts[index % len(self.hosts)],)
            where = ",".join(f"{host}:{port or 3306}" for host, port in chosen)
        return f"{self.user or '(option file user)'}@{where}"


@dataclass(frozen=True)
class CsvFormat:
    """How key files are read: the dialect, its field delimiter, and where the key is."""

    dialect: str = "rfc4180"  # or "mysql": what SELECT ... INTO OUTFILE and mariadb -B write
    delimiter: str = ","
    columns: tuple[str, ...] = ("id",)  # the key's header names; without a header, field numbers (1 = first)
    header: bool = True


@dataclass(frozen=True)
class ChildSpec:
    """A `[child NAME]` section: a table whose rows move with their parent's, in the same batch."""

    name: str
    source_table: str
    archive_table: str
    parent_columns: tuple[str, ...]  # the child's columns holding its parent's key, in the key's order
    parent: str | None = None  # another child's NAME; None: the job's source table
    without_foreign_key: bool = False  # the schema declares no foreign key: parent_columns confirmed by hand

    @property
    def section(self) -> str:
        """The config section, for messages."""
        return f"[child {self.name}]"


@dataclass(frozen=True)
class Config:
    """Everything a run needs, validated once by load_config()."""

    path: Path
    db: DbSettings
    dest: DbSettings | None
    source_table: str
    archive_table: str
    key_column: tuple[str, ...]  # one column, or the columns of a composite key in CSV order
    csv_dir: Path
    csv_pattern: str
    csv_column: tuple[str, ...]  # the same number: header names, or field numbers without a header
    key_time_zone: str | None
    csv_delimiter: str
    csv_dialect: str
    csv_header: bool
    batch_size: int
    log_dir: Path
    log_retention_days: int | None
    done_dir: Path | None
    lock_wait_timeout: int
    lock_lease: float
    retry_timeout: float
    max_retries: int | None
    allow_cascading_deletes: bool
    allow_triggers: bool
    allow_system_versioning: bool
    allow_non_durable_destination: bool
    allow_replica_destination: bool
    sleep_seconds: float
    max_runtime: float | None
    stop_file: Path | None
    guard: str | None
    max_threads_running: int | None
    replicas: tuple[DbSettings, ...]
    max_replica_lag: float
    replica_timeout: float
    check_interval: float
    max_flow_control: float
    max_recv_queue: int | None
    max_load: tuple[tuple[str, float], ...] = ()
    critical_load: tuple[tuple[str, float], ...] = ()
    revisit_held: bool = True
    metrics_file: Path | None = None
    replica_lag_source: tuple[str, str] | None = None  # pt-heartbeat's (db, table); None: SHOW REPLICA STATUS
    children: tuple[ChildSpec, ...] = ()  # parents before their children
    max_batch_rows: int = 0  # rows over all tables a batch may hold; 0 means 10 x batch_size
    export_where: str | None = None  # [export]: the condition --export-keys selects keys by
    export_keys_per_file: int = 100_000
    export_file_prefix: str | None = None  # None: the source table's name

    @property
    def database(self) -> str:
        """The database holding the source, archive and tracking tables."""
        return self.db.database or ""

    @property
    def archive_database(self) -> str:
        """The database holding the archive table: the destination's, or the source's."""
        return (self.dest.database or "") if self.dest else self.database

    @property
    def job(self) -> str:
        """What tracking rows of this job are filed under: the databases and both tables."""
        where = "[destination] " if self.dest else ""
        return f"{self.database}.{self.source_table} -> {where}{self.archive_database}.{self.archive_table}"

    @property
    def csv_format(self) -> CsvFormat:
        """How the key files are read."""
        return CsvFormat(self.csv_dialect, self.csv_delimiter, self.csv_column, self.csv_header)

    @property
    def reading(self) -> str:
        """How keys are read from the CSV files: checkpoints only hold for the same reading.

        The default (RFC 4180 with a header) reads as it always has, so its checkpoints from
        earlier versions still hold: each record still holds one key at the same place.
        """
        names = ", ".join(map(repr, self.csv_column)) if self.csv_header else ", ".join(self.csv_column)
        where = (f"column{'s' * (len(self.csv_column) > 1)} {names}" if self.csv_header else
                 f"field{'s' * (len(self.csv_column) > 1)} {names} (no header)")
        dialect = "" if self.csv_dialect == "rfc4180" else f", dialect {self.csv_dialect}"
        zone = f", times in {self.key_time_zone}" if self.key_time_zone else ""  # another zone: other rows
        return (f"key {', '.join(self.key_column)} from {where}, delimiter {self.csv_delimiter!r}"
                f"{dialect}{zone}")

    @property
    def lock_name(self) -> str:
        """One run at a time per source table, whatever its archive table."""
        return f"{self.database}.{self.source_table}"

    @property
    def batch_rows(self) -> int:
        """The most rows over all tables one transaction moves (max_batch_rows, or 10 x batch_size)."""
        return self.max_batch_rows or 10 * self.batch_size


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


def parse_identifiers(text: str) -> tuple[str, ...]:
    """One column name, or a comma-separated list of them (a composite key); no name twice."""
    names = tuple(parse_identifier(part) for part in text.split(","))
    lowered = [n.lower() for n in names]
    twice = next((n for n in names if lowered.count(n.lower()) > 1), None)
    if twice:
        raise ValueError(f"names {twice} more than once (column names ignore case)")
    return names


def parse_names(text: str) -> tuple[str, ...]:
    """CSV column names (or field numbers), comma-separated, in key order."""
    names = tuple(part.strip() for part in text.split(","))
    if not all(names):
        raise ValueError(f"{text!r} has an empty name")
    return names


def time_zone(name: str) -> dt.tzinfo:
    """The zone a key_time_zone names."""
    offset = re.fullmatch(r"([+-])([01][0-9]|2[0-3]):([0-5][0-9])", name)
    if offset:
        minutes = (int(offset[2]) * 60 + int(offset[3])) * (1 if offset[1] == "+" else -1)
        return dt.timezone(dt.timedelta(minutes=minutes))
    if name.upper() == "UTC":
        return dt.timezone.utc
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*", name):
        raise ValueError(name)
    return zoneinfo.ZoneInfo(name)


def parse_time_zone(text: str) -> str:
    """UTC, a fixed offset (+HH:MM) or an IANA zone name this machine knows."""
    name = text.strip()
    try:
        time_zone(name)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        raise ValueError(f"{name!r} is neither UTC, an offset such as +02:00 nor a zone name this machine "
                         "knows (as in /usr/share/zoneinfo, e.g. Europe/Berlin)") from None
    return name


def make_int_parser(low: int, high: int) -> Callable[[str], int]:
    """Build a parser for a whole number within [low, high]."""

    def parse_int(text: str) -> int:
        if not INT_KEY.fullmatch(text.strip()):
            raise ValueError(f"{text!r} is not a whole number")
        value = int(text.strip())
        if not low <= value <= high:
            raise ValueError(f"{value} is out of range; use {low} to {high}")
        return value

    return parse_int


def make_float_parser(low: float, high: float) -> Callable[[str], float]:
    """Build a parser for a number (of seconds, or a fraction) within [low, high]."""

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
    if re.fullmatch(r"[0-9]+(\.[0-9]+)?", cleaned):
        seconds = float(cleaned)
    else:
        parts = re.fullmatch(r"(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?", cleaned)
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


def parse_hosts(text: str) -> tuple[Endpoint, ...]:
    """One host, or a comma-separated list of host[:port] ([v6]:port for IPv6) to fail over across."""
    hosts = []
    for item in parse_list(text):
        match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::([0-9]+))?|([^:\s\[\]]+)(?::([0-9]+))?", item)
        if not match:
            raise ValueError(f"{item!r} is not host or host:port")
        host = match.group(1) or match.group(3)
        port = match.group(2) or match.group(4)
        if port is not None and not 1 <= int(port) <= 65535:
            raise ValueError(f"{item!r} has a bad port")
        hosts.append((host, int(port) if port else None))
    if not hosts:
        raise ValueError("must not be empty")
    return tuple(hosts)


DELIMITER_NAMES = {"comma": ",", "semicolon": ";", "tab": "\t", "\\t": "\t", "pipe": "|"}


def parse_delimiter(text: str) -> str:
    """One character, or comma/semicolon/tab/pipe; ';' and '#' also work quoted."""
    value = text.strip()
    value = DELIMITER_NAMES.get(value.lower(), value)
    if len(value) == 3 and value[0] == value[2] and value[0] in "'\"":
        value = value[1]
    if len(value) != 1 or value in "\"\r\n " or value.isalnum():
        raise ValueError(f"{text!r} must be one character that is not a letter, digit, quote or space, "
                         "or comma, semicolon, tab or pipe")
    return value


CSV_DIALECTS = ("rfc4180", "mysql")


def parse_dialect(text: str) -> str:
    """rfc4180 or mysql."""
    value = text.strip().lower()
    if value not in CSV_DIALECTS:
        raise ValueError(f"{text.strip()!r} is not rfc4180 or mysql")
    return value


def parse_pattern(text: str) -> str:
    """A glob relative to csv_dir; absolute or upward patterns would read other folders."""
    value = parse_text(text)
    if value.startswith(("/", "~")) or ".." in Path(value).parts:
        raise ValueError(f"{value!r} must be relative to csv_dir (no leading / or ~, no ..)")
    return value


def strip_sql_literals(text: str) -> str:
    """The SQL text with quoted strings and identifiers blanked, so their brackets don't count."""
    return re.sub(r"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.|\"\")*\"|`(?:[^`]|``)*`", "''", text)


def parse_guard(text: str) -> str:
    """A boolean SQL condition on the source row, without statements, comments or lock functions."""
    value = parse_text(text)
    bad = GUARD_FORBIDDEN.search(value)
    if bad:
        raise ValueError(f"{bad.group(0)!r} is not allowed; give a plain condition such as "
                         "created_at < NOW() - INTERVAL 90 DAY")
    depth = 0
    for char in strip_sql_literals(value):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            break
    if depth != 0:
        raise ValueError("parentheses do not balance; the guard must be one condition "
                         "(it is ANDed with the listed keys, and must not widen them)")
    return value


def parse_export_where(text: str) -> str:
    """An export condition: a guard (parse_guard), and none of the functions that change a session
    or give another answer each call, or the locking clauses."""
    value = parse_guard(text)
    bad = EXPORT_FORBIDDEN.search(value)
    if bad:
        raise ValueError(f"{bad.group(0)!r} is not allowed in an export condition; give a plain condition "
                         "on the source row such as created_at < NOW() - INTERVAL 90 DAY")
    return value


def parse_file_prefix(text: str) -> str:
    """A key file name's start: letters, digits, _ . and -, not starting with a dot."""
    value = parse_text(text)
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}", value):
        raise ValueError(f"{value!r} is not a plain file name start (letters, digits, _ . -; not a "
                         "leading dot; at most 100)")
    return value


def parse_load(text: str) -> tuple[tuple[str, float], ...]:
    """Status variables and their limits: Threads_running=40, Threads_connected=800."""
    limits = []
    for item in parse_list(text):
        name, sep, number = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,63}", name.strip()):
            raise ValueError(f"{item!r} is not Variable_name=number (e.g. Threads_running=40)")
        try:
            value = float(number)
        except ValueError:
            raise ValueError(f"{item!r}: {number.strip()!r} is not a number") from None
        if not 0 <= value < math.inf:
            raise ValueError(f"{item!r}: the limit must be zero or more")
        limits.append((name.strip(), value))
    if not limits:
        raise ValueError("must not be empty")
    return tuple(limits)


def parse_lag_source(text: str) -> tuple[str, str] | None:
    """replica_status, or heartbeat:DB.TABLE (pt-heartbeat's table)."""
    value = text.strip()
    if value.lower() == "replica_status":
        return None
    match = re.fullmatch(r"heartbeat:([A-Za-z0-9_$]{1,64})\.([A-Za-z0-9_$]{1,64})", value)
    if not match:
        raise ValueError(f"{value!r} is not replica_status or heartbeat:database.table "
                         "(pt-heartbeat's table, e.g. heartbeat:percona.heartbeat)")
    return match.group(1), match.group(2)


def parse_path(text: str) -> Path:
    """A file system path; ~ is expanded."""
    return Path(parse_text(text)).expanduser()


def connection_options(section: str, what: str) -> tuple[Option, ...]:
    """The keys that say how to reach a server, the same in every server section."""
    return (
        Option(section, "host", None, parse_hosts,
               f"{what} host, or a comma-separated list host:port, host:port, ... to fail over across "
               "(Galera); the first that is up and synced is used."),
        Option(section, "port", None, make_int_parser(1, 65535), "TCP port for hosts without one (3306)."),
        Option(section, "user", None, parse_text, "User name; may come from an option file."),
        Option(section, "password", None, str,
               "Password. Better: leave it out and use MYSQL_PWD or an option file."),
        Option(section, "database", REQUIRED, parse_identifier, f"Database on the {what.lower()}."),
        Option(section, "unix_socket", None, parse_text,
               "Unix socket path; when set it is used instead of host and port."),
        Option(section, "option_files", (), parse_list,
               "MySQL option files to read credentials from, e.g. ~/.my.cnf."),
        Option(section, "option_groups", (), parse_list,
               "Groups to read in the option files (default: client, connector_python)."),
        Option(section, "connect_timeout", 5, make_int_parser(1, 300),
               "Seconds to wait for a connection before giving up on an address."),
        Option(section, "ssl_ca", None, parse_path,
               "CA certificate file (PEM) that signed the server's certificate: when set, every session "
               "must be encrypted and the certificate is verified against it."),
        Option(section, "ssl_cert", None, parse_path, "Client certificate file (PEM), with ssl_key."),
        Option(section, "ssl_key", None, parse_path, "Client private key file (PEM), with ssl_cert."),
        Option(section, "ssl_verify_identity", None, parse_bool,
               "With ssl_ca: the certificate must also name the host connected to (yes/no; default yes)."),
        Option(section, "ssl_disabled", False, parse_bool,
               "Never encrypt (yes/no; default no: encrypt when the server offers TLS)."),
    )


OPTIONS = connection_options("database", "Source server") + connection_options(
    "destination", "Destination server (only with an archive on another server)") + (
    Option("archive", "source_table", REQUIRED, parse_identifier, "The hot table rows leave."),
    Option("archive", "archive_table", REQUIRED, parse_identifier,
           "The table rows are copied into; it has every source column."),
    Option("archive", "key_column", REQUIRED, parse_identifiers,
           "The source column the CSV keys match (its primary or a unique key), or for a composite key "
           "its columns, comma-separated, in the order the CSV files hold them."),
    Option("archive", "csv_dir", REQUIRED, parse_path,
           "Directory holding the CSV key files (relative paths start at the config file's folder)."),
    Option("archive", "csv_pattern", "*.csv", parse_pattern,
           "Glob of the files to process, relative to csv_dir, in name order."),
    Option("archive", "csv_column", None, parse_names,
           "The key column of the CSV files: its header name, or with csv_header = no its field number "
           "(1 = the first field); for a composite key one per key column, comma-separated, in "
           "key_column's order (default: key_column's names)."),
    Option("archive", "key_time_zone", None, parse_time_zone,
           "The time zone the CSV files write a TIMESTAMP key column's times in: UTC, an offset such as "
           "+02:00, or a zone name such as Europe/Berlin (required with a TIMESTAMP key column)."),
    Option("archive", "csv_delimiter", None, parse_delimiter,
           "CSV field delimiter: one character, or comma, semicolon, tab or pipe (default: comma; "
           "csv_dialect = mysql reads tabs only)."),
    Option("archive", "csv_dialect", "rfc4180", parse_dialect,
           "How the key files are written: rfc4180 (CSV, as Python's csv module or a spreadsheet writes "
           "it) or mysql (tab-separated with backslash escapes, as SELECT ... INTO OUTFILE and mariadb -B "
           "write it)."),
    Option("archive", "csv_header", True, parse_bool,
           "Whether the first record of a file is a header (yes/no); without one, csv_column is a field "
           "number."),
    Option("archive", "batch_size", 1000, make_int_parser(1, MAX_BATCH_SIZE),
           "Keys per batch; one batch is one transaction."),
    Option("archive", "max_batch_rows", 0, make_int_parser(1, 100 * MAX_BATCH_SIZE),
           "With [child NAME] tables: the most rows, over all tables, one transaction moves (default "
           "10 x batch_size); a batch with more is moved in parts."),
    Option("archive", "log_dir", REQUIRED, parse_path,
           "Directory for the DataProcessingAllDetails_DD_MM_YYYY.txt text logs."),
    Option("archive", "log_retention_days", None, make_int_parser(1, 100_000),
           "Delete text logs older than this many days at the start of a run (default: keep all)."),
    Option("archive", "done_dir", None, parse_path,
           "Move each completed CSV file here (same file system as csv_dir) so it is not hashed again."),
    Option("archive", "lock_wait_timeout", 10, make_int_parser(1, 3600),
           "Seconds a batch waits for a row lock before it is rolled back and retried."),
    Option("archive", "lock_lease", 120.0, parse_duration,
           "How long the run lock stays valid without a heartbeat; a dead run's lock is taken "
           "over after this."),
    Option("archive", "retry_timeout", 60.0, parse_duration,
           "How long a batch is retried after deadlocks, lock waits, certification conflicts or a "
           "lost server before the run fails."),
    Option("archive", "max_retries", None, make_int_parser(0, 1_000_000),
           "Also stop retrying a batch after this many attempts (default: only retry_timeout counts)."),
    Option("archive", "allow_cascading_deletes", False, parse_bool,
           "Proceed although foreign keys cascade deletes into child tables (yes/no)."),
    Option("archive", "allow_triggers", False, parse_bool,
           "Proceed although the source has DELETE triggers or the archive INSERT triggers (yes/no)."),
    Option("archive", "allow_non_durable_destination", False, parse_bool,
           "Proceed although the destination may lose commits in a crash (innodb_flush_log_at_trx_commit "
           "or, with a binary log, sync_binlog other than 1) (yes/no)."),
    Option("archive", "allow_replica_destination", False, parse_bool,
           "Proceed although the [destination] replicates from another server, once you know that server "
           "does not receive the source's changes (yes/no)."),
    Option("archive", "allow_system_versioning", False, parse_bool,
           "Proceed although the source is system-versioned, so deleted rows stay as history (yes/no)."),
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
           "Replicas to watch: mysql://user:pw@host:port, mysql://user@localhost/?unix_socket=/path, "
           "or group:NAME for an option-file group."),
    Option("controls", "replica_lag_source", None, parse_lag_source,
           "Where a replica's lag is read: replica_status (SHOW REPLICA STATUS, Seconds_Behind_Master; a "
           "Group Replication member's applier in performance_schema) or heartbeat:DB.TABLE, the table "
           "pt-heartbeat --update --utc writes on the source."),
    Option("controls", "max_replica_lag", 10.0, make_float_parser(0, 86400),
           "Pause while any replica is more than this many seconds behind."),
    Option("controls", "replica_timeout", 600.0, make_float_parser(1, 7 * 86400),
           "Give up (INTERRUPTED, exit 6) after a replica's lag stays unknown or high this long."),
    Option("controls", "check_interval", 1.0, make_float_parser(0.05, 600),
           "Seconds between checks while paused."),
    Option("controls", "max_flow_control", 0.25, make_float_parser(0, 1),
           "Galera: pause while the node spent more than this fraction of the last check "
           "interval paused by flow control."),
    Option("controls", "max_recv_queue", None, make_int_parser(1, 10_000_000),
           "Galera: pause while the node's receive queue (wsrep_local_recv_queue) is longer."),
    Option("controls", "max_load", (), parse_load,
           "Pause while any of these SHOW GLOBAL STATUS values is above its limit, e.g. "
           "Threads_running=40, Threads_connected=800."),
    Option("controls", "critical_load", (), parse_load,
           "Stop the run (INTERRUPTED, exit 6) when any of these status values is above its limit, "
           "e.g. Threads_running=200."),
    Option("controls", "revisit_held", True, parse_bool,
           "Revisit the rows the guard held back at the start of every later run, until they move "
           "or are gone (yes/no); they are recorded and shown either way."),
    Option("controls", "metrics_file", None, parse_path,
           "Write Prometheus metrics here (node_exporter's textfile collector), e.g. "
           "/var/lib/prometheus/node-exporter/archive_py.prom: at the start, every check_interval "
           "(at most once a second) during the run, paused or not, and at the end."),
    Option("export", "where", None, parse_export_where,
           "The condition on the source row --export-keys selects keys by, e.g. created_at < NOW() - "
           "INTERVAL 90 DAY (validated like guard, more strictly); also the guard when none is set."),
    Option("export", "keys_per_file", 100_000, make_int_parser(1, 100_000_000),
           "Keys per exported key file."),
    Option("export", "file_prefix", None, parse_file_prefix,
           "How exported key files' names start: PREFIX-YYYYmmddTHHMMSSZ-0001.csv (default: the "
           "source table's name)."),
)


CHILD_SECTION = "child "  # + NAME: one table moved with its parent
CHILD_OPTIONS = (
    Option("child", "source_table", REQUIRED, parse_identifier, "The child table, beside the source."),
    Option("child", "archive_table", REQUIRED, parse_identifier, "Where its rows are archived."),
    Option("child", "parent_columns", REQUIRED, parse_identifiers,
           "Its columns that hold the parent's key, in the order of the parent's key: the job's "
           "key_column, or the parent child's primary key."),
    Option("child", "parent", None, parse_identifier,
           "NAME of the [child NAME] section of its parent (default: the job's source table)."),
    Option("child", "without_foreign_key", False, parse_bool,
           "yes when the schema declares no foreign key from the child to its parent and you have "
           "checked that parent_columns hold the parent's key (yes/no)."),
)


def config_error(section: str, key: str, message: str) -> ConfigError:
    """An exit-2 error naming the [section] key."""
    return ConfigError(f"config: [{section}] {key}: {message}")


def read_ini(path: Path) -> configparser.ConfigParser:
    """Read the INI file, turning every parse problem into a usage error."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except FileNotFoundError:
        raise ConfigError(f"config: {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config: {path}: cannot read: {exc}") from None
    except configparser.Error as exc:
        raise ConfigError(f"config: {path}: {' '.join(str(exc).split())}") from None
    return parser


def strip_inline_comment(raw: str) -> str:
    """Drop a ` ;` or ` #` comment: a comment needs a space before it, so `csv_delimiter = ;` works."""
    return re.split(r"\s[;#]", raw, maxsplit=1)[0].strip()


def reject_unknown_in(parser: configparser.ConfigParser, section: str, known: Sequence[str]) -> None:
    """Refuse a key of `section` that is not `known`, suggesting the one probably meant."""
    for key in parser[section]:
        if key not in known:
            hint = difflib.get_close_matches(key, known, 1)
            extra = f"did you mean {hint[0]}?" if hint else "not a known key"
            raise config_error(section, key, f"unknown key; {extra}")
def reject_unknown_keys(parser: configparser.ConfigParser) -> None:
    """Refuse sections and keys we do not know, suggesting the one probably meant."""
    sections = sorted({o.section for o in OPTIONS})
    for section in parser.sections():
        if section.startswith(CHILD_SECTION):
            continue  # read_children knows them
        if section not in sections:
            hint = difflib.get_close_matches(section, sections, 1)
            extra = f"; did you mean [{hint[0]}]?" if hint else f"; known: {', '.join(sections)}"
            raise ConfigError(f"config: [{section}]: unknown section{extra}")
        reject_unknown_in(parser, section, [o.key for o in OPTIONS if o.section == section])




def read_option(parser: configparser.ConfigParser, section: str, option: Option) -> Any:
    """One key's value in `section`: parsed, its default, or an error naming it."""
    raw = parser.get(section, option.key, fallback=None)
    if raw is not None and option.key != "password":
        raw = strip_inline_comment(raw)
    if raw is None or (raw.strip() == "" and option.key != "password"):
        if option.default is REQUIRED:
            raise config_error(section, option.key, "is required")
        return option.default
    try:
        return option.parse(raw)
    except ValueError as exc:
        raise config_error(section, option.key, str(exc)) from None


def read_options(parser: configparser.ConfigParser) -> dict[tuple[str, str], Any]:
    """Parse every known key, applying defaults and naming the key on error."""
    values: dict[tuple[str, str], Any] = {}
    for option in OPTIONS:
        if option.section == "destination" and not parser.has_section("destination"):
            values[(option.section, option.key)] = None if option.default is REQUIRED else option.default
            continue
        values[(option.section, option.key)] = read_option(parser, option.section, option)
    return values


TLS_FILES = ("ssl_ca", "ssl_cert", "ssl_key")
TLS_KEYS = (*TLS_FILES, "ssl_verify_identity", "ssl_disabled")


def resolve_paths(values: dict[tuple[str, str], Any], base: Path) -> None:
    """Relative paths start at the config file's folder, not wherever cron happens to be."""
    tls = [(section, key) for section in ("database", "destination") for key in TLS_FILES]
    for key in (("archive", "csv_dir"), ("archive", "log_dir"), ("archive", "done_dir"),
                ("controls", "stop_file"), ("controls", "metrics_file"), *tls):
        if values[key] is not None and not values[key].is_absolute():
            values[key] = base / values[key]


def check_directories(values: dict[tuple[str, str], Any]) -> None:
    """The CSV directory must be readable, the log directory writable, done_dir beside csv_dir."""
    csv_dir, log_dir, done_dir = (values[("archive", k)] for k in ("csv_dir", "log_dir", "done_dir"))
    if not csv_dir.is_dir():
        raise config_error("archive", "csv_dir", f"{csv_dir} is not a directory")
    if not os.access(csv_dir, os.R_OK | os.X_OK):
        raise config_error("archive", "csv_dir", f"{csv_dir} is not readable")
    if not log_dir.is_dir():
        raise config_error("archive", "log_dir", f"{log_dir} is not a directory")
    if not os.access(log_dir, os.R_OK | os.W_OK | os.X_OK):
        raise config_error("archive", "log_dir", f"{log_dir} is not readable and writable")
    metrics = values[("controls", "metrics_file")]
    writable = metrics is not None and os.access(metrics.parent, os.W_OK | os.X_OK)
    if metrics is not None and (metrics.suffix != ".prom" or not writable):
        raise config_error("controls", "metrics_file", f"{metrics} must end in .prom (node_exporter's "
                           "textfile collector reads only those) in a writable directory")
    if done_dir is None:
        return
    if not done_dir.is_dir() or not os.access(done_dir, os.W_OK | os.X_OK):
        raise config_error("archive", "done_dir", f"{done_dir} is not a writable directory")
    if done_dir.stat().st_dev != csv_dir.stat().st_dev:
        raise config_error("archive", "done_dir", f"{done_dir} must be on the same file system as "
                           f"csv_dir {csv_dir}, so that moving a file is one atomic rename")
    if done_dir.resolve() == csv_dir.resolve():
        raise config_error("archive", "done_dir", "must differ from csv_dir")


def check_csv_format(values: dict[tuple[str, str], Any]) -> None:
    """The dialect's delimiter (comma, or tab for mysql), and a field number when there is no header."""
    dialect, delimiter, columns = (values[("archive", key)]
                                   for key in ("csv_dialect", "csv_delimiter", "csv_column"))
    if dialect == "mysql" and delimiter not in (None, "\t"):
        raise config_error("archive", "csv_delimiter", "csv_dialect = mysql reads tab-separated files, as "
                           "MariaDB writes them; leave csv_delimiter out (or set it to tab)")
    values[("archive", "csv_delimiter")] = delimiter or ("\t" if dialect == "mysql" else ",")
    keys = values[("archive", "key_column")]
    if columns is None and not values[("archive", "csv_header")]:
        raise config_error("archive", "csv_column", "with csv_header = no, set csv_column to the key's field "
                           "number (1 for the first field)")
    columns = values[("archive", "csv_column")] = keys if columns is None else columns
    if len(columns) != len(keys):
        raise config_error("archive", "csv_column", f"names {len(columns)} CSV column(s) for the "
                           f"{len(keys)} of key_column ({', '.join(keys)}); one per key column, in order")
    for column in columns:
        if not values[("archive", "csv_header")] and not re.fullmatch(r"[1-9][0-9]{0,4}", column):
            raise config_error("archive", "csv_column", "with csv_header = no, csv_column is the key's field "
                               f"number (1 for the first field), not {column!r}")
    if len(set(columns)) < len(columns):
        raise config_error("archive", "csv_column", "names one CSV column for two key columns")


def pem_problem(path: Path) -> str | None:
    """Why a certificate or key file cannot be used (missing, unreadable, not PEM), or None."""
    if not path.is_file():
        return f"{path}: no such file"
    try:
        head = path.read_bytes()[:1 << 16]
    except OSError as exc:
        return f"{path}: cannot read: {exc.strerror}"
    return None if b"-----BEGIN " in head else f"{path}: not a PEM file (no -----BEGIN line)"


def build_tls(get: Callable[[str], Any], where: str, socket_path: str | None) -> TlsSettings:
    """TLS settings from one section's (or a replica URL's) ssl_* values, files checked now.

    `get` returns a key's value; errors are ValueErrors naming the key, for the caller to place.
    """
    files = {key: get(key) for key in TLS_FILES}
    for key, path in files.items():
        problem = pem_problem(Path(path)) if path is not None else None
        if problem:
            raise ValueError(f"{key}: {problem}")
    if (files["ssl_cert"] is None) != (files["ssl_key"] is None):
        raise ValueError("ssl_cert: ssl_cert and ssl_key go together (the client certificate and its key)")
    if get("ssl_verify_identity") and files["ssl_ca"] is None:
        raise ValueError("ssl_verify_identity: needs ssl_ca, the CA that signed the server's certificate")
    if get("ssl_disabled") and any(files.values()):
        raise ValueError("ssl_disabled: cannot go with ssl_ca, ssl_cert or ssl_key")
    if socket_path and any(files.values()):
        raise ValueError("ssl_ca: a unix socket is never encrypted; give host (and port) for TLS")
    ca, cert, private = (None if path is None else str(path) for path in files.values())
    return TlsSettings(ca, cert, private, verify_identity=get("ssl_verify_identity") is not False,
                       disabled=bool(get("ssl_disabled")), where=where)


def section_tls(values: dict[tuple[str, str], Any], section: str) -> TlsSettings:
    """A server section's TLS settings; a problem is a usage error naming the [section] key."""
    try:
        return build_tls(lambda key: values[(section, key)], f"[{section}]", values[(section, "unix_socket")])
    except ValueError as exc:
        key, _, message = str(exc).partition(": ")
        raise config_error(section, key, message) from None


def build_db_settings(values: dict[tuple[str, str], Any], environ: dict[str, str],
                      section: str = "database") -> DbSettings:
    """One server section's settings; MYSQL_PWD fills a password left out of the file."""
    def get(key: str) -> Any:
        return values[(section, key)]

    password, source = get("password"), f"[{section}] password"
    if password is None and section == "database" and environ.get("MYSQL_PWD") is not None:
        password, source = environ["MYSQL_PWD"], "the MYSQL_PWD environment variable"
    for name in get("option_files"):
        if not Path(name).expanduser().is_file():
            raise config_error(section, "option_files", f"{name}: no such file")
    if password is None:
        source = (f"option file(s) {', '.join(get('option_files'))}" if get("option_files")
                  else "nowhere (no password given)")
    hosts = get("host") or (() if get("option_files") else (("127.0.0.1", None),))
    port = get("port")
    return DbSettings(
        hosts=tuple((host, p if p is not None else port) for host, p in hosts),
        user=get("user"), password=password, database=get("database"),
        unix_socket=get("unix_socket"),
        option_files=tuple(str(Path(n).expanduser()) for n in get("option_files")),
        option_groups=get("option_groups"), connect_timeout=get("connect_timeout"),
        password_source=source, tls=section_tls(values, section),
    )


REPLICA_QUERY_KEYS = ("socket", "unix_socket", *TLS_KEYS)


def replica_tls(spec: str, query: dict[str, list[str]], primary: TlsSettings, socket_path: str | None
                ) -> TlsSettings:
    """A replica's TLS: the primary's, with each ssl_* URL parameter replacing its own key."""
    disabled = parse_bool(query["ssl_disabled"][0]) if "ssl_disabled" in query else primary.disabled
    inherited: dict[str, Any] = {} if (disabled and not primary.disabled) or socket_path else {
        "ssl_ca": primary.ca, "ssl_cert": primary.cert, "ssl_key": primary.key,
        "ssl_verify_identity": primary.verify_identity if primary.ca else None}

    def get(key: str) -> Any:
        if key == "ssl_disabled":
            return disabled
        if key not in query:
            return inherited.get(key)
        return parse_bool(query[key][0]) if key == "ssl_verify_identity" else parse_path(query[key][0])

    try:
        return build_tls(get, f"[controls] replicas {spec!r}", socket_path)
    except ValueError as exc:
        raise ValueError(f"{spec!r}: {exc}") from None


def parse_replica(spec: str, primary: DbSettings) -> DbSettings:
    """One replica from a mysql:// DSN or group:NAME, inheriting the primary's credentials."""
    if spec.startswith("group:"):
        if not primary.option_files:
            raise ValueError(f"{spec}: group: needs [database] option_files")
        return dataclasses.replace(primary, hosts=(), unix_socket=None,
                                   option_groups=(spec[len("group:"):],))
    url = urllib.parse.urlsplit(spec)
    query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
    unknown = sorted(set(query) - set(REPLICA_QUERY_KEYS))
    if unknown:
        raise ValueError(f"{spec!r}: unknown parameter {unknown[0]!r}; only unix_socket (or socket), "
                         f"{', '.join(TLS_KEYS)} are understood")
    sockets = query.get("unix_socket") or query.get("socket")
    socket_path = sockets[0] if sockets else None
    if url.scheme != "mysql" or not (url.hostname or socket_path) or url.path not in ("", "/"):
        raise ValueError(f"{spec!r} is not mysql://user:password@host:port, "
                         "mysql://user@localhost/?unix_socket=/path or group:NAME")
    try:
        port = url.port
    except ValueError:
        raise ValueError(f"{spec!r} has a bad port") from None
    return dataclasses.replace(
        primary, hosts=() if socket_path else ((url.hostname or "localhost", port or 3306),),
        user=urllib.parse.unquote(url.username) if url.username else primary.user,
        password=urllib.parse.unquote(url.password) if url.password is not None else primary.password,
        unix_socket=socket_path, database=None, tls=replica_tls(spec, query, primary.tls, socket_path),
    )


def read_child(parser: configparser.ConfigParser, section: str) -> ChildSpec:
    """One [child NAME] section."""
    name = section[len(CHILD_SECTION):].strip()
    if not IDENTIFIER.match(name):
        raise ConfigError(f"config: [{section}]: NAME must be a plain identifier (letters, digits, _, $)")
    reject_unknown_in(parser, section, [o.key for o in CHILD_OPTIONS])
    return ChildSpec(name, **{o.key: read_option(parser, section, o) for o in CHILD_OPTIONS})


def order_children(children: Sequence[ChildSpec]) -> tuple[ChildSpec, ...]:
    """Parents before their children; every parent named exists and no child is its own ancestor."""
    names = {c.name for c in children}
    for child in children:
        if child.parent is not None and child.parent not in names:
            raise config_error(f"child {child.name}", "parent", f"no section [child {child.parent}]; "
                               "leave parent out for a child of the job's source table")
    ordered: list[ChildSpec] = []
    while len(ordered) < len(children):
        placed = {c.name for c in ordered}
        ready = [c for c in children if c.name not in placed and (c.parent is None or c.parent in placed)]
        if not ready:
            stuck = next(c for c in children if c.name not in placed)
            raise config_error(f"child {stuck.name}", "parent", "the parents form a cycle")
        ordered += ready
    return tuple(ordered)


def read_children(parser: configparser.ConfigParser, values: dict[tuple[str, str], Any]
                  ) -> tuple[ChildSpec, ...]:
    """The [child NAME] sections, parents first: each a table of its own (its archive beside the
    job's archive table: on the destination, with [destination])."""
    children = order_children([read_child(parser, s) for s in parser.sections()
                               if s.startswith(CHILD_SECTION)])
    seen = {values[("archive", "source_table")].lower(): "[archive] source_table",
            values[("archive", "archive_table")].lower(): "[archive] archive_table"}
    for child in children:
        for key in ("source_table", "archive_table"):
            table = getattr(child, key)
            if table.lower() in seen:
                raise config_error(f"child {child.name}", key, f"`{table}` is already {seen[table.lower()]}; "
                                   "every table of a job is a table of its own")
            seen[table.lower()] = f"{child.section} {key}"
    return children


def load_config(path: str | Path, environ: dict[str, str] | None = None) -> Config:
    """Read and validate the whole config file before anything touches the database."""
    path = Path(path)
    parser = read_ini(path)
    reject_unknown_keys(parser)
    values = read_options(parser)
    resolve_paths(values, path.resolve().parent)
    check_directories(values)
    check_csv_format(values)
    env = dict(os.environ if environ is None else environ)
    db = build_db_settings(values, env)
    try:
        replicas = tuple(parse_replica(s, db) for s in values[("controls", "replicas")])
    except ValueError as exc:
        raise config_error("controls", "replicas", str(exc)) from None
    if values[("archive", "source_table")] == values[("archive", "archive_table")] \
            and not parser.has_section("destination"):
        raise config_error("archive", "archive_table", "must differ from source_table (unless it is on "
                           "another server, given in [destination])")
    if values[("archive", "lock_lease")] < 2 * values[("archive", "lock_wait_timeout")] + 10:
        raise config_error("archive", "lock_lease", "must be at least 2 x lock_wait_timeout + 10s, "
                           "or a live run waiting for a row lock could lose its run lock")
    dest = build_db_settings(values, env, "destination") if parser.has_section("destination") else None
    archive = {key: values[("archive", key)] for (section, key) in values if section == "archive"}
    controls = {key: values[("controls", key)] for (section, key) in values if section == "controls"}
    controls["replicas"] = replicas
    export = {f"export_{key}": values[("export", key)] for (section, key) in values if section == "export"}
    if parser.has_section("export") and export["export_where"] is None:
        raise config_error("export", "where", "is required in [export]")
    if controls["guard"] is None:  # keys listed by the condition still need it when they are archived
        controls["guard"] = export["export_where"]
    children = read_children(parser, values)
    return Config(path=path, db=db, dest=dest, children=children, **archive, **controls, **export)


# --------------------------------------------------------------------------- keys

Scalar = Union[int, str, bytes, dt.date]  # dt.date: DATE, and dt.datetime for DATETIME and TIMESTAMP
Key = Union[Scalar, tuple[Scalar, ...]]  # a tuple for a composite key, in key_column's order
Field = tuple[str, int]  # a field's text and how it was written:
BARE, QUOTED, PADDED, NULL = range(4)  # plain, "quoted", "quoted" with spaces outside, or \N (mysql)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
TIMESTAMP_RANGE = (1, 2 ** 31)  # a TIMESTAMP's seconds since the epoch (UTC), the last excluded


def encode_for_charset(text: str, charset: str) -> bytes:
    """The bytes of `text` in a MySQL character set; ValueError when the set cannot hold it."""
    if charset == "utf8mb4":
        return text.encode("utf-8")
    if charset in ("utf8mb3", "utf8"):
        if any(ord(char) > 0xFFFF for char in text):
            raise ValueError(f"{text[:40]!r} has a character outside the Basic Multilingual Plane, "
                             f"which a {charset} column cannot hold")
        return text.encode("utf-8")
    try:
        if charset == "ascii":
            return text.encode("ascii")
        if charset == "latin1":
            # MySQL's latin1 is cp1252 whose five unassigned bytes stand for themselves.
            return bytes(ord(c) if ord(c) in LATIN1_PASSTHROUGH else c.encode("cp1252")[0] for c in text)
    except UnicodeEncodeError as exc:
        bad = text[exc.start] if hasattr(exc, "start") else "?"
        raise ValueError(f"{text[:40]!r} has {bad!r}, which a {charset} column cannot hold") from None
    raise ValueError(f"character set {charset} is not supported for key columns")


def decode_for_charset(raw: bytes, charset: str) -> str:
    """The text whose bytes in a MySQL character set are `raw` (encode_for_charset's inverse)."""
    if charset == "latin1":
        return "".join(chr(b) if b in LATIN1_PASSTHROUGH else bytes((b,)).decode("cp1252") for b in raw)
    return raw.decode("ascii" if charset == "ascii" else "utf-8")


def instant_of(local: dt.datetime, zone: str) -> dt.datetime:
    """A wall-clock time in a zone as the instant it names, with its UTC offset (so that it reads
    back as the same instant whatever key_time_zone says later).

    A time the zone's clocks pass twice (the hour after a DST change back) or never (the
    hour skipped forward) names no single instant: refused, so no other row can match.
    """
    tz = time_zone(zone)
    first, second = local.replace(tzinfo=tz, fold=0), local.replace(tzinfo=tz, fold=1)
    before, after = first.utcoffset() or dt.timedelta(), second.utcoffset() or dt.timedelta()
    if before != after:
        which = "twice (clocks go back)" if before > after else "never (clocks go forward)"
        raise ValueError(f"{local} happens {which} in {zone}: write such keys in UTC "
                         "(key_time_zone = UTC)")
    return local.replace(tzinfo=dt.timezone(before))


def epoch_of(instant: dt.datetime) -> Decimal:
    """Seconds since the epoch of an instant, exact to the microsecond."""
    delta = instant - EPOCH
    return Decimal(delta.days * 86400 + delta.seconds) + Decimal(delta.microseconds).scaleb(-6)


@dataclass(frozen=True)
class KeyType:
    """What a valid key looks like, read from the source's key column (or columns: `parts`)."""

    kind: str  # "int", "str" (CHAR/VARCHAR), "bytes" (BINARY/VARBINARY, in hex), "date", "datetime",
    # "timestamp" (written as YYYY-MM-DD[ HH:MM:SS[.ffffff]]) or "tuple" (a composite key of `parts`)
    low: int = 0
    high: int = 0
    max_length: int = 0  # characters for "str", bytes for "bytes"
    fixed_length: bool = False  # BINARY(n): a shorter value is zero-padded, so keys need all n bytes
    charset: str = ""
    sql_type: str = ""
    fsp: int = 0  # fractional digits of a DATETIME(n) or TIMESTAMP(n)
    zone: str = ""  # a TIMESTAMP key's key_time_zone
    parts: tuple[KeyType, ...] = ()

    def encode(self, key: Key) -> bytes:
        """The bytes the server renders for `key` (exact matching compares these): for a composite
        key, each part's in hex, comma-separated (see key_text_sql)."""
        if isinstance(key, tuple):
            return ",".join(part.encode(k).hex().upper() for part, k in zip(self.parts, key)).encode()
        if isinstance(key, bytes):
            return key
        if isinstance(key, int):
            return str(key).encode()
        if isinstance(key, dt.datetime):
            if self.kind == "timestamp":
                return str(epoch_of(key).quantize(Decimal(1).scaleb(-self.fsp))).encode()
            fraction = f".{key.microsecond:06d}"[:self.fsp + 1] if self.fsp else ""
            # the year padded to 4 digits, as the server writes it: strftime's %Y writes 0001 as 1
            return (f"{key.year:04d}-{key:%m-%d %H:%M:%S}" + fraction).encode()
        if isinstance(key, dt.date):
            return key.isoformat().encode()
        return encode_for_charset(key, self.charset)

    def decode(self, raw: Any) -> Key:
        """The key whose encode() is `raw`, as key_text_sql reads it (an integer key comes as itself):
        how a child row's own key, read from the source, is matched on the destination."""
        if self.kind == "int":
            return int(raw)
        data = bytes(raw)
        if self.kind == "tuple":
            return tuple(cast(Scalar, part.decode(bytes.fromhex(text.decode())))
                         for part, text in zip(self.parts, data.split(b",")))
        if self.kind == "bytes":
            return data
        if self.kind == "str":
            return decode_for_charset(data, self.charset)
        if self.kind == "date":
            return dt.date.fromisoformat(data.decode())
        if self.kind == "timestamp":
            return EPOCH + dt.timedelta(microseconds=int(Decimal(data.decode()).scaleb(6)))
        return dt.datetime.fromisoformat(data.decode())


def key_type_from_column(column: dict[str, Any], zone: str | None = None) -> KeyType:
    """Describe the keys a column accepts: integers, (VAR)CHAR text, (VAR)BINARY bytes, dates and times."""
    data_type, column_type = column["data_type"].lower(), column["column_type"]
    length = int(column.get("max_length") or 0)
    if data_type in INT_RANGES:
        bits = INT_RANGES[data_type]
        if "unsigned" in column_type.lower():
            return KeyType("int", 0, 2 ** bits - 1, sql_type=column_type)
        return KeyType("int", -(2 ** (bits - 1)), 2 ** (bits - 1) - 1, sql_type=column_type)
    if data_type in ("binary", "varbinary"):
        return KeyType("bytes", max_length=length, fixed_length=data_type == "binary", sql_type=column_type)
    if data_type in ("char", "varchar"):
        charset = (column.get("charset") or "").lower()
        if charset not in KEY_CHARSETS:
            raise ArchiveError(f"key column character set {charset} is not supported for exact key "
                               f"matching; use one of {', '.join(sorted(KEY_CHARSETS))}")
        return KeyType("str", max_length=length, charset=charset,
                       sql_type=f"{column_type} {charset}")
    if data_type in ("date", "datetime", "timestamp"):
        if data_type == "timestamp" and not zone:
            raise ArchiveError(f"key column `{column['name']}` is a TIMESTAMP: set [archive] key_time_zone "
                               "to the time zone its CSV times are written in (UTC, +02:00, Europe/Berlin)")
        digits = re.search(r"\((\d)\)", column_type)
        return KeyType(data_type, fsp=int(digits[1]) if digits else 0, sql_type=column_type,
                       zone=(zone or "") if data_type == "timestamp" else "")
    raise ArchiveError(f"key column type {column_type} is not supported; use an integer, "
                       "(VAR)CHAR, (VAR)BINARY, DATE, DATETIME or TIMESTAMP key column")


def composite_key_type(parts: Sequence[KeyType]) -> KeyType:
    """One key type for one column, a "tuple" of them for a composite key."""
    if len(parts) == 1:
        return parts[0]
    return KeyType("tuple", parts=tuple(parts), sql_type=", ".join(p.sql_type for p in parts))


def parse_hex_key(value: str, key_type: KeyType) -> bytes:
    """A (VAR)BINARY key written in hex, with or without 0x: 0x0a1b... or 0A1B..."""
    digits = value[2:] if value[:2] in ("0x", "0X") else value
    if not HEX_KEY.fullmatch(digits):
        raise ValueError(f"{value[:40]!r} is not hex (keys of a {key_type.sql_type} column are "
                         "written as hex digits, e.g. 0x3f2a...)")
    key = bytes.fromhex(digits)
    if key_type.fixed_length and len(key) != key_type.max_length:
        raise ValueError(f"{value[:40]!r} is {len(key)} bytes; a {key_type.sql_type} key has exactly "
                         f"{key_type.max_length}")
    if len(key) > key_type.max_length:
        raise ValueError(f"{value[:40]!r} is longer than {key_type.sql_type}")
    return key


def parse_temporal_key(value: str, key_type: KeyType) -> dt.date:
    """A DATE, DATETIME(n) or TIMESTAMP(n) key: YYYY-MM-DD[ HH:MM:SS[.f...]], at most n fractional
    digits that are not zero (more would be rounded by the server: another row), a date that exists."""
    match = TEMPORAL_KEY.fullmatch(value)
    if not match or (key_type.kind == "date" and match[4]):
        form = "YYYY-MM-DD" if key_type.kind == "date" else "YYYY-MM-DD[ HH:MM:SS[.ffffff]]"
        raise ValueError(f"{value[:40]!r} is not a {key_type.sql_type} key ({form})")
    fraction = match[7] or ""
    if fraction[key_type.fsp:].strip("0"):  # zeros past the column's digits change nothing, others round
        raise ValueError(f"{value[:40]!r} has {len(fraction.rstrip('0'))} fractional digits; a "
                         f"{key_type.sql_type} holds {key_type.fsp}")
    try:
        if key_type.kind == "date":
            return dt.date.fromisoformat(value)
        # the pattern admits only what fromisoformat reads, given 6 fractional digits (Python 3.9)
        key = dt.datetime.fromisoformat(value + "0" * (6 - len(fraction)) if fraction else value)
    except ValueError as exc:
        raise ValueError(f"{value[:40]!r} is no date and time: {exc}") from None
    if key_type.kind == "timestamp":
        key = instant_of(key, key_type.zone)
        seconds = epoch_of(key)
        if not TIMESTAMP_RANGE[0] <= seconds < TIMESTAMP_RANGE[1]:
            raise ValueError(f"{value[:40]!r} is outside a TIMESTAMP's range (1970-01-01 00:00:01 to "
                             "2038-01-19 03:14:07 UTC)")
    return key


def parse_key(text: str, form: int, key_type: KeyType) -> Scalar:
    """Turn one field into a key, or raise ValueError saying why it is not one.

    A text key is exactly the field, quoted or not: what RFC 4180 (or, for csv_dialect =
    mysql, LOAD DATA) says it is. Integer, hex and time keys, which no space can make ambiguous,
    may have spaces and tabs around them, inside the quotes or out.
    """
    if form == NULL:
        raise ValueError("\\N is NULL, which is no key (export the keys WHERE the key column IS NOT NULL)")
    if key_type.kind != "str":
        value = text.strip(" \t")
    elif form == PADDED:
        raise ValueError(f"spaces outside the quotes of {text[:40]!r}: RFC 4180 has no such field (for a "
                         "text key put the spaces inside the quotes, or remove them)")
    else:
        value = text
    if not value:
        raise ValueError("empty key")
    if key_type.kind == "int":
        if not INT_KEY.fullmatch(value):
            raise ValueError(f"{value[:40]!r} is not a whole number (ASCII digits) for {key_type.sql_type}")
        number = int(value)
        if not key_type.low <= number <= key_type.high:
            raise ValueError(f"{number} is out of range for {key_type.sql_type}")
        return number
    if key_type.kind == "bytes":
        return parse_hex_key(value, key_type)
    if key_type.kind in TEMPORAL_KINDS:
        return parse_temporal_key(value, key_type)
    if len(value) > key_type.max_length:
        raise ValueError(f"key {value[:40]!r} is longer than {key_type.sql_type}")
    key_type.encode(value)
    return value


def parse_fields(fields: Sequence[Field], indexes: Sequence[int], key_type: KeyType) -> Key:
    """The key in a record's fields at `indexes` (one per key column)."""
    if len(fields) <= max(indexes):
        raise ValueError(f"row has {len(fields)} field(s); the key is field "
                         f"{', '.join(str(i + 1) for i in indexes)}")
    if key_type.kind != "tuple":
        return parse_key(*fields[indexes[0]], key_type)
    return tuple(parse_key(*fields[i], part) for i, part in zip(indexes, key_type.parts))


def format_key(key: Key) -> str:
    """A key as an operator writes it in a CSV file (hex for binary keys); a composite key as one
    CSV record of its parts, text always quoted, so that it reads back unambiguously."""
    if isinstance(key, tuple):
        return ",".join('"' + k.replace('"', '""') + '"' if isinstance(k, str) else format_key(k)
                        for k in key)
    if isinstance(key, bytes):
        return "0x" + key.hex()
    if isinstance(key, dt.datetime):
        return key.isoformat(" ")
    return key.isoformat() if isinstance(key, dt.date) else str(key)


def split_stored_key(text: str) -> list[str]:
    """The parts of a composite key as format_key wrote it (quoted text, other parts bare)."""
    parts = []
    for match in STORED_PART.finditer(text + ","):
        parts.append(match[1].replace('""', '"') if match[1] is not None else match[2])
    return parts


def parse_stored_key(text: str, key_type: KeyType) -> Key:
    """A key as format_key wrote it into the tracking tables."""
    if key_type.kind == "tuple":
        return tuple(cast(Scalar, parse_stored_key(part, kind))
                     for part, kind in zip(split_stored_key(text), key_type.parts))
    if key_type.kind == "int":
        return int(text)
    if key_type.kind == "date":
        return dt.date.fromisoformat(text)
    if key_type.kind in TEMPORAL_KINDS:
        value = dt.datetime.fromisoformat(text)  # a TIMESTAMP's with its UTC offset: one instant
        naive = key_type.kind == "timestamp" and not value.tzinfo
        return instant_of(value, key_type.zone) if naive else value
    return bytes.fromhex(text[2:]) if key_type.kind == "bytes" else text


# --------------------------------------------------------------------------- CSV records

def display_name(path: Path) -> str:
    """A file's name as printed and stored; bytes that are not UTF-8 show as \\x escapes."""
    return path.name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def field_pattern(delimiter: str) -> re.Pattern[str]:
    """One CSV field followed by a delimiter or the record's end: quoted (with any spaces or tabs
    outside the quotes in groups 1 and 3; only number keys may have them) or bare (group 4)."""
    d, pad = re.escape(delimiter), " " if delimiter == "\t" else "[ \t]"
    return re.compile(rf'({pad}*)"((?:[^"]|"")*)"({pad}*)(?={d}|\Z)|([^"{d}]*)(?={d}|\Z)', re.S)


def split_record(text: str, pattern: re.Pattern[str], delimiter: str) -> list[Field]:
    """Split one RFC 4180 record into fields; ValueError on stray quotes."""
    if '"' not in text:  # no quotes: the fields are exactly what lies between delimiters
        return [(value, BARE) for value in text.split(delimiter)]
    fields, pos = [], 0
    while True:
        match = pattern.match(text, pos)
        if match is None:
            raise ValueError("stray or unbalanced double quote (quote the whole field and double "
                             "quotes inside it)")
        if match.group(2) is None:
            fields.append((match.group(4), BARE))
        else:
            form = PADDED if match.group(1) or match.group(3) else QUOTED
            fields.append((match.group(2).replace('""', '"'), form))
        pos = match.end() + 1
        if match.end() >= len(text):
            return fields


# csv_dialect = mysql reads a file as MariaDB's LOAD DATA does with its defaults, FIELDS TERMINATED
# BY '\t' ENCLOSED BY '' ESCAPED BY '\\' LINES TERMINATED BY '\n' (MariaDB manual:
# https://mariadb.com/kb/en/load-data-infile/ and https://mariadb.com/kb/en/select-into-outfile/;
# the server's sql/sql_load.cc, READ_INFO::read_field and READ_INFO::unescape, for what the manual
# leaves out): a backslash takes the next character literally, except \0 \b \n \r \t \Z (NUL,
# backspace, LF, CR, tab, Ctrl-Z); a field that is exactly \N is NULL (\N inside a longer field is
# just N); a tab or LF after a backslash is data, which is how OUTFILE writes them (mariadb -B writes
# \t and \n: client/mysql.cc safe_put_field); a backslash that ends the file is itself; nothing is
# quoted, trimmed or skipped, so an empty line is an empty field. OUTFILE writes NULL as \N; mariadb
# -B writes it as the word NULL.
MYSQL_ESCAPES = {"0": "\0", "b": "\b", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a"}
MYSQL_FIELD = re.compile(r"(?:[^\\\t]|\\.|\\\Z)*", re.S)
MYSQL_ESCAPE = re.compile(r"\\(.?)", re.S)


def unescape_mysql(match: re.Match[str]) -> str:
    """One backslash sequence of a mysql field as LOAD DATA reads it."""
    char = match.group(1)
    return MYSQL_ESCAPES.get(char, char) if char else "\\"


def split_mysql_record(text: str) -> list[Field]:
    """Split one record of a mysql file into fields, unescaped as LOAD DATA does (see above)."""
    if "\\" not in text:
        return [(value, BARE) for value in text.split("\t")]
    fields, pos = [], 0
    while True:
        end = cast(re.Match[str], MYSQL_FIELD.match(text, pos)).end()  # matches, if only ""
        raw = text[pos:end]
        fields.append(("N", NULL) if raw == "\\N" else (MYSQL_ESCAPE.sub(unescape_mysql, raw), BARE))
        if end >= len(text):
            return fields
        pos = end + 1  # past the unescaped tab that ended the field


def escapes_line_end(text: str) -> bool:
    """Whether a line's LF is data: an odd number of backslashes right before it."""
    if not text.endswith("\\\n"):
        return False
    body = text[:-1]
    return (len(body) - len(body.rstrip("\\"))) % 2 == 1


def decode_line(raw: bytes, name: str, line_no: int, strip_bom: bool = False) -> str:
    """Decode one physical line as UTF-8 (line end kept), refusing NUL bytes."""
    if b"\x00" in raw:
        raise RejectedFile(f"{name} line {line_no}: contains a NUL byte (binary or UTF-16 file?)")
    try:
        return raw.decode("utf-8-sig" if strip_bom else "utf-8")
    except UnicodeDecodeError:
        raise RejectedFile(f"{name} line {line_no}: not valid UTF-8") from None


def strip_line_end(text: str) -> str:
    """Drop one LF or CRLF from the end of a record."""
    if text.endswith("\r\n"):
        return text[:-2]
    return text[:-1] if text.endswith("\n") else text


Record = tuple[int, int, int, Any]  # first line, last line, offset after it, fields (or a plain int)


def iter_records(lines: Iterable[bytes], name: str, delimiter: str, line_no: int = 0,
                 offset: int = 0, fast_ints: bool = False, keep_spaces: bool = False) -> Iterator[Record]:
    """Yield (first line, last line, byte offset after the record, fields) per non-blank record.

    A quoted field may hold the delimiter, doubled quotes and line breaks; a record ends
    at the first line end outside quotes. Empty lines are skipped, and so are lines of
    only whitespace unless keep_spaces (for a text key, RFC 4180 makes them a key). With
    fast_ints, a line of bare ASCII digits comes back as an int without decoding or
    splitting (most key files are just that).
    """
    pattern, pending, first, quotes = field_pattern(delimiter), "", 0, 0
    for raw in lines:
        line_no += 1
        if fast_ints and not pending:
            digits = raw.rstrip(b"\r\n").strip(b" ")
            if digits.isdigit() and len(digits) < 19:
                offset += len(raw)
                yield line_no, line_no, offset, int(digits)
                continue
        text = decode_line(raw, name, line_no, strip_bom=offset == 0)
        offset += len(raw)
        if not pending:
            first = line_no
        pending += text
        quotes += text.count('"')
        if quotes % 2:  # inside a quoted field: the record goes on, but not for ever
            if len(pending) > MAX_RECORD:
                raise RejectedFile(f"{name} line {first}: a quoted field is never closed (a stray \" ?)")
            continue
        record, pending, quotes = strip_line_end(pending), "", 0
        if not record or not (keep_spaces or record.strip()):
            continue
        try:
            yield first, line_no, offset, split_record(record, pattern, delimiter)
        except ValueError as exc:
            raise RejectedFile(f"{name} line {first}: {exc}") from None
    if pending:
        raise RejectedFile(f"{name} line {first}: a quoted field is never closed")


def iter_mysql_records(lines: Iterable[bytes], name: str, line_no: int = 0, offset: int = 0,
                       fast_ints: bool = False) -> Iterator[Record]:
    """iter_records for csv_dialect = mysql: a record ends at an LF no backslash escapes, and
    every record counts, an empty one too (split_mysql_record says what its fields are)."""
    pending, first = "", 0
    for raw in lines:
        line_no += 1
        if fast_ints and not pending and raw.endswith(b"\n") and raw[:-1].isdigit() and len(raw) < 20:
            offset += len(raw)
            yield line_no, line_no, offset, int(raw)
            continue
        text = decode_line(raw, name, line_no)
        offset += len(raw)
        if not pending:
            first = line_no
        pending += text
        if escapes_line_end(text):  # the record goes on, but not for ever
            if len(pending) > MAX_RECORD:
                raise RejectedFile(f"{name} line {first}: a record longer than {MAX_RECORD} characters "
                                   "(does every line end with a backslash?)")
            continue
        yield first, line_no, offset, split_mysql_record(pending[:-1] if pending.endswith("\n") else pending)
        pending = ""
    if pending:  # the file ended after an escaped line end: that LF is the field's last character
        yield first, line_no, offset, split_mysql_record(pending)


def read_records(lines: Iterable[bytes], name: str, fmt: CsvFormat, line_no: int = 0, offset: int = 0,
                 fast_ints: bool = False, keep_spaces: bool = False) -> Iterator[Record]:
    """The records of a key file in its dialect."""
    if fmt.dialect == "mysql":
        return iter_mysql_records(lines, name, line_no, offset, fast_ints)
    return iter_records(lines, name, fmt.delimiter, line_no, offset, fast_ints, keep_spaces)


# --------------------------------------------------------------------------- key files

@dataclass(frozen=True)
class FileScan:
    """A CSV file's identity and key count."""

    name: str
    size: int
    sha256: str
    keys: int = 0


def hash_file(path: Path, tick: Callable[[], None] = lambda: None) -> FileScan:
    """Size and SHA-256 of a file, read in large chunks (fast; no parsing)."""
    digest = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(HASH_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                tick()
    except OSError as exc:
        raise RejectedFile(f"{display_name(path)}: cannot read: {exc.strerror}") from None
    return FileScan(display_name(path), size, digest.hexdigest())


def find_key_field(header: list[str], column: str, delimiter: str, where: str) -> int:
    """Index of the key column in the header row, or a message naming what is wrong."""
    if column in header:
        return header.index(column)
    hint = ""
    if len(header) == 1 and any(d in header[0] for d in ",;\t|" if d != delimiter):
        hint = f" (wrong delimiter? csv_delimiter is {delimiter!r})"
    raise RejectedFile(f"{where}: no column {column!r} in header {header}{hint}")


@dataclass(frozen=True)
class KeyBlock:
    """Keys in file order, each with the last line and the byte offset after its record."""

    keys: Sequence[Key]
    lines: Sequence[int]
    offsets: Sequence[int]


def cut_blocks(triples: Iterator[tuple[int, int, Key]], offset: int) -> Iterator[list[tuple[int, int, Key]]]:
    """(line, offset, key) triples in blocks of BLOCK_KEYS keys or KEY_BLOCK_BYTES of file, whichever
    comes first: a heartbeat may follow each block, and lines of 20,000 fields make 256 keys slow."""
    block: list[tuple[int, int, Key]] = []
    for triple in triples:
        block.append(triple)
        if len(block) == BLOCK_KEYS or triple[1] - offset >= KEY_BLOCK_BYTES:
            yield block
            block, offset = [], triple[1]
    if block:
        yield block


def read_blocks(handle: BinaryIO) -> Iterator[bytes]:
    """The rest of a file in blocks of about KEY_BLOCK_BYTES that end at a line end."""
    while block := handle.read(KEY_BLOCK_BYTES):
        yield block if block.endswith(b"\n") else block + handle.readline()


def lf_lines(block: bytes) -> list[bytes]:
    """A block's lines with their LF, as iterating over the file gives them: only an LF ends a line
    (a lone CR is data, in a quoted field or a mysql field)."""
    if b"\r" not in block:
        return block.splitlines(keepends=True)  # the same lines then (bytes split at LF and CR only), in C
    lines = block.split(b"\n")
    last = lines.pop()
    return [line + b"\n" for line in lines] + ([last] if last else [])


PlainRead = Optional[tuple[list[Key], list[int]]]  # a block's keys and line lengths, or None: not plain


def plain_blocks(blocks: Iterator[bytes], read_block: Callable[[bytes], PlainRead], line_no: int,
                 offset: int) -> Generator[KeyBlock, None, tuple[Iterable[bytes], int, int]]:
    """Keys of plain blocks, read a block at a time by `read_block` (one record per line, LF ends).

    Most key files are just that. At the first block that is anything else (quotes,
    spaces, CRLF, blank lines, a value out of range) the rest of the file goes back,
    as lines with their starting line number and offset, to the careful reader, which
    also names any offending line.
    """
    for block in blocks:
        read = read_block(block)
        if read is None:
            rest = itertools.chain([block], blocks)
            return itertools.chain.from_iterable(map(lf_lines, rest)), line_no, offset
        keys, lengths = read
        # Each line's end: offset + its length + its LF, summed (accumulate runs in C).
        ends = list(itertools.accumulate(lengths, operator.add, initial=offset))
        yield KeyBlock(keys, range(line_no + 1, line_no + len(keys) + 1),
                       list(map(operator.add, ends[1:], range(1, len(keys) + 1))))
        line_no += len(keys)
        offset += len(block)
    return [], line_no, offset


def plain_int_reader(key_type: KeyType) -> Callable[[bytes], PlainRead]:
    """Reads a block of a one-column file of plain numbers at C speed."""
    def read(block: bytes) -> PlainRead:
        lines = block.split(b"\n")
        lines.pop()
        keys = list(map(int, lines)) if PLAIN_INTS.fullmatch(block) else []
        if not keys or not key_type.low <= min(keys) <= max(keys) <= key_type.high:
            return None
        return cast(list[Key], keys), list(map(len, lines))

    return read


def plain_record_reader(key_type: KeyType, indexes: Sequence[int], delimiter: str
                        ) -> Callable[[bytes], PlainRead]:
    """Reads a block of numbers, dates and times in plain fields (no quotes, escapes or blank lines),
    skipping the careful reader's decoding, quote counting and splitting (parse_fields still reads
    every field)."""
    plain = re.compile(rb"(?:[0-9 .:+-]*(?:" + re.escape(delimiter.encode()) + rb"[0-9 .:+-]*)*\n)*")

    def read(block: bytes) -> PlainRead:
        if not plain.fullmatch(block):
            return None
        lines = block.decode("ascii").split("\n")
        lines.pop()
        if not all(line.strip(" ") for line in lines):
            return None  # a blank line: the careful reader skips it
        try:
            return [parse_fields([(f, BARE) for f in line.split(delimiter)], indexes, key_type)
                    for line in lines], list(map(len, lines))
        except ValueError:
            return None

    return read


EXACT_DELIMITERS = frozenset(",;|\t")  # none of them can be part of a plain number, date or time


def exact_part_pattern(part: KeyType) -> bytes:
    """A field of one key part that parse_key reads as it is: no spaces, no sign but a minus, at
    most the column's fractional digits (anything else is left to the plain or careful reader)."""
    if part.kind == "int":
        return rb"-?[0-9]{1,18}"
    date = rb"[0-9]{4}-[0-9]{2}-[0-9]{2}"
    if part.kind == "date":
        return date
    fraction = rb"(?:\.[0-9]{1,%d})?" % part.fsp if part.fsp else b""
    return date + rb"(?: [0-9]{2}:[0-9]{2}:[0-9]{2}" + fraction + rb")?"


def exact_part_reader(part: KeyType) -> Callable[[str], Scalar]:
    """parse_key of a field that matched exact_part_pattern, without matching it again."""
    if part.kind == "int":
        def number(value: str) -> Scalar:
            key = int(value)
            if not part.low <= key <= part.high:
                raise ValueError(f"{key} is out of range for {part.sql_type}")
            return key
        return number
    if part.kind == "date":
        return dt.date.fromisoformat
    # as parse_temporal_key: fractional digits padded to 6, which every Python 3.9+ reads
    return lambda value: dt.datetime.fromisoformat(value + "0" * (26 - len(value)) if len(value) > 19
                                                   else value)


def exact_record_reader(key_type: KeyType, indexes: Sequence[int], delimiter: str
                        ) -> Callable[[bytes], PlainRead] | None:
    """Reads a block whose every line is exactly the key's fields, in order, each an integer, date or
    datetime as exact_part_pattern has it: one regular expression checks the whole block, then each
    field is converted without being matched again. None for keys of other kinds or other layouts."""
    parts = key_type.parts or (key_type,)
    if any(p.kind not in ("int", "date", "datetime") for p in parts) \
            or list(indexes) != list(range(len(parts))) or delimiter not in EXACT_DELIMITERS:
        return None
    fields = re.escape(delimiter.encode()).join(map(exact_part_pattern, parts))
    block = re.compile(rb"(?:" + fields + rb"\n)*")
    readers = [exact_part_reader(p) for p in parts]

    def convert_lines(lines: list[str]) -> list[Any]:
        if len(readers) == 1:
            return list(map(readers[0], lines))
        if len(readers) == 2:  # the usual composite key, written out: 2.5x faster than the loop below
            first, second = readers
            return [(first(a), second(b)) for a, b in (line.split(delimiter) for line in lines)]
        return [tuple(f(v) for f, v in zip(readers, line.split(delimiter))) for line in lines]

    def read(data: bytes) -> PlainRead:
        if not block.fullmatch(data):
            return None
        lines = data.decode("ascii").split("\n")
        lines.pop()
        try:
            keys = convert_lines(lines)
        except ValueError:
            return None  # a date that does not exist, a number out of range: the careful reader names it
        return cast(list[Key], keys), list(map(len, lines))

    return read


def either_reader(first: Callable[[bytes], PlainRead] | None, second: Callable[[bytes], PlainRead]
                  ) -> Callable[[bytes], PlainRead]:
    """A block read by `first` when it reads it (and there is one), else by `second`."""
    if first is None:
        return second
    return lambda block: first(block) or second(block)


def keys_of_records(records: Iterator[Record], name: str, indexes: Sequence[int], key_type: KeyType
                    ) -> Iterator[tuple[int, int, Key]]:
    """The key fields of each record, parsed, or RejectedFile naming the line."""
    for first, last, offset, fields in records:
        if isinstance(fields, int):
            if key_type.low <= fields <= key_type.high:
                yield last, offset, fields
                continue
            fields = [(str(fields), BARE)]  # out of range: parse_key says so
        try:
            yield last, offset, parse_fields(fields, indexes, key_type)
        except ValueError as exc:
            raise RejectedFile(f"{name} line {first}: {exc}") from None


def key_blocks(path: Path, fmt: CsvFormat, key_type: KeyType,
               start: tuple[int, int] = (0, 0)) -> Iterator[KeyBlock]:
    """iter_csv_keys, a block of keys at a time (so that counting need not touch each key)."""
    name = display_name(path)
    with open(path, "rb") as handle:
        offset, last, indexes = 0, 0, [int(column) - 1 for column in fmt.columns] if not fmt.header else []
        if fmt.header:
            header = next(read_records(handle, name, fmt), None)
            if header is None:
                return
            first, last, offset, cells = header
            names = [text.strip(" ") if form == BARE else text for text, form in cells]
            indexes = [find_key_field(names, column, fmt.delimiter, f"{name} line {first}")
                       for column in fmt.columns]
        offset, last = start if start[0] else (offset, last)
        handle.seek(offset)
        lines: Iterable[bytes] = handle
        plain = key_type.kind == "int" and indexes == [0]
        if plain or all(part.kind in PLAIN_KINDS for part in key_type.parts or (key_type,)):
            reader = (plain_int_reader(key_type) if plain else
                      either_reader(exact_record_reader(key_type, indexes, fmt.delimiter),
                                    plain_record_reader(key_type, indexes, fmt.delimiter)))
            lines, last, offset = yield from plain_blocks(read_blocks(handle), reader, last, offset)
        text = "str" in (key_type.kind, *(part.kind for part in key_type.parts))
        records = read_records(lines, name, fmt, last, offset, plain, keep_spaces=text)
        for triples in cut_blocks(keys_of_records(records, name, indexes, key_type), offset):
            yield KeyBlock([k for _, _, k in triples], [n for n, _, _ in triples], [o for _, o, _ in triples])


def iter_csv_keys(path: Path, fmt: CsvFormat, key_type: KeyType,
                  start: tuple[int, int] = (0, 0)) -> Iterator[tuple[int, int, Key]]:
    """Yield (last line of the record, byte offset after it, key) for every key in a CSV file.

    Streams the file. Raises RejectedFile naming the file and line for anything that
    is not a clean key. The header, if any, is the first non-blank record. `start` is
    (offset, line) of a record boundary after the header, to resume mid-file.
    """
    for block in key_blocks(path, fmt, key_type, start):
        yield from zip(block.lines, block.offsets, block.keys)


def count_keys(path: Path, fmt: CsvFormat, key_type: KeyType, tick: Callable[[], None] = lambda: None) -> int:
    """Validate a whole file and count its keys, before any of its batches run."""
    count = 0
    for block in key_blocks(path, fmt, key_type):
        count += len(block.keys)
        tick()  # cheap: the heartbeat itself only acts every quarter lease
    return count


def list_csv_files(csv_dir: Path, pattern: str) -> list[Path]:
    """The files to process, in name order; refuses two files that share a name."""
    paths = sorted((p for p in csv_dir.glob(pattern) if p.is_file()), key=lambda p: p.name)
    for first, second in zip(paths, paths[1:]):
        if first.name == second.name:
            raise ConfigError(f"config: [archive] csv_pattern: {pattern!r} matches two files named "
                              f"{display_name(first)!r} ({first.parent} and {second.parent}); "
                              "checkpoints are kept by file name, so narrow the pattern")
    return paths


def has_utf8_name(path: Path) -> bool:
    """Whether the file name is valid UTF-8 (others cannot be recorded faithfully)."""
    try:
        path.name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# --------------------------------------------------------------------------- batching

@dataclass(frozen=True)
class Batch:
    """One batch of keys in file order, and where it ends in the file."""

    number: int
    keys: tuple[Key, ...]
    end_offset: int
    end_line: int
    settled: frozenset[Key] = frozenset()  # a part of a batch: the keys its earlier parts settled


def iter_batches(blocks: Iterable[KeyBlock], batch_size: int, first_number: int = 1, skip: int = 0
                 ) -> Iterator[Batch]:
    """Cut blocks of keys into numbered batches of batch_size keys, after skipping `skip` keys
    (to resume without a stored offset)."""
    keys: list[Key] = []
    number, end = first_number, (0, 0)
    for block in blocks:
        start = min(skip, len(block.keys))
        skip -= start
        while start < len(block.keys):
            take = min(batch_size - len(keys), len(block.keys) - start)
            keys.extend(block.keys[start:start + take])
            start += take
            end = (block.offsets[start - 1], block.lines[start - 1])
            if len(keys) == batch_size:
                yield Batch(number, tuple(keys), *end)
                keys, number = [], number + 1
    if keys:
        yield Batch(number, tuple(keys), *end)


def settled_in(batch: Batch, start: int, settled: int) -> int:
    """How many of a batch's first keys an earlier run moved in parts: `settled`, for the batch a
    file resumes at (never all of it: a batch with every key settled is not left PARTIAL)."""
    return min(settled, len(batch.keys) - 1) if batch.number == start else 0


def group_runs(numbers: Sequence[int]) -> list[tuple[int, int]]:
    """Split sorted unique integers into (first, last) runs of consecutive values."""
    if numbers and numbers[-1] - numbers[0] + 1 == len(numbers):
        return [(numbers[0], numbers[-1])]  # the usual batch: one run, found without a loop
    runs: list[tuple[int, int]] = []
    for number in numbers:
        if runs and number == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], number)
        else:
            runs.append((number, number))
    return runs


# --------------------------------------------------------------------------- SQL text

def quote_ident(name: str) -> str:
    """Quote an identifier for MySQL."""
    return "`" + name.replace("`", "``") + "`"


def sql_literal(value: Any) -> str:
    """A parameter as SQL text in which none of its characters appear (strings go as hex).

    mysql-connector-python rewrites a statement where it sees `delimiter <x>` outside
    quotes, and its quote scan ignores backslash escapes, so a value quoted the usual
    way could change on its way to the server: a key would match another row.
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (int, Decimal)):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    if isinstance(value, str):
        return f"_utf8mb4 X'{value.encode().hex()}'"
    if isinstance(value, (bytes, bytearray)):
        return f"X'{bytes(value).hex()}'"
    if isinstance(value, dt.datetime):
        return f"'{value.isoformat(' ')}'"
    if isinstance(value, dt.date):
        return f"'{value.isoformat()}'"
    raise TypeError(f"no SQL literal for {type(value).__name__}")


@dataclass(frozen=True)
class Dialect:
    """The server a session is on, read once per session (dialect_of), and the statement forms it
    takes: MariaDB and MySQL differ, and Percona Server and Aurora MySQL are MySQL."""

    vendor: str = "MariaDB"  # MariaDB, MySQL, Percona Server or Aurora MySQL
    version: tuple[int, int, int] = (10, 6, 0)
    galera: bool = False  # wsrep_on (MariaDB Galera Cluster, Percona XtraDB Cluster)
    aurora_version: str = ""

    @property
    def mysql(self) -> bool:
        """MySQL or a server built from it (Percona Server, Aurora MySQL)."""
        return self.vendor != "MariaDB"

    def mysql_since(self, *version: int) -> bool:
        """A MySQL of at least this version (never MariaDB, whose version numbers are its own)."""
        return self.mysql and self.version >= tuple(version)

    @property
    def name(self) -> str:
        """For --check and messages: `MySQL 8.0.36`, `Aurora MySQL 3.04.0 (MySQL 8.0.28)`."""
        number = ".".join(map(str, self.version))
        text = (f"{self.vendor} {self.aurora_version} (MySQL {number})" if self.aurora_version
                else f"{self.vendor} {number}")
        return text + (", Galera" if self.galera else "")

    def new_value(self, column: str) -> str:
        """In ON DUPLICATE KEY UPDATE, the value the INSERT ... VALUES row (row_alias) would have
        written. MySQL 8.0.20 deprecates VALUES() there for a row alias, which 8.0.19 brought and
        MariaDB does not have: https://dev.mysql.com/doc/refman/8.0/en/insert-on-duplicate.html"""
        name = quote_ident(column)
        return f"new.{name}" if self.mysql_since(8, 0, 19) else f"VALUES({name})"

    @property
    def row_alias(self) -> str:
        """What follows the VALUES rows of an INSERT ... ON DUPLICATE KEY UPDATE that uses new_value."""
        return " AS new" if self.mysql_since(8, 0, 19) else ""

    def locking(self, update: Sequence[str], share: Sequence[str] = ()) -> str:
        """The locking clause of a read whose `update` tables (aliases) it will write and whose
        `share` tables it only reads, locked until the commit. MariaDB has no OF: FOR UPDATE locks
        all. On MySQL 8.0.22+ FOR UPDATE needs DELETE, UPDATE or LOCK TABLES on each table it
        locks, FOR SHARE only SELECT, so a table this user only reads and inserts into (the
        archive) is locked FOR SHARE OF it, which keeps it from changing all the same:
        https://dev.mysql.com/doc/refman/8.0/en/innodb-locking-reads.html"""
        if not self.mysql:
            return " FOR UPDATE"
        shared = f" FOR SHARE OF {', '.join(share)}" if share else ""
        return (f" FOR UPDATE OF {', '.join(update)}" if update else "") + shared

    @property
    def replica_status_sql(self) -> str:
        """Every replication channel's status: MariaDB's ALL SLAVES (its named connections); MySQL
        lists all channels in SHOW REPLICA STATUS (8.0.22; SHOW SLAVE STATUS before, gone in 8.4)."""
        if not self.mysql:
            return "SHOW ALL SLAVES STATUS"
        return "SHOW REPLICA STATUS" if self.mysql_since(8, 0, 22) else "SHOW SLAVE STATUS"

    @property
    def foreign_keys_table(self) -> str:
        """InnoDB's own list of foreign keys (PROCESS privilege), which has those of tables this user
        cannot see: MariaDB's INNODB_SYS_FOREIGN is INNODB_FOREIGN from MySQL 8.0, which has no
        INNODB_SYS_FOREIGN (error 1109), with the same columns and TYPE flags:
        https://dev.mysql.com/doc/refman/8.0/en/information-schema-innodb-foreign-table.html"""
        return "INNODB_FOREIGN" if self.mysql else "INNODB_SYS_FOREIGN"

    def index_usable_sql(self) -> str:
        """A condition on information_schema.STATISTICS: the index may be named in FORCE INDEX. An
        INVISIBLE (MySQL 8.0: IS_VISIBLE) or IGNORED (MariaDB 10.6) index may not (error 1176):
        https://dev.mysql.com/doc/refman/8.0/en/invisible-indexes.html"""
        return "IS_VISIBLE = 'YES'" if self.mysql else "IGNORED = 'NO'"


SERVER_VARIABLES = ("version", "version_comment", "aurora_version", "wsrep_on")
DIALECT_SQL = ("SHOW GLOBAL VARIABLES WHERE Variable_name IN ("
               + ", ".join(f"'{name}'" for name in SERVER_VARIABLES) + ")")
AURORA_3_MYSQL = (8, 0, 23)  # "all 3.x Aurora MySQL versions are wire-compatible with MySQL 8.0.23 or higher"


def dialect_of(variables: dict[str, str]) -> Dialect:
    """The server, from DIALECT_SQL's rows (names in lower case): VERSION() reads 10.11.6-MariaDB-...,
    8.0.36, 8.4.3 or 8.0.35-27 (Percona Server, whose version_comment names it); Aurora MySQL has an
    aurora_version variable (3.04.0), its version may read 8.0.28 or 8.0.mysql_aurora.3.04.0."""
    version, comment = variables.get("version", ""), variables.get("version_comment", "")
    aurora = variables.get("aurora_version", "")
    numbers = re.match(r"([0-9]+)\.([0-9]+)(?:\.([0-9]+))?", version)
    parsed = tuple(int(n or 0) for n in numbers.groups()) if numbers else (0, 0, 0)
    if "mariadb" in version.lower() or "mariadb" in comment.lower():
        vendor = "MariaDB"
    elif aurora:
        vendor, parsed = "Aurora MySQL", max(parsed, AURORA_3_MYSQL) if aurora.startswith("3.") else parsed
    else:
        vendor = "Percona Server" if "percona" in comment.lower() else "MySQL"
    return Dialect(vendor, cast(tuple[int, int, int], parsed), variables.get("wsrep_on", "").upper() == "ON",
                   aurora)


def bind_params(sql: str, params: Sequence[Any]) -> str:
    """The statement with each %s replaced by its parameter's literal."""
    parts = sql.split("%s")
    if len(parts) != len(params) + 1:
        raise ValueError(f"{len(parts) - 1} placeholders for {len(params)} parameters")
    return parts[0] + "".join(sql_literal(p) + part for p, part in zip(params, parts[1:]))


# --------------------------------------------------------------------------- key conditions

CHARSET_BYTES = {"utf8mb4": 4, "utf8mb3": 3, "utf8": 3, "latin1": 1, "ascii": 1}  # most per character
STATEMENT_OVERHEAD = 4096  # column lists, table names, the fence and the gate, with room to spare


def encoded_bytes(key_type: KeyType) -> int:
    """The most bytes key_type.encode() gives for one part."""
    if key_type.kind == "str":
        return key_type.max_length * CHARSET_BYTES.get(key_type.charset, 4)
    return key_type.max_length if key_type.kind == "bytes" else 27


def key_literal_bytes(key_type: KeyType) -> int:
    """The most bytes one key takes in a key condition (text keys appear twice: column and bytes;
    a composite key's parts once each, then in hex in its exact filter)."""
    if key_type.kind == "tuple":
        return 16 + sum(key_literal_bytes(part) + 2 * encoded_bytes(part) for part in key_type.parts)
    if key_type.kind in ("int", "date", "datetime"):
        return 30
    if key_type.kind == "bytes":
        return 2 * key_type.max_length + 6
    if key_type.kind == "timestamp":
        return 2 * encoded_bytes(key_type) + 6
    return 2 * (2 * encoded_bytes(key_type) + 16)


def batch_packet_bytes(key_type: KeyType, batch_size: int, conditions: int) -> int:
    """The longest statement text a batch of keys of the longest kind sends to a server whose round
    trip holds `conditions` key conditions (the source: its INSERT and DELETE)."""
    return STATEMENT_OVERHEAD + conditions * batch_size * key_literal_bytes(key_type)


def key_text_sql(columns: Sequence[str], key_type: KeyType) -> str:
    """SQL whose bytes are key_type.encode() of a row's key: a text key's stored bytes (no collation),
    a TIMESTAMP's seconds since the epoch (no session time zone), a composite key's parts in hex."""
    if key_type.kind == "tuple":
        parts = ", ".join(f"HEX({key_text_sql([c], p)})" for c, p in zip(columns, key_type.parts))
        return f"CAST(CONCAT_WS(',', {parts}) AS BINARY)"
    if key_type.kind == "bytes":
        return columns[0]
    if key_type.kind == "timestamp":
        return f"CAST(UNIX_TIMESTAMP({columns[0]}) AS BINARY)"
    return f"CAST({columns[0]} AS BINARY)"


INLINE_LITERALS: dict[str, Callable[[Any], str]] = {  # sql_literal of an int, date or datetime key part
    "int": str, "date": lambda v: f"'{v.isoformat()}'", "datetime": lambda v: f"'{v.isoformat(' ')}'"}


def row_key_condition(columns: Sequence[str], keys: Sequence[Key], key_type: KeyType
                      ) -> tuple[str, tuple[Any, ...]]:
    """The condition for composite and TIMESTAMP keys: the key's index by a row-constructor IN
    (MariaDB 10.11 reads it as one range per key: EXPLAIN says range on the full key length),
    each TIMESTAMP part by a range a day wider than its keys (a time written in the session's
    zone is off by at most its DST shift), then exactly, by the bytes of key_text_sql."""
    parts = key_type.parts or (key_type,)
    rows = [k if isinstance(k, tuple) else (k,) for k in keys]
    direct = [i for i, part in enumerate(parts) if part.kind != "timestamp"]
    terms, params = [], []
    if direct:
        # integers and times go inline (no character of theirs can be rewritten), text as parameters
        inline = [parts[i].kind in ("int", "date", "datetime") for i in direct]
        # MariaDB 10.11's row-constructor IN finds no latin1 row by a utf8mb4 literal with non-ASCII
        # characters once it lists two rows: the text goes in the column's own character set
        marks = ["%s" if parts[i].charset in ("", "utf8mb4") else f"CONVERT(%s USING {parts[i].charset})"
                 for i in direct]
        # a column of cells per part, joined row by row: sql_literal's text, made a part at a time
        cells = [list(map(INLINE_LITERALS[parts[i].kind], [row[i] for row in rows])) if bare
                 else [mark] * len(rows) for i, bare, mark in zip(direct, inline, marks)]
        literals = ", ".join(map(", ".join, zip(*cells))) if len(direct) == 1 else \
            "(" + "), (".join(map(", ".join, zip(*cells))) + ")"
        names = ", ".join(columns[i] for i in direct)
        terms.append(f"{f'({names})' if len(direct) > 1 else names} IN ({literals})")
        params += [row[i] for row in rows for i, bare in zip(direct, inline) if not bare]
    for i, part in enumerate(parts):
        if part.kind == "timestamp":
            seconds = [epoch_of(cast(dt.datetime, row[i])) for row in rows]
            low, high = max(0, int(min(seconds)) - 86400), int(max(seconds)) + 86401
            top = f"{high}" if high < 2 ** 31 - 1 else "2147483647.999999"  # the type's last instant
            terms.append(f"{columns[i]} BETWEEN FROM_UNIXTIME({low}) AND FROM_UNIXTIME({top})")
    if any(part.kind in ("str", "timestamp") for part in parts):
        terms.append(f"{key_text_sql(columns, key_type)} IN ({', '.join(['%s'] * len(keys))})")
        params += [key_type.encode(k) for k in keys]
    return "(" + " AND ".join(terms) + ")", tuple(params)


def key_condition(columns: Sequence[str], keys: Iterable[Key], key_type: KeyType
                  ) -> tuple[str, tuple[Any, ...]]:
    """A WHERE condition true for exactly the rows whose key is byte-identical to one of `keys`.

    Integers go as BETWEEN for long runs and IN for the rest. Text keys match by the
    column first (so the index is used) and then by the stored bytes, because the
    column's collation would also match 'ABC', 'abc ' or 'résumé' for 'abc', 'abc', 'resume'.
    """
    unique: list[Any] = sorted(set(keys))  # one batch holds one kind of key, so they sort
    if key_type.kind in ("tuple", "timestamp"):
        return row_key_condition(columns, unique, key_type)
    column_sql, marks = columns[0], ", ".join(["%s"] * len(unique))
    if key_type.kind in ("bytes", "date", "datetime"):
        return f"{column_sql} IN ({marks})", tuple(unique)  # these comparisons are already exact
    if key_type.kind == "str":
        encoded = tuple(key_type.encode(k) for k in unique)
        return (f"({column_sql} IN ({marks}) AND CAST({column_sql} AS BINARY) IN ({marks}))",
                tuple(unique) + encoded)
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


# --------------------------------------------------------------------------- row comparison

@dataclass(frozen=True)
class Column:
    """A copied column: its name and its type (which decides how values are compared)."""

    name: str
    data_type: str
    charset: str = ""


# MySQL's JSON keeps each scalar's SQL type (JSON_TYPE: INTEGER, UNSIGNED INTEGER, DOUBLE, DECIMAL, DATE,
# ...) where its text does not ([1.0] of a DOUBLE or a DECIMAL); = holds 1 = 1.0 (refman/8.0/en/json.html).
# Values of one text have one shape: the types of their values in one walk ('$', '$**.*', '$**[*]': itself,
# each member and element) must be one list (only DATETIME and TIMESTAMP share a JSON_TYPE).
def json_values_sql(value: str, alias: str) -> str:
    """A JSON_TABLE of a JSON value and every value nested in it, numbered (n) in one walk (v)."""
    return (f"JSON_TABLE(JSON_EXTRACT({value}, '$', '$**.*', '$**[*]'), '$[*]' COLUMNS "
            f"(n FOR ORDINALITY, v JSON PATH '$')) AS {alias}")


def json_types_sql(value: str) -> str:
    """The JSON_TYPE of a JSON value and of every value nested in it, in one walk, comma-separated;
    NULL when group_concat_max_len (max_allowed_packet) would cut the list: never identical then."""
    return (f"(SELECT IF(SUM(CHAR_LENGTH(JSON_TYPE(t.v)) + 1) > @@SESSION.group_concat_max_len, NULL, "
            f"GROUP_CONCAT(JSON_TYPE(t.v) ORDER BY t.n SEPARATOR ',')) FROM {json_values_sql(value, 't')})")


def same_value_sql(column: Column, left: str, right: str) -> str:
    """True when two values of `column` are the same stored value; NULL equals NULL.

    BINARY renders a FLOAT with 6 significant digits, so two different values would
    look the same; compared as numbers they cannot, and ATAN2(x, -1) tells FLOAT's
    -0 from 0. TIMESTAMPs compare as their stored UTC value, because rendered in a
    DST time zone two instants an hour apart read the same. An ENUM's index 0 (an
    invalid value) renders like a '' member. Everything else compares its bytes.
    """
    a, b = f"{left}.{quote_ident(column.name)}", f"{right}.{quote_ident(column.name)}"
    if column.data_type in ("float", "double"):
        return f"({a} <=> {b} AND ATAN2({a}, -1) <=> ATAN2({b}, -1))"
    if column.data_type == "timestamp":
        return f"UNIX_TIMESTAMP({a}) <=> UNIX_TIMESTAMP({b})"
    # CAST(x AS BINARY), not BINARY x: MySQL 8.0.27 deprecates the BINARY operator; the two are
    # the same (https://dev.mysql.com/doc/refman/8.0/en/cast-functions.html#operator_binary).
    same_bytes = f"CAST({a} AS BINARY) <=> CAST({b} AS BINARY)"
    if column.data_type in ("enum", "set"):
        return f"({a} + 0 <=> {b} + 0 AND {same_bytes})"
    if column.data_type == "json":  # MySQL's: its text is normalised, so the scalar types must match too
        return f"({same_bytes} AND ({a} IS NULL OR {json_types_sql(a)} = {json_types_sql(b)}))"
    return same_bytes


def identical_expression(columns: Sequence[Column], left: str = "s", right: str = "a") -> str:
    """True when two rows hold the same value in every column, NULLs included."""
    return " AND ".join(same_value_sql(c, left, right) for c in columns)


EXACT_NUMBERS = frozenset(("tinyint", "smallint", "mediumint", "int", "bigint", "decimal", "double"))
QUOTED_AS_TEXT = frozenset(("date", "datetime", "time", "inet4", "inet6", "uuid"))
CHARSET_NAME = re.compile(r"^[a-z0-9_]+$")


def literal_sql(column: Column, alias: str) -> str:
    """SQL that renders a column's value as the SQL literal recreating it exactly ('NULL' for NULL).

    Strings travel as hex bytes under their character set, so no conversion can touch
    them. A FLOAT goes as its exact double (-0 only by underflow), a TIMESTAMP as its
    stored UTC second (the destination session runs in UTC), ENUM, SET, BIT and YEAR by
    number (the text '0' would be the YEAR 2000). Other numbers' text is exact.
    """
    c, kind = f"{alias}.{quote_ident(column.name)}", column.data_type
    if kind == "float":
        # + 0e0 is the value as a DOUBLE, exactly as CAST(... AS DOUBLE), which MySQL has only
        # from 8.0.17 (https://dev.mysql.com/doc/refman/8.0/en/cast-functions.html#function_cast).
        text = f"IF({c} = 0 AND ATAN2({c}, -1) < 0, '-1e-50', {c} + 0e0)"
    elif kind == "timestamp":
        text = (f"IF(UNIX_TIMESTAMP({c}) = 0, '''0000-00-00 00:00:00''', "
                f"CONCAT('FROM_UNIXTIME(', UNIX_TIMESTAMP({c}), ')'))")
    elif kind in ("enum", "set", "bit", "year"):
        text = f"{c} + 0"
    elif kind in EXACT_NUMBERS:
        text = c
    elif kind in QUOTED_AS_TEXT:
        text = f"QUOTE(CAST({c} AS CHAR))"
    elif kind == "json":
        # MySQL's JSON has no charset; a binary string is no JSON (3144). The types its text loses follow in a
        # comment the INSERT ignores and the proof renders again: a DECIMAL that arrived as a DOUBLE differs.
        text = f"CONCAT('_utf8mb4 X''', HEX({c}), ''' /* ', {json_types_sql(c)}, ' */')"
    elif column.charset and CHARSET_NAME.match(column.charset):
        text = f"CONCAT('_{column.charset} X''', HEX({c}), '''')"
    else:
        text = f"CONCAT('X''', HEX({c}), '''')"
    # Not IFNULL(text, 'NULL'): past max_allowed_packet HEX() returns NULL, and a blob would
    # travel as NULL. A NULL text of a value makes the whole row NULL, which read() refuses.
    return f"IF({c} IS NULL, 'NULL', {text})"


def row_literal_sql(columns: Sequence[Column], alias: str) -> str:
    """SQL that renders a row as the parenthesised VALUES tuple recreating it: equal texts, equal rows."""
    # CONCAT, not CONCAT_WS: a value whose text came out NULL must make the whole row NULL,
    # never a shorter row that another row with the same gap would match.
    values = ", ',', ".join(literal_sql(c, alias) for c in columns)
    return f"CONCAT('(', {values}, ')')"


def fingerprint_of(literal: str) -> str:
    """SHA-256 (hex) of a row's literal, as the SQL SHA2() of the same text gives it."""
    return hashlib.sha256(literal.encode()).hexdigest()


def batch_fingerprint_of(literals: Iterable[str]) -> str:
    """SHA-256 (hex) of a batch's row literals in byte order, as RemotePlan.verify_sql computes it."""
    return hashlib.sha256(b",".join(sorted(literal.encode() for literal in literals))).hexdigest()


def statement_bytes(statement: tuple[str, Sequence[Any]]) -> int:
    """At most the bytes a statement takes in a script once its parameters are quoted into it (a
    parameter's every character escaped, at worst)."""
    sql, params = statement
    return len(sql.encode()) + sum(2 * len(p if isinstance(p, (bytes, bytearray)) else str(p).encode()) + 12
                                   for p in params)


# --------------------------------------------------------------------------- table plans

def column_list_sql(columns: Sequence[Column], alias: str = "") -> str:
    """Columns, quoted, optionally prefixed by a table alias."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + quote_ident(c.name) for c in columns)


def same_key_sql(key: Sequence[str], left: str, right: str) -> str:
    """Two aliases' rows have the same key (under the columns' collations: a unique key's rule)."""
    return " AND ".join(f"{left}.{quote_ident(k)} = {right}.{quote_ident(k)}" for k in key)


@dataclass(frozen=True)
class Span:
    """A batch of keys as one key range, filtered to exactly the listed keys: sparse integer keys
    (TablePlan.span_of) or composite keys of integers and times (TablePlan.box_of).

    `unlisted_sql` first counts the range's unlisted rows (a box: its rows beyond the number of
    keys listed), in a consistent read that locks nothing and waits for nobody: when there are
    some (keys interleaved with live rows), the range would lock them too, so the batch takes
    its key list instead. The filter alone decides which rows move.
    """

    condition: str
    unlisted_sql: str


UNMATCHED = KeyType("unmatched")  # a child's key on its own server: only ever compared by SQL `=`


def returned_key_sql(columns: Sequence[str], key_type: KeyType) -> str:
    """A row's key as the server stores it: bytes for text keys, so no collation blurs it."""
    return columns[0] if key_type.kind == "int" else key_text_sql(columns, key_type)


def raw_key(value: Any) -> Any:
    """A key as the server returned it, hashable: bytes for text (bytearray from some cursors)."""
    return bytes(value) if isinstance(value, (bytes, bytearray)) else value


def listed_key(listed: dict[Any, Key], raw: Any) -> Key:
    """The key a row's returned key stands for, by keys_by_bytes' map (an integer is itself)."""
    return listed[bytes(raw)] if isinstance(raw, (bytes, bytearray)) else cast(Key, raw)


class KeyedTable:
    """What TablePlan and ChildPlan share: a table copied into its archive and known by its key."""

    archive: str
    key: tuple[str, ...]
    key_type: KeyType
    columns: tuple[Column, ...]
    recomputed: tuple[Column, ...]
    archive_index: str

    @property
    def column_names(self) -> tuple[str, ...]:
        """Names of the copied columns, in source order."""
        return tuple(c.name for c in self.columns)

    def column_list(self, alias: str = "") -> str:
        """The copied columns, quoted, optionally prefixed by a table alias."""
        return column_list_sql(self.columns, alias)

    @property
    def key_parts(self) -> tuple[KeyType, ...]:
        """The key type of each key column."""
        return self.key_type.parts or (self.key_type,)

    @property
    def text_key(self) -> bool:
        """Whether a key column is text (whose collation may call two different keys equal)."""
        return any(part.kind == "str" for part in self.key_parts)

    def key_sql(self, alias: str = "") -> list[str]:
        """The key's columns, quoted, optionally prefixed by a table alias."""
        return [(f"{alias}." if alias else "") + quote_ident(name) for name in self.key]

    def same_key_sql(self, left: str, right: str) -> str:
        """Two aliases' rows have the same key (under the columns' collations: a unique key's rule)."""
        return same_key_sql(self.key, left, right)

    def condition(self, keys: Iterable[Key], alias: str = "") -> tuple[str, tuple[Any, ...]]:
        """The exact-match WHERE condition for `keys` (optionally aliased)."""
        return key_condition(self.key_sql(alias), keys, self.key_type)

    def archive_sql(self, alias: str) -> str:
        """The archive table, read through its key's index (see TablePlan.source_sql)."""
        return f"{quote_ident(self.archive)} {alias} FORCE INDEX ({quote_ident(self.archive_index)})"

    def returned_key_sql(self, alias: str) -> str:
        """The key as the server stores it: bytes for text keys, so no collation blurs it."""
        return returned_key_sql(self.key_sql(alias), self.key_type)

    def keys_by_bytes(self, keys: Iterable[Key]) -> dict[Any, Key]:
        """Map what returned_key_sql gives back to the keys."""
        return {k if self.key_type.kind == "int" else self.key_type.encode(k): k for k in keys}


@dataclass(frozen=True)
class TablePlan(KeyedTable):
    """The checked shape of the copy: what to copy, how keys look and how rows compare."""

    source: str
    archive: str
    key: tuple[str, ...]  # the key's columns, in the CSV files' order
    columns: tuple[Column, ...]
    key_type: KeyType
    guard: str | None = None
    source_index: str = "PRIMARY"
    archive_index: str = "PRIMARY"
    recomputed: tuple[Column, ...] = ()  # generated on both sides (same expression): compared, not copied
    definitions: Definitions | None = None  # of the tables it writes on the source's server
    dest_definitions: Definitions | None = None  # of the archive table on the destination
    children: tuple[ChildPlan, ...] = ()  # the [child NAME] tables, parents first

    @property
    def key_text(self) -> str:
        """The key's columns for a message: `id`, or (`tenant_id`, `id`)."""
        names = ", ".join(f"`{name}`" for name in self.key)
        return names if len(self.key) == 1 else f"({names})"

    def source_sql(self, alias: str = "") -> str:
        """The source table, read through its key's index.

        When a batch's keys are a large share of what is left of a table, the optimizer
        prefers a full scan, and under REPEATABLE READ a locking scan locks every row:
        the application's rows too. The index hint keeps the locks on the batch's rows.
        """
        table = f"{quote_ident(self.source)} {alias}".rstrip()
        return f"{table} FORCE INDEX ({quote_ident(self.source_index)})"

    def insert_sql(self, condition: str) -> str:
        """Copy matching source rows into the archive; never INSERT IGNORE."""
        return (f"INSERT INTO {quote_ident(self.archive)} ({self.column_list()}) "
                f"SELECT {self.column_list()} FROM {self.source_sql()} WHERE {condition}")

    def delete_sql(self, condition: str, rows: int) -> str:
        """Delete matching source rows: at most `rows` (one per listed key), which also keeps the
        optimizer on the key's index (a single-table DELETE takes no index hint)."""
        return f"DELETE FROM {quote_ident(self.source)} WHERE {condition} LIMIT {int(rows)}"

    def guard_sql(self) -> str:
        """The guard's verdict on source row `s`, TRUE or FALSE (NULL counts as FALSE)."""
        if not self.guard:
            return "1"
        # The guard names source columns unqualified; a subquery on the source alone keeps
        # them from clashing with the archive's identical column names.
        return (f"(SELECT ({self.guard}) IS TRUE FROM {quote_ident(self.source)} g "
                f"WHERE {self.same_key_sql('g', 's')})")

    def classify_sql(self, condition: str, lock: bool = True, dialect: Dialect = Dialect()) -> str:
        """Source rows of the batch with their guard verdict and archived twin (both locked)."""
        return (f"SELECT {self.returned_key_sql('s')}, {self.guard_sql()}, a.{quote_ident(self.key[0])} "
                f"IS NOT NULL, COALESCE({identical_expression(self.columns)}, 0) "
                f"FROM {self.source_sql('s')} LEFT JOIN {self.archive_sql('a')} "
                f"ON {self.same_key_sql('a', 's')} "
                f"WHERE {condition}{dialect.locking(('s',), ('a',)) if lock else ''}")

    def span_of(self, keys: Sequence[Key]) -> Span | None:
        """Sparse integer keys as one key range with a bitmap filter, when that is cheaper.

        An IN list costs the server an index dive per key; reading the range between the
        smallest and the largest key reads the gaps' few rows instead, and a bitmap of the
        listed keys (a byte per key in the range, looked up by position) keeps every other
        row out, exactly and in constant time per row. Only for ranges at most SPAN_FACTOR
        times the key count; contiguous keys are a plain range anyway.
        """
        if self.key_type.kind == "tuple":
            return self.box_of(keys)
        if self.key_type.kind != "int" or not keys:
            return None
        unique = sorted(set(cast(Sequence[int], keys)))  # an int key column yields only ints
        low, high, column = unique[0], unique[-1], quote_ident(self.key[0])
        if high - low + 1 == len(unique) or high - low + 1 > SPAN_FACTOR * len(unique):
            return None
        bits = bytearray(b"0" * (high - low + 1))
        for key in unique:
            bits[key - low] = 49  # b"1"
        between = f"{column} BETWEEN {int(low)} AND {int(high)}"
        listed = f"SUBSTRING(_binary'{bits.decode()}', {column} - {int(low)} + 1, 1) = '1'"
        return Span(f"{between} AND {listed}", f"SELECT COUNT(*) INTO @archive_py_unlisted FROM "
                                               f"{self.source_sql()} WHERE {between} AND NOT ({listed})")

    def box_of(self, keys: Sequence[Key]) -> Span | None:
        """Composite keys of integers and times as the box between their smallest and largest value
        in each column, filtered by their row-constructor IN made no index's range (`IS TRUE`).

        The IN alone costs the server an index dive per key; the box is one range on the index's
        leading column (and prunes partitions on the others), and the IN then only filters the
        box's rows (MariaDB 10.11, 1000 keys of (BIGINT, DATETIME(6)) on 4 partitions: 3.3 ms
        against 6.3). Text and TIMESTAMP parts keep the key list: their order is not Python's.
        """
        parts = self.key_type.parts
        if not keys or any(part.kind not in INLINE_LITERALS for part in parts):
            return None
        unique = sorted(set(cast(Sequence[tuple[Any, ...]], keys)))
        columns = self.key_sql()
        box = " AND ".join(f"{column} BETWEEN {INLINE_LITERALS[part.kind](min(values))} AND "
                           f"{INLINE_LITERALS[part.kind](max(values))}"
                           for column, part, values in zip(columns, parts, zip(*unique)))
        listed, _ = row_key_condition(columns, unique, self.key_type)  # integers and times go inline
        beyond = f"SELECT GREATEST(COUNT(*) - {len(unique)}, 0) INTO @archive_py_unlisted"
        return Span(f"{box} AND {listed} IS TRUE", f"{beyond} FROM {self.source_sql()} WHERE {box}")

    def present_sql(self, condition: str) -> str:
        """Whether any key of a batch is still in the source (for the rewind check)."""
        return f"SELECT 1 FROM {self.source_sql()} WHERE {condition} LIMIT 1"

    def lineage(self, child: ChildPlan) -> list[ChildPlan]:
        """The child, its parent, ... up to the child of the source table."""
        by_name = {c.name: c for c in self.children}
        line = [child]
        while line[-1].parent is not None:
            line.append(by_name[line[-1].parent])
        return line

    def family_sql(self, child: ChildPlan, archived: bool = False) -> str:
        """The child's rows (alias c) joined up to the source rows (alias s) they descend from (with
        `archived`: the same join over the archive tables, as a destination holds a family).

        Parent and child are matched by `=`, under the columns' collations: what a foreign key
        between them matches, so every row the parent's deletion would strand comes along.
        """
        line, alias = self.lineage(child), "c"
        joins = [f"{quote_ident(child.archive if archived else child.source)} c"]
        for depth, node in enumerate(line, 1):
            top = depth == len(line)
            up = "s" if top else f"p{depth}"
            if top:
                table = self.archive_sql("s") if archived else self.source_sql("s")
            else:
                table = f"{quote_ident(line[depth].archive if archived else line[depth].source)} {up}"
            on = " AND ".join(f"{alias}.{quote_ident(mine)} = {up}.{quote_ident(theirs)}"
                              for mine, theirs in zip(node.parent_columns, node.parent_key))
            joins.append(f"JOIN {table} ON {on}")
            alias = up
        return " ".join(joins)

    def child_classify_sql(self, child: ChildPlan, condition: str, lock: bool = True,
                           dialect: Dialect = Dialect()) -> str:
        """Each child row of the listed source rows: the source row's key, whether the child row is
        archived, whether identically, and its own key for messages (all locked: the tables it
        deletes from for update, its archive shared)."""
        key = ", ".join(f"c.{quote_ident(k)}" for k in child.key)
        written = ("c", *(f"p{depth}" for depth in range(1, len(self.lineage(child)))), "s")
        return (f"SELECT {self.returned_key_sql('s')}, a.{quote_ident(child.key[0])} IS NOT NULL, "
                f"COALESCE({identical_expression(child.columns, 'c', 'a')}, 0), CONCAT_WS(',', {key}) "
                f"FROM {self.family_sql(child)} LEFT JOIN {child.archive_sql('a')} "
                f"ON {child.same_key_sql('a', 'c')} WHERE {condition}"
                f"{dialect.locking(written, ('a',)) if lock else ''}")

    def child_insert_sql(self, child: ChildPlan, condition: str, twins: bool = True, rows: str = "") -> str:
        """Copy the child rows of the listed source rows that are not archived yet (never IGNORE), from
        `rows` (default: family_sql's join).

        Without `twins` (the locked read found none archived, and keeps it so) the archive is not
        read again: an INSERT ... SELECT that reads its own table goes through a temporary table
        (5000 rows: 22 ms instead of 16)."""
        not_archived = (f" AND NOT EXISTS (SELECT 1 FROM {child.archive_sql('a')} WHERE "
                        f"{child.same_key_sql('a', 'c')})") if twins else ""
        return (f"INSERT INTO {quote_ident(child.archive)} ({child.column_list()}) SELECT "
                f"{child.column_list('c')} FROM {rows or self.family_sql(child)} "
                f"WHERE {condition}{not_archived}")

    def direct_rows(self, child: ChildPlan, keys: Sequence[Key]) -> tuple[str, str, tuple[Any, ...]] | None:
        """A child of the source table that holds its integer key in an integer column: its rows under
        `keys` by that column (FROM, WHERE, parameters), which its index reads as ranges, where the
        join up to the listed rows costs a lookup per row (5000 items: 20-22 ms instead of 28). The
        same rows only while every listed row exists (else also a missing one's orphans): the
        caller checks that. None for any other child."""
        types = {c.name.lower(): c.data_type.lower() for c in child.columns}
        if child.parent is not None or self.key_type.kind != "int" or \
                types.get(child.parent_columns[0].lower()) not in INT_RANGES:
            return None
        condition, params = key_condition([f"c.{quote_ident(child.parent_columns[0])}"], keys, self.key_type)
        return f"{quote_ident(child.source)} c", condition, params

    def family_count_sql(self, condition: str) -> str:
        """How many rows of each child table descend from the listed rows, read without locks (one
        row; the condition's parameters once per child)."""
        return "SELECT " + ", ".join(f"(SELECT COUNT(*) FROM {self.family_sql(c)} WHERE {condition})"
                                     for c in self.children)

    def child_delete_sql(self, child: ChildPlan, condition: str, rows: str = "") -> str:
        """Delete every child row of the listed source rows (their copies are in the archive), from
        `rows` (default: family_sql's join)."""
        return f"DELETE c FROM {rows or self.family_sql(child)} WHERE {condition}"


@dataclass(frozen=True)
class ChildPlan(KeyedTable):
    """A child table's checked copy: its rows move with the parent rows they reference."""

    name: str
    source: str
    archive: str
    key: tuple[str, ...]  # its own primary or unique key: how its rows are compared and reported
    columns: tuple[Column, ...]
    parent: str | None  # the parent child's name; None: the job's source table
    parent_columns: tuple[str, ...]
    parent_key: tuple[str, ...]  # the parent's key columns that parent_columns hold, in order
    archive_index: str = "PRIMARY"
    recomputed: tuple[Column, ...] = ()
    key_type: KeyType = UNMATCHED  # its own key's, for the destination's lookups (into another server)


# --------------------------------------------------------------------------- remote plans

@dataclass(frozen=True)
class RemotePlan:
    """The statements of archiving into another server: read and lock on the source, look up,
    insert and verify on the destination, then delete on the source; of the job's table or, with
    `child`, of one of its child tables (read joined up to the listed rows).

    A row is inserted as the literal of its copied columns and verified as that literal followed
    by the literal of the generated columns the destination computes again (`proof_sql`): a
    destination that computes one differently (another collation, another version) gets nothing.
    """

    plan: TablePlan
    child: ChildPlan | None = None

    @property
    def table(self) -> KeyedTable:
        """The table whose rows these statements move."""
        return self.child or self.plan

    def proof_sql(self, alias: str) -> str:
        """The text every copy is proven by: the inserted literal, then the recomputed columns'."""
        t = self.table
        if not t.recomputed:
            return row_literal_sql(t.columns, alias)
        return f"CONCAT({row_literal_sql(t.columns, alias)}, {row_literal_sql(t.recomputed, alias)})"

    def rows_sql(self, condition: str) -> tuple[str, str]:
        """What identifies each source row (the listed key, and a child row's own key) and the FROM
        and WHERE that read the batch's rows (a child's joined up to the listed rows: alias c)."""
        p, child = self.plan, self.child
        if child is None:
            return f"{p.returned_key_sql('s')}, {p.guard_sql()}", f"{p.source_sql('s')} WHERE {condition}"
        return (f"{p.returned_key_sql('s')}, {child.returned_key_sql('c')}",
                f"{p.family_sql(child)} WHERE {condition}")

    def read_sql(self, condition: str, lock: bool = True) -> str:
        """The batch's source rows: key, guard verdict (a child row: its own key), and the row as an
        SQL literal; locked (a child row with the rows above it: they are all deleted)."""
        keys, rows = self.rows_sql(condition)
        alias = "s" if self.child is None else "c"
        return (f"SELECT {keys}, {row_literal_sql(self.table.columns, alias)} FROM {rows}"
                f"{' FOR UPDATE' if lock else ''}")

    def recomputed_sql(self, condition: str, zone: str) -> list[str]:
        """The literal of the batch's recomputed columns, which completes their proof, rendered at UTC
        as the destination renders its own (a generated column may read the session's time zone:
        DATE() of a TIMESTAMP); then back to the session's own `zone`."""
        _, rows = self.rows_sql(condition)
        alias = "s" if self.child is None else "c"
        select = (f"SELECT {self.table.returned_key_sql(alias)}, "
                  f"{row_literal_sql(self.table.recomputed, alias)} FROM {rows}")
        return ["SET SESSION time_zone = '+00:00'", select, f"SET SESSION time_zone = {sql_literal(zone)}"]

    @staticmethod
    def recomputed_rows(results: Sequence[Any]) -> dict[Any, Any]:
        """recomputed_sql's literals by raw key, from the results of its statements (the SELECT's)."""
        return {raw_key(raw): text for raw, text in results[1]}

    def lookup_sql(self, condition: str, lock: bool = True, dialect: Dialect = Dialect()) -> str:
        """Archived rows with these keys, with the fingerprints of their proofs (locked until the
        destination commits)."""
        t = self.table
        return (f"SELECT {t.returned_key_sql('a')}, SHA2({self.proof_sql('a')}, 256) FROM "
                f"{t.archive_sql('a')} WHERE {condition}{dialect.locking((), ('a',)) if lock else ''}")

    def verify_sql(self, condition: str) -> str:
        """How many archived rows have these keys, and the SHA-256 of their proofs in byte order
        (one row back instead of a fingerprint per row)."""
        return (f"SELECT COUNT(*), SHA2(GROUP_CONCAT(t.l ORDER BY t.l SEPARATOR ','), 256) FROM "
                f"(SELECT CAST({self.proof_sql('a')} AS BINARY) AS l FROM "
                f"{self.table.archive_sql('a')} WHERE {condition}) AS t")

    def insert_sql(self, literals: Sequence[str]) -> str:
        """A multi-row INSERT of rows given as literals (never IGNORE, never REPLACE)."""
        t = self.table
        return f"INSERT INTO {quote_ident(t.archive)} ({t.column_list()}) VALUES " + ", ".join(literals)

    def collides(self, key: Key) -> tuple[str, tuple[Any, ...]]:
        """Whether the archive holds a key equal to this one under the columns' collations."""
        t, parts = self.table, key if isinstance(key, tuple) else (key,)
        terms = [f"UNIX_TIMESTAMP({column}) = %s" if kind.kind == "timestamp" else f"{column} = %s"
                 for column, kind in zip(t.key_sql(), t.key_parts)]
        params = tuple(epoch_of(cast(dt.datetime, part)) if kind.kind == "timestamp" else part
                       for part, kind in zip(parts, t.key_parts))
        return f"SELECT 1 FROM {quote_ident(t.archive)} WHERE {' AND '.join(terms)} LIMIT 1", params


# --------------------------------------------------------------------------- table definitions

@dataclass(frozen=True)
class Watched:
    """A table a batch writes, and the event whose triggers fire on it (DELETE: source, INSERT: archive)."""

    name: str
    event: str


VOLATILE_CREATE = re.compile(r" AUTO_INCREMENT=[0-9]+")  # the next id moves with every insert


def normalized_create(text: Any) -> str:
    """A SHOW CREATE TABLE text without what changes on its own (the AUTO_INCREMENT counter)."""
    return VOLATILE_CREATE.sub("", str(text))


@dataclass(frozen=True)
class Definitions:
    """The tables a batch writes on one server, what the preflight approved of them, and how every
    batch proves, under its own metadata locks, that they are still that.

    `creates` are their SHOW CREATE TABLE texts: every column with its type, character set,
    collation, nullability, default and generation, the keys, the engine, partitions and the
    table's own foreign keys. `effects` are what a write would set off beyond the row: the
    engines (a non-transactional one cannot roll back), the triggers that fire, and the foreign
    keys of other tables that reach the source (`referencing_sql`, chosen by the preflight).
    """

    tables: tuple[Watched, ...]
    referencing_sql: str = ""  # a subquery listing the foreign keys that reach the source, or ""
    creates: tuple[str, ...] = ()
    effects: tuple[Any, ...] = ()

    def lock_sql(self, dialect: Dialect = Dialect()) -> str:
        """Take the metadata locks a write takes, writing nothing: no DDL on these tables can end
        until the batch does, so what the batch checks next stays true until it commits.

        On MySQL the tables only inserted into are locked FOR SHARE (see Dialect.locking): a
        metadata lock all the same, which a DDL waits for; one that came between it and the
        batch's INSERT makes a deadlock the batch is retried after.
        """
        names = [quote_ident(t.name) for t in self.tables]
        update = [name for name, t in zip(names, self.tables) if t.event == "DELETE"]
        share = [name for name, t in zip(names, self.tables) if t.event != "DELETE"]
        return f"SELECT 1 FROM {', '.join(names)} WHERE FALSE{dialect.locking(update, share)}"

    def effect_expressions(self) -> list[str]:
        """Subqueries for the engines, the triggers that fire and the foreign keys that reach the source.

        One subquery per table, by equality: information_schema answers `TABLE_NAME = x` by
        opening that table, but `IN (x, y)` or an OR by opening every table of the database.
        """
        engines = [("(SELECT CONCAT(TABLE_NAME, ' ', ENGINE, ' ', TABLE_TYPE) FROM information_schema.TABLES "
                    f"WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = {sql_literal(t.name)})")
                   for t in self.tables]
        # A trigger made again under its name has another body (its hash; hidden from users
        # without the TRIGGER privilege, who see '') or at least another CREATED time.
        fired = [("(SELECT GROUP_CONCAT(EVENT_OBJECT_TABLE, ' ', ACTION_TIMING, ' ', EVENT_MANIPULATION, "
                  "' ', TRIGGER_NAME, ' ', IFNULL(CREATED, ''), ' ', DEFINER, ' ', SQL_MODE, ' ', "
                  "IFNULL(SHA2(ACTION_STATEMENT, 256), '') ORDER BY ACTION_TIMING, ACTION_ORDER "
                  "SEPARATOR ', ') FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = DATABASE() "
                  f"AND EVENT_OBJECT_TABLE = {sql_literal(t.name)} AND EVENT_MANIPULATION = '{t.event}')")
                 for t in self.tables]
        return [f"CONCAT_WS(', ', {', '.join(engines)})", f"CONCAT_WS(', ', {', '.join(fired)})",
                f"({self.referencing_sql or 'SELECT NULL'})"]

    def effects_sql(self) -> str:
        """The engines, the triggers that fire and the foreign keys that reach the source: one row."""
        return "SELECT " + ", ".join(self.effect_expressions())

    def gate_sql(self) -> str:
        """Set @archive_py_same to whether the engines and triggers are still the approved ones. A
        batch's writes are conditioned on it, so a table that became MyISAM or a new trigger never
        acts, not even in a batch that is then rolled back.

        Foreign keys that reach the source are read after the writes instead (readback_sql): a
        child's foreign key can be added without any lock on the source (ALTER ... ADD FOREIGN KEY
        with foreign_key_checks = 0, or through another Galera node), so only a reading after the
        DELETE covers it, and the rollback undoes whatever it cascaded.
        """
        # Compared as bytes: information_schema's texts carry a case-insensitive collation.
        approved = [None if value is None else str(value).encode() for value in self.effects[:2]]
        terms = [f"CAST({expression} AS BINARY) <=> {sql_literal(value)}"
                 for expression, value in zip(self.effect_expressions()[:2], approved)]
        return f"SELECT {' AND '.join(terms)} INTO @archive_py_same"

    def readback_sql(self) -> list[str]:
        """What a batch reads after its writes: SHOW CREATE TABLE of each table, the gate's verdict,
        and the foreign keys that reach the source (see holds)."""
        return self.create_sql() + [f"SELECT @archive_py_same, {self.effect_expressions()[2]}"]

    def create_sql(self) -> list[str]:
        """SHOW CREATE TABLE of each table, in order."""
        return [f"SHOW CREATE TABLE {quote_ident(t.name)}" for t in self.tables]

    def holds(self, readback: Sequence[Any]) -> bool:
        """Whether what readback_sql gave back is what was approved."""
        *creates, [(same, references)] = readback
        return same == 1 and references == self.effects[2] and \
            tuple(normalized_create(rows[0][1]) for rows in creates) == self.creates


def referencing_keys_sql(database: str, table: str, innodb: str) -> str:
    """The foreign keys of any table that reference `table`, as one text.

    information_schema.REFERENTIAL_CONSTRAINTS shows only the tables the user has privileges on,
    and must open every table of the server to answer; InnoDB's own list (PROCESS privilege; its
    table `innodb`, Dialect.foreign_keys_table, or "" for REFERENTIAL_CONSTRAINTS) has them all,
    in a tenth of a millisecond.
    """
    if innodb:
        # InnoDB names tables 'db/table' in file-name encoding: of our identifier characters only
        # '$' is encoded.
        name = f"{database}/{table}".replace("$", "@0024")
        return ("SELECT GROUP_CONCAT(ID, ' ', FOR_NAME, ' ', TYPE ORDER BY ID SEPARATOR ', ') FROM "
                f"information_schema.{innodb} WHERE REF_NAME = {sql_literal(name)}")
    return ("SELECT GROUP_CONCAT(CONSTRAINT_SCHEMA, '.', TABLE_NAME, ' ', CONSTRAINT_NAME, ' ', DELETE_RULE "
            "ORDER BY CONSTRAINT_SCHEMA, TABLE_NAME, CONSTRAINT_NAME SEPARATOR ', ') FROM "
            "information_schema.REFERENTIAL_CONSTRAINTS WHERE UNIQUE_CONSTRAINT_SCHEMA = DATABASE() "
            f"AND REFERENCED_TABLE_NAME = {sql_literal(table)}")


def family_referencing_sql(database: str, tables: Sequence[str], innodb: str) -> str:
    """The foreign keys that reach any of `tables` (the source and its child tables), one text,
    each table's part named, so a key that moved from one table to another is a change."""
    if len(tables) == 1:
        return referencing_keys_sql(database, tables[0], innodb)
    parts = [f"CONCAT({sql_literal(t + ': ')}, IFNULL(({referencing_keys_sql(database, t, innodb)}), ''))"
             for t in tables]
    return f"SELECT CONCAT_WS(' | ', {', '.join(parts)})"


def describe_definition_changes(old: Definitions | None, new: Definitions | None) -> list[str]:
    """What differs between two readings of the same tables, one line per change, for a DBA."""
    if old is None or not old.tables:
        return []
    if new is None:
        names = " or ".join(f"`{t.name}`" for t in old.tables)
        return [f"{names} can no longer be read (dropped or renamed?)"]
    changes = []
    for watched, before, after in zip(old.tables, old.creates, new.creates):
        lines = [line[:2] + line[2:].strip().rstrip(",") for line in
                 difflib.ndiff(before.splitlines(), after.splitlines()) if line[:1] in "+-"]
        if lines:
            changes.append(f"`{watched.name}`: " + "; ".join(lines))
    labels = ("engines", "triggers on their writes", "foreign keys that reference the source")
    for label, before, after in zip(labels, old.effects, new.effects):
        if before != after:
            changes.append(f"{label}: {before or 'none'} -> {after or 'none'}")
    return changes


# --------------------------------------------------------------------------- preflight decisions

def is_generated(column: dict[str, Any]) -> bool:
    """Generated columns cannot be inserted into; their values are computed."""
    extra = (column["extra"] or "").upper()
    return any(k in extra for k in ("VIRTUAL GENERATED", "STORED GENERATED", "PERSISTENT GENERATED"))


INNODB_DELETE_RULES = ((1, "CASCADE"), (2, "SET NULL"), (16, "NO ACTION"))  # dict0mem.h's flags


def decode_innodb_name(name: str) -> str:
    """InnoDB's 'db/table' in file-name encoding (@0024 is '$') as the names read."""
    return re.sub(r"@([0-9a-f]{4})", lambda m: chr(int(m.group(1), 16)), str(name))


@dataclass
class Preflight:
    """The outcome of checking the tables: a plan, or the problems that block one."""

    plan: TablePlan | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def refuse_unless(self, allowed: bool, problem: str, note: str) -> None:
        """A risk the config may accept: a problem unless allowed, then a note."""
        if allowed:
            self.notes.append(note)
        else:
            self.problems.append(problem)


INT_DISPLAY_WIDTH = re.compile(r"^(tinyint|smallint|mediumint|int|bigint)\([0-9]+\)", re.IGNORECASE)


def normalized_column(column: dict[str, Any]) -> dict[str, Any]:
    """An information_schema.COLUMNS row with what names the same type in two spellings spelled one
    way: MySQL 8.0.19+ prints `int` where MariaDB and older servers print `int(11)` (a display width,
    which changes no value) and `year` for `year(4)`; `utf8` is `utf8mb3` (MySQL 8.0.30 and MariaDB
    10.6 print the latter), its collations `utf8_...` are `utf8mb3_...`, the same collations.
    https://dev.mysql.com/doc/refman/8.0/en/numeric-type-attributes.html"""
    column_type = INT_DISPLAY_WIDTH.sub(r"\1", str(column["column_type"]))
    column_type = re.sub(r"^year\(4\)", "year", column_type, flags=re.IGNORECASE)
    charset, collation = column.get("charset"), column.get("collation")
    charset = "utf8mb3" if charset is not None and str(charset).lower() == "utf8" else charset
    if collation is not None and str(collation).lower().startswith("utf8_"):
        collation = "utf8mb3_" + str(collation)[len("utf8_"):]
    return {**column, "column_type": column_type, "charset": charset, "collation": collation}


def describe_type(column: dict[str, Any]) -> str:
    """A column's type with its character set, for messages."""
    return " ".join(filter(None, (column["column_type"], column["charset"])))


def same_type(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Same type, length, precision, sign, ENUM members and character set."""
    # Exactly: ENUM('x','Y') and ENUM('x','y') are different types (the copy would change the value).
    return (a["column_type"], a["charset"]) == (b["column_type"], b["charset"])


def compare_column(column: dict[str, Any], twin: dict[str, Any] | None, found: Preflight) -> bool:
    """Check one source column against its archive twin; True when it is copied."""
    name = column["name"]
    if twin is None:
        if is_generated(column):
            found.notes.append(f"generated column `{name}` is not archived (the archive has no such column)")
        else:
            found.problems.append(f"archive table has no column `{name}`")
        return False
    if not same_type(column, twin):
        found.problems.append(f"column `{name}` is {describe_type(column)} in the source but "
                              f"{describe_type(twin)} in the archive")
        return False
    if is_generated(twin):
        same = is_generated(column) and column["expression"] == twin["expression"]
        if not same:
            found.problems.append(f"archive column `{name}` is generated but the source's is "
                                  f"{'generated differently' if is_generated(column) else 'stored data'}: "
                                  "the archive would hold computed values instead of the source's")
        else:
            found.notes.append(f"generated column `{name}` is recomputed by the archive (same expression)")
        return False
    if column["nullable"] == "YES" and twin["nullable"] == "NO":
        found.problems.append(f"archive column `{name}` is NOT NULL but the source's is nullable: a NULL "
                              "would fail the batch or, for a TIMESTAMP, be stored as the current time")
        return False
    return True


def compare_columns(source: list[dict[str, Any]], archive: list[dict[str, Any]], found: Preflight
                    ) -> tuple[tuple[Column, ...], tuple[Column, ...]]:
    """Pick the columns to copy and record mismatches that would lose or change data; return them
    and the generated columns the archive computes again (same expression), which are compared."""
    by_name = {c["name"].lower(): c for c in archive}
    copied = tuple(Column(c["name"], c["data_type"].lower(), c["charset"] or "") for c in source
                   if compare_column(c, by_name.get(c["name"].lower()), found))
    twins = [(c, by_name.get(c["name"].lower())) for c in source]
    recomputed = tuple(Column(c["name"], c["data_type"].lower(), c["charset"] or "") for c, twin in twins
                       if twin is not None and is_generated(c) and is_generated(twin))
    names = {c["name"].lower() for c in source}
    for column in archive:
        needs_value = column["nullable"] == "NO" and column["col_default"] is None and not (
            is_generated(column) or "auto_increment" in (column["extra"] or "").lower())
        if column["name"].lower() not in names and needs_value:
            found.problems.append(f"archive column `{column['name']}` is NOT NULL without a default")
    return copied, recomputed


def check_recomputing_collations(source: list[dict[str, Any]], archive: list[dict[str, Any]],
                                 recomputed: Sequence[Column], found: Preflight) -> None:
    """Within one server a recomputed generated column is not compared after the copy, so the text
    it is computed from must compare the same (UPPER('istanbul') is 'İSTANBUL' under a Turkish
    collation, 'ISTANBUL' under others)."""
    by_name = {c["name"].lower(): c for c in archive}
    for column in source:
        twin = by_name.get(column["name"].lower())
        if recomputed and twin is not None and column["collation"] != twin["collation"]:
            found.problems.append(
                f"column `{column['name']}` has collation {column['collation']} in the source but "
                f"{twin['collation']} in the archive, which computes generated column(s) "
                f"{', '.join(f'`{c.name}`' for c in recomputed)} again: they could come out differently")


def describe_foreign_keys(children: list[tuple[Any, ...]]) -> tuple[list[str], list[str]]:
    """Split child foreign keys into those whose ON DELETE changes child rows and those that block."""
    effects = {"CASCADE": "its rows are deleted with the parent, unarchived",
               "SET NULL": "its key column is set to NULL when the parent goes",
               "SET DEFAULT": "its key column is set to its default when the parent goes"}
    changing = [f"{schema}.{child} ({name}: ON DELETE {rule}: {effects[rule]})"
                for schema, child, name, rule in children if rule in effects]
    restricts = [f"{schema}.{child} ({name}) restricts deletes: a batch with a still-referenced row "
                 "fails with error 1451 and is rolled back" for schema, child, name, rule in children
                 if rule in ("RESTRICT", "NO ACTION")]
    return changing, restricts


FORWARDING_ENGINES = frozenset(("FEDERATED", "CONNECT", "SPIDER"))  # their rows live on another server
DURABLE_FLUSH = frozenset(("1", "3"))  # innodb_flush_log_at_trx_commit values that sync each commit


@dataclass(frozen=True)
class ServerIdentity:
    """What tells two servers apart, and what a server replicates from."""

    server_id: int
    server_uuid: str | None  # MySQL only
    place: tuple[Any, ...]  # host name, port and data directory: one server, however it is reached
    cluster: str | None  # the Galera cluster's state UUID
    gtid: str  # what it applied as a replica: MariaDB's gtid_slave_pos, or MySQL's gtid_executed
    sources: tuple[int, ...] | None  # server ids it replicates from (None: may not look)

    def gtid_origins(self) -> set[str]:
        """The servers (MariaDB server ids, MySQL UUIDs) whose transactions its GTID position holds."""
        origins = set()
        for item in filter(None, (part.strip() for part in self.gtid.split(","))):
            parts = item.split("-") if re.fullmatch(r"[0-9]+-[0-9]+-[0-9]+", item) else [item.split(":")[0]]
            origins.add(parts[1] if len(parts) == 3 else parts[0].lower())
        return origins

    def replicates_from(self, source: ServerIdentity) -> str | None:
        """How we know this server receives `source`'s changes, or None."""
        if self.sources and source.server_id in self.sources:
            return f"it replicates from server_id {source.server_id}, the source's (SHOW REPLICA STATUS)"
        origin = source.server_uuid.lower() if source.server_uuid else str(source.server_id)
        if self.sources != () and origin in self.gtid_origins():
            return (f"its replication position {self.gtid} holds transactions of the source ({origin}); "
                    "if it no longer replicates from it, grant SLAVE MONITOR so that archive.py can see so")
        return None

    def replicates_at_all(self) -> str | None:
        """Whether this server replicates from some server (which may replicate from the source: a
        chain, whose last link names only the server before it), or None."""
        if self.sources:
            return f"it replicates from server_id {', '.join(map(str, sorted(set(self.sources))))}"
        others = self.gtid_origins() - {(self.server_uuid or "").lower(), str(self.server_id)}
        if self.sources is None and others:
            return (f"this user may not see its replication (SHOW REPLICA STATUS needs SLAVE MONITOR), and "
                    f"its replication position {self.gtid} shows it applied other servers' transactions")
        return None


def disguise_problems(source: ServerIdentity, dest: ServerIdentity, same_name: bool,
                      allow_replica: bool = False) -> list[str]:
    """Why the destination cannot keep what the source deletes: it is the source, or it hears of the
    source's deletes and would apply them to the copies (perhaps through a chain of replicas)."""
    if dest.place == source.place or (source.server_uuid and source.server_uuid == dest.server_uuid):
        where = "the same server as the source"
    elif source.cluster and source.cluster == dest.cluster:
        where = "a node of the source's Galera cluster"
    else:
        where = ""
    if where and same_name:
        return [(f"[destination] is {where} and its archive table is the source table itself: every row "
                 "would be deleted as its own identical copy; archive into another table or server")]
    replication = dest.replicates_from(source)
    if replication:
        return [(f"[destination] receives the source's changes: {replication}; the source's DELETEs would "
                 "remove the copies just made there; archive into a server that does not replicate from "
                 "the source")]
    replica = None if where or allow_replica else dest.replicates_at_all()
    if replica:
        return [(f"[destination] is a replica: {replica}; if that server replicates from the source, even "
                 "through others or with a delay, the source's DELETEs would reach the copies made here; "
                 "archive into a server that is no replica, or set [archive] allow_replica_destination = yes "
                 "if it cannot receive the source's changes")]
    return []


# --------------------------------------------------------------------------- text log

BATCH_LINE = re.compile(
    r"^\[([0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8})\] FILE: (.+?) \| BATCH: ([0-9]+) \| STATUS: ([A-Z_]+)$")
FILE_INFO_LINE = re.compile(
    r"^FILE_INFO: (.+?) \| SHA256: ([0-9a-f]{64}) \| BATCH_SIZE: ([0-9]+) \| KEYS: ([0-9]+) "
    r"(?:\| READING: (.+?) )?\| (?:JOB|TABLE): (.+)$")
FILE_CHANGED_LINE = re.compile(r"^FILE_CHANGED: (.+?) \| SHA256: ([0-9a-f]{64}) \| JOB: (.+)$")
LOG_NAME = re.compile(rf"^{LOG_PREFIX}([0-9]{{2}})_([0-9]{{2}})_([0-9]{{4}})\.txt$")
# (job, file, sha256, how it was read, batch size) -> (keys, last batch done)
Progress = dict[tuple[str, str, str, str, int], tuple[int, int]]


@dataclass(frozen=True)
class Checkpoint:
    """How far a file with this exact content got: batches done at a fixed batch size."""

    batch_size: int
    total_keys: int
    last_batch: int
    end_offset: int = 0
    end_line: int = 0
    source: str = "db"


@dataclass
class LogSummary:
    """What one text log says about progress: enough to resume without re-reading it."""

    progress: Progress = field(default_factory=dict)
    changed: set[tuple[str, str, str]] = field(default_factory=set)


def log_file_name(when: dt.datetime) -> str:
    """The seed's text log name for a day."""
    return f"{LOG_PREFIX}{when:%d_%m_%Y}.txt"


def batch_log_line(when: dt.datetime, file_name: str, batch: int, status: str) -> str:
    """The seed's batch line."""
    return f"[{when:{LOG_TIMESTAMP}}] FILE: {file_name} | BATCH: {batch} | STATUS: {status}"


def file_info_line(scan: FileScan, batch_size: int, reading: str, job: str) -> str:
    """Our checkpoint identity line: which content, reading and batch size the batch lines refer to."""
    return (f"FILE_INFO: {scan.name} | SHA256: {scan.sha256} | BATCH_SIZE: {batch_size} "
            f"| KEYS: {scan.keys} | READING: {reading} | JOB: {job}")


def file_changed_line(scan: FileScan, job: str) -> str:
    """Marks the batch lines logged so far for this content as untrustworthy."""
    return f"FILE_CHANGED: {scan.name} | SHA256: {scan.sha256} | JOB: {job}"


def log_day(path: Path) -> dt.date | None:
    """The day in a text log's name, or None for other files."""
    match = LOG_NAME.match(path.name)
    if not match:
        return None
    day, month, year = (int(g) for g in match.groups())
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def sorted_log_files(log_dir: Path) -> list[Path]:
    """Every text log in log_dir, oldest day first."""
    dated = [(day, path) for path in log_dir.glob(f"{LOG_PREFIX}*.txt") if (day := log_day(path))]
    return [path for _, path in sorted(dated)]


def summarize_log(lines: Iterable[str]) -> LogSummary:
    """Fold one log's lines: batch lines count for the content named by the latest FILE_INFO."""
    summary = LogSummary()
    current: dict[str, tuple[str, str, str, int, int]] = {}  # file -> job, sha, reading, batch size, keys
    for line in lines:
        if info := FILE_INFO_LINE.match(line):
            name, sha, size, keys, reading, job = info.groups()
            current[name] = (job, sha, reading or "", int(size), int(keys))
        elif changed := FILE_CHANGED_LINE.match(line):
            name, sha, job = changed.groups()
            summary.changed.add((job, name, sha))
            for key in [k for k in summary.progress if k[:3] == (job, name, sha)]:
                del summary.progress[key]
        elif (batch := BATCH_LINE.match(line)) and batch.group(4) in DONE_STATUSES \
                and batch.group(2) in current:
            job, sha, reading, size, keys = current[batch.group(2)]
            key = (job, batch.group(2), sha, reading, size)
            summary.progress[key] = (keys, max(int(batch.group(3)), summary.progress.get(key, (0, 0))[1]))
    return summary


def merge_summaries(summaries: Iterable[LogSummary]) -> Progress:
    """Progress across logs, oldest first: a FILE_CHANGED line voids what came before it."""
    merged: Progress = {}
    for summary in summaries:
        for key in [k for k in merged if k[:3] in summary.changed]:
            del merged[key]
        for key, (keys, last) in summary.progress.items():
            merged[key] = (keys, max(last, merged.get(key, (0, 0))[1]))
    return merged


def best_checkpoint(*candidates: Checkpoint | None) -> Checkpoint | None:
    """The checkpoint that got furthest into the file."""
    present = [c for c in candidates if c is not None]
    return max(present, key=lambda c: (c.last_batch * c.batch_size, c.source == "db"), default=None)


def log_checkpoints(progress: Progress, jobs: Sequence[str], reading: str
                    ) -> dict[tuple[str, str], Checkpoint]:
    """The furthest checkpoint per (file, sha256) for this job (or its legacy TABLE name) and reading.

    Lines written before the reading was logged ("") count for any reading.
    """
    found: dict[tuple[str, str], Checkpoint] = {}
    for (job, name, sha, read_as, size), (keys, last) in progress.items():
        if job in jobs and read_as in (reading, ""):
            best = best_checkpoint(found.get((name, sha)), Checkpoint(size, keys, last, source="log"))
            if best is not None:
                found[(name, sha)] = best
    return found


def read_log_lines(path: Path) -> list[str]:
    """A log's complete lines; a torn last line (no newline) is ignored."""
    try:
        data = path.read_bytes()
    except OSError:
        return []
    lines = data.split(b"\n")
    return [line.decode("utf-8", "replace").rstrip("\r") for line in lines[:-1]]


def read_log_index(log_dir: Path) -> dict[str, Any]:
    """The cached summaries of earlier logs; anything unreadable or of the wrong shape is no cache."""
    try:
        index = json.loads((log_dir / LOG_INDEX_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(index, dict) or index.get("format") != LOG_INDEX_FORMAT \
            or not isinstance(index.get("logs"), dict):
        return {}
    return cast(dict[str, Any], index["logs"])


def write_log_index(log_dir: Path, logs: dict[str, Any]) -> None:
    """Replace the cache atomically; a failure only costs the next run some reading."""
    temp = log_dir / f"{LOG_INDEX_NAME}.{os.getpid()}.tmp"
    try:
        temp.write_text(json.dumps({"format": LOG_INDEX_FORMAT, "logs": logs}), encoding="utf-8")
        os.replace(temp, log_dir / LOG_INDEX_NAME)
    except OSError:
        with contextlib.suppress(OSError):
            temp.unlink()


def summary_to_json(stat: os.stat_result, summary: LogSummary) -> dict[str, Any]:
    """A log's summary with the size and mtime (taken before it was read) that prove it is current."""
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "progress": [[*k, *v] for k, v in summary.progress.items()],
            "changed": [list(k) for k in summary.changed]}


def has_types(item: Any, types: tuple[type, ...]) -> bool:
    """Whether item is a JSON list of exactly these types (a bool is not an int here)."""
    return isinstance(item, list) and len(item) == len(types) and all(
        type(value) is kind for value, kind in zip(item, types))


def summary_from_json(entry: Any, stat: os.stat_result) -> LogSummary | None:
    """Inverse of summary_to_json, if the entry is for the log as it is now and has the shape
    summary_to_json gives it; None means read the log again (a hand-edited or foreign index)."""
    if not isinstance(entry, dict) or not has_types([entry.get("size"), entry.get("mtime_ns")], (int, int)) \
            or (entry["size"], entry["mtime_ns"]) != (stat.st_size, stat.st_mtime_ns):
        return None
    progress, changed = entry.get("progress"), entry.get("changed")
    if not isinstance(progress, list) or not all(has_types(p, (str,) * 4 + (int,) * 3) for p in progress) \
            or not isinstance(changed, list) or not all(has_types(c, (str,) * 3) for c in changed):
        return None
    return LogSummary({(j, n, s, r, b): (k, last) for j, n, s, r, b, k, last in progress},
                      {(j, n, s) for j, n, s in changed})


def read_log_progress(log_dir: Path, save: bool = True) -> Progress:
    """Progress from every DataProcessingAllDetails_*.txt, re-reading only logs that changed.

    Runs cross midnight and files span days, so every log counts; but a log that has
    not changed since it was last read is taken from the index instead of parsed again.
    """
    cached, fresh, summaries = read_log_index(log_dir), {}, []
    for path in sorted_log_files(log_dir):
        try:
            stat = path.stat()  # before reading: a line appended meanwhile makes the next run read again
        except OSError:
            continue  # a log removed under us says nothing
        entry = cached.get(path.name)
        summary = summary_from_json(entry, stat)
        if summary is None:
            summary = summarize_log(read_log_lines(path))
            entry = summary_to_json(stat, summary)
        summaries.append(summary)
        fresh[path.name] = entry
    if save and fresh != cached:
        write_log_index(log_dir, fresh)
    return merge_summaries(summaries)


def remove_old_logs(log_dir: Path, days: int, today: dt.date) -> list[str]:
    """Delete text logs whose day is more than `days` days before today; return their names."""
    removed = []
    for path in sorted_log_files(log_dir):
        day = log_day(path)
        if day is not None and (today - day).days > days:
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path.name)
    return removed


class TextLog:
    """The seed-format text log, flushed line by line and forced to disk at most once a second.

    The database's COMMIT is the authority on what is done; the text log is the fallback
    when the tracking tables are lost. A log behind by a second of batches (an OS crash)
    only makes a run look at those batches again and find their rows gone; a log ahead
    of the database is verified against the source (verify_log_checkpoint). So an fsync
    per batch would buy nothing but time.
    """

    def __init__(self, log_dir: Path, started: dt.datetime):
        self.path = log_dir / log_file_name(started)
        self.handle: Any = None
        self.synced = time.monotonic()

    def open(self) -> None:
        """Open for appending (only once this run holds the lock, so refusals write nothing)."""
        try:
            self.handle = open(self.path, "a", encoding="utf-8")
        except OSError as exc:
            raise ArchiveError(f"cannot open text log {self.path}: {exc.strerror}") from None

    def write(self, text: str, durable: bool = False) -> None:
        """Append one line; with durable, fsync it now, else within a second."""
        if self.handle is None:
            self.open()
        try:
            self.handle.write(text.replace("\n", " ") + "\n")
            self.handle.flush()
            if durable or time.monotonic() - self.synced >= LOG_SYNC_SECONDS:
                os.fsync(self.handle.fileno())
                self.synced = time.monotonic()
        except OSError as exc:
            raise ArchiveError(f"cannot write text log {self.path}: {exc.strerror}") from None

    def batch(self, file_name: str, number: int, status: str) -> None:
        """A batch status line."""
        self.write(batch_log_line(dt.datetime.now(), file_name, number, status))

    def close(self) -> None:
        """Force to disk and close, ignoring a full disk at this point (the error was reported)."""
        if self.handle is not None:
            with contextlib.suppress(OSError):
                self.handle.flush()
                os.fsync(self.handle.fileno())
            with contextlib.suppress(OSError):
                self.handle.close()
            self.handle = None


# --------------------------------------------------------------------------- outcomes

@dataclass(frozen=True)
class Count:
    """One count: its Counters field, its column in the three tracking tables, its label in the
    summary and --status, and its name in --dry-run's prediction."""

    field: str
    column: str
    label: str
    predicted: str


# Every row count, in the order of the summary: the batch statements, the run's totals, the
# read-back of a lost COMMIT, the summary, --status and --dry-run are all built from this.
COUNTS = (
    Count("archived", "rows_archived", "rows archived", "rows_to_archive"),
    Count("deleted", "rows_deleted", "rows deleted", "rows_to_delete"),
    Count("duplicates", "duplicates", "duplicates", "identical_twins"),
    Count("conflicts", "conflicts", "conflicts", "conflicts"),
    Count("not_found", "not_found", "not found", "not_found"),
    Count("skipped_by_guard", "skipped_by_guard", "skipped by guard", "skipped_by_guard"),
)


def count_columns(alias: str = "") -> str:
    """COUNTS' tracking columns, for a SELECT or an INSERT."""
    return ", ".join(alias + c.column for c in COUNTS)


def added_counts(alias: str = "") -> str:
    """A SET clause that adds COUNTS' values (parameters in COUNTS' order) to a tracking row."""
    return ", ".join(f"{alias}{c.column} = {alias}{c.column} + %s" for c in COUNTS)


@dataclass
class Counters:
    """Row counts of one batch, file or run."""

    batches: int = 0
    archived: int = 0
    deleted: int = 0
    duplicates: int = 0
    conflicts: int = 0
    skipped_by_guard: int = 0
    not_found: int = 0

    def add(self, other: Counters) -> None:
        """Accumulate another set of counts."""
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def values(self) -> tuple[int, ...]:
        """The counts in COUNTS' order (batches apart), as the tracking columns take them."""
        return tuple(getattr(self, c.field) for c in COUNTS)

    @classmethod
    def from_row(cls, row: dict[str, Any], batches: int) -> Counters:
        """Counts from a tracking row that has COUNTS' columns."""
        return cls(batches, **{c.field: int(row[c.column]) for c in COUNTS})


@dataclass(frozen=True)
class BatchOutcome:
    """What one committed batch did: its counts, the keys kept as conflicts, its log status, and the
    keys whose rows the guard held back (recorded, and revisited by later runs)."""

    counts: Counters
    conflicts: tuple[Key, ...]
    status: str
    held: tuple[Key, ...] = ()
    keys_done: int | None = None  # a part of a batch (max_batch_rows): the keys it settled; None: all
    tables: tuple[tuple[str, int, int, int], ...] = ()  # child tables: (name, archived, deleted, duplicates)
    details: tuple[tuple[Key, str], ...] = ()  # conflicts found in child rows: which row


def merge_outcomes(earlier: BatchOutcome | None, part: BatchOutcome) -> BatchOutcome:
    """A batch so far: its earlier parts (if any) and this one."""
    if earlier is None:
        return part
    counts = Counters()
    counts.add(earlier.counts)
    counts.add(part.counts)
    counts.batches = 1
    tables = {name: (archived, deleted, twins) for name, archived, deleted, twins in earlier.tables}
    for name, archived, deleted, twins in part.tables:
        before = tables.get(name, (0, 0, 0))
        tables[name] = (before[0] + archived, before[1] + deleted, before[2] + twins)
    status = "COMPLETED" if "COMPLETED" == earlier.status == part.status else "COMPLETED_WITH_DUPLICATES"
    return BatchOutcome(counts, earlier.conflicts + part.conflicts, status, earlier.held + part.held,
                        part.keys_done, tuple((name, *counts) for name, counts in tables.items()),
                        earlier.details + part.details)


@dataclass
class RunState:
    """What one run has done so far; owned by run(), never module-wide."""

    run_id: int = 0
    started: float = field(default_factory=time.monotonic)
    totals: Counters = field(default_factory=Counters)
    files_total: int = 0
    files_seen: int = 0
    files_done: int = 0
    files_skipped: int = 0
    rejected: list[str] = field(default_factory=list)
    conflict_files: list[str] = field(default_factory=list)
    open_conflicts: int = 0
    open_conflict_files: list[tuple[str, int, list[str]]] = field(default_factory=list)  # for the mail
    held_open: int = 0  # rows of the job the guard still holds back (revisited every run)
    child_rows: dict[str, int] = field(default_factory=dict)  # child tables' rows archived, by NAME
    child_deleted: dict[str, int] = field(default_factory=dict)  # ... deleted (the dry run's prediction)
    stop_reason: str | None = None
    planned_stop: bool = False
    paused_seconds: float = 0.0
    destination: str | None = None
    # for the metrics file: wall-clock times, the end, the current file's batches, the ETA
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    status: str = "RUNNING"
    exit_code: int | None = None
    last_success: float | None = None
    file_batches: tuple[int, int] = (0, 0)
    eta: float | None = None
    # for the whole run's ETA: bytes of key files read by this run, where the current file's
    # reading stands, and the bytes of the files after it
    bytes_done: int = 0
    file_offset: int = 0
    bytes_after: int = 0

    def add_child_rows(self, archived: Iterable[tuple[str, int]]) -> None:
        """Count child rows archived (by a batch, or by the recheck), per [child NAME]."""
        for name, rows in archived:
            self.child_rows[name] = self.child_rows.get(name, 0) + rows


@dataclass
class StopSignal:
    """Set by SIGTERM/SIGINT/SIGHUP or a control; checked between batches."""

    reason: str | None = None

    def handler(self, signum: int, _frame: Any) -> None:
        """Signal handler: remember why, and let the current batch finish or roll back."""
        self.reason = f"received {signal.Signals(signum).name}"


def plural(count: int, word: str, many: str | None = None) -> str:
    """'1 batch', '2 batches'."""
    return f"{count} {word if count == 1 else many or word + 's'}"


def outcome_of(state: RunState) -> tuple[str, int, str | None]:
    """The run's final status, exit code and error message for process_logs."""
    if state.stop_reason:
        return "INTERRUPTED", EXIT_INTERRUPTED, None
    problems = []
    if state.rejected:
        problems.append(f"rejected file(s): {', '.join(state.rejected)}")
    if state.open_conflicts:
        where = f" in: {', '.join(state.conflict_files)}" if state.conflict_files else ""
        conflicts = plural(state.open_conflicts, "duplicate-key conflict")
        problems.append(f"{conflicts} kept in both tables{where}")
    code = EXIT_REJECTED if state.rejected else EXIT_CONFLICTS if state.open_conflicts else EXIT_OK
    return "COMPLETED", code, "; ".join(problems) or None


def summary_line(state: RunState, status: str) -> str:
    """One line that says what the run did and why it stopped."""
    t = state.totals
    elapsed = time.monotonic() - state.started
    why = state.stop_reason or ("failed" if status == "FAILED" else "all files done")
    which = f"run {state.run_id} | " if state.run_id else ""
    which += f"into {state.destination} | " if state.destination else ""
    counts = " | ".join(f"{c.label} {getattr(t, c.field)}" for c in COUNTS)
    if state.child_rows:
        counts += " | child rows archived " + ", ".join(f"{name} {n}" for name, n in state.child_rows.items())
    return (f"SUMMARY: {status} | {which}files {state.files_total} ({state.files_done} archived, "
            f"{state.files_skipped} already done, {len(state.rejected)} rejected) | batches {t.batches} "
            f"| {counts} | failures {1 if status == 'FAILED' else 0} | paused {state.paused_seconds:.1f}s "
            f"| elapsed {elapsed:.1f}s | {t.archived / max(elapsed, 1e-6):,.0f} rows/s | stopped: {why}")


# --------------------------------------------------------------------------- pause decisions

@dataclass(frozen=True)
class PauseStep:
    """What to do after one look at the servers: go, pause, keep waiting, resume or give up."""

    action: str  # "go", "pause", "wait", "resume" or "give up"
    text: str = ""


@dataclass
class PauseState:
    """When to pause, resume and give up, from what the probes saw and the time; no I/O."""

    replica_timeout: float
    paused_at: float | None = None
    replica_since: float | None = None
    reason: str | None = None
    paused_seconds: float = 0.0

    def step(self, now: float, reason: str | None, replica_problem: bool) -> PauseStep:
        """Decide after a probe: `reason` is why to pause now, or None when all is clear."""
        if reason is None:
            if self.paused_at is None:
                return PauseStep("go")
            took = self.close(now)
            return PauseStep("resume", f"RESUME: pause over after {took:.1f}s")
        if self.paused_at is None:
            self.paused_at = now
        self.replica_since = (self.replica_since or now) if replica_problem else None
        if self.replica_since is not None and now - self.replica_since >= self.replica_timeout:
            waited = now - self.replica_since
            self.close(now)
            return PauseStep("give up", f"gave up after {waited:.0f}s: {reason}")
        if reason != self.reason:
            self.reason = reason
            return PauseStep("pause", f"PAUSE: {reason}")
        return PauseStep("wait")

    def interrupt(self, now: float, stop: str) -> PauseStep:
        """A stop arrived: end a pause that is going on; its text says why it paused, how long."""
        if self.paused_at is None:
            return PauseStep("go")
        why = self.reason
        took = self.close(now)
        return PauseStep("resume", f"PAUSE ENDED: {stop} (while paused {took:.0f}s: {why})")

    def close(self, now: float) -> float:
        """Book the pause that ends now; return how long it lasted."""
        took = now - (self.paused_at or now)
        self.paused_seconds += took
        self.paused_at = self.replica_since = self.reason = None
        return took


def over_limit(status: dict[str, str], limits: Sequence[tuple[str, float]], key: str) -> str | None:
    """The first status value above its limit, said with its [controls] key; None when all are
    within. A name the server does not report, or a value that is not a number, is a
    configuration error: better a failed run than one that never pauses."""
    for name, limit in limits:
        raw = status.get(name.lower())
        try:
            value = float(raw) if raw is not None else None
        except ValueError:
            value = None
        if value is None:
            raise ArchiveError(f"config: [controls] {key}: the server has no numeric status variable {name} "
                               f"(SHOW GLOBAL STATUS LIKE '{name}' shows {raw!r})")
        if value > limit:
            return f"{name} is {value:g} ({key} {name}={limit:g})"
    return None


# A Group Replication member lists its group's channels in SHOW REPLICA STATUS, with no receiver
# thread and so a NULL Seconds_Behind_Source: they are read from performance_schema instead.
GROUP_CHANNELS = frozenset(("group_replication_applier", "group_replication_recovery"))


def member_text(member: dict[str, Any] | None) -> str:
    """A group member's role and state (SECONDARY, ONLINE)."""
    return f"{(member or {}).get('role') or 'member'}, {(member or {}).get('state') or 'state unknown'}"


def group_member_lag(member: dict[str, Any] | None, workers: Sequence[dict[str, Any]],
                     where: str) -> float | None:
    """A group member's lag: how long ago (its UTC clock) the oldest transaction its applier works on
    was committed at its origin; 0 with none and nothing queued for certification or its applier;
    with some queued between two, the age of the newest applied (the queued are younger). None (a
    pause) while it is not ONLINE or without timestamps (0: performance_schema not timing). See
    replication_group_member_stats, replication_applier_status_by_worker in refman/8.0/en/."""
    if member is None:  # performance_schema off: no member rows at all
        raise ArchiveError(f"[controls] replicas: {where} is a Group Replication member whose "
                           "performance_schema shows no member (performance_schema = OFF?), so its lag "
                           "cannot be measured: turn performance_schema on, or set replica_lag_source = "
                           "heartbeat:DB.TABLE with pt-heartbeat writing on the primary")
    if member.get("state") != "ONLINE":
        return None
    times: list[dt.datetime | None] = [w.get("applying_since") for w in workers if w.get("applying")]
    if not times and member.get("queued") == 0:
        return 0.0
    if not times and member.get("queued"):
        times = [max((w["applied_since"] for w in workers if w.get("applied_since")), default=None)]
    known = [t for t in times if t is not None]
    if not known or len(known) < len(times):
        return None
    return max(float((workers[0]["now"] - min(known)).total_seconds()), 0.0)


def replica_lag_from(status: Sequence[dict[str, Any]], member: dict[str, Any] | None,
                     workers: Sequence[dict[str, Any]], where: str) -> tuple[float | None, str]:
    """A replica's lag in seconds (None: unknown, a pause) and what it was read from, given its SHOW
    REPLICA STATUS rows and, when they list a Group Replication channel, its own row of
    performance_schema's group members (GROUP_MEMBER_SQL; None: not there) and its applier's workers
    (GROUP_APPLIER_SQL). The lag is the largest of its channels'."""
    channels = [row for row in status if row.get("Channel_Name") not in GROUP_CHANNELS]
    lags: list[float | None] = [row.get("Seconds_Behind_Master", row.get("Seconds_Behind_Source"))
                                for row in channels]
    column = "Seconds_Behind_Source" if any("Seconds_Behind_Source" in row for row in channels) else \
        "Seconds_Behind_Master"  # MariaDB's name, and MySQL's before 8.0.22
    watched = [f"{column} of {plural(len(channels), 'channel')}"] if channels else []
    if len(channels) < len(status) and (member or {}).get("state") == "OFFLINE":
        # the plugin is installed but not started: nothing replicates that way (lag unknown without more)
        watched.append(f"Group Replication {member_text(member)}: not started")
    elif len(channels) < len(status):
        lags.append(group_member_lag(member, workers, where))
        watched.append(f"Group Replication {member_text(member)}: the age of the oldest transaction its "
                       "applier has not applied")
    known = [lag for lag in lags if lag is not None]
    lag = float(max(known)) if lags and len(known) == len(lags) else None
    return lag, "; ".join(watched) or "no replication channel"


# --------------------------------------------------------------------------- terminal output

def fit_progress(name: str, rest: str, width: int) -> str:
    """One progress line of at most `width` characters: the file name gives way first, then whole
    fields (two spaces apart) of `rest` before its last one (the ETA): a number is never cut."""
    fields = rest.split("  ")
    while len(fields) > 1 and len("  ".join(fields)) > width:
        fields.pop(-2 if len(fields) > 2 else -1)
    rest = "  ".join(fields)
    room = width - len(rest) - 2
    if len(name) > room:
        name = (name[:max(room - 1, 0)] + "…") if room > 1 else ""
    return f"{name}  {rest}".strip()[:width]


FIELD_BREAKS = (" | ", ", ", " ")  # where a long line may be cut, the best place first


def wrap_fields(text: str, width: int, indent: str = "  ", breaks: Sequence[str] = FIELD_BREAKS) -> list[str]:
    """A line as lines of at most `width` characters, cut after a field separator (" | " if it
    can, else ", ", else a space); nothing is lost, continuation lines are indented."""
    if len(text) <= width:
        return [text]
    if not breaks:  # one word wider than the terminal: cut it where the terminal would
        room = max(width - len(indent), 1)
        return [text[:width]] + [indent + text[i:i + room] for i in range(width, len(text), room)]
    lead = text[:len(text) - len(text.lstrip(" "))]  # a continuation line keeps its indent
    lines, line = [], lead
    for part in text[len(lead):].split(breaks[0]):
        candidate = f"{line}{breaks[0]}{part}" if line.strip() else line + part
        if len(candidate.rstrip()) <= width or not line.strip():
            line = candidate
            continue
        lines.append(line + breaks[0].rstrip())
        line = indent + part
    lines.append(line)
    return [piece for whole in lines for piece in (
        [whole] if len(whole) <= width else wrap_fields(whole, width, indent, breaks[1:]))]


def terminal_width(stream: Any) -> int | None:
    """The width of the terminal `stream` shows on; None when it is none (cron, a pipe, a file:
    there lines stay whole)."""
    try:
        if not stream.isatty():
            return None
    except (AttributeError, ValueError, OSError):
        return None
    return max(shutil.get_terminal_size((80, 24)).columns, 20)


def format_seconds(seconds: float) -> str:
    """1h02m03s style."""
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class Reporter:
    """What the operator sees: quiet for cron, a live progress line on a terminal."""

    def __init__(self, verbosity: int, stream: Any = None):
        # Started with stdout closed (`>&-`): print nowhere rather than fail.
        self.stream = stream or sys.stdout or open(os.devnull, "w", encoding="utf-8")
        self.verbosity = verbosity
        self.live = verbosity == 1 and self.stream.isatty()
        self.pending = False
        self.closed = False

    def emit(self, text: str) -> None:
        """Write to the terminal; a reader that went away (| head) is an error for a run."""
        if self.closed:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except BrokenPipeError:
            self.closed = True
            raise ArchiveError("standard output was closed by its reader (broken pipe); stopped after "
                               "the last committed batch") from None

    def say(self, text: str, level: int = 1) -> None:
        """Print a line when the verbosity allows it; on a terminal, cut to fit its width."""
        if self.verbosity >= level:
            self.clear_progress()
            width = terminal_width(self.stream)
            self.emit("\n".join(wrap_fields(text, width) if width else [text]) + "\n")

    def batch(self, text: str) -> None:
        """A per-batch line: only with -v (a terminal shows the progress line instead)."""
        self.say(text, level=2)

    def progress(self, name: str, rest: str) -> None:
        """Redraw the single progress line on a terminal, cut to fit its width."""
        if self.live:
            width = (terminal_width(self.stream) or 80) - 1
            self.emit("\r" + fit_progress(name, rest, width) + "\x1b[K")
            self.pending = True

    def clear_progress(self) -> None:
        """Erase the progress line before printing a normal line."""
        if self.pending:
            self.pending = False
            self.emit("\r\x1b[K")


# --------------------------------------------------------------------------- metrics

METRICS_PREFIX = "archive_py_"
METRICS_MIN_INTERVAL = 1.0  # seconds between two writes of the metrics file during a run, at least
RUN_STATUSES = ("RUNNING", "COMPLETED", "FAILED", "INTERRUPTED")


@dataclass(frozen=True)
class Metric:
    """One Prometheus metric of a job: its name without the prefix, its type and its help."""

    name: str
    kind: str  # "gauge" or "counter"
    help: str


# Each of COUNTS as a metric (its Counters field -> metric name, what it counts).
COUNT_METRICS = {"archived": ("rows_archived_total", "rows archived"),
                 "deleted": ("rows_deleted_total", "rows deleted"),
                 "duplicates": ("duplicates_total", "identical twins found"),
                 "conflicts": ("conflicts_total", "new conflicts found"),
                 "not_found": ("not_found_total", "listed keys not found"),
                 "skipped_by_guard": ("held_by_guard_total", "rows held back by the guard")}
# What the metrics file and --status --json's "metrics" say about a job. Counters count within one
# run: a new run starts them again from 0, which Prometheus reads as a counter reset.
METRICS = (
    Metric("last_run_status", "gauge", "The last (or current) run's status: 1 for the status it has."),
    Metric("last_run_exit_code", "gauge", "The last finished run's exit code (absent while it runs)."),
    Metric("last_run_start_timestamp_seconds", "gauge", "When the last (or current) run started."),
    Metric("last_run_end_timestamp_seconds", "gauge", "When the last run ended (absent while it runs)."),
    Metric("last_success_timestamp_seconds", "gauge", "When the latest run that exited 0 ended."),
    Metric("heartbeat_timestamp_seconds", "gauge", "The run's latest sign of life."),
    *(Metric(name, "counter", f"{label.capitalize()} by the last (or current) run.")
      for name, label in COUNT_METRICS.values()),
    Metric("open_conflicts", "gauge", "Conflicts of the job still open (kept in both tables)."),
    Metric("held_rows", "gauge", "Rows of the job the guard still holds back (revisited by each run)."),
    Metric("files", "gauge", "CSV files the last (or current) run found."),
    Metric("files_pending", "gauge", "CSV files the last (or current) run has not dealt with yet."),
    Metric("batches_done_total", "counter", "Batches the last (or current) run committed."),
    Metric("file_batches_done", "gauge", "Batches of the current (or last) file done."),
    Metric("file_batches", "gauge", "Batches of the current (or last) file."),
    Metric("paused_seconds_total", "counter", "Seconds the last (or current) run spent paused."),
    Metric("rows_per_second", "gauge", "Rows archived per second by the last (or current) run."),
    Metric("eta_seconds", "gauge", "Estimated seconds left in the current run (all pending files)."),
)


def escape_label(value: str) -> str:
    """A label value in the text exposition format."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def metric_samples(labels: dict[str, str], values: dict[str, Any]) -> dict[str, list[str]]:
    """The sample lines of one job, by full metric name; a value of None is left out."""
    job = ",".join(f'{key}="{escape_label(text)}"' for key, text in labels.items())
    samples: dict[str, list[str]] = {}
    for metric in METRICS:
        value, name = values.get(metric.name), METRICS_PREFIX + metric.name
        if metric.name == "last_run_status":
            samples[name] = [f'{name}{{{job},status="{status}"}} {int(value == status)}'
                             for status in RUN_STATUSES] if value else []
        else:
            samples[name] = [] if value is None else [f"{name}{{{job}}} {float(value)!r}"]
    return samples


def merge_metrics(old_text: str, labels: dict[str, str], values: dict[str, Any]) -> str:
    """The metrics file with this job's samples replaced and every other job's kept (several jobs
    may share one file: each is told apart by its labels)."""
    ours = metric_samples(labels, values)
    mark = f'job="{escape_label(labels["job"])}"'
    heads: dict[str, list[str]] = {}
    others: dict[str, list[str]] = {}
    for line in old_text.splitlines():
        parts = line.split()
        if line.startswith("# ") and len(parts) > 2 and parts[1] in ("HELP", "TYPE"):
            heads.setdefault(parts[2], []).append(line)
        elif line.strip() and not line.startswith("#") and mark not in line:
            others.setdefault(re.split(r"[{\s]", line, maxsplit=1)[0], []).append(line)
    lines = []
    for metric in METRICS:
        name = METRICS_PREFIX + metric.name
        lines += [f"# HELP {name} {metric.help}", f"# TYPE {name} {metric.kind}"]
        lines += others.pop(name, []) + ours[name]
    for name, samples in others.items():  # a metric this version does not write: keep it as it was
        lines += heads.get(name, []) + samples
    return "\n".join(lines) + "\n"


def write_metrics(path: Path, labels: dict[str, str], values: dict[str, Any]) -> None:
    """Rewrite the metrics file atomically (a temporary name, then rename), under a lock file so
    that two jobs sharing it do not drop each other's samples."""
    with open(path.with_name(path.name + ".lock"), "a", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            old = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            old = ""
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # not *.prom: never read half-written
        temporary.write_text(merge_metrics(old, labels, values), encoding="utf-8")
        os.replace(temporary, path)


def run_metric_values(state: RunState) -> dict[str, Any]:
    """The metrics of a run from what it has done so far (at its end: from the tracking tables)."""
    now = time.time()
    elapsed = max((state.ended_at or now) - state.started_at, 1e-6)
    files_dealt = state.files_done + state.files_skipped + len(state.rejected)
    values: dict[str, Any] = {
        "last_run_status": state.status, "last_run_exit_code": state.exit_code,
        "last_run_start_timestamp_seconds": state.started_at,
        "last_run_end_timestamp_seconds": state.ended_at,
        "last_success_timestamp_seconds": state.last_success, "heartbeat_timestamp_seconds": now,
        "open_conflicts": state.open_conflicts, "held_rows": state.held_open, "files": state.files_total,
        "files_pending": state.files_total - files_dealt, "batches_done_total": state.totals.batches,
        "file_batches_done": state.file_batches[0], "file_batches": state.file_batches[1],
        "paused_seconds_total": state.paused_seconds,
        "rows_per_second": state.totals.archived / elapsed,
        "eta_seconds": state.eta if state.status == "RUNNING" else None}
    values.update({name: getattr(state.totals, f) for f, (name, _) in COUNT_METRICS.items()})
    return values


class MetricsFile:
    """A run's metrics file: written at the start, at most every interval, and at the end."""

    def __init__(self, config: Config):
        self.path = config.metrics_file
        self.labels = {"job": config.job, "source": f"{config.database}.{config.source_table}",
                       "archive": f"{config.archive_database}.{config.archive_table}"}
        self.interval = max(config.check_interval, METRICS_MIN_INTERVAL)
        self.written = -math.inf
        self.failing = False

    def publish(self, state: RunState, force: bool = False) -> str | None:
        """Write the file if it is due; return a note the first time it cannot be written."""
        now = time.monotonic()
        if self.path is None or not state.run_id or (not force and now - self.written < self.interval):
            return None
        self.written = now
        try:
            write_metrics(self.path, self.labels, run_metric_values(state))
        except OSError as exc:  # monitoring must not stop the archiving: say so once
            note = None if self.failing else (f"NOTE: cannot write metrics_file {self.path}: "
                                              f"{exc.strerror or exc}; the run goes on without it")
            self.failing = True
            return note
        self.failing = False
        return None


def timestamp_of(value: Any) -> float | None:
    """A UTC datetime from the tracking tables as Unix time."""
    return value.replace(tzinfo=dt.timezone.utc).timestamp() if isinstance(value, dt.datetime) else None


# --------------------------------------------------------------------------- key walk

EXPORT_CHUNK_ROWS = (100, 50_000, 5_000)  # index entries one chunk of an export walks: least, most, first
EXPORT_CHUNK_SECONDS = 0.5  # a chunk's target time; the next chunk's size follows the last one's speed


def next_chunk_rows(rows: int, seconds: float) -> int:
    """The next chunk's size: the last one's, scaled to the target time, at most doubled."""
    least, most, _ = EXPORT_CHUNK_ROWS
    wanted = int(rows * EXPORT_CHUNK_SECONDS / max(seconds, 1e-3))
    return max(least, min(most, 2 * rows, wanted))


@dataclass(frozen=True)
class ChunkPlan:
    """The next chunk of an export's walk: at most `rows` index entries. A span (one integer key
    only) is the key range (last key, last key + rows]: a unique integer key has at most `rows`
    entries in it, and the server reads the range once, without first counting out its entries."""

    rows: int
    span: bool = False
    share: float = 1.0  # of the last counted chunk's entries, the share that met the condition


def next_chunk(plan: ChunkPlan, seconds: float, found: int, entries: int | None, width: int | None
               ) -> ChunkPlan:
    """The chunk after one that took `seconds` and found `found` keys; a counted chunk also says
    how many index entries it read (`entries`) over how wide a key range (`width`, integer keys).
    Keys at least every other integer make spans pay; a span finding far fewer keys than the last
    share predicts may have reached thinner keys, so the next chunk counts again."""
    rows = next_chunk_rows(plan.rows, seconds)
    if plan.span:
        return ChunkPlan(rows, span=found * 4 >= plan.rows * plan.share, share=plan.share)
    if not entries:
        return ChunkPlan(rows, share=plan.share)
    dense = width is not None and 0 < width <= 2 * entries
    return ChunkPlan(rows, span=dense, share=found / entries)


@dataclass(frozen=True)
class KeyLines:
    """A packed chunk's keys: `count` lines of the file joined by LF, as the server sent them (kept
    whole: splitting them and joining them again took a tenth of an export's time)."""

    text: str
    count: int

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[str]:
        return iter(self.text.split("\n") if self.count else [])

    def cut(self, n: int) -> tuple[KeyLines, KeyLines]:
        """The first n lines, and the rest."""
        if n >= self.count:
            return self, KeyLines("", 0)
        parts = self.text.split("\n", n)
        return KeyLines("\n".join(parts[:n]), n), KeyLines(parts[n], self.count - n)


@dataclass(frozen=True)
class KeyWalk:
    """The statements that walk the key's unique index in chunks after the last key seen (keyset
    pagination: never OFFSET), plain non-locking reads; a TIMESTAMP part is compared by its seconds
    since the epoch, which no session time zone changes."""

    table: str
    index: str
    columns: tuple[str, ...]  # in key_column's order, as the rows hold them
    order: tuple[int, ...]  # the index's column order, as positions in columns
    key_type: KeyType
    condition: str
    packed: str | None = None  # integer keys: the delimiter the server joins a chunk's keys with

    def part(self, i: int, alias: str = "", column: str = "") -> str:
        """Key part i (or `column`, an expression of it) as it is compared and read."""
        column = column or (f"{alias}." if alias else "") + quote_ident(self.columns[i])
        kind = (self.key_type.parts or (self.key_type,))[i].kind
        return f"UNIX_TIMESTAMP({column})" if kind == "timestamp" else column

    def select_list(self, alias: str = "") -> str:
        """The key's parts, in key_column's order."""
        return ", ".join(self.part(i, alias) for i in range(len(self.columns)))

    def order_by(self, descending: bool = False) -> str:
        """ORDER BY the index's columns."""
        return ", ".join(quote_ident(self.columns[i]) + (" DESC" if descending else "") for i in self.order)

    def beyond(self, key: Sequence[Any], op: str) -> tuple[str, list[Any]]:
        """Keys after `key` (op ">") or up to it ("<="), in index order, spelled so the range optimizer
        reads them as ranges of the index: a > x OR (a = x AND b > y) ..."""
        terms, params = [], []
        for depth in range(len(self.order)):
            equal = [f"{self.part(i)} = %s" for i in self.order[:depth]]
            last = self.order[depth]
            strict = ">" if op == ">" else "<"
            terms.append("(" + " AND ".join(equal + [f"{self.part(last)} {strict} %s"]) + ")")
            params += [key[i] for i in self.order[:depth + 1]]
        if op == "<=":
            terms.append("(" + " AND ".join(f"{self.part(i)} = %s" for i in self.order) + ")")
            params += [key[i] for i in self.order]
        first = self.order[0]
        hint = ""
        column = quote_ident(self.columns[first])
        edge = int(key[first]) + (-86400 if op == ">" else 86401) if self.part(first) != column else 0
        if 1 <= edge < 2 ** 31:  # a TIMESTAMP's exact seconds use no index: a range a day wider does
            hint = f"{column} {'>=' if op == '>' else '<='} FROM_UNIXTIME({edge}) AND "
        return f"{hint}({' OR '.join(terms)})", params

    def present(self) -> str:
        """Rows with a NULL key part have no key a file can name."""
        return " AND ".join(f"{quote_ident(c)} IS NOT NULL" for c in self.columns)

    def last_sql(self) -> str:
        """The index's last key now: the walk ends there (keys inserted above it are the next export's)."""
        return (f"SELECT {self.select_list()} FROM {quote_ident(self.table)} FORCE INDEX "
                f"({quote_ident(self.index)}) WHERE {self.present()} ORDER BY {self.order_by(True)} LIMIT 1")

    def bound_sql(self, after: Sequence[Any] | None, end: Sequence[Any], rows: int) -> tuple[str, list[Any]]:
        """The last key of the next `rows` index entries up to `end` (none: the walk is over)."""
        where, params = self.beyond(after, ">") if after is not None else ("1", [])
        upto, end_params = self.beyond(end, "<=")
        inner = (f"SELECT {', '.join(map(quote_ident, self.columns))} FROM {quote_ident(self.table)} "
                 f"FORCE INDEX ({quote_ident(self.index)}) WHERE {self.present()} AND {where} AND {upto} "
                 f"ORDER BY {self.order_by()} LIMIT {int(rows)}")
        params = params + end_params
        if len(self.columns) == 1:  # no sort: MAX orders as the index does (its collation, for text)
            last = self.part(0, column=f"MAX(w.{quote_ident(self.columns[0])})")
            return f"SELECT {last} FROM ({inner}) w HAVING COUNT(*) > 0", params
        outer = f"SELECT {self.select_list('w')} FROM ({inner}) w ORDER BY {self.order_by(True)} LIMIT 1"
        return outer, params

    def one_pass_sql(self, after: Sequence[Any] | None, end: Sequence[Any], rows: int
                     ) -> tuple[str, list[Any]]:
        """For one integer column (packed): the chunk's last index entry, then the count and the lines
        of the keys in it whose row meets the condition, from one read of its `rows` entries."""
        where, params = self.beyond(after, ">") if after is not None else ("1", [])
        upto, end_params = self.beyond(end, "<=")
        column = quote_ident(self.columns[0])
        inner = (f"SELECT {column}, ({self.condition}) IS TRUE AS archive_py_meets FROM "
                 f"{quote_ident(self.table)} s FORCE INDEX ({quote_ident(self.index)}) "
                 f"WHERE {self.present()} AND {where} AND {upto} "
                 f"ORDER BY {self.order_by()} LIMIT {int(rows)}")
        sql = (f"SELECT MAX(w.{column}), SUM(w.archive_py_meets), GROUP_CONCAT(IF(w.archive_py_meets, "
               f"w.{column}, NULL) SEPARATOR '\\n'), COUNT(*) FROM ({inner}) w HAVING COUNT(*) > 0")
        return sql, params + end_params

    def span_end(self, after: Sequence[Any], end: Sequence[Any], rows: int) -> tuple[int]:
        """For one integer column: the last key of the span of `rows` keys after `after`, up to `end`."""
        return (min(int(after[0]) + rows, int(end[0])),)

    def keys_sql(self, after: Sequence[Any] | None, upto: Sequence[Any]) -> tuple[str, list[Any]]:
        """The keys of the rows that meet the condition, after `after` and up to `upto`."""
        low, low_params = self.beyond(after, ">") if after is not None else ("1", [])
        high, high_params = self.beyond(upto, "<=")
        # Integer keys come back as the lines of the file, one row per chunk: the connector spends
        # a microsecond on every row it converts, four times what the server spends on it.
        line = (self.select_list() if len(self.columns) == 1
                else f"CONCAT_WS({sql_literal(self.packed)}, {self.select_list()})")
        what = f"COUNT(*), GROUP_CONCAT({line} SEPARATOR '\\n')" if self.packed else self.select_list()
        sql = (f"SELECT {what} FROM {quote_ident(self.table)} s FORCE INDEX "
               f"({quote_ident(self.index)}) WHERE {self.present()} AND {low} AND {high} "
               f"AND ({self.condition}) ORDER BY {self.order_by()}")
        return sql, low_params + high_params


@dataclass(frozen=True)
class WalkedChunk:
    """What one chunk of the walk read."""

    last: tuple[Any, ...] | None  # its last index entry (a span: its range's end); None: the walk is over
    keys: list[Any] | KeyLines  # the keys in it that meet the condition: rows of key parts, or lines
    entries: int | None = None  # the index entries it read (a span does not count them)


def chunk_width(walk: KeyWalk, after: Sequence[Any] | None, chunk: WalkedChunk) -> int | None:
    """How wide a key range a chunk of one integer key covered (None: not known)."""
    if after is None or chunk.last is None or not walk.packed or len(walk.columns) != 1:
        return None
    return int(chunk.last[0]) - int(after[0])


# --------------------------------------------------------------------------- key export files

EXPORT_STAMP = "%Y%m%dT%H%M%SZ"
EXPORT_MAX_FILES = 9999  # four digits keep the names sorting in export order
EXPORT_MANIFEST_FORMAT = 1


def export_file_name(prefix: str, stamp: str, number: int) -> str:
    """An exported key file's name: PREFIX-YYYYmmddTHHMMSSZ-0001.csv."""
    return f"{prefix}-{stamp}-{number:04d}.csv"


def export_file_pattern(prefix: str) -> re.Pattern[str]:
    """What the names of an export with this prefix look like."""
    return re.compile(re.escape(prefix) + r"-[0-9]{8}T[0-9]{6}Z-[0-9]{4}\.csv")


def temporary_name(name: str) -> str:
    """Where a key file is written until the whole export is: a hidden name csv_pattern must not match."""
    return f".{name}.tmp"


def datetime_text(value: dt.datetime, fsp: int) -> str:
    """A DATETIME(fsp) as parse_temporal_key reads it (four-digit years, fsp fractional digits)."""
    text = (f"{value.year:04d}-{value.month:02d}-{value.day:02d} "
            f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}")
    return text + (f".{value.microsecond:06d}"[:fsp + 1] if fsp else "")


def timestamp_text(epoch: Decimal, key_type: KeyType) -> str:
    """A TIMESTAMP (seconds since the epoch) as a wall-clock time in key_time_zone; a time the zone's
    clocks show twice names no single instant (instant_of refuses it)."""
    whole = int(epoch)
    instant = EPOCH + dt.timedelta(seconds=whole, microseconds=int((epoch - whole) * 1_000_000))
    local = instant.astimezone(time_zone(key_type.zone)).replace(tzinfo=None)
    instant_of(local, key_type.zone)
    return datetime_text(local, key_type.fsp)


def export_part(value: Any, key_type: KeyType) -> Any:
    """One part of a key as the reader takes it back byte-exactly (ValueError for what no key file
    can hold): integers and text as they are, binary in hex, times as YYYY-MM-DD[ HH:MM:SS[.f]]."""
    if value is None:  # a zero date (the connector reads it as None): no key file names it
        raise ValueError("a zero date is no key a key file can hold")
    kind = key_type.kind
    if kind == "int":
        return value
    if kind == "bytes":
        return "0x" + bytes(value).hex()
    if kind == "str":
        if not value:
            raise ValueError("an empty text key is no key a key file can hold")
        return value
    if kind == "date":
        return f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
    if kind == "datetime":
        return datetime_text(value, key_type.fsp)
    return timestamp_text(Decimal(value), key_type)


def export_layout(fmt: CsvFormat) -> tuple[list[str] | None, list[int | None]]:
    """(the header, or None without one; for each CSV field the key part it holds, or None)."""
    if fmt.header:
        return list(fmt.columns), list(range(len(fmt.columns)))
    numbers = [int(column) for column in fmt.columns]
    return None, [numbers.index(n) if n in numbers else None for n in range(1, max(numbers) + 1)]


def export_records(rows: Sequence[Sequence[Any]], key_type: KeyType, layout: Sequence[int | None]
                   ) -> list[list[Any]]:
    """CSV records of a chunk's keys (a row holds the key's parts in key_column order)."""
    parts = key_type.parts or (key_type,)
    if all(p.kind == "int" for p in parts) and list(layout) == list(range(len(parts))):
        return cast(list[list[Any]], rows)  # the csv module writes integers as they are
    records = []
    for row in rows:
        try:
            values = [export_part(value, part) for value, part in zip(row, parts)]
        except ValueError as exc:
            raise ArchiveError(f"--export-keys: the row with key {', '.join(map(str, row))}: {exc}; "
                               "leave such rows out in [export] where") from None
        records.append([values[i] if i is not None else "" for i in layout])
    return records


Records = Union[Sequence[Any], KeyLines]  # what a KeyFileWriter writes


def cut_records(records: Records, n: int) -> tuple[Records, Records]:
    """The first n records, and the rest."""
    if isinstance(records, KeyLines):
        return records.cut(n)
    return records[:n], records[n:]


@dataclass(frozen=True)
class ExportedFile:
    """One key file an export wrote."""

    name: str
    keys: int
    size: int
    sha256: str


def sync_and_close(handle: BinaryIO) -> None:
    """Force a written file to disk, then close it."""
    try:
        os.fsync(handle.fileno())
    finally:
        handle.close()


class KeyFileWriter:
    """Writes an export's records, keys_per_file to a file, each under a temporary name in csv_dir,
    fsynced when full (in a thread of its own, while the walk reads on); publish() waits for every
    fsync, then renames them all once the whole export is written, so no run ever sees a partial
    file or a partial export."""

    def __init__(self, folder: Path, names: Callable[[int], str], per_file: int, header: list[str] | None,
                 delimiter: str):
        self.folder, self.names, self.per_file = folder, names, per_file
        self.header, self.delimiter = header, delimiter
        self.files: list[ExportedFile] = []
        self.handle: BinaryIO | None = None
        self.digest = hashlib.sha256()
        self.keys = self.size = 0
        self.syncer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="archive-fsync")
        self.syncs: list[concurrent.futures.Future[None]] = []

    def path(self, number: int, final: bool = False) -> Path:
        """Where file `number` is written (or, final, published)."""
        name = self.names(number)
        return self.folder / (name if final else temporary_name(name))

    def encode(self, records: Records) -> bytes:
        """Records as RFC 4180 text (quoted only where needed, LF line ends), in UTF-8; KeyLines are
        lines already (integer keys the server wrote)."""
        if isinstance(records, KeyLines):
            return (records.text + "\n").encode("utf-8") if records.count else b""
        buffer = io.StringIO()
        csv.writer(buffer, delimiter=self.delimiter, lineterminator="\n").writerows(records)
        return buffer.getvalue().encode("utf-8")

    def emit(self, data: bytes) -> None:
        """Append bytes to the open file, hashing them."""
        assert self.handle is not None
        self.handle.write(data)
        self.digest.update(data)
        self.size += len(data)

    def open_next(self) -> None:
        """Start the next file, with its header."""
        number = len(self.files) + 1
        if number > EXPORT_MAX_FILES:
            raise ArchiveError(f"--export-keys: more than {EXPORT_MAX_FILES} files; raise [export] "
                               "keys_per_file")
        self.handle = open(self.path(number), "wb")
        self.digest, self.keys, self.size = hashlib.sha256(), 0, 0
        if self.header is not None:
            self.emit(self.encode([self.header]))

    def close_current(self) -> None:
        """Note the open file and hand it to the fsync thread (an fsync waits for the disk, not the CPU)."""
        assert self.handle is not None
        self.handle.flush()
        self.syncs.append(self.syncer.submit(sync_and_close, self.handle))
        self.handle = None
        self.files.append(ExportedFile(self.names(len(self.files) + 1), self.keys, self.size,
                                       self.digest.hexdigest()))

    def wait_for_disk(self) -> None:
        """Wait until every full file is on disk (an fsync's error is raised here)."""
        self.syncer.shutdown(wait=True)
        for sync in self.syncs:
            sync.result()

    def write(self, records: Records) -> None:
        """Append records (or KeyLines), starting a new file every keys_per_file."""
        while len(records):
            if self.handle is None:
                self.open_next()
            part, records = cut_records(records, self.per_file - self.keys)
            self.emit(self.encode(part))
            self.keys += len(part)
            if self.keys == self.per_file:
                self.close_current()

    def publish(self) -> list[ExportedFile]:
        """Rename every file to its name (in order), then make the renames durable."""
        if self.handle is not None:
            self.close_current()
        self.wait_for_disk()
        for number in range(1, len(self.files) + 1):
            os.rename(self.path(number), self.path(number, final=True))
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return self.files

    def abandon(self) -> None:
        """Remove what was written: an interrupted export leaves nothing behind."""
        if self.handle is not None:
            self.handle.close()
            self.handle = None
        with contextlib.suppress(OSError):  # nothing of it is kept
            self.wait_for_disk()
        for number in range(1, len(self.files) + 2):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path(number))


# --------------------------------------------------------------------------- server errors

def is_lost_quorum(exc: BaseException) -> bool:
    """A COMMIT on a node cut off from the primary component: another node can take the batch."""
    return getattr(exc, "errno", None) == ER_WSREP_MAX_WS_ROWS and "primary component" in str(exc).lower()


def is_connection_error(exc: BaseException) -> bool:
    """The connection or its node is gone (down, killed, out of the cluster), not a SQL error."""
    errno = getattr(exc, "errno", None)
    return errno in CONNECTION_ERRNOS or is_lost_quorum(exc) or (
        isinstance(exc, mysql.connector.errors.OperationalError) and errno in (None, -1))


def is_transient(exc: BaseException) -> bool:
    """Worth retrying the whole batch: deadlock or certification conflict, lock wait, lost node."""
    return getattr(exc, "errno", None) in RETRY_ERRNOS or is_connection_error(exc)


def describe_mysql_error(exc: BaseException) -> str:
    """MySQL error text with its number, on one line."""
    errno = getattr(exc, "errno", None)
    text = getattr(exc, "msg", None) or str(exc)
    if errno and errno > 0:
        return " ".join(f"MySQL Error {errno}: {text}".split())
    return " ".join(str(exc).split())


def explain_write_set_error(exc: BaseException, batch_size: int) -> str | None:
    """What to change when a batch is bigger than Galera lets one transaction be."""
    errno, text = getattr(exc, "errno", None), str(exc).lower()
    if errno == ER_WSREP_MAX_WS_ROWS and "wsrep_max_ws_rows" in text:
        return (f"{describe_mysql_error(exc)}: a batch of {batch_size} keys writes more rows than "
                "wsrep_max_ws_rows allows on this node; lower [archive] batch_size or raise the limit")
    if errno == ER_WSREP_MAX_WS_SIZE and "size" in text:
        return (f"{describe_mysql_error(exc)}: a batch of {batch_size} keys is more bytes than "
                "wsrep_max_ws_size allows on this node; lower [archive] batch_size or raise the limit")
    return None


def backoff_seconds(tries: int) -> float:
    """How long to wait after attempt `tries` failed: doubling, capped, jittered so racers spread out."""
    return float(min(0.25 * 2 ** tries, RETRY_BACKOFF_CAP) * random.uniform(0.5, 1.0))


def translate_error(exc: Exception) -> Exception:
    """The C extension's own exception for a server or connection error, as a mysql.connector.Error."""
    errno = getattr(exc, "errno", None)
    if not errno:
        return exc
    return mysql.connector.errors.get_mysql_exception(errno, msg=getattr(exc, "msg", str(exc)),
                                                      sqlstate=getattr(exc, "sqlstate", None))


# --------------------------------------------------------------------------- session settings

def run_silence(config: Config) -> int:
    """Seconds a run's session waits for a server that stopped answering: a statement waits at
    most lock_wait_timeout for a lock, and past the lease the run lock is lost anyway."""
    return int(config.lock_lease + config.lock_wait_timeout)


def probe_silence(config: Config, settings: DbSettings) -> int:
    """Seconds a read-only command's session (or a replica probe) waits for an answer: its
    statements take no row locks, so one waits at most lock_wait_timeout (for a metadata lock)."""
    return config.lock_wait_timeout + settings.connect_timeout


def silence_limits(seconds: int | None) -> dict[str, Any]:
    """Connector options that give up on a server silent for `seconds` (reading or writing)."""
    return {"read_timeout": seconds, "write_timeout": seconds} if seconds else {}


ENCRYPTION_SQL = "SHOW SESSION STATUS WHERE Variable_name IN ('Ssl_version', 'Ssl_cipher')"


def encryption_of(rows: Sequence[tuple[Any, ...]], tls: TlsSettings) -> tuple[str, str]:
    """A session's TLS version and cipher from ENCRYPTION_SQL's rows; a plain session is refused
    when a CA is configured: given ssl_ca, the connector still falls back to plain text, silently,
    when the server offers no TLS."""
    status = {str(name): str(value or "") for name, value in rows}
    version, cipher = status.get("Ssl_version", ""), status.get("Ssl_cipher", "")
    if tls.ca and not cipher:
        raise SessionRefused(f"the session is not encrypted although {tls.where} ssl_ca is set: the server "
                             "offers no TLS (see its have_ssl, ssl_cert and ssl_key variables)")
    return version, cipher


# --------------------------------------------------------------------------- database connection

class Database:
    """One connection to a server (or to one node of a cluster), set up for exact copies.

    The transaction rule: autocommit is off, so any statement, a read too, opens a transaction
    (a read, a snapshot that holds back purge and, for a locking read, row locks), and every one
    ends in commit() or rollback(). Writes commit with what they belong to; a read that belongs
    to nothing goes through read()/read_dicts() or a `with reading():` stretch, which roll back.
    """

    def __init__(self, settings: DbSettings, lock_wait_timeout: int = 10, read_only: bool = False,
                 wait_timeout: int | None = None, utc: bool = False, silence: int | None = None):
        self.settings = settings
        self.silence = silence or wait_timeout  # read and write timeouts: a silent server is given up
        self.idle_limit = 28800.0  # the session's wait_timeout, after which the server drops it
        self.last_used = time.monotonic()
        self.utc = utc
        self.lock_wait_timeout = lock_wait_timeout
        self.read_only = read_only
        self.wait_timeout = wait_timeout
        self.conn: Any = None
        self.cursor: Any = None  # one cursor per session: a new one costs a ping
        self.endpoint = 0  # which address of the host list this session is on
        self.wsrep = False
        self.node = ""
        self.tls_version = self.tls_cipher = ""  # the session's, from check_encryption
        self.dialect = Dialect()  # the server's, read by session_setup
        self.on_reconnect: Callable[[], None] | None = None
        self.on_note: Callable[[str], None] = lambda _text: None
        self.sessions = 0
        self.connect()

    @property
    def where(self) -> str:
        """The server this session is on, for messages."""
        return self.settings.describe(self.endpoint)

    def connect(self, move_on: bool = False) -> None:
        """Connect to the first address that answers and is ready, from the current one (or the next).

        Raises ArchiveError naming every address tried when none will do.
        """
        self.disconnect()
        count, before = self.settings.endpoints, self.where
        failures: dict[int, str] = {}
        # A synced node first; failing that, one that is at least in the primary component
        # (a desynced donor): the pause logic then waits for it to catch up.
        for synced_only in (True, False):
            for step in range(count):
                index = (self.endpoint + step + (1 if move_on and count > 1 else 0)) % count
                try:
                    self.open_session(index, synced_only)
                except (mysql.connector.Error, NodeNotReady) as exc:
                    self.disconnect()
                    failures[index] = f"{self.settings.describe(index)}: {self.explain_connect_error(exc)}"
                    continue
                self.sessions += 1
                if self.sessions > 1:
                    moved = f" (was {before})" if self.where != before else ""
                    self.on_note(f"RECONNECTED: to {self.where}{moved}")
                return
        raise Unreachable("cannot connect to " + "; ".join(failures.values()))

    def move_to_synced(self) -> bool:
        """Move to another node of the host list that is Synced; False (staying) when none is.

        The new session is set up, and the run lock moved to it, before this one closes: the
        run's user lock on the node it leaves is held until then.
        """
        count, before, kept = self.settings.endpoints, self.where, (self.conn, self.cursor, self.endpoint)
        for step in range(1, count):
            self.conn = self.cursor = None
            try:
                self.open_session((kept[2] + step) % count)
            except (mysql.connector.Error, NodeNotReady):
                self.disconnect()
                self.conn, self.cursor, self.endpoint = kept
                continue
            with contextlib.suppress(Exception):  # the node left behind may be slow to answer
                kept[0].close()
            self.sessions += 1
            self.on_note(f"RECONNECTED: to {self.where} (was {before}, not Synced)")
            return True
        return False

    def explain_connect_error(self, exc: BaseException) -> str:
        """The error, plus where the password came from when the server refused it."""
        text, tls = describe_mysql_error(exc), self.settings.tls
        if getattr(exc, "errno", None) == errorcode.ER_ACCESS_DENIED_ERROR:
            text += f" (password from {self.settings.password_source})"
        if getattr(exc, "errno", None) == CR_SSL_CONNECTION_ERROR and tls.ca and "verify failed" in text:
            name = " or does not name this host (ssl_verify_identity)" if tls.verify_identity else ""
            text += (f" (TLS: the server's certificate is not signed by {tls.where} ssl_ca {tls.ca}, has "
                     f"expired{name})")
        return text

    def open_session(self, index: int, synced_only: bool = True) -> None:
        """Connect to address `index` and set up the session; refuse a cluster node that isn't ready."""
        # A server that stops answering (a partition, a frozen host) is given up (run_silence,
        # probe_silence); connect_timeout covers the handshake.
        self.conn = mysql.connector.connect(
            **self.settings.connect_kwargs(index), **silence_limits(self.silence), autocommit=True,
            charset="utf8mb4",
            use_unicode=True, get_warnings=False, client_flags=[ClientFlag.FOUND_ROWS])
        self.cursor = self.conn.cursor()
        self.endpoint = index
        self.session_setup(synced_only)
        if self.on_reconnect is not None:
            self.on_reconnect()

    def session_setup(self, synced_only: bool = True) -> None:
        """A session that copies values exactly and reads a cluster causally.

        The sql_mode is fixed, not added to: STRICT_ALL_TABLES turns truncation into
        errors; NO_AUTO_VALUE_ON_ZERO keeps an id 0 as 0 instead of renumbering it;
        leaving out NO_ZERO_DATE and PAD_CHAR_TO_FULL_LENGTH lets zero dates and CHAR
        values copy as stored. Repeatable read gives gap locks on the batch's keys.
        """
        self.execute(f"SET SESSION sql_mode = '{SESSION_SQL_MODE}'")
        self.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        self.execute(f"SET SESSION innodb_lock_wait_timeout = {int(self.lock_wait_timeout)}")
        # Metadata locks too (a backup's FLUSH TABLES WITH READ LOCK): the default is a year,
        # during which the batch's other server holds its rows locked.
        self.execute(f"SET SESSION lock_wait_timeout = {int(self.lock_wait_timeout)}")
        # A batch's rows are verified as one GROUP_CONCAT, and its tables' triggers and foreign keys
        # compared as GROUP_CONCATs: cut short (MySQL's default is 1024 bytes) they would hide changes.
        self.execute("SET SESSION group_concat_max_len = @@max_allowed_packet")
        if self.utc:
            self.execute("SET SESSION time_zone = '+00:00'")
        if self.wait_timeout:
            # A process frozen inside a batch holds its row locks until the server drops it.
            self.execute(f"SET SESSION wait_timeout = LEAST(@@GLOBAL.wait_timeout, {int(self.wait_timeout)})")
        hostname, port, datadir, idle = self.query(
            "SELECT @@hostname, @@port, @@datadir, @@SESSION.wait_timeout")[0]
        self.check_encryption()
        self.idle_limit = float(idle)
        self.node = f"{hostname}:{port} {hashlib.sha1(str(datadir).encode()).hexdigest()[:8]}"
        self.dialect = dialect_of({str(name).lower(): str(value) for name, value in self.query(DIALECT_SQL)})
        self.wsrep = self.dialect.galera
        if self.wsrep:
            self.check_node_ready(synced_only)
            self.execute("SET SESSION wsrep_sync_wait = 1")  # reads see every commit the cluster made
        self.execute("SET SESSION autocommit = 0")

    def check_encryption(self) -> None:
        """Read the session's TLS version and cipher; refuse a plain session when a CA is configured."""
        self.tls_version, self.tls_cipher = encryption_of(self.query(ENCRYPTION_SQL), self.settings.tls)

    @property
    def encryption(self) -> str:
        """What this session's encryption is, for --check."""
        if self.settings.unix_socket and not self.tls_cipher:
            return "a unix socket: local, not encrypted"
        return self.settings.tls.describe(self.tls_version, self.tls_cipher)

    def check_node_ready(self, synced_only: bool = True) -> None:
        """A Galera node must be in the primary component (and, by preference, synced)."""
        status = self.status_values("wsrep_ready", "wsrep_cluster_status", "wsrep_local_state_comment")
        state = status.get("wsrep_local_state_comment")
        if status.get("wsrep_ready") != "ON" or status.get("wsrep_cluster_status") != "Primary" \
                or (synced_only and state != "Synced"):
            raise NodeNotReady(f"Galera node not ready: wsrep_ready {status.get('wsrep_ready')}, cluster "
                               f"{status.get('wsrep_cluster_status')}, state {state}")

    def status_values(self, *names: str) -> dict[str, str]:
        """Some SHOW GLOBAL STATUS values by name (lower case)."""
        marks = ", ".join(["%s"] * len(names))
        rows = self.query(f"SHOW GLOBAL STATUS WHERE Variable_name IN ({marks})", names)
        return {str(name).lower(): str(value) for name, value in rows}

    def disconnect(self) -> None:
        """Forget a connection that is gone or unwanted."""
        conn, self.conn, self.cursor = self.conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):  # closing a dead connection can fail in many ways
                conn.close()

    def ensure_connected(self) -> None:
        """Reconnect (to the next address) if the last error dropped the connection.

        A session the server dropped while it idled (its wait_timeout) is replaced first, on
        the same address: that is no error, so it costs no retry.
        """
        if self.conn is not None and self.dropped_while_idle():
            self.connect()
        if self.conn is None:
            self.connect(move_on=True)

    def dropped_while_idle(self) -> bool:
        """Whether a session idle past half its wait_timeout, outside a transaction, is gone (a ping)."""
        if time.monotonic() - self.last_used < self.idle_limit / 2 or self.conn.in_transaction:
            return False
        try:
            self.conn.ping()
        except Exception:  # the C extension raises its own error type for a dead socket
            return True
        self.last_used = time.monotonic()
        return False

    def live_cursor(self) -> Any:
        """The session's cursor. A session dropped after an error (the callers that leave the
        reconnect to the next batch) is a lost connection to whoever uses it next, as a server gone
        away would be: retried, not a crash."""
        if self.cursor is None:
            raise mysql.connector.errors.OperationalError(
                errno=CR_SERVER_GONE_ERROR, msg=f"the session to {self.where} was dropped after an error")
        return self.cursor

    def _run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement on the session's cursor; return its rows, if any."""
        self.last_used = time.monotonic()
        self.live_cursor().execute(bind_params(sql, params) if params else sql)
        return self.cursor.fetchall() if self.cursor.with_rows else []

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; return the affected (or, for UPDATE, matched) row count."""
        self._run(sql, params)
        return int(self.cursor.rowcount)

    def execute_script(self, statements: Sequence[tuple[str, Sequence[Any]]],
                       rows: bool = False) -> list[Any]:
        """Run statements in one round trip (the server stops at the first error).

        Returns each statement's row count, or for a query its rows (with rows) or the first
        value it returned.
        """
        self.last_used = time.monotonic()
        self.live_cursor().execute("; ".join(bind_params(sql, ps) if ps else sql for sql, ps in statements))
        results = [self.script_result(rows)]
        try:
            while self.cursor.nextset():
                results.append(self.script_result(rows))
        except mysql.connector.Error:
            raise
        except Exception as exc:  # the C extension's nextset() raises server errors untranslated
            raise translate_error(exc) from exc
        return results

    def script_result(self, rows: bool) -> Any:
        """The current result of a script: a query's rows or first value, else the row count."""
        if self.cursor.with_rows:
            found = self.cursor.fetchall()
            if rows:
                return found
            return int(found[0][0]) if found and found[0][0] is not None else 0
        return int(self.cursor.rowcount)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one query; return all rows."""
        return self._run(sql, params)

    def query_dicts(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run one query; return rows as dicts."""
        rows = self._run(sql, params)
        names = [column[0] for column in self.cursor.description]
        return [dict(zip(names, row)) for row in rows]

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """A stretch of reads that belongs to no write: it ends in a rollback, whatever happens."""
        try:
            yield
        finally:
            self.rollback()

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One query that belongs to no write: its rows, and the transaction it opened ended."""
        with self.reading():
            return self.query(sql, params)

    def read_dicts(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """read(), with rows as dicts."""
        with self.reading():
            return self.query_dicts(sql, params)

    def commit(self) -> None:
        """Commit the open transaction."""
        self.live_cursor()  # a dropped session has nothing to commit: a lost connection
        try:
            self.conn.commit()
        except mysql.connector.Error:
            raise
        except Exception as exc:  # the C extension's commit() raises its own error type
            raise translate_error(exc) from exc

    def rollback(self) -> None:
        """Roll back, forgetting a connection that is already gone."""
        try:
            if self.conn is not None:
                self.conn.rollback()
        except Exception:  # the C extension raises its own error type for a dead socket
            self.disconnect()

    def write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement in its own transaction."""
        count = self.execute(sql, params)
        self.commit()
        return count

    def variable(self, name: str) -> Any:
        """A global server variable, or None where this server has no such variable."""
        try:
            rows = self.query(f"SELECT @@GLOBAL.{name}")
        except mysql.connector.Error as exc:
            if is_connection_error(exc):
                raise
            return None
        return rows[0][0] if rows else None

    def close(self) -> None:
        """Close the session."""
        self.disconnect()


def retry_conflicts(db: Database, timeout: float, attempt: Callable[[], T]) -> T:
    """Run a transaction, retrying deadlocks, certification conflicts and lock waits for `timeout`.

    For the start of a run, before there is a batch to retry: runs started at once (on one
    server or on several Galera nodes, whose DDL aborts the others' transactions) meet here.
    """
    deadline, tries = time.monotonic() + timeout, 0
    # On Galera a statement that another node's DDL aborts may also fail with 1317 "interrupted".
    retried = RETRY_ERRNOS | ({ER_QUERY_INTERRUPTED} if db.wsrep else set())
    while True:
        tries += 1
        try:
            return attempt()
        except mysql.connector.Error as exc:
            db.rollback()
            if exc.errno not in retried or time.monotonic() >= deadline:
                raise
        time.sleep(backoff_seconds(tries))
        db.ensure_connected()  # the rollback forgets a session that died with the conflict


# --------------------------------------------------------------------------- table checks

def fetch_columns(db: Database, table: str) -> list[dict[str, Any]]:
    """A table's columns from information_schema, in table order (INVISIBLE ones included), each
    type spelled one way (normalized_column), whichever server printed it."""
    return [normalized_column(row) for row in db.query_dicts(
        "SELECT COLUMN_NAME AS name, DATA_TYPE AS data_type, COLUMN_TYPE AS column_type, "
        "CHARACTER_SET_NAME AS charset, COLLATION_NAME AS collation, CHARACTER_MAXIMUM_LENGTH AS "
        "max_length, IS_NULLABLE AS nullable, COLUMN_DEFAULT AS col_default, EXTRA AS extra, "
        "GENERATION_EXPRESSION AS expression FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION", (table,))]


def fetch_tables(db: Database, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Engine, whether it is transactional, and table type (view, system-versioned) by name."""
    marks = ", ".join(["%s"] * len(names))
    rows = db.query_dicts(
        "SELECT t.TABLE_NAME AS name, t.ENGINE AS engine, t.TABLE_TYPE AS type, "
        "e.TRANSACTIONS AS transactions FROM information_schema.TABLES t LEFT JOIN "
        "information_schema.ENGINES e ON e.ENGINE = t.ENGINE "
        f"WHERE t.TABLE_SCHEMA = DATABASE() AND t.TABLE_NAME IN ({marks})", names)
    return {row["name"]: row for row in rows}


def unique_key_on(db: Database, table: str, columns: Sequence[str]) -> str | None:
    """The name of the primary key or unique key that is exactly `columns` (in any order), if
    `table` has one; a key on a prefix of a column does not count (it is not unique for it), nor
    one the optimizer may not use (FORCE INDEX could not name it)."""
    keys: dict[str, list[str]] = {}
    for name, column, prefix in db.query(
            "SELECT INDEX_NAME, COLUMN_NAME, SUB_PART FROM information_schema.STATISTICS WHERE "
            "TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s AND NON_UNIQUE = 0 AND "
            f"{db.dialect.index_usable_sql()} ORDER BY INDEX_NAME <> 'PRIMARY', INDEX_NAME, SEQ_IN_INDEX",
            (table,)):
        keys.setdefault(str(name), []).append("" if prefix is not None else str(column).lower())
    wanted = sorted(c.lower() for c in columns)  # compared in Python: SQL would sort by collation
    return next((name for name, names in keys.items() if sorted(names) == wanted), None)


def own_key(db: Database, table: str) -> tuple[str, tuple[str, ...]] | None:
    """A child table's own key: its primary key, else its first unique key of NOT NULL columns
    without prefixes; (index name, columns in index order)."""
    keys: dict[str, list[tuple[str, bool]]] = {}
    for name, column, whole in db.query(
            "SELECT s.INDEX_NAME, s.COLUMN_NAME, s.SUB_PART IS NULL AND c.IS_NULLABLE = 'NO' FROM "
            "information_schema.STATISTICS s JOIN information_schema.COLUMNS c ON c.TABLE_SCHEMA = "
            "s.TABLE_SCHEMA AND c.TABLE_NAME = s.TABLE_NAME AND c.COLUMN_NAME = s.COLUMN_NAME WHERE "
            "s.TABLE_SCHEMA = DATABASE() AND s.TABLE_NAME = %s AND s.NON_UNIQUE = 0 ORDER BY "
            "s.INDEX_NAME <> 'PRIMARY', s.INDEX_NAME, s.SEQ_IN_INDEX", (table,)):
        keys.setdefault(str(name), []).append((str(column), bool(whole)))
    return next(((name, tuple(c for c, _ in cols)) for name, cols in keys.items()
                 if all(whole for _, whole in cols)), None)


def has_leading_index(db: Database, table: str, columns: Sequence[str]) -> bool:
    """Whether an index of `table` starts with exactly `columns` (in any order)."""
    leading: dict[str, list[str]] = {}
    for name, column in db.query(
            "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = "
            "DATABASE() AND TABLE_NAME = %s AND SEQ_IN_INDEX <= %s ORDER BY INDEX_NAME, SEQ_IN_INDEX",
            (table, len(columns))):
        leading.setdefault(str(name), []).append(str(column).lower())
    return sorted(c.lower() for c in columns) in (sorted(names) for names in leading.values())


def unique_keys_text(db: Database, table: str) -> str:
    """The table's primary and unique keys, for a message: `PRIMARY (a, b)`, or that it has none."""
    rows = db.query(
        "SELECT INDEX_NAME, GROUP_CONCAT(CONCAT(COLUMN_NAME, IF(SUB_PART IS NULL, '', CONCAT('(', SUB_PART, "
        "')'))) ORDER BY SEQ_IN_INDEX SEPARATOR ', ') FROM "
        "information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s AND "
        "NON_UNIQUE = 0 GROUP BY INDEX_NAME ORDER BY INDEX_NAME <> 'PRIMARY', INDEX_NAME", (table,))
    if not rows:
        return "it has no primary or unique key, so no key names exactly one row"
    return "its keys are " + "; ".join(f"{name} ({names})" for name, names in rows)


def child_foreign_keys(db: Database, database: str, table: str, innodb: str) -> list[tuple[Any, ...]]:
    """(schema, child table, constraint, ON DELETE rule) of every foreign key to `table`.

    With `innodb` (Dialect.foreign_keys_table), from InnoDB's own list, which also has the tables
    this user cannot see.
    """
    if not innodb:
        return db.query(
            "SELECT CONSTRAINT_SCHEMA, TABLE_NAME, CONSTRAINT_NAME, DELETE_RULE "
            "FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE UNIQUE_CONSTRAINT_SCHEMA = DATABASE() "
            "AND REFERENCED_TABLE_NAME = %s", (table,))
    found = []
    for fk_id, child, flags in db.query(
            f"SELECT ID, FOR_NAME, TYPE FROM information_schema.{innodb} WHERE REF_NAME = %s",
            (f"{database}/{table}".replace("$", "@0024"),)):
        schema, name = decode_innodb_name(child).split("/", 1)
        rule = next((rule for flag, rule in INNODB_DELETE_RULES if int(flags) & flag), "RESTRICT")
        found.append((schema, name, decode_innodb_name(fk_id).split("/", 1)[1], rule))
    return found


def choose_referencing(db: Database, config: Config, found: Preflight) -> str:
    """InnoDB's list of foreign keys when this user can read it (PROCESS privilege), else "";
    without it a foreign key of a table the user cannot see would cascade into that table unnoticed."""
    innodb = db.dialect.foreign_keys_table
    try:
        db.query(referencing_keys_sql(config.database, config.source_table, innodb))
        return innodb
    except mysql.connector.Error as exc:
        if is_connection_error(exc):
            raise
        if exc.errno == ER_SPECIFIC_ACCESS_DENIED:
            found.problems.append(
                f"cannot see every foreign key that references `{config.source_table}`: information_schema "
                "shows only tables this user has privileges on, and a hidden child table with ON DELETE "
                "CASCADE would lose rows with every batch; GRANT PROCESS ON *.* to this user so that the "
                f"preflight and every batch read InnoDB's own list (information_schema.{innodb})")
        else:
            found.notes.append(f"this server has no information_schema.{innodb}: foreign keys are "
                               "read from REFERENTIAL_CONSTRAINTS, which omits tables this user cannot see")
        return ""


def fetch_triggers(db: Database, table: str, event: str) -> list[tuple[str, bool]]:
    """Triggers that fire on `event` (INSERT, DELETE) for `table`, as ('name (BEFORE DELETE)', whether
    this user may read its body: without the TRIGGER privilege it is hidden)."""
    rows = db.query(
        "SELECT TRIGGER_NAME, ACTION_TIMING, ACTION_STATEMENT FROM information_schema.TRIGGERS WHERE "
        "EVENT_OBJECT_SCHEMA = DATABASE() AND EVENT_OBJECT_TABLE = %s AND EVENT_MANIPULATION = %s "
        "ORDER BY ACTION_TIMING, ACTION_ORDER", (table, event))
    return [(f"{name} ({timing} {event})", bool(body)) for name, timing, body in rows]


def check_tables(db: Database, archive_db: Database, config: Config, found: Preflight) -> bool:
    """Both tables exist, are real tables and are transactional; True when the rest can be checked."""
    tracking = [t for t in TRACKING_TABLES if t != config.source_table]
    source_side = fetch_tables(db, [config.source_table, *tracking])
    archive_side = fetch_tables(archive_db, [config.archive_table])
    for name, tables, database in ((config.source_table, source_side, config.database),
                                   (config.archive_table, archive_side, config.archive_database)):
        if name not in tables:
            found.problems.append(f"table `{database}`.`{name}` does not exist"
                                  + (" on the destination" if tables is archive_side and config.dest else ""))
        elif tables[name]["type"] == "VIEW":
            found.problems.append(f"`{name}` is a view; archive to and from base tables")
    for name, table in list(source_side.items()) + list(archive_side.items()):
        if table["type"] != "VIEW" and table["transactions"] != "YES":
            found.problems.append(
                f"table `{name}` uses the {table['engine']} engine, which cannot roll back: a failed or "
                "killed batch could leave rows in neither table; convert it to InnoDB")
    if source_side.get(config.source_table, {}).get("type") == "SYSTEM VERSIONED":
        found.refuse_unless(
            config.allow_system_versioning,
            f"source `{config.source_table}` is system-versioned: deleted rows stay in it as history; "
            "set [archive] allow_system_versioning = yes to accept that",
            f"source `{config.source_table}` is system-versioned: deleted rows stay as history "
            "(accepted by config)")
    return not found.problems


def foreign_keys_between(db: Database, child: str, parent: str) -> dict[str, list[tuple[str, str]]]:
    """The foreign keys from table `child` to table `parent`: name -> (column, referenced column)
    pairs, lower case, in any order."""
    found: dict[str, list[tuple[str, str]]] = {}
    for name, column, referenced in db.query(
            "SELECT CONSTRAINT_NAME, COLUMN_NAME, REFERENCED_COLUMN_NAME FROM "
            "information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s "
            "AND REFERENCED_TABLE_SCHEMA = DATABASE() AND REFERENCED_TABLE_NAME = %s "
            "ORDER BY CONSTRAINT_NAME, ORDINAL_POSITION", (child, parent)):
        found.setdefault(str(name), []).append((str(column).lower(), str(referenced).lower()))
    return {name: sorted(pairs) for name, pairs in found.items()}


def declared_pairs(spec: ChildSpec, key: Sequence[str]) -> list[tuple[str, str]]:
    """What a [child NAME] section says its foreign key is: parent_columns to the parent's key."""
    return sorted((mine.lower(), theirs.lower()) for mine, theirs in zip(spec.parent_columns, key))


def covered_foreign_keys(db: Database, database: str, table: str, key: Sequence[str],
                         specs: Sequence[ChildSpec]) -> set[tuple[str, str, str]]:
    """The foreign keys to `table` that the [child NAME] tables `specs` move with it: from the
    child's parent_columns to the parent's key, exactly, in any column order (any other foreign
    key of the child would reach rows its batch does not move)."""
    return {(database.lower(), spec.source_table.lower(), name.lower()) for spec in specs
            for name, pairs in foreign_keys_between(db, spec.source_table, table).items()
            if pairs == declared_pairs(spec, key)}


def check_declared_foreign_key(db: Database, spec: ChildSpec, parent_table: str, parent_key: tuple[str, ...],
                               found: Preflight) -> None:
    """A child whose schema names how it references its parent (foreign keys) must be declared so:
    parent_columns on other columns would move rows of other parents (and leave its own)."""
    keys = foreign_keys_between(db, spec.source_table, parent_table)
    if not keys and not spec.without_foreign_key:
        found.problems.append(f"`{spec.source_table}` has no foreign key to `{parent_table}`, so nothing in "
                              f"the schema says that ({', '.join(spec.parent_columns)}) hold the parent's "
                              f"key: check it, then set {spec.section} without_foreign_key = yes")
    if keys and declared_pairs(spec, parent_key) not in keys.values():
        named = "; ".join(f"{name} ({', '.join(c for c, _ in pairs)})" for name, pairs in keys.items())
        found.problems.append(f"`{spec.source_table}` references `{parent_table}` by its foreign key "
                              f"{named}, not by parent_columns ({', '.join(spec.parent_columns)}): set "
                              "parent_columns to the foreign key's columns, in the order of the parent's key")


def check_side_effects(db: Database, archive_db: Database, config: Config, found: Preflight,
                       innodb: str, covered: Sequence[tuple[str, str, str]] = ()) -> None:
    """Foreign keys and triggers that make a DELETE or INSERT do more than move the row; the
    foreign keys of the child tables that move with it (`covered`) do not."""
    children = [c for c in child_foreign_keys(db, config.database, config.source_table, innodb)
                if tuple(str(part).lower() for part in c[:3]) not in covered]
    archive = (config.database, config.archive_table)
    own = [c for c in children if archive_db is db and (c[0], c[1]) == archive]
    for _, child, name, rule in own:  # not a child table: allow_cascading_deletes does not cover it
        found.problems.append(
            f"the archive table `{child}` has a foreign key ({name}, ON DELETE {rule}) that references the "
            "source: deleting a source row would delete its copy with it (or, RESTRICT, fail every "
            "batch); drop that foreign key from the archive")
    changing, restricts = describe_foreign_keys([c for c in children if c not in own])
    if changing:
        found.refuse_unless(
            config.allow_cascading_deletes,
            f"deleting rows of `{config.source_table}` changes child tables: " + "; ".join(changing) +
            "; list them as [child NAME] tables to move them with it, archive them first, or set "
            "[archive] allow_cascading_deletes = yes to accept it",
            "child tables changed by deletes, accepted by config: " + "; ".join(changing))
    found_triggers = fetch_triggers(db, config.source_table, "DELETE")
    found_triggers += fetch_triggers(archive_db, config.archive_table, "INSERT")
    triggers = [label for label, _ in found_triggers]
    if config.allow_triggers and not all(readable for _, readable in found_triggers):
        found.notes.append("this user cannot read the accepted triggers' bodies (TRIGGER privilege): one "
                           "dropped and made again under its name with another body would be noticed only "
                           "by its creation time")
    if triggers:
        found.refuse_unless(
            config.allow_triggers,
            f"triggers fire on the archive's inserts or the source's deletes: {', '.join(triggers)}; "
            "what they write is not checked, and in a non-transactional table survives a rollback; "
            "set [archive] allow_triggers = yes to accept them",
            f"triggers accepted by config: {', '.join(triggers)}")
    found.notes.extend(restricts)


def check_key_column(key: dict[str, Any], archive: list[dict[str, Any]], found: Preflight) -> None:
    """One key column has the same collation on both sides and is copied, not generated."""
    twin = next((c for c in archive if c["name"].lower() == key["name"].lower()), None)
    if twin is not None and twin["collation"] != key["collation"]:
        found.problems.append(f"key column `{key['name']}` has collation {key['collation']} in the source "
                              f"but {twin['collation']} in the archive: keys equal in one are not "
                              "in the other")
    if is_generated(key):
        found.problems.append(f"key column `{key['name']}` must be copied, but is generated")


def check_key(db: Database, archive_db: Database, config: Config, source: list[dict[str, Any]],
              archive: list[dict[str, Any]], found: Preflight
              ) -> tuple[KeyType | None, list[str], tuple[str, ...]]:
    """The key columns: present, together unique on both sides, same collations, types keys can be
    written in.

    Returns the key type, the names of the unique indexes on them (source, archive) and the
    columns' names as the source spells them.
    """
    by_name = {c["name"].lower(): c for c in source}
    missing = [name for name in config.key_column if name.lower() not in by_name]
    if missing:
        found.problems += [f"source table has no column `{name}`" for name in missing]
        return None, [], ()
    keys = [by_name[name.lower()] for name in config.key_column]
    names = tuple(str(key["name"]) for key in keys)
    indexes = []
    sides = (("source", db, config.source_table), ("archive", archive_db, config.archive_table))
    for side, session, table in sides:
        index = unique_key_on(session, table, names)
        if index is None:
            what = f"`{names[0]}` is not" if len(names) == 1 else \
                f"({', '.join(names)}) are not the columns of"
            found.problems.append(f"{what} the primary key or a unique key of the {side}: "
                                  f"{unique_keys_text(session, table)}")
        indexes.append(index or "PRIMARY")
    parts = []
    for key in keys:
        check_key_column(key, archive, found)
        try:
            parts.append(key_type_from_column(key, config.key_time_zone))
        except ArchiveError as exc:
            found.problems.append(str(exc))
    return (composite_key_type(parts) if len(parts) == len(keys) else None), indexes, names


# --------------------------------------------------------------------------- privileges

def send_probe(session: Database, sql: str, tries: int = 6) -> None:
    """Send one probe statement, again after a deadlock or certification conflict."""
    # On Galera a racing run's DDL on the tracking tables (TOI) aborts it with 1213: no answer.
    for attempt in range(tries):
        try:
            session.query(sql)
            return
        except mysql.connector.Error as exc:
            session.rollback()
            if is_connection_error(exc) or not is_transient(exc) or attempt == tries - 1:
                raise
            time.sleep(0.05 * 2 ** attempt)


def refused_statements(checks: Sequence[tuple[Database, str, str]], explain: bool = True,
                       accepted: frozenset[int] = frozenset()) -> list[str]:
    """'cannot <label>: <error>' for each (session, label, statement) the server would refuse.

    EXPLAIN needs the statement's own privileges, so this tests them without writing. A DDL
    probe (explain off) is built to fail after the privilege check, with an error in `accepted`.
    """
    problems = []
    for session, label, sql in checks:
        try:
            send_probe(session, "EXPLAIN " + sql if explain else sql)
        except mysql.connector.Error as exc:
            if is_connection_error(exc):
                raise
            if exc.errno not in accepted:
                problems.append(f"cannot {label}: {describe_mysql_error(exc)}")
        session.rollback()
    return problems


def self_insert_sql(table: KeyedTable) -> str:
    """An INSERT into the archive of nothing, as the destination's privileges judge the run's INSERTs."""
    return (f"INSERT INTO {quote_ident(table.archive)} ({table.column_list()}) SELECT {table.column_list()} "
            f"FROM {quote_ident(table.archive)} WHERE {quote_ident(table.key[0])} IN (NULL)")


def check_privileges(db: Database, archive_db: Database, plan: TablePlan, found: Preflight) -> None:
    """The data statements the run will send, tested for privileges without writing."""
    condition = f"{quote_ident(plan.key[0])} IN (NULL)"
    remote = RemotePlan(plan)
    checks = [(db, "DELETE from the source", plan.delete_sql(condition, 1))]
    if archive_db is db:
        checks.append((db, "INSERT ... SELECT into the archive", plan.insert_sql(condition)))
        locks = [(db, "lock the batch's rows (source and archive)",  # the guard is check_guard's
                  dataclasses.replace(plan, guard=None).classify_sql(f"s.{condition}", True, db.dialect))]
    else:
        checks += [(db, "SELECT ... FOR UPDATE on the source", remote.read_sql(f"s.{condition}")),
                   (archive_db, "SELECT and INSERT the archive on the destination", self_insert_sql(plan))]
        locks = [(archive_db, "lock the archived twins on the destination",
                  remote.lookup_sql(f"a.{condition}", True, archive_db.dialect))]
    for child in plan.children:
        checks.append((db, f"DELETE from `{child.source}`", plan.child_delete_sql(child, f"s.{condition}")))
        if archive_db is db:
            checks.append((db, f"INSERT ... SELECT into `{child.archive}`",
                           plan.child_insert_sql(child, f"s.{condition}")))
            locks.append((db, f"lock the rows of `{child.source}` and their archived twins",
                          plan.child_classify_sql(child, f"s.{condition}", True, db.dialect)))
            continue
        there = RemotePlan(plan, child)
        checks += [(db, f"SELECT ... FOR UPDATE on `{child.source}`", there.read_sql(f"s.{condition}")),
                   (archive_db, f"SELECT and INSERT `{child.archive}` on the destination",
                    self_insert_sql(child))]
        locks.append((archive_db, f"lock the archived twins in `{child.archive}` on the destination",
                      there.lookup_sql(f"a.{quote_ident(child.key[0])} IN (NULL)", True, archive_db.dialect)))
    # The locking reads run as they are, on no rows (IN (NULL) matches none, so nothing is locked):
    # a server that checks a locking read's privileges (MySQL 8.0.22+) answers as it would in a batch.
    found.problems += refused_statements(checks) + refused_statements(locks, explain=False)


def check_guard(db: Database, plan: TablePlan, found: Preflight) -> None:
    """The guard must be a condition the server accepts on the source table."""
    if plan.key_type.kind != "int" and "%s" in (plan.guard or ""):
        found.problems.append("[controls] guard must not contain '%s' unless the key is one integer column "
                              "(it would be taken for a key parameter)")
        return
    try:
        db.query(f"SELECT 1 FROM {quote_ident(plan.source)} s WHERE ({plan.guard}) LIMIT 0")
    except mysql.connector.Error as exc:
        if is_connection_error(exc):
            raise
        found.problems.append(f"[controls] guard is not valid SQL here: {describe_mysql_error(exc)}")


# --------------------------------------------------------------------------- preflight

def check_packet(db: Database, key_type: KeyType, batch_size: int, conditions: int, found: Preflight,
                 setting: str = "batch_size", whose: str = "") -> None:
    """A batch's statements must fit the server's max_allowed_packet (its key conditions grow with
    batch_size and the key's length), or every batch of long keys would fail. `setting` bounds the
    keys (max_batch_rows for a child's own keys, `whose`: its section)."""
    packet = int(db.variable("max_allowed_packet") or 0)
    needed = batch_packet_bytes(key_type, batch_size, conditions)
    if packet and needed > packet:
        per_key = conditions * key_literal_bytes(key_type)
        fits = max(1, (packet - STATEMENT_OVERHEAD) // per_key)
        found.problems.append(
            f"[archive] {setting} {batch_size}: a batch of {whose}{key_type.sql_type} keys can make "
            f"statements of {needed} bytes, over max_allowed_packet {packet} on {db.where}; use {setting} "
            f"{fits} or less, or raise max_allowed_packet")


def check_write_set(db: Database, batch_size: int, source: str, found: Preflight, key: str = "batch_size"
                    ) -> None:
    """On Galera, a batch is one write set: it must fit the node's row and byte limits (with child
    tables `key` is max_batch_rows, the rows a transaction may move over all its tables)."""
    if not db.wsrep:
        return
    max_rows = int(db.variable("wsrep_max_ws_rows") or 0)
    rows_needed = 2 * batch_size + TRACKING_ROWS_PER_BATCH
    if max_rows and rows_needed > max_rows:
        fits = max(0, (max_rows - TRACKING_ROWS_PER_BATCH) // 2)
        found.problems.append(
            f"[archive] {key} {batch_size} needs write sets of up to {rows_needed} rows, but "
            f"wsrep_max_ws_rows is {max_rows} on {db.where}; use {key} {fits} or less")
    max_bytes = int(db.variable("wsrep_max_ws_size") or 0)
    row_bytes = db.query("SELECT AVG_ROW_LENGTH FROM information_schema.TABLES WHERE TABLE_SCHEMA = "
                         "DATABASE() AND TABLE_NAME = %s", (source,))
    average = int((row_bytes[0][0] if row_bytes else 0) or 0)
    per_key = 2 * average * 2  # the copy and the delete, and twice the average: rows vary
    if max_bytes and per_key and batch_size * per_key > max_bytes:
        found.problems.append(
            f"[archive] {key} {batch_size} makes write sets of about {batch_size * per_key} bytes, "
            f"over wsrep_max_ws_size {max_bytes} on {db.where}; use {key} {max_bytes // per_key} "
            f"or less (estimated from the table's average row length, {average} bytes)")


def check_transfer(archive_db: Database, found: Preflight) -> None:
    """What rows need to reach another server: room in its max_allowed_packet."""
    packet = int(archive_db.variable("max_allowed_packet") or 0)
    found.notes.append(f"destination {archive_db.where}: max_allowed_packet {packet}; inserts are split to "
                       "fit it, and a single row larger than that fails its batch")


def server_identity(db: Database) -> ServerIdentity:
    """Read who this server is and what it replicates from."""
    server_id, hostname, port, datadir = db.query("SELECT @@server_id, @@hostname, @@port, @@datadir")[0]
    cluster = db.status_values("wsrep_cluster_state_uuid").get("wsrep_cluster_state_uuid") \
        if db.wsrep else None
    gtid = db.variable("gtid_slave_pos")
    gtid = db.variable("gtid_executed") if gtid is None else gtid
    try:
        rows = db.query_dicts(db.dialect.replica_status_sql)
    except mysql.connector.Error as exc:
        if is_connection_error(exc):
            raise
        rows = None
    sources = None if rows is None else tuple(
        int(r.get("Master_Server_Id") or r.get("Source_Server_Id") or 0) for r in rows)
    return ServerIdentity(int(server_id), db.variable("server_uuid"), (hostname, int(port), datadir),
                          cluster or None, str(gtid or ""), sources)


def check_destination_server(db: Database, dest: Database, config: Config, found: Preflight) -> None:
    """A destination must be another table that keeps its copies: not the source in disguise, not a
    table whose engine sends rows elsewhere, and one whose commits survive a crash."""
    same_name = (config.database, config.source_table) == (config.archive_database, config.archive_table)
    if int(dest.variable("lower_case_table_names") or 0):
        same_name = (config.database.lower(), config.source_table.lower()) == (
            config.archive_database.lower(), config.archive_table.lower())
    found.problems += disguise_problems(server_identity(db), server_identity(dest), same_name,
                                        config.allow_replica_destination)
    engine = fetch_tables(dest, [config.archive_table]).get(config.archive_table, {}).get("engine")
    if str(engine).upper() in FORWARDING_ENGINES:
        found.problems.append(f"the destination's `{config.archive_table}` uses the {engine} engine, which "
                              "keeps its rows on another server, so no copy can be proven kept; use InnoDB")
    flush, log_bin, sync_binlog = (str(dest.variable(name)) for name in (
        "innodb_flush_log_at_trx_commit", "log_bin", "sync_binlog"))
    unsafe = [f"innodb_flush_log_at_trx_commit = {flush}"] if flush not in DURABLE_FLUSH else []
    method = str(dest.variable("innodb_flush_method"))
    unsafe += [f"innodb_flush_method = {method}"] if method.lower() in ("nosync", "littlesync") else []
    unsafe += [f"sync_binlog = {sync_binlog} with the binary log on"] \
        if log_bin in ("1", "ON") and sync_binlog != "1" else []
    if unsafe:
        found.refuse_unless(
            config.allow_non_durable_destination,
            f"the destination {dest.where} does not make each commit durable ({', '.join(unsafe)}): a crash "
            "there can lose copies of rows the source has already deleted; set them to 1, or set [archive] "
            "allow_non_durable_destination = yes to accept that",
            f"the destination does not make each commit durable ({', '.join(unsafe)}), accepted by config")


def folded_names(config: Config, db: Database, dest: Database | None) -> Config:
    """The config with its table and database names as a server with lower_case_table_names = 1
    stores them: lower case, which is how information_schema and InnoDB's lists name them."""
    changes: dict[str, Any] = {}
    if int(db.variable("lower_case_table_names") or 0) == 1:
        changes.update(source_table=config.source_table.lower(),
                       db=dataclasses.replace(config.db, database=config.database.lower()),
                       children=tuple(dataclasses.replace(c, source_table=c.source_table.lower(),
                                                          archive_table=c.archive_table.lower()
                                                          if dest is None else c.archive_table)
                                      for c in config.children))  # on the source's server too
        if dest is None:
            changes["archive_table"] = config.archive_table.lower()
    folds_there = dest is not None and int(dest.variable("lower_case_table_names") or 0) == 1
    if folds_there and config.dest is not None:
        children = changes.get("children", config.children)
        changes.update(archive_table=config.archive_table.lower(),
                       dest=dataclasses.replace(config.dest, database=config.archive_database.lower()),
                       children=tuple(dataclasses.replace(c, archive_table=c.archive_table.lower())
                                      for c in children))
    return dataclasses.replace(config, **changes) if changes else config


def watched_sides(config: Config, dest: Database | None, innodb: str) -> tuple[Definitions, Definitions]:
    """What every batch checks on the source's server (the source and its child tables, and their
    archives when they are there too) and on the destination (the archive tables)."""
    sources = [config.source_table] + [c.source_table for c in config.children]
    referencing = family_referencing_sql(config.database, sources, innodb)
    source, archive = Watched(config.source_table, "DELETE"), Watched(config.archive_table, "INSERT")
    if dest is None:
        children = tuple(Watched(t, event) for c in config.children
                         for t, event in ((c.source_table, "DELETE"), (c.archive_table, "INSERT")))
        return Definitions((source, archive, *children), referencing), Definitions(())
    sourced = tuple(Watched(c.source_table, "DELETE") for c in config.children)
    archived = tuple(Watched(c.archive_table, "INSERT") for c in config.children)
    return Definitions((source, *sourced), referencing), Definitions((archive, *archived))


def read_definitions(db: Database, spec: Definitions) -> Definitions | None:
    """The tables' definitions as they are now (None while one of them is missing)."""
    try:
        creates = tuple(normalized_create(db.query(sql)[0][1]) for sql in spec.create_sql())
        effects = tuple(db.query(spec.effects_sql())[0])
    except mysql.connector.Error as exc:
        if is_connection_error(exc):
            raise
        return None
    finally:
        db.rollback()
    return dataclasses.replace(spec, creates=creates, effects=effects)


def child_tables_ok(db: Database, archive_db: Database, spec: ChildSpec, found: Preflight) -> bool:
    """A child and its archive table (on archive_db) exist, are base tables and can roll back."""
    tables = {spec.source_table: fetch_tables(db, [spec.source_table]).get(spec.source_table),
              spec.archive_table: fetch_tables(archive_db, [spec.archive_table]).get(spec.archive_table)}
    for name in (spec.source_table, spec.archive_table):
        table = tables.get(name)
        if table is None:
            there = " on the destination" if archive_db is not db and name == spec.archive_table else ""
            found.problems.append(f"{spec.section}: table `{name}` does not exist{there}")
        elif table["type"] not in ("BASE TABLE", "SYSTEM VERSIONED") or table["transactions"] != "YES":
            found.problems.append(f"{spec.section}: `{name}` must be a transactional base table (it is a "
                                  f"{table['type']} of engine {table['engine']}); convert it to InnoDB")
        elif table["type"] == "SYSTEM VERSIONED" and name == spec.source_table:
            found.problems.append(f"{spec.section}: `{name}` is system-versioned: deleted rows would stay")
    return not found.problems


def check_parent_columns(spec: ChildSpec, source: list[dict[str, Any]], parent: list[dict[str, Any]],
                         parent_key: tuple[str, ...], found: Preflight) -> None:
    """parent_columns hold the parent's key: as many, and each of its key column's type, character
    set and collation, so that `=` between them means what a foreign key would (a case-insensitive
    child column would also take a case-sensitive parent's 'A' for 'a': another parent's rows)."""
    mine = {c["name"].lower(): c for c in source}
    theirs = {c["name"].lower(): c for c in parent}
    if len(spec.parent_columns) != len(parent_key) or any(c.lower() not in mine for c in spec.parent_columns):
        found.problems.append(f"parent_columns {', '.join(spec.parent_columns)} must be {len(parent_key)} "
                              f"column(s) of `{spec.source_table}` holding the parent's key "
                              f"({', '.join(parent_key)}), in that order")
        return
    for name, key in zip(spec.parent_columns, parent_key):
        column, twin = mine[name.lower()], theirs[key.lower()]
        if not same_type(column, twin) or column["collation"] != twin["collation"]:
            mine_text, theirs_text = (" ".join(filter(None, (describe_type(c), c["collation"])))
                                      for c in (column, twin))
            found.problems.append(f"`{spec.source_table}`.`{name}` is {mine_text} but the parent's `{key}` "
                                  f"is {theirs_text}: they must be the same type and collation, as for a "
                                  "foreign key")

def child_key_type(source: list[dict[str, Any]], key: tuple[str, ...], found: Preflight) -> KeyType:
    """Into another server, a child's own key is looked up there exactly, as listed keys are: it must
    be of a type keys can be (a TIMESTAMP part is read as its instant: no time zone needed)."""
    by_name = {c["name"]: c for c in source}
    try:
        return composite_key_type([key_type_from_column(by_name[name], "+00:00") for name in key])
    except ArchiveError as exc:
        found.problems.append(f"its key ({', '.join(key)}) cannot be looked up exactly on the destination: "
                              f"{exc}")
        return UNMATCHED


def examine_child(db: Database, archive_db: Database, config: Config, spec: ChildSpec,
                  parent_key: tuple[str, ...], found: Preflight, innodb: str) -> ChildPlan | None:
    """One [child NAME] table: like the source, a key of its own, its archive's columns (on archive_db),
    no side effects, and an index on parent_columns (else every batch would lock the whole table)."""
    own = Preflight()
    if not child_tables_ok(db, archive_db, spec, own):
        found.problems += own.problems
        return None
    source, archive = fetch_columns(db, spec.source_table), fetch_columns(archive_db, spec.archive_table)
    copied, recomputed = compare_columns(source, archive, own)
    if archive_db is db:
        check_recomputing_collations(source, archive, recomputed, own)
    names = {c["name"].lower(): str(c["name"]) for c in source}
    parent_table = next((c.source_table for c in config.children if c.name == spec.parent),
                        config.source_table)
    before = len(own.problems)
    check_parent_columns(spec, source, fetch_columns(db, parent_table), parent_key, own)
    if len(own.problems) == before and not has_leading_index(db, spec.source_table, spec.parent_columns):
        own.problems.append(f"`{spec.source_table}` has no index starting with "
                            f"({', '.join(spec.parent_columns)}): every batch would read and lock the "
                            "whole table; add one (a foreign key makes one)")
    check_declared_foreign_key(db, spec, parent_table, parent_key, own)
    key = own_key(db, spec.source_table)
    index = unique_key_on(archive_db, spec.archive_table, key[1]) if key else None
    if key is None or index is None:
        table, where = (spec.archive_table, archive_db) if key else (spec.source_table, db)
        own.problems.append(f"`{table}` needs "
                            f"{'a unique key on (' + ', '.join(key[1]) + ')' if key else 'a primary key'} "
                            "(a child's rows are compared and reported by their own key): "
                            f"{unique_keys_text(where, table)}")
    for column in (c for c in source if key and c["name"] in key[1]):
        check_key_column(column, archive, own)
    key_type = child_key_type(source, key[1], own) if key and archive_db is not db else UNMATCHED
    child_config = dataclasses.replace(config, source_table=spec.source_table,
                                       archive_table=spec.archive_table)
    check_side_effects(db, archive_db, child_config, own, innodb, sorted(covered_foreign_keys(
        db, config.database, spec.source_table, key[1] if key else (),
        [c for c in config.children if c.parent == spec.name])))
    found.problems += [f"{spec.section}: {p}" for p in own.problems]
    found.notes += [f"{spec.section}: {n}" for n in own.notes]
    if own.problems or key is None or index is None:
        return None
    return ChildPlan(spec.name, spec.source_table, spec.archive_table, key[1], copied, spec.parent,
                     tuple(names[c.lower()] for c in spec.parent_columns), parent_key, index, recomputed,
                     key_type)



def examine_children(db: Database, archive_db: Database, config: Config, key: tuple[str, ...],
                     found: Preflight, innodb: str) -> tuple[ChildPlan, ...]:
    """Every [child NAME] table, parents first; each child's parent key is its parent's own key."""
    plans: dict[str, ChildPlan] = {}
    for spec in config.children:
        parent = plans.get(spec.parent) if spec.parent else None
        if spec.parent and parent is None:
            continue  # its parent was refused already
        child = examine_child(db, archive_db, config, spec, parent.key if parent else key, found, innodb)
        if child is not None:
            plans[spec.name] = child
    return tuple(plans.values())


def examine(db: Database, config: Config, dest: Database | None, found: Preflight, innodb: str) -> None:
    """The checks themselves: the plan into `found`, or the problems that block one."""
    archive_db = dest or db
    if not check_tables(db, archive_db, config, found):
        return
    source = fetch_columns(db, config.source_table)
    archive = fetch_columns(archive_db, config.archive_table)
    key_type, indexes, key = check_key(db, archive_db, config, source, archive, found)
    copied, recomputed = compare_columns(source, archive, found)
    if dest is None:
        check_recomputing_collations(source, archive, recomputed, found)
    direct = [c for c in config.children if c.parent is None]
    check_side_effects(db, archive_db, config, found, innodb,
                       sorted(covered_foreign_keys(db, config.database, config.source_table, key, direct)))
    children = examine_children(db, archive_db, config, key, found, innodb) if key_type is not None else ()
    for session in {id(db): db, id(archive_db): archive_db}.values():
        if config.children:
            check_write_set(session, config.batch_rows, config.source_table, found, "max_batch_rows")
        else:
            check_write_set(session, config.batch_size, config.source_table, found)
    if dest is not None:
        check_transfer(dest, found)
        check_destination_server(db, dest, config, found)
    if key_type is None:
        return
    check_packet(db, key_type, config.batch_size, 2, found)  # INSERT ... SELECT and DELETE (or read, DELETE)
    if dest is not None:
        check_packet(dest, key_type, config.batch_size, 1, found)  # the lookup of the archived copies
        for child in children:  # and of every child row's own key: up to max_batch_rows of them
            if child.key_type.kind != UNMATCHED.kind:
                check_packet(dest, child.key_type, config.batch_rows, 1, found, "max_batch_rows",
                             f"[child {child.name}] ")
    plan = TablePlan(config.source_table, config.archive_table, key, copied, key_type, config.guard,
                     source_index=indexes[0], archive_index=indexes[1], recomputed=recomputed,
                     children=children)
    for name in plan.key:
        if name not in plan.column_names and not found.problems:
            found.problems.append(f"key column `{name}` is not copied")
    if not found.problems:  # the EXPLAINs would only repeat a column problem as a grant problem
        check_privileges(db, archive_db, plan, found)
    if config.guard and not found.problems:
        check_guard(db, plan, found)
    if not found.problems:
        found.plan = plan


def run_preflight(db: Database, config: Config, dest: Database | None = None) -> Preflight:
    """Check tables, key, columns, side effects, privileges and limits on both sides; touch nothing.

    The plan carries the tables' definitions, read before and after the checks: when a table
    changed in between, the checks are made again (three times at most), so that what every
    batch compares with is exactly what the checks approved.
    """
    named = config
    config = folded_names(config, db, dest)
    if dest is None and config.source_table == config.archive_table:
        same = (f"[archive] source_table `{named.source_table}` and archive_table `{named.archive_table}` "
                "are one table on this server, which folds table names to lower case "
                "(lower_case_table_names = 1)")
        return Preflight(problems=[same])
    for _ in range(3):
        found = Preflight()
        with db.reading():
            innodb = choose_referencing(db, config, found)
        here, there = watched_sides(config, dest, innodb)
        before = read_definitions(db, here), read_definitions(dest, there) if dest else None
        with db.reading(), dest.reading() if dest else contextlib.nullcontext():
            examine(db, config, dest, found, innodb)
        after = read_definitions(db, here), read_definitions(dest, there) if dest else None
        if before == after:
            if found.plan is not None:
                found.plan = dataclasses.replace(found.plan, definitions=after[0], dest_definitions=after[1])
            return found
    found.problems.append("the tables changed during each of three preflights in a row; rerun once the "
                          "schema change is over")
    return found


def require_plan(db: Database, config: Config, dest: Database | None = None,
                 problems: Sequence[str] = ()) -> TablePlan:
    """Preflight, raising a critical error with every problem found (and those already known)."""
    found = run_preflight(db, config, dest)
    found.problems += problems
    if found.plan is None or found.problems:
        raise ArchiveError("preflight failed: " + "; ".join(found.problems))
    return found.plan


# --------------------------------------------------------------------------- tracking tables

SCHEMA_VERSION = 6
SCHEMA_COMMENT = f"archive.py tracking schema {SCHEMA_VERSION}"


TEXT_BYTES = 60_000  # what a TEXT column (65,535 bytes) is given, with room to spare
ADMIN_SETUP = "as an admin, load schema.sql or run archive.py with --setup once; see the README's grants"


# What a run writes to each tracking table (it reads them all). A batch's row is UPDATEd by the
# later parts of a batch moved in parts, and a failed batch's INSERT ... ON DUPLICATE KEY UPDATE
# needs UPDATE whether or not the row exists.
TRACKING_WRITES = {"process_logs": ("INSERT", "UPDATE"), "file_processing_logs": ("INSERT", "UPDATE"),
                   "batch_processing_logs": ("INSERT", "UPDATE"), "conflict_logs": ("INSERT", "UPDATE"),
                   "run_locks": ("INSERT", "UPDATE", "DELETE")}

# The current schema. Columns added since schema 1 come last, in the order the
# migration adds them, so a migrated table and a new one are the same table.
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
  `job` VARCHAR(300) NOT NULL DEFAULT '',
  `version` VARCHAR(32) NULL,
  `last_seen` DATETIME NULL,
  `not_found` BIGINT NOT NULL DEFAULT 0,
  `destination` VARCHAR(255) NULL,
  `start_time_utc` DATETIME(6) NULL,
  `last_seen_utc` DATETIME(6) NULL,
  `exit_code` TINYINT NULL,
  `recheck_counts` TEXT NULL,
  KEY `ix_process_status` (`source_table`, `status`),
  KEY `ix_process_job` (`job`, `id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin COMMENT='archive.py tracking schema 6'""",
    """CREATE TABLE IF NOT EXISTS `file_processing_logs` (
  `id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  `process_log_id` BIGINT UNSIGNED NOT NULL,
  `file_name` VARCHAR(255) NOT NULL,
  `file_size` BIGINT NOT NULL,
  `file_checksum` CHAR(64) NOT NULL,
  `status` ENUM('PROCESSING','COMPLETED','FAILED','INTERRUPTED','CONFLICTS','CHANGED') NOT NULL,
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
  `job` VARCHAR(300) NOT NULL DEFAULT '',
  `not_found` BIGINT NOT NULL DEFAULT 0,
  `reading` VARCHAR(255) NOT NULL DEFAULT '',
  UNIQUE KEY `ux_file_run` (`process_log_id`, `file_name`),
  KEY `ix_file_checksum` (`file_name`, `file_checksum`, `status`),
  KEY `ix_file_job` (`job`, `file_name`, `file_checksum`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
    """CREATE TABLE IF NOT EXISTS `batch_processing_logs` (
  `id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  `process_log_id` BIGINT UNSIGNED NOT NULL,
  `file_name` VARCHAR(255) NOT NULL,
  `batch_number` INT NOT NULL,
  `status` ENUM('COMPLETED','COMPLETED_WITH_DUPLICATES','FAILED','PARTIAL') NOT NULL,
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
  `not_found` INT NOT NULL DEFAULT 0,
  `table_counts` TEXT NULL,
  UNIQUE KEY `ux_batch_run` (`process_log_id`, `file_name`, `batch_number`),
  KEY `ix_batch_status` (`status`, `created_at`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
    """CREATE TABLE IF NOT EXISTS `conflict_logs` (
  `id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  `job` VARCHAR(300) NOT NULL,
  `file_name` VARCHAR(255) NOT NULL,
  `file_checksum` CHAR(64) NOT NULL,
  `key_value` TEXT NOT NULL,
  `process_log_id` BIGINT UNSIGNED NOT NULL,
  `batch_number` INT NOT NULL,
  `status` ENUM('OPEN','RESOLVED') NOT NULL DEFAULT 'OPEN',
  `resolution` VARCHAR(255) NULL,
  `resolved_by` BIGINT UNSIGNED NULL,
  `found_at` DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  `resolved_at` DATETIME NULL,
  `kind` ENUM('CONFLICT','HELD') NOT NULL DEFAULT 'CONFLICT',
  `detail` VARCHAR(255) NULL,
  KEY `ix_conflict_open` (`job`, `status`, `file_name`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
    """CREATE TABLE IF NOT EXISTS `run_locks` (
  `lock_name` VARCHAR(191) NOT NULL PRIMARY KEY,
  `owner` CHAR(32) NOT NULL,
  `process_log_id` BIGINT UNSIGNED NULL,
  `host` VARCHAR(255) NOT NULL,
  `pid` INT NOT NULL,
  `node` VARCHAR(255) NOT NULL,
  `connection_id` BIGINT UNSIGNED NOT NULL,
  `acquired_at` DATETIME(6) NOT NULL,
  `heartbeat_at` DATETIME(6) NOT NULL,
  `expires_at` DATETIME(6) NOT NULL,
  `user_lock` VARCHAR(64) NULL,
  `lease_clock` ENUM('LOCAL','UTC') NOT NULL DEFAULT 'LOCAL'
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
)

TABLE_COUNTS = ("archived", "deleted", "duplicates")  # a child table's counts, as the JSON names them


def dump_table_counts(tables: Iterable[tuple[str, int, int, int]]) -> str | None:
    """Child tables' counts as the tracking tables keep them (JSON); None without child tables."""
    found = {name: dict(zip(TABLE_COUNTS, rest)) for name, *rest in tables}
    return json.dumps(found) if found else None


def add_table_counts(totals: dict[str, dict[str, int]], text: str | None) -> dict[str, dict[str, int]]:
    """Add child tables' counts kept as JSON (or NULL) to totals."""
    for name, values in (json.loads(text) if text else {}).items():
        total = totals.setdefault(name, dict.fromkeys(values, 0))
        for what, n in values.items():
            total[what] = total.get(what, 0) + int(n)
    return totals


def seen_now(alias: str = "") -> str:
    """The SET clause of a run's sign of life: local time for people, UTC for durations."""
    return f"{alias}last_seen = NOW(), {alias}last_seen_utc = UTC_TIMESTAMP(6)"


@dataclass(frozen=True)
class Migration:
    """The steps that bring the tracking tables to schema `version` from the one before it.

    Columns added come last in their tables, in this order, so a migrated table and a new one
    are the same table; every step checks first, so a migration cut short is finished by the
    next run, and two runs migrating at once do not trip over each other.
    """

    version: int
    columns: tuple[tuple[str, str, str], ...] = ()  # (table, column, ADD COLUMN ...) when missing
    indexes: tuple[tuple[str, str, str], ...] = ()  # (table, index, ADD KEY ...) when missing
    fill: tuple[str, ...] = ()  # statements that are safe to repeat
    carry_conflicts: bool = False  # schema 1 kept conflict keys only as comma lists


MIGRATIONS = (
    Migration(
        2,
        columns=(
            ("process_logs", "job", "ADD COLUMN `job` VARCHAR(300) NOT NULL DEFAULT ''"),
            ("process_logs", "version", "ADD COLUMN `version` VARCHAR(32) NULL"),
            ("process_logs", "last_seen", "ADD COLUMN `last_seen` DATETIME NULL"),
            ("process_logs", "not_found", "ADD COLUMN `not_found` BIGINT NOT NULL DEFAULT 0"),
            ("process_logs", "destination", "ADD COLUMN `destination` VARCHAR(255) NULL"),
            ("file_processing_logs", "job", "ADD COLUMN `job` VARCHAR(300) NOT NULL DEFAULT ''"),
            ("file_processing_logs", "not_found", "ADD COLUMN `not_found` BIGINT NOT NULL DEFAULT 0"),
            ("file_processing_logs", "reading", "ADD COLUMN `reading` VARCHAR(255) NOT NULL DEFAULT ''"),
            ("batch_processing_logs", "not_found", "ADD COLUMN `not_found` INT NOT NULL DEFAULT 0"),
        ),
        indexes=(
            ("process_logs", "ix_process_job", "ADD KEY `ix_process_job` (`job`, `id`)"),
            ("file_processing_logs", "ix_file_job",
             "ADD KEY `ix_file_job` (`job`, `file_name`, `file_checksum`)"),
        ),
        fill=(
            # Schema 1 had one job per source table as far as resuming went; name it as today.
            ("UPDATE process_logs SET job = CONCAT(DATABASE(), '.', source_table, ' -> ', DATABASE(), '.', "
             "archive_table) WHERE job = ''"),
            ("UPDATE file_processing_logs f JOIN process_logs p ON p.id = f.process_log_id SET f.job = p.job "
             "WHERE f.job = ''"),
            ("ALTER TABLE file_processing_logs MODIFY `status` ENUM('PROCESSING','COMPLETED','FAILED',"
             "'INTERRUPTED','CONFLICTS','CHANGED') NOT NULL"),
        ),
        carry_conflicts=True),
    # Schema 3: durations in UTC, so a DST change in between does not count; the holder's own user
    # lock (NULL: an older version's row, or no user locks); lease times in UTC, marked so: a row an
    # older version wrote (or writes, during an upgrade) stays on the local clock.
    Migration(
        3,
        columns=(
            ("process_logs", "start_time_utc", "ADD COLUMN `start_time_utc` DATETIME(6) NULL"),
            ("process_logs", "last_seen_utc", "ADD COLUMN `last_seen_utc` DATETIME(6) NULL"),
            ("run_locks", "user_lock", "ADD COLUMN `user_lock` VARCHAR(64) NULL"),
            ("run_locks", "lease_clock",
             "ADD COLUMN `lease_clock` ENUM('LOCAL','UTC') NOT NULL DEFAULT 'LOCAL'"),
        )),
    # Schema 4: each run's exit code (metrics, --status --json); rows the guard held back are kept
    # in conflict_logs as kind HELD and revisited by later runs (every earlier row is a CONFLICT).
    Migration(
        4,
        columns=(
            ("process_logs", "exit_code", "ADD COLUMN `exit_code` TINYINT NULL"),
            ("conflict_logs", "kind",
             "ADD COLUMN `kind` ENUM('CONFLICT','HELD') NOT NULL DEFAULT 'CONFLICT'"),
        )),
    # Schema 5: child tables. A batch too big for max_batch_rows commits in parts (PARTIAL until its
    # last part); its child tables' counts (JSON); which child row made a listed key a conflict.
    Migration(
        5,
        columns=(
            ("batch_processing_logs", "table_counts", "ADD COLUMN `table_counts` TEXT NULL"),
            ("conflict_logs", "detail", "ADD COLUMN `detail` VARCHAR(255) NULL"),
        ),
        fill=(
            ("ALTER TABLE batch_processing_logs MODIFY `status` ENUM('COMPLETED','COMPLETED_WITH_DUPLICATES',"
             "'FAILED','PARTIAL') NOT NULL"),
        )),
    # Schema 6: the child rows a run's recheck moved (in no batch), as JSON like a batch's
    # table_counts, so --status counts a run's child rows as its SUMMARY does.
    Migration(
        6,
        columns=(("process_logs", "recheck_counts", "ADD COLUMN `recheck_counts` TEXT NULL"),)),
)


# --------------------------------------------------------------------------- tracking schema

class TrackingSchema:
    """The tracking tables' schema on the source: which tables exist, their version, creating the
    missing ones and migrating older ones (MIGRATIONS, in order). Nothing else runs DDL on them."""

    def __init__(self, db: Database):
        self.db = db

    def present(self) -> set[str]:
        """Which tracking tables exist."""
        marks = ", ".join(["%s"] * len(TRACKING_TABLES))
        rows = self.db.query(f"SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = "
                             f"DATABASE() AND TABLE_NAME IN ({marks})", TRACKING_TABLES)
        return {r[0] for r in rows}

    def privilege_problems(self, present: set[str], version: int = SCHEMA_VERSION) -> list[str]:
        """What this user may not do to the tracking tables: write them, create the missing ones
        and migrate older ones (`version`), all tested without changing anything."""
        checks, ddl = [], []
        for table in TRACKING_TABLES:
            key = "lock_name" if table == "run_locks" else "id"
            tests = {"INSERT": f"INSERT INTO `{table}` SELECT * FROM `{table}` WHERE 1 = 0",
                     "UPDATE": f"UPDATE `{table}` SET `{key}` = `{key}` WHERE 1 = 0",
                     "DELETE": f"DELETE FROM `{table}` WHERE 1 = 0"}
            checks += [(self.db, f"{verb} tracking table {table}", tests[verb])
                       for verb in TRACKING_WRITES[table]]
            if table not in present:
                ddl.append((self.db, f"CREATE tracking table {table} ({ADMIN_SETUP})",
                            f"CREATE TABLE `{table}` (`probe` INT, `probe` INT)"))
        version = version if "process_logs" in present else SCHEMA_VERSION  # as ensure() does
        altered = {"process_logs"} | {t for m in MIGRATIONS if m.version > version
                                      for t, _, _ in m.columns + m.indexes}
        upgraded = [t for t in TRACKING_TABLES if t in altered and t in present and version < SCHEMA_VERSION]
        ddl += [(self.db, f"ALTER tracking table {table} to upgrade it from schema {version} ({ADMIN_SETUP})",
                 f"ALTER TABLE `{table}` ADD COLUMN `probe` INT, ADD COLUMN `probe` INT")
                for table in upgraded]
        # A table that does not exist yet answers 1146 once the privilege check passed; the DDL
        # probes' duplicate column (1060) fails after it, so nothing is created or altered.
        return (refused_statements(checks, accepted=frozenset((errorcode.ER_NO_SUCH_TABLE,)))
                + refused_statements(ddl, explain=False, accepted=frozenset((
                    errorcode.ER_DUP_FIELDNAME, errorcode.ER_TABLE_EXISTS_ERROR))))

    def version(self) -> int:
        """The stamped schema version (1 for tables made before versions were stamped)."""
        rows = self.db.query("SELECT TABLE_COMMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = "
                             "DATABASE() AND TABLE_NAME = 'process_logs'")
        match = re.search(r"tracking schema ([0-9]+)", str(rows[0][0])) if rows else None
        return int(match.group(1)) if match else 1

    def ensure(self) -> list[str]:
        """Create missing tracking tables and migrate older ones; return what was done."""
        present = self.present()
        version = self.version() if "process_logs" in present else SCHEMA_VERSION
        for name, ddl in zip(TRACKING_TABLES, TRACKING_DDL):
            if name not in present:
                self.create_table(ddl)
        done = [step for m in MIGRATIONS if m.version > version for step in self.migrate(m)]
        self.db.commit()
        return done

    def create_table(self, ddl: str) -> None:
        """CREATE TABLE IF NOT EXISTS; a concurrent run (even on another node) may win the race."""
        try:
            self.db.execute(ddl)
        except mysql.connector.Error as exc:
            if exc.errno != errorcode.ER_TABLE_EXISTS_ERROR:
                raise

    def migrate(self, migration: Migration) -> list[str]:
        """Apply one migration's missing steps, then stamp its version; return what was done."""
        columns = {(t, c) for t, c in self.db.query(
            "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()")}
        indexes = {(t, i) for t, i in self.db.query(
            "SELECT TABLE_NAME, INDEX_NAME FROM information_schema.STATISTICS "
            "WHERE TABLE_SCHEMA = DATABASE()")}
        steps = [f"ALTER TABLE `{t}` {ddl}" for t, c, ddl in migration.columns if (t, c) not in columns]
        steps += [f"ALTER TABLE `{t}` {ddl}" for t, i, ddl in migration.indexes if (t, i) not in indexes]
        for sql in steps:
            self.run_ddl(sql)
        for sql in migration.fill:
            self.db.execute(sql)
            self.db.commit()
        if migration.carry_conflicts:
            steps += self.carry_conflicts()
        self.run_ddl(f"ALTER TABLE process_logs COMMENT = 'archive.py tracking schema {migration.version}'")
        return steps

    def carry_conflicts(self) -> list[str]:
        """Schema 1 kept conflict keys only as a comma list in batch_processing_logs: open them.

        Only lists of integers are split: a text key may itself hold a comma, and a wrong
        split would make the recheck move a row nobody listed.
        """
        rows = self.db.query(
            "SELECT b.id, b.process_log_id, b.batch_number, b.conflict_keys, f.job, f.file_name, "
            "f.file_checksum FROM batch_processing_logs b JOIN file_processing_logs f ON "
            "f.process_log_id = b.process_log_id AND f.file_name = b.file_name WHERE b.conflicts > 0 "
            "AND b.conflict_keys IS NOT NULL AND b.conflict_keys NOT LIKE '[%' AND NOT EXISTS (SELECT 1 FROM "
            "conflict_logs c WHERE c.process_log_id = b.process_log_id AND c.batch_number = b.batch_number "
            "AND c.file_name = b.file_name)")
        carried, skipped = 0, 0
        for _, run_id, number, keys, job, name, sha in rows:
            parts = str(keys).split(",")
            if not all(re.fullmatch(r"-?[0-9]+", p) for p in parts):
                skipped += 1
                continue
            for key in parts:
                self.db.execute("INSERT INTO conflict_logs (job, file_name, file_checksum, key_value, "
                                "process_log_id, batch_number) VALUES (%s, %s, %s, %s, %s, %s)",
                                (job, name, sha, key, run_id, number))
            self.db.execute("UPDATE file_processing_logs SET status = 'CONFLICTS' WHERE process_log_id = %s "
                            "AND file_name = %s AND status = 'COMPLETED'", (run_id, name))
            carried += len(parts)
        self.db.commit()
        notes = [f"carried {carried} schema-1 conflict key(s) into conflict_logs (rechecked from now on)"]
        if skipped:
            notes.append(f"left {skipped} schema-1 batch(es) with text conflict keys in "
                         "batch_processing_logs.conflict_keys: a comma list cannot be split safely")
        return notes if carried or skipped else []

    def run_ddl(self, sql: str) -> None:
        """One migration step; a concurrent run that did it first is fine."""
        try:
            self.db.execute(sql)
        except mysql.connector.Error as exc:
            if exc.errno not in (errorcode.ER_DUP_FIELDNAME, errorcode.ER_DUP_KEYNAME):
                raise


def fit(text: str | None, chars: int | None = None, max_bytes: int = TEXT_BYTES) -> str | None:
    """Cut a text to what its column holds (characters for VARCHAR, bytes for TEXT), marking the cut."""
    if text is None:
        return None
    if chars is not None:
        return text if len(text) <= chars else text[:chars - 7] + " [cut]"
    data = text.encode("utf-8")
    return text if len(data) <= max_bytes else data[:max_bytes - 7].decode("utf-8", "ignore") + " [cut]"


def encode_keys(keys: Sequence[Key]) -> str | None:
    """Keys as a JSON list for conflict_keys (text keys may hold commas)."""
    return json.dumps([format_key(k) for k in keys], ensure_ascii=False) if keys else None


# --------------------------------------------------------------------------- run lock

# The lease's clock: UTC, except in a lock row an older version wrote (schema 2 had no lease_clock).
LEASE_NOW = {3: "IF(lease_clock = 'UTC', UTC_TIMESTAMP(6), NOW(6))", 2: "NOW(6)"}
LOCK_COLUMNS = {3: "user_lock, lease_clock", 2: "NULL AS user_lock, 'LOCAL' AS lease_clock"}


def describe_holder(holder: dict[str, Any] | None) -> str:
    """Who holds the run lock, for messages."""
    if holder is None:
        return "a run that has just finished"
    state = (f"heartbeat {holder['age']:.0f}s ago, lease valid" if holder["valid"]
             else f"lease expired, last heartbeat {holder['age']:.0f}s ago")
    return (f"run {holder['process_log_id'] or '?'} on {holder['host']} pid {holder['pid']} via "
            f"{str(holder['node']).split()[0]} ({state})")


class RunLock:
    """One run at a time per source table, on any host and through any node of a cluster: a leased
    row in run_locks that this run renews with every batch (the fence) and between batches (the
    heartbeat), plus a user lock named after its owner token that tells a run on the same node at
    once that a holder's session is gone. Nothing outside this class writes the lock's state."""

    def __init__(self, db: Database, config: Config, layout: int = 3):
        self.db, self.config, self.layout = db, config, layout  # layout: the tracking schema's columns
        self.owner = secrets.token_hex(16)
        self.locked = False
        self.user_lock = False
        self.user_lock_session: Any = None  # the session that took the user lock
        self.run_id = 0  # the run this lock is recorded under (process_logs.id), once started
        self.last_beat = 0.0

    def params(self) -> tuple[Any, ...]:
        """Who we are, for the lock row."""
        return (self.owner, self.run_id or None, socket.gethostname()[:255], os.getpid(), self.db.node,
                self.connection_id(), self.user_lock_name() if self.user_lock else None)

    def connection_id(self) -> int:
        """This session's server connection id."""
        return int(self.db.query("SELECT CONNECTION_ID()")[0][0])

    def user_lock_name(self) -> str:
        """This run's own user lock: named after its owner token (43 characters, MySQL allows 64)."""
        return USER_LOCK_PREFIX + self.owner

    def take_user_lock(self) -> None:
        """GET_LOCK this run's own user lock on its node, before it can hold the lock row.

        A user lock dies with its session, so another run on the same node tells at once that
        a holder is gone; a run whose server refuses user locks records none.
        """
        self.user_lock = self.user_lock_answer("GET_LOCK(%s, 0)", self.user_lock_name()) == (True, 1)
        self.user_lock_session = self.db.conn  # the session holding it (kept: `is` compares it)

    def hold_user_lock(self) -> None:
        """Before the lock row is written: a session lost since the user lock was taken (a Galera
        node aborting it in a race of starting runs; the rollback forgets it) is replaced, and the
        user lock taken again on the new one, or the row would name a user lock nobody holds and
        another run would take it over from this live one."""
        self.db.ensure_connected()
        if self.db.conn is not self.user_lock_session:
            self.take_user_lock()

    def user_lock_answer(self, call: str, name: str) -> tuple[bool, Any]:
        """(whether the server runs user-lock functions, the function's answer)."""
        try:
            return True, self.db.query(f"SELECT {call}", (name,))[0][0]
        except mysql.connector.Error as exc:
            if is_connection_error(exc):
                raise
            return False, None  # some Galera releases refuse user locks (1235)

    def holder_gone(self, holder: dict[str, Any]) -> bool:
        """Whether the holder's session on this node has ended (so it died), as its user lock says.

        A row of an older version names no user lock of its own: that version held the job's.
        """
        if holder["node"] != self.db.node:
            return False  # user locks are local to a node
        name = holder["user_lock"] or self.config.lock_name
        return self.user_lock_answer("IS_USED_LOCK(%s)", name) == (True, None)

    def acquire(self) -> str | None:
        """Take the run lock, or raise AlreadyRunning naming the holder; return a takeover note.

        Deadlocks, certification conflicts, lock waits and a holder that left in between mean
        try again (for retry_timeout): only a live holder turns a run away.
        """
        self.take_user_lock()  # first, so a row of ours on this node always has a live user lock
        deadline = time.monotonic() + self.config.retry_timeout
        while True:
            taken, note = retry_conflicts(self.db, self.config.retry_timeout, self.try_take)
            if taken:
                self.locked, self.last_beat = True, time.monotonic()
                return note
            if time.monotonic() >= deadline:
                raise AlreadyRunning(f"the run lock for `{self.config.lock_name}` changed hands for "
                                     f"{self.config.retry_timeout:g}s; last seen with "
                                     f"{describe_holder(self.holder())}")
            time.sleep(backoff_seconds(1))

    def try_take(self) -> tuple[bool, str | None]:
        """One attempt: insert the lock row, or take it over from a holder that is gone.

        Returns (taken, takeover note); not taken means the row changed under us: look again.
        """
        name, lease = self.config.lock_name, math.ceil(self.config.lock_lease)
        self.hold_user_lock()
        try:
            self.db.execute(
                "INSERT INTO run_locks (lock_name, owner, process_log_id, host, pid, node, connection_id, "
                "user_lock, lease_clock, acquired_at, heartbeat_at, expires_at) VALUES (%s, %s, %s, %s, %s, "
                "%s, %s, %s, 'UTC', UTC_TIMESTAMP(6), UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) + INTERVAL "
                f"{lease} SECOND)", (name, *self.params()))
            self.db.commit()
            return True, None
        except mysql.connector.Error as exc:
            self.db.rollback()
            if exc.errno != ER_DUP_ENTRY:
                raise
        self.hold_user_lock()
        holder = self.holder()
        if holder is None:
            return False, None  # released in between: insert again
        gone = bool(self.user_lock) and self.holder_gone(holder)
        if holder["valid"] and not gone:
            raise AlreadyRunning(f"another archive.py run is already running for `{name}`: "
                                 f"{describe_holder(holder)}")
        taken = self.db.execute(
            "UPDATE run_locks SET owner = %s, process_log_id = %s, host = %s, pid = %s, node = %s, "
            "connection_id = %s, user_lock = %s, lease_clock = 'UTC', acquired_at = UTC_TIMESTAMP(6), "
            f"heartbeat_at = UTC_TIMESTAMP(6), expires_at = UTC_TIMESTAMP(6) + INTERVAL {lease} SECOND "
            f"WHERE lock_name = %s AND owner = %s AND (expires_at < {LEASE_NOW[3]} OR %s)",
            (*self.params(), name, holder["owner"], gone))
        self.db.commit()
        return taken == 1, f"took over the run lock from {describe_holder(holder)}" if taken == 1 else None

    def holder(self) -> dict[str, Any] | None:
        """The lock row, with whether its lease is still valid and how old its heartbeat is."""
        now = LEASE_NOW[self.layout]
        rows = self.db.read_dicts(
            f"SELECT owner, process_log_id, host, pid, node, connection_id, {LOCK_COLUMNS[self.layout]}, "
            f"heartbeat_at, expires_at, expires_at > {now} AS valid, "
            f"TIMESTAMPDIFF(MICROSECOND, heartbeat_at, {now}) / 1e6 AS age "
            "FROM run_locks WHERE lock_name = %s", (self.config.lock_name,))
        return rows[0] if rows else None

    def fence(self) -> tuple[str, tuple[Any, ...]]:
        """The statement every batch starts with: renew our lease; it matches no row once we lost it."""
        return (("UPDATE run_locks SET heartbeat_at = UTC_TIMESTAMP(6), expires_at = UTC_TIMESTAMP(6) + "
                f"INTERVAL {math.ceil(self.config.lock_lease)} SECOND WHERE lock_name = %s AND owner = %s"),
                (self.config.lock_name, self.owner))

    def heartbeat(self, force: bool = False) -> None:
        """Renew the lease between batches (at most every quarter lease unless forced)."""
        if not self.locked or (not force and time.monotonic() - self.last_beat < self.config.lock_lease / 4):
            return
        self.db.ensure_connected()
        try:
            sql, params = self.fence()
            renewed = self.db.execute(sql, params)
            if self.run_id:
                self.db.execute(f"UPDATE process_logs SET {seen_now()} WHERE id = %s", (self.run_id,))
            self.db.commit()
        except mysql.connector.Error:
            self.db.rollback()
            raise
        if renewed != 1:
            self.lost()
        self.last_beat = time.monotonic()

    def lost(self) -> None:
        """Stop: our lease ran out and another run took the lock, so we must not write again."""
        self.locked = False
        holder = self.holder()
        raise LostLock(f"lost the run lock for `{self.config.lock_name}` (this run's lease of "
                       f"{self.config.lock_lease:g}s ran out while it was stopped or cut off) to "
                       f"{describe_holder(holder)}; nothing more was written")

    def retake(self) -> None:
        """After a reconnect (perhaps to another node): our lock row moves with us, or we lost it."""
        if not self.locked:
            return
        self.take_user_lock()
        moved = self.db.execute("UPDATE run_locks SET node = %s, connection_id = %s, user_lock = %s, "
                                "heartbeat_at = UTC_TIMESTAMP(6) WHERE lock_name = %s AND owner = %s",
                                (*self.params()[4:], self.config.lock_name, self.owner))
        self.db.commit()
        if moved != 1:
            self.lost()

    def release(self) -> None:
        """Give the lock up at the end of the run (a crash leaves it to expire or be taken over)."""
        if not self.locked:
            return
        with contextlib.suppress(mysql.connector.Error, ArchiveError):
            self.db.ensure_connected()
            self.db.write("DELETE FROM run_locks WHERE lock_name = %s AND owner = %s",
                          (self.config.lock_name, self.owner))
            if self.user_lock:
                self.db.query("SELECT RELEASE_LOCK(%s)", (self.user_lock_name(),))
        self.locked = False

    def holder_is_alive(self, run_id: int) -> tuple[bool, str]:
        """Whether run `run_id` still holds the lock, and how we know (for --status)."""
        holder = self.holder()
        if holder is None or holder["process_log_id"] != run_id:
            return False, "it does not hold the run lock: it died; the next run marks it INTERRUPTED"
        if holder["user_lock"] and self.holder_gone(holder):
            return False, "its server session is gone: it died; the next run takes the lock over at once"
        if not holder["valid"]:
            return False, (f"its lease expired {holder['age']:.0f}s after its last heartbeat: it died or "
                           "is frozen; the next run takes the lock over")
        return True, (f"alive: heartbeat {holder['age']:.1f}s ago from {holder['host']} pid {holder['pid']} "
                      f"via {holder['node'].split()[0]}")

    def attach_run(self) -> tuple[str, tuple[Any, ...]]:
        """The statement that records this run's id in its lock row (in the run's first transaction)."""
        return ("UPDATE run_locks SET process_log_id = %s WHERE lock_name = %s AND owner = %s",
                (self.run_id, self.config.lock_name, self.owner))


# --------------------------------------------------------------------------- tracking records

RUN_COLUMNS = (
    "id, status, start_time, end_time, last_seen, current_file, current_batch, processed_files, "
    "total_files, rows_archived, rows_deleted, duplicates, conflicts, skipped_by_guard, not_found, "
    "stop_reason, pause_reason, paused_seconds, error_message, host, pid, version, job, destination")
RUN_COLUMNS_UTC = {3: "start_time_utc, last_seen_utc", 2: "NULL AS start_time_utc, NULL AS last_seen_utc"}
RUN_COLUMNS_EXIT = {True: "exit_code", False: "NULL AS exit_code"}  # schema 4 records the exit code
# A run "did work" if it moved or counted a row, ran a batch, met a file it could not archive,
# or settled a conflict; --status skips the nightly no-ops.
DID_WORK_SQL = ("(p.rows_archived + p.rows_deleted + p.conflicts + p.not_found + p.skipped_by_guard > 0 "
                "OR EXISTS (SELECT 1 FROM file_processing_logs f WHERE f.process_log_id = p.id AND "
                "(f.processed_batches >= f.start_batch OR f.status <> 'COMPLETED')) OR EXISTS (SELECT 1 FROM "
                "conflict_logs c WHERE c.resolved_by = p.id))")


class Tracking:
    """The run, file, batch and conflict records in the tracking tables: every read and write of
    them, for a run and for the read-only commands. Their schema is `schema`'s, the run lock
    `lock`'s."""

    def __init__(self, db: Database, config: Config):
        self.db, self.config = db, config
        self.schema = TrackingSchema(db)
        self.lock = RunLock(db, config)
        self.version = SCHEMA_VERSION  # older tables are only read, by a read-only command
        self.run_id = 0

    def use_version(self, version: int) -> None:
        """Read the tables as this schema version made them (a read-only command never migrates)."""
        self.version = version
        self.lock.layout = self.layout

    @property
    def legacy(self) -> bool:
        """Schema-1 tables (no job column), read by a read-only command as schema 1 did."""
        return self.version < 2

    @property
    def layout(self) -> int:
        """Which column list fits these tables: 3 for schema 3 and later, else 2."""
        return 3 if self.version >= 3 else 2

    def start_run(self, total_files: int, destination: str | None = None) -> int:
        """Mark runs that died without an end as INTERRUPTED, then record this run as RUNNING."""
        host, pid = socket.gethostname(), os.getpid()
        db, config = self.db, self.config
        if db.execute(*self.lock.fence()) != 1:  # only the holder may mark other runs INTERRUPTED
            db.rollback()
            self.lock.lost()
        db.execute(
            "UPDATE file_processing_logs f JOIN process_logs p ON p.id = f.process_log_id "
            "SET f.status = 'INTERRUPTED', f.finished_at = COALESCE(p.last_seen, NOW()) "
            "WHERE p.status = 'RUNNING' AND p.source_table = %s AND f.status = 'PROCESSING'",
            (config.source_table,))
        db.execute(
            "UPDATE process_logs SET status = 'INTERRUPTED', end_time = COALESCE(last_seen, NOW()), "
            "stop_reason = 'process died', error_message = NULLIF(CONCAT_WS('; ', error_message, %s), '') "
            "WHERE status = 'RUNNING' AND source_table = %s",
            ((f"run ended without recording an outcome (killed, frozen or cut off from its server); "
             f"found by a run started on {host} pid {pid}"), config.source_table))
        db.execute(
            "INSERT INTO process_logs (source_table, archive_table, status, host, pid, start_time, "
            "total_files, job, version, last_seen, destination, start_time_utc, last_seen_utc) "
            "VALUES (%s, %s, 'RUNNING', %s, %s, NOW(), %s, %s, %s, NOW(), %s, UTC_TIMESTAMP(6), "
            "UTC_TIMESTAMP(6))",
            (config.source_table, config.archive_table, host[:255], pid, total_files, config.job,
             __version__, fit(destination, 255)))
        self.run_id = self.lock.run_id = int(db.query("SELECT LAST_INSERT_ID()")[0][0])
        db.execute(*self.lock.attach_run())
        db.commit()
        return self.run_id

    def finish_run(self, status: str, stop_reason: str | None, paused: float, error: str | None,
                   exit_code: int) -> None:
        """Record the run's end (its own small transaction); a file still open ends with the run."""
        if status == "FAILED":
            self.end_open_files("FAILED", error)
        self.db.write(
            f"UPDATE process_logs SET status = %s, end_time = NOW(), {seen_now()}, stop_reason = %s, "
            "pause_reason = NULL, paused_seconds = %s, exit_code = %s, "
            "error_message = NULLIF(CONCAT_WS('; ', error_message, %s), '') WHERE id = %s",
            (status, fit(stop_reason, 255), round(paused, 3), exit_code, fit(error), self.run_id))

    def end_open_files(self, status: str, error: str | None) -> None:
        """End this run's files still PROCESSING (keeping an error already recorded)."""
        self.db.execute("UPDATE file_processing_logs SET status = %s, finished_at = NOW(), "
                        "error_message = COALESCE(error_message, %s) WHERE process_log_id = %s "
                        "AND status = 'PROCESSING'", (status, fit(error), self.run_id))

    def note_pause(self, reason: str | None, paused: float) -> None:
        """Show a pause (or its end) in process_logs for --status."""
        self.db.write(f"UPDATE process_logs SET pause_reason = %s, paused_seconds = %s, {seen_now()} "
                      "WHERE id = %s", (fit(reason, 255), round(paused, 3), self.run_id))

    def add_run_counts(self, counts: Counters) -> tuple[str, tuple[Any, ...]]:
        """Add counts to this run's row (inside the transaction that did the work)."""
        return (f"UPDATE process_logs SET {added_counts()}, {seen_now()} WHERE id = %s",
                (*counts.values(), self.run_id))

    def add_recheck_counts(self, moved: dict[str, list[int]]) -> tuple[str, tuple[Any, ...]]:
        """Add the child rows a recheck moved to this run's row, inside the recheck's transaction
        (only this run writes its row: what it reads there is what it committed)."""
        rows = self.db.query("SELECT recheck_counts FROM process_logs WHERE id = %s", (self.run_id,))
        totals = add_table_counts(add_table_counts({}, rows[0][0] if rows else None),
                                  dump_table_counts((name, a, d, t) for name, (a, d, t) in moved.items()))
        return "UPDATE process_logs SET recheck_counts = %s WHERE id = %s", (json.dumps(totals), self.run_id)

    def file_scope(self) -> tuple[str, tuple[Any, ...]]:
        """Which file rows are this job's (and read the same way), as a condition on alias f.

        Schema-1 tables have no job column: a read-only command (which must not migrate)
        then takes the rows of runs on these two tables, as schema 1 itself did.
        """
        if self.legacy:
            return (("f.process_log_id IN (SELECT id FROM process_logs WHERE source_table = %s AND "
                    "archive_table = %s)"), (self.config.source_table, self.config.archive_table))
        return "f.job = %s AND f.reading IN (%s, '')", (self.config.job, fit(self.config.reading, 255))

    def finished_record(self, scan: FileScan) -> tuple[int, str] | None:
        """(run, status) of the latest COMPLETED or CONFLICTS record of this exact content."""
        scope, params = self.file_scope()
        rows = self.db.query(
            f"SELECT f.process_log_id, f.status FROM file_processing_logs f WHERE {scope} "
            "AND f.file_name = %s "
            "AND f.file_checksum = %s AND f.status IN ('COMPLETED', 'CONFLICTS') ORDER BY f.id DESC LIMIT 1",
            (*params, scan.name, scan.sha256))
        return (int(rows[0][0]), str(rows[0][1])) if rows else None

    def checkpoint(self, scan: FileScan) -> Checkpoint | None:
        """The furthest committed batch for this exact content (runs whose file changed don't count)."""
        scope, params = self.file_scope()
        rows = self.db.query(
            "SELECT f.batch_size, f.total_keys, b.batch_number, b.end_offset, b.end_line "
            "FROM file_processing_logs f JOIN batch_processing_logs b "
            "ON b.process_log_id = f.process_log_id AND b.file_name = f.file_name "
            f"WHERE {scope} AND f.file_name = %s AND f.file_checksum = %s "
            "AND f.status <> 'CHANGED' AND b.status IN ('COMPLETED', 'COMPLETED_WITH_DUPLICATES') "
            "ORDER BY b.batch_number * f.batch_size DESC LIMIT 1", (*params, scan.name, scan.sha256))
        if not rows:
            return None
        size, keys, number, offset, line = rows[0]
        return Checkpoint(int(size), int(keys), int(number), int(offset or 0), int(line or 0))

    def other_checksums(self, scan: FileScan) -> list[str]:
        """Checksums recorded earlier for a file of this name with different content."""
        scope, params = self.file_scope()
        rows = self.db.query(
            f"SELECT DISTINCT f.file_checksum FROM file_processing_logs f WHERE {scope} AND f.file_name = %s "
            "AND f.file_checksum <> %s AND f.last_processed_batch > 0", (*params, scan.name, scan.sha256))
        return [r[0] for r in rows]

    def start_file(self, scan: FileScan, batch_size: int, total_batches: int, start_batch: int) -> int:
        """Record a file as PROCESSING with the batches already done before this run."""
        done = start_batch - 1
        self.db.execute(
            "INSERT INTO file_processing_logs (process_log_id, file_name, file_size, file_checksum, "
            "status, batch_size, total_keys, total_batches, start_batch, processed_batches, "
            "last_processed_batch, started_at, job, reading) VALUES (%s, %s, %s, %s, 'PROCESSING', %s, %s, "
            "%s, %s, %s, %s, NOW(), %s, %s)",
            (self.run_id, fit(scan.name, 255), scan.size, scan.sha256, batch_size, scan.keys, total_batches,
             start_batch, done, done, self.config.job, fit(self.config.reading, 255)))
        file_id = int(self.db.query("SELECT LAST_INSERT_ID()")[0][0])
        self.db.execute("UPDATE process_logs SET current_file = %s, current_batch = %s WHERE id = %s",
                        (fit(scan.name, 255), done or None, self.run_id))
        self.db.commit()
        return file_id

    def finish_file(self, file_id: int, status: str, error: str | None) -> None:
        """Record a file's end; every end but INTERRUPTED counts the file as processed."""
        self.db.execute("UPDATE file_processing_logs SET status = %s, finished_at = NOW(), "
                        "error_message = %s WHERE id = %s", (status, fit(error), file_id))
        if status != "INTERRUPTED":
            self.count_processed_file()
        self.db.commit()

    def count_processed_file(self) -> None:
        """One more file dealt with by this run (done, skipped or rejected)."""
        self.db.execute("UPDATE process_logs SET processed_files = processed_files + 1 WHERE id = %s",
                        (self.run_id,))

    def skip_file(self) -> None:
        """A file already done: it counts as processed."""
        self.count_processed_file()
        self.db.commit()

    def reject_file(self, scan: FileScan, batch_size: int, error: str) -> None:
        """Record a file that cannot be archived as FAILED with its reason; none of its batches ran."""
        file_id = self.start_file(scan, batch_size, 0, 1)
        self.finish_file(file_id, "FAILED", error)

    def batch_statements(self, file_context: FileContext, batch: Batch, outcome: BatchOutcome,
                         earlier: BatchOutcome | None = None, settled: int | None = None
                         ) -> list[tuple[str, tuple[Any, ...]]]:
        """The tracking writes of a batch (or of a part of it: `earlier` parts of this run came
        before, `settled` keys are done with this one); they run inside its transaction and commit
        with it. The file's and run's counts grow by this part."""
        counts, whole = outcome.counts.values(), merge_outcomes(earlier, outcome)
        whole_batches = batch.number if settled is None or settled >= len(batch.keys) else batch.number - 1
        statements = [self.batch_row(file_context, batch, whole, earlier is None, settled), (
            ("UPDATE file_processing_logs f JOIN process_logs p ON p.id = f.process_log_id SET "
             f"f.processed_batches = %s, f.last_processed_batch = %s, {added_counts('f.')}, "
             f"p.current_batch = %s, {added_counts('p.')}, {seen_now('p.')} WHERE f.id = %s"),
            (whole_batches, batch.number, *counts, batch.number, *counts, file_context.file_id))]
        details = dict(outcome.details)
        for kind, keys in (("CONFLICT", outcome.conflicts), ("HELD", outcome.held)):
            statements += [(
                ("INSERT INTO conflict_logs (job, file_name, file_checksum, key_value, process_log_id, "
                 "batch_number, kind, detail) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"),
                (self.config.job, fit(file_context.scan.name, 255), file_context.scan.sha256, format_key(key),
                 file_context.run_id, batch.number, kind, fit(details.get(key), 255))) for key in keys]
        return statements

    def batch_row(self, file_context: FileContext, batch: Batch, whole: BatchOutcome, new: bool,
                  settled: int | None) -> tuple[str, tuple[Any, ...]]:
        """The batch's row as it stands: PARTIAL until all its keys are settled; inserted by its
        first part in this run, updated by the later ones."""
        done = len(batch.keys) if settled is None else settled
        status = whole.status if done >= len(batch.keys) else "PARTIAL"
        tables = dump_table_counts(whole.tables)
        row = (status, fit(format_key(batch.keys[0]), 255), fit(format_key(batch.keys[-1]), 255), done,
               encode_keys(whole.conflicts), batch.end_offset, batch.end_line, *whole.counts.values(), tables)
        where = (file_context.run_id, fit(file_context.scan.name, 255), batch.number)
        names = ("status", "first_key", "last_key", "keys_in_batch", "conflict_keys", "end_offset",
                 "end_line", *(c.column for c in COUNTS), "table_counts")
        if new:
            return ("INSERT INTO batch_processing_logs (process_log_id, file_name, batch_number, "
                    f"{', '.join(names)}) VALUES ({', '.join(['%s'] * (3 + len(names)))})"), (*where, *row)
        return (f"UPDATE batch_processing_logs SET {', '.join(f'{n} = %s' for n in names)} WHERE "
                "process_log_id = %s AND file_name = %s AND batch_number = %s"), (*row, *where)

    def committed_batch(self, file_context: FileContext, number: int) -> tuple[BatchOutcome, int] | None:
        """After a connection died during COMMIT: the batch as it was committed (so far, for a
        PARTIAL one), and how many of its keys are settled, if it was."""
        rows = self.db.read_dicts(
            f"SELECT status, conflict_keys, keys_in_batch, {count_columns()} FROM batch_processing_logs "
            "WHERE process_log_id = %s AND file_name = %s AND batch_number = %s AND status <> 'FAILED'",
            (file_context.run_id, fit(file_context.scan.name, 255), number))
        if not rows:
            return None
        row = rows[0]
        keys = tuple(json.loads(row["conflict_keys"])) if row["conflict_keys"] else ()
        return BatchOutcome(Counters.from_row(row, batches=1), keys, row["status"]), int(row["keys_in_batch"])

    def settled_keys(self, scan: FileScan, number: int) -> tuple[int, int] | None:
        """(keys settled, batch size) of batch `number` of this content as far as earlier runs
        moved it in parts (PARTIAL), if they did."""
        scope, params = self.file_scope()
        rows = self.db.query(
            "SELECT b.keys_in_batch, f.batch_size FROM file_processing_logs f JOIN batch_processing_logs b "
            "ON b.process_log_id = f.process_log_id AND b.file_name = f.file_name "
            f"WHERE {scope} AND f.file_name = %s AND f.file_checksum = %s AND f.status <> 'CHANGED' "
            "AND b.batch_number = %s AND b.status = 'PARTIAL' ORDER BY b.keys_in_batch DESC LIMIT 1",
            (*params, scan.name, scan.sha256, number))
        return (int(rows[0][0]), int(rows[0][1])) if rows else None

    def record_batch_failure(self, file_context: FileContext, batch: Batch, message: str) -> None:
        """Record the FAILED batch and file (the batch's own work was rolled back)."""
        self.db.execute(
            "INSERT INTO batch_processing_logs (process_log_id, file_name, batch_number, status, "
            "first_key, last_key, keys_in_batch, error_message) VALUES (%s, %s, %s, 'FAILED', %s, %s, "
            f"%s, %s){self.db.dialect.row_alias} ON DUPLICATE KEY UPDATE "
            "status = IF(status = 'PARTIAL', status, 'FAILED'), "
            f"error_message = {self.db.dialect.new_value('error_message')}",  # its parts stay settled
            (file_context.run_id, fit(file_context.scan.name, 255), batch.number,
             fit(format_key(batch.keys[0]), 255), fit(format_key(batch.keys[-1]), 255), len(batch.keys),
             fit(message)))
        self.db.execute("UPDATE file_processing_logs SET status = 'FAILED', finished_at = NOW(), "
                        "error_message = %s WHERE id = %s", (fit(message), file_context.file_id))
        self.db.execute("UPDATE process_logs SET current_batch = %s WHERE id = %s",
                        (batch.number, file_context.run_id))
        self.db.commit()

    def of_kind(self, kind: str) -> str | None:
        """The condition on conflict_logs for open rows of a kind (CONFLICT or HELD); None when
        these tables cannot hold that kind (schema 3 and older kept conflicts only)."""
        if self.version >= 4:
            return f"kind = '{kind}'"
        return "1 = 1" if kind == "CONFLICT" else None

    def open_conflicts(self, kind: str = "CONFLICT") -> dict[tuple[str, str], list[tuple[int, str]]]:
        """This job's unresolved conflicts (or rows held by the guard): (file, sha256) -> [(row id,
        key as written)]."""
        grouped: dict[tuple[str, str], list[tuple[int, str]]] = {}
        condition = self.of_kind(kind)
        if self.legacy or condition is None:
            return grouped  # schema 1 kept none in a form that can be rechecked
        for row_id, name, sha, key in self.db.read(
                "SELECT id, file_name, file_checksum, key_value FROM conflict_logs WHERE job = %s "
                f"AND status = 'OPEN' AND {condition} ORDER BY id", (self.config.job,)):
            grouped.setdefault((name, sha), []).append((int(row_id), key))
        return grouped

    def resolve_statements(self, resolved: dict[int, str], file: tuple[str, str], left: int | None,
                           changed: dict[int, str] | None = None) -> list[tuple[str, tuple[Any, ...]]]:
        """Close resolved rows, turn `changed` ones into their new kind (a held row whose archived
        copy differs is a conflict, a conflict whose copy is gone but the guard holds is held);
        a file with no conflicts `left` open becomes COMPLETED, one with a new conflict CONFLICTS."""
        statements: list[tuple[str, tuple[Any, ...]]] = [(
            ("UPDATE conflict_logs SET status = 'RESOLVED', resolution = %s, resolved_by = %s, "
             "resolved_at = NOW() WHERE id = %s AND status = 'OPEN'"), (fit(how, 255), self.run_id, row_id))
            for row_id, how in resolved.items()]
        statements += [("UPDATE conflict_logs SET kind = %s WHERE id = %s AND status = 'OPEN'",
                        (kind, row_id)) for row_id, kind in (changed or {}).items()]
        if "CONFLICT" in (changed or {}).values():
            statements.append((
                ("UPDATE file_processing_logs SET status = 'CONFLICTS' WHERE job = %s AND file_name = %s "
                 "AND file_checksum = %s AND status = 'COMPLETED'"), (self.config.job, *file)))
        if left == 0:
            statements.append((
                ("UPDATE file_processing_logs SET status = 'COMPLETED', error_message = "
                 "CONCAT_WS('; ', error_message, %s) WHERE job = %s AND file_name = %s "
                 "AND file_checksum = %s AND status = 'CONFLICTS'"),
                (f"conflicts resolved by run {self.run_id}", self.config.job, *file)))
        return statements

    def resolved_by_this_run(self, ids: Sequence[int], kind: str = "CONFLICT"
                             ) -> tuple[dict[int, str], Counters] | None:
        """After a lost COMMIT answer: the recheck's resolutions (and rows of `kind` it turned into
        the other kind), if that transaction committed.

        Its counts were added to process_logs in the same transaction; the run's totals are
        read back from there at the end.
        """
        marks = ", ".join(["%s"] * len(ids))
        rows = self.db.read(f"SELECT id, COALESCE(resolution, 'held') FROM conflict_logs WHERE id IN "
                            f"({marks}) AND ((status = 'RESOLVED' AND resolved_by = %s) OR "
                            "(status = 'OPEN' AND kind <> %s))", (*ids, self.run_id, kind))
        settled = {int(row_id): str(how) for row_id, how in rows if kind == "CONFLICT" or how != "held"}
        return (settled, Counters()) if rows else None

    def run_counts(self) -> Counters:
        """What this run committed, from process_logs: the authority when an answer was lost."""
        row = self.db.read_dicts(
            f"SELECT {count_columns('p.')}, (SELECT COUNT(*) FROM batch_processing_logs b WHERE "
            "b.process_log_id = p.id AND b.status <> 'FAILED') AS batches FROM process_logs p "
            "WHERE p.id = %s", (self.run_id,))[0]
        return Counters.from_row(row, batches=int(row["batches"]))

    def open_conflict_count(self, kind: str = "CONFLICT") -> int:
        """How many conflicts (or rows held by the guard) of this job are still open."""
        condition = self.of_kind(kind)
        if condition is None:
            return 0
        return int(self.db.read(f"SELECT COUNT(*) FROM conflict_logs WHERE job = %s AND status = 'OPEN' "
                                f"AND {condition}", (self.config.job,))[0][0])


# --------------------------------------------------------------------------- one batch

@dataclass(frozen=True)
class FileContext:
    """Where a batch belongs: run, file row, file name and content."""

    run_id: int
    file_id: int
    scan: FileScan


@dataclass
class RunContext:
    """What a run passes around: settings, connection, tracking, logs and state."""

    config: Config
    db: Database
    tracking: Tracking
    plan: TablePlan
    log: TextLog
    reporter: Reporter
    state: RunState
    log_checkpoints: dict[tuple[str, str], Checkpoint]
    mover: Mover
    controls: Controls | None = None
    dest: Database | None = None  # the destination's session, with [destination]

    def say(self, text: str, log: bool = True) -> None:
        """Tell the operator, and the text log."""
        if log:
            self.log.write(text)
        self.reporter.say(text)

    def tick(self) -> None:
        """Called during long file reads: keep the run lock's lease (and the metrics) alive."""
        self.tracking.lock.heartbeat()
        if self.controls:
            self.controls.publish()


@dataclass(frozen=True)
class ChildRow:
    """A child table's row read for another server: the listed key it descends from, its own key,
    its literal and its proof (RemotePlan)."""

    root: Key
    key: Key
    literal: str
    proof: str


@dataclass
class Classified:
    """The listed keys of a batch, sorted by what must happen to their source rows."""

    to_copy: list[Key] = field(default_factory=list)
    identical: list[Key] = field(default_factory=list)
    conflicts: list[Key] = field(default_factory=list)
    skipped: list[Key] = field(default_factory=list)
    rows: dict[Key, str] = field(default_factory=dict)  # into another server: each row as SQL literals
    proofs: dict[Key, str] = field(default_factory=dict)  # ... and what its copy is proven by
    # with child tables: (listed key, child name) -> its child rows to copy, and already archived
    child_new: dict[tuple[Key, str], int] = field(default_factory=dict)
    child_twins: dict[tuple[Key, str], int] = field(default_factory=dict)
    details: dict[Key, str] = field(default_factory=dict)  # a conflict found in a child row: which
    cut: int | None = None  # the mover handled only this many keys (from the first): max_batch_rows
    # into another server: each child table's rows, and (child name, own key) of those archived already
    family: dict[str, list[ChildRow]] = field(default_factory=dict)
    twin_rows: set[tuple[str, Key]] = field(default_factory=set)

    def moving(self) -> list[Key]:
        """The listed keys whose rows leave the source: those to copy, then the identical twins."""
        return self.to_copy + self.identical

    def moving_family(self, name: str) -> list[ChildRow]:
        """Into another server: child `name`'s rows read under the moving keys."""
        moving = set(self.moving())
        return [r for r in self.family.get(name, []) if r.root in moving]

    def family_rows(self) -> dict[Key, int]:
        """The rows each moving key moves over all tables: its own, and its descendants'."""
        rows = dict.fromkeys(self.moving(), 1)
        for tally in (self.child_new, self.child_twins):
            for (root, _), n in tally.items():
                if root in rows:
                    rows[root] += n
        return rows

    def child_counts(self, name: str) -> tuple[int, int]:
        """Rows of child `name` to copy and already archived identically, of the moving keys."""
        moving = set(self.moving())
        return tuple(sum(n for (root, child), n in tally.items() if child == name and root in moving)
                     for tally in (self.child_new, self.child_twins))  # type: ignore[return-value]

    def restricted(self, keys: Sequence[Key]) -> Classified:
        """The same, for a part of the keys only."""
        kept = set(keys)
        def among(items: list[Key]) -> list[Key]:
            return [k for k in items if k in kept]

        return Classified(among(self.to_copy), among(self.identical), among(self.conflicts),
                          among(self.skipped), {k: r for k, r in self.rows.items() if k in kept},
                          {k: p for k, p in self.proofs.items() if k in kept},
                          child_new={k: n for k, n in self.child_new.items() if k[0] in kept},
                          child_twins={k: n for k, n in self.child_twins.items() if k[0] in kept},
                          details={k: d for k, d in self.details.items() if k in kept},
                          family={name: [r for r in rows if r.root in kept]
                                  for name, rows in self.family.items()},
                          twin_rows=set(self.twin_rows))

    def hold_families(self) -> None:
        """A listed key with a differing archived child row (in `details`) is a conflict: its whole
        family stays."""
        self.conflicts += [k for k in self.moving() if k in self.details]
        self.to_copy = [k for k in self.to_copy if k not in self.details]
        self.identical = [k for k in self.identical if k not in self.details]

    def counts(self, keys: Sequence[Key], copied: int, deleted: int, settled: frozenset[Key] = frozenset()
               ) -> Counters:
        """The batch's counts once its rows moved: every listed key is accounted for once (a key
        an earlier part of the batch `settled` is not "not found" again: a batch lists a key once)."""
        present = {*self.to_copy, *self.identical, *self.conflicts, *self.skipped}
        return Counters(batches=1, archived=copied, deleted=deleted, duplicates=len(self.identical),
                        conflicts=len(self.conflicts), skipped_by_guard=len(self.skipped),
                        not_found=len(set(keys) - present - settled))


def check_fence(db: Database, tracking: Tracking, renewed: int) -> None:
    """Stop before writing anything more once the run lock belongs to another run."""
    if renewed != 1:
        db.rollback()
        tracking.lock.lost()


GATED = "@archive_py_same"  # ANDed to a batch's writes: true while the definitions gate holds


def run_checked(db: Database, checks: Definitions | None, statements: Sequence[tuple[str, Sequence[Any]]],
                first: Sequence[tuple[str, Sequence[Any]]] = ()) -> tuple[list[Any], list[Any], bool]:
    """Run `first`, the definitions gate, `statements` and the read-back of the definitions in one
    round trip; return the results of `first` and of `statements`, and whether the definitions
    are still the approved ones (rows=True results: counts, or a query's rows).

    The gate's SELECT ... FOR UPDATE takes the metadata locks the writes need before anything
    is written or read back, so no DDL on the tables can end before this transaction does.
    """
    if checks is None:
        raise ArchiveError("internal error: a plan without approved table definitions")
    script = [*first, (checks.lock_sql(db.dialect), ()), (checks.gate_sql(), ()), *statements]
    script += [(sql, ()) for sql in checks.readback_sql()]
    results = db.execute_script(script, rows=True)
    tail = len(results) - len(checks.readback_sql())
    return results[:len(first)], results[len(first) + 2:tail], checks.holds(results[tail:])


def schema_changed(db: Database, where: str) -> SchemaChanged:
    """Roll the batch back: a table it writes is not what the preflight approved any more."""
    db.rollback()
    return SchemaChanged(f"a table on {where} changed since the preflight approved it")


Step = tuple[str, int, tuple[str, Sequence[Any]]]  # what a statement does, the rows it must change, it


def checked(what: str, expected: int, got: int) -> None:
    """A row count that must be exact, or the batch is rolled back."""
    if got != expected:
        raise ArchiveError(f"safety check failed: expected {expected} rows {what} but got {got}; the batch "
                           "was rolled back")


def check_steps(steps: Sequence[Step], done: Sequence[Any]) -> None:
    """Each step changed exactly its rows (checked), or the batch fails."""
    for (what, expected, _), got in zip(steps, done):
        checked(what, expected, got)


def outcome_of_batch(counts: Counters, found: Classified) -> BatchOutcome:
    """The batch's outcome and its status in the text log."""
    status = "COMPLETED_WITH_DUPLICATES" if counts.duplicates or counts.conflicts else "COMPLETED"
    return BatchOutcome(counts, tuple(found.conflicts), status, tuple(found.skipped))


class Mover(abc.ABC):
    """How a batch's rows move: within one server (SameServer) or into the destination
    (OtherServer), inside the batch's open transaction.

    A run calls batch() for every batch and carefully() for the keys of open conflicts; the
    dry run calls classify() without locks; rollback() undoes the open transaction(s); adopt()
    goes on with a plan made for changed tables. Both movers open their transaction with
    guarded() (the lease renewal and the definitions check) and end their careful path with
    recheck_references().
    """

    def __init__(self, db: Database, plan: TablePlan, tracking: Tracking):
        self.db, self.plan, self.tracking = db, plan, tracking

    @abc.abstractmethod
    def batch(self, batch: Batch) -> BatchOutcome:
        """Move one batch inside the open transaction; return its counts and conflicting keys."""

    @abc.abstractmethod
    def carefully(self, keys: Sequence[Key]) -> tuple[Counters, Classified]:
        """Lock and compare each row: copy new ones, drop identical twins, keep conflicts."""

    @abc.abstractmethod
    def classify(self, keys: Sequence[Key], lock: bool = True) -> Classified:
        """Sort the keys' source rows into new, identical twin, conflict, or held by the guard."""

    @abc.abstractmethod
    def rollback(self) -> None:
        """Undo the open transaction(s)."""

    def adopt(self, plan: TablePlan) -> None:
        """Go on with a plan made for the tables' new definitions."""
        self.plan = plan

    def guarded(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Run statements after the lease renewal and the definitions gate (run_checked), in the
        batch's transaction; stop when either no longer holds. Returns the statements' results."""
        (renewed,), results, holds = run_checked(self.db, self.plan.definitions, statements,
                                                 [self.tracking.lock.fence()])
        check_fence(self.db, self.tracking, renewed)
        if not holds:
            raise schema_changed(self.db, self.db.where)
        return results

    def recheck_references(self) -> None:
        """After the careful path's last DELETE: the foreign keys that reach the source are still the
        approved ones (Definitions.gate_sql says why this must follow the writes)."""
        self.check_references(self.db.query(self.references_sql()))

    def references_sql(self) -> str:
        """The read of the foreign keys that reach the source, for after a batch's last DELETE."""
        return f"SELECT {cast(Definitions, self.plan.definitions).effect_expressions()[2]}"

    def check_references(self, rows: Sequence[Any]) -> None:
        """What references_sql read must be what the preflight approved, or the batch is rolled back."""
        if list(rows) != [(cast(Definitions, self.plan.definitions).effects[2],)]:
            raise schema_changed(self.db, self.db.where)


class SameServer(Mover):
    """Archiving within one server: the copy and the delete are in one transaction."""

    def __init__(self, db: Database, plan: TablePlan, tracking: Tracking):
        super().__init__(db, plan, tracking)
        self.spans = True  # whether a batch may go as one range with a filter (Span)

    def classify(self, keys: Sequence[Key], lock: bool = True) -> Classified:
        """Lock the keys' source rows; sort them into new, identical twin, conflict, or held by the guard."""
        condition, params = self.plan.condition(keys, "s")
        listed = self.plan.keys_by_bytes(keys)
        found = Classified()
        rows = self.db.query(self.plan.classify_sql(condition, lock, self.db.dialect), params)
        for raw, passes_guard, archived, same in rows:
            key = listed_key(listed, raw)
            if not passes_guard:  # held back, yet archived too: in both tables, for a human
                (found.conflicts if archived else found.skipped).append(key)
            elif not archived:
                found.to_copy.append(key)
            elif same:
                found.identical.append(key)
            else:
                found.conflicts.append(key)
        return found

    def carefully(self, keys: Sequence[Key]) -> tuple[Counters, Classified]:
        """Lock and compare each row: copy new ones, drop identical twins, keep conflicts."""
        self.guarded([])
        found = self.classify(keys)
        copied = deleted = twins = 0
        if found.to_copy:
            condition, params = self.plan.condition(found.to_copy)
            copied = self.db.execute(self.plan.insert_sql(condition), params)
            deleted = self.db.execute(self.plan.delete_sql(condition, len(found.to_copy)), params)
            checked("copied", len(found.to_copy), copied)
            checked("deleted", len(found.to_copy), deleted)
        if found.identical:  # compared under the FOR UPDATE locks taken by classify: still identical
            condition, params = self.plan.condition(found.identical)
            twins = self.db.execute(self.plan.delete_sql(condition, len(found.identical)), params)
            checked("deleted as identical twins", len(found.identical), twins)
        self.recheck_references()
        return found.counts(keys, copied, deleted + twins), found

    def batch(self, batch: Batch) -> BatchOutcome:
        """Move one batch inside the open transaction; return its counts and conflicting keys.

        The fast path renews the run lock, copies, then deletes the batch's keys in one
        round trip (sparse integer keys as one range, when a locking read shows it holds
        only listed rows). A duplicate key, a guard or a count mismatch sends the batch
        down the careful path, which locks and compares every row first.
        """
        if not self.plan.guard:
            try:
                span = self.plan.span_of(batch.keys) if self.spans else None
                outcome = self.by_span(batch, span) if span else None
                if outcome is None:
                    condition, params = self.plan.condition(batch.keys)
                    outcome = self.move(batch, condition, params)
                if outcome is not None:
                    return outcome
            except mysql.connector.Error as exc:
                if exc.errno != ER_DUP_ENTRY:
                    raise
            self.db.rollback()
        return outcome_of_batch(*self.carefully(batch.keys))

    def by_span(self, batch: Batch, span: Span) -> BatchOutcome | None:
        """The batch as one filtered key range, if the range holds no unlisted row.

        One round trip: the count goes into a session variable, and the INSERT and DELETE
        are conditioned on it being 0 (a constant to the optimizer: when it is not, they
        read and lock nothing).
        """
        condition = f"{span.condition} AND @archive_py_unlisted = 0 AND {GATED}"
        _, copied, deleted, [(unlisted,)] = self.guarded([
            (span.unlisted_sql, ()), (self.plan.insert_sql(condition), ()),
            (self.plan.delete_sql(condition, len(set(batch.keys))), ()), ("SELECT @archive_py_unlisted", ())])
        if unlisted:  # interleaved with live rows: key lists, which lock only the listed rows
            self.db.rollback()
            self.spans = False
            return None
        return self.counted(batch, copied, deleted)

    def move(self, batch: Batch, condition: str, params: tuple[Any, ...]) -> BatchOutcome | None:
        """Copy then delete by `condition` in one round trip; None (rolled back) if the counts differ.

        INSERT ... SELECT takes shared locks on the rows it copies, so the DELETE removes
        exactly those rows unless a row came into being in between: then the counts differ.
        """
        gated = f"({condition}) AND {GATED}"
        copied, deleted = self.guarded([(self.plan.insert_sql(gated), params),
                                        (self.plan.delete_sql(gated, len(set(batch.keys))), params)])
        return self.counted(batch, copied, deleted)

    def counted(self, batch: Batch, copied: int, deleted: int) -> BatchOutcome | None:
        """The fast path's outcome, or None (rolled back) when the two counts differ."""
        if copied != deleted:
            self.db.rollback()
            return None
        counts = Counters(batches=1, archived=copied, deleted=deleted,
                          not_found=len(set(batch.keys)) - copied)
        return BatchOutcome(counts, (), "COMPLETED")

    def rollback(self) -> None:
        """Undo the open transaction."""
        self.db.rollback()


# --------------------------------------------------------------------------- child tables

def family_too_big(key: Key, rows: int, limit: int) -> ArchiveError:
    """A listed row whose family alone is more than one transaction may move: its file fails."""
    return ArchiveError(f"key {format_key(key)} moves {rows} rows with its child rows, more than [archive] "
                        f"max_batch_rows {limit} allows in one transaction; raise max_batch_rows (and, on "
                        "Galera, wsrep_max_ws_rows) for it")


class InParts(Mover):
    """What the movers with child tables share (Family, FamilyElsewhere): a batch moves as many of its
    keys (from the first) as fit max_batch_rows with their child rows, the rest is the next part of
    the batch (BatchOutcome.keys_done); `moved` holds the last batch's child rows per table."""

    moved: dict[str, list[int]]  # child name -> rows archived, deleted, deleted as twins

    def part_of(self, batch: Batch) -> Sequence[Key]:
        """The batch's keys, or when its rows may be more than max_batch_rows (counted with the run
        lock's renewal) the first ones that fit, picked by a read that locks nothing: so a part locks
        only the rows it moves (the locked read checks again; rows added since only make it shorter)."""
        condition, params = self.plan.condition(batch.keys, "s")
        [[family]] = self.guarded([(self.plan.family_count_sql(condition), params * len(self.plan.children))])
        if len(set(batch.keys)) + sum(family) <= self.tracking.config.batch_rows:
            return batch.keys
        return self.fitting_keys(batch.keys, self.unlocked(batch.keys))

    def unlocked(self, keys: Sequence[Key]) -> Classified:
        """The keys' rows as a read that locks nothing finds them (to pick a part)."""
        return self.classify(keys, lock=False)

    def fit(self, keys: Sequence[Key], found: Classified) -> tuple[Sequence[Key], Classified]:
        """The keys (from the first) whose rows, as classified under the locks, fit max_batch_rows."""
        fitting = self.fitting_keys(keys, found)
        return (keys, found) if len(fitting) == len(keys) else (fitting, found.restricted(fitting))

    def fitting_keys(self, keys: Sequence[Key], found: Classified) -> Sequence[Key]:
        """The longest run of keys from the first whose rows over all tables fit max_batch_rows."""
        limit, rows, sizes = self.tracking.config.batch_rows, 0, found.family_rows()
        for index, key in enumerate(keys):
            size = sizes.pop(key, 0)  # a key listed twice moves its rows once
            if rows + size > limit:
                if index == 0:
                    raise family_too_big(key, size, limit)
                return keys[:index]
            rows += size
        return keys

    def delete_steps(self, keys: Sequence[Key], rows: dict[str, int]) -> list[Step]:
        """Deleting the child rows of `keys` bottom up (`rows` of each child table: as many as read
        under the locks), then their rows: each statement with the count it must have."""
        condition, params = self.plan.condition(keys, "s")
        steps = [(f"deleted from `{c.source}`", rows[c.name],
                  (self.plan.child_delete_sql(c, condition), params)) for c in reversed(self.plan.children)]
        condition, params = self.plan.condition(keys)
        return steps + [("deleted", len(keys), (self.plan.delete_sql(condition, len(keys)), params))]

    def family_outcome(self, counts: Counters, found: Classified, done: int) -> BatchOutcome:
        """A part's outcome: its counts, the keys it handled and each child table's rows."""
        tables = tuple((c.name, *self.moved[c.name][:3]) for c in self.plan.children)
        return dataclasses.replace(outcome_of_batch(counts, found), keys_done=done,
                                   tables=cast(tuple[tuple[str, int, int, int], ...], tables),
                                   details=tuple(found.details.items()))


class Family(InParts, SameServer):
    """Archiving a source table with its [child NAME] tables: a batch moves each listed row with
    every row below it, in one transaction. A batch whose rows are all new moves without locked
    reads first (quickly); any other takes the careful path: a child row archived with a different
    copy makes its listed row a conflict, and its whole family stays."""

    def __init__(self, db: Database, plan: TablePlan, tracking: Tracking):
        super().__init__(db, plan, tracking)
        self.moved = {}
        self.quick = True  # until a batch meets an archived row: then the careful path, for this run

    def classify(self, keys: Sequence[Key], lock: bool = True) -> Classified:
        """Lock the keys' source rows and their child rows; sort them as SameServer does, a key
        with a differing archived child row being a conflict."""
        found = super().classify(keys, lock)
        self.classify_children(found, lock)
        return found

    def carefully(self, keys: Sequence[Key]) -> tuple[Counters, Classified]:
        """Lock and compare each row and its child rows: move new families, keep conflicting ones; as
        many keys (from the first) as fit max_batch_rows (Classified.cut says how many, if not all)."""
        self.guarded([])
        fitting, found = self.fit(keys, self.classify(keys))
        counts, found = self.move_family(fitting, found)
        return counts, found if len(fitting) == len(keys) else dataclasses.replace(found, cut=len(fitting))

    def classify_children(self, found: Classified, lock: bool) -> None:
        """Lock and count each moving row's child rows, table by table from the top; a child row
        archived with a different copy makes its listed row a conflict: its whole family stays."""
        moving = found.moving()
        if not moving:
            return
        condition, params = self.plan.condition(moving, "s")
        listed = self.plan.keys_by_bytes(moving)
        for child in self.plan.children:
            sql = self.plan.child_classify_sql(child, condition, lock, self.db.dialect)
            rows = self.db.query(sql, params)
            for raw, archived, same, own in rows:
                key = listed_key(listed, raw)
                if archived and not same:
                    own = own.decode("utf-8", "replace") if isinstance(own, (bytes, bytearray)) else own
                    found.details.setdefault(key, f"`{child.source}` row ({', '.join(child.key)}) = ({own}) "
                                                  "is archived with a different row")
                tally = found.child_twins if archived else found.child_new
                tally[(key, child.name)] = tally.get((key, child.name), 0) + 1
        found.hold_families()

    def batch(self, batch: Batch) -> BatchOutcome:
        """The batch with its child rows, as many of its keys (from the first) as fit max_batch_rows."""
        keys = self.part_of(batch)
        if self.quick and not self.plan.guard and not batch.settled and len(keys) == len(batch.keys):
            outcome = self.quickly(batch)
            if outcome is not None:
                return outcome
            keys = self.part_of(batch)  # rolled back: the careful path opens the transaction again
        keys, found = self.fit(keys, self.classify(keys))
        counts, found = self.move_family(keys, found, batch.settled)
        return self.family_outcome(counts, found, len(keys))

    def quickly(self, batch: Batch) -> BatchOutcome | None:
        """The whole batch (it fits max_batch_rows, as counted) in one round trip without the locked
        reads: copy each table's rows top down and delete them bottom up; None, rolled back, when a
        row is archived already (a duplicate key), a delete's count is not its copy's or the family
        grew past a Galera write-set limit.

        An INSERT ... SELECT takes shared locks on the rows it copies (and on the index ranges it
        reads them through), so each DELETE removes exactly the rows its table's copy took, unless
        a row came into being in between: then the counts differ (SameServer.move's rule, per table).
        Everything after the listed rows' copy runs only if it copied every listed key (a child read
        by its own column, direct_rows, is then exactly the join's rows); a batch with keys not found
        takes the careful path, and the next batch tries again.
        """
        keys, children, listed = batch.keys, self.plan.children, len(set(batch.keys))
        condition, params = self.plan.condition(keys)
        joined, joined_params = self.plan.condition(keys, "s")
        every = f" AND @archive_py_copied = {listed}"  # a constant to the optimizer: else nothing is read
        sources = {c.name: self.plan.direct_rows(c, keys) or ("", joined, joined_params) for c in children}
        script = [(self.plan.insert_sql(condition), params),
                  ("SELECT ROW_COUNT() INTO @archive_py_copied", ())]
        script += [(self.plan.child_insert_sql(c, f"({where}){every}", False, rows), p)
                   for c in children for rows, where, p in [sources[c.name]]]
        script += [(self.plan.child_delete_sql(c, f"({where}){every}", rows), p)
                   for c in reversed(children) for rows, where, p in [sources[c.name]]]
        script += [(self.plan.delete_sql(f"({condition}){every}", listed), params),
                   (self.references_sql(), ())]
        try:
            copied, _, *counts, deleted, references = self.db.execute_script(script, rows=True)
        except mysql.connector.Error as exc:
            # Rows added to the family since the lock-free count can outgrow the write set the
            # preflight fitted to Galera's limits: the careful path cuts the batch under its locks.
            if exc.errno != ER_DUP_ENTRY and not (self.db.wsrep and explain_write_set_error(exc, 0)):
                raise
            self.not_quickly(again=False)
            return None
        copies, deletes = counts[:len(children)], counts[len(children):][::-1]
        if copies != deletes or copied != deleted or copied + sum(copies) > self.tracking.config.batch_rows:
            self.not_quickly(again=deleted == 0 and 0 < copied < listed)  # only keys not found
            return None
        self.check_references(references)
        self.moved = {c.name: [n, n, 0] for c, n in zip(children, copies)}
        done = Counters(batches=1, archived=copied, deleted=deleted, not_found=listed - copied)
        return self.family_outcome(done, Classified(), len(keys))

    def not_quickly(self, again: bool) -> None:
        """Roll the quick attempt back: the careful path takes the batch, and, unless `again` (the
        attempt only met keys that are not found), every later batch of the run."""
        self.db.rollback()
        self.quick = again

    def move_family(self, keys: Sequence[Key], found: Classified, settled: frozenset[Key] = frozenset()
                    ) -> tuple[Counters, Classified]:
        """Copy the moving rows and their child rows top down, then delete them bottom up, in one
        round trip: every count as classified under the locks, or the batch is rolled back."""
        moving = found.moving()
        self.moved = {c.name: [0, 0, 0] for c in self.plan.children}
        if not moving:
            return found.counts(keys, 0, 0, settled), found
        steps: list[Step] = []
        if found.to_copy:
            condition, params = self.plan.condition(found.to_copy)
            steps.append(("copied", len(found.to_copy), (self.plan.insert_sql(condition), params)))
        condition, params = self.plan.condition(moving, "s")
        counts = {c.name: found.child_counts(c.name) for c in self.plan.children}
        steps += [(f"copied into `{c.archive}`", counts[c.name][0],
                   (self.plan.child_insert_sql(c, condition, counts[c.name][1] > 0), params))
                  for c in self.plan.children if counts[c.name][0]]
        steps += self.delete_steps(moving, {name: sum(n) for name, n in counts.items()})
        *done, references = self.db.execute_script(  # the references are read after the deletes
            [sql for _, _, sql in steps] + [(self.references_sql(), ())], rows=True)
        check_steps(steps, done)
        self.check_references(references)
        # every count is now the one classified under the locks
        self.moved = {name: [new, new + twins, twins] for name, (new, twins) in counts.items()}
        return found.counts(keys, len(found.to_copy), len(moving), settled), found


# --------------------------------------------------------------------------- the batch transaction

def current_definitions(context: RunContext) -> tuple[Definitions | None, Definitions | None]:
    """The definitions of the tables the run writes, read now on each server."""
    plan = context.plan
    context.db.ensure_connected()  # the batch's rollback forgets a session that was gone
    if context.dest is not None:
        context.dest.ensure_connected()
    here = read_definitions(context.db, plan.definitions) if plan.definitions else None
    there = read_definitions(context.dest, plan.dest_definitions) \
        if context.dest is not None and plan.dest_definitions else None
    return here, there


def definitions_changed(context: RunContext) -> bool:
    """Whether a table the run writes differs from what the preflight approved."""
    return current_definitions(context) != (context.plan.definitions, context.plan.dest_definitions)


def adopt_definitions(context: RunContext, label: str, cause: str, changes: int) -> None:
    """A table changed during the run: go on with a new plan if only columns and keys changed, the
    preflight passes again and the key is the same (so the files' keys still mean what they were
    validated as), else stop.

    Engines, triggers and the foreign keys that reach the source are what a DBA accepted (or the
    preflight refused) when the run began; when they change, the run stops and the rerun's
    preflight decides again. Either way the transaction that met the change was rolled back:
    nothing of it moved.
    """
    old = context.plan
    here, there = current_definitions(context)
    what = "; ".join(describe_definition_changes(old.definitions, here)
                     + describe_definition_changes(old.dest_definitions, there)) or "no difference is left"
    found = run_preflight(context.db, context.config, context.dest)
    new = found.plan
    problems = found.problems or ([] if new else ["no plan"])
    if new is not None and not problems and (new.key, new.key_type) != (old.key, old.key_type):
        problems = [(f"the key is now {new.key_text} ({new.key_type.sql_type}), but the CSV files were "
                     f"validated for {old.key_text} ({old.key_type.sql_type})")]
    if new is not None and not problems and (new.definitions, new.dest_definitions) != (here, there):
        problems = ["the tables changed again during the new preflight"]
    effects = [d.effects if d else None for d in (old.definitions, old.dest_definitions)]
    if not problems and effects != [d.effects if d else None for d in (here, there)]:
        problems = [("a run goes on only through changes to columns and keys, and the engines, triggers "
                     "or foreign keys changed: rerun, and its preflight decides on them again")]
    if changes > 3:
        problems.append("the tables changed again after each of three new preflights")
    if problems or new is None:
        raise ArchiveError(f"{label} was rolled back, nothing of it moved: {cause}: the tables changed "
                           f"during the run ({what}); the run cannot go on: {'; '.join(problems)}; see the "
                           "README's \"Changing a table that is being archived\", then rerun")
    context.say(f"SCHEMA_CHANGED: {what}; the preflight passed again, so {label} goes on with the new "
                f"definition ({plural(len(new.columns), 'column')} copied)")
    context.plan = new
    context.mover.adopt(new)


def retry_transaction(context: RunContext, label: str, attempt: Callable[[], T],
                      recover: Callable[[], T | None] = lambda: None) -> T:
    """Run one transaction, retrying deadlocks, certification conflicts, lock waits and lost nodes.

    Retries go on for [archive] retry_timeout with jittered, capped backoff. After a
    lost connection the session moves to the next host; `recover` then says whether
    the COMMIT whose answer was lost had in fact committed. A transaction that met a
    table changed since the preflight (or failed on it) is redone with a new plan if
    the preflight passes again (adopt_definitions), without counting as a retry.
    """
    db, config = context.db, context.config
    deadline, tries, changes = None, 0, 0
    while True:
        tries += 1
        try:
            if db.conn is None:
                db.connect(move_on=True)
                recovered = recover()
                if recovered is not None:
                    return recovered
            return attempt()
        except SchemaChanged as exc:
            context.mover.rollback()
            changes, tries = changes + 1, tries - 1
            adopt_definitions(context, label, str(exc), changes)
        except (mysql.connector.Error, Unreachable, DestinationError) as failure:
            cause = failure.cause if isinstance(failure, DestinationError) else failure  # judged by it
            context.mover.rollback()
            if is_connection_error(cause) and not isinstance(failure, DestinationError):
                db.disconnect()
            failed_on = context.dest if isinstance(failure, DestinationError) else db
            # Galera's write-set limits only where Galera runs: elsewhere 1105 is any "unknown error".
            galera = failed_on is not None and failed_on.wsrep
            too_big = explain_write_set_error(cause, config.batch_size) if galera else None
            if too_big:
                raise ArchiveError(too_big) from cause
            deadline = deadline or time.monotonic() + config.retry_timeout
            out_of_tries = config.max_retries is not None and tries > config.max_retries
            if not (isinstance(cause, Unreachable) or is_transient(cause)) or out_of_tries \
                    or time.monotonic() >= deadline:
                if isinstance(cause, mysql.connector.Error) and not is_transient(cause) \
                        and definitions_changed(context):  # the error may be the change's doing
                    changes, tries = changes + 1, tries - 1
                    adopt_definitions(context, label, describe_mysql_error(cause), changes)
                    continue
                raise
            wait = backoff_seconds(tries)
            what = describe_mysql_error(cause) if isinstance(cause, mysql.connector.Error) else str(cause)
            context.say(f"RETRY: {label} attempt {tries + 1} after {what}; waiting {wait:.1f}s")
            time.sleep(wait)


def commit_part(context: RunContext, file_context: FileContext, batch: Batch, earlier: BatchOutcome | None,
                done: int) -> tuple[BatchOutcome, int]:
    """Move, record and commit the batch's keys from `done` on as one transaction, with retries;
    return the batch so far and how many of its keys are settled (all, unless max_batch_rows cut it)."""
    part = dataclasses.replace(batch, keys=batch.keys[done:], settled=frozenset(batch.keys[:done]))

    def attempt() -> tuple[BatchOutcome, int]:
        outcome = context.mover.batch(part)
        settled = done + (len(part.keys) if outcome.keys_done is None else outcome.keys_done)
        # One round trip for the tracking rows and the COMMIT: the transaction's only commit.
        tracked = context.tracking.batch_statements(file_context, batch, outcome, earlier, settled)
        context.db.execute_script(tracked + [("COMMIT", ())])
        context.tracking.lock.last_beat = time.monotonic()
        return merge_outcomes(earlier, outcome), settled

    def recover() -> tuple[BatchOutcome, int] | None:
        committed = context.tracking.committed_batch(file_context, batch.number)
        return committed if committed is not None and committed[1] > done else None

    return retry_transaction(context, f"Batch {batch.number}", attempt, recover)


def commit_batch(context: RunContext, file_context: FileContext, batch: Batch, done: int = 0) -> BatchOutcome:
    """Move, record and commit one batch as one transaction; a batch whose rows over all tables are
    more than max_batch_rows as several, from its first key not `done` (recorded PARTIAL until the
    last, so that a rerun goes on from the first key not settled)."""
    earlier: BatchOutcome | None = None
    while True:
        earlier, done = commit_part(context, file_context, batch, earlier, done)
        if done >= len(batch.keys):
            return earlier
        context.say(f"PART: Batch {batch.number} - {done} of {len(batch.keys)} keys moved with their child "
                    f"rows (max_batch_rows {context.config.batch_rows}); the next part goes on from key "
                    f"{format_key(batch.keys[done])}")


# --------------------------------------------------------------------------- destination mode

def json_hint(plan: TablePlan) -> str:
    """What a differing copy may be when the rows have MySQL JSON: a type its text cannot carry."""
    if not any(c.data_type == "json" for table in (plan, *plan.children) for c in table.columns):
        return ""
    return (" (or a JSON value with a scalar whose type its text does not carry: DECIMAL, DATE, TIME, "
            "DATETIME, binary, UNSIGNED below 2^63; such rows can be archived on their own server only)")


@dataclass(frozen=True)
class Copies:
    """Rows one INSERT sequence writes into one archive table on the destination, and their proofs."""

    remote: RemotePlan
    keys: list[Key]
    literals: list[str]
    proofs: list[str]


class OtherServer(Mover):
    """Archiving into another server, with no distributed transaction.

    The source transaction locks and reads the batch's rows; the destination inserts
    them, reads back their fingerprints (SHA-256 over an exact text of every column),
    and commits only if each equals the source's; then the source deletes exactly
    those rows, records the batch and commits. A crash between the two commits leaves
    identical copies that the next attempt finds as twins, so no row is ever in
    neither place, and a row that changed in between is a conflict, kept in both.
    """

    def __init__(self, db: Database, dest: Database, plan: TablePlan, tracking: Tracking):
        super().__init__(db, plan, tracking)
        self.dest, self.remote = dest, RemotePlan(plan)
        self.packet = int(dest.variable("max_allowed_packet") or 4 << 20)
        self.zone = str(db.query("SELECT @@SESSION.time_zone")[0][0])  # the source session's own
        self.beside = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="archive-destination")

    def read(self, keys: Sequence[Key], lock: bool = True, fence: bool = False) -> Classified:
        """Read (and lock) the source rows of `keys`, as literals (Classified.rows) and proofs;
        sort out those the guard holds back.

        With fence, the run lock's renewal and the check of the source's definitions go in the
        same round trip, and so does the savepoint that undoing a delete returns to (keeping the
        read's locks).
        """
        condition, params = self.plan.condition(keys, "s")
        statements = [(self.remote.read_sql(condition, lock), params)]
        if self.plan.recomputed:
            statements += [(sql, params if "%s" in sql else ()) for sql in
                           self.remote.recomputed_sql(condition, self.zone)]
        if fence:
            statements.append(("SAVEPOINT archive_py_read", ()))
        results = self.guarded(statements) if fence else self.db.execute_script(statements, rows=True)
        listed = self.plan.keys_by_bytes(keys)
        recomputed = self.remote.recomputed_rows(results[1:]) if self.plan.recomputed else {}
        found = Classified()
        for raw, passes_guard, literal in results[0]:
            key = listed_key(listed, raw)
            extra = recomputed.get(raw_key(raw), "")
            if literal is None or extra is None:  # CONCAT gives NULL past max_allowed_packet
                raise ArchiveError(f"row {format_key(key)} is too large to copy through the client: "
                                   "raise max_allowed_packet on the source and the destination; "
                                   "nothing was moved")
            if passes_guard:
                found.rows[key] = literal
                found.proofs[key] = literal + extra
            else:
                found.skipped.append(key)
        found.to_copy = list(found.rows)
        return found

    def classify(self, keys: Sequence[Key], lock: bool = True) -> Classified:
        """Read the source rows, then compare them with what the destination holds."""
        found = self.read(keys, lock)
        self.flag_guarded_copies(found)
        self.on_destination(self.sort_out, found, lock)
        return found

    def sort_out(self, found: Classified, lock: bool = True) -> None:
        """On the destination: which rows to copy are new, identical twins or conflicts."""
        self.compare(found, self.lookup(found.to_copy, lock))
        self.set_aside_collisions(found)

    def flag_guarded_copies(self, found: Classified) -> None:
        """A row the guard holds back whose key is archived as well is in both tables: a conflict.

        (A kill between the two commits leaves such a copy when the row changed since.)
        """
        if found.skipped:
            archived = self.on_destination(self.lookup, found.skipped, False)
            self.dest.rollback()  # a plain read: no snapshot kept open on the destination
            found.conflicts += [k for k in found.skipped if k in archived]
            found.skipped = [k for k in found.skipped if k not in archived]

    def compare(self, found: Classified, archived: dict[Key, str]) -> None:
        """Split the rows to copy into new ones, identical twins and conflicts."""
        keys, found.to_copy = found.to_copy, []
        for key in keys:
            if key not in archived:
                found.to_copy.append(key)
            elif archived[key] == fingerprint_of(found.proofs[key]):
                found.identical.append(key)
            else:
                found.conflicts.append(key)

    def lookup(self, keys: Sequence[Key], lock: bool = True, remote: RemotePlan | None = None
               ) -> dict[Key, str]:
        """Fingerprints of the archived rows (of the job's table, or `remote`'s) with exactly these keys."""
        if not keys:
            return {}
        remote = remote or self.remote
        condition, params = remote.table.condition(keys, "a")
        listed = remote.table.keys_by_bytes(keys)
        sql = remote.lookup_sql(condition, lock, self.dest.dialect)
        return {listed_key(listed, raw): fingerprint
                for raw, fingerprint in self.dest.query(sql, params)}

    def on_destination(self, step: Callable[..., T], *args: Any) -> T:
        """Run a step on the destination; its server errors come out as DestinationError, so that
        only the destination's session is replaced when it was lost."""
        try:
            self.dest.ensure_connected()
            return step(*args)
        except mysql.connector.Error as exc:
            self.dest.rollback()
            if is_connection_error(exc):
                self.dest.disconnect()
            raise DestinationError(f"{describe_mysql_error(exc)} (on the destination {self.dest.where})",
                                   exc) from exc

    def carefully(self, keys: Sequence[Key]) -> tuple[Counters, Classified]:
        """Copy to the destination and commit there, and delete from the source (not committed).

        The source deletes the rows while the destination inserts them; the destination
        commits only when both did exactly their part, and the source's commit after it
        stays the moment a row leaves. When a key is archived already (1062), the delete
        is undone and the batch goes step by step: look up twins and conflicts, insert
        the rest, commit there, then delete.
        """
        return self.move_read(keys, self.read_checked(keys))

    def move_read(self, keys: Sequence[Key], found: Classified, settled: frozenset[Key] = frozenset()
                  ) -> tuple[Counters, Classified]:
        """carefully() once the rows are read and locked (read_checked)."""
        proven = not found.skipped  # flag_guarded_copies ends the transaction the check began
        self.flag_guarded_copies(found)
        deleted = self.move_side_by_side(found, proven) if found.to_copy else None
        if deleted is None:
            if found.to_copy:
                self.on_destination(self.copy, found)
            else:
                self.dest.rollback()  # nothing to insert: the check's metadata locks end with the batch
            deleted = self.delete_locked(found, found.to_copy + found.identical)
            self.recheck_references()
        return found.counts(keys, len(found.to_copy), deleted, settled), found

    def read_checked(self, keys: Sequence[Key]) -> Classified:
        """read() with the fence, while the destination proves its table is still what the preflight
        approved (check_destination): the metadata locks that check takes are held until the
        destination's transaction ends, so it may run before the rows are known."""
        checking = self.beside.submit(self.on_destination, self.check_destination)
        try:
            found = self.read(keys, fence=True)
        except BaseException:
            checking.exception()  # the destination's statement must end before its rollback
            self.dest.rollback()
            raise
        checking.result()
        return found

    def move_side_by_side(self, found: Classified, proven: bool) -> int | None:
        """Insert on the destination while the source deletes the same locked rows (and rechecks the
        foreign keys that reach it), then commit the destination; the rows deleted, or None (delete
        undone) if a key was archived already. `proven`: the destination's check holds already."""
        inserting = self.beside.submit(self.on_destination, self.insert, found, found.to_copy, proven)
        try:
            deleted = self.delete_locked(found, found.to_copy)
            self.recheck_references()
        except BaseException:
            inserting.exception()  # the destination's statement must end before its rollback
            self.dest.rollback()
            raise
        failure = inserting.exception()
        if isinstance(failure, DestinationError) and getattr(failure.cause, "errno", None) == ER_DUP_ENTRY:
            self.db.execute("ROLLBACK TO SAVEPOINT archive_py_read")
            return None
        if failure is not None:
            self.dest.rollback()
            raise failure
        self.on_destination(self.commit_copies, found, found.to_copy, inserting.result())
        return deleted

    def delete_locked(self, found: Classified, keys: list[Key]) -> int:
        """Delete the rows this transaction has locked; all of them, or the batch fails."""
        if not keys:
            return 0
        condition, params = self.plan.condition(keys)
        deleted = self.db.execute(self.plan.delete_sql(condition, len(keys)), params)
        checked("deleted", len(keys), deleted)
        return deleted

    def copy(self, found: Classified) -> None:
        """Insert the new rows on the destination, prove them identical, and commit there."""
        try:
            same = self.insert(found, found.to_copy)
        except mysql.connector.Error as exc:
            if exc.errno != ER_DUP_ENTRY:
                raise
            self.dest.rollback()  # some are archived already: sort them out, then insert the rest
            self.sort_out(found)
            same = self.insert(found, found.to_copy)
        self.commit_copies(found, found.to_copy, same)

    def commit_copies(self, found: Classified, keys: list[Key], same: bool) -> None:
        """Commit the destination once its copies are proven identical (row by row when the
        batch's check failed: it may only have been cut short)."""
        if not same:
            differ = [format_key(k) for copies in self.copies(found, keys) for k in self.differing(copies)]
            if differ:
                self.dest.rollback()
                raise ArchiveError(f"the copies on the destination would differ from the source rows "
                                   f"(keys {', '.join(differ[:SHOWN_KEYS])}): a column the destination "
                                   f"stores differently{json_hint(self.plan)}; nothing was moved")
        self.dest.commit()

    def differing(self, copies: Copies) -> list[Key]:
        """The keys whose archived row is not the copy its proof says."""
        archived = self.lookup(copies.keys, False, copies.remote)
        return [k for k, proof in zip(copies.keys, copies.proofs) if archived.get(k) != fingerprint_of(proof)]

    def set_aside_collisions(self, found: Classified) -> None:
        """Keys equal to an archived key only under the column's collation are conflicts."""
        collides = self.collisions(self.remote, found.to_copy)
        found.conflicts += [k for k in found.to_copy if k in collides]
        found.to_copy = [k for k in found.to_copy if k not in collides]

    def collisions(self, remote: RemotePlan, keys: Sequence[Key]) -> set[Key]:
        """The keys (of `remote`'s table) that equal an archived key under the columns' collations."""
        if not keys or not remote.table.text_key:
            return set()
        hits = self.dest.execute_script([remote.collides(k) for k in keys])
        return {k for k, hit in zip(keys, hits) if hit}

    def copies(self, found: Classified, keys: list[Key]) -> list[Copies]:
        """What inserting `keys`' rows writes on the destination."""
        return [Copies(self.remote, keys, [found.rows[k] for k in keys], [found.proofs[k] for k in keys])]

    def insert(self, found: Classified, keys: list[Key], proven: bool = False) -> bool:
        """Insert rows in INSERTs that each fit max_allowed_packet (a round trip each: a script
        is one packet), and with the last one check that the destination holds exactly their
        texts: one aggregate per table, not a row each. Unless `proven`, check the destination first."""
        copies = [c for c in self.copies(found, keys) if c.keys]
        if not copies:
            return True
        if not proven:
            self.check_destination()
        inserts: list[tuple[str, Sequence[Any]]] = [
            (c.remote.insert_sql(chunk), ()) for c in copies for chunk in self.chunks(c.literals, len)]
        checks: list[tuple[str, Sequence[Any]]] = [
            (c.remote.verify_sql(condition), params) for c in copies
            for condition, params in [c.remote.table.condition(c.keys, "a")]]
        # A script is one packet: the statements go in as few scripts as fit it (the checks of every
        # table's keys, up to max_batch_rows of them, with the last INSERT when there is room).
        results = [result for script in self.chunks(inserts + checks, statement_bytes)
                   for result in self.dest.execute_script(script, rows=True)]
        checked("inserted on the destination", sum(len(c.keys) for c in copies), sum(results[:len(inserts)]))
        return all(tuple(rows[0]) == (len(c.keys), batch_fingerprint_of(c.proofs))
                   for c, rows in zip(copies, results[len(inserts):]))

    def check_destination(self) -> None:
        """Lock the archive table on the destination as the INSERT will, and prove it is still what
        the preflight approved, before anything is written there (the INSERT of literal rows
        cannot be conditioned on the gate, so this is a round trip of its own)."""
        _, _, holds = run_checked(self.dest, self.plan.dest_definitions, [])
        if not holds:
            raise schema_changed(self.dest, self.dest.where)

    def adopt(self, plan: TablePlan) -> None:
        """Go on with a plan made for the tables' new definitions."""
        self.plan, self.remote = plan, RemotePlan(plan)

    def chunks(self, items: Sequence[T], size: Callable[[T], int]) -> Iterator[list[T]]:
        """Items (an INSERT's row literals, a script's statements) grouped so that each group fits
        the destination's max_allowed_packet."""
        chunk: list[T] = []
        total = 0
        for item in items:
            length = size(item) + 2
            if chunk and total + length > self.packet * 3 // 4:
                yield chunk
                chunk, total = [], 0
            chunk.append(item)
            total += length
        if chunk:
            yield chunk

    def batch(self, batch: Batch) -> BatchOutcome:
        """Move one batch: the copy is committed on the destination, the delete is left open."""
        return outcome_of_batch(*self.carefully(batch.keys))

    def rollback(self) -> None:
        """Undo both open transactions (a committed destination copy stays: it is a twin now)."""
        self.db.rollback()
        self.dest.rollback()
        if self.plan.recomputed and self.db.conn is not None:  # a read cut short may have left UTC
            with contextlib.suppress(mysql.connector.Error):
                self.db.execute(f"SET SESSION time_zone = {sql_literal(self.zone)}")


# --------------------------------------------------------------------------- families elsewhere

def decode_child_key(child: ChildPlan, root: Key, raw: Any) -> Key:
    """A child row's own key as read from the source, to look it up on the destination; a key no
    Python value holds (a zero date, '0000-00-00') is an error naming the row, not a crash."""
    try:
        return child.key_type.decode(raw)
    except ValueError as exc:
        stored = raw if isinstance(raw, int) else bytes(raw).decode("utf-8", "replace")
        raise ArchiveError(f"a `{child.source}` row of key {format_key(root)} has a key "
                           f"({', '.join(child.key)}) stored as {stored!s} that cannot be looked up "
                           f"on the destination ({exc}): correct that row (a zero date?) or leave key "
                           f"{format_key(root)} out; nothing was moved") from exc


class FamilyElsewhere(InParts, OtherServer):
    """Archiving a source table with its [child NAME] tables into another server: OtherServer's
    protocol over every table of the family.

    The source locks the listed rows and every row below them (read as literals, table by table
    from the top); the destination inserts them top down, proves each table's copies and commits;
    then the source deletes them bottom up, and commits. A child row archived with a different
    copy (or a key equal to an archived one under its collation) makes its listed row a
    conflict: its whole family stays.
    """

    def __init__(self, db: Database, dest: Database, plan: TablePlan, tracking: Tracking):
        super().__init__(db, dest, plan, tracking)
        self.moved = {}
        self.remotes = {c.name: RemotePlan(plan, c) for c in plan.children}

    def adopt(self, plan: TablePlan) -> None:
        """Go on with a plan made for the tables' new definitions."""
        super().adopt(plan)
        self.remotes = {c.name: RemotePlan(plan, c) for c in plan.children}

    def read(self, keys: Sequence[Key], lock: bool = True, fence: bool = False) -> Classified:
        """OtherServer.read, then the child rows of the rows to copy."""
        found = super().read(keys, lock, fence)
        self.read_children(found, lock)
        return found

    def unlocked(self, keys: Sequence[Key]) -> Classified:
        """The keys' rows and child rows as a read that locks nothing finds them (to pick a part)."""
        return self.read(keys, lock=False)

    def read_children(self, found: Classified, lock: bool) -> None:
        """Read (and lock) each child table's rows below the rows to copy, in one round trip."""
        found.family = {c.name: [] for c in self.plan.children}
        if not found.to_copy:
            return
        condition, params = self.plan.condition(found.to_copy, "s")
        statements: list[tuple[str, Sequence[Any]]] = []
        sizes = []  # how many statements (and results) each child has
        for child in self.plan.children:
            remote = self.remotes[child.name]
            extra = remote.recomputed_sql(condition, self.zone) if child.recomputed else []
            statements += [(remote.read_sql(condition, lock), params),
                           *((sql, params if "%s" in sql else ()) for sql in extra)]
            sizes.append(1 + len(extra))
        results = self.db.execute_script(statements, rows=True)
        listed = self.plan.keys_by_bytes(found.to_copy)
        for child, size, end in zip(self.plan.children, sizes, itertools.accumulate(sizes)):
            mine = results[end - size:end]
            extra_rows = self.remotes[child.name].recomputed_rows(mine[1:]) if child.recomputed else {}
            self.take_child_rows(found, child, mine[0], extra_rows, listed)

    def take_child_rows(self, found: Classified, child: ChildPlan, rows: Sequence[Any],
                        extra: dict[Any, Any], listed: dict[Any, Key]) -> None:
        """One child table's rows as read: into found.family, each counted as to copy (for now)."""
        for root_raw, own_raw, literal in rows:
            root, more = listed_key(listed, root_raw), extra.get(raw_key(own_raw), "")
            if literal is None or more is None:  # CONCAT gives NULL past max_allowed_packet
                raise ArchiveError(f"a `{child.source}` row of key {format_key(root)} is too large to copy "
                                   "through the client: raise max_allowed_packet on the source and the "
                                   "destination; nothing was moved")
            found.family[child.name].append(ChildRow(root, decode_child_key(child, root, own_raw), literal,
                                                     literal + more))
            found.child_new[(root, child.name)] = found.child_new.get((root, child.name), 0) + 1

    def sort_out(self, found: Classified, lock: bool = True) -> None:
        """OtherServer.sort_out, then each moving row's child rows: new, identical twins, or a conflict
        of their listed row."""
        super().sort_out(found, lock)
        found.child_new, found.child_twins, found.twin_rows = {}, {}, set()
        for child in self.plan.children:
            rows = found.moving_family(child.name)
            archived = self.lookup([r.key for r in rows], lock, self.remotes[child.name])
            new = [r.key for r in rows if r.key not in archived]
            collides = self.collisions(self.remotes[child.name], new)
            for row in rows:
                self.sort_child_row(found, child, row, archived.get(row.key), row.key in collides)
        self.hold_stale_copies(found, lock)
        found.hold_families()

    def hold_stale_copies(self, found: Classified, lock: bool) -> None:
        """An identical archived row whose destination family holds a child row its source family no
        longer has (archived by an attempt a kill cut short between the two commits, then moved to
        another parent or changed key) is a conflict: that copy would otherwise stay beside the live
        row for ever, unreported."""
        if not found.identical:
            return
        condition, params = self.plan.condition(found.identical, "s")
        listed = self.plan.keys_by_bytes(found.identical)
        for child in self.plan.children:
            read = {(r.root, r.key) for r in found.family.get(child.name, [])}
            joined = ("c", *(f"p{depth}" for depth in range(1, len(self.plan.lineage(child)))), "s")
            sql = (f"SELECT {self.plan.returned_key_sql('s')}, {child.returned_key_sql('c')} FROM "
                   f"{self.plan.family_sql(child, archived=True)} WHERE {condition}"
                   f"{self.dest.dialect.locking((), joined) if lock else ''}")
            for root_raw, own_raw in self.dest.query(sql, params):
                root = listed_key(listed, root_raw)
                key = decode_child_key(child, root, own_raw)
                if (root, key) not in read:
                    own = f"({', '.join(child.key)}) = ({format_key(key)})"
                    found.details.setdefault(root, f"`{child.archive}` on the destination holds row {own} "
                                                   f"under it, which `{child.source}` no longer has under it")

    def sort_child_row(self, found: Classified, child: ChildPlan, row: ChildRow, archived: str | None,
                       collides: bool) -> None:
        """One child row: counted new or twin, and a conflict of its listed row if its copy differs."""
        own = f"`{child.source}` row ({', '.join(child.key)}) = ({format_key(row.key)})"
        if collides:
            found.details.setdefault(row.root, f"{own} equals an archived row's key under its collation")
        elif archived is not None and archived != fingerprint_of(row.proof):
            found.details.setdefault(row.root, f"{own} is archived with a different row")
        if archived is not None:
            found.twin_rows.add((child.name, row.key))
        tally = found.child_new if archived is None else found.child_twins
        tally[(row.root, child.name)] = tally.get((row.root, child.name), 0) + 1

    def copies(self, found: Classified, keys: list[Key]) -> list[Copies]:
        """The rows of `keys` and the new child rows of every moving row, parents first."""
        copies = super().copies(found, keys)
        for child in self.plan.children:
            rows = [r for r in found.moving_family(child.name) if (child.name, r.key) not in found.twin_rows]
            copies.append(Copies(self.remotes[child.name], [r.key for r in rows], [r.literal for r in rows],
                                 [r.proof for r in rows]))
        return copies

    def delete_locked(self, found: Classified, keys: list[Key]) -> int:
        """Delete the locked child rows of `keys` bottom up, then their rows, in one round trip: every
        count as read under the locks, or the batch fails."""
        moving = set(keys)
        rows = {c.name: [r for r in found.family.get(c.name, []) if r.root in moving]
                for c in self.plan.children}
        twins = {name: sum((name, r.key) in found.twin_rows for r in mine) for name, mine in rows.items()}
        self.moved = {name: [len(mine) - twins[name], len(mine), twins[name]] for name, mine in rows.items()}
        if not keys:
            return 0
        steps = self.delete_steps(keys, {name: len(mine) for name, mine in rows.items()})
        done = self.db.execute_script([sql for _, _, sql in steps])
        check_steps(steps, done)
        return int(done[-1])

    def carefully(self, keys: Sequence[Key], settled: frozenset[Key] = frozenset()
                  ) -> tuple[Counters, Classified]:
        """OtherServer.carefully for as many keys (from the first) as fit max_batch_rows with their
        child rows (Classified.cut says how many, if not all)."""
        fitting, found = self.fit(keys, self.read_checked(keys))
        counts, found = self.move_read(fitting, found, settled)
        return counts, found if len(fitting) == len(keys) else dataclasses.replace(found, cut=len(fitting))

    def batch(self, batch: Batch) -> BatchOutcome:
        """The batch with its child rows, as many of its keys (from the first) as fit max_batch_rows."""
        keys = self.part_of(batch)
        counts, found = self.carefully(keys, batch.settled)
        return self.family_outcome(counts, found, len(keys) if found.cut is None else found.cut)


# --------------------------------------------------------------------------- conflicts

# What a revisit found for a key, by the kind of row it revisits: a resolution (the row is
# closed), or the kind the row becomes; None keeps the row open as it is.
RECHECK_OUTCOMES = {
    "CONFLICT": {"to_copy": "archived copy was gone: row archived",
                 "identical": "archived copy is now identical: source row deleted",
                 "skipped": ("kind", "HELD"), "conflicts": None},
    "HELD": {"to_copy": "the guard lets the row go now: row archived",
             "identical": "archived copy is identical: source row deleted",
             "skipped": None, "conflicts": ("kind", "CONFLICT")},
}


def recheck_chunk(context: RunContext, file: tuple[str, str], chunk: dict[Key, list[int]], left: int,
                  kind: str = "CONFLICT") -> tuple[dict[int, str], Counters, int]:
    """One transaction: re-examine some conflict (or held) keys and close those that are settled;
    also says how many of the keys (from the first) it got to (fewer: max_batch_rows)."""
    counts, found = context.mover.carefully(list(chunk))
    handled = list(chunk)[:found.cut]
    # Still-open rows were counted when found; a key settled now was a listed key then, so it is
    # not counted again as not found or held back: only what moved, and a new conflict, counts.
    counts.not_found = counts.skipped_by_guard = 0
    counts.conflicts = len(found.conflicts) if kind == "HELD" else 0
    present = set(found.to_copy) | set(found.identical) | set(found.conflicts) | set(found.skipped)
    how: dict[Key, Any] = {k: "source row no longer exists" for k in handled if k not in present}
    for name, outcome in RECHECK_OUTCOMES[kind].items():
        how.update(dict.fromkeys(getattr(found, name), outcome))
    resolved = {i: text for key, text in how.items() if isinstance(text, str) for i in chunk[key]}
    changed = {i: text[1] for key, text in how.items() if isinstance(text, tuple) for i in chunk[key]}
    still = left - len(resolved) - (len(changed) if kind == "CONFLICT" else 0)
    statements = context.tracking.resolve_statements(resolved, file, still if kind == "CONFLICT" else None,
                                                     changed)
    moved = context.mover.moved if isinstance(context.mover, InParts) else {}
    if any(map(any, moved.values())):  # the child rows it moved are in no batch's table_counts
        statements.append(context.tracking.add_recheck_counts(moved))
    context.db.execute_script(statements + [context.tracking.add_run_counts(counts), ("COMMIT", ())])
    # A conflict that became a held row is settled as a conflict: report it with the resolved ones.
    settled = {**resolved, **(dict.fromkeys(changed, "held") if kind == "CONFLICT" else {})}
    return settled, counts, len(handled)


def recheck_file(context: RunContext, file: tuple[str, str], rows: list[tuple[int, str]], kind: str
                 ) -> Counters:
    """Revisit one file's open rows of a kind, a batch_size of keys per transaction."""
    total = Counters()
    by_key: dict[Key, list[int]] = {}
    for row_id, text in rows:  # a key listed twice has two rows; they are settled together
        by_key.setdefault(parse_stored_key(text, context.plan.key_type), []).append(row_id)
    keys, left = list(by_key), len(rows)
    while keys:
        chunk = {k: by_key[k] for k in keys[:context.config.batch_size]}
        ids = [row_id for row_ids in chunk.values() for row_id in row_ids]

        def recover(ids: list[int] = ids, count: int = len(chunk)
                    ) -> tuple[dict[int, str], Counters, int] | None:
            committed = context.tracking.resolved_by_this_run(ids, kind)  # the rest stays open: next run
            return None if committed is None else (*committed, count)

        resolved, counts, handled = retry_transaction(
            context, f"Recheck of {'conflicts' if kind == 'CONFLICT' else 'held rows'} in {file[0]}",
            functools.partial(recheck_chunk, context, file, chunk, left, kind), recover)
        left -= len(resolved)
        total.add(counts)
        keys = keys[handled:]
        if isinstance(context.mover, InParts):  # the child rows the committed chunk moved
            context.state.add_child_rows((name, rows[0]) for name, rows in context.mover.moved.items())
    if kind == "CONFLICT":
        context.say(f"RECHECK: {file[0]}: {len(rows) - left} of {len(rows)} earlier conflict(s) resolved"
                    + (f", {left} still differ (both versions kept)" if left else ""))
    else:
        context.say(f"RECHECK: {file[0]}: {len(rows) - left} of {len(rows)} row(s) held by the guard "
                    "moved or gone" + (f", {left} still held" if left else ""))
    return total


def recheck_conflicts(context: RunContext) -> Counters:
    """Look again at the job's open conflicts, and at the rows the guard held back (unless
    revisit_held is off): move, delete or keep each, and say so."""
    total = Counters()
    kinds = ("CONFLICT", "HELD") if context.config.revisit_held else ("CONFLICT",)
    for kind in kinds:
        for file, rows in context.tracking.open_conflicts(kind).items():
            total.add(recheck_file(context, file, rows, kind))
    return total


# --------------------------------------------------------------------------- job reports

def newest_run(tracking: Tracking) -> dict[str, Any] | None:
    """This job's newest run."""
    rows = tracking.db.query_dicts(f"SELECT {RUN_COLUMNS}, {RUN_COLUMNS_UTC[tracking.layout]}, "
                                   f"{RUN_COLUMNS_EXIT[tracking.version >= 4]} FROM process_logs "
                                   "WHERE job = %s ORDER BY id DESC LIMIT 1", (tracking.config.job,))
    return rows[0] if rows else None


def did_work(tracking: Tracking, run_id: int) -> bool:
    """Whether a run moved or counted a row, ran a batch, met a file it could not archive, or
    settled a conflict."""
    return bool(tracking.db.query(f"SELECT 1 FROM process_logs p WHERE p.id = %s AND {DID_WORK_SQL}",
                                  (run_id,)))


def last_run_with_work(tracking: Tracking) -> dict[str, Any] | None:
    """The newest run of the job that did something (a nightly no-op must not hide it)."""
    rows = tracking.db.query_dicts(
        f"SELECT {RUN_COLUMNS}, {RUN_COLUMNS_UTC[tracking.layout]}, "
        f"{RUN_COLUMNS_EXIT[tracking.version >= 4]} FROM process_logs p WHERE job = %s AND "
        f"(status <> 'COMPLETED' OR {DID_WORK_SQL}) ORDER BY id DESC LIMIT 1", (tracking.config.job,))
    return rows[0] if rows else None


def run_files(tracking: Tracking, run_id: int) -> list[dict[str, Any]]:
    """A run's files, in the order it met them."""
    return tracking.db.query_dicts(
        "SELECT file_name AS file, status, processed_batches, total_batches, rows_archived, "
        "rows_deleted, conflicts, not_found, error_message AS error FROM file_processing_logs "
        "WHERE process_log_id = %s ORDER BY id", (run_id,))


def child_rows(tracking: Tracking, run_id: int) -> dict[str, dict[str, int]]:
    """A run's rows of each child table (archived, deleted, duplicates): its batches' and (schema 6)
    its recheck's."""
    if tracking.version < 5:
        return {}
    totals: dict[str, dict[str, int]] = {}
    for (counts,) in tracking.db.query("SELECT table_counts FROM batch_processing_logs WHERE "
                                       "process_log_id = %s AND table_counts IS NOT NULL", (run_id,)):
        add_table_counts(totals, counts)
    if tracking.version >= 6:
        for (counts,) in tracking.db.query("SELECT recheck_counts FROM process_logs WHERE id = %s",
                                           (run_id,)):
            add_table_counts(totals, counts)
    return totals


def problem_batches(tracking: Tracking) -> list[dict[str, Any]]:
    """This job's ten latest failed or duplicate-meeting batches."""
    return tracking.db.query_dicts(
        "SELECT b.process_log_id AS run, b.file_name, b.batch_number AS batch, b.status, b.duplicates, "
        "b.conflicts, LEFT(COALESCE(b.error_message, b.conflict_keys, ''), 120) AS detail, b.created_at "
        "FROM batch_processing_logs b JOIN process_logs p ON p.id = b.process_log_id WHERE p.job = %s "
        "AND b.status IN ('FAILED', 'COMPLETED_WITH_DUPLICATES') ORDER BY b.id DESC LIMIT 10",
        (tracking.config.job,))


def open_rows_by_file(tracking: Tracking, kind: str = "CONFLICT", first: int = SHOWN_KEYS
                      ) -> list[tuple[str, int, list[str]]]:
    """The job's open conflicts (or held rows) per file name: how many, and the first keys."""
    condition, job = tracking.of_kind(kind), tracking.config.job
    if condition is None:
        return []
    counted = tracking.db.query(
        "SELECT file_name, COUNT(*) FROM conflict_logs WHERE job = %s AND status = 'OPEN' "
        f"AND {condition} GROUP BY file_name ORDER BY file_name", (job,))
    return [(name, int(count), [str(k) for (k,) in tracking.db.query(
        f"SELECT key_value FROM conflict_logs WHERE job = %s AND status = 'OPEN' AND {condition} "
        "AND file_name = %s ORDER BY id LIMIT %s", (job, name, first))])
        for name, count in counted]


def last_success(tracking: Tracking) -> dt.datetime | None:
    """When the job's latest run that exited 0 ended, in UTC (schema 4 records exit codes)."""
    if tracking.version < 4:
        return None
    rows = tracking.db.query("SELECT MAX(last_seen_utc) FROM process_logs WHERE job = %s AND exit_code = 0",
                             (tracking.config.job,))
    return rows[0][0] if rows and isinstance(rows[0][0], dt.datetime) else None


def batches_of(tracking: Tracking, run_id: int) -> int:
    """How many batches a run committed."""
    return int(tracking.db.query("SELECT COUNT(*) FROM batch_processing_logs WHERE process_log_id = %s "
                                 "AND status <> 'FAILED'", (run_id,))[0][0])


# --------------------------------------------------------------------------- pauses and stops

def heartbeat_lag(conn: Any, table: tuple[str, str], server_id: int, where: str) -> float | None:
    """A replica's lag from pt-heartbeat's table: how old the newest heartbeat of the source
    (its server_id) is on the replica, in UTC (pt-heartbeat --utc); None without one."""
    name = f"{quote_ident(table[0])}.{quote_ident(table[1])}"
    cursor = conn.cursor()
    try:
        cursor.execute(f"SELECT TIMESTAMPDIFF(MICROSECOND, MAX(ts), UTC_TIMESTAMP(6)) / 1000000 FROM {name} "
                       "WHERE server_id = %s", (server_id,))
        rows = cursor.fetchall()
    except mysql.connector.Error as exc:
        # Refused for good: read as "lag unknown", every run would pause until replica_timeout (exit 6).
        if exc.errno in (errorcode.ER_TABLEACCESS_DENIED_ERROR, errorcode.ER_COLUMNACCESS_DENIED_ERROR):
            raise ArchiveError(f"[controls] replicas: {where}: cannot read its lag, "
                               f"{describe_mysql_error(exc)}; GRANT SELECT ON {name} to this user") from exc
        raise
    finally:
        cursor.close()
    return None if not rows or rows[0][0] is None else max(float(rows[0][0]), 0.0)


GROUP_MEMBER_SQL = ("SELECT m.MEMBER_STATE AS state, m.MEMBER_ROLE AS role, s.COUNT_TRANSACTIONS_IN_QUEUE "
                    "+ s.COUNT_TRANSACTIONS_REMOTE_IN_APPLIER_QUEUE AS queued FROM "
                    "performance_schema.replication_group_members m LEFT JOIN "
                    "performance_schema.replication_group_member_stats s ON s.MEMBER_ID = m.MEMBER_ID "
                    "WHERE m.MEMBER_ID = @@server_uuid")
# Its TIMESTAMP(6) columns read in the session's time zone, which open_replica sets to UTC.
GROUP_APPLIER_SQL = ("SELECT APPLYING_TRANSACTION AS applying, "
                     "APPLYING_TRANSACTION_ORIGINAL_COMMIT_TIMESTAMP AS applying_since, "
                     "LAST_APPLIED_TRANSACTION_ORIGINAL_COMMIT_TIMESTAMP AS applied_since, "
                     "UTC_TIMESTAMP(6) AS now FROM performance_schema.replication_applier_status_by_worker "
                     "WHERE CHANNEL_NAME = 'group_replication_applier'")


def replica_lag(conn: Any, where: str, dialect: Dialect) -> tuple[float | None, str]:
    """A replica's lag (None when replication is not running) and what it was read from
    (replica_lag_from): its channels' Seconds_Behind_Source, a Group Replication member's applier.
    Every channel: on MariaDB SHOW REPLICA STATUS has only the default connection, ALL SLAVES
    (Dialect.replica_status_sql) the named ones too, which may be the one from this source."""
    cursor = conn.cursor(dictionary=True)
    try:
        try:
            cursor.execute(dialect.replica_status_sql)
        except mysql.connector.Error as exc:
            if exc.errno != errorcode.ER_PARSE_ERROR:
                raise
            cursor.execute("SHOW SLAVE STATUS")
        status = cursor.fetchall()
        member, workers = None, []
        if any(row.get("Channel_Name") in GROUP_CHANNELS for row in status):
            cursor.execute(GROUP_MEMBER_SQL)
            member = next(iter(cursor.fetchall()), None)
            cursor.execute(GROUP_APPLIER_SQL)
            workers = cursor.fetchall()
    except mysql.connector.Error as exc:
        # Refused for good: read as "lag unknown", every run would pause until replica_timeout (exit 6).
        if exc.errno in (ER_SPECIFIC_ACCESS_DENIED, errorcode.ER_TABLEACCESS_DENIED_ERROR):
            raise ArchiveError(
                f"[controls] replicas: {where}: cannot read its lag, {describe_mysql_error(exc)}; "
                "GRANT SLAVE MONITOR (MariaDB) or REPLICATION CLIENT (MySQL) ON *.* to this user, on a "
                "Group Replication member also SELECT ON performance_schema.* (see the README's grants)"
            ) from exc
        raise
    finally:
        cursor.close()
    return replica_lag_from(status, member, workers, where)


def unwatchable_replica(dialect: Dialect, where: str, lag_source: tuple[str, str] | None) -> str | None:
    """Why a replica's lag cannot be read as configured, or None: an Aurora reader shares the cluster
    volume and has no SHOW REPLICA STATUS rows, so it would read as "lag unknown" until replica_timeout.
    https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/AuroraMySQL.Replication.html"""
    if dialect.vendor != "Aurora MySQL" or lag_source is not None:
        return None
    return (f"[controls] replicas: {where} is an {dialect.name} reader, which shows no SHOW REPLICA STATUS "
            "(Aurora replicas read the cluster's shared volume; their lag is the cluster's "
            "AuroraReplicaLag metric): leave it out of replicas, or set replica_lag_source = "
            "heartbeat:DB.TABLE with pt-heartbeat writing on the source")


def open_replica(config: Config, replica: DbSettings) -> tuple[Any, Dialect]:
    """A session on a replica to watch, and its server; a plain session where TLS is required, or
    a replica whose lag cannot be read as configured (unwatchable_replica), is an ArchiveError."""
    conn = mysql.connector.connect(**replica.connect_kwargs(), autocommit=True,
                                   **silence_limits(probe_silence(config, replica)))
    try:
        cursor = conn.cursor()
        cursor.execute(ENCRYPTION_SQL)
        encryption_of(cast(list[tuple[Any, ...]], cursor.fetchall()), replica.tls)  # or refused
        cursor.execute(DIALECT_SQL)
        found = dialect_of({str(k).lower(): str(v)
                            for k, v in cast(list[tuple[Any, Any]], cursor.fetchall())})
        cursor.execute("SET SESSION time_zone = '+00:00'")  # its lag reads compare times with UTC's
        cursor.close()
        problem = unwatchable_replica(found, replica.describe(), config.replica_lag_source)
        if problem:
            raise ArchiveError(problem)
    except BaseException:
        conn.close()
        raise
    return conn, found


class Controls:
    """Probes the servers between batches and carries out PauseState's decisions, visibly."""

    def __init__(self, context: RunContext, stop: StopSignal, metrics: MetricsFile | None = None):
        self.context, self.config, self.stop = context, context.config, stop
        self.metrics = metrics
        self.pauses = PauseState(context.config.replica_timeout)
        self.replica_conns: dict[int, tuple[Any, Dialect]] = {}  # a session on each replica, and its server
        self.batches_seen = 0
        self.flow_sample: tuple[float, int] | None = None
        self.critical: str | None = None  # a critical_load value seen by the latest probe
        self.source_id: tuple[str, int] | None = None  # (node, its server_id): whose heartbeats count

    def stop_reason(self) -> str | None:
        """Why the run must stop now, if it must; planned stops are marked as such."""
        if self.stop.reason:
            return self.stop.reason
        elapsed = time.monotonic() - self.context.state.started
        if self.config.max_runtime and elapsed >= self.config.max_runtime:
            self.context.state.planned_stop = True
            return f"max_runtime {self.config.max_runtime:g}s reached after {elapsed:.0f}s"
        if self.config.stop_file and self.config.stop_file.exists():
            self.context.state.planned_stop = True
            return (f"stop file {self.config.stop_file} exists (remove it before the next run, or "
                    "that run stops at once too)")
        return None

    def sleep(self, seconds: float) -> str | None:
        """Sleep in short steps so a signal or stop file ends the wait early; keep the lock alive."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            reason = self.stop_reason()
            if reason:
                return reason
            self.keep_lock()
            self.publish()  # a paused run's metrics keep their heartbeat
            time.sleep(min(left, 0.2))
        return self.stop_reason()

    def publish(self, force: bool = False) -> None:
        """Write the metrics file when it is due (or now, when forced)."""
        note = self.metrics.publish(self.context.state, force) if self.metrics else None
        if note:
            self.context.say(note)

    def keep_lock(self) -> None:
        """Renew the run lock's lease while waiting; a lost server is left to the next batch."""
        try:
            self.context.tracking.lock.heartbeat()
        except (mysql.connector.Error, Unreachable):
            self.context.db.disconnect()

    def before_batch(self) -> str | None:
        """Sleep, then wait out load, lag and cluster trouble; return a stop reason or None."""
        self.batches_seen += 1
        self.publish()
        if self.batches_seen > 1 and self.config.sleep_seconds:
            reason = self.sleep(self.config.sleep_seconds)
            if reason:
                return reason
        return self.wait_until_clear()

    def wait_until_clear(self) -> str | None:
        """Pause while a probe says so; give up after replica_timeout of replica trouble."""
        while True:
            stop = self.stop_reason()
            if stop:  # a stop during a pause says why the run was paused, and how long
                ended = self.pauses.interrupt(time.monotonic(), stop)
                self.act(ended)
                return ended.text.removeprefix("PAUSE ENDED: ") or stop
            reason, replica_problem = self.pause_reason()
            if self.critical:  # as gh-ost and pt-online-schema-change do: stop, do not wait
                ended = self.pauses.interrupt(time.monotonic(), f"critical_load: {self.critical}")
                self.act(ended)
                return ended.text.removeprefix("PAUSE ENDED: ") or f"critical_load: {self.critical}"
            step = self.pauses.step(time.monotonic(), reason, replica_problem)
            self.act(step, reason)
            if step.action in ("go", "resume"):
                return None
            if step.action == "give up":
                return step.text
            self.sleep(self.config.check_interval)  # cut short by a signal; the loop top sees why

    def act(self, step: PauseStep, reason: str | None = None) -> None:
        """Show a pause decision in the text log, on the terminal and in process_logs."""
        self.context.state.paused_seconds = self.pauses.paused_seconds
        if step.action == "give up":
            self.note(f"PAUSE ENDED: {step.text}", None)
        elif step.text:
            self.note(step.text, reason if step.action == "pause" else None)

    def pause_reason(self) -> tuple[str | None, bool]:
        """(why to pause, whether it is about replicas), or (None, False) to go on."""
        for index, replica in enumerate(self.config.replicas):
            lag = self.read_lag(index, replica)
            source = self.config.replica_lag_source
            how = f"pt-heartbeat {source[0]}.{source[1]}; " if source else ""
            if lag is None:
                unknown = "no heartbeat of the source, or unreachable" if source else \
                    "replication stopped or unreachable"
                return f"replica {replica.describe()} lag unknown ({how}{unknown})", True
            if lag > self.config.max_replica_lag:
                return (f"replica {replica.describe()} is {round(lag, 1):g}s behind "
                        f"({how}max_replica_lag {self.config.max_replica_lag:g}s)"), True
        try:
            return self.server_pause_reason(), False
        except mysql.connector.Error:
            self.context.db.disconnect()  # the next batch reconnects (to another node) or fails
            return None, False

    def server_pause_reason(self) -> str | None:
        """Load on the server, or a Galera node that is not keeping up."""
        db, config = self.context.db, self.config
        if not (config.max_threads_running or db.wsrep or config.max_load or config.critical_load):
            return None
        db.ensure_connected()
        names = ["Threads_running"] + (["wsrep_local_state_comment", "wsrep_flow_control_paused_ns",
                                        "wsrep_local_recv_queue"] if db.wsrep else [])
        names += [name for name, _ in config.max_load + config.critical_load]
        with db.reading():
            status = db.status_values(*names)
        self.critical = over_limit(status, config.critical_load, "critical_load")
        if self.critical:
            return None
        running = int(status.get("threads_running", 0))
        if config.max_threads_running and running > config.max_threads_running:
            return f"Threads_running is {running} (max_threads_running {config.max_threads_running})"
        loaded = over_limit(status, config.max_load, "max_load")
        if loaded:
            return loaded
        return self.galera_pause_reason(status) if db.wsrep else None

    def galera_pause_reason(self, status: dict[str, str]) -> str | None:
        """Pause while the node is not Synced, flow control holds it back, or it lags behind."""
        state = status.get("wsrep_local_state_comment", "")
        if state != "Synced" and self.context.db.move_to_synced():
            self.flow_sample = None  # that sample was another node's
            return None
        if state != "Synced":
            return f"Galera node {self.context.db.where} is {state or 'in an unknown state'}, not Synced"
        now, paused_ns = time.monotonic(), int(status.get("wsrep_flow_control_paused_ns", 0))
        previous, self.flow_sample = self.flow_sample, (now, paused_ns)
        if previous and now > previous[0]:
            fraction = (paused_ns - previous[1]) / 1e9 / (now - previous[0])
            if fraction > self.config.max_flow_control:
                return (f"Galera flow control paused the cluster {fraction:.0%} of the last "
                        f"{now - previous[0]:.1f}s (max_flow_control {self.config.max_flow_control:g})")
        queue = int(status.get("wsrep_local_recv_queue", 0))
        if self.config.max_recv_queue and queue > self.config.max_recv_queue:
            return f"Galera receive queue is {queue} (max_recv_queue {self.config.max_recv_queue})"
        return None

    def read_lag(self, index: int, replica: DbSettings) -> float | None:
        """One replica's lag, reconnecting as needed; None when it cannot be known."""
        try:
            if index not in self.replica_conns:
                self.replica_conns[index] = open_replica(self.config, replica)
            conn, dialect = self.replica_conns[index]
            if self.config.replica_lag_source is None:
                return replica_lag(conn, replica.describe(), dialect)[0]
            db = self.context.db
            db.ensure_connected()
            if self.source_id is None or self.source_id[0] != db.where:  # a new node after a failover
                with db.reading():
                    self.source_id = (db.where, int(db.query("SELECT @@server_id")[0][0]))
            return heartbeat_lag(conn, self.config.replica_lag_source, self.source_id[1], replica.describe())
        except mysql.connector.Error:
            self.replica_conns.pop(index, None)
            return None

    def note(self, text: str, pause: str | None) -> None:
        """A pause or resume line: text log, terminal, and process_logs for --status."""
        self.context.say(text)
        try:
            self.context.tracking.note_pause(pause, self.pauses.paused_seconds)
        except mysql.connector.Error:
            self.context.db.disconnect()  # the next batch reconnects (and retries) or fails the run

    def close(self) -> None:
        """Close replica connections."""
        for conn, _ in self.replica_conns.values():
            with contextlib.suppress(Exception):  # a dead replica connection may fail to close
                conn.close()


# --------------------------------------------------------------------------- one file

def reject(context: RunContext, scan: FileScan, reason: str) -> None:
    """A file that cannot be archived as listed: FAILED with its reason, the run goes on."""
    context.log.write(f"STARTING: {scan.name} (Size: {scan.size} bytes)")
    context.say(f"ERROR: rejected {reason}")
    print(f"archive.py: rejected {reason}", file=sys.stderr)
    context.tracking.reject_file(scan, context.config.batch_size, f"rejected: {reason}")
    context.state.rejected.append(scan.name)


def identify_file(context: RunContext, path: Path) -> FileScan | None:
    """Hash a file; None (and the file rejected) when its name or content cannot be read."""
    if not has_utf8_name(path):
        reject(context, FileScan(display_name(path), 0, "0" * 64),
               f"{display_name(path)}: the file name is not valid UTF-8; rename the file")
        return None
    try:
        return hash_file(path, context.tick)
    except RejectedFile as exc:
        reject(context, FileScan(display_name(path), 0, "0" * 64), f"{exc} (removed or unreadable)")
        return None


def move_to_done_dir(context: RunContext, path: Path, scan: FileScan) -> None:
    """Move a completed file out of csv_dir (after its completion was committed)."""
    done_dir = context.config.done_dir
    if done_dir is None:
        return
    target = done_dir / path.name
    if target.exists():
        context.say(f"NOTE: {scan.name} stays in csv_dir: {target} already exists")
        return
    try:
        os.rename(path, target)
    except OSError as exc:
        context.say(f"NOTE: {scan.name} stays in csv_dir: cannot move it to {done_dir}: {exc.strerror}")
        return
    context.log.write(f"MOVED: {scan.name} to {done_dir}")


def skip_finished_file(context: RunContext, path: Path, scan: FileScan, finished: tuple[int, str],
                       why: str = "") -> None:
    """A file done before with this exact content: count it, and move it to done_dir if wanted."""
    run_id, status = finished
    note = why or (f"completed by run {run_id}" if status == "COMPLETED"
                   else f"done by run {run_id}, with conflicts (rechecked at the start of each run)")
    context.say(f"SKIPPING: {scan.name} ({note}; same content)")
    context.state.files_skipped += 1
    context.tracking.skip_file()
    if status == "COMPLETED":
        move_to_done_dir(context, path, scan)


def verify_log_checkpoint(context: RunContext, path: Path, in_db: Checkpoint | None, in_log: Checkpoint
                          ) -> Checkpoint | None:
    """Trust the log's extra batches only if none of their keys is still in the source.

    The database may have gone back in time (a restored backup, a lagging replica
    promoted) while the text log kept its lines: then those batches must run again.
    """
    config, size = context.config, in_log.batch_size
    first = in_db.last_batch + 1 if in_db is not None and in_db.batch_size == size else 1
    blocks = key_blocks(path, config.csv_format, context.plan.key_type)
    for batch in iter_batches(blocks, size, first, skip=(first - 1) * size):
        if batch.number > in_log.last_batch:
            break
        condition, params = context.plan.condition(batch.keys)
        present = context.db.read(context.plan.present_sql(condition), params)
        if present:
            context.say(f"REWIND: the text log says {path.name} was done up to batch {in_log.last_batch}, "
                        f"but keys of batch {batch.number} are still in the source (database restored or "
                        f"failed over?); resuming at batch {batch.number}")
            return dataclasses.replace(in_log, last_batch=batch.number - 1) if batch.number > 1 else None
        context.tick()
    return in_log


def resume_point(context: RunContext, path: Path, scan: FileScan) -> Checkpoint | None:
    """max(database, text log) -- but a log ahead of the database must prove its batches are gone."""
    in_db = context.tracking.checkpoint(scan)
    in_log = context.log_checkpoints.get((scan.name, scan.sha256))
    best = best_checkpoint(in_db, in_log)
    if best is None or best is in_db:
        return best
    return verify_log_checkpoint(context, path, in_db, best)


def resume_inside(context: RunContext, scan: FileScan, checkpoint: Checkpoint | None, tracked: bool = True
                  ) -> tuple[int, int]:
    """The batch size a file goes on with, and how many keys of its first batch not done are settled.

    A batch an earlier run left in parts (PARTIAL) goes on after its settled keys, and in the batch
    size it was cut from, as a checkpoint keeps its own: in another size they would not be the
    first keys of the batch, and would be counted again as not found.
    """
    size = checkpoint.batch_size if checkpoint else context.config.batch_size
    if not context.plan.children or not tracked:
        return size, 0
    partial = context.tracking.settled_keys(scan, checkpoint.last_batch + 1 if checkpoint else 1)
    if partial is None or (checkpoint is not None and partial[1] != size):
        return size, 0
    return partial[1], partial[0]


def plan_file(context: RunContext, path: Path) -> tuple[FileScan, Checkpoint | None] | None:
    """Identify a file and find where to start; None when it is done or rejected."""
    scan = identify_file(context, path)
    if scan is None:
        return None
    with context.db.reading():
        finished = context.tracking.finished_record(scan)
    if finished is not None:
        skip_finished_file(context, path, scan, finished)
        return None
    with context.db.reading():
        checkpoint = resume_point(context, path, scan)
        others = context.tracking.other_checksums(scan) + [
            sha for (name, sha) in context.log_checkpoints if name == scan.name and sha != scan.sha256]
    if others and checkpoint is None:
        context.say(f"CHANGED: {scan.name} differs from its earlier checkpoint (sha256 {others[0][:12]}… "
                    f"now {scan.sha256[:12]}…); not resuming by batch number, starting at batch 1")
    if checkpoint is not None:
        return dataclasses.replace(scan, keys=checkpoint.total_keys), checkpoint
    try:
        config = context.config
        keys = count_keys(path, config.csv_format, context.plan.key_type, context.tick)
    except RejectedFile as exc:
        reject(context, scan, str(exc))
        return None
    return dataclasses.replace(scan, keys=keys), None


def open_keys(context: RunContext, path: Path, checkpoint: Checkpoint | None
              ) -> tuple[Iterator[KeyBlock], int]:
    """The file's keys from the first batch not done: seek to a stored offset, else skip.

    Returns the blocks and how many keys of them to skip.
    """
    config = context.config
    if checkpoint and checkpoint.end_offset and checkpoint.source == "db":
        return key_blocks(path, config.csv_format, context.plan.key_type,
                          start=(checkpoint.end_offset, checkpoint.end_line)), 0
    blocks = key_blocks(path, config.csv_format, context.plan.key_type)
    return blocks, checkpoint.last_batch * checkpoint.batch_size if checkpoint else 0


def file_identity(path: Path) -> tuple[int, int, int]:
    """What changes when a file is rewritten, truncated or replaced: inode, size, mtime."""
    try:
        stat = path.stat()
    except OSError:
        return (-1, -1, -1)
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def file_changed(context: RunContext, file_context: FileContext, reason: str) -> None:
    """The file is not what was validated: its batches so far no longer count as a checkpoint."""
    context.log.write(file_changed_line(file_context.scan, context.config.job), durable=True)
    context.say(f"ERROR: rejected {reason}; rerun to archive its current content from batch 1")
    print(f"archive.py: rejected {reason}", file=sys.stderr)
    context.tracking.finish_file(file_context.file_id, "CHANGED", f"rejected: {reason}")
    context.state.rejected.append(file_context.scan.name)


def finish_file(context: RunContext, path: Path, file_context: FileContext, counts: Counters, keys_seen: int,
                identity: tuple[int, int, int]) -> None:
    """COMPLETED (or CONFLICTS) only if every batch of the validated content ran, unchanged."""
    scan = file_context.scan
    if keys_seen != scan.keys or file_identity(path) != identity or hash_file(path).sha256 != scan.sha256:
        return file_changed(context, file_context, f"{scan.name} changed on disk while its batches ran "
                            f"({keys_seen} of {scan.keys} validated keys read)")
    open_conflicts = counts.conflicts or context.tracking.open_conflicts().get((scan.name, scan.sha256))
    status = "CONFLICTS" if open_conflicts else "COMPLETED"
    context.tracking.finish_file(file_context.file_id, status, None)
    if status == "CONFLICTS":
        context.state.conflict_files.append(scan.name)
    context.state.files_done += 1
    held = (f", {counts.skipped_by_guard} held by guard (recorded; "
            + ("revisited by every run)" if context.config.revisit_held else "revisit_held is off)")
            if counts.skipped_by_guard else "")
    context.reporter.say(f"FINISHED: {scan.name} ({counts.archived} rows archived, {counts.duplicates} "
                         f"duplicates, {counts.conflicts} conflicts, {counts.not_found} not found{held})")
    if status == "COMPLETED":
        move_to_done_dir(context, path, scan)
    return None


def record_batch_failure(context: RunContext, file_context: FileContext, batch: Batch, message: str) -> None:
    """Record the FAILED batch, if the database can still be written."""
    context.db.rollback()
    try:
        context.db.ensure_connected()
        context.tracking.record_batch_failure(file_context, batch, message)
    except (mysql.connector.Error, ArchiveError):
        context.db.disconnect()  # run() reports that the database could not be written


def report_duplicates(context: RunContext, batch: Batch, outcome: BatchOutcome) -> None:
    """DUPLICATE_KEY_ERROR lines: identical twins were removed, conflicts were kept."""
    counts, conflicts = outcome.counts, outcome.conflicts
    if counts.duplicates:
        context.say(f"DUPLICATE_KEY_ERROR: Batch {batch.number} - {plural(counts.duplicates, 'key')} already "
                    "archived with identical rows; removed from the source")
    if conflicts:
        shown = ", ".join(format_key(k) for k in conflicts[:SHOWN_KEYS])
        more = f" and {len(conflicts) - SHOWN_KEYS} more" if len(conflicts) > SHOWN_KEYS else ""
        context.say(f"DUPLICATE_KEY_ERROR: Batch {batch.number} - CONFLICT: {plural(len(conflicts), 'key')} "
                    f"archived with different rows; both versions kept: {shown}{more}")


def show_progress(context: RunContext, scan: FileScan, batch: Batch, total: int) -> None:
    """The terminal's single progress line: file n/N, batch, rows, rate and the whole run's ETA.

    The ETA is the bytes of key files left (this file's rest and every file after it) at the
    rate this run has read them, pauses left out: files found done are skipped fast, so it errs
    long when many are.
    """
    state = context.state
    elapsed = max(time.monotonic() - state.started, 1e-6)
    state.bytes_done += max(batch.end_offset - state.file_offset, 0)
    state.file_offset = batch.end_offset
    state.file_batches = (batch.number, total)
    rate = state.bytes_done / max(elapsed - state.paused_seconds, 1e-6)
    state.eta = (max(scan.size - batch.end_offset, 0) + state.bytes_after) / rate if rate > 0 else None
    eta = format_seconds(state.eta) if state.eta is not None else "?"
    context.reporter.progress(
        scan.name, f"file {state.files_seen}/{state.files_total}  batch {batch.number}/{total}  "
                   f"{state.totals.archived:,} rows  {state.totals.archived / elapsed:,.0f} rows/s  "
                   f"ETA {eta}")


def archive_batch(context: RunContext, file_context: FileContext, batch: Batch, total: int, done: int = 0
                  ) -> Counters:
    """Run one batch (from its first key not `done`) with its log lines; on failure record it and
    raise BatchFailed."""
    context.log.batch(file_context.scan.name, batch.number, "PROCESSING")
    context.reporter.batch(f"Processing batch {batch.number}/{total} - first key {format_key(batch.keys[0])} "
                           f"… last key {format_key(batch.keys[-1])}")
    if done:
        context.say(f"Resuming batch {batch.number} at key {format_key(batch.keys[done])}: its first "
                    f"{plural(done, 'key')} moved in parts committed by an earlier run")
    try:
        outcome = commit_batch(context, file_context, batch, done)
    except (mysql.connector.Error, ArchiveError) as exc:
        if isinstance(exc, LostLock):
            raise
        message = f"Error processing batch {batch.number} in file {file_context.scan.name}: " + (
            describe_mysql_error(exc) if isinstance(exc, mysql.connector.Error) else str(exc))
        context.log.write(f"ERROR: {message}")
        context.log.batch(file_context.scan.name, batch.number, "FAILED")
        record_batch_failure(context, file_context, batch, message)
        raise BatchFailed(message) from exc
    context.log.batch(file_context.scan.name, batch.number, outcome.status)
    report_duplicates(context, batch, outcome)
    context.state.totals.add(outcome.counts)
    context.state.add_child_rows((name, archived) for name, archived, _, _ in outcome.tables)
    context.state.open_conflicts += len(outcome.conflicts)
    context.state.held_open += len(outcome.held)
    show_progress(context, file_context.scan, batch, total)
    return outcome.counts


def archive_file(context: RunContext, path: Path) -> None:
    """Archive one file batch by batch from its first batch not done."""
    identity = file_identity(path)
    planned = plan_file(context, path)
    if planned is None:
        return
    scan, checkpoint = planned
    batch_size, settled = resume_inside(context, scan, checkpoint)
    total = math.ceil(scan.keys / batch_size)
    start = checkpoint.last_batch + 1 if checkpoint else 1
    if checkpoint and start > total:
        context.say(f"SKIPPING: {scan.name} (all {plural(total, 'batch', 'batches')} done per the "
                    f"{checkpoint.source} checkpoint; same content)")
        file_id = context.tracking.start_file(scan, batch_size, total, start)
        still_open = context.tracking.open_conflicts().get((scan.name, scan.sha256))
        context.tracking.finish_file(file_id, "CONFLICTS" if still_open else "COMPLETED",
                                     f"completed by earlier runs ({checkpoint.source})")
        context.state.files_skipped += 1
        return
    context.log.write(f"STARTING: {scan.name} (Size: {scan.size} bytes)")
    context.log.write(file_info_line(scan, batch_size, context.config.reading, context.config.job))
    file_id = context.tracking.start_file(scan, batch_size, total, start)
    context.reporter.say(f"STARTING: {scan.name} ({scan.size} bytes, {plural(scan.keys, 'key')}, "
                         f"{plural(total, 'batch', 'batches')})")
    if checkpoint and start > 1:
        context.say(f"Resuming file {scan.name} from batch {start}")
        done = f"batches 1-{start - 1}" if start > 2 else "batch 1"
        context.say(f"Skipping already processed {done} (checkpoint from {checkpoint.source})")
    if batch_size != context.config.batch_size:
        context.say(f"NOTE: {scan.name} keeps batch_size {batch_size} from its checkpoint")
    file_context = FileContext(context.state.run_id, file_id, scan)
    file_counts, keys_seen = Counters(), (start - 1) * batch_size
    context.state.file_offset = checkpoint.end_offset if checkpoint else 0
    context.state.file_batches = (start - 1, total)
    blocks, skip = open_keys(context, path, checkpoint)
    for batch in iter_batches(blocks, batch_size, start, skip):
        if file_identity(path) != identity:
            return file_changed(context, file_context, f"{scan.name} changed on disk while its batches ran "
                                f"(before batch {batch.number})")
        reason = context.controls.before_batch() if context.controls else None
        if reason:
            context.state.stop_reason = reason
            context.tracking.finish_file(file_id, "INTERRUPTED", reason)
            return None
        file_counts.add(archive_batch(context, file_context, batch, total, settled_in(batch, start, settled)))
        keys_seen += len(batch.keys)
    finish_file(context, path, file_context, file_counts, keys_seen, identity)
    return None


# --------------------------------------------------------------------------- run

def install_signal_handlers(stop: StopSignal) -> dict[int, Any]:
    """Route SIGTERM, SIGINT and SIGHUP to the stop flag; return the previous handlers."""
    # SIGHUP (a closed terminal, an ssh drop) would otherwise kill the run like kill -9 does,
    # mid-batch and with its run left RUNNING: it stops the run cleanly instead.
    previous: dict[int, Any] = {}
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        previous[signum] = signal.signal(signum, stop.handler)
    return previous


def restore_signal_handlers(previous: dict[int, Any]) -> None:
    """Put back the handlers that were there before the run."""
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def retry_file(context: RunContext, path: Path) -> None:
    """archive_file; if its bookkeeping loses the node, the file resumes from its checkpoint on the next."""
    attempts = 0

    def attempt() -> None:
        nonlocal attempts
        attempts += 1
        if attempts > 1:  # the row of the attempt cut short ends; the file goes on in a new one
            context.tracking.end_open_files("INTERRUPTED", "the server connection was lost; the file "
                                            "continued from its checkpoint on the next node")
            context.db.commit()
        archive_file(context, path)

    retry_transaction(context, f"File {display_name(path)}", attempt)


def file_size(path: Path) -> int:
    """A key file's size for the ETA (0 when it cannot be read: it is rejected later)."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def note_open_rows(context: RunContext) -> None:
    """After the recheck: the job's open conflicts, held rows and last success, for the metrics
    file, which is written now for the first time."""
    state, tracking = context.state, context.tracking
    state.open_conflicts = tracking.open_conflict_count()
    state.held_open = tracking.open_conflict_count("HELD")
    with context.db.reading():
        state.last_success = timestamp_of(last_success(tracking))
    if context.controls:
        context.controls.publish(force=True)


def end_run(context: RunContext) -> tuple[str, int]:
    """Record the run's end from what was committed; return its status and exit code."""
    state, tracking = context.state, context.tracking
    state.open_conflicts = tracking.open_conflict_count()
    state.held_open = tracking.open_conflict_count("HELD")
    state.totals = tracking.run_counts()  # committed work, also where an answer was lost
    status, code, error = outcome_of(state)
    tracking.finish_run(status, state.stop_reason, state.paused_seconds, error, code)
    if code == EXIT_CONFLICTS:  # for the SUMMARY's OPEN CONFLICTS line
        with context.db.reading():
            state.open_conflict_files = open_rows_by_file(tracking)
    return status, code


def execute_run(context: RunContext, files: list[Path]) -> int:
    """Recheck old conflicts, walk the files; return the exit code."""
    # Between batches too, a lost node (or a deadlock in the bookkeeping) is survived: each
    # step below is safe to repeat from the start on the next node.
    context.state.totals.add(retry_transaction(context, "Recheck of conflicts",
                                               functools.partial(recheck_conflicts, context)))
    retry_transaction(context, "Reading the open conflicts", functools.partial(note_open_rows, context))
    sizes = [file_size(path) for path in files]
    for index, path in enumerate(files):
        controls = context.controls
        reason = retry_transaction(context, "Check before the file", controls.stop_reason) \
            if controls else None
        if reason:
            context.state.stop_reason = reason
            break
        context.state.files_seen += 1
        context.state.bytes_after = sum(sizes[index + 1:])
        retry_file(context, path)
        if context.state.stop_reason:
            break
    status, code = retry_transaction(context, "End of run", functools.partial(end_run, context))
    if status == "INTERRUPTED":
        context.say(f"INTERRUPTED: {context.state.stop_reason}; rerun to resume")
    context.reporter.clear_progress()
    return code


def script_hash() -> str:
    """A short hash of this file, so a copied script can be told apart from a release."""
    try:
        return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    except OSError:
        return "unknown"


def say_everywhere(log: TextLog, reporter: Reporter, text: str) -> None:
    """A line for the text log and the terminal alike."""
    log.write(text)
    reporter.say(text)


def write_header(config: Config, log: TextLog, state: RunState) -> None:
    """The text log's start lines: only written once this run holds the lock."""
    log.write(f"=== Script Starts at: {dt.datetime.now():%d_%m_%Y_%H_%M_%S} ===")
    log.write(f"RUN_ID: {state.run_id} | archive.py {__version__} ({script_hash()}) | JOB: {config.job} "
              f"| HOST: {socket.gethostname()} | PID: {os.getpid()}")


def make_mover(tracking: Tracking, plan: TablePlan, dest: Database | None) -> Mover:
    """Within one server (with the child tables, if any), or into the destination server."""
    if dest:
        mover = FamilyElsewhere if plan.children else OtherServer
        return mover(tracking.db, dest, plan, tracking)
    return Family(tracking.db, plan, tracking) if plan.children else SameServer(tracking.db, plan, tracking)


def open_run(config: Config, tracking: Tracking, dest: Database | None, log: TextLog, reporter: Reporter,
             state: RunState, files: list[Path]) -> RunContext:
    """Tracking tables, the run lock, this run's row and header, then the preflight, in that order."""
    # Runs started at once meet here: their DDL (on Galera it aborts other transactions), the
    # lock row and the first writes are retried for retry_timeout, so only a live holder exits 5.
    patience = config.retry_timeout
    notes = [f"MIGRATED: tracking tables to schema {SCHEMA_VERSION}: {step}"
             for step in retry_conflicts(tracking.db, patience, tracking.schema.ensure)]
    takeover = tracking.lock.acquire()
    tracking.db.on_reconnect = tracking.lock.retake
    tracking.db.on_note = functools.partial(say_everywhere, log, reporter)
    state.destination = dest.where if dest else None
    state.run_id = retry_conflicts(tracking.db, patience,
                                   lambda: tracking.start_run(len(files), state.destination))
    write_header(config, log, state)
    notes += [f"LOCK: {takeover}"] if takeover else []
    notes.append("TLS: " + " | ".join(f"{db.where}: {db.encryption}" for db in (tracking.db, dest) if db))
    if config.log_retention_days:
        removed = remove_old_logs(config.log_dir, config.log_retention_days, dt.date.today())
        notes += [(f"LOG_RETENTION: removed {plural(len(removed), 'text log')} older than "
                  f"{config.log_retention_days} days")] if removed else []
    for note in notes:
        log.write(note)
        reporter.say(note, level=2)
    # A refused tracking write is found now, not at the end of a file, where it would stop the run.
    plan = retry_conflicts(tracking.db, patience, lambda: require_plan(
        tracking.db, config, dest, tracking.schema.privilege_problems(set(TRACKING_TABLES))))
    progress = read_log_progress(config.log_dir)
    checkpoints = log_checkpoints(progress, (config.job, f"{config.database}.{config.source_table}"),
                                  config.reading)
    reporter.say(f"Run {state.run_id}: {plural(len(files), 'file')} in {config.csv_dir}"
                 + (f", archiving into {dest.where}" if dest else ""), level=2)
    return RunContext(config, tracking.db, tracking, plan, log, reporter, state, checkpoints,
                      make_mover(tracking, plan, dest), dest=dest)


def open_destination(config: Config, read_only: bool = False) -> Database | None:
    """The destination session, in UTC so TIMESTAMPs travel as their stored value; None without one."""
    if config.dest is None:
        return None
    if read_only:
        return Database(config.dest, config.lock_wait_timeout, read_only=True, utc=True,
                        silence=probe_silence(config, config.dest))
    return Database(config.dest, config.lock_wait_timeout, utc=True, wait_timeout=run_silence(config))


def describe_failure(exc: BaseException) -> str:
    """The one-line reason a run failed, for process_logs and the text log."""
    if isinstance(exc, ArchiveError):
        return str(exc)
    if isinstance(exc, mysql.connector.Error):
        return describe_mysql_error(exc)
    return f"internal error: {type(exc).__name__}: {exc} (rerun with --debug)"


def open_conflict_lines(config: Config, state: RunState) -> list[str]:
    """What cron mails with exit 3: how many conflicts are open, where, the first keys, and the
    one command that lists them all (the SUMMARY counts only the conflicts this run found)."""
    lines = [(f"OPEN CONFLICTS: {plural(state.open_conflicts, 'conflict')} of this job kept in both tables "
              f"({state.totals.conflicts} found by this run, the others by earlier runs; rechecked by every "
              "run, see README, Duplicate conflicts)")]
    for name, count, first in state.open_conflict_files:
        more = f" and {count - len(first)} more" if count > len(first) else ""
        lines.append(f"  {name}: {plural(count, 'key')}: {', '.join(first)}{more}")
    query = (f"SELECT file_name, key_value, found_at FROM conflict_logs WHERE job = '{config.job}' "
             "AND status = 'OPEN' AND kind = 'CONFLICT' ORDER BY id")
    lines.append(f"  all of them: mariadb {config.database} -e \"{query}\"")
    return lines


def finish_output(config: Config, log: TextLog, reporter: Reporter, state: RunState, status: str,
                  code: int) -> None:
    """The SUMMARY line (with exit 3, the open conflicts): always in the text log; on the terminal
    unless -q and nothing to say."""
    if not state.run_id or (code == EXIT_LOCKED and state.stop_reason is None):
        return  # refused or failed before it started: stderr says why
    lines = [summary_line(state, status)]
    lines += open_conflict_lines(config, state) if code == EXIT_CONFLICTS else []
    quiet_ok = code == EXIT_OK or (code == EXIT_INTERRUPTED and state.planned_stop and state.totals.batches)
    with contextlib.suppress(ArchiveError):
        for line in lines:
            log.write(line)
    with contextlib.suppress(ArchiveError):
        reporter.clear_progress()
        for line in lines:
            reporter.say(line, level=1 if quiet_ok else 0)


def record_run_failure(tracking: Tracking | None, state: RunState, log: TextLog, message: str) -> None:
    """Write FAILED and the error into process_logs; if the DB is gone, say so in the log."""
    if tracking is None or not state.run_id or not tracking.lock.locked:
        return
    db = tracking.db
    try:
        db.rollback()
        db.ensure_connected()
        state.stop_reason = None
        tracking.finish_run("FAILED", f"failed: {message}", state.paused_seconds, message, EXIT_FAILED)
    except (mysql.connector.Error, ArchiveError) as exc:
        note = (f"could not record the failure in process_logs: {exc}; the next run will mark run "
                f"{state.run_id} INTERRUPTED")
        with contextlib.suppress(ArchiveError):
            log.write(f"ERROR: {note}")
        print(f"archive.py: {note}", file=sys.stderr)


def publish_end(metrics: MetricsFile, state: RunState, status: str, code: int, tracking: Tracking | None
                ) -> None:
    """The metrics file's last write of a run; not for a run that lost its lock to another run
    (that run writes this job's metrics now)."""
    if code == EXIT_LOCKED:
        return
    state.status, state.exit_code, state.ended_at = status, code, time.time()
    if code == EXIT_OK:
        state.last_success = state.ended_at
    note = metrics.publish(state, force=True)
    if note and tracking is not None:
        print(f"archive.py: {note}", file=sys.stderr)


def run(config: Config, verbosity: int = 1) -> int:
    """Archive every CSV file; the whole job, as cron runs it."""
    state, stop, reporter, metrics = RunState(), StopSignal(), Reporter(verbosity), MetricsFile(config)
    files = list_csv_files(config.csv_dir, config.csv_pattern)  # a bad pattern stops us before any write
    state.files_total = len(files)
    log = TextLog(config.log_dir, dt.datetime.now())
    previous = install_signal_handlers(stop)
    db = dest = None
    tracking: Tracking | None = None
    status, code = "FAILED", EXIT_FAILED
    try:
        db = Database(config.db, config.lock_wait_timeout, wait_timeout=run_silence(config))
        dest = open_destination(config)
        tracking = Tracking(db, config)
        context = open_run(config, tracking, dest, log, reporter, state, files)
        context.controls = Controls(context, stop, metrics)
        try:
            code = execute_run(context, files)
        finally:
            context.controls.close()
        status = "INTERRUPTED" if code == EXIT_INTERRUPTED else "COMPLETED"
        return code
    except AlreadyRunning as exc:
        code = EXIT_LOCKED
        if isinstance(exc, LostLock):  # the run that took over already marked this one INTERRUPTED
            status, state.stop_reason = "INTERRUPTED", "lost the run lock"
            with contextlib.suppress(ArchiveError):
                log.write(f"ERROR: {exc}")
        raise
    except Exception as exc:
        error = describe_failure(exc)
        if state.run_id and not isinstance(exc, BatchFailed):
            with contextlib.suppress(ArchiveError):
                log.write(f"ERROR: {error}")
        record_run_failure(tracking, state, log, error)
        raise
    finally:
        restore_signal_handlers(previous)
        finish_output(config, log, reporter, state, status, code)
        publish_end(metrics, state, status, code, tracking)
        if tracking is not None:
            tracking.lock.release()
        for session in (db, dest):
            if session is not None:
                session.close()
        log.close()


# --------------------------------------------------------------------------- status

def format_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> list[str]:
    """Left-aligned text columns."""
    cells = [[("" if r[c] is None else str(r[c])) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return [line.rstrip() for line in lines]


def fit_table(rows: list[dict[str, Any]], columns: Sequence[str], width: int | None) -> list[str]:
    """format_table, or on a terminal too narrow for it one block per row: its first column, then
    the others as `name value` fields cut to the width at field boundaries."""
    lines = format_table(rows, columns)
    if width is None or max(len(line) for line in lines) <= width:
        return lines
    blocks = []
    for row in rows:
        fields = ", ".join(f"{c} {'' if row[c] is None else row[c]}" for c in columns[1:])
        blocks += wrap_fields(str(row[columns[0]]), width) + wrap_fields("  " + fields, width, "    ")
    return blocks


def print_lines(lines: Iterable[str], out: Any) -> None:
    """Print a report."""
    for line in lines:
        print(line, file=out)


def json_value(value: Any) -> Any:
    """Database values as JSON: times as ISO text, decimals as numbers."""
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def json_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Database rows as JSON objects."""
    return [{key: json_value(value) for key, value in row.items()} for row in rows]


def read_only_tracking(db: Database, config: Config) -> Tracking | None:
    """Tracking for reports, or None when there are no tracking tables to read.

    Older tables are read as they are (a read-only command never migrates).
    """
    tracking = Tracking(db, config)
    present = tracking.schema.present()
    tracking.use_version(tracking.schema.version())
    if present >= set(TRACKING_TABLES) or (present >= set(TRACKING_TABLES[:3]) and tracking.legacy):
        return tracking
    return None


def run_seconds(db: Database, run_row: dict[str, Any], alive: bool) -> int:
    """How long the run lasted; a dead run's clock stops at its last sign of life.

    In UTC, so a DST change in between does not count (a run of schema 2 has local times only).
    """
    if run_row["start_time_utc"] is not None:
        start, end, now = run_row["start_time_utc"], run_row["last_seen_utc"], "UTC_TIMESTAMP()"
    else:
        start, end, now = run_row["start_time"], run_row["end_time"] or run_row["last_seen"], "NOW()"
    if end is None or (alive and run_row["end_time"] is None):
        end = db.query(f"SELECT {now}")[0][0]
    return int((end - start).total_seconds())


STATUS_FORMAT = 2  # --status --json's layout (README, Monitoring): 2 added metrics, held_rows, exit_code


def status_metrics(db: Database, tracking: Tracking, newest: dict[str, Any], report: dict[str, Any]
                   ) -> dict[str, Any]:
    """The metrics file's values for the job's newest run, read from the tracking tables."""
    running = newest["status"] == "RUNNING"
    files = run_files(tracking, newest["id"])
    elapsed = run_seconds(db, newest, running)
    values = {
        "last_run_status": newest["status"], "last_run_exit_code": newest["exit_code"],
        "last_run_start_timestamp_seconds": timestamp_of(newest["start_time_utc"]),
        "last_run_end_timestamp_seconds": None if running else timestamp_of(newest["last_seen_utc"]),
        "last_success_timestamp_seconds": timestamp_of(last_success(tracking)),
        "heartbeat_timestamp_seconds": timestamp_of(newest["last_seen_utc"]),
        "open_conflicts": sum(c["keys"] for c in report["open_conflicts"]),
        "held_rows": sum(c["keys"] for c in report["held_rows"]),
        "files": newest["total_files"], "files_pending": newest["total_files"] - newest["processed_files"],
        "batches_done_total": batches_of(tracking, newest["id"]),
        "file_batches_done": files[-1]["processed_batches"] if files else 0,
        "file_batches": files[-1]["total_batches"] if files else 0,
        "paused_seconds_total": float(newest["paused_seconds"]),
        "rows_per_second": int(newest["rows_archived"]) / max(elapsed, 1), "eta_seconds": None}
    values.update({name: int(newest[c.column]) for c in COUNTS for name in [COUNT_METRICS[c.field][0]]})
    return values


def status_report(db: Database, config: Config) -> dict[str, Any] | None:
    """The latest run of this job that did something, with its files and liveness; None if none."""
    with db.reading():
        tracking = read_only_tracking(db, config)
        if tracking is None or tracking.legacy:
            return None
        newest = newest_run(tracking)
        if newest is None:
            return None
        shown = newest if newest["status"] != "COMPLETED" or did_work(tracking, newest["id"]) else (
            last_run_with_work(tracking) or newest)
        report = json_rows([shown])[0]
        report["run_id"] = report.pop("id")
        running = shown["status"] == "RUNNING"
        alive, liveness = tracking.lock.holder_is_alive(shown["id"]) if running else (False, "")
        report.update(alive=alive, liveness=liveness, started=report.pop("start_time"),
                      ended=report.pop("end_time"), error=report.pop("error_message"))
        report["seconds"] = run_seconds(db, shown, alive)
        del report["start_time_utc"], report["last_seen_utc"]
        report["latest_run"] = None if shown is newest else {
            "run_id": newest["id"], "status": newest["status"],
            "started": json_value(newest["start_time"])}
        report["files"] = json_rows(run_files(tracking, shown["id"]))
        report["child_tables"] = child_rows(tracking, shown["id"])
        report["open_conflicts"] = [{"file": name, "keys": n, "first_keys": first}
                                    for name, n, first in open_rows_by_file(tracking)]
        report["held_rows"] = [{"file": name, "keys": n, "first_keys": first}
                               for name, n, first in open_rows_by_file(tracking, "HELD")]
        report["problem_batches"] = json_rows(problem_batches(tracking))
        report["metrics"] = status_metrics(db, tracking, newest, report)
        return {"format_version": STATUS_FORMAT, **report}


def status_lines(report: dict[str, Any]) -> list[str]:
    """The --status text."""
    r = report
    live = f" ({r['liveness']})" if r["status"] == "RUNNING" else ""
    ending = (f"ended {r['ended']}" if r["ended"] else "running" if r["alive"]
              else f"last seen {r['last_seen']}")
    lines = [f"Run {r['run_id']}: {r['status']}{live}",
             (f"  started {r['started']} on {r['host']} pid {r['pid']}, {ending} "
              f"({format_seconds(r['seconds'])})"),
             (f"  files {r['processed_files']}/{r['total_files']}, current file {r['current_file'] or '-'} "
              f"batch {r['current_batch'] or '-'}"),
             "  " + ", ".join(f"{c.label} {r[c.column]}" for c in COUNTS)]
    lines += [f"  child table {name}: " + ", ".join(f"rows {what} {n}" for what, n in counts.items())
              for name, counts in r.get("child_tables", {}).items()]
    if r["destination"]:
        lines.append(f"  archiving into {r['destination']} (job {r['job']})")
    if r["pause_reason"] and r["status"] == "RUNNING":
        lines.append(f"  PAUSED: {r['pause_reason']}")
    lines += [f"  paused {r['paused_seconds']:.1f}s in all"] if r["paused_seconds"] else []
    lines += [f"  stop reason: {r['stop_reason']}"] if r["stop_reason"] else []
    lines += [f"  error: {r['error']}"] if r["error"] else []
    if r["latest_run"]:
        latest = r["latest_run"]
        lines.append(f"  (the newest run, {latest['run_id']} at {latest['started']}, had nothing to do)")
    if r["files"]:
        rows = [dict(f, progress=f"{f['processed_batches']}/{f['total_batches']} batches")
                for f in r["files"]]
        lines.append("Files:")
        lines += ["  " + line for line in format_table(
            rows, ("file", "progress", "status", "rows_archived", "conflicts", "not_found", "error"))]
    if r["open_conflicts"]:
        lines.append("Open conflicts (rechecked at the start of every run; see README, Duplicate conflicts):")
        lines += [f"  {c['file']}: {plural(c['keys'], 'key')}: {', '.join(c['first_keys'])}"
                  + (" …" if c["keys"] > len(c["first_keys"]) else "") for c in r["open_conflicts"]]
    if r.get("held_rows"):
        lines.append("Rows held back by the guard (revisited at the start of every run unless "
                     "revisit_held = no):")
        lines += [f"  {c['file']}: {plural(c['keys'], 'row')}: {', '.join(c['first_keys'])}"
                  + (" …" if c["keys"] > len(c["first_keys"]) else "") for c in r["held_rows"]]
    if r["problem_batches"]:
        lines.append("Recent FAILED or duplicate batches:")
        lines += ["  " + line for line in format_table(
            r["problem_batches"],
            ("run", "file_name", "batch", "status", "duplicates", "conflicts", "detail"))]
    return lines


def read_only_source(config: Config) -> Database:
    """The source session of --status, --check and --dry-run: it gives a silent server up."""
    return Database(config.db, config.lock_wait_timeout, read_only=True,
                    silence=probe_silence(config, config.db))


def status_report_anywhere(db: Database, config: Config) -> dict[str, Any] | None:
    """status_report through the first node of the host list that answers it in time."""
    for tries in range(1, db.settings.endpoints + 1):
        try:
            return status_report(db, config)
        except mysql.connector.Error as exc:
            if not is_connection_error(exc) or tries == db.settings.endpoints:
                raise
            db.connect(move_on=True)
    return None  # no address at all: connect() raised before


def show_status(config: Config, as_json: bool = False, out: Any = None) -> int:
    """Print the latest run, its files and recent problem batches; read-only."""
    out = out or sys.stdout
    db = read_only_source(config)
    try:
        report = status_report_anywhere(db, config)
    finally:
        db.close()
    if as_json:
        print(json.dumps(report if report is not None else {"run_id": None, "status": None, "files": []},
                         indent=2), file=out)
    elif report is None:
        print(f"No runs recorded yet for {config.job} (or its tracking tables are from an older "
              "version; the next run upgrades them).", file=out)
    else:
        print_lines(status_lines(report), out)
    return EXIT_OK


# --------------------------------------------------------------------------- check and setup

def cluster_lines(db: Database) -> list[str]:
    """What --check says about a Galera node: its state and limits."""
    if not db.wsrep:
        return []
    with db.reading():
        s = db.status_values("wsrep_cluster_size", "wsrep_cluster_status", "wsrep_local_state_comment",
                             "wsrep_ready")
    return [(f"cluster: Galera node {db.where}: {s.get('wsrep_local_state_comment')}, component "
            f"{s.get('wsrep_cluster_status')}, {s.get('wsrep_cluster_size')} nodes, ready "
             f"{s.get('wsrep_ready')}; wsrep_max_ws_rows {db.variable('wsrep_max_ws_rows')}, "
             f"wsrep_max_ws_size {db.variable('wsrep_max_ws_size')}")]


def looked_at_lines(config: Config, plan: TablePlan, tracking: tuple[set[str], int]) -> list[str]:
    """What --check -v adds: what the checks looked at, from the plan they approved."""
    lines = [(f"looked at: key {plan.key_text} ({plan.key_type.sql_type}) through index {plan.source_index} "
              f"of `{plan.source}` and {plan.archive_index} of `{plan.archive}`"),
             "looked at: columns copied and compared: "
             + ", ".join(f"{c.name} {c.data_type}" for c in plan.columns)]
    lines += [("looked at: generated on both sides (compared, not copied): "
               + ", ".join(c.name for c in plan.recomputed))] if plan.recomputed else []
    for where, definitions in (("source server", plan.definitions), ("destination", plan.dest_definitions)):
        if definitions is None or not definitions.effects:
            continue
        tables = ", ".join(f"`{t.name}` ({t.event} triggers)" for t in definitions.tables)
        engines, triggers, references = (definitions.effects + (None, None, None))[:3]
        lines.append(f"looked at on the {where}: {tables}: engines {engines or '-'}, triggers that would "
                     f"fire {triggers or 'none'}, foreign keys reaching the source {references or 'none'}")
    lines.append(f"looked at: guard {plan.guard or '(none)'}")
    present, version = tracking
    lines.append(f"looked at: tracking tables present: {', '.join(sorted(present)) or 'none'}"
                 + (f" (schema {version})" if "process_logs" in present else ""))
    limits = [f"{key} {', '.join(f'{n}={v:g}' for n, v in values)}"
              for key, values in (("max_load", config.max_load), ("critical_load", config.critical_load))
              if values]
    lines.append("looked at: load limits " + ("; ".join(limits) if limits else "(none)")
                 + f"; replicas {len(config.replicas)}")
    return lines


def load_limit_problems(db: Database, config: Config) -> list[str]:
    """max_load and critical_load names the server does not report as numbers (a run would fail
    at its first check)."""
    limits = {"max_load": config.max_load, "critical_load": config.critical_load}
    names = [name for values in limits.values() for name, _ in values]
    if not names:
        return []
    with db.reading():
        status = db.status_values(*names)
    return [f"[controls] {key}: the server has no numeric status variable {name}"
            for key, values in limits.items() for name, _ in values
            if not re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", status.get(name.lower(), ""))]


def child_lines(plan: TablePlan, where: str = "") -> list[str]:
    """--check's line for each child table: what moves with what (`where`: on the destination),
    compared by which key."""
    parents = {c.name: c.source for c in plan.children}
    return [f"ok: child `{c.source}` -> `{c.archive}`{where} moves with "
            f"`{parents.get(c.parent or '', plan.source)}` ({', '.join(c.parent_columns)} = "
            f"{', '.join(c.parent_key)}), compared by its key ({', '.join(c.key)}), "
            f"{plural(len(c.columns), 'column')} copied" for c in plan.children]


def replica_lines(config: Config, source_id: int) -> tuple[list[str], list[str]]:
    """--check's look at each replica in [controls] replicas: its server and lag now (lines), and
    what would stop a run (problems: TLS refused, a replica whose lag cannot be read as set);
    `source_id` is the source's @@server_id, whose heartbeats a heartbeat lag source reads."""
    lines, problems = [], []
    for replica in config.replicas:
        where = replica.describe()
        try:
            conn, dialect = open_replica(config, replica)
        except ArchiveError as exc:
            problems.append(str(exc))
            continue
        except mysql.connector.Error as exc:
            lines.append(f"note: replica {where} cannot be reached now ({describe_mysql_error(exc)}); a run "
                         f"pauses while its lag is unknown, for at most replica_timeout")
            continue
        source = config.replica_lag_source
        try:
            lag, watched = (replica_lag(conn, where, dialect) if source is None else
                            (heartbeat_lag(conn, source, source_id, where),
                             f"the heartbeat table {source[0]}.{source[1]}"))
        except ArchiveError as exc:
            problems.append(str(exc))
            continue
        finally:
            conn.close()
        lag_text = (f"lag {lag:.0f}s ({watched})" if lag is not None else
                    f"lag unknown ({watched}; not replicating?): a run pauses")
        lines.append(f"replica: {where}: {dialect.name}, {lag_text}")
    return lines, problems


def check_command(config: Config, out: Any = None, verbose: bool = False) -> int:
    """Preflight only, with a readable verdict (with `verbose`, what each check looked at); exit 0
    when a run could proceed."""
    out = out or sys.stdout
    db = read_only_source(config)
    dest = None
    try:
        dest = open_destination(config, read_only=True)
        found = run_preflight(db, config, dest)
        lines = [f"{kind}: {session.where}: {text}" for session in (db, dest) if session
                 for kind, text in (("server", session.dialect.name), ("tls", session.encryption))]
        lines += cluster_lines(db) + (cluster_lines(dest) if dest else [])
        tracking = Tracking(db, config)
        present, version = tracking.schema.present(), tracking.schema.version()
        found.problems += tracking.schema.privilege_problems(present, version)
        found.problems += load_limit_problems(db, config)
        watched, refused_replicas = replica_lines(config, int(db.query("SELECT @@server_id")[0][0]))
        lines += watched
        found.problems += refused_replicas
    finally:
        for session in (db, dest):
            if session is not None:
                session.close()
    lines += [f"note: {note}" for note in found.notes] + [f"FAIL: {problem}" for problem in found.problems]
    missing = [t for t in TRACKING_TABLES if t not in present]
    refused = " ".join(found.problems)  # a FAIL line already says what this user cannot do
    if missing and "cannot CREATE tracking table" not in refused:
        lines.append(f"note: tracking tables {', '.join(missing)} will be created by the first run "
                     "(needs the CREATE privilege once; a table this user has no privilege on looks "
                     "missing too: see the README's grants)")
    upgrade_refused = "cannot ALTER tracking table" in refused
    if "process_logs" in present and version < SCHEMA_VERSION and not upgrade_refused:
        lines.append(f"note: tracking tables are schema {version}; the next run upgrades them to "
                     f"{SCHEMA_VERSION} (needs the ALTER privilege once)")
    if found.plan is None or found.problems:
        print_lines(lines + ["Verdict: NOT READY: fix the FAIL lines above."], out)
        return EXIT_FAILED
    where = f" on {config.dest.describe()}" if config.dest else ""
    lines += looked_at_lines(config, found.plan, (present, version)) if verbose else []
    print_lines(lines + [
        (f"ok: `{config.source_table}` -> `{config.archive_table}`{where} on key {found.plan.key_text} "
         f"({found.plan.key_type.sql_type}), {plural(len(found.plan.columns), 'column')} copied"),
        *child_lines(found.plan, where), "Verdict: READY."], out)
    return EXIT_OK


def setup_tracking(config: Config, out: Any = None) -> int:
    """--setup: create the missing tracking tables and migrate older ones, then stop; run once by
    an admin, so that the job's own user needs no CREATE or ALTER."""
    out = out or sys.stdout
    db = Database(config.db, config.lock_wait_timeout, wait_timeout=run_silence(config))
    try:
        schema = TrackingSchema(db)
        with db.reading():
            missing = [t for t in TRACKING_TABLES if t not in schema.present()]
        steps = retry_conflicts(db, config.retry_timeout, schema.ensure)
        with db.reading():
            version = schema.version()
    finally:
        db.close()
    lines = [f"created: tracking table {table}" for table in missing]
    lines += [f"MIGRATED: tracking tables to schema {SCHEMA_VERSION}: {step}" for step in steps]
    lines.append(f"setup: the tracking tables in `{config.database}` are schema {version}; a run needs only "
                 "the README's grants now")
    print_lines(lines, out)
    return EXIT_OK


# --------------------------------------------------------------------------- dry run

DRY_RUN_COUNTS = ("batches", *(c.predicted for c in COUNTS))  # the prediction's names for COUNTS


class MovedKeys:
    """The keys a dry run predicts the run would move, kept on disk: memory stays flat however many.

    The run deletes each row it moves, so the same key listed again is then not found; the dry
    run deletes nothing, so it must remember them. They go to an SQLite file in a temporary
    folder (in TMPDIR, never in log_dir) removed when the dry run ends; only SQLite's page cache
    (2 MB) is in memory. Integers are stored as integers (text past 64 bits), text and bytes as
    BLOBs, so two keys never share a value.
    """

    CHUNK = 500  # keys per lookup: well inside any SQLite's limit on bound parameters

    def __init__(self) -> None:
        try:
            self.folder = tempfile.TemporaryDirectory(prefix="archive-dry-run-")
        except OSError as exc:
            raise self.trouble("TMPDIR", exc) from None
        self.db = sqlite3.connect(Path(self.folder.name) / "moved-keys.sqlite")
        for pragma in ("journal_mode = OFF", "synchronous = OFF", "cache_size = -2000"):
            self.run(f"PRAGMA {pragma}")  # nothing is rolled back, nothing must survive a crash
        self.run("CREATE TABLE moved (k PRIMARY KEY) WITHOUT ROWID")

    def run(self, sql: str, params: Any = (), many: bool = False) -> list[Any]:
        """One statement (for each of params, with many), its rows; a failure is the DBA's to fix."""
        try:
            cursor = self.db.executemany(sql, params) if many else self.db.execute(sql, params)
            return cursor.fetchall()
        except sqlite3.Error as exc:
            raise self.trouble(self.folder.name, exc) from None

    @staticmethod
    def trouble(where: str, exc: Exception) -> ArchiveError:
        """What to do when the list of moved keys cannot be written."""
        return ArchiveError(f"--dry-run: cannot write its list of moved keys in {where}: {exc} "
                            "(it needs a few bytes per key; set TMPDIR to a folder with room)")

    @staticmethod
    def stored(key: Key) -> int | str | bytes:
        """How a key is stored: one value per key, never equal to another key's (a date or a
        composite key as the text format_key writes, which reads back as one key only)."""
        if isinstance(key, int):
            return key if -(2 ** 63) <= key < 2 ** 63 else str(key)
        if isinstance(key, (bytes, str)):
            return key.encode("utf-8") if isinstance(key, str) else key
        return format_key(key)

    def among(self, keys: Iterable[Key]) -> set[Key]:
        """Which of these keys were moved before."""
        by_value = {self.stored(key): key for key in keys}
        values, found = list(by_value), set[Key]()
        for start in range(0, len(values), self.CHUNK):
            chunk = values[start:start + self.CHUNK]
            rows = self.run(f"SELECT k FROM moved WHERE k IN ({', '.join('?' * len(chunk))})", chunk)
            found.update(by_value[value] for (value,) in rows)
        return found

    def add(self, keys: Iterable[Key]) -> None:
        """Remember keys as moved (each once: a key moved before is never classified again)."""
        self.run("INSERT INTO moved VALUES (?)", [(self.stored(key),) for key in keys], many=True)

    def close(self) -> None:
        """Remove the file and its folder."""
        self.db.close()
        self.folder.cleanup()


class SilentLog(TextLog):
    """A text log that writes nothing: --dry-run changes nothing, not even the log."""

    def write(self, text: str, durable: bool = False) -> None:
        """Drop the line."""


@dataclass
class Prediction:
    """One row of the dry run: a file (or the recheck of open conflicts), what it would do."""

    file: str
    status: str
    counts: Counters = field(default_factory=Counters)

    def row(self) -> dict[str, Any]:
        """As --dry-run prints it (DRY_RUN_COUNTS' names)."""
        counts = dict(zip(DRY_RUN_COUNTS, (self.counts.batches, *self.counts.values())))
        return {"file": self.file, **counts, "status": self.status}


def count_children(context: RunContext, found: Classified) -> None:
    """The child rows a batch would move: into RunState.child_rows (to archive) and child_deleted."""
    state = context.state
    for child in context.plan.children:
        new, twins = found.child_counts(child.name)
        state.child_rows[child.name] = state.child_rows.get(child.name, 0) + new
        state.child_deleted[child.name] = state.child_deleted.get(child.name, 0) + new + twins


def too_big_key(mover: Mover, keys: Sequence[Key], found: Classified) -> tuple[int, str] | None:
    """With child tables: the index of the first key whose family alone is over max_batch_rows, and
    the error the run would fail with there (the parts before it are moved)."""
    done = 0
    while isinstance(mover, InParts) and done < len(keys):
        try:
            done += len(mover.fitting_keys(keys[done:], found))
        except ArchiveError as exc:
            return done, str(exc)
    return None


def predict_keys(context: RunContext, keys: Sequence[Key], moved: MovedKeys) -> tuple[Counters, str | None]:
    """What a batch of these keys would do, classified as the run classifies them (Classified.counts),
    treating keys moved by earlier batches as gone; and the error it would fail with, if it would."""
    unique = dict.fromkeys(keys)
    gone = moved.among(unique)
    fresh = [k for k in unique if k not in gone]
    found = context.mover.classify(fresh, lock=False) if fresh else Classified()
    context.mover.rollback()
    failure = too_big_key(context.mover, fresh, found)
    if failure is not None:  # the run stops at that key: only the keys before it count
        keys = keys[:list(keys).index(fresh[failure[0]])]
        found = found.restricted(keys)
    count_children(context, found)
    moved.add(found.to_copy + found.identical)
    counts = found.counts(keys, len(found.to_copy), len(found.to_copy) + len(found.identical))
    return counts, failure[1] if failure else None


def predict_recheck(context: RunContext, moved: MovedKeys) -> Prediction | None:
    """What the run's recheck of open conflicts (and revisit of held rows) would settle (in no
    batch of its own)."""
    kinds = ("CONFLICT", "HELD") if context.config.revisit_held else ("CONFLICT",)
    groups = [rows for kind in kinds for rows in context.tracking.open_conflicts(kind).values()]
    if not groups:
        return None
    prediction = Prediction("(open conflicts)", "rechecked first")
    keys = [parse_stored_key(text, context.plan.key_type) for rows in groups for _, text in rows]
    for start in range(0, len(keys), context.config.batch_size):
        counts, failure = predict_keys(context, keys[start:start + context.config.batch_size], moved)
        prediction.counts.add(counts)
        if failure:
            prediction.status = f"FAILS: {failure}"
            break
    prediction.counts.batches = 0
    return prediction


def predict_file(context: RunContext, path: Path, tracked: bool, moved: MovedKeys) -> Prediction:
    """One file's row of the dry run, from where the run would start in it."""
    if not has_utf8_name(path):
        return Prediction(display_name(path), "REJECTED: the file name is not valid UTF-8")
    try:
        scan = hash_file(path)
    except RejectedFile as exc:
        return Prediction(display_name(path), f"REJECTED: {exc}")
    if tracked and (finished := context.tracking.finished_record(scan)) is not None:
        return Prediction(scan.name, f"already done (run {finished[0]})")
    in_log = context.log_checkpoints.get((scan.name, scan.sha256))
    checkpoint = resume_point(context, path, scan) if tracked else (
        verify_log_checkpoint(context, path, None, in_log) if in_log else None)
    config = context.config
    try:
        count_keys(path, config.csv_format, context.plan.key_type)
    except RejectedFile as exc:
        return Prediction(scan.name, f"REJECTED: {exc}")
    size, settled = resume_inside(context, scan, checkpoint, tracked)
    done = checkpoint.last_batch if checkpoint else 0
    prediction = Prediction(scan.name, f"resumes at batch {done + 1}" if done else "to do")
    blocks = key_blocks(path, config.csv_format, context.plan.key_type)
    for batch in iter_batches(blocks, size, done + 1, skip=done * size):
        counts, failure = predict_keys(context, batch.keys[settled_in(batch, done + 1, settled):], moved)
        prediction.counts.add(counts)
        if failure:
            prediction.status = f"FAILS at batch {batch.number}: {failure}"
            break
    return prediction


def dry_run(config: Config, as_json: bool = False, out: Any = None) -> int:
    """Predict, per file, exactly what a run would do, with read-only queries."""
    out = out or sys.stdout
    db = read_only_source(config)
    dest = moved = None
    try:
        moved = MovedKeys()
        dest = open_destination(config, read_only=True)
        plan = require_plan(db, config, dest)
        found_tracking = read_only_tracking(db, config)
        tracking = found_tracking or Tracking(db, config)
        progress = read_log_progress(config.log_dir, save=False)
        jobs = (config.job, f"{config.database}.{config.source_table}")
        context = RunContext(config, db, tracking, plan, SilentLog(config.log_dir, dt.datetime.now()),
                             Reporter(0), RunState(), log_checkpoints(progress, jobs, config.reading),
                             make_mover(tracking, plan, dest), dest=dest)
        tracked = found_tracking is not None
        recheck = predict_recheck(context, moved) if tracked else None
        files = list_csv_files(config.csv_dir, config.csv_pattern)
        predictions = [recheck] if recheck else []
        predictions += [predict_file(context, path, tracked, moved) for path in files]
    finally:
        for session in (db, dest):
            if session is not None:
                session.close()
        if moved is not None:
            moved.close()
    total = Prediction("TOTAL", plural(len(predictions), "file"))
    for prediction in predictions:
        total.counts.add(prediction.counts)
    rows = [p.row() for p in predictions]
    rejected = sum(p.status.startswith("REJECTED") for p in predictions)
    state = context.state
    children = {name: {"rows_to_archive": n, "rows_to_delete": state.child_deleted[name]}
                for name, n in state.child_rows.items()}
    fails = any(p.status.startswith("FAILS") for p in predictions)
    if as_json:
        totals = {k: total.row()[k] for k in DRY_RUN_COUNTS}
        print(json.dumps({"files": rows, "total": totals, "rows_to_archive": totals["rows_to_archive"],
                          "rows_to_delete": totals["rows_to_delete"], "rejected_files": rejected,
                          **({"child_tables": children} if children else {})}, indent=2), file=out)
    else:
        table = rows + [total.row()]
        print_lines(fit_table(table, ("file",) + DRY_RUN_COUNTS + ("status",), terminal_width(out)), out)
        print_lines([f"child table {name}: {n['rows_to_archive']} rows to archive, {n['rows_to_delete']} to "
                     "delete" for name, n in children.items()], out)
        print("Dry run: nothing was changed.", file=out)
    return EXIT_FAILED if fails else EXIT_REJECTED if rejected else EXIT_OK


# --------------------------------------------------------------------------- key export

class ExportControls(Controls):
    """A run's throttles, for an export: it has no run row to show its pauses in (the text log has them)."""

    def note(self, text: str, pause: str | None) -> None:
        """A pause or resume line: text log and terminal."""
        self.context.say(text)


def index_order(db: Database, plan: TablePlan) -> tuple[int, ...]:
    """The positions of the key's columns in the order of its unique index."""
    rows = db.read("SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() "
                   "AND TABLE_NAME = %s AND INDEX_NAME = %s ORDER BY SEQ_IN_INDEX",
                   (plan.source, plan.source_index))
    lowered = [name.lower() for name in plan.key]
    return tuple(lowered.index(str(name).lower()) for (name,) in rows)


def check_export_config(config: Config) -> str:
    """The export condition, once the settings can give files the run reads back as written."""
    if not config.export_where:
        raise config_error("export", "where", "is required by --export-keys (the condition on the "
                           "source row that selects the keys)")
    if config.csv_dialect != "rfc4180":
        raise config_error("archive", "csv_dialect", "--export-keys writes RFC 4180 files; set "
                           "csv_dialect = rfc4180 (or leave it out)")
    prefix = config.export_file_prefix or config.source_table
    name = export_file_name(prefix, "20000101T000000Z", 1)
    if not Path(name).match(config.csv_pattern):
        raise config_error("export", "file_prefix", f"csv_pattern {config.csv_pattern!r} would not read "
                           f"the exported files ({name}); widen csv_pattern or change file_prefix")
    if Path(temporary_name(name)).match(config.csv_pattern):
        raise config_error("archive", "csv_pattern", f"{config.csv_pattern!r} also matches the export's "
                           f"temporary files ({temporary_name(name)}); use a pattern such as *.csv")
    if not os.access(config.csv_dir, os.W_OK | os.X_OK):
        raise config_error("archive", "csv_dir", f"{config.csv_dir} is not writable (--export-keys "
                           "writes its key files there)")
    return config.export_where


@contextlib.contextmanager
def export_lock(config: Config, prefix: str) -> Iterator[None]:
    """One export of a prefix at a time (a lock file in log_dir, released by the kernel at any exit)."""
    path = config.log_dir / f".archive-export-{prefix}.lock"
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunning(f"another --export-keys for prefix {prefix} is running (it holds "
                                 f"{path}); nothing was written") from None
        yield


def remove_stale_exports(csv_dir: Path, prefix: str) -> list[str]:
    """The temporary files a killed export left (only ever under the export lock)."""
    pattern, removed = export_file_pattern(prefix), []
    for path in csv_dir.glob(f".{prefix}-*.csv.tmp"):
        if pattern.fullmatch(path.name[1:-len(".tmp")]):
            path.unlink()
            removed.append(path.name)
    return removed


def pending_exports(context: RunContext, prefix: str, tracked: bool) -> list[str]:
    """The files of earlier exports (this prefix) in csv_dir that no run finished yet."""
    pattern, pending = export_file_pattern(prefix), []
    for path in sorted(context.config.csv_dir.iterdir()):
        if not pattern.fullmatch(path.name):
            continue
        scan = hash_file(path)
        with context.db.reading():
            finished = tracked and context.tracking.finished_record(scan) is not None
        if not finished:
            pending.append(path.name)
    return pending


def unpack_keys(count: int, text: str | None) -> KeyLines:
    """The lines of a packed chunk, all of them (group_concat_max_len must not have cut it)."""
    lines = text.count("\n") + 1 if text else 0
    if lines != count:
        raise ArchiveError(f"--export-keys: the server returned {lines} of a chunk's {count} keys "
                           "(group_concat_max_len is smaller than max_allowed_packet?)")
    return KeyLines(text or "", count)


def read_chunk(db: Database, walk: KeyWalk, after: Sequence[Any] | None, end: Sequence[Any],
               plan: ChunkPlan) -> WalkedChunk:
    """Read the chunk `plan` describes after `after` (None: from the start), up to `end`."""
    if plan.span and after is not None:
        if int(after[0]) >= int(end[0]):
            return WalkedChunk(None, [])
        upto = walk.span_end(after, end, plan.rows)
        found = db.query(*walk.keys_sql(after, upto))
        return WalkedChunk(upto, unpack_keys(int(found[0][0]), found[0][1]))
    if walk.packed and len(walk.columns) == 1:  # half the reads of the two steps below
        chunk = db.query(*walk.one_pass_sql(after, end, plan.rows))
        if not chunk:
            return WalkedChunk(None, [])
        return WalkedChunk((chunk[0][0],), unpack_keys(int(chunk[0][1]), chunk[0][2]), int(chunk[0][3]))
    bound = db.query(*walk.bound_sql(after, end, plan.rows))
    if not bound:
        return WalkedChunk(None, [])
    found = db.query(*walk.keys_sql(after, bound[0]))
    return WalkedChunk(bound[0], unpack_keys(int(found[0][0]), found[0][1]) if walk.packed else found)


def export_chunk(context: RunContext, walk: KeyWalk, after: Sequence[Any] | None, end: Sequence[Any],
                 plan: ChunkPlan) -> WalkedChunk:
    """read_chunk in a transaction of its own that ends in a rollback, retried as a batch is."""
    def attempt() -> WalkedChunk:
        context.db.ensure_connected()
        with context.db.reading():
            return read_chunk(context.db, walk, after, end, plan)
    return retry_transaction(context, "Export chunk", attempt)


class SideSession:
    """The export's second read-only session, in a thread of its own: while the main session reads
    a span, it reads the next one, so the server walks two key ranges at once (on its own cores; one
    range's read is all server time). Its connection is made as the first span is read. It is only
    a shortcut: any error closes it and hands its span back to the main session, which reads it as
    any chunk (with retries), and reads alone from then on."""

    def __init__(self, config: Config):
        self.config, self.broken = config, False
        self.thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="archive-export")
        self.session: concurrent.futures.Future[Database] = self.thread.submit(self.open)

    def open(self) -> Database:
        """The session, set up as the main one (read-only, the same timeouts)."""
        config = self.config
        return Database(config.db, config.lock_wait_timeout, read_only=True, wait_timeout=run_silence(config))

    def read(self, walk: KeyWalk, after: Sequence[Any], end: Sequence[Any], plan: ChunkPlan) -> WalkedChunk:
        """One span, as export_chunk reads it: a transaction of its own that ends in a rollback."""
        db = self.session.result()
        db.ensure_connected()  # long sleeps between chunks: a session the server dropped while idle
        with db.reading():
            return read_chunk(db, walk, after, end, plan)

    def start(self, walk: KeyWalk, after: Sequence[Any], end: Sequence[Any], plan: ChunkPlan
              ) -> concurrent.futures.Future[WalkedChunk]:
        """Begin reading a span in the session's thread."""
        return self.thread.submit(self.read, walk, after, end, plan)

    def finish(self, reading: concurrent.futures.Future[WalkedChunk]) -> WalkedChunk | None:
        """The span read, or None (the main session reads it) once anything went wrong."""
        try:
            return reading.result()
        except Exception:  # connecting or reading: the main session's retries judge the error
            self.broken = True
            return None

    def close(self) -> None:
        """Wait for its thread, then close the session."""
        self.thread.shutdown(wait=True)
        if self.session.done() and self.session.exception() is None:
            self.session.result().close()


def read_pair(context: RunContext, side: SideSession, walk: KeyWalk, after: Sequence[Any],
              end: Sequence[Any], plan: ChunkPlan) -> list[WalkedChunk]:
    """Two spans of plan.rows keys side by side: the second by the side session, the first by the
    main one; in key order."""
    middle = walk.span_end(after, end, plan.rows)
    ahead = side.start(walk, middle, end, plan)
    first = export_chunk(context, walk, after, end, plan)
    return [first, side.finish(ahead) or export_chunk(context, walk, middle, end, plan)]


def walk_export(context: RunContext, walk: KeyWalk, sink: Callable[[list[Any] | KeyLines], None]) -> int:
    """Walk the whole index chunk by chunk between the run's throttles (spans two at a time, see
    SideSession); return the keys found (context.state.stop_reason says when it stopped short)."""
    assert context.controls is not None
    after: tuple[Any, ...] | None = None
    plan, total = ChunkPlan(EXPORT_CHUNK_ROWS[2]), 0
    last = retry_transaction(context, "Export start", lambda: context.db.read(walk.last_sql()))
    side: SideSession | None = None
    try:
        while last:
            pair = plan.span and after is not None and not (side and side.broken)
            reason = context.controls.before_batch()
            if pair and not reason:  # each chunk of a pair is let through by the throttles
                reason = context.controls.before_batch()
            if reason:
                context.state.stop_reason = reason
                return total
            started = time.monotonic()
            if pair and after is not None:
                side = side or SideSession(context.config)
                chunks = read_pair(context, side, walk, after, last[0], plan)
            else:
                chunks = [export_chunk(context, walk, after, last[0], plan)]
            for chunk in chunks:
                if chunk.last is None:
                    return total
                sink(chunk.keys)
                total += len(chunk.keys)
            plan = next_chunk(plan, time.monotonic() - started, min(len(c.keys) for c in chunks),
                              chunks[-1].entries, chunk_width(walk, after, chunks[0]))
            after = chunks[-1].last
        return total
    finally:
        if side is not None:
            side.close()


def free_stamp(csv_dir: Path, prefix: str, now: dt.datetime) -> str:
    """This export's time stamp: now, or the first later second no earlier export of the prefix used
    (two exports in one second would write the same names)."""
    while any(csv_dir.glob(f"{prefix}-{now.strftime(EXPORT_STAMP)}-*.csv")):
        now += dt.timedelta(seconds=1)
    return now.strftime(EXPORT_STAMP)


def write_manifest(config: Config, name: str, manifest: dict[str, Any]) -> Path:
    """The export's manifest in log_dir, written whole (temporary name, fsync, rename)."""
    path = config.log_dir / name
    temporary = path.with_name(temporary_name(path.name))
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.rename(temporary, path)
    return path


def open_export(config: Config, db: Database, dest: Database | None, log: TextLog, reporter: Reporter,
                stop: StopSignal) -> tuple[RunContext, bool]:
    """The export's context, the run's preflight passed (so the keys fit the job); whether the
    tracking tables exist."""
    plan = require_plan(db, config, dest)
    found_tracking = read_only_tracking(db, config)
    tracking = found_tracking or Tracking(db, config)
    context = RunContext(config, db, tracking, plan, log, reporter, RunState(), {},
                         make_mover(tracking, plan, dest), dest=dest)
    context.controls = ExportControls(context, stop)
    return context, found_tracking is not None


def export_manifest(context: RunContext, files: list[ExportedFile], snapshot: str, keys: int
                    ) -> dict[str, Any]:
    """What the manifest says: the files, their keys and hashes, the condition, server and time."""
    config = context.config
    return {"format": EXPORT_MANIFEST_FORMAT, "archive.py": __version__, "job": config.job,
            "condition": config.export_where, "key_column": list(config.key_column),
            "server": context.db.where, "node": context.db.node, "snapshot_time": snapshot,
            "finished_time": dt.datetime.now(dt.timezone.utc).isoformat(), "keys": keys,
            "files": [dataclasses.asdict(f) for f in files]}


def run_export(context: RunContext, prefix: str, dry_run: bool) -> int:
    """Write (or with dry_run, count) the export's files; return the exit code."""
    config = context.config
    snapshot = str(context.db.read("SELECT UTC_TIMESTAMP(6)")[0][0])
    stamp = free_stamp(config.csv_dir, prefix, dt.datetime.now(dt.timezone.utc))
    index = context.plan.source_index
    header, layout = export_layout(config.csv_format)
    parts = context.plan.key_type.parts or (context.plan.key_type,)
    plain = all(p.kind == "int" for p in parts) and layout == list(range(len(parts)))
    walk = KeyWalk(config.source_table, index, context.plan.key, index_order(context.db, context.plan),
                   context.plan.key_type, config.export_where or "", config.csv_delimiter if plain else None)
    writer = KeyFileWriter(config.csv_dir, functools.partial(export_file_name, prefix, stamp),
                           config.export_keys_per_file, header, config.csv_delimiter)
    sink: Callable[[list[Any] | KeyLines], None] = (lambda keys: None) if dry_run else (
        lambda keys: writer.write(keys if isinstance(keys, KeyLines) else
                                  export_records(keys, context.plan.key_type, layout)))
    try:
        keys = walk_export(context, walk, sink)
    except BaseException:
        writer.abandon()
        raise
    if context.state.stop_reason:
        writer.abandon()
        context.say(f"INTERRUPTED: export of {config.source_table}: {context.state.stop_reason}; "
                    "nothing was written, rerun to export")
        return EXIT_INTERRUPTED
    files = -(-keys // config.export_keys_per_file)
    if dry_run:
        context.reporter.say(f"Export dry run: would write {plural(keys, 'key')} in {plural(files, 'file')} "
                             f"{export_file_name(prefix, stamp, 1)}...; nothing was written.", level=0)
        return EXIT_OK
    written = writer.publish()
    manifest = write_manifest(config, f"{prefix}-{stamp}.export.json",
                              export_manifest(context, written, snapshot, keys))
    names = f" ({written[0].name} .. {written[-1].name})" if written else ""
    context.say(f"EXPORT: {plural(keys, 'key')} in {plural(len(written), 'file')}{names} WHERE "
                f"{config.export_where}; snapshot {snapshot} UTC; manifest {manifest}")
    return EXIT_OK


def export_keys(config: Config, dry_run: bool = False, verbosity: int = 1) -> int:
    """--export-keys: write the keys of the rows that meet [export] where into key files in csv_dir."""
    check_export_config(config)
    prefix = config.export_file_prefix or config.source_table
    stop, reporter = StopSignal(), Reporter(verbosity)
    log = (SilentLog if dry_run else TextLog)(config.log_dir, dt.datetime.now())
    previous = install_signal_handlers(stop)
    db = dest = None
    try:
        with export_lock(config, prefix):
            db = Database(config.db, config.lock_wait_timeout, read_only=True,
                          wait_timeout=run_silence(config))
            dest = open_destination(config, read_only=True)
            context, tracked = open_export(config, db, dest, log, reporter, stop)
            if not dry_run:
                for name in remove_stale_exports(config.csv_dir, prefix):
                    context.say(f"EXPORT: removed {name}, left by an export that was killed")
            pending = pending_exports(context, prefix, tracked)
            if pending:
                context.say(f"EXPORT SKIPPED: {plural(len(pending), 'file')} of an earlier export still "
                            f"to be archived ({', '.join(pending[:3])}{' ...' if len(pending) > 3 else ''}); "
                            "the run archives them, the next export lists what is left", log=not dry_run)
                return EXIT_OK
            return run_export(context, prefix, dry_run)
    finally:
        restore_signal_handlers(previous)
        for session in (db, dest):
            if session is not None:
                session.close()
        log.close()


# --------------------------------------------------------------------------- command line

EPILOG = """examples:
  {cmd} /etc/archiver/config.ini{pad}            run the job (what cron runs)
  {cmd} config.ini --dry-run{pad}                what would move, per file; changes nothing
  {cmd} config.ini --status{pad}                 progress of the latest (or current) run
  {cmd} config.ini --check{pad}                  are the tables, keys and grants ready?
  {cmd} config.ini -q --max-runtime 2h{pad}      cron: silent unless something needs a human
  {cmd} config.ini --export-keys{pad}            write key files of the rows [export] where selects

crontab:
  15 1 * * *  {cron} config.ini -q --max-runtime 4h
  15 1 * * *  {cron} config.ini --export-keys -q && {cron} config.ini -q

exit codes: 0 ok, 1 failed, 2 bad usage or config, 3 duplicate conflicts kept,
  4 malformed CSV file rejected, 5 already running, 6 interrupted (rerun to resume)
"""


def invocation(argv0: str, module: bool = False) -> tuple[str, str]:
    """How this program was started, for --help's examples and crontab line: `python archive.py`
    (`cd /srv/archive && .venv/bin/python archive.py` in cron), `python -m archive` (module), or an
    installed command's name."""
    if module:
        return "python -m archive", "cd /srv/archive && .venv/bin/python -m archive"
    name = os.path.basename(argv0 or "archive.py")
    if name.endswith(".py") or not name:
        return "python archive.py", "cd /srv/archive && .venv/bin/python archive.py"
    return name, name


def started_as_module() -> bool:
    """Whether `python -m archive` started this program (a script's __main__ has no module spec)."""
    return __name__ == "__main__" and __spec__ is not None


def build_parser(argv0: str | None = None) -> argparse.ArgumentParser:
    """The command line, with help that teaches."""
    cmd, cron = invocation(sys.argv[0] if argv0 is None else argv0, argv0 is None and started_as_module())
    pad = " " * max(len("python archive.py") - len(cmd), 0)
    parser = argparse.ArgumentParser(
        prog="archive.py" if cmd.startswith("python") else cmd,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG.format(cmd=cmd, pad=pad, cron=cron),
        description="Move the rows listed in CSV key files from a source table into its archive "
                    "table, one transaction per batch, resuming where an earlier run stopped.")
    parser.add_argument("config", help="The INI file with [database], [archive] and [controls].")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true",
                      help="Validate the config and every CSV file, run the preflight checks and "
                           "predict per file the rows a run would archive, delete, find identical or "
                           "conflicting, not find, or leave to the guard. Changes nothing.")
    mode.add_argument("--status", action="store_true",
                      help="Show the latest run, its files, open conflicts and recent failed or "
                           "duplicate batches. Read-only; safe while a run is going on.")
    mode.add_argument("--check", action="store_true",
                      help="Check tables, key, columns, engines, triggers, foreign keys, privileges "
                           "and cluster limits, and print a verdict. Changes nothing.")
    parser.add_argument("--export-keys", action="store_true",
                        help="Write the keys of the source rows that meet [export] where into new key files "
                             "in csv_dir, for the next run to archive; with --dry-run, only count them.")
    mode.add_argument("--setup", action="store_true",
                      help="Create the tracking tables, or upgrade older ones, and stop: run it once as "
                           "an admin (a config with the admin's user), so the job's user needs no CREATE "
                           "or ALTER privilege.")
    parser.add_argument("--json", action="store_true",
                        help="With --status or --dry-run: print one JSON document instead of text.")
    talk = parser.add_mutually_exclusive_group()
    talk.add_argument("-v", "--verbose", action="store_true",
                      help="Print a line per batch (the default on a terminal is one progress line).")
    talk.add_argument("-q", "--quiet", action="store_true",
                      help="Print nothing unless the run needs attention: a failure, conflicts, a "
                           "rejected file, or a stop that left work undone without finishing a batch.")
    parser.add_argument("--max-runtime", metavar="DURATION",
                        help="Override [controls] max_runtime for this run, e.g. 2h or 45m.")
    parser.add_argument("--sleep", metavar="SECONDS", type=float,
                        help="Override [controls] sleep_seconds for this run.")
    parser.add_argument("--debug", action="store_true",
                        help="Show a full traceback when something goes wrong.")
    parser.add_argument("--version", action="version",
                        version=f"archive.py {__version__} (file sha256 {script_hash()})",
                        help="Print the version and a short hash of this file, then exit.")
    return parser


def apply_overrides(config: Config, args: argparse.Namespace) -> Config:
    """One-off command-line overrides of config keys, validated like the file."""
    changes: dict[str, Any] = {}
    if args.max_runtime is not None:
        try:
            changes["max_runtime"] = parse_duration(args.max_runtime)
        except ValueError as exc:
            raise ConfigError(f"--max-runtime: {exc}") from None
    if args.sleep is not None:
        if not 0 <= args.sleep <= 3600:
            raise ConfigError("--sleep: use 0 to 3600 seconds")
        changes["sleep_seconds"] = args.sleep
    return dataclasses.replace(config, **changes) if changes else config


ERROR_EXIT_CODES = ((ConfigError, EXIT_USAGE), (RejectedFile, EXIT_REJECTED), (AlreadyRunning, EXIT_LOCKED))


def exit_code_of(exc: BaseException) -> int:
    """The exit code an error ends the program with: only main() decides this."""
    return next((code for kind, code in ERROR_EXIT_CODES if isinstance(exc, kind)), EXIT_FAILED)


def dispatch(args: argparse.Namespace) -> int:
    """Run the chosen command."""
    if args.json and not (args.status or args.dry_run):
        raise ConfigError("--json goes with --status or --dry-run")
    if args.export_keys and (args.status or args.check or args.json):
        raise ConfigError("--export-keys goes alone, or with --dry-run")
    config = apply_overrides(load_config(args.config), args)
    if args.export_keys:
        return export_keys(config, args.dry_run, verbosity=0 if args.quiet else 2 if args.verbose else 1)
    if args.status:
        return show_status(config, args.json)
    if args.check:
        return check_command(config, verbose=args.verbose)
    if args.setup:
        return setup_tracking(config)
    if args.dry_run:
        return dry_run(config, args.json)
    return run(config, verbosity=0 if args.quiet else 2 if args.verbose else 1)


def silence_stdout() -> None:
    """After the reader of stdout went away, point it at /dev/null so exiting stays quiet."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the chosen command and map errors to exit codes."""
    if argv is None:  # the command line, not a caller: what the imports made lives until exit, so
        gc.freeze()  # no collection scans it again, nor the one at exit (10-30 ms of CPU, measured)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_OK
    try:
        return dispatch(args)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_OK
    except BrokenPipeError:
        silence_stdout()  # `--status | head -1`: the reader has all it wanted
        return EXIT_OK
    except (ArchiveError, mysql.connector.Error) as exc:
        if args.debug:
            traceback.print_exc()
        if isinstance(exc, ArchiveError) and "broken pipe" in str(exc):
            silence_stdout()
        message = describe_mysql_error(exc) if isinstance(exc, mysql.connector.Error) else str(exc)
        print(f"archive.py: {message}", file=sys.stderr)
        return exit_code_of(exc)
    except Exception as exc:  # a bug: still one line for cron, the traceback with --debug
        if args.debug:
            traceback.print_exc()
        print(f"archive.py: internal error: {type(exc).__name__}: {exc} (rerun with --debug)",
              file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
