"""A scripted function space and train function for pruning tests: each trial's curve is a
known function of its configuration, reported step by step, and the trial stops when told.

Worker processes import it by name: the tests' folder is on their path, inherited from the
process that starts the cluster (or named by ``python_path`` in an experiment file).
"""

from __future__ import annotations

import time
from typing import Any

from morphml_dask.space import Sampler
from morphml_dask.tasks import TrialContext

# Long enough for a stop decision (about 0.4 s) to reach a trial that is losing early.
STEP_S = 0.1


def space(s: Sampler) -> dict[str, Any]:
    return {"quality": s.float("quality", 0.0, 1.0)}


def score(quality: float, step: int) -> float:
    """The curve of a trial of ``quality``: rising to ``quality``, better trials above worse
    ones at every step."""
    return quality * (1 - 0.7**step)


def climb(config: dict[str, Any], ctx: TrialContext) -> None:
    for step in range(ctx.trained_epochs + 1, ctx.budget + 1):
        time.sleep(STEP_S)
        ctx.report(step, score=score(config["quality"], step))
        if ctx.should_stop():
            return


def climb_saving(config: dict[str, Any], ctx: TrialContext) -> None:
    """`climb`, saving its state after every step and continuing from the saved one."""
    state = ctx.restore()
    first = 1 if state is None else int(state["step"]) + 1
    for step in range(first, ctx.budget + 1):
        time.sleep(STEP_S)
        ctx.report(step, score=score(config["quality"], step))
        ctx.save({"step": step})
        if ctx.should_stop():
            return
