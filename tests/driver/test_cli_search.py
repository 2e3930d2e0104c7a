"""`morphml run` and `morphml resume` as a user runs them: real processes, Ctrl-C included."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from morphml_dask import open_store

MORPHML = [sys.executable, "-m", "morphml_dask.cli"]

EXPERIMENT = """
name: interrupted
space: {name: nb201-cell}
task: {name: nb201-tabular, dataset: cifar10, time_scale: 0.0004}
optimizer: {name: regularized-evolution, population_size: 10, sample_size: 3, seed: 0}
max_trials: 80
store: %s
"""


def test_ctrl_c_then_resume_gives_exactly_the_requested_trials(tmp_path: Path) -> None:
    store = tmp_path / "store"
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text(EXPERIMENT % store)
    run = subprocess.Popen(
        [*MORPHML, "run", str(experiment)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until some results are persisted
        if (store / "trials").exists() and len(open_store(str(store)).trials()) >= 20:
            break
        time.sleep(0.2)
    run.send_signal(signal.SIGINT)
    output, _ = run.communicate(timeout=120)
    assert run.returncode == 130, output
    assert f"morphml resume {store}" in output
    stopped = open_store(str(store)).trials()
    assert 20 <= len(stopped) < 80

    resumed = subprocess.run(
        [*MORPHML, "resume", str(store)], capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "80 trials" in resumed.stdout
    table = open_store(str(store)).trials()
    assert len(table) == 80
    assert table["trial_id"].is_unique
    assert sorted(table["trial_id"]) == [f"t{i:06d}" for i in range(1, 81)]
    # What was stored before the interruption is untouched.
    kept = table.set_index("trial_id").loc[stopped["trial_id"], "metrics"]
    assert kept.tolist() == stopped["metrics"].tolist()


def test_resume_without_a_search_says_so(tmp_path: Path) -> None:
    done = subprocess.run(
        [*MORPHML, "resume", str(tmp_path / "empty")], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "nothing to resume at" in done.stderr
    assert "Traceback" not in done.stderr
