"""The README, schema.sql, config.ini.example and --help stay in step with the code."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import archive

REPO = Path(archive.__file__).resolve().parent
README = (REPO / "README.md").read_text()


def test_every_config_key_is_documented_in_the_readme():
    for option in archive.OPTIONS:
        assert f"| `[{option.section}] {option.key}` |" in README, f"[{option.section}] {option.key}"


def test_every_child_key_is_documented_and_in_the_example_config():
    example = (REPO / "config.ini.example").read_text()
    for option in archive.CHILD_OPTIONS:
        assert f"| `[child NAME] {option.key}` |" in README, option.key
        assert re.search(rf"^; {option.key} =", example, re.M), option.key


def test_every_config_key_is_in_the_example_config():
    example = (REPO / "config.ini.example").read_text()
    for option in archive.OPTIONS:
        assert re.search(rf"^;? ?{option.key} =", example, re.M), option.key


def test_every_command_line_option_is_documented():
    parser = archive.build_parser()
    for action in parser._actions:
        for flag in action.option_strings:
            if flag not in ("-h", "--help"):
                assert f"`{flag}" in README, flag
                assert action.help and action.help.endswith("."), f"{flag} help is not a sentence"


def test_exit_codes_agree_between_code_docstring_and_readme():
    constants = {value for name, value in vars(archive).items() if name.startswith("EXIT_")}
    assert constants == set(range(7))
    doc = archive.__doc__.split("Exit codes:")[1]
    doc_rows = {int(c): " ".join(t.split())
                for c, t in re.findall(r"^    (\d)  (.*?)(?=^    \d  |\Z)", doc, re.M | re.S)}
    section = README.split("## Exit codes")[1].split("\n## ")[0]
    readme_rows = {int(c): t for c, t in re.findall(r"^\| (\d) \|(.+)$", section, re.M)}
    assert sorted(doc_rows) == sorted(readme_rows) == list(range(7))
    for code, word in ((1, "FAILED"), (2, "configuration"), (3, "conflicts"), (4, "rejected"),
                       (5, "already running"), (6, "INTERRUPTED")):
        assert word in doc_rows[code] and word in readme_rows[code], (code, word)
    assert "exit codes: 0 ok, 1 failed, 2 bad usage or config, 3 duplicate conflicts kept" in archive.EPILOG


def test_schema_sql_is_the_ddl_the_script_runs():
    schema = (REPO / "schema.sql").read_text()
    statements = [s.strip() for s in re.sub(r"^--.*$", "", schema, flags=re.M).split(";") if s.strip()]
    assert statements == [ddl.strip() for ddl in archive.TRACKING_DDL]


def test_readme_quick_start_commands_exist():
    dev_sh = (REPO / "dev.sh").read_text()
    makefile = (REPO / "Makefile").read_text()
    for command in ("demo", "test", "ci"):
        assert f"./dev.sh {command}" in README
        assert re.search(rf"^  [a-z0-9|-]*\b{command}\b[a-z0-9|-]*\)", dev_sh, re.M), command
        assert re.search(rf"^{command}: ; \$\(DEV\) {command}\b", makefile, re.M), command
    assert "./dev.sh ci" in (REPO / ".ci" / "run").read_text()


def test_module_layout_follows_the_house_order():
    source = (REPO / "archive.py").read_text()
    order = ["class ArchiveError", "class Config", "def load_config", "def iter_csv_keys",
             "def key_condition", "def summarize_log", "class Database", "def run(", "def main(",
             'if __name__ == "__main__":']
    positions = [source.index(marker) for marker in order]
    assert positions == sorted(positions)


def test_the_map_names_every_section_in_order():
    source = (REPO / "archive.py").read_text()
    markers = re.findall(r"^# -{75} (.+)$", source, re.M)
    listed = archive.__doc__.split("Sections, in this order:")[1].split("Exit codes:")[0]
    names = [n.strip() for n in re.sub(r"\([^)]*\)", ",", listed).replace("\n", ",").split(",") if n.strip()]
    assert names == markers


def test_the_map_names_functions_that_exist():
    flow = archive.__doc__.split("How a run flows")[1].split("Sections, in this order:")[0]
    names = re.findall(r"\b[A-Z][A-Za-z]+\.[a-z_]+\b|\b[a-z]+(?:_[a-z]+)+\b|\b(?:main|dispatch|run)\b", flow)
    assert len(names) > 20
    for name in names:
        owner, _, attribute = name.partition(".")
        assert hasattr(archive, owner), name
        assert not attribute or hasattr(getattr(archive, owner), attribute), name


def test_the_readme_summary_example_is_what_the_code_prints():
    readme = (REPO / "README.md").read_text()
    example = next(line for line in readme.splitlines() if line.startswith("SUMMARY: COMPLETED | run"))
    printed = archive.summary_line(archive.RunState(run_id=42, files_total=2), "COMPLETED")
    assert re.sub(r"[0-9][0-9,.]*", "N", example) == re.sub(r"[0-9][0-9,.]*", "N", printed)


def test_the_readme_benchmark_commands_are_ones_bench_py_accepts():
    sys.path.insert(0, str(REPO / "bench"))
    import bench  # the benchmark is not a package; only this test needs it

    readme = (REPO / "README.md").read_text()
    commands = [line for line in readme.splitlines() if line.startswith(".venv/bin/python bench/bench.py")]
    assert len(commands) >= 8, commands
    for command in commands:
        bench.parse_args(shlex.split(command)[2:])  # argparse exits (failing the test) on a bad option


def test_the_readme_lists_every_test_file_and_only_those():
    development = README.split("\n## Development\n", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`(?:tests/)?(test_\w+\.py)`", development))
    present = {path.name for path in (REPO / "tests").glob("test_*.py")}
    assert sorted(present - listed) == [], "test files the README's Development section does not list"
    assert sorted(listed - present) == [], "files the README's Development section lists that do not exist"


def test_help_shows_how_the_program_was_started_and_a_cron_line_with_max_runtime():
    script = archive.build_parser("archive.py").format_help()
    cron = "15 1 * * *  cd /srv/archive && .venv/bin/python archive.py config.ini -q --max-runtime 4h"
    assert cron in script
    installed = archive.build_parser("/usr/local/bin/archive-py").format_help()
    assert "python archive.py" not in installed and ".venv/bin/python" not in installed
    assert "  archive-py config.ini --dry-run" in installed
    assert "15 1 * * *  archive-py config.ini -q --max-runtime 4h" in installed
    assert installed.startswith("usage: archive-py ")


def test_the_readmes_file_info_example_has_every_field_the_log_writes():
    example = next(line for line in README.splitlines() if line.startswith("FILE_INFO: "))
    fields = [part.split(":")[0] for part in example.split(" | ")]
    scan = archive.FileScan("f.csv", 1, "0" * 64, 1)
    written = archive.file_info_line(scan, 10, "key id from column 'id', delimiter ','", "j")
    assert fields == [part.split(":")[0] for part in written.split(" | ")]
