"""The layout the README draws, checked on the source: Hydra and OmegaConf only in the app, at
most six modules directly under ``ttamer/``, functions short enough to read at once, and every
workload package's ``__init__`` free of torch."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCES = sorted([*(REPO / "ttamer").rglob("*.py"), *(REPO / "scripts").glob("*.py")])
MAX_FUNCTION_LINES = 60


def _imported_roots(tree: ast.AST) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_hydra_and_omegaconf_are_imported_by_the_app_only() -> None:
    offenders = [
        str(p.relative_to(REPO))
        for p in SOURCES
        if p.relative_to(REPO).parts[:2] != ("ttamer", "app")
        and _imported_roots(ast.parse(p.read_text())) & {"hydra", "omegaconf"}
    ]
    assert offenders == []


def test_at_most_six_modules_directly_under_the_package() -> None:
    modules = sorted(p.name for p in (REPO / "ttamer").glob("*.py"))
    assert len(modules) <= 6, modules


def test_every_function_is_at_most_sixty_lines() -> None:
    long = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({lines} lines)")
    assert long == []


def test_workload_discovery_imports_no_torch() -> None:
    """Listing the workloads (the app does it for every command) imports configs only."""
    code = (
        "import json, sys; from ttamer.workloads.base import workloads; "
        "print(json.dumps([sorted(workloads()), 'torch' in sys.modules, 'transformers' in sys.modules]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    names, torch, transformers = json.loads(proc.stdout)
    assert names == ["digits", "fashion_mnist", "frugalml", "glue_hf", "imagenet_timm", "sst2_minilm"]
    assert not torch and not transformers
