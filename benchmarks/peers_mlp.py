"""The MLP search of ``examples/mlp_wine.py`` in morphml_dask, Optuna and Ray Tune, side by side.

    bash benchmarks/peers-env.sh          # once: .bench-venv with Ray Tune, Optuna, the package
    python benchmarks/peers_mlp.py        # count the listings' lines, run the three searches
    python benchmarks/peers_mlp.py --count-only

Each listing is the code between the ``# listing: start`` and ``# listing: end`` markers of
its file: the search space, the training function and the search call, all three on the
same data, model and training epoch (the example's ``wine``, ``mlp``, ``train_epoch`` and
``evaluate``), 40 trials of 10 epochs each, one report per epoch. A line counts unless it is
blank or only a comment. The documentation's table of line counts is checked against
`listing_lines` by the tests.

Each search then runs once as its file's ``__main__``, in its own process and a fresh
working folder, with ``.bench-venv``'s interpreter (ours with this one's when that is
missing); the wall time, the exit status and the last lines printed go to the JSON file.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH_PYTHON = ROOT / ".bench-venv" / "bin" / "python"
DEFAULT_JSON = Path(__file__).parent / "results" / "peers_mlp.json"
START, END = "# listing: start", "# listing: end"
LISTINGS = {
    "morphml_dask": ROOT / "examples" / "mlp_wine.py",
    "Optuna": ROOT / "benchmarks" / "peers_mlp_optuna.py",
    "Ray Tune": ROOT / "benchmarks" / "peers_mlp_raytune.py",
}


def listing(path: Path) -> str:
    """The code between the listing markers of ``path``, without the markers."""
    text = path.read_text(encoding="utf-8")
    if text.count(START) != 1 or text.count(END) != 1:
        raise ValueError(f"{path} must have one {START!r} line and one {END!r} line after it")
    start = text.index(START) + len(START) + 1
    return text[start : text.index(END, start)]


def listing_lines(path: Path) -> int:
    """Lines of the listing of ``path`` that are neither blank nor only a comment."""
    lines = (line.strip() for line in listing(path).splitlines())
    return sum(1 for line in lines if line and not line.startswith("#"))


def run_listing(path: Path, timeout: float) -> dict[str, Any]:
    """Run ``path`` as a script in a fresh folder; its status, wall time and last lines."""
    python = BENCH_PYTHON if BENCH_PYTHON.exists() else Path(sys.executable)
    with tempfile.TemporaryDirectory(prefix="peers-mlp-") as folder:
        start = time.perf_counter()
        try:
            done = subprocess.run(
                [str(python), str(path)],
                cwd=folder,  # ours stores under ./runs: a fresh store every run
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return {"returncode": None, "wall_s": timeout, "tail": f"timed out after {timeout} s"}
    tail = (done.stdout.strip().splitlines() or [""])[-4:]
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-4:]
    return {
        "returncode": done.returncode,
        "wall_s": round(time.perf_counter() - start, 1),
        "tail": "\n".join(tail),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count-only", action="store_true", help="count lines, run nothing")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per search")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"machine": platform.platform(), "listings": {}}
    print(f"{'system':<14} {'lines':>5}  {'wall s':>7}  last lines printed")
    for system, path in LISTINGS.items():
        entry: dict[str, Any] = {"file": str(path.relative_to(ROOT)), "lines": listing_lines(path)}
        if not args.count_only:
            entry.update(run_listing(path, args.timeout))
        results["listings"][system] = entry
        wall = "" if args.count_only else f"{entry['wall_s']:>7}"
        print(f"{system:<14} {entry['lines']:>5}  {wall:>7}  {entry.get('tail', '')}")
    if not args.count_only:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
