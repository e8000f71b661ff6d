"""CSV key files: what is accepted, what is rejected (naming file and line), and batching."""

from __future__ import annotations

import contextlib
import csv
import random
import time
import tracemalloc
from pathlib import Path

import pytest

import archive
from checks import make_job
from helpers import run_cli


def column(data_type: str, column_type: str, max_length: int | None = None,
           charset: str | None = None) -> dict:
    """An information_schema.COLUMNS row as preflight reads it."""
    return {"data_type": data_type, "column_type": column_type, "max_length": max_length, "charset": charset}


INT_KEY = archive.key_type_from_column(column("bigint", "bigint(20)"))
UNSIGNED_INT = archive.key_type_from_column(column("int", "int(10) unsigned"))
STR_KEY = archive.key_type_from_column(column("varchar", "varchar(8)", 8, "utf8mb4"))


CSV = archive.CsvFormat()  # the default: RFC 4180, comma, a header naming the key column "id"
MYSQL = archive.CsvFormat(dialect="mysql", delimiter="\t", columns=("1",), header=False)  # mariadb -B -N
TEXT_KEY = archive.key_type_from_column(column("varchar", "varchar(40)", 40, "utf8mb4"))


def keys_of(path: Path, key_type=INT_KEY, fmt: archive.CsvFormat = CSV) -> list:
    """All keys of a file, in order."""
    return [k for _, _, k in archive.iter_csv_keys(path, fmt, key_type)]


def write(tmp_path: Path, data: bytes, name: str = "ids.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_plain_file(tmp_path):
    assert keys_of(write(tmp_path, b"id\n1\n2\n3\n")) == [1, 2, 3]


def test_bom_crlf_blank_lines_spaces_and_duplicates_are_accepted(tmp_path):
    path = write(tmp_path, b"\xef\xbb\xbfid\r\n 1 \r\n\r\n2\r\n   \r\n2\r\n+3\r\n")
    assert keys_of(path) == [1, 2, 2, 3]


@pytest.mark.parametrize("before", [b"\n", b"  \t \r\n", b"\xef\xbb\xbf\n", b"\xef\xbb\xbf  \n\n",
                                    b"\r\n\r\n"])
def test_blank_lines_and_a_lone_bom_before_the_header_are_skipped(tmp_path, before):
    assert keys_of(write(tmp_path, before + b"id\n1\n2\n")) == [1, 2]


def test_data_lines_without_a_usable_header_are_rejected(tmp_path):
    with pytest.raises(archive.RejectedFile, match=r"ids.csv line 2: no column 'id'"):
        keys_of(write(tmp_path, b"\n1\n2\n"))


def test_key_column_picked_by_header_name(tmp_path):
    path = write(tmp_path, b'name,id\n"Smith, J",7\nx,8\n')
    assert keys_of(path) == [7, 8]


def test_header_only_and_empty_files_have_no_keys(tmp_path):
    assert keys_of(write(tmp_path, b"id\n", "a.csv")) == []
    assert keys_of(write(tmp_path, b"", "b.csv")) == []
    assert keys_of(write(tmp_path, b"\n \n", "c.csv")) == []


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
    (b"id\n\"1\n", 2, "never closed"),
    (b"id\n1\"2\n", 2, "never closed"),
    (b"id\n1\"2\"\n", 2, "stray or unbalanced double quote"),
    (b"id\n\"1\"x\n", 2, "stray or unbalanced double quote"),
    (b"id\n1_000\n", 2, "is not a whole number"),
    ("id\n\N{FULLWIDTH DIGIT THREE}\N{FULLWIDTH DIGIT ONE}\n".encode(), 2, "is not a whole number"),
    ("id\n٣٢\n".encode(), 2, "is not a whole number"),
    (b'id\n1\n""\n', 3, "empty key"),
])
def test_malformed_files_name_file_and_line(tmp_path, data, line, fragment):
    path = write(tmp_path, data, "bad.csv")
    with pytest.raises(archive.RejectedFile) as info:
        keys_of(path)
    assert f"bad.csv line {line}:" in str(info.value)
    assert fragment in str(info.value)


def test_utf16_file_is_rejected(tmp_path):
    path = write(tmp_path, "id\n1\n".encode("utf-16"), "u16.csv")
    with pytest.raises(archive.RejectedFile, match=r"u16\.csv line 1"):
        keys_of(path)


def test_unsigned_and_string_keys(tmp_path):
    with pytest.raises(archive.RejectedFile, match="out of range for int"):
        keys_of(write(tmp_path, b"id\n-1\n"), UNSIGNED_INT)
    assert keys_of(write(tmp_path, b"id\nab\n c d \n", "s.csv"), STR_KEY) == ["ab", " c d "]
    with pytest.raises(archive.RejectedFile, match="longer than varchar"):
        keys_of(write(tmp_path, b"id\nabcdefghi\n", "t.csv"), STR_KEY)


def test_a_text_key_is_the_field_exactly_quoted_or_not(tmp_path):
    data = 'id\n" x1"\n"tab\t"\n"nb\u00a0"\n  plain  \n\t\ttabbed\n"say ""hi"""\n'.encode()
    assert keys_of(write(tmp_path, data), TEXT_KEY) == [" x1", "tab\t", "nb\u00a0", "  plain  ", "\t\ttabbed",
                                                        'say "hi"']


TRICKY = [" lead", "trail ", "  both  ", "\ttab", "tab\t", "in side", "   ", "\u00a0nb", 'say "hi"', "a,b",
          "two\nlines", "cr\r", "crlf\r\nx", "'", "x\\y", "\\N", "NULL", "Grüße 🐳", "plain"]


def test_keys_read_back_exactly_as_pythons_csv_module_wrote_them(tmp_path):
    """A file written by Python's csv module with the key ' lead' moved the unlisted row 'lead'."""
    path = tmp_path / "keys.csv"
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["id", "note"])
        writer.writerows([key, f"row {n}"] for n, key in enumerate(TRICKY))
    assert keys_of(path, TEXT_KEY) == TRICKY


def test_integer_and_hex_keys_may_have_spaces_and_tabs_around_them_quoted_or_not(tmp_path):
    data = b'id\n 1 \n\t2\t\n" 3 "\n"\t4"\n  "5"  \n\t"6" \n'
    assert keys_of(write(tmp_path, data)) == [1, 2, 3, 4, 5, 6]
    binary = archive.key_type_from_column(column("varbinary", "varbinary(4)", 4))
    assert keys_of(write(tmp_path, b'id\n 0a0b\t\n"\t0x0c0d "\n', "h.csv"), binary) == [b"\n\x0b", b"\x0c\r"]


def test_spaces_outside_the_quotes_of_a_text_key_are_refused(tmp_path):
    """RFC 4180 has no such field: a reader could take the quotes, or the spaces and quotes, as the key."""
    with pytest.raises(archive.RejectedFile, match=r"ids.csv line 3: spaces outside the quotes of 'x'"):
        keys_of(write(tmp_path, b'id\n"ok"\n "x"\n'), TEXT_KEY)


def test_a_line_of_only_spaces_is_a_text_key_but_blank_for_numbers(tmp_path):
    assert keys_of(write(tmp_path, b"id\nab\n   \n\r\n\ncd\n"), TEXT_KEY) == ["ab", "   ", "cd"]
    assert keys_of(write(tmp_path, b"id\n1\n   \n\t\n\r\n2\n", "n.csv")) == [1, 2]


def test_without_a_header_the_key_is_a_field_number(tmp_path):
    second = archive.CsvFormat(columns=("2",), header=False)
    path = write(tmp_path, b'\xef\xbb\xbfx,1\n"y, z",2\n\n w ,3\n')
    assert keys_of(path, INT_KEY, second) == [1, 2, 3]
    assert keys_of(path, TEXT_KEY, archive.CsvFormat(columns=("1",), header=False)) == ["x", "y, z", " w "]
    first = archive.CsvFormat(columns=("1",), header=False)
    assert keys_of(write(tmp_path, b"7\n8\n", "plain.csv"), INT_KEY, first) == [7, 8]
    with pytest.raises(archive.RejectedFile, match=r"short.csv line 2: row has 1 field\(s\); the key"):
        keys_of(write(tmp_path, b"x,1\ny\n", "short.csv"), INT_KEY, second)


# --------------------------------------------------------------------------- csv_dialect = mysql

def outfile_escaped(value: str) -> str:
    """A field as SELECT ... INTO OUTFILE writes it with the default FIELDS and LINES."""
    return value.replace("\\", "\\\\").replace("\t", "\\\t").replace("\n", "\\\n").replace("\0", "\\0")


def client_escaped(value: str) -> str:
    """A field as mariadb -B writes it (client/mysql.cc safe_put_field)."""
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\0", "\\0")


def test_mysql_files_decode_as_load_data_does(tmp_path):
    data = b"".join([
        b"plain\n", b"x\\\\y\n", b"x\\y\n", b"tab\\there\n", b"tab\\\there\n", b"nl\\\nnext\n",
        b"esc\\0\\b\\n\\r\\t\\Z\\\\\n", b"q\\'\\\"\\a\n", b"cr\r\n", b"\\\\N\n", b"a\\Nb\n", b'"quoted"\n',
        b"\xef\xbb\xbfbom\n", "Grüße 🐳\n".encode(), b" lead\ttail \n", b"last\\"])
    keys = list(archive.iter_csv_keys(write(tmp_path, data, "k.txt"), MYSQL, TEXT_KEY))
    assert [k for _, _, k in keys] == [
        "plain", "x\\y", "xy", "tab\there", "tab\there", "nl\nnext", "esc\0\b\n\r\t\x1a\\", "q'\"a", "cr\r",
        "\\N", "aNb", '"quoted"', "\ufeffbom", "Grüße 🐳", " lead", "last\\"]
    assert [line for line, _, _ in keys] == [1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]
    assert [offset for _, offset, _ in keys][:6] == [6, 11, 15, 25, 35, 44]
    resumed = archive.iter_csv_keys(tmp_path / "k.txt", MYSQL, TEXT_KEY, start=keys[4][:2][::-1])
    assert [k for _, _, k in resumed][:2] == ["nl\nnext", "esc\0\b\n\r\t\x1a\\"]


def test_mysql_files_read_back_exactly_what_outfile_and_the_client_wrote(tmp_path):
    rng = random.Random(19)
    pieces = ["a", "\\", "\t", "\n", "\r", "\0", "N", "0", "n", "t", "Z", "é", "🐳", " ", '"', "'", ","]
    values = list(dict.fromkeys("".join(rng.choice(pieces) for _ in range(rng.randint(1, 8)))
                                for _ in range(3000)))
    for name, escaped in (("outfile.txt", outfile_escaped), ("client.txt", client_escaped)):
        lines = "".join(f"{escaped(v)}\t{escaped(v[::-1])}\n" for v in values)
        assert keys_of(write(tmp_path, lines.encode(), name), TEXT_KEY, MYSQL) == values, name
        header = archive.CsvFormat(dialect="mysql", delimiter="\t", columns=("code",))
        with_header = "note\tcode\n" + "".join(f"\\N\t{escaped(v)}\n" for v in values)
        assert keys_of(write(tmp_path, with_header.encode(), "h" + name), TEXT_KEY, header) == values, name


@pytest.mark.parametrize("data, key_type, line, fragment", [
    (b"1\n\\N\n", INT_KEY, 2, "\\N is NULL"),
    (b"a\nb\\\nc\n\\N\tx\n", TEXT_KEY, 4, "\\N is NULL"),
    (b"1\n\n2\n", INT_KEY, 2, "empty key"),
    (b"a\n\nb\n", TEXT_KEY, 2, "empty key"),
    (b"1\n2\r\n", INT_KEY, 2, "is not a whole number"),
    (b"1\n\x00\n", INT_KEY, 2, "NUL byte"),
    (b"\xef\xbb\xbf1\n", INT_KEY, 1, "is not a whole number"),
    (b'"1"\n', INT_KEY, 1, "is not a whole number"),
])
def test_mysql_files_refuse_null_and_what_load_data_would_not_read_as_a_key(tmp_path, data, key_type, line,
                                                                            fragment):
    with pytest.raises(archive.RejectedFile) as info:
        keys_of(write(tmp_path, data, "bad.txt"), key_type, MYSQL)
    assert f"bad.txt line {line}:" in str(info.value) and fragment in str(info.value), str(info.value)


def test_mysql_files_of_numbers_take_the_fast_path_and_still_name_a_bad_line(tmp_path):
    header = archive.CsvFormat(dialect="mysql", delimiter="\t", columns=("id",))
    data = b"id\n" + b"".join(b"%d\n" % n for n in range(1, 5001))
    assert keys_of(write(tmp_path, data, "n.txt"), INT_KEY, header) == list(range(1, 5001))
    with pytest.raises(archive.RejectedFile, match=r"m.txt line 5002: '7\\n8' is not a whole number"):
        keys_of(write(tmp_path, data + b"7\\\n8\n9\n", "m.txt"), INT_KEY, header)


def test_a_lone_cr_is_data_and_ends_no_line(tmp_path):
    """Only an LF ends a line, also once a file of numbers leaves the fast path: a CR inside a
    quoted note counted as a line end there, so every later line was misnumbered."""
    path = write(tmp_path, b'id,note\n1,"a\rb"\nx,y\n')
    with pytest.raises(archive.RejectedFile, match=r"ids.csv line 3: 'x' is not a whole number"):
        keys_of(path)
    mysql = write(tmp_path, b"1\n2\r3\n", "cr.txt")
    with pytest.raises(archive.RejectedFile, match=r"cr.txt line 2: '2\\r3' is not a whole number"):
        keys_of(mysql, INT_KEY, MYSQL)


def test_plain_number_files_record_the_byte_offset_after_each_line(tmp_path):
    # Plain numbers take the block-at-a-time path; each key's offset must still be where
    # its line ends, since resume seeks there. A blank line hands the rest to the careful reader.
    data = b"id\n" + b"".join(b"%d\n" % n for n in range(1, 6001)) + b"\n7\n"
    path = write(tmp_path, data)
    keys = list(archive.iter_csv_keys(path, CSV, INT_KEY))
    ends = [i + 1 for i, byte in enumerate(data) if byte == ord("\n")][1:]
    assert [k for _, _, k in keys] == [*range(1, 6001), 7]
    assert [offset for _, offset, _ in keys] == ends[:6000] + ends[6001:]
    assert [line for line, _, _ in keys] == [*range(2, 6002), 6003]


@pytest.mark.parametrize("charset, key, ok", [
    ("latin1", "Müller", True), ("latin1", "Łódź", False), ("latin1", "€uro", True),
    ("latin1", "x\u0081y", True), ("latin1", "x\u0080y", False), ("latin1", "tag🐳", False),
    ("utf8mb3", "Łódź", True), ("utf8mb3", "tag🐳", False), ("utf8mb4", "tag🐳", True),
    ("ascii", "abc", True), ("ascii", "é", False),
])
def test_keys_the_column_cannot_hold_are_rejected_naming_the_line(tmp_path, charset, key, ok):
    key_type = archive.key_type_from_column(column("varchar", "varchar(20)", 20, charset))
    path = write(tmp_path, f"id\nok\n{key}\n".encode())
    if ok:
        assert keys_of(path, key_type) == ["ok", key]
    else:
        with pytest.raises(archive.RejectedFile, match=r"ids.csv line 3: .*cannot hold"):
            keys_of(path, key_type)


def test_latin1_keys_are_encoded_as_mysql_stores_them():
    key_type = archive.key_type_from_column(column("varchar", "varchar(20)", 20, "latin1"))
    assert key_type.encode("Müller€\u0081") == b"M\xfcller\x80\x81"


def test_binary_keys_are_written_in_hex_and_need_their_full_width(tmp_path):
    fixed = archive.key_type_from_column(column("binary", "binary(4)", 4))
    varying = archive.key_type_from_column(column("varbinary", "varbinary(4)", 4))
    path = write(tmp_path, b"id\n0x0a0B0c0D\nDEADBEEF\n")
    assert keys_of(path, fixed) == [b"\x0a\x0b\x0c\x0d", b"\xde\xad\xbe\xef"]
    assert keys_of(write(tmp_path, b"id\n0x0102\n", "v.csv"), varying) == [b"\x01\x02"]
    with pytest.raises(archive.RejectedFile, match=r"is 2 bytes; a binary\(4\) key has exactly 4"):
        keys_of(write(tmp_path, b"id\n0x0102\n", "short.csv"), fixed)
    with pytest.raises(archive.RejectedFile, match="is not hex"):
        keys_of(write(tmp_path, b"id\nxyz\n", "nothex.csv"), fixed)
    with pytest.raises(archive.RejectedFile, match="longer than varbinary"):
        keys_of(write(tmp_path, b"id\n0102030405\n", "long.csv"), varying)
    assert archive.format_key(b"\x01\xff") == "0x01ff"


def test_unsupported_key_type_and_charset_are_refused():
    with pytest.raises(archive.ArchiveError, match="not supported"):
        archive.key_type_from_column(column("float", "float"))
    with pytest.raises(archive.ArchiveError, match="character set ucs2 is not supported"):
        archive.key_type_from_column(column("varchar", "varchar(5)", 5, "ucs2"))


def test_batches_are_numbered_and_record_where_they_end(tmp_path):
    path = write(tmp_path, b"id\n" + b"".join(b"%d\n" % i for i in range(1, 8)))
    blocks = archive.key_blocks(path, CSV, INT_KEY)
    batches = list(archive.iter_batches(blocks, 3))
    assert [b.number for b in batches] == [1, 2, 3]
    assert [b.keys for b in batches] == [(1, 2, 3), (4, 5, 6), (7,)]
    assert batches[0].end_line == 4
    # resuming from a stored offset yields exactly the keys after it
    start = (batches[0].end_offset, batches[0].end_line)
    rest = archive.key_blocks(path, CSV, INT_KEY, start=start)
    assert [b.keys for b in archive.iter_batches(rest, 3, 2)] == [(4, 5, 6), (7,)]


def test_batches_resume_by_count_across_blocks(tmp_path):
    path = write(tmp_path, b"id\n1\n\n2\n3\n4\n")
    resumed = archive.iter_batches(archive.key_blocks(path, CSV, INT_KEY), 2, 2, skip=2)
    assert [(b.number, b.keys, b.end_line) for b in resumed] == [(2, (3, 4), 6)]
    big = write(tmp_path, b"id\n" + b"".join(b"%d\n" % i for i in range(1, 50_001)), "big.csv")
    blocks = list(archive.key_blocks(big, CSV, INT_KEY))
    assert len(blocks) > 3, "the test needs several blocks"
    batches = list(archive.iter_batches(blocks, 1000, 31, skip=30_000))
    assert [b.number for b in batches] == list(range(31, 51))
    assert batches[0].keys[0] == 30_001 and batches[-1].keys[-1] == 50_000
    offset = big.read_bytes().index(b"\n30000\n") + len(b"\n30000\n")
    assert (batches[0].end_line, batches[1].end_line) == (31_001, 32_001)  # the header is line 1
    assert archive.iter_batches(blocks, 1000, 30, skip=29_000).__next__().end_offset == offset


def test_hash_file_identifies_content(tmp_path):
    a = archive.hash_file(write(tmp_path, b"id\n1\n", "a.csv"))
    b = archive.hash_file(write(tmp_path, b"id\n2\n", "b.csv"))
    assert a.size == 5 and len(a.sha256) == 64 and a.sha256 != b.sha256


def test_a_vanished_file_is_a_rejection_not_a_failure(tmp_path):
    with pytest.raises(archive.RejectedFile, match=r"gone\.csv: cannot read"):
        archive.hash_file(tmp_path / "gone.csv")


def test_files_are_listed_in_name_order(tmp_path):
    for name in ("b.csv", "a.csv", "c.txt", "10.csv"):
        (tmp_path / name).write_text("id\n")
    (tmp_path / "dir.csv").mkdir()
    assert [p.name for p in archive.list_csv_files(tmp_path, "*.csv")] == ["10.csv", "a.csv", "b.csv"]


def test_two_files_with_one_name_are_a_config_error(tmp_path):
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "keys.csv").write_text("id\n1\n")
    with pytest.raises(archive.ConfigError, match=r"\[archive\] csv_pattern: .* two files named 'keys.csv'"):
        archive.list_csv_files(tmp_path, "*/keys.csv")


def test_file_names_that_are_not_utf8_are_spotted(tmp_path):
    path = tmp_path / b"caf\xe9.csv".decode("utf-8", "surrogateescape")
    path.write_text("id\n1\n")
    assert not archive.has_utf8_name(path)
    assert archive.display_name(path) == "caf\\xe9.csv"
    assert archive.has_utf8_name(tmp_path / "café.csv")


def test_memory_does_not_grow_with_file_size(tmp_path):
    """Streaming: iterating a large file keeps only one batch alive."""
    path = tmp_path / "big.csv"
    with open(path, "w") as handle:
        handle.write("id\n")
        for i in range(1, 300_001):
            handle.write(f"{i}\n")
    tracemalloc.start()
    count = sum(len(b.keys) for b in archive.iter_batches(archive.key_blocks(path, CSV, INT_KEY), 1000))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == 300_000
    assert peak < 2_000_000, f"peak {peak} bytes while streaming 300k keys"


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_records_without_quotes_split_exactly_as_the_field_pattern_does(delimiter):
    # split_record takes a str.split shortcut when a record has no quote: it must agree with
    # the field pattern (which handles quotes) on every quote-free record.
    pattern, rng = archive.field_pattern(delimiter), random.Random(7)
    for _ in range(5000):
        pieces = ["a", " ", delimiter, "é", "x y", "\u00a0", "\r"]
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 9)))
        fields, pos = [], 0
        while True:
            match = pattern.match(text, pos)
            assert match is not None
            fields.append((match.group(4), archive.BARE))
            pos = match.end() + 1
            if match.end() >= len(text):
                break
        assert archive.split_record(text, pattern, delimiter) == fields, text


def test_validation_ticks_at_least_every_block_of_bytes_however_wide_the_lines(tmp_path):
    # A heartbeat may follow each tick; lines of 20,000 fields must not stretch the gap between
    # two ticks to 256 such lines (seconds of parsing, longer than the session's wait_timeout).
    path = write(tmp_path, b"id" + b"," * 20_000 + b"\n" + b"".join(b"%d" % n + b"," * 20_000 + b"\n"
                                                                    for n in range(1, 301)))
    ticks = []
    assert archive.count_keys(path, CSV, INT_KEY, lambda: ticks.append(1)) == 300
    assert len(ticks) >= 300  # each line is more than KEY_BLOCK_BYTES: a tick after every one


def parsing_seconds(lines: list[bytes]) -> float:
    """This process's CPU time to read every record of `lines` (or up to its rejection)."""
    started = time.process_time()
    with contextlib.suppress(archive.RejectedFile):
        for _ in archive.iter_records(iter(lines), "export.csv", ","):
            pass
    return time.process_time() - started


def test_an_unclosed_quote_costs_no_more_than_reading_a_well_formed_file():
    """Found by a red team: An unclosed quote made iter_records accumulate the rest of the file in
    `pending` and count its quotes again for every line: quadratic (150k lines ~30 s, 3M lines
    hours), with no heartbeat meanwhile, so the run's lease ran out while it was still alive.
    Measured against the same number of well-formed lines, in CPU time: a busy machine slows both.
    The quadratic reading took about 150 times as long; a linear one takes 0.4 times as long
    plainly and up to 2.2 times under coverage's tracer (CI measured 1.85 s against 0.86 s), so
    the bound is 4 times."""
    rows = [f"{n},ok\n".encode() for n in range(2, 150_000)]
    malformed = parsing_seconds([b"id,comment\n", b'1,O"Brien\n', *rows])
    well_formed = parsing_seconds([b"id,comment\n", b"1,OBrien\n", *rows])
    assert malformed < 4 * well_formed + 0.1, (malformed, well_formed)


# --------------------------------------------------------------------------- whole files in a real run

def test_a_stray_quote_in_a_large_file_is_rejected_naming_its_line(db, tmp_path):
    config, _ = make_job(db, tmp_path, range(1, 11), {"ids.csv": list(range(1, 11))})
    with open(tmp_path / "csv" / "export.csv", "w") as handle:
        handle.write('id,comment\n1,O"Brien\n')
        handle.writelines(f"{n},ok\n" for n in range(2, 150_000))
    result = run_cli(config, timeout=300)
    assert result.returncode == 4, (result.stdout, result.stderr)
    assert "export.csv line 2" in result.stderr


def test_validating_a_file_of_wide_lines_keeps_the_session_and_lease_alive(db, tmp_path):
    """Found by a red team: count_keys() heartbeats every 50,000 keys, not every so many seconds: a
    valid file of 3,000 lines of 20,000 fields takes ~25 s to validate with no heartbeat, longer
    than the session's wait_timeout (lock_lease + lock_wait_timeout = 13 s here; 130 s by default),
    so the server drops the session and every run FAILS with error 2013 before the file's first
    batch (its lease has expired too, so another run could take over meanwhile)."""
    config, _ = make_job(db, tmp_path, range(1, 3001), {}, archive__batch_size=300,
                         archive__lock_wait_timeout=1, archive__lock_lease="12s")
    with open(tmp_path / "csv" / "wide.csv", "w") as handle:
        handle.write("id" + "," * 20_000 + "\n")
        handle.writelines(f"{n}" + "," * 20_000 + "\n" for n in range(1, 3001))
    result = run_cli(config, timeout=600)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert db.count("rewards") == 0
