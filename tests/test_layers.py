"""The import graph: the pipeline's stages in order, nothing importing upwards, no cycles, and
a model package that imports nothing from the app."""
from __future__ import annotations

import ast
from pathlib import Path

from .conftest import REPO

# Lowest first. A module may import from its own layer or a lower one, never a higher one.
LAYERS = [
    ["movieid.models"],                                              # model code: usable on its own
    ["movieid", "movieid.errors", "movieid.records"],                # the version; records that flow between stages
    ["movieid.config", "movieid.files", "movieid.progress", "movieid.stop_signals"],
    ["movieid.video", "movieid.faces", "movieid.workers"],
    ["movieid.shots", "movieid.keyframes", "movieid.cast", "movieid.speech", "movieid.subtitles"],
    ["movieid.scan", "movieid.tracks"],                              # the decoding pass; faces into tracks
    ["movieid.face_stage", "movieid.identity"],                      # faces of shots; who is who
    ["movieid.windows"],
    ["movieid.engines"],
    ["movieid.annotation"],
    ["movieid.describe", "movieid.exports", "movieid.report"],
    ["movieid.writers"],
    ["movieid.pipeline", "movieid.filmmaker", "movieid.samples", "movieid.training", "movieid.evaluation"],
    ["movieid.batch", "movieid.cast_suggest", "movieid.archive"],   # the batch keeps the archive index
    ["movieid.cli", "movieid.__main__"],
]
ROOTS = {"movieid": REPO / "movieid", "movieid.cli": REPO / "cli", "movieid.models": REPO / "models"}


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in ROOTS.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            name = ".".join([package, *parts])
            if name.startswith("movieid.") and name.split(".")[1] in ("cli", "models") and package == "movieid":
                continue
            found[name] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules ``name`` imports (at any depth of its code)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def layer(name: str) -> int:
    """The layer of the longest prefix of ``name`` that LAYERS lists."""
    matches = [(len(prefix), index) for index, group in enumerate(LAYERS) for prefix in group
               if name == prefix or (name.startswith(prefix + ".") and prefix != "movieid")]
    if matches:
        return max(matches)[1]
    raise AssertionError(f"{name} has no layer in LAYERS")


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def test_no_module_imports_a_higher_layer():
    upward = [f"{a} -> {b}" for a, targets in graph().items() for b in targets if layer(b) > layer(a)]
    assert not upward, upward


def test_the_model_package_imports_nothing_from_the_app():
    leaks = [f"{a} -> {b}" for a, targets in graph().items() if a.startswith("movieid.models")
             for b in targets if not b.startswith("movieid.models")]
    assert not leaks, leaks


def test_there_are_no_import_cycles():
    g = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(g[node]):
            # a package and its own modules import each other by design (``__init__`` re-exports)
            if nxt.startswith(node + ".") or node.startswith(nxt + "."):
                continue
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt] if nxt in path else path + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(g):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles
