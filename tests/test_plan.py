"""Pure planning code: SQL building, identifier quoting, log parsing, checkpoints and pauses."""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest

import archive

INT_KEY = archive.KeyType("int", 0, 2 ** 64 - 1, sql_type="bigint unsigned")
TEXT_KEY = archive.KeyType("str", max_length=20, charset="utf8mb4", sql_type="varchar(20) utf8mb4")
JOB = "app.rewards -> app.rewards_archives"
READING = "key id from column 'id', delimiter ','"


def test_quote_ident_doubles_backticks():
    assert archive.quote_ident("a`b") == "`a``b`"


def test_contiguous_keys_become_a_range_and_sparse_keys_an_in_list():
    sql, params = archive.key_condition(["`id`"], [5, 1, 2, 3, 4, 9, 11, 3], INT_KEY)
    assert sql == "(`id` BETWEEN 1 AND 5 OR `id` IN (9,11))"
    assert params == ()
    sql, _ = archive.key_condition(["`id`"], range(1, 1001), INT_KEY)
    assert sql == "`id` BETWEEN 1 AND 1000"
    sql, _ = archive.key_condition(["`id`"], [1, 3, 5], INT_KEY)
    assert sql == "`id` IN (1,3,5)"
    assert archive.group_runs([]) == []
    assert archive.group_runs([4]) == [(4, 4)]
    assert archive.group_runs([1, 2, 4, 5, 6, 9]) == [(1, 2), (4, 6), (9, 9)]
    assert archive.group_runs([1, 2, 3, 5]) == [(1, 3), (5, 5)]  # first and last are 4 apart, not 3


def test_text_keys_are_parameters_matched_by_the_column_and_then_by_their_bytes():
    sql, params = archive.key_condition(["`code`"], ["a'); DROP TABLE x; --", "b"], TEXT_KEY)
    assert sql == "(`code` IN (%s, %s) AND CAST(`code` AS BINARY) IN (%s, %s))"
    assert params == ("a'); DROP TABLE x; --", "b", b"a'); DROP TABLE x; --", b"b")


def test_binary_keys_are_compared_as_bytes():
    key = archive.KeyType("bytes", max_length=16, fixed_length=True, sql_type="binary(16)")
    sql, params = archive.key_condition(["`uuid`"], [b"\x01" * 16], key)
    assert sql == "`uuid` IN (%s)" and params == (b"\x01" * 16,)


def plan(*columns: tuple[str, str]) -> archive.TablePlan:
    return archive.TablePlan("src", "arc", ("id",), tuple(archive.Column(n, t) for n, t in columns), INT_KEY)


def test_statements_quote_identifiers_and_never_insert_ignore():
    p = plan(("id", "int"), ("note", "varchar"))
    insert = p.insert_sql("`id` IN (1)")
    assert insert == ("INSERT INTO `arc` (`id`, `note`) SELECT `id`, `note` "
                      "FROM `src` FORCE INDEX (`PRIMARY`) WHERE `id` IN (1)")
    assert "IGNORE" not in insert.upper()
    assert p.delete_sql("`id` IN (1)", 1) == "DELETE FROM `src` WHERE `id` IN (1) LIMIT 1"
    assert "CAST(s.`note` AS BINARY) <=> CAST(a.`note` AS BINARY)" in p.classify_sql("s.`id` IN (1)")
    assert ("FROM `src` s FORCE INDEX (`PRIMARY`) LEFT JOIN `arc` a FORCE INDEX (`PRIMARY`)"
            in p.classify_sql("1"))


def test_every_type_is_compared_in_a_form_that_cannot_lose_information():
    identical = archive.identical_expression([
        archive.Column("f", "float"), archive.Column("d", "double"), archive.Column("t", "timestamp"),
        archive.Column("e", "enum"), archive.Column("j", "longtext")])
    assert "(s.`f` <=> a.`f` AND ATAN2(s.`f`, -1) <=> ATAN2(a.`f`, -1))" in identical
    assert "(s.`d` <=> a.`d` AND ATAN2(s.`d`, -1) <=> ATAN2(a.`d`, -1))" in identical
    assert "UNIX_TIMESTAMP(s.`t`) <=> UNIX_TIMESTAMP(a.`t`)" in identical
    assert "(s.`e` + 0 <=> a.`e` + 0 AND CAST(s.`e` AS BINARY) <=> CAST(a.`e` AS BINARY))" in identical
    assert "CAST(s.`j` AS BINARY) <=> CAST(a.`j` AS BINARY)" in identical
    assert "BINARY s.`f`" not in identical and "BINARY s.`t`" not in identical


def test_parameters_reach_the_sql_as_literals_with_no_character_of_theirs():
    when = dt.datetime(2025, 1, 2, 3, 4, 5)
    params = ("x' delimiter $ '", b"\x00'", 7, None, 1.5, when)
    bound = archive.bind_params("SELECT %s, %s, %s, %s, %s, %s", params)
    assert bound == ("SELECT _utf8mb4 X'78272064656c696d6974657220242027', X'0027', 7, NULL, 1.5, "
                     "'2025-01-02 03:04:05'")
    assert "delimiter" not in archive.sql_literal("a\n delimiter ;")
    with pytest.raises(ValueError, match="2 placeholders for 1 parameters"):
        archive.bind_params("%s %s", (1,))
    with pytest.raises(TypeError):
        archive.sql_literal(float("nan"))


def test_a_row_travels_to_another_server_as_an_exact_literal():
    row = archive.row_literal_sql([
        archive.Column("f", "float"), archive.Column("t", "timestamp"), archive.Column("y", "year"),
        archive.Column("n", "varchar", "latin1"), archive.Column("b", "blob"),
        archive.Column("d", "datetime"), archive.Column("i", "bigint")], "s")
    assert "IF(s.`f` = 0 AND ATAN2(s.`f`, -1) < 0, '-1e-50', s.`f` + 0e0)" in row
    assert "CONCAT('FROM_UNIXTIME(', UNIX_TIMESTAMP(s.`t`), ')')" in row
    assert "IF(s.`y` IS NULL, 'NULL', s.`y` + 0)" in row  # the text '0' would be the year 2000
    assert "CONCAT('_latin1 X''', HEX(s.`n`), '''')" in row
    assert "CONCAT('X''', HEX(s.`b`), '''')" in row
    assert "QUOTE(CAST(s.`d` AS CHAR))" in row and "IF(s.`i` IS NULL, 'NULL', s.`i`)" in row
    assert row.startswith("CONCAT('(', IF(") and "CONCAT_WS" not in row  # a NULL text voids the row
    assert archive.fingerprint_of("(1)") == "fd0ad9026eee596b7072a762941f60bef57e760a230edd450b3a634825685c2a"


SHA = "a" * 64
OTHER = "b" * 64


def info(name: str, sha: str = SHA, size: int = 10, keys: int = 100, job: str = JOB) -> str:
    scan = archive.FileScan(name, 0, sha, keys)
    return archive.file_info_line(scan, size, READING, job)


def legacy_info(name: str, table: str = "app.rewards") -> str:
    """A FILE_INFO line as schema-1 versions wrote it."""
    return f"FILE_INFO: {name} | SHA256: {SHA} | BATCH_SIZE: 10 | KEYS: 100 | TABLE: {table}"


def line(name: str, n: int, status: str) -> str:
    return archive.batch_log_line(dt.datetime(2025, 8, 17, 14, 30, 46), name, n, status)


def checkpoints(*lines: str, jobs=(JOB,)) -> dict:
    return archive.log_checkpoints(archive.merge_summaries([archive.summarize_log(lines)]), jobs, READING)


def test_seed_line_format_is_exact():
    assert line("file1.csv", 1, "COMPLETED") == (
        "[2025-08-17 14:30:46] FILE: file1.csv | BATCH: 1 | STATUS: COMPLETED")
    assert archive.log_file_name(dt.datetime(2025, 8, 17)) == "DataProcessingAllDetails_17_08_2025.txt"


def test_log_checkpoint_is_the_last_completed_batch_for_that_content():
    found = checkpoints(info("f.csv"), line("f.csv", 1, "PROCESSING"), line("f.csv", 1, "COMPLETED"),
                        line("f.csv", 2, "COMPLETED_WITH_DUPLICATES"), line("f.csv", 3, "PROCESSING"),
                        line("f.csv", 3, "FAILED"), info("g.csv", OTHER), line("g.csv", 1, "COMPLETED"))
    assert found[("f.csv", SHA)].last_batch == 2
    assert found[("f.csv", SHA)].batch_size == 10 and found[("f.csv", SHA)].total_keys == 100
    assert found[("g.csv", OTHER)].last_batch == 1


def test_batch_lines_without_file_info_or_for_another_job_do_not_count():
    assert checkpoints(line("f.csv", 5, "COMPLETED"), info("f.csv", job="app.other -> app.x"),
                       line("f.csv", 6, "COMPLETED")) == {}


def test_legacy_table_lines_count_for_the_job_on_that_source():
    found = checkpoints(legacy_info("f.csv"), line("f.csv", 4, "COMPLETED"), jobs=(JOB, "app.rewards"))
    assert found[("f.csv", SHA)].last_batch == 4


def test_a_checkpoint_holds_only_for_the_same_reading_of_the_file():
    lines = [info("f.csv"), line("f.csv", 3, "COMPLETED")]
    assert checkpoints(*lines)[("f.csv", SHA)].last_batch == 3
    other = archive.log_checkpoints(archive.merge_summaries([archive.summarize_log(lines)]), (JOB,),
                                    "key id from column 'user_id', delimiter ','")
    assert other == {}


def test_a_file_changed_line_voids_the_batches_before_it():
    scan = archive.FileScan("f.csv", 0, SHA, 100)
    lines = [info("f.csv"), line("f.csv", 1, "COMPLETED"), line("f.csv", 2, "COMPLETED"),
             archive.file_changed_line(scan, JOB)]
    assert checkpoints(*lines) == {}
    assert checkpoints(*lines, info("f.csv"), line("f.csv", 1, "COMPLETED"))[("f.csv", SHA)].last_batch == 1
    # ... and across days, a later log's FILE_CHANGED voids an earlier log's progress
    early = archive.summarize_log([info("f.csv"), line("f.csv", 7, "COMPLETED")])
    late = archive.summarize_log([archive.file_changed_line(scan, JOB)])
    assert archive.merge_summaries([early, late]) == {}


def test_torn_last_line_is_ignored_and_logs_are_read_across_days(tmp_path):
    (tmp_path / "DataProcessingAllDetails_31_12_2024.txt").write_text(
        "\n".join([info("f.csv"), line("f.csv", 1, "COMPLETED"), line("f.csv", 2, "COMPLETED")]) + "\n")
    (tmp_path / "DataProcessingAllDetails_01_01_2025.txt").write_text(
        "\n".join([info("f.csv"), line("f.csv", 3, "COMPLETED")]) + "\n" + line("f.csv", 4, "COMPLETED")[:30])
    (tmp_path / "DataProcessingAllDetails_garbage.txt").write_text("junk\n")

    def last() -> int:
        progress = archive.read_log_progress(tmp_path)
        return archive.log_checkpoints(progress, (JOB,), READING)[("f.csv", SHA)].last_batch

    assert last() == 3
    # a torn COMPLETED line that is complete but lacks its newline is also ignored
    (tmp_path / "DataProcessingAllDetails_02_01_2025.txt").write_text(
        info("f.csv") + "\n" + line("f.csv", 4, "COMPLETED"))
    assert last() == 3


def test_unchanged_logs_are_read_from_the_index_and_changed_ones_again(tmp_path):
    log = tmp_path / "DataProcessingAllDetails_31_12_2024.txt"
    log.write_text("\n".join([info("f.csv"), line("f.csv", 1, "COMPLETED")]) + "\n")
    archive.read_log_progress(tmp_path)
    index = json.loads((tmp_path / archive.LOG_INDEX_NAME).read_text())
    assert list(index["logs"]) == [log.name]
    # The index is trusted while size and mtime match: prove it by editing only the index.
    entry = index["logs"][log.name]
    entry["progress"][0][-1] = 9
    (tmp_path / archive.LOG_INDEX_NAME).write_text(json.dumps(index))
    assert archive.read_log_progress(tmp_path)[(JOB, "f.csv", SHA, READING, 10)] == (100, 9)
    with open(log, "a") as handle:  # the log grows: it is read again
        handle.write(line("f.csv", 2, "COMPLETED") + "\n")
    assert archive.read_log_progress(tmp_path)[(JOB, "f.csv", SHA, READING, 10)] == (100, 2)
    (tmp_path / archive.LOG_INDEX_NAME).write_text("{not json")  # a broken index is rebuilt
    assert archive.read_log_progress(tmp_path)[(JOB, "f.csv", SHA, READING, 10)] == (100, 2)


def valid_index(tmp_path) -> dict:
    """The index a fresh read of the logs in tmp_path writes (the index removed first)."""
    (tmp_path / archive.LOG_INDEX_NAME).unlink(missing_ok=True)
    archive.read_log_progress(tmp_path)
    return json.loads((tmp_path / archive.LOG_INDEX_NAME).read_text())


def entry_with(tmp_path, log, **fields) -> dict:
    """An index whose entry for `log` has its true size and mtime (so it would be trusted) and `fields`."""
    index = valid_index(tmp_path)
    index["logs"][log.name].update(fields)
    return index


@pytest.mark.parametrize("shape", [
    "[]", "null", "7", '"logs"', '{"format": 2}', '{"format": 2, "logs": []}', '{"format": 2, "logs": 5}',
    '{"format": 2, "logs": null}', '{"format": 2, "logs": {"DataProcessingAllDetails_31_12_2024.txt": 5}}',
    '{"format": 2, "logs": {"DataProcessingAllDetails_31_12_2024.txt": []}}',
    '{"format": 2, "logs": {"DataProcessingAllDetails_31_12_2024.txt": {"size": "x"}}}',
    "progress=7", "progress={}", "progress=[5]", "progress=[[1, 2, 3, 4, 5, 6, 7]]",
    'progress=[["j", "f.csv", "s", "r", true, 1, 1]]', 'progress=[["j", "f.csv", "s", "r", 10, 100]]',
    'changed="abc"', "changed=[[1, 2, 3]]", "changed=null", "size=true", 'mtime_ns="1"',
])
def test_an_index_of_the_wrong_shape_is_rebuilt_from_the_logs(tmp_path, shape):
    """Valid JSON of the wrong shape or types (a hand edit, another tool) is a corrupt index: the
    logs are read again and a valid index replaces it, so no run fails and no log is ignored."""
    log = tmp_path / "DataProcessingAllDetails_31_12_2024.txt"
    log.write_text("\n".join([info("f.csv"), line("f.csv", 4, "COMPLETED")]) + "\n")
    good = valid_index(tmp_path)
    if "=" in shape and not shape.startswith("{"):
        name, value = shape.split("=", 1)
        shape = json.dumps(entry_with(tmp_path, log, **{name: json.loads(value)}))
    (tmp_path / archive.LOG_INDEX_NAME).write_text(shape)
    assert archive.read_log_progress(tmp_path) == {(JOB, "f.csv", SHA, READING, 10): (100, 4)}
    assert json.loads((tmp_path / archive.LOG_INDEX_NAME).read_text()) == good
    (tmp_path / archive.LOG_INDEX_NAME).write_text(shape)  # a dry run (save=False) reads it too
    assert archive.read_log_progress(tmp_path, save=False) == {(JOB, "f.csv", SHA, READING, 10): (100, 4)}


def test_a_log_that_grows_while_it_is_read_is_read_again_next_time(tmp_path, monkeypatch):
    """The index must record the size the log had when it was read, not after: a line appended
    in between (another process writing the log) would otherwise be trusted as read, and lost."""
    log = tmp_path / "DataProcessingAllDetails_31_12_2024.txt"
    log.write_text("\n".join([info("f.csv"), line("f.csv", 1, "COMPLETED")]) + "\n")
    read = archive.read_log_lines

    def read_then_append(path):
        lines = read(path)
        with open(path, "a") as handle:
            handle.write(line("f.csv", 2, "COMPLETED") + "\n")
        return lines

    monkeypatch.setattr(archive, "read_log_lines", read_then_append)
    assert archive.read_log_progress(tmp_path)[(JOB, "f.csv", SHA, READING, 10)] == (100, 1)
    monkeypatch.setattr(archive, "read_log_lines", read)
    assert archive.read_log_progress(tmp_path)[(JOB, "f.csv", SHA, READING, 10)] == (100, 2)


def test_old_logs_are_removed_by_retention(tmp_path):
    for name in ("DataProcessingAllDetails_01_01_2025.txt", "DataProcessingAllDetails_22_01_2025.txt",
                 "DataProcessingAllDetails_31_01_2025.txt", "notes.txt"):
        (tmp_path / name).write_text("x\n")
    removed = archive.remove_old_logs(tmp_path, 10, dt.date(2025, 1, 31))
    assert removed == ["DataProcessingAllDetails_01_01_2025.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "DataProcessingAllDetails_22_01_2025.txt", "DataProcessingAllDetails_31_01_2025.txt", "notes.txt"]


def test_log_files_sort_by_date_not_by_name(tmp_path):
    for name in ("DataProcessingAllDetails_02_01_2025.txt", "DataProcessingAllDetails_31_12_2024.txt",
                 "DataProcessingAllDetails_01_02_2024.txt"):
        (tmp_path / name).write_text("")
    assert [p.name[-14:-4] for p in archive.sorted_log_files(tmp_path)] == [
        "01_02_2024", "31_12_2024", "02_01_2025"]


def test_best_checkpoint_takes_the_furthest():
    db = archive.Checkpoint(10, 100, 3, source="db")
    log = archive.Checkpoint(10, 100, 5, source="log")
    assert archive.best_checkpoint(db, log) is log
    assert archive.best_checkpoint(None, None) is None
    assert archive.best_checkpoint(db, archive.Checkpoint(10, 100, 3, source="log")) is db


@pytest.mark.parametrize("keys", [
    [0, 1, -1, 2 ** 63 - 1, -(2 ** 63), 2 ** 63, 2 ** 64 - 1, *range(1000, 2200)],
    ["a", "A", "a\x00", "a\x00b", "", "é", "e\u0301", "🐳", "x\\y", "x\ty", *map(str, range(1200))],
    [b"", b"\x00", b"\x00\x00", b"\xff", b"a", *(n.to_bytes(2, "big") for n in range(1, 1200))],
])
def test_the_dry_runs_moved_keys_tell_every_key_apart(keys):
    """The dry run's on-disk list of moved keys answers exactly like a set, for every key type
    (past 64 bits, NUL bytes, lookups of more keys than one SQLite statement takes)."""
    moved = archive.MovedKeys()
    try:
        folder = moved.folder.name
        first, second = keys[::2], keys[1::2]
        moved.add(first)
        assert moved.among(keys) == set(first)
        assert moved.among(second) == set()
        moved.add(second)
        assert moved.among(keys + ["absent", b"absent", 2 ** 64]) == set(keys)
    finally:
        moved.close()
    assert not os.path.exists(folder)


def test_outcome_precedence():
    state = archive.RunState()
    assert archive.outcome_of(state)[:2] == ("COMPLETED", archive.EXIT_OK)
    state.open_conflicts = 2
    assert archive.outcome_of(state)[1] == archive.EXIT_CONFLICTS
    state.rejected.append("b.csv")
    assert archive.outcome_of(state)[1] == archive.EXIT_REJECTED
    state.stop_reason = "received SIGTERM"
    assert archive.outcome_of(state)[:2] == ("INTERRUPTED", archive.EXIT_INTERRUPTED)


def test_texts_are_cut_to_fit_their_column():
    assert archive.fit("x" * 300, 255) == "x" * 248 + " [cut]"
    cut = archive.fit("ł" * 40_000)
    assert cut is not None
    assert len(cut.encode()) <= archive.TEXT_BYTES and cut.endswith("[cut]")
    assert archive.fit(None) is None and archive.fit("short", 255) == "short"


def test_the_progress_line_fits_the_terminal():
    line = archive.fit_progress("a-very-long-file-name-" * 5 + ".csv", "file 3/12  batch 40/50  1,234 rows",
                                80)
    assert len(line) <= 80 and line.endswith("file 3/12  batch 40/50  1,234 rows") and "…" in line
    assert len(archive.fit_progress("x.csv", "y" * 100, 40)) == 40
    narrow = archive.fit_progress("keys.csv", "file 1/1  batch 3/20  1,234 rows  120 rows/s  ETA 0m09s", 40)
    assert narrow.endswith("file 1/1  batch 3/20  ETA 0m09s") and len(narrow) <= 40  # whole fields


def test_long_lines_wrap_at_field_boundaries_and_lose_nothing():
    line = ("SUMMARY: COMPLETED | run 1 | files 1 (1 archived, 0 already done, 0 rejected) | batches 6 "
            "| rows archived 54 | failures 0 | stopped: max_runtime 2h reached after 7200s")
    for width in (80, 40, 24):
        lines = archive.wrap_fields(line, width)
        assert all(len(piece) <= width for piece in lines), lines
        assert all(piece.startswith("  ") for piece in lines[1:])
        assert " ".join(piece.strip() for piece in lines).split() == line.split()
    assert archive.wrap_fields(line, 80)[0].endswith("|")  # cut after a separator, not inside a field
    assert archive.wrap_fields("short", 80) == ["short"]
    assert archive.wrap_fields("x" * 50, 20) == ["x" * 20, "  " + "x" * 18, "  " + "x" * 12]


@pytest.mark.parametrize("count, word, many, text", [(1, "batch", "batches", "1 batch"),
                                                     (2, "batch", "batches", "2 batches"),
                                                     (0, "file", None, "0 files")])
def test_plural(count, word, many, text):
    assert archive.plural(count, word, many) == text


def test_pauses_resume_and_give_up_by_the_clock():
    state = archive.PauseState(replica_timeout=30)
    assert state.step(0, None, False).action == "go"
    assert state.step(10, "replica lag", True) == archive.PauseStep("pause", "PAUSE: replica lag")
    assert state.step(20, "replica lag", True).action == "wait"
    assert state.step(25, "busy", False).text == "PAUSE: busy"  # not a replica problem: no clock
    assert state.step(60, "replica lag", True).action == "pause"  # the replica clock starts again
    step = state.step(90, "replica lag", True)
    assert step.action == "give up" and step.text.startswith("gave up after 30s")
    assert state.paused_seconds == 80
    assert state.step(100, "busy", False).action == "pause"
    assert state.step(104, None, False) == archive.PauseStep("resume", "RESUME: pause over after 4.0s")
    assert state.paused_seconds == 84
    assert state.interrupt(105, "stop").action == "go"
    state.step(106, "busy", False)
    assert state.interrupt(107, "received SIGTERM").text == (
        "PAUSE ENDED: received SIGTERM (while paused 1s: busy)")


def test_sparse_integer_keys_may_go_as_one_range_filtered_by_a_bitmap():
    p = plan(("id", "int"))
    span = p.span_of([11, 13, 15, 17])
    assert span is not None
    assert span.condition == "`id` BETWEEN 11 AND 17 AND SUBSTRING(_binary'1010101', `id` - 11 + 1, 1) = '1'"
    assert span.unlisted_sql == ("SELECT COUNT(*) INTO @archive_py_unlisted "
                                 "FROM `src` FORCE INDEX (`PRIMARY`) "
                                 "WHERE `id` BETWEEN 11 AND 17 AND NOT (SUBSTRING(_binary'1010101', "
                                 "`id` - 11 + 1, 1) = '1')")
    assert "FOR UPDATE" not in span.unlisted_sql and "SHARE" not in span.unlisted_sql
    assert p.span_of(range(1, 5)) is None  # contiguous: key_condition's BETWEEN already
    assert p.span_of([1, 50, 99]) is None  # spread far apart: an IN list


def identity(server_id=1, uuid=None, place=("db1", 3306, "/var/lib/mysql/"), cluster=None, gtid="",
             sources=()):
    """A ServerIdentity as server_identity reads it."""
    return archive.ServerIdentity(server_id, uuid, place, cluster, gtid, sources)


def test_a_destination_that_is_the_source_in_disguise_is_told_apart():
    source = identity(server_id=1)
    same = archive.disguise_problems(source, identity(server_id=1), same_name=True)
    assert same and "the same server as the source" in same[0] and "the source table itself" in same[0]
    assert archive.disguise_problems(source, identity(server_id=1), same_name=False) == []
    node = archive.disguise_problems(identity(place=("n1", 3306, "/d"), cluster="c-1"),
                                     identity(place=("n2", 3306, "/d"), cluster="c-1"), same_name=True)
    assert "a node of the source's Galera cluster" in node[0]
    other = identity(server_id=2, place=("db2", 3306, "/var/lib/mysql/"))
    assert archive.disguise_problems(source, other, same_name=True) == []
    # a replica says so in SHOW ALL SLAVES STATUS, or (may not look) in its GTID position ...
    replica = archive.disguise_problems(source, identity(2, place=("r", 1, "/"), sources=(1,)), False)
    assert "it replicates from server_id 1" in replica[0]
    by_gtid = identity(2, place=("r", 1, "/"), gtid="0-1-1042,7-9-3", sources=None)
    assert "holds transactions of the source (1)" in archive.disguise_problems(source, by_gtid, False)[0]
    chain = identity(3, place=("r", 1, "/"), gtid="0-1-1042", sources=(2,))  # source -> 2 -> this one
    assert archive.disguise_problems(source, chain, False)
    # ... but a server that no longer replicates at all keeps an old GTID position: not a replica
    assert archive.disguise_problems(source, identity(2, place=("r", 1, "/"), gtid="0-1-5"), False) == []
    mysql_source = identity(1, uuid="3E11FA47-71CA-11E1-9E33-C80AA9429562")
    mysql_replica = identity(2, place=("r", 1, "/"), gtid="3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5",
                             sources=None)
    assert archive.disguise_problems(mysql_source, mysql_replica, False)


# --------------------------------------------------------------------------- the statements of a batch

def test_a_batch_classifies_its_rows_by_key_bytes_guard_verdict_and_archived_twin():
    p = archive.TablePlan("src", "arc", ("code",), (archive.Column("code", "varchar", "utf8mb4"),
                                                    archive.Column("amount", "float")),
                          TEXT_KEY, guard="amount > 0", source_index="ux_code")
    assert p.classify_sql("s.`code` IN (%s)") == (
        "SELECT CAST(s.`code` AS BINARY), "  # bytes: no collation may blur which key came back
        "(SELECT (amount > 0) IS TRUE FROM `src` g WHERE g.`code` = s.`code`), a.`code` IS NOT NULL, "
        "COALESCE(CAST(s.`code` AS BINARY) <=> CAST(a.`code` AS BINARY) AND "
        "(s.`amount` <=> a.`amount` AND ATAN2(s.`amount`, -1) <=> ATAN2(a.`amount`, -1)), 0) "
        "FROM `src` s FORCE INDEX (`ux_code`) LEFT JOIN `arc` a FORCE INDEX (`PRIMARY`) "
        "ON a.`code` = s.`code` WHERE s.`code` IN (%s) FOR UPDATE")
    assert p.classify_sql("1", lock=False).endswith(" WHERE 1")  # the dry run locks nothing
    unguarded = plan(("id", "int"))
    assert unguarded.classify_sql("1").startswith("SELECT s.`id`, 1, a.`id` IS NOT NULL, ")


def test_statements_on_tables_with_odd_names_quote_every_name():
    p = archive.TablePlan("we`ird", "arc hive", ("k`ey",), (archive.Column("k`ey", "int"),), INT_KEY)
    assert p.insert_sql("c") == ("INSERT INTO `arc hive` (`k``ey`) SELECT `k``ey` FROM `we``ird` "
                                 "FORCE INDEX (`PRIMARY`) WHERE c")
    assert p.delete_sql("c", 7) == "DELETE FROM `we``ird` WHERE c LIMIT 7"
    assert "ON a.`k``ey` = s.`k``ey`" in p.classify_sql("c")
    assert archive.RemotePlan(p).insert_sql(["(1)"]) == "INSERT INTO `arc hive` (`k``ey`) VALUES (1)"


def test_only_integer_keys_go_as_a_span():
    assert archive.TablePlan("src", "arc", ("code",), (), TEXT_KEY).span_of(["a", "c", "e", "g"]) is None
    assert plan(("id", "int")).span_of([]) is None
    span = plan(("id", "int")).span_of([5, 3, 3, 1, 7])
    assert span is not None and span.condition.startswith("`id` BETWEEN 1 AND 7 AND ")


REMOTE_COLUMNS = (archive.Column("id", "bigint"), archive.Column("note", "varchar", "utf8mb4"))
RECOMPUTED = (archive.Column("up", "varchar", "utf8mb4"),)


def remote(recomputed: tuple[archive.Column, ...] = ()) -> archive.RemotePlan:
    """The statements of archiving src into arc on another server."""
    return archive.RemotePlan(archive.TablePlan("src", "arc", ("id",), REMOTE_COLUMNS, INT_KEY,
                                                recomputed=recomputed))


def test_a_remote_batch_reads_its_source_rows_as_literals_and_locks_them():
    row = archive.row_literal_sql(REMOTE_COLUMNS, "s")
    assert remote().read_sql("s.`id` IN (1)") == (
        f"SELECT s.`id`, 1, {row} FROM `src` s FORCE INDEX (`PRIMARY`) WHERE s.`id` IN (1) FOR UPDATE")
    assert remote().read_sql("1", lock=False).endswith(" WHERE 1")


def test_a_copy_on_the_destination_is_proven_by_its_literal_and_its_recomputed_columns():
    literal = archive.row_literal_sql(REMOTE_COLUMNS, "a")
    assert remote().proof_sql("a") == literal
    proof = f"CONCAT({literal}, {archive.row_literal_sql(RECOMPUTED, 'a')})"
    computing = remote(RECOMPUTED)
    assert computing.proof_sql("a") == proof
    assert computing.lookup_sql("a.`id` IN (1)") == (
        f"SELECT a.`id`, SHA2({proof}, 256) FROM `arc` a FORCE INDEX (`PRIMARY`) "
        "WHERE a.`id` IN (1) FOR UPDATE")
    assert computing.verify_sql("a.`id` IN (1)") == (  # one row back: the count and one fingerprint
        "SELECT COUNT(*), SHA2(GROUP_CONCAT(t.l ORDER BY t.l SEPARATOR ','), 256) FROM "
        f"(SELECT CAST({proof} AS BINARY) AS l FROM `arc` a FORCE INDEX (`PRIMARY`) "
        "WHERE a.`id` IN (1)) AS t")
    assert archive.batch_fingerprint_of(["(2)", "(1)"]) == archive.fingerprint_of("(1),(2)")


def test_recomputed_columns_are_rendered_at_utc_and_the_session_goes_back_to_its_zone():
    assert remote(RECOMPUTED).recomputed_sql("s.`id` IN (1)", "Europe/Berlin") == [
        "SET SESSION time_zone = '+00:00'",
        (f"SELECT s.`id`, {archive.row_literal_sql(RECOMPUTED, 's')} FROM `src` s FORCE INDEX (`PRIMARY`) "
         "WHERE s.`id` IN (1)"),
        f"SET SESSION time_zone = _utf8mb4 X'{b'Europe/Berlin'.hex()}'"]


def test_remote_rows_go_in_as_literals_never_ignored_or_replaced():
    insert = remote().insert_sql(["(1,X'61')", "(2,NULL)"])
    assert insert == "INSERT INTO `arc` (`id`, `note`) VALUES (1,X'61'), (2,NULL)"
    assert "IGNORE" not in insert and "REPLACE" not in insert and "DUPLICATE" not in insert
    # a collision is equality under the column's collation, on purpose: 'ABC' archived for 'abc'
    assert remote().collides(7) == ("SELECT 1 FROM `arc` WHERE `id` = %s LIMIT 1", (7,))


WATCHED = (archive.Watched("src", "DELETE"), archive.Watched("arc", "INSERT"))
ENGINES = "arc InnoDB BASE TABLE, src InnoDB BASE TABLE"
CREATES = ("CREATE TABLE `src` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB",
           "CREATE TABLE `arc` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB")


def definitions(referencing_sql: str = "SELECT 'fk'", references: str | None = None,
                triggers: str | None = None) -> archive.Definitions:
    """src and arc as a preflight approved them: InnoDB, no triggers, `references` reaching src."""
    return archive.Definitions(WATCHED, referencing_sql, CREATES, (ENGINES, triggers, references))


def test_a_batch_takes_the_metadata_locks_of_its_tables_writing_nothing():
    assert definitions().lock_sql() == "SELECT 1 FROM `src`, `arc` WHERE FALSE FOR UPDATE"


def test_the_gate_lets_writes_act_only_for_the_approved_engines_and_triggers_byte_for_byte():
    gate = definitions(triggers="arc BEFORE INSERT stamp").gate_sql()
    engines, triggers = (f"CAST({expression} AS BINARY)"
                         for expression in definitions().effect_expressions()[:2])
    assert gate == (f"SELECT {engines} <=> X'{ENGINES.encode().hex()}' AND "
                    f"{triggers} <=> X'{b'arc BEFORE INSERT stamp'.hex()}' INTO @archive_py_same")
    assert "TABLE_NAME = _utf8mb4 X'737263'" in engines and "TABLE_NAME = _utf8mb4 X'617263'" in engines
    assert "EVENT_OBJECT_TABLE = _utf8mb4 X'737263' AND EVENT_MANIPULATION = 'DELETE'" in triggers
    assert "EVENT_OBJECT_TABLE = _utf8mb4 X'617263' AND EVENT_MANIPULATION = 'INSERT'" in triggers
    assert "SHA2(ACTION_STATEMENT, 256)" in triggers  # a trigger made again with another body differs
    assert definitions().gate_sql().endswith(" <=> NULL INTO @archive_py_same")  # none approved: none
    assert "SELECT 'fk'" not in gate  # foreign keys are read after the writes (readback_sql)


def test_the_readback_reads_each_create_the_gates_verdict_and_the_foreign_keys():
    assert definitions().readback_sql() == ["SHOW CREATE TABLE `src`", "SHOW CREATE TABLE `arc`",
                                            "SELECT @archive_py_same, (SELECT 'fk')"]
    assert definitions("").readback_sql()[-1] == "SELECT @archive_py_same, (SELECT NULL)"


def test_the_tables_hold_only_when_what_was_read_back_is_what_was_approved():
    def read_back(src=CREATES[0], same=1, references=None):
        return [[("src", src)], [("arc", CREATES[1])], [(same, references)]]

    approved = definitions(references="t_fk child RESTRICT")
    assert approved.holds(read_back(references="t_fk child RESTRICT"))
    assert approved.holds(read_back(CREATES[0] + " AUTO_INCREMENT=57", references="t_fk child RESTRICT"))
    assert not approved.holds(read_back(same=0, references="t_fk child RESTRICT"))  # a trigger or engine
    assert not approved.holds(read_back(same=None, references="t_fk child RESTRICT"))
    assert not approved.holds(read_back(references="t_fk child CASCADE"))
    assert not approved.holds(read_back(references=None))
    assert not approved.holds(read_back(CREATES[0].replace("int(11)", "bigint(20)"),
                                        references="t_fk child RESTRICT"))


def test_a_changed_definition_is_told_line_by_line():
    old = definitions()
    wider = archive.Definitions(WATCHED, "SELECT 'fk'",
                                (CREATES[0].replace("int(11)", "bigint(20)"), CREATES[1]),
                                (ENGINES, "arc BEFORE INSERT stamp", None))
    assert archive.describe_definition_changes(old, wider) == [
        "`src`: - `id` int(11) NOT NULL; + `id` bigint(20) NOT NULL",
        "triggers on their writes: none -> arc BEFORE INSERT stamp"]
    assert archive.describe_definition_changes(old, None) == [
        "`src` or `arc` can no longer be read (dropped or renamed?)"]
    assert archive.describe_definition_changes(old, old) == []
