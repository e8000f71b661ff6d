"""Preflight: everything archive.py must refuse (or accept) before the first DELETE of a run.

Every refusal is checked the same way (``expect_refused``): a run exits 1, its
process_logs row is FAILED with the reason in error_message (and on stderr and in
the text log), no file or batch was started, the source, archive and any child
tables are byte-for-byte unchanged, and ``--check`` prints a FAIL line naming the
same reason and exits 1.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import archive
from helpers import (
    REPO,
    ScratchDatabase,
    create_rewards_tables,
    insert_rewards,
    read_text_logs,
    reward_row,
    rewards_archive_ddl,
    rewards_source_ddl,
    run_cli,
    snapshot,
    write_config,
    write_csv,
)

IDS = list(range(1, 31))  # rows in the source
CSV_IDS = list(range(1, 21))  # keys in the CSV file
BATCH = 10


# --------------------------------------------------------------------------- helpers

def table_snapshot(db: ScratchDatabase, table: str) -> dict[Any, tuple] | None:
    """All columns of all rows of *table* keyed by its first column, or None if it does not exist."""
    if not db.table_exists(table):
        return None
    cols = [r[0] for r in db.query(
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s "
        "AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION", (db.name, table))]
    return snapshot(db, table, columns=cols, key=cols[0])


def snapshots(db: ScratchDatabase, tables: Sequence[str]) -> dict[str, Any]:
    """Snapshots of several tables (None for a missing one)."""
    return {t: table_snapshot(db, t) for t in tables}


def run_rows(db: ScratchDatabase) -> list[dict[str, Any]]:
    """All process_logs rows as dicts."""
    return db.query_dicts("SELECT * FROM process_logs ORDER BY id")


def text_logs(config: Path) -> str:
    """Everything written to the text logs of this config's log_dir."""
    return read_text_logs(config.parent / "logs")


def expect_refused(db: ScratchDatabase, config: Path, fragments: Sequence[str],
                   tables: Sequence[str] = ("rewards", "rewards_archives"),
                   check: bool = True) -> str:
    """A run and --check must both refuse with every fragment in the reason; nothing is touched."""
    before = snapshots(db, tables)
    result = run_cli(config)
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    runs = run_rows(db)
    assert len(runs) == 1, runs
    assert runs[0]["status"] == "FAILED"
    assert runs[0]["end_time"] is not None
    message = runs[0]["error_message"] or ""
    for fragment in fragments:
        assert fragment.lower() in message.lower(), (fragment, message)
        assert fragment.lower() in result.stderr.lower(), (fragment, result.stderr)
        assert fragment.lower() in text_logs(config).lower(), fragment
    assert db.count("file_processing_logs") == 0
    assert db.count("batch_processing_logs") == 0
    assert snapshots(db, tables) == before
    if check:
        checked = run_cli(config, "--check")
        assert checked.returncode == 1, (checked.stdout, checked.stderr)
        fail_lines = [line for line in checked.stdout.splitlines() if line.startswith("FAIL:")]
        assert fail_lines, checked.stdout
        for fragment in fragments:
            assert any(fragment.lower() in line.lower() for line in fail_lines), (fragment, fail_lines)
        assert "NOT READY" in checked.stdout
        assert "Verdict: READY" not in checked.stdout
        assert snapshots(db, tables) == before
    return message


def setup_rewards(db: ScratchDatabase, tmp_path: Path, **config: Any) -> Path:
    """Standard rewards tables with IDS, a CSV of CSV_IDS, and a config."""
    create_rewards_tables(db)
    insert_rewards(db, IDS)
    path = write_config(tmp_path, db, archive__batch_size=BATCH, **config)
    write_csv(tmp_path / "csv" / "ids.csv", CSV_IDS)
    return path


def expect_success(db: ScratchDatabase, config: Path, moved: Sequence[int] = CSV_IDS) -> None:
    """A run exits 0, moves exactly *moved* intact and leaves the rest."""
    result = run_cli(config)
    assert result.returncode == 0, (result.stdout, result.stderr)
    runs = run_rows(db)
    assert [r["status"] for r in runs] == ["COMPLETED"]
    assert runs[0]["error_message"] is None
    assert runs[0]["rows_archived"] == len(moved)
    assert snapshot(db, "rewards_archives") == {i: reward_row(i) for i in moved}
    assert snapshot(db, "rewards") == {i: reward_row(i) for i in IDS if i not in set(moved)}


# --------------------------------------------------------------------------- baseline

def test_good_tables_pass_preflight_and_run(db, tmp_path):
    """The baseline the refusals below differ from: the same setup runs and moves the rows."""
    config = setup_rewards(db, tmp_path)
    checked = run_cli(config, "--check")
    assert checked.returncode == 0, checked.stdout
    assert not [line for line in checked.stdout.splitlines() if line.startswith("FAIL")]
    expect_success(db, config)
    archived_at = db.query("SELECT COUNT(*) FROM rewards_archives WHERE archived_at IS NOT NULL")
    assert archived_at == [(len(CSV_IDS),)]


# --------------------------------------------------------------------------- tables and key

def test_missing_source_table_is_refused(db, tmp_path):
    db.execute(rewards_archive_ddl())
    insert_rewards(db, range(100, 106), table="rewards_archives")
    config = write_config(tmp_path, db, archive__batch_size=BATCH)
    write_csv(tmp_path / "csv" / "ids.csv", CSV_IDS)
    expect_refused(db, config, [f"`{db.name}`.`rewards` does not exist"])
    assert not db.table_exists("rewards")


def test_missing_archive_table_is_refused_naming_it(db, tmp_path):
    create_rewards_tables(db, archive=None)
    insert_rewards(db, IDS)
    config = write_config(tmp_path, db, archive__batch_size=BATCH)
    write_csv(tmp_path / "csv" / "ids.csv", CSV_IDS)
    expect_refused(db, config, ["`rewards_archives` does not exist"])
    assert not db.table_exists("rewards_archives")


def test_missing_key_column_is_refused(db, tmp_path):
    config = setup_rewards(db, tmp_path, archive__key_column="reward_id")
    expect_refused(db, config, ["no column `reward_id`"])


@pytest.mark.mariadb_only(reason="IGNORED indexes are MariaDB's (MySQL's INVISIBLE: test_dialect.py)")
def test_an_ignored_unique_key_is_not_a_key_because_force_index_cannot_name_it(db, tmp_path):
    """FORCE INDEX of an IGNORED index fails every batch (1176, which read as a grant problem)."""
    create_rewards_tables(db)
    db.execute("ALTER TABLE rewards DROP PRIMARY KEY, "
               "ADD COLUMN pk INT NOT NULL AUTO_INCREMENT PRIMARY KEY FIRST, "
               "ADD UNIQUE KEY uq_id (id) IGNORED")
    db.execute("ALTER TABLE rewards_archives ADD COLUMN pk INT NOT NULL FIRST")
    insert_rewards(db, IDS)
    config = write_config(tmp_path, db, archive__batch_size=BATCH)
    write_csv(tmp_path / "csv" / "ids.csv", CSV_IDS)
    expect_refused(db, config, ["`id` is not the primary key or a unique key of the source"])
    db.execute("ALTER TABLE rewards ALTER INDEX uq_id NOT IGNORED")
    result = run_cli(config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert db.count("rewards_archives") == len(CSV_IDS)


def test_key_column_that_is_not_unique_is_refused(db, tmp_path):
    """A non-unique index on the key and another primary key: a key could match many rows."""
    create_rewards_tables(db)
    db.execute("ALTER TABLE rewards DROP PRIMARY KEY, "
               "ADD COLUMN pk INT NOT NULL AUTO_INCREMENT PRIMARY KEY FIRST, ADD KEY ix_id (id)")
    db.execute("ALTER TABLE rewards_archives ADD COLUMN pk INT NOT NULL FIRST")
    insert_rewards(db, IDS)
    config = write_config(tmp_path, db, archive__batch_size=BATCH)
    write_csv(tmp_path / "csv" / "ids.csv", CSV_IDS)
    expect_refused(db, config, ["`id` is not the primary key or a unique key of the source"])


# --------------------------------------------------------------------------- columns

def test_archive_lacking_a_source_column_is_refused(db, tmp_path):
    config = setup_rewards(db, tmp_path)
    db.execute("ALTER TABLE rewards_archives DROP COLUMN note")
    expect_refused(db, config, ["archive table has no column `note`"])


def test_archive_column_with_another_type_is_refused(db, tmp_path):
    """DATETIME(6) -> DATETIME would silently round away the microseconds."""
    config = setup_rewards(db, tmp_path)
    db.execute("ALTER TABLE rewards_archives MODIFY created_at DATETIME NOT NULL")
    message = expect_refused(db, config, ["`created_at`"])
    assert "datetime(6)" in message.lower()


def test_column_type_mismatch_is_not_misreported_as_an_insert_problem(db, tmp_path):
    """The only problem is the type; the reason must not add a spurious INSERT failure.

    Leaving the mismatched column out of the privilege test makes EXPLAIN INSERT fail
    with 1364 "Field 'created_at' doesn't have a default value", reported as
    "cannot INSERT ... SELECT into the archive", which reads like a missing grant.
    """
    config = setup_rewards(db, tmp_path)
    db.execute("ALTER TABLE rewards_archives MODIFY created_at DATETIME NOT NULL")
    message = expect_refused(db, config, ["`created_at`"])
    assert "1364" not in message and "cannot insert" not in message.lower(), message


def test_archive_extra_not_null_column_without_default_is_refused(db, tmp_path):
    config = setup_rewards(db, tmp_path)
    db.execute("ALTER TABLE rewards_archives ADD COLUMN batch_tag VARCHAR(20) NOT NULL")
    expect_refused(db, config, ["`batch_tag`", "NOT NULL"])


def test_archive_extra_columns_with_defaults_are_fine(db, tmp_path):
    config = setup_rewards(db, tmp_path)
    db.execute("ALTER TABLE rewards_archives ADD COLUMN archived_by VARCHAR(20) NOT NULL "
               "DEFAULT 'archiver', ADD COLUMN remark VARCHAR(20) NULL")
    checked = run_cli(config, "--check")
    assert checked.returncode == 0 and "Verdict: READY." in checked.stdout, checked.stdout
    expect_success(db, config)
    assert db.query("SELECT COUNT(*) FROM rewards_archives WHERE archived_by = 'archiver' "
                    "AND remark IS NULL AND archived_at IS NOT NULL") == [(len(CSV_IDS),)]


def test_generated_column_is_left_out_of_the_copy(db, tmp_path):
    create_rewards_tables(db)
    for table in ("rewards", "rewards_archives"):
        db.execute(f"ALTER TABLE {table} ADD COLUMN amount_x2 DECIMAL(13,2) AS (amount * 2) VIRTUAL")
    insert_rewards(db, IDS)
    config = write_config(tmp_path, db, archive__batch_size=BATCH)
    write_csv(tmp_path / "csv" / "ids.csv", CSV_IDS)
    checked = run_cli(config, "--check")
    assert checked.returncode == 0 and "Verdict: READY." in checked.stdout, checked.stdout
    assert "amount_x2" in checked.stdout  # noted as not copied
    expect_success(db, config)
    rows = db.query("SELECT id, amount, amount_x2 FROM rewards_archives ORDER BY id")
    assert [r[0] for r in rows] == CSV_IDS
    assert all(r[2] == r[1] * 2 for r in rows)


# --------------------------------------------------------------------------- foreign keys

def create_child(db: ScratchDatabase, rule: str, reward_ids: Sequence[int]) -> None:
    """reward_items(reward_id) REFERENCES rewards(id) ON DELETE <rule>, one item per id."""
    db.execute("CREATE TABLE reward_items (item_id INT NOT NULL PRIMARY KEY, reward_id BIGINT NULL, "
               "CONSTRAINT fk_items_reward FOREIGN KEY (reward_id) REFERENCES rewards (id) "
               f"ON DELETE {rule}) ENGINE=InnoDB")
    db.executemany("INSERT INTO reward_items (item_id, reward_id) VALUES (%s, %s)",
                   [(1000 + r, r) for r in reward_ids])


@pytest.mark.parametrize("rule", ["CASCADE", "SET NULL"])
def test_cascading_foreign_key_is_refused(db, tmp_path, rule):
    config = setup_rewards(db, tmp_path)
    create_child(db, rule, [3, 15, 25])
    expect_refused(db, config, ["allow_cascading_deletes", "reward_items"],
                   tables=("rewards", "rewards_archives", "reward_items"))


def test_cascading_foreign_key_accepted_by_config_loses_child_rows(db, tmp_path):
    """With allow_cascading_deletes = yes the run proceeds and child rows of archived ids vanish."""
    config = setup_rewards(db, tmp_path, archive__allow_cascading_deletes="yes")
    create_child(db, "CASCADE", [3, 15, 25])
    checked = run_cli(config, "--check")
    assert checked.returncode == 0 and "Verdict: READY." in checked.stdout, checked.stdout
    assert "reward_items" in checked.stdout  # still told about it
    expect_success(db, config)
    # the documented, accepted consequence: children of archived rows are gone, unarchived
    assert db.query("SELECT item_id, reward_id FROM reward_items ORDER BY item_id") == [(1025, 25)]


# Found by the issue-19 red team, now fixed: allow_cascading_deletes accepts losing rows of child tables,
# but when the child that cascades is the archive table itself every copy is deleted in the batch that
# made it: the run exits 0 reporting 20 rows archived and the archive is empty
def test_an_archive_table_whose_rows_cascade_with_the_source_is_refused_even_when_cascades_are_allowed(
        db, tmp_path):
    config = setup_rewards(db, tmp_path, archive__allow_cascading_deletes="yes")
    db.execute("ALTER TABLE rewards_archives ADD CONSTRAINT archived_reward FOREIGN KEY (id) "
               "REFERENCES rewards (id) ON DELETE CASCADE")
    original = snapshot(db, "rewards")
    result = run_cli(config)
    source, archived = snapshot(db, "rewards"), snapshot(db, "rewards_archives")
    assert {**source, **archived} == original, (result.returncode, len(source), len(archived), result.stdout)
    assert result.returncode == 1


def test_restrict_foreign_key_fails_the_batch_it_blocks(db, tmp_path):
    """A referenced row makes its batch's DELETE fail (1451): FAILED, that batch rolled back."""
    config = setup_rewards(db, tmp_path)
    create_child(db, "RESTRICT", [15])  # in batch 2 (ids 11-20)
    result = run_cli(config)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "1451" in result.stderr
    runs = run_rows(db)
    assert [r["status"] for r in runs] == ["FAILED"]
    assert "1451" in runs[0]["error_message"]
    batches = db.query("SELECT batch_number, status, rows_archived, error_message "
                       "FROM batch_processing_logs ORDER BY batch_number")
    assert [(b[0], b[1]) for b in batches] == [(1, "COMPLETED"), (2, "FAILED")]
    assert batches[0][2] == BATCH
    assert "1451" in (batches[1][3] or "")
    files = db.query("SELECT status, error_message FROM file_processing_logs")
    assert files[0][0] == "FAILED" and "1451" in (files[0][1] or "")
    # batch 1 moved; batch 2 untouched in both tables; nothing after it ran
    moved = list(range(1, 11))
    assert snapshot(db, "rewards_archives") == {i: reward_row(i) for i in moved}
    assert snapshot(db, "rewards") == {i: reward_row(i) for i in IDS if i not in moved}
    assert db.query("SELECT item_id, reward_id FROM reward_items") == [(1015, 15)]


# --------------------------------------------------------------------------- privileges and guard

def test_user_without_delete_privilege_is_refused_at_preflight(db, tmp_path, server):
    create_rewards_tables(db)
    insert_rewards(db, IDS)
    write_csv(tmp_path / "csv" / "ids.csv", CSV_IDS)
    user, password = f"lim_{uuid.uuid4().hex[:8]}", "Lim-pw-1"
    host = server.client_host()  # where the tests connect from
    root = server.connect()
    cur = root.cursor()
    try:
        cur.execute(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}'")
        cur.execute(f"GRANT SELECT, INSERT, UPDATE, CREATE ON `{db.name}`.* TO '{user}'@'{host}'")
        config = write_config(tmp_path, db, archive__batch_size=BATCH,
                              database__user=user, database__password=password)
        message = expect_refused(db, config, ["DELETE"])
        assert re.search(r"denied|1142", message, re.IGNORECASE), message
        assert "rewards" in message
        # the tracking row was written by the limited user itself (so it really ran as that user)
        assert run_rows(db)[0]["status"] == "FAILED"
    finally:
        cur.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")
        cur.close()
        root.close()


def readme_grants(database: str, user: str, host: str) -> list[str]:
    """The README's least-privilege GRANT statements, for `database` and user@host."""
    readme = (REPO / "README.md").read_text()
    block = readme.split("Least-privilege grants", 1)[1].split("```sql", 1)[1].split("```", 1)[0]
    grants = [line.split(";")[0] for line in block.splitlines() if line.startswith("GRANT ")]
    return [g.replace(" app.", f" `{database}`.").replace("'archiver'@'%'", f"'{user}'@'{host}'")
            for g in grants]


def test_the_readme_least_privilege_grants_are_enough(db, tmp_path, server):
    config = setup_rewards(db, tmp_path)
    schema = (REPO / "schema.sql").read_text()
    for ddl in (s for s in re.sub(r"^--.*$", "", schema, flags=re.M).split(";") if s.strip()):
        db.execute(ddl)  # the README's alternative to granting CREATE: load schema.sql first
    user, password = f"lp_{uuid.uuid4().hex[:8]}", "Lp-pw-1"
    host = server.client_host()  # where the tests connect from
    grants = readme_grants(db.name, user, host)
    assert any("rewards_archives" in g for g in grants), grants
    root = server.connect()
    cur = root.cursor()
    try:
        cur.execute(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}'")
        for grant in grants:
            cur.execute(grant.replace("UPDATE, DELETE ON", "UPDATE ON"))
        config = write_config(tmp_path, db, archive__batch_size=BATCH,
                              database__user=user, database__password=password)
        # One grant short: --check and the run both say so before any row moves.
        checked = run_cli(config, "--check")
        assert checked.returncode == 1, checked.stdout
        assert "FAIL: cannot DELETE tracking table run_locks" in checked.stdout, checked.stdout
        result = run_cli(config)
        assert result.returncode == 1 and "cannot DELETE tracking table run_locks" in result.stderr
        assert db.count("rewards_archives") == 0
        cur.execute(next(g for g in grants if "run_locks" in g))
        for args in (["--check"], [], [], ["--status"], ["--dry-run"]):
            result = run_cli(config, *args)
            assert result.returncode == 0, (args, result.stdout, result.stderr)
        assert sorted(snapshot(db, "rewards_archives")) == CSV_IDS
        assert [r["status"] for r in run_rows(db)][:2] == ["FAILED", "COMPLETED"]
    finally:
        cur.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")
        cur.close()
        root.close()


def test_a_cascading_child_hidden_from_the_user_is_seen_through_innodb_or_refused(db, tmp_path, server):
    config = setup_rewards(db, tmp_path)
    for ddl in (s for s in re.sub(r"^--.*$", "", (REPO / "schema.sql").read_text(), flags=re.M).split(";")
                if s.strip()):
        db.execute(ddl)
    db.execute("CREATE TABLE reward_claims (id INT PRIMARY KEY AUTO_INCREMENT, reward_id BIGINT NOT NULL, "
               "FOREIGN KEY (reward_id) REFERENCES rewards (id) ON DELETE CASCADE) ENGINE=InnoDB")
    db.execute("INSERT INTO reward_claims (reward_id) SELECT id FROM rewards")
    user, password = f"hid_{uuid.uuid4().hex[:8]}", "Hid-pw-1"
    host = server.client_host()  # where the tests connect from
    grants = [g for g in readme_grants(db.name, user, host) if "PROCESS" not in g]  # table grants only
    root = server.connect()
    cur = root.cursor()
    try:
        cur.execute(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}'")
        for grant in grants:
            cur.execute(grant)
        config = write_config(tmp_path, db, archive__batch_size=BATCH,
                              database__user=user, database__password=password)
        message = expect_refused(db, config, ["cannot see every foreign key that references `rewards`",
                                              "GRANT PROCESS"], tables=("rewards", "reward_claims"))
        assert "reward_claims" not in message  # it cannot be named: this user cannot see it
        cur.execute(f"GRANT PROCESS ON *.* TO '{user}'@'{host}'")
        check = run_cli(config, "--check")  # now it sees the child, and what its foreign key does
        assert check.returncode == 1, check.stdout
        cascade = f"{db.name}.reward_claims (reward_claims_ibfk_1: ON DELETE CASCADE"
        assert cascade in check.stdout, check.stdout
        assert run_cli(config).returncode == 1
        assert db.count("reward_claims") == len(IDS) and db.count("rewards_archives") == 0
    finally:
        cur.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")
        cur.close()
        root.close()


def test_guard_that_is_not_valid_sql_is_refused(db, tmp_path):
    config = setup_rewards(db, tmp_path, controls__guard="no_such_col < 5")
    expect_refused(db, config, ["guard", "no_such_col"])



def test_guard_with_a_parameter_marker_and_string_keys_is_refused(db, tmp_path):
    db.execute("CREATE TABLE codes (code VARCHAR(20) NOT NULL PRIMARY KEY, note VARCHAR(20))")
    db.execute("CREATE TABLE codes_arch LIKE codes")
    db.execute("INSERT INTO codes VALUES ('a', '%sale%'), ('b', 'x')")
    config = write_config(tmp_path, db, archive__source_table="codes", archive__archive_table="codes_arch",
                          archive__key_column="code", archive__csv_column="code",
                          controls__guard="note LIKE '%sale%'")
    write_csv(tmp_path / "csv" / "k.csv", ["a", "b"], header="code")
    expect_refused(db, config, ["must not contain '%s'"], tables=("codes", "codes_arch"))


# --------------------------------------------------------------------------- copies that would differ

def test_not_null_archive_column_for_a_nullable_source_column_is_refused(db, tmp_path):
    config = setup_rewards(db, tmp_path)
    db.execute("UPDATE rewards SET note = NULL WHERE id = 3")
    db.execute("ALTER TABLE rewards_archives MODIFY note VARCHAR(191) NOT NULL DEFAULT ''")
    expect_refused(db, config, ["archive column `note` is NOT NULL but the source's is nullable"])


def test_nullable_timestamp_into_not_null_timestamp_is_refused(db, tmp_path):
    """Stored, a NULL would silently become the current time: a different row."""
    config = setup_rewards(db, tmp_path)
    db.execute("ALTER TABLE rewards ADD COLUMN paid_at TIMESTAMP NULL")
    db.execute("ALTER TABLE rewards_archives ADD COLUMN paid_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP")
    expect_refused(db, config, ["`paid_at` is NOT NULL but the source's is nullable"])


def test_generated_archive_column_for_stored_source_data_is_refused(db, tmp_path):
    config = setup_rewards(db, tmp_path)
    db.execute("ALTER TABLE rewards ADD COLUMN total DECIMAL(13,2) NULL")
    db.execute("UPDATE rewards SET total = 90.00")
    db.execute("ALTER TABLE rewards_archives ADD COLUMN total DECIMAL(13,2) AS (amount * 2) STORED")
    expect_refused(db, config, ["archive column `total` is generated but the source's is stored data"])


def test_generated_columns_with_different_expressions_are_refused(db, tmp_path):
    config = setup_rewards(db, tmp_path)
    db.execute("ALTER TABLE rewards ADD COLUMN total DECIMAL(13,2) AS (amount * 2) VIRTUAL")
    db.execute("ALTER TABLE rewards_archives ADD COLUMN total DECIMAL(13,2) AS (amount * 3) VIRTUAL")
    expect_refused(db, config, [
        "archive column `total` is generated but the source's is generated differently"])


def test_a_source_generated_column_is_copied_into_a_stored_archive_column(db, tmp_path):
    config = setup_rewards(db, tmp_path)
    db.execute("ALTER TABLE rewards ADD COLUMN doubled DECIMAL(13,2) AS (amount * 2) VIRTUAL")
    db.execute("ALTER TABLE rewards_archives ADD COLUMN doubled DECIMAL(13,2) NULL")
    expect_success(db, config)
    assert db.query("SELECT COUNT(*) FROM rewards_archives WHERE doubled <=> amount * 2") == [(len(CSV_IDS),)]


def test_archive_key_with_another_collation_is_refused(db, tmp_path):
    """'a' and 'A' are two keys in a _bin source but one in a _ci archive: every run would fail (1062)."""
    for table, collation in (("src", "utf8mb4_bin"), ("arc", "utf8mb4_general_ci")):
        db.execute(f"CREATE TABLE {table} (code VARCHAR(20) COLLATE {collation} NOT NULL PRIMARY KEY, n INT)")
    db.execute("INSERT INTO src VALUES ('a', 1), ('A', 2)")
    write_csv(tmp_path / "csv" / "ids.csv", ["a", "A"], header="code")
    config = write_config(tmp_path, db, archive__source_table="src", archive__archive_table="arc",
                          archive__key_column="code", archive__csv_column="code")
    expect_refused(db, config, [("key column `code` has collation utf8mb4_bin in the source but "
                                 "utf8mb4_general_ci in the archive")], tables=("src", "arc"))


@pytest.mark.parametrize("table, engine", [
    ("rewards", "MyISAM"),
    pytest.param("rewards", "Aria", marks=pytest.mark.mariadb_only(reason="Aria is MariaDB's engine")),
    ("rewards_archives", "MyISAM"), ("rewards_archives", "MEMORY")])
def test_non_transactional_tables_are_refused_by_name(db, tmp_path, table, engine):
    config = setup_rewards(db, tmp_path)
    if engine == "MEMORY":
        db.execute("ALTER TABLE rewards_archives MODIFY payload VARCHAR(2000) NULL, MODIFY note VARCHAR(255)")
    db.execute(f"ALTER TABLE {table} ENGINE={engine}")
    expect_refused(db, config, [f"table `{table}` uses the {engine} engine, which cannot roll back"])


def test_a_non_transactional_tracking_table_is_refused(db, tmp_path):
    config = setup_rewards(db, tmp_path)
    assert run_cli(config, "--dry-run").returncode == 0
    db.execute(archive_ddl("batch_processing_logs").replace("ENGINE=InnoDB", "ENGINE=MyISAM"))
    before = snapshots(db, ("rewards", "rewards_archives"))
    result = run_cli(config)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "table `batch_processing_logs` uses the MyISAM engine" in result.stderr
    assert snapshots(db, ("rewards", "rewards_archives")) == before


def archive_ddl(table: str) -> str:
    """The current DDL of one tracking table."""
    import archive
    return next(ddl for ddl in archive.TRACKING_DDL if f"`{table}`" in ddl.split("(")[0])


# --------------------------------------------------------------------------- side effects

def make_delete_trigger(db: ScratchDatabase) -> None:
    """pt-archiver's sakila shape: an AFTER DELETE trigger writing to a MyISAM table."""
    db.execute("CREATE TABLE deleted_log (id BIGINT, at TIMESTAMP DEFAULT CURRENT_TIMESTAMP) ENGINE=MyISAM")
    db.execute("CREATE TRIGGER rewards_ad AFTER DELETE ON rewards FOR EACH ROW "
               "INSERT INTO deleted_log (id) VALUES (OLD.id)")


def test_a_delete_trigger_on_the_source_is_refused_unless_allowed(db, tmp_path):
    config = setup_rewards(db, tmp_path)
    make_delete_trigger(db)
    expect_refused(db, config, ["rewards_ad (AFTER DELETE)", "allow_triggers"],
                   tables=("rewards", "rewards_archives", "deleted_log"))


def test_an_insert_trigger_on_the_archive_is_refused_unless_allowed(db, tmp_path):
    config = setup_rewards(db, tmp_path)
    db.execute("CREATE TRIGGER arc_bi BEFORE INSERT ON rewards_archives "
               "FOR EACH ROW SET NEW.note = 'changed'")
    expect_refused(db, config, ["arc_bi (BEFORE INSERT)", "allow_triggers"])


def test_an_allowed_trigger_is_noted_and_the_run_goes_on(db, tmp_path):
    config = setup_rewards(db, tmp_path, archive__allow_triggers="yes")
    make_delete_trigger(db)
    checked = run_cli(config, "--check")
    assert checked.returncode == 0 and "triggers accepted by config: rewards_ad" in checked.stdout
    expect_success(db, config)
    assert db.count("deleted_log") == len(CSV_IDS)


@pytest.mark.mariadb_only(reason="system-versioned tables are MariaDB's (MySQL has none)")
def test_a_system_versioned_source_is_refused_unless_allowed(db, tmp_path):
    config = setup_rewards(db, tmp_path)
    db.execute("ALTER TABLE rewards ADD SYSTEM VERSIONING")
    expect_refused(db, config, ["source `rewards` is system-versioned", "allow_system_versioning"])
    allowed = write_config(tmp_path, db, archive__batch_size=BATCH, archive__allow_system_versioning="yes")
    checked = run_cli(allowed, "--check")
    assert checked.returncode == 0 and "deleted rows stay as history" in checked.stdout, checked.stdout
    result = run_cli(allowed)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert db.count("rewards") == len(IDS) - len(CSV_IDS)
    history = db.scalar("SELECT COUNT(*) FROM rewards FOR SYSTEM_TIME ALL")
    assert history == len(IDS), "the deleted rows are kept as history, as --check said"


def test_set_null_children_are_described_as_what_happens(db, tmp_path):
    config = setup_rewards(db, tmp_path, archive__allow_cascading_deletes="yes")
    create_child(db, "SET NULL", [3, 25])
    checked = run_cli(config, "--check")
    assert "ON DELETE SET NULL: its key column is set to NULL when the parent goes" in checked.stdout
    assert "vanish" not in checked.stdout
    expect_success(db, config)
    assert db.query("SELECT item_id, reward_id FROM reward_items ORDER BY item_id") == [
        (1003, None), (1025, 25)]


# --------------------------------------------------------------------------- server settings

@pytest.fixture(scope="module")
def folding_server(own_server):
    """A throwaway server with lower_case_table_names = 1 (names stored in lower case)."""
    return own_server("lctn", "--lower-case-table-names=1")


def test_mixed_case_names_work_where_the_server_folds_them(folding_server, tmp_path):
    db = ScratchDatabase.create(folding_server, "Mixed_Case_App")
    try:
        db.execute(rewards_source_ddl("Rewards"))
        db.execute(rewards_archive_ddl("Rewards_Archives"))
        insert_rewards(db, IDS, table="Rewards")
        write_csv(tmp_path / "csv" / "ids.csv", CSV_IDS)
        config = write_config(tmp_path, db, archive__source_table="Rewards",
                              archive__archive_table="Rewards_Archives")
        check = run_cli(config, "--check")
        assert check.returncode == 0 and "Verdict: READY." in check.stdout, check.stdout
        result = run_cli(config)
        assert result.returncode == 0, (result.stdout, result.stderr)
        assert sorted(snapshot(db, "rewards_archives")) == CSV_IDS
    finally:
        db.drop()


# Found by the issue-19 red team, now fixed: load_config refuses archive_table = source_table only as
# written; on a server that folds names (lower_case_table_names = 1) `Rewards` and `rewards` are one table
# and folded_names plans to archive it into itself: --check says READY, --dry-run predicts every listed
# row deleted as its own identical twin, and only the batch's lock statement (SELECT 1 FROM `rewards`,
# `rewards`: error 1066) keeps the run from doing it
def test_an_archive_table_that_is_the_source_under_folded_names_is_refused(folding_server, tmp_path):
    db = ScratchDatabase.create(folding_server, "folded_same_table")
    try:
        db.execute(rewards_source_ddl("rewards"))
        insert_rewards(db, IDS)
        write_csv(tmp_path / "csv" / "ids.csv", CSV_IDS)
        original = snapshot(db, "rewards")
        config = write_config(tmp_path, db, archive__source_table="Rewards", archive__archive_table="rewards")
        result = run_cli(config)
        assert (result.returncode, snapshot(db, "rewards")) == (1, original), (result.stdout, result.stderr)
        check = run_cli(config, "--check")
        dry = run_cli(config, "--dry-run", "--json")
        assert check.returncode == 1 and "Verdict: READY" not in check.stdout, check.stdout
        assert dry.returncode == 1 or json.loads(dry.stdout)["rows_to_delete"] == 0, dry.stdout
    finally:
        db.drop()


def test_a_batch_whose_statements_cannot_fit_max_allowed_packet_is_refused(db, tmp_path, server):
    db.execute("CREATE TABLE wide_keys (k VARCHAR(255) CHARACTER SET utf8mb4 PRIMARY KEY, v INT) "
               "ENGINE=InnoDB")
    db.execute("CREATE TABLE wide_keys_archive LIKE wide_keys")
    keys = [f"{n:05d}" + "🎉" * 250 for n in range(2100)]  # 1,005 bytes each: as long as they come
    db.executemany("INSERT INTO wide_keys VALUES (%s, 1)", [(k,) for k in keys])
    write_csv(tmp_path / "csv" / "ids.csv", keys, header="k")
    table = {"archive__source_table": "wide_keys", "archive__archive_table": "wide_keys_archive",
             "archive__key_column": "k", "archive__csv_column": "k"}
    check = run_cli(write_config(tmp_path, db, archive__batch_size=5000, **table), "--check")
    assert check.returncode == 1, check.stdout
    found = re.search(r"FAIL: \[archive\] batch_size 5000: a batch of varchar\(255\) utf8mb4 keys can "
                      r"make statements of [0-9]+ bytes, over max_allowed_packet 16777216 .*use batch_size "
                      r"([0-9]+) or less", check.stdout)
    assert found, check.stdout
    fits = int(found.group(1))
    assert 1000 < fits < len(keys)
    too_many = write_config(tmp_path, db, archive__batch_size=fits + 1, **table)
    assert run_cli(too_many, "--check").returncode == 1
    config = write_config(tmp_path, db, archive__batch_size=fits, **table)
    assert run_cli(config, "--check").returncode == 0
    result = run_cli(config)  # the advice is safe: a batch that long goes through
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert db.count("wide_keys_archive") == len(keys) and db.count("wide_keys") == 0


# --------------------------------------------------------------------------- the column and key checks alone

# information_schema.COLUMNS rows as fetch_columns reads them, captured from MariaDB 10.11 for
#   src: id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY, note VARCHAR(191) NULL, amount FLOAT NULL,
#        created_at TIMESTAMP NULL, e ENUM('x','Y') NOT NULL DEFAULT 'x',
#        code VARCHAR(20) COLLATE utf8mb4_general_ci NOT NULL, up VARCHAR(20) AS (UPPER(code)) VIRTUAL,
#        total DOUBLE AS (amount * 2) STORED
#   arc: the same but note VARCHAR(100) NOT NULL, e ENUM('x','y'), code COLLATE utf8mb4_turkish_ci and
#        up AS (LOWER(code)); then archived_by VARCHAR(20) NOT NULL, archived_at TIMESTAMP NOT NULL
#        DEFAULT CURRENT_TIMESTAMP, seq INT NOT NULL AUTO_INCREMENT UNIQUE
SOURCE_COLUMNS: list[dict[str, Any]] = [
    {"name": "id", "data_type": "bigint", "column_type": "bigint(20) unsigned", "charset": None,
     "collation": None, "max_length": None, "nullable": "NO", "col_default": None, "extra": "auto_increment",
     "expression": None},
    {"name": "note", "data_type": "varchar", "column_type": "varchar(191)", "charset": "utf8mb4",
     "collation": "utf8mb4_general_ci", "max_length": 191, "nullable": "YES", "col_default": "NULL",
     "extra": "", "expression": None},
    {"name": "amount", "data_type": "float", "column_type": "float", "charset": None, "collation": None,
     "max_length": None, "nullable": "YES", "col_default": "NULL", "extra": "", "expression": None},
    {"name": "created_at", "data_type": "timestamp", "column_type": "timestamp", "charset": None,
     "collation": None, "max_length": None, "nullable": "YES", "col_default": "NULL", "extra": "",
     "expression": None},
    {"name": "e", "data_type": "enum", "column_type": "enum('x','Y')", "charset": "utf8mb4",
     "collation": "utf8mb4_general_ci", "max_length": 1, "nullable": "NO", "col_default": "'x'", "extra": "",
     "expression": None},
    {"name": "code", "data_type": "varchar", "column_type": "varchar(20)", "charset": "utf8mb4",
     "collation": "utf8mb4_general_ci", "max_length": 20, "nullable": "NO", "col_default": None, "extra": "",
     "expression": None},
    {"name": "up", "data_type": "varchar", "column_type": "varchar(20)", "charset": "utf8mb4",
     "collation": "utf8mb4_general_ci", "max_length": 20, "nullable": "YES", "col_default": "NULL",
     "extra": "VIRTUAL GENERATED", "expression": "ucase(`code`)"},
    {"name": "total", "data_type": "double", "column_type": "double", "charset": None, "collation": None,
     "max_length": None, "nullable": "YES", "col_default": "NULL", "extra": "STORED GENERATED",
     "expression": "`amount` * 2"},
]
ARCHIVE_COLUMNS: list[dict[str, Any]] = [
    {"name": "id", "data_type": "bigint", "column_type": "bigint(20) unsigned", "charset": None,
     "collation": None, "max_length": None, "nullable": "NO", "col_default": None, "extra": "",
     "expression": None},
    {"name": "note", "data_type": "varchar", "column_type": "varchar(100)", "charset": "utf8mb4",
     "collation": "utf8mb4_general_ci", "max_length": 100, "nullable": "NO", "col_default": None, "extra": "",
     "expression": None},
    {"name": "amount", "data_type": "float", "column_type": "float", "charset": None, "collation": None,
     "max_length": None, "nullable": "YES", "col_default": "NULL", "extra": "", "expression": None},
    {"name": "created_at", "data_type": "timestamp", "column_type": "timestamp", "charset": None,
     "collation": None, "max_length": None, "nullable": "YES", "col_default": "NULL", "extra": "",
     "expression": None},
    {"name": "e", "data_type": "enum", "column_type": "enum('x','y')", "charset": "utf8mb4",
     "collation": "utf8mb4_general_ci", "max_length": 1, "nullable": "NO", "col_default": "'x'", "extra": "",
     "expression": None},
    {"name": "code", "data_type": "varchar", "column_type": "varchar(20)", "charset": "utf8mb4",
     "collation": "utf8mb4_turkish_ci", "max_length": 20, "nullable": "NO", "col_default": None, "extra": "",
     "expression": None},
    {"name": "up", "data_type": "varchar", "column_type": "varchar(20)", "charset": "utf8mb4",
     "collation": "utf8mb4_general_ci", "max_length": 20, "nullable": "YES", "col_default": "NULL",
     "extra": "VIRTUAL GENERATED", "expression": "lcase(`code`)"},
    {"name": "total", "data_type": "double", "column_type": "double", "charset": None, "collation": None,
     "max_length": None, "nullable": "YES", "col_default": "NULL", "extra": "STORED GENERATED",
     "expression": "`amount` * 2"},
    {"name": "archived_by", "data_type": "varchar", "column_type": "varchar(20)", "charset": "utf8mb4",
     "collation": "utf8mb4_general_ci", "max_length": 20, "nullable": "NO", "col_default": None, "extra": "",
     "expression": None},
    {"name": "archived_at", "data_type": "timestamp", "column_type": "timestamp", "charset": None,
     "collation": None, "max_length": None, "nullable": "NO", "col_default": "current_timestamp()",
     "extra": "", "expression": None},
    {"name": "seq", "data_type": "int", "column_type": "int(11)", "charset": None, "collation": None,
     "max_length": None, "nullable": "NO", "col_default": None, "extra": "auto_increment",
     "expression": None},
]


def source_column(captured: str, **changes: Any) -> dict[str, Any]:
    """The captured source column row named `captured`, with `changes`."""
    return {**next(c for c in SOURCE_COLUMNS if c["name"] == captured), **changes}


def archive_column(captured: str, **changes: Any) -> dict[str, Any]:
    """The captured archive column row named `captured`, with `changes`."""
    return {**next(c for c in ARCHIVE_COLUMNS if c["name"] == captured), **changes}


def compared(column: dict[str, Any], twin: dict[str, Any] | None) -> tuple[bool, list[str], list[str]]:
    """compare_column's verdict (copied or not), with the problems and notes it recorded."""
    found = archive.Preflight()
    return archive.compare_column(column, twin, found), found.problems, found.notes


def test_a_column_of_another_type_is_refused_naming_both_types():
    assert compared(source_column("note"), archive_column("note")) == (False, [
        "column `note` is varchar(191) utf8mb4 in the source but varchar(100) utf8mb4 in the archive"], [])
    assert compared(source_column("amount"), archive_column("amount", column_type="double")) == (False, [
        "column `amount` is float in the source but double in the archive"], [])
    assert compared(source_column("note"), source_column("note", charset="latin1"))[1] == [
        "column `note` is varchar(191) utf8mb4 in the source but varchar(191) latin1 in the archive"]
    assert compared(source_column("amount"), archive_column("amount")) == (True, [], [])


def test_enum_members_that_differ_only_in_case_are_another_type():
    # Found by a red team: a lowercased COLUMN_TYPE let ENUM('x','Y') pass as ENUM('x','y'), and the
    # copy stored 'y' for 'Y' (tests/test_exactness.py has the run).
    assert compared(source_column("e"), archive_column("e")) == (False, [
        "column `e` is enum('x','Y') utf8mb4 in the source but enum('x','y') utf8mb4 in the archive"], [])
    assert compared(source_column("e"), source_column("e")) == (True, [], [])


def test_a_nullable_source_column_into_a_not_null_archive_column_is_refused():
    assert compared(source_column("created_at"), archive_column("created_at", nullable="NO")) == (False, [
        ("archive column `created_at` is NOT NULL but the source's is nullable: a NULL would fail the batch "
         "or, for a TIMESTAMP, be stored as the current time")], [])
    assert compared(source_column("code"), archive_column("code", nullable="YES")) == (True, [], [])


def test_a_generated_archive_column_is_refused_unless_the_source_computes_it_the_same_way():
    assert compared(source_column("up"), archive_column("up")) == (False, [
        ("archive column `up` is generated but the source's is generated differently: the archive would "
         "hold computed values instead of the source's")], [])
    assert compared(source_column("up", extra="", expression=None), archive_column("up")) == (False, [
        ("archive column `up` is generated but the source's is stored data: the archive would hold "
         "computed values instead of the source's")], [])
    assert compared(source_column("total"), archive_column("total")) == (False, [], [
        "generated column `total` is recomputed by the archive (same expression)"])
    # a source's generated column into a stored archive column: its values are copied
    assert compared(source_column("up"), archive_column("note", name="up", column_type="varchar(20)",
                                                        nullable="YES")) == (True, [], [])


def test_a_source_column_the_archive_lacks_is_refused_unless_it_is_generated():
    assert compared(source_column("note"), None) == (False, ["archive table has no column `note`"], [])
    assert compared(source_column("up"), None) == (False, [], [
        "generated column `up` is not archived (the archive has no such column)"])


def test_the_columns_compared_decide_what_is_copied_and_how_a_copy_is_compared():
    twins = [archive_column("id"), source_column("note"), archive_column("amount", name="AMOUNT"),
             archive_column("created_at"), source_column("e"), source_column("code"), source_column("up"),
             archive_column("total"), archive_column("archived_by"), archive_column("archived_at"),
             archive_column("seq")]
    found = archive.Preflight()
    copied, recomputed = archive.compare_columns(SOURCE_COLUMNS, twins, found)
    column = archive.Column
    assert copied == (column("id", "bigint"), column("note", "varchar", "utf8mb4"), column("amount", "float"),
                      column("created_at", "timestamp"), column("e", "enum", "utf8mb4"),
                      column("code", "varchar", "utf8mb4"))
    assert recomputed == (column("up", "varchar", "utf8mb4"), column("total", "double"))
    # archived_at has a default and seq is AUTO_INCREMENT: only archived_by needs a value
    assert found.problems == ["archive column `archived_by` is NOT NULL without a default"]
    assert found.notes == ["generated column `up` is recomputed by the archive (same expression)",
                           "generated column `total` is recomputed by the archive (same expression)"]
    same = archive.identical_expression(copied)  # each type compared in a form that loses nothing
    assert "(s.`amount` <=> a.`amount` AND ATAN2(s.`amount`, -1) <=> ATAN2(a.`amount`, -1))" in same
    assert "UNIX_TIMESTAMP(s.`created_at`) <=> UNIX_TIMESTAMP(a.`created_at`)" in same
    assert "(s.`e` + 0 <=> a.`e` + 0 AND CAST(s.`e` AS BINARY) <=> CAST(a.`e` AS BINARY))" in same
    assert "CAST(s.`note` AS BINARY) <=> CAST(a.`note` AS BINARY)" in same and "BINARY s.`amount`" not in same


def test_every_mismatch_of_the_captured_tables_is_reported_at_once():
    found = archive.Preflight()
    copied, recomputed = archive.compare_columns(SOURCE_COLUMNS, ARCHIVE_COLUMNS, found)
    assert [c.name for c in copied] == ["id", "amount", "created_at", "code"]
    assert [c.name for c in recomputed] == ["up", "total"]  # generated on both sides: up is refused above
    assert found.problems == [
        "column `note` is varchar(191) utf8mb4 in the source but varchar(100) utf8mb4 in the archive",
        "column `e` is enum('x','Y') utf8mb4 in the source but enum('x','y') utf8mb4 in the archive",
        ("archive column `up` is generated but the source's is generated differently: the archive would "
         "hold computed values instead of the source's"),
        "archive column `archived_by` is NOT NULL without a default"]


def test_a_recomputed_column_needs_the_collations_of_the_source():
    def problems(source, archive_side, recomputed):
        found = archive.Preflight()
        archive.check_recomputing_collations(source, archive_side, recomputed, found)
        return found.problems

    total = (archive.Column("total", "double"),)
    assert problems(SOURCE_COLUMNS, ARCHIVE_COLUMNS, total) == [
        ("column `code` has collation utf8mb4_general_ci in the source but utf8mb4_turkish_ci in the "
         "archive, which computes generated column(s) `total` again: they could come out differently")]
    assert problems(SOURCE_COLUMNS, ARCHIVE_COLUMNS, ()) == []  # nothing recomputed: nothing to differ
    assert problems(SOURCE_COLUMNS, SOURCE_COLUMNS, total) == []


def test_foreign_keys_are_told_apart_by_what_a_delete_does_to_the_child_rows():
    changing, restricts = archive.describe_foreign_keys([
        ("app", "items", "fk_items", "CASCADE"), ("app", "orders", "fk_orders", "RESTRICT"),
        ("app", "tags", "fk_tags", "SET NULL"), ("crm", "notes", "fk_notes", "SET DEFAULT"),
        ("app", "lines", "fk_lines", "NO ACTION")])
    assert changing == [
        "app.items (fk_items: ON DELETE CASCADE: its rows are deleted with the parent, unarchived)",
        "app.tags (fk_tags: ON DELETE SET NULL: its key column is set to NULL when the parent goes)",
        ("crm.notes (fk_notes: ON DELETE SET DEFAULT: its key column is set to its default when the "
         "parent goes)")]
    assert restricts == [
        ("app.orders (fk_orders) restricts deletes: a batch with a still-referenced row fails with error "
         "1451 and is rolled back"),
        ("app.lines (fk_lines) restricts deletes: a batch with a still-referenced row fails with error "
         "1451 and is rolled back")]
    assert archive.describe_foreign_keys([]) == ([], [])
    assert archive.decode_innodb_name("app/pay@0024ments") == "app/pay$ments"  # InnoDB's names of them
