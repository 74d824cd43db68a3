"""No module imports a higher layer (the order drawn in README.md, from the shared DESIGN.md):
every ``import recforge.X`` / ``from recforge.X import ...`` in ``src/recforge``, at module level
or inside a function, goes to the same unit or a lower layer."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "recforge"

# Lowest first. A unit is a top-level module or package of recforge.
LAYERS: list[set[str]] = [
    {
        "_version",
        "choices",
        "ints",
        "features",
        "jagged",
        "layout",
        "outputs",
        "files",
        "precision",
        "kernels",
    },
    {"preprocess", "distributed"},
    {"data"},
    {"layers", "optim"},
    {"objectives", "metrics"},
    {"models"},
    {"trainers", "export", "retrieval", "torchrec", "datasets"},
    {"config"},
    {"runs"},
    {"bundle", "serve"},
    {"cli", "__main__", "__init__", "basic", "utils"},  # entry points and the Torch-RecHub paths
]
LEVEL = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(tree: ast.AST) -> list[str]:
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "recforge":  # from recforge import distributed
                out += [f"recforge.{a.name}" for a in node.names]
            elif node.module.startswith("recforge."):
                out.append(node.module)
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.startswith("recforge.")]
    return out


def test_every_unit_has_a_layer() -> None:
    units = {p.stem if p.is_file() else p.name for p in SRC.iterdir() if p.suffix == ".py" or p.is_dir()}
    units -= {"__pycache__"}
    assert units <= set(LEVEL), f"place these in LAYERS: {sorted(units - set(LEVEL))}"


def test_no_import_runs_back_up() -> None:
    upward = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        module = ".".join(p for p in rel.parts if p != "__init__")
        unit = _unit(module)
        for target in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            t = _unit(target)
            if t != unit and LEVEL[t] > LEVEL[unit]:
                upward.append(f"{path.relative_to(SRC)} ({unit}) imports {target} ({t})")
    assert not upward, "imports that run back up:\n" + "\n".join(upward)
