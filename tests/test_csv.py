"""CSV key files: what is accepted, what is rejected (naming file and line), and batching."""

from __future__ import annotations

from pathlib import Path

import pytest

import archive

INT_KEY = archive.KeyType("int", -(2 ** 63), 2 ** 63 - 1, sql_type="bigint(20)")
UNSIGNED_INT = archive.key_type_from_column("int", "int(10) unsigned", None)
STR_KEY = archive.key_type_from_column("varchar", "varchar(8)", 8)


def keys_of(path: Path, key_type=INT_KEY, column: str = "id", delimiter: str = ",") -> list:
    """All keys of a file, in order."""
    return [k for _, _, k in archive.iter_csv_keys(path, column, delimiter, key_type)]


def write(tmp_path: Path, data: bytes, name: str = "ids.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_plain_file(tmp_path):
    assert keys_of(write(tmp_path, b"id\n1\n2\n3\n")) == [1, 2, 3]


def test_bom_crlf_blank_lines_spaces_and_duplicates_are_accepted(tmp_path):
    path = write(tmp_path, b"\xef\xbb\xbfid\r\n 1 \r\n\r\n2\r\n   \r\n2\r\n+3\r\n")
    assert keys_of(path) == [1, 2, 2, 3]


def test_key_column_picked_by_header_name(tmp_path):
    path = write(tmp_path, b'name,id\n"Smith, J",7\nx,8\n')
    assert keys_of(path) == [7, 8]


def test_header_only_and_empty_files_have_no_keys(tmp_path):
    assert keys_of(write(tmp_path, b"id\n", "a.csv")) == []
    assert keys_of(write(tmp_path, b"", "b.csv")) == []


def test_last_line_without_newline_is_read(tmp_path):
    assert keys_of(write(tmp_path, b"id\n1\n2")) == [1, 2]


@pytest.mark.parametrize("data, line, fragment", [
    (b"id\n1\nabc\n", 3, "is not a whole number"),
    (b"id\n1\n1.5\n", 3, "is not a whole number"),
    (b"id\n99999999999999999999\n", 2, "out of range"),
    (b"id\n1\n\x00\n", 3, "NUL byte"),
    (b"id\n1\n\xff\xfe\n", 3, "not valid UTF-8"),
    (b"key\n1\n", 1, "no column 'id'"),
    (b"id;name\n1;x\n", 1, "wrong delimiter"),
    (b"name,id\nx\n", 2, "row has 1 field(s)"),
    (b"id\n\"1\n", 2, ""),
])
def test_malformed_files_name_file_and_line(tmp_path, data, line, fragment):
    path = write(tmp_path, data, "bad.csv")
    with pytest.raises(archive.ArchiveError) as info:
        keys_of(path)
    assert f"bad.csv line {line}:" in str(info.value)
    assert fragment in str(info.value)


def test_utf16_file_is_rejected(tmp_path):
    path = write(tmp_path, "id\n1\n".encode("utf-16"), "u16.csv")
    with pytest.raises(archive.ArchiveError, match="u16.csv line 1"):
        keys_of(path)


def test_unsigned_and_string_keys(tmp_path):
    with pytest.raises(archive.ArchiveError, match="out of range for int"):
        keys_of(write(tmp_path, b"id\n-1\n"), UNSIGNED_INT)
    assert keys_of(write(tmp_path, b"id\nab\n c d \n", "s.csv"), STR_KEY) == ["ab", "c d"]
    with pytest.raises(archive.ArchiveError, match="longer than varchar"):
        keys_of(write(tmp_path, b"id\nabcdefghi\n", "t.csv"), STR_KEY)


def test_unsupported_key_type_is_refused():
    with pytest.raises(archive.ArchiveError, match="not supported"):
        archive.key_type_from_column("datetime", "datetime", None)


def test_batches_are_numbered_and_record_where_they_end(tmp_path):
    path = write(tmp_path, b"id\n" + b"".join(b"%d\n" % i for i in range(1, 8)))
    keys = archive.iter_csv_keys(path, "id", ",", INT_KEY)
    batches = list(archive.iter_batches(keys, 3))
    assert [b.number for b in batches] == [1, 2, 3]
    assert [b.keys for b in batches] == [(1, 2, 3), (4, 5, 6), (7,)]
    assert batches[0].end_line == 4
    # resuming from a stored offset yields exactly the keys after it
    start = (batches[0].end_offset, batches[0].end_line)
    rest = archive.iter_csv_keys(path, "id", ",", INT_KEY, start=start)
    assert [b.keys for b in archive.iter_batches(rest, 3, 2)] == [(4, 5, 6), (7,)]


def test_skip_keys_resumes_by_count(tmp_path):
    path = write(tmp_path, b"id\n1\n\n2\n3\n4\n")
    keys = archive.skip_keys(archive.iter_csv_keys(path, "id", ",", INT_KEY), 2)
    assert [k for _, _, k in keys] == [3, 4]


def test_hash_file_identifies_content(tmp_path):
    a = archive.hash_file(write(tmp_path, b"id\n1\n", "a.csv"))
    b = archive.hash_file(write(tmp_path, b"id\n2\n", "b.csv"))
    assert a.size == 5 and len(a.sha256) == 64 and a.sha256 != b.sha256


def test_files_are_listed_in_name_order(tmp_path):
    for name in ("b.csv", "a.csv", "c.txt", "10.csv"):
        (tmp_path / name).write_text("id\n")
    (tmp_path / "dir.csv").mkdir()
    assert [p.name for p in archive.list_csv_files(tmp_path, "*.csv")] == ["10.csv", "a.csv", "b.csv"]


def test_memory_does_not_grow_with_file_size(tmp_path):
    """Streaming: iterating a large file keeps only one batch alive."""
    import tracemalloc
    path = tmp_path / "big.csv"
    with open(path, "w") as handle:
        handle.write("id\n")
        for i in range(1, 300_001):
            handle.write(f"{i}\n")
    tracemalloc.start()
    count = sum(len(b.keys) for b in archive.iter_batches(archive.iter_csv_keys(path, "id", ",", INT_KEY), 1000))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == 300_000
    assert peak < 2_000_000, f"peak {peak} bytes while streaming 300k keys"
