"""The source tree reads as the flow: stage packages that import only downwards, no import cycle
(imports inside functions counted), no module over 500 lines, at most ten modules directly in
src/detcheck, no function of more than six positional parameters (Typer commands aside), and
every package saying what it owns and what it may import. Read from the source (ast), not
from an import of it, so a cycle hidden in a function body is found too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "detcheck"

# Lower stages first; a module may import its own stage's and lower ones, never a higher one.
# Within a stage of several packages only the vocabulary and the edges mix (send and analysis
# do not know each other).
STAGES = [
    ("detcheck", "detcheck.errors", "detcheck.spec", "detcheck.config", "detcheck.plan",
     "detcheck.text", "detcheck.shapes", "detcheck.checks",
     "detcheck.recordings"),  # the vocabulary
    ("detcheck.store",),
    ("detcheck.send", "detcheck.analysis"),
    ("detcheck.render",),
    ("detcheck.commands",),
    ("detcheck.cli", "detcheck.api", "detcheck.testing", "detcheck.pytest_plugin",
     "detcheck.__main__"),  # the edges
]  # fmt: skip
MIXING = {0, len(STAGES) - 1}


def _modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> set[str]:
    """The detcheck modules `module` imports anywhere in its body (functions included)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package up
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, *([base] if base else [])])
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names
            ]
        else:
            continue
        found |= {_resolve(n) for n in names if n.split(".")[0] == "detcheck"}
    found.discard(None)
    found.discard(module)
    return found


GRAPH = {m: imports_of(m) for m in MODULES}


def _stage(module: str) -> tuple[int, str]:
    best = (-1, "")
    for i, group in enumerate(STAGES):
        for name in group:
            if (module == name or module.startswith(name + ".")) and len(name) > len(best[1]):
                best = (i, name)
    assert best[0] >= 0, f"{module} belongs to no stage: add it to STAGES"
    return best


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_counting_imports_inside_functions():
    assert len(MODULES) > 40  # the whole tree was read
    assert "detcheck.commands.planning" in GRAPH["detcheck.commands.flip"]  # a top-level import
    assert "detcheck.send.online" in GRAPH["detcheck.commands.flip"]  # one inside a function
    assert cycles(GRAPH) == []


def test_lower_stages_never_import_higher_ones():
    wrong = []
    for module, imported in GRAPH.items():
        mine, my_group = _stage(module)
        for other in imported:
            theirs, their_group = _stage(other)
            if theirs > mine or (theirs == mine and their_group != my_group and mine not in MIXING):
                wrong.append(f"{module} -> {other}")
    assert wrong == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_over_500_lines(module):
    lines = MODULES[module].read_text().count("\n")
    assert lines <= 500, f"{module}: {lines} lines; split it by reason to change"


def test_at_most_ten_modules_directly_in_the_package():
    top = sorted(p.name for p in SRC.glob("*.py"))
    assert len(top) <= 10, top


def _is_typer_command(node: ast.FunctionDef) -> bool:
    """Decorated with app.command(...): its parameters are its command-line options."""
    for d in node.decorator_list:
        call = d.func if isinstance(d, ast.Call) else d
        if isinstance(call, ast.Attribute) and call.attr in ("command", "callback"):
            return True
    return False


def test_no_function_takes_more_than_six_positional_parameters():
    wide = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            args = node.args.posonlyargs + node.args.args
            positional = [a.arg for a in args if a.arg not in ("self", "cls")]
            if len(positional) > 6 and not _is_typer_command(node):
                wide.append(f"{module}.{node.name}: {len(positional)}")
    assert wide == []


@pytest.mark.parametrize(
    "package", sorted(m for m, p in MODULES.items() if p.name == "__init__.py")
)
def test_every_package_says_what_it_owns_and_what_it_may_import(package):
    doc = ast.get_docstring(ast.parse(MODULES[package].read_text())) or ""
    if package == "detcheck":
        assert doc, "the package's own docstring"
        return
    assert len(doc) > 200 and "may import" in doc.lower(), f"{package}: {doc[:80]!r}"
    # every module it lists by file name exists
    for word in doc.replace("(", " ").replace(",", " ").replace(":", " ").split():
        if word.endswith(".py"):
            assert (MODULES[package].parent / word).is_file(), f"{package} names {word}"
