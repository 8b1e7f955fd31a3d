"""The package's layers: a module may import its own layer and those below, never one above.

Every import is checked, including those inside functions (read from the source's syntax
tree, relative imports resolved), so a cycle cannot hide in a lazy import.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ffpt_ase"

#: bottom to top; a module belongs to the longest prefix listed
LAYERS = [
    ("utilities", ["ffpt_ase.files", "ffpt_ase.progress", "ffpt_ase.runtime",
                   "ffpt_ase.runfolder", "ffpt_ase.settings", "ffpt_ase.pretrained",
                   "ffpt_ase.models"]),
    ("data", ["ffpt_ase.data"]),
    ("models and teachers", ["ffpt_ase.model", "ffpt_ase.forcefields", "ffpt_ase.abinitio"]),
    ("calculator, sampling, training", ["ffpt_ase.calculators", "ffpt_ase.sampling",
                                        "ffpt_ase.training"]),
    ("simulation drivers", ["ffpt_ase.simulate"]),
    ("analysis", ["ffpt_ase.analysis"]),
    ("applications", ["ffpt_ase.applications"]),
    ("command line", ["ffpt_ase.cli"]),
]


def layer_of(module: str):
    best = None
    for rank, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and \
                    (best is None or len(p) > len(best[1])):
                best = (rank, p)
    return None if best is None else best[0]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, name: str | None = None) -> list:
    """``(line, absolute module)`` of every ffpt_ase import in the file (module ``name``,
    by default from its place in the package), at any depth."""
    tree = ast.parse(path.read_text())
    name = name or module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("ffpt_ase")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("ffpt_ase"):
                # `from . import x` and `from .pkg import mod` name modules too
                found += [(node.lineno, f"{target}.{a.name}") if layer_of(f"{target}.{a.name}")
                          is not None and not node.module else (node.lineno, target)
                          for a in node.names]
    return found


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if p != PACKAGE / "__init__.py")


def test_every_module_has_a_layer():
    assert [module_name(p) for p in SOURCES if layer_of(module_name(p)) is None] == []


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_layer_above_its_own(path):
    own = layer_of(module_name(path))
    upward = [f"line {line}: {target} ({LAYERS[layer_of(target)][0]})"
              for line, target in imports_of(path)
              if layer_of(target) is not None and layer_of(target) > own]
    assert upward == [], f"{module_name(path)} ({LAYERS[own][0]}) imports upward: {upward}"


def test_the_checker_sees_imports_inside_functions(tmp_path):
    """The check is not vacuous: an upward import hidden in a function is found."""
    fake = tmp_path / "probe.py"
    fake.write_text("def f():\n    from ..analysis.plots import pyplot\n    return pyplot\n")
    found = imports_of(fake, "ffpt_ase.training.probe")
    assert found == [(2, "ffpt_ase.analysis.plots")]
    assert layer_of("ffpt_ase.analysis.plots") > layer_of("ffpt_ase.training.trainer")
