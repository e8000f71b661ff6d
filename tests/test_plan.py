"""Pure planning code: SQL building, identifier quoting, log parsing and checkpoints."""

from __future__ import annotations

import datetime as dt

import archive

INT_KEY = archive.KeyType("int", 0, 2 ** 64 - 1, sql_type="bigint unsigned")


def test_quote_ident_doubles_backticks():
    assert archive.quote_ident("a`b") == "`a``b`"


def test_contiguous_keys_become_a_range_and_sparse_keys_an_in_list():
    sql, params = archive.key_condition("`id`", [5, 1, 2, 3, 4, 9, 11, 3], INT_KEY)
    assert sql == "(`id` BETWEEN 1 AND 5 OR `id` IN (9,11))"
    assert params == ()
    sql, _ = archive.key_condition("`id`", range(1, 1001), INT_KEY)
    assert sql == "`id` BETWEEN 1 AND 1000"
    sql, _ = archive.key_condition("`id`", [1, 3, 5], INT_KEY)
    assert sql == "`id` IN (1,3,5)"


def test_string_keys_are_parameters_not_sql():
    key = archive.KeyType("str", max_length=20, sql_type="varchar(20)")
    sql, params = archive.key_condition("`code`", ["a'); DROP TABLE x; --", "b"], key)
    assert sql == "`code` IN (%s, %s)"
    assert params == ("a'); DROP TABLE x; --", "b")


def test_statements_quote_identifiers_and_never_insert_ignore():
    plan = archive.TablePlan("src", "arc", "id", ("id", "note"), INT_KEY)
    insert = plan.insert_sql("`id` IN (1)")
    assert insert == "INSERT INTO `arc` (`id`, `note`) SELECT `id`, `note` FROM `src` WHERE `id` IN (1)"
    assert "IGNORE" not in insert.upper()
    assert plan.delete_sql("`id` IN (1)") == "DELETE FROM `src` WHERE `id` IN (1)"
    assert "BINARY s.`note` <=> BINARY a.`note`" in plan.delete_identical_sql("s.`id` IN (1)")


def test_lock_name_fits_the_server_limit():
    assert archive.lock_name("app", "rewards") == "archive.py/app/rewards"
    assert len(archive.lock_name("d" * 64, "t" * 64)) <= 64


SHA = "a" * 64
OTHER = "b" * 64


def info(name: str, sha: str = SHA, size: int = 10, keys: int = 100, table: str = "app.rewards") -> str:
    return f"FILE_INFO: {name} | SHA256: {sha} | BATCH_SIZE: {size} | KEYS: {keys} | TABLE: {table}"


def line(name: str, n: int, status: str) -> str:
    return archive.batch_log_line(dt.datetime(2025, 8, 17, 14, 30, 46), name, n, status)


def test_seed_line_format_is_exact():
    assert line("file1.csv", 1, "COMPLETED") == "[2025-08-17 14:30:46] FILE: file1.csv | BATCH: 1 | STATUS: COMPLETED"
    assert archive.log_file_name(dt.datetime(2025, 8, 17)) == "DataProcessingAllDetails_17_08_2025.txt"


def test_log_checkpoint_is_the_last_completed_batch_for_that_content():
    lines = [info("f.csv"), line("f.csv", 1, "PROCESSING"), line("f.csv", 1, "COMPLETED"),
             line("f.csv", 2, "COMPLETED_WITH_DUPLICATES"), line("f.csv", 3, "PROCESSING"),
             line("f.csv", 3, "FAILED"), info("g.csv", OTHER), line("g.csv", 1, "COMPLETED")]
    found = {}
    archive.parse_log_checkpoints(lines, "app.rewards", found)
    assert found[("f.csv", SHA)].last_batch == 2
    assert found[("f.csv", SHA)].batch_size == 10 and found[("f.csv", SHA)].total_keys == 100
    assert found[("g.csv", OTHER)].last_batch == 1


def test_batch_lines_without_file_info_or_for_another_table_do_not_count():
    lines = [line("f.csv", 5, "COMPLETED"), info("f.csv", table="app.other"), line("f.csv", 6, "COMPLETED")]
    found = {}
    archive.parse_log_checkpoints(lines, "app.rewards", found)
    assert found == {}


def test_torn_last_line_is_ignored_and_logs_are_read_across_days(tmp_path):
    (tmp_path / "DataProcessingAllDetails_31_12_2024.txt").write_text(
        "\n".join([info("f.csv"), line("f.csv", 1, "COMPLETED"), line("f.csv", 2, "COMPLETED")]) + "\n")
    (tmp_path / "DataProcessingAllDetails_01_01_2025.txt").write_text(
        "\n".join([info("f.csv"), line("f.csv", 3, "COMPLETED")]) + "\n" + line("f.csv", 4, "COMPLETED")[:30])
    (tmp_path / "DataProcessingAllDetails_garbage.txt").write_text("junk\n")
    found = archive.read_log_checkpoints(tmp_path, "app.rewards")
    assert found[("f.csv", SHA)].last_batch == 3
    # a torn COMPLETED line that is complete but lacks its newline is also ignored
    (tmp_path / "DataProcessingAllDetails_02_01_2025.txt").write_text(
        info("f.csv") + "\n" + line("f.csv", 4, "COMPLETED"))
    assert archive.read_log_checkpoints(tmp_path, "app.rewards")[("f.csv", SHA)].last_batch == 3


def test_log_files_sort_by_date_not_by_name(tmp_path):
    for name in ("DataProcessingAllDetails_02_01_2025.txt", "DataProcessingAllDetails_31_12_2024.txt",
                 "DataProcessingAllDetails_01_02_2024.txt"):
        (tmp_path / name).write_text("")
    assert [p.name[-14:-4] for p in archive.sorted_log_files(tmp_path)] == ["01_02_2024", "31_12_2024", "02_01_2025"]


def test_best_checkpoint_takes_the_furthest():
    db = archive.Checkpoint(10, 100, 3, source="db")
    log = archive.Checkpoint(10, 100, 5, source="log")
    assert archive.best_checkpoint(db, log) is log
    assert archive.best_checkpoint(None, None) is None
    assert archive.best_checkpoint(db, archive.Checkpoint(10, 100, 3, source="log")) is db


def test_outcome_precedence():
    state = archive.RunState()
    assert archive.outcome_of(state)[:2] == ("COMPLETED", archive.EXIT_OK)
    state.conflict_files.append("a.csv")
    assert archive.outcome_of(state)[1] == archive.EXIT_CONFLICTS
    state.rejected.append("b.csv")
    assert archive.outcome_of(state)[1] == archive.EXIT_REJECTED
    state.stop_reason = "received SIGTERM"
    assert archive.outcome_of(state)[:2] == ("INTERRUPTED", archive.EXIT_INTERRUPTED)
