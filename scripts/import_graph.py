"""coconut_lm's import graph, per folder; exit 1 if a folder imports from one above it, or on any import cycle.

    python scripts/import_graph.py            # the folders, what each imports, and the verdict
    python scripts/import_graph.py --modules  # the same, with every module's imports

Every import counts, lazy ones inside functions included: they are dependencies all the same. A
"unit" is a folder of the package (`model/`) or a module at its top (`cli.py`). `LAYERS` lists the
units from the bottom up; a unit may import only from units below it. `EXCEPTIONS` names the few
module-to-module imports that climb, each with the reason it is allowed for now; an exception that
no longer occurs is reported too, so the list cannot outlive the code it excuses.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Bottom to top: the data flow of the paper (task -> examples -> method layout -> batch -> model passes ->
# loss or generation -> metrics), then the commands that drive it.
LAYERS = [
    "errors",      # CoconutError: one-line errors for bad input
    "coconut_lm",  # the package itself (__init__: __version__)
    "argtypes",    # argparse value types shared by the commands and the task generators
    "tasks",       # the tasks: generators, converters, the common example format, answer extraction
    "recipe",      # the methods (layout at stage k, decoding), the curriculum, the special tokens
    "data",        # tokenizers, the epoch pipeline, batching
    "model",       # CoconutLM: multi-pass forward, generation, backbones, KV buffer, folder format
    "eval",        # evaluation: generate, extract, score; command output folders
    "training",    # config, build, the trainer, checkpoints, distributed, the run folder
    "checkpoint_eval",  # the eval command: load a checkpoint, score it (eval/), write the records
    "bench",       # speed and memory benchmarks
    "analysis",    # the paper's analysis: path categories, latent search, probes, report, plots
    "demo",        # the end-to-end demo
    "cli",         # the coconut-lm command
]

# (importer, imported) -> why the upward import is allowed for now.
EXCEPTIONS: dict[tuple[str, str], str] = {}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str]) -> set[str]:
    """The coconut_lm modules `path` imports (a `from package import name` of a submodule counts as it)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        if not any(n.startswith("coconut_lm") for n in names):
            continue
        for n in names:
            if n in modules:
                out.add(n)
    return out


def graph() -> dict[str, set[str]]:
    """Module -> the coconut_lm modules it imports (not itself, not the bare package)."""
    files = sorted((SRC / "coconut_lm").rglob("*.py"))
    modules = {module_name(f) for f in files}
    return {module_name(f): imports(f, modules) - {module_name(f), "coconut_lm"} for f in files}


def unit(module: str) -> str:
    """The folder or top-level module that `module` belongs to: coconut_lm.model.coconut -> "model"."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def unit_graph(g: dict[str, set[str]], exceptions=EXCEPTIONS) -> dict[str, set[str]]:
    """Unit -> the other units it imports, the excepted imports left out."""
    out: dict[str, set[str]] = {}
    for a, deps in g.items():
        out.setdefault(unit(a), set())
        for b in deps:
            if unit(a) != unit(b) and (a, b) not in exceptions:
                out[unit(a)].add(unit(b))
    return out


def problems(g: dict[str, set[str]], layers=LAYERS, exceptions=EXCEPTIONS) -> list[str]:
    """Every breach of the rules, one line each: unknown units, upward imports, cycles, stale exceptions."""
    rank = {name: i for i, name in enumerate(layers)}
    out = [f"{u}: not in LAYERS (add it where it belongs)" for u in sorted({unit(m) for m in g} - set(rank))]
    for a in sorted(g):
        for b in sorted(g[a]):
            ua, ub = unit(a), unit(b)
            if ua in rank and ub in rank and rank[ub] > rank[ua] and (a, b) not in exceptions:
                out.append(f"upward import: {a} ({ua}) imports {b} ({ub}, a layer above)")
    out += [f"folder import cycle: {' <-> '.join(c)}" for c in cycles(unit_graph(g, exceptions))]
    out += [f"module import cycle: {' <-> '.join(c)}" for c in cycles(g)]
    out += [f"stale exception: {a} no longer imports {b}" for a, b in sorted(exceptions) if b not in g.get(a, ())]
    return out


def report(g: dict[str, set[str]], modules: bool = False) -> str:
    """The graph per unit, bottom layer first."""
    ug = unit_graph(g)
    rank = {name: i for i, name in enumerate(LAYERS)}
    lines = []
    for u in sorted(ug, key=lambda u: (rank.get(u, len(LAYERS)), u)):
        members = sorted(m for m in g if unit(m) == u)
        below = ", ".join(sorted(ug[u], key=lambda v: rank.get(v, len(LAYERS)))) or "-"
        name = f"{u}/" if any(m.count(".") > 1 for m in members) else "__init__.py" if u == "coconut_lm" else f"{u}.py"
        lines.append(f"{name:<14} imports {below}")
        if modules:
            for m in members:
                deps = ", ".join(d.removeprefix("coconut_lm.") for d in sorted(g[m])) or "-"
                lines.append(f"    {m.removeprefix('coconut_lm.')} -> {deps}")
    for (a, b), why in sorted(EXCEPTIONS.items()):
        lines.append(f"excepted: {a} -> {b}: {why}")
    return "\n".join(lines)


if __name__ == "__main__":
    g = graph()
    print(report(g, modules="--modules" in sys.argv[1:]))
    found = problems(g)
    for line in found:
        print(line)
    print(f"{len(found)} problem(s) among {len(g)} modules in {len(unit_graph(g))} folders and top-level modules")
    sys.exit(1 if found else 0)
