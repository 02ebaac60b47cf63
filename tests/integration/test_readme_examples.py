"""Every Python example in the README runs as written (in a temporary folder, one torch thread)
and prints what its comments say it prints."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import pytest
from _threads import one_thread  # noqa: F401 (an autouse fixture: one torch thread)

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_python_examples() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example_runs(code: str, tmp_path: Path) -> None:
    here = os.getcwd()
    out = io.StringIO()
    try:
        os.chdir(tmp_path)
        with contextlib.redirect_stdout(out):
            exec(compile(code, str(README), "exec"), {"__name__": "readme"})
    finally:
        os.chdir(here)
    assert out.getvalue().strip(), "every example prints its result"
