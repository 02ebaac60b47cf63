"""Fuzzing the command line with malformed files (hypothesis): chain and graph instances (JSON
and .npz, including corrupted bytes), traces, CSV imports. Every run must either succeed (exit
0) or refuse the input with exactly one line ``error: ...`` and exit 2: never a traceback, never
another exit status. Valid controls must succeed."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ttamer.cli import main
from ttamer.model.chain import Chain, save_chain
from ttamer.traces.trace import Trace, save_trace

# a numpy warning would be an extra line on the terminal: treat it as a failure
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning", "error::DeprecationWarning:numpy")

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)

VALID_CHAIN = {
    "losses": [[0.2, 0.4], [0.0, 0.5]],
    "initial": [0.5, 0.5],
    "transitions": [[[0.7, 0.3], [0.1, 0.9]]],
    "costs": [1.0, 0.1],
}
VALID_GRAPH = {
    "nodes": [{"losses": [0.3, 0.1]}, {"losses": [0.05]}, {"losses": [0.0, 0.2]}],
    "edges": [
        {"from": None, "to": 0, "cost": 0.01, "transition": [[0.5, 0.5]]},
        {"from": 0, "to": 1, "cost": 0.5, "transition": [[1.0], [1.0]]},
        {"from": 0, "to": 2, "cost": 0.3, "transition": [[0.9, 0.1], [0.2, 0.8]]},
    ],
}


def run_cli(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[int, str, str]:
    rc = main(args)
    out, err = capsys.readouterr()
    return rc, out, err


def assert_clean(rc: int, out: str, err: str) -> None:
    """Exit 0, or exit 2 with one ``error:`` line (and nothing else) on stderr."""
    assert rc in (0, 2), (rc, err)
    if rc == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in out + err


def mutate(doc: Any, path: list[Any], value: Any) -> Any:
    """``doc`` with the element at ``path`` (keys/indices, as far as they exist) replaced."""
    doc = json.loads(json.dumps(doc))
    node, parent, key = doc, None, None
    for step in path:
        if isinstance(node, dict) and node:
            key = list(node)[step % len(node)]
        elif isinstance(node, list) and node:
            key = step % len(node)
        else:
            break
        parent, node = node, node[key]
    if parent is None:
        return value
    parent[key] = value
    return doc


@pytest.mark.parametrize("doc", [VALID_CHAIN, VALID_GRAPH])
def test_valid_instances_solve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], doc: dict[str, Any]
) -> None:
    path = tmp_path / "ok.json"
    path.write_text(json.dumps(doc))
    for policy in ("recall", "no_recall"):
        rc, out, err = run_cli(capsys, ["solve", str(path), "--lam", "0.5", "--policy", policy])
        assert rc == 0, err
        assert math.isfinite(json.loads(out)["objective"])


@SETTINGS
@given(
    base=st.sampled_from([VALID_CHAIN, VALID_GRAPH]),
    path=st.lists(st.integers(0, 5), max_size=4),
    value=json_values,
)
def test_mutated_json_instances(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], base: dict[str, Any], path: list[int], value: Any
) -> None:
    file = tmp_path / "x.json"
    file.write_text(json.dumps(mutate(base, path, value)))
    assert_clean(*run_cli(capsys, ["solve", str(file), "--lam", "0.5"]))


@SETTINGS
@given(text=st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_arbitrary_text_as_an_instance(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> None:
    file = tmp_path / "x.json"
    file.write_bytes(text.encode("utf-8", "surrogatepass"))
    assert_clean(*run_cli(capsys, ["solve", str(file), "--lam", "0.5"]))


def _npz_bytes(**arrays: Any) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _valid_chain_npz(tmp_path: Path) -> bytes:
    chain = Chain.build(**{k: v for k, v in VALID_CHAIN.items()})
    save_chain(chain, tmp_path / "base.npz")
    return (tmp_path / "base.npz").read_bytes()


@SETTINGS
@given(
    cut=st.integers(0, 4000),
    flips=st.lists(st.tuples(st.integers(0, 4000), st.integers(1, 255)), max_size=4),
    mode=st.sampled_from(["truncate", "flip", "both"]),
)
def test_corrupted_npz_bytes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cut: int, flips: list[tuple[int, int]], mode: str
) -> None:
    data = bytearray(_valid_chain_npz(tmp_path))
    if mode in ("flip", "both"):
        for at, bits in flips:
            data[at % len(data)] ^= bits
    if mode in ("truncate", "both"):
        data = data[: cut % (len(data) + 1)]
    file = tmp_path / "x.npz"
    file.write_bytes(bytes(data))
    assert_clean(*run_cli(capsys, ["solve", str(file), "--lam", "0.5"]))


arrays = st.one_of(
    st.just(np.array([0.2, 0.4])),
    st.just(np.array(0.7)),
    st.just(np.array([True, False])),
    st.just(np.array(["a", "b"])),
    st.just(np.array([np.nan, 1.0])),
    st.just(np.array([[0.5, 0.5]])),
    st.just(np.zeros((2, 2, 2))),
    st.just(np.array([1, 2], dtype=np.int8)),
    st.just(np.array([], dtype=float)),
    st.just(np.array([1 + 2j])),
)
keys = st.sampled_from(
    ["losses_1", "losses_2", "initial", "transitions_2", "costs", "name", "losses_x", "node_0_losses",
     "node_x_losses", "edge_0_from", "edge_0_to", "edge_0_cost", "edge_0_transition", "edge_1_from"]
)  # fmt: skip


@SETTINGS
@given(members=st.dictionaries(keys, arrays, max_size=8))
def test_npz_with_arbitrary_members(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], members: dict[str, Any]
) -> None:
    file = tmp_path / "x.npz"
    file.write_bytes(_npz_bytes(**members))
    assert_clean(*run_cli(capsys, ["solve", str(file), "--lam", "0.5"]))


def _trace(n: int = 60) -> Trace:
    rng = np.random.default_rng(0)
    return Trace.build(
        rng.integers(2, size=n), rng.integers(2, size=(n, 3)), rng.uniform(0.5, 1, (n, 3)), [1.0, 2.0, 3.0]
    )


TRACE_FIELDS = ("labels", "pred", "conf", "cost", "probs", "stage_names", "cost_unit", "meta_json")
trace_values = st.one_of(
    arrays,
    st.just(np.full((60, 3), -1)),
    st.just(np.full((60, 3), 1.5)),
    st.just(np.zeros(60, dtype=np.int64)),
    st.just(np.array(json.dumps([1, 2]))),
    st.just(np.array("{")),
    st.just(np.zeros(3)),
    st.just(np.full((60, 3, 2), 0.5)),
)


@SETTINGS
@given(field=st.sampled_from(TRACE_FIELDS), value=trace_values, drop=st.booleans())
def test_traces_with_a_broken_array(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, value: Any, drop: bool
) -> None:
    tr = _trace()
    members: dict[str, Any] = {"labels": tr.labels, "pred": tr.pred, "conf": tr.conf, "cost": tr.cost}
    if drop:
        members.pop(field, None)
    else:
        members[field] = value
    file = tmp_path / "t.npz"
    file.write_bytes(_npz_bytes(**members))
    args = ["sweep", str(file), "--out", str(tmp_path / "r.csv"), "--splits", "2", "--no-progress",
            "--policies", "recall,max_softmax,static"]  # fmt: skip
    assert_clean(*run_cli(capsys, args))


def test_valid_trace_sweeps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_trace(_trace(), tmp_path / "t.npz")
    rc, _, err = run_cli(capsys, ["sweep", str(tmp_path / "t.npz"), "--out", str(tmp_path / "r.csv"),
                                  "--splits", "2", "--no-progress"])  # fmt: skip
    assert rc == 0, err


csv_cells = st.one_of(
    st.integers(-3, 5).map(str),
    st.sampled_from(["", "nan", "1e30", "-1", "0.5", "abc", "1.5", "inf", '"', "1,2"]),
)


@SETTINGS
@given(
    rows=st.lists(st.lists(csv_cells, min_size=3, max_size=7), min_size=0, max_size=8),
    header=st.sampled_from(
        ["sample,stage,label,pred,conf", "sample,stage,label,pred,conf,cost", "sample,stage,label", "", "a,b"]
    ),
)
def test_arbitrary_csv_imports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rows: list[list[str]], header: str
) -> None:
    file = tmp_path / "x.csv"
    file.write_text("\n".join([header, *(",".join(r) for r in rows)]) + "\n")
    args = ["import-csv", str(file), "--out", str(tmp_path / "t.npz"), "--costs", "1,2"]
    assert_clean(*run_cli(capsys, args))


def test_valid_csv_imports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [f"{s},{k},{s % 2},{(s + k) % 2},0.{6 + k}" for s in range(20) for k in range(2)]
    (tmp_path / "x.csv").write_text("sample,stage,label,pred,conf\n" + "\n".join(rows) + "\n")
    rc, _, err = run_cli(capsys, ["import-csv", str(tmp_path / "x.csv"), "--out", str(tmp_path / "t.npz"),
                                  "--costs", "1,2"])  # fmt: skip
    assert rc == 0, err
