"""Wall time of one multirun through each Hydra launcher, on this machine, in one run.

The same 8-job synthetic multirun (``workload=synthetic seed=0..7``) serially (Hydra's basic
launcher) and with joblib (``n_jobs`` parallel processes), and a 2-job multirun through
submitit's local executor and a local Ray instance, whose start-up is measured against the jobs'
own time: ``overhead_per_job_s = (wall time - sum of the jobs' own seconds from their
provenance.json) / jobs``. Each launch goes to a fresh sweep folder (nothing is skipped).

    python scripts/bench_launchers.py --out results/bench_launchers.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ttamer.fileio import atomic_write_bytes

JOB = ["workload=synthetic", "workload.chains_per_family=40", "logger=none", "progress=false"]
LAUNCHERS = {
    "basic": [],
    "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs={cpus}"],
    "submitit_local": ["hydra/launcher=submitit_local"],
    "ray": ["hydra/launcher=ray", "+hydra.launcher.ray.init.num_cpus={cpus}"],
}


def launch(name: str, seeds: list[int], cpus: int, root: Path) -> dict[str, float]:
    """One multirun in a fresh folder: wall seconds, the jobs' own seconds, the overhead."""
    extra = [a.format(cpus=cpus) for a in LAUNCHERS[name]]
    sweep = root / name
    cmd = [sys.executable, "-m", "ttamer.app.run", "-m", *JOB, "seed=" + ",".join(map(str, seeds)), *extra,
           f"hydra.sweep.dir={sweep}"]  # fmt: skip
    env = {**os.environ, "WANDB_MODE": "disabled"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{name}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    jobs = [json.loads(p.read_text())["seconds"] for p in sweep.rglob("provenance.json")]
    return {
        "jobs": len(jobs),
        "wall_s": round(wall, 2),
        "sum_job_s": round(sum(jobs), 2),
        "overhead_per_job_s": round((wall - sum(jobs)) / len(jobs), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=8, help="jobs of the serial/joblib multirun")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="parallel workers")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    seeds = list(range(args.jobs))
    result: dict[str, object] = {
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpus": args.cpus,
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in ("basic", "joblib"):
            result[name] = launch(name, seeds, args.cpus, root)
            print(name, result[name], flush=True)
        for name in ("submitit_local", "ray"):
            result[name] = launch(name, seeds[:2], args.cpus, root)
            print(name, result[name], flush=True)
    basic, joblib = result["basic"], result["joblib"]
    assert isinstance(basic, dict) and isinstance(joblib, dict)
    result["joblib_speedup"] = round(basic["wall_s"] / joblib["wall_s"], 2)
    print(json.dumps(result), flush=True)
    if args.out is not None:
        atomic_write_bytes(args.out, (json.dumps(result, indent=2) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
