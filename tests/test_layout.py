"""archive.py's shape: its sections are real boundaries, and its map names the path of a run.

archive.py stays one hand-written file; what keeps it readable is checked here. Every top-level
definition may use, in code (annotations are text, and do not count), only what its own section
defines above it and what earlier sections define: the file reads bottom-up, and a section never
reaches forward. The map at the top must name every function on the path of a run.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import archive

SOURCE = Path(archive.__file__).read_text()
TREE = ast.parse(SOURCE)
BANNER = re.compile(r"^# -{75} (.+)$", re.M)


@dataclass(frozen=True)
class Unit:
    """A top-level definition: its name, its section's number and name, and its node."""

    name: str
    section: int
    section_name: str
    node: ast.stmt


def sections() -> list[tuple[int, str]]:
    """(first line, name) of each section banner, in order."""
    return [(SOURCE.count("\n", 0, m.start()) + 1, m.group(1)) for m in BANNER.finditer(SOURCE)]


def units() -> list[Unit]:
    """Every function, class and assignment at the top of archive.py, after the first banner."""
    banners = sections()
    found = []
    for node in TREE.body:
        targets = getattr(node, "targets", [getattr(node, "target", None)])
        names = [node.name] if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else [
            t.id for t in targets if isinstance(t, ast.Name)]
        index = sum(1 for line, _ in banners if line <= node.lineno) - 1
        if index >= 0:
            found += [Unit(name, index, banners[index][1], node) for name in names]
    return found


def loaded_names(node: ast.AST) -> Iterator[tuple[str, int]]:
    """(name, line) of every name a definition loads when it runs; annotations left out."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        for child in [*node.decorator_list, *node.args.defaults, *filter(None, node.args.kw_defaults),
                      *node.body]:
            yield from loaded_names(child)
        return
    if isinstance(node, ast.AnnAssign):
        yield from loaded_names(node.target)
        if node.value is not None:
            yield from loaded_names(node.value)
        return
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
        yield node.id, node.lineno
    for child in ast.iter_child_nodes(node):
        yield from loaded_names(child)


def test_a_section_uses_only_its_own_and_earlier_sections_and_defines_before_it_uses():
    defined = {u.name: u for u in units()}
    assert len(defined) > 300 and len(sections()) > 20
    forward, upward = [], []
    for unit in units():
        for name, line in loaded_names(unit.node):
            target = defined.get(name)
            if target is None or target.name == unit.name:
                continue
            if target.section > unit.section:
                forward.append(f"{unit.name} ({unit.section_name}) uses {name} ({target.section_name}), "
                               f"line {line}")
            elif target.node.lineno > unit.node.lineno:
                upward.append(f"{unit.name} uses {name} defined below it in {unit.section_name}, line {line}")
    assert not forward, "a section reaches into a later one:\n" + "\n".join(forward)
    assert not upward, "within a section, define before use (the file reads bottom-up):\n" + "\n".join(upward)


def test_the_layering_check_sees_a_forward_reference():
    """The check itself is not blind: a name used from a later section is found."""
    source = "def early():\n    return late()\n"
    node = ast.parse(source).body[0]
    assert ("late", 2) in list(loaded_names(node))
    annotated = ast.parse("def f(x: Later) -> Later:\n    y: Later = 1\n    return y\n").body[0]
    assert "Later" not in {name for name, _ in loaded_names(annotated)}  # annotations are text


MAP = archive.__doc__.split("How a run flows")[1].split("Sections, in this order:")[0]
WALKED = ("run", "one file", "one batch")  # the sections whose functions make up a run's path


def test_the_map_names_every_function_on_the_path_of_a_run():
    """From execute_run, every function it calls (and they call, ...) in the run, one-file and
    one-batch sections is named in the map, so a newcomer can follow a run from the top."""
    functions = {u.name: u for u in units()
                 if isinstance(u.node, ast.FunctionDef) and u.section_name in WALKED}
    path, todo = set(), ["execute_run", "run", "open_run"]
    while todo:
        name = todo.pop()
        if name in path:
            continue
        path.add(name)
        todo += [used for used, _ in loaded_names(functions[name].node) if used in functions]
    assert len(path) > 15, sorted(path)
    missing = sorted(name for name in path if not re.search(rf"\b{name}\b", MAP))
    assert not missing, f"on the path of a run but not in the map: {missing}"


def test_the_map_says_where_each_concern_lives():
    for concern in ("resume lives", "the run lock lives", "the tables are checked", "conflicts are",
                    "the destination mode lives", "Galera lives", "exit codes live"):
        assert f"Where {concern}:" in MAP, concern
    for landmark in ("the batch's one commit", "Tracking.committed_batch", "Controls.before_batch",
                     "retry_file", "end_run", "retry_transaction is called by"):
        assert landmark in MAP, landmark


def test_every_section_is_a_readable_size():
    banners = sections() + [(SOURCE.count("\n") + 1, "end")]
    sizes = {name: end - start for (start, name), (end, _) in zip(banners, banners[1:])}
    too_big = {name: n for name, n in sizes.items() if n > 360 and name != "configuration"}
    assert not too_big, f"sections over about 350 lines: {too_big}"


def test_no_class_is_over_about_350_lines():
    lengths = {n.name: (n.end_lineno or n.lineno) - n.lineno + 1
               for n in TREE.body if isinstance(n, ast.ClassDef)}
    big = {name: n for name, n in lengths.items() if n > 360}
    assert not big, f"classes over about 350 lines: {big}"
