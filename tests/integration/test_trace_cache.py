"""The trace cache (README: experiments): reuse, rebuild of corrupt or foreign files, recompute, atomic
writes, one file per config."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ttamer.traces import cache
from ttamer.traces.cache import cache_path, cached_trace, config_key
from ttamer.traces.trace import Trace, load_trace, save_trace

CONFIG = {"name": "toy", "epochs": 3, "widths": [4, 8], "seed": 0}


def make_trace(seed: int = 0) -> Trace:
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(3), size=(40, 2))
    return Trace.build(
        labels=rng.integers(0, 3, 40),
        pred=probs.argmax(axis=2),
        conf=probs.max(axis=2),
        cost=[0.5, 1.5],
        stage_names=["exit1", "exit2"],
        cost_unit="ms",
        probs=probs,
        meta={"source": "test"},
    )


class Producer:
    """Counts its calls; each call returns a different trace (seeded by the call number)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> Trace:
        self.calls += 1
        return make_trace(self.calls)


def visible(folder: Path) -> list[Path]:
    """The cache folder's entries but its ``.locks`` folder."""
    return [p for p in folder.iterdir() if p.name != ".locks"]


def assert_same_arrays(a: Trace, b: Trace) -> None:
    for name in ("labels", "pred", "conf", "cost", "probs"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.stage_names == b.stage_names and a.cost_unit == b.cost_unit


def test_second_call_reuses_the_file(tmp_path: Path) -> None:
    produce = Producer()
    first, reused_first = cached_trace("toy", CONFIG, produce, tmp_path)
    second, reused_second = cached_trace("toy", dict(reversed(list(CONFIG.items()))), produce, tmp_path)
    assert (reused_first, reused_second) == (False, True)
    assert produce.calls == 1
    assert_same_arrays(first, second)
    assert_same_arrays(second, make_trace(1))
    assert second.meta["cache_key"] == config_key(CONFIG)
    assert second.meta["source"] == "test"
    assert [p.name for p in visible(tmp_path)] == [cache_path(tmp_path, "toy", CONFIG).name]


CORRUPTIONS: dict[str, Callable[[bytes], bytes]] = {
    "truncated_half": lambda b: b[: len(b) // 2],
    "truncated_tail": lambda b: b[:-40],
    "empty": lambda b: b"",
    "garbage": lambda b: bytes(range(256)) * 8,
    "flipped_byte": lambda b: b[:150] + bytes([b[150] ^ 0xFF]) + b[151:],
}


@pytest.mark.parametrize("corrupt", sorted(CORRUPTIONS))
def test_corrupt_file_is_rebuilt_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, corrupt: str
) -> None:
    produce = Producer()
    cached_trace("toy", CONFIG, produce, tmp_path)
    path = cache_path(tmp_path, "toy", CONFIG)
    path.write_bytes(CORRUPTIONS[corrupt](path.read_bytes()))
    with caplog.at_level(logging.WARNING, logger=cache.__name__):
        trace, reused = cached_trace("toy", CONFIG, produce, tmp_path)
    assert not reused and produce.calls == 2
    assert any("unreadable" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert_same_arrays(trace, make_trace(2))
    assert_same_arrays(load_trace(path), make_trace(2))  # the rebuilt file is valid again


def test_file_made_by_another_config_is_rebuilt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    produce = Producer()
    other = {**CONFIG, "epochs": 4}
    cached_trace("toy", other, produce, tmp_path)
    shutil.copyfile(cache_path(tmp_path, "toy", other), cache_path(tmp_path, "toy", CONFIG))
    with caplog.at_level(logging.WARNING, logger=cache.__name__):
        trace, reused = cached_trace("toy", CONFIG, produce, tmp_path)
    assert not reused and produce.calls == 2
    assert any("another config" in r.getMessage() for r in caplog.records)
    assert trace.meta["cache_key"] == config_key(CONFIG)
    assert load_trace(cache_path(tmp_path, "toy", CONFIG)).meta["cache_key"] == config_key(CONFIG)


def test_file_rewritten_with_other_valid_content_is_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Same key and config in the meta, other predictions: the content hash catches it."""
    produce = Producer()
    cached_trace("toy", CONFIG, produce, tmp_path)
    path = cache_path(tmp_path, "toy", CONFIG)
    kept = load_trace(path)
    forged = replace(kept, pred=kept.labels[:, None].repeat(kept.n_stages, axis=1))  # every stage right
    save_trace(forged, path)
    with caplog.at_level(logging.WARNING, logger=cache.__name__):
        trace, reused = cached_trace("toy", CONFIG, produce, tmp_path)
    assert not reused and produce.calls == 2
    assert any("content hash" in r.getMessage() for r in caplog.records)
    assert_same_arrays(trace, make_trace(2))
    assert cached_trace("toy", CONFIG, produce, tmp_path)[1]  # the rebuilt file is reused


def test_recompute_rebuilds(tmp_path: Path) -> None:
    produce = Producer()
    cached_trace("toy", CONFIG, produce, tmp_path)
    trace, reused = cached_trace("toy", CONFIG, produce, tmp_path, recompute=True)
    assert not reused and produce.calls == 2
    assert_same_arrays(trace, make_trace(2))
    again, reused = cached_trace("toy", CONFIG, produce, tmp_path)
    assert reused and produce.calls == 2
    assert_same_arrays(again, make_trace(2))


def test_different_configs_give_different_files(tmp_path: Path) -> None:
    produce = Producer()
    configs = [CONFIG, {**CONFIG, "seed": 1}, {**CONFIG, "widths": [4, 16]}]
    for config in configs:
        cached_trace("toy", config, produce, tmp_path)
    cached_trace("other", CONFIG, produce, tmp_path)
    assert produce.calls == 4
    names = sorted(p.name for p in visible(tmp_path))
    assert len(names) == 4
    assert names == sorted(
        cache_path(tmp_path, n, c).name for n, c in [*(("toy", c) for c in configs), ("other", CONFIG)]
    )
    assert len({config_key(c) for c in configs}) == 3


def test_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    produce = Producer()
    path = cache_path(tmp_path / "cache", "toy", CONFIG)
    # a write that fails at the final rename leaves neither the file nor a temporary file
    real_replace = os.replace

    def failing_replace(src: str, dst: str) -> None:
        assert Path(src).parent == path.parent and Path(src).exists() and not Path(dst).exists()
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        cached_trace("toy", CONFIG, produce, tmp_path / "cache")
    assert list(visible(path.parent)) == []
    monkeypatch.setattr(os, "replace", real_replace)
    cached_trace("toy", CONFIG, produce, tmp_path / "cache")
    assert [p.name for p in visible(path.parent)] == [path.name]  # no temporary file left over


def test_traces_of_an_older_format_are_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    produce = Producer()
    monkeypatch.setattr(cache, "TRACE_FORMAT", cache.TRACE_FORMAT - 1)
    old_key = config_key(CONFIG)
    cached_trace("toy", CONFIG, produce, tmp_path)
    monkeypatch.undo()
    assert config_key(CONFIG) != old_key  # the format is part of the key: a new file name
    trace, reused = cached_trace("toy", CONFIG, produce, tmp_path)
    assert not reused and produce.calls == 2
    assert trace.meta["trace_format"] == str(cache.TRACE_FORMAT)
    assert trace.meta["cache_key"] == config_key(CONFIG)
    assert len(list(visible(tmp_path))) == 2  # the old file is left alone, never read again


RACER = """
import sys, time
import numpy as np
from ttamer.traces.trace import Trace
from ttamer.traces.cache import cached_trace

def produce():
    with open(sys.argv[2], "a") as log:
        log.write("built\\n")
    time.sleep(1.0)  # long enough for the other job to arrive while this one builds
    return Trace.build([0, 1, 1], [[0, 1], [1, 1], [1, 0]], [[0.6, 0.7], [0.9, 0.8], [0.5, 0.9]], [1.0, 2.0])

trace, reused = cached_trace("race", {"x": 1}, produce, sys.argv[1])
print("reused" if reused else "built", trace.meta["content_sha256"])
"""


def test_two_jobs_racing_for_one_trace_build_it_once(tmp_path: Path) -> None:
    import subprocess
    import sys

    log = tmp_path / "builds.txt"
    cmd = [sys.executable, "-c", RACER, str(tmp_path / "cache"), str(log)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert log.read_text() == "built\n"  # one build, the other job waited and reused it
    assert sorted(o[0] for o in outs) == ["built", "reused"]
    assert outs[0][1] == outs[1][1]


def test_waiting_too_long_for_a_trace_names_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from filelock import FileLock

    monkeypatch.setenv("TTAMER_CACHE_LOCK_TIMEOUT", "0.3")
    path = cache_path(tmp_path, "toy", CONFIG)
    (tmp_path / ".locks").mkdir()
    held = FileLock(str(tmp_path / ".locks" / (path.name + ".lock")))
    with held, pytest.raises(TimeoutError, match=r"\.locks/toy-.*\.lock: another job is still building"):
        cached_trace("toy", CONFIG, Producer(), tmp_path)
