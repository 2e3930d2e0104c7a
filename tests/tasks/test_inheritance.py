"""A child of another architecture starts from what fits of its parent's weights: through
`TrialContext.inherit` for the user's own model, by itself in `TrainingTask`; the trials
table records the parent, the fraction inherited and the epochs trained on top, and
`store.lineage` follows the chain back."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import torch
from torch import nn

from morphml_dask.exceptions import StorageInputError, TaskError
from morphml_dask.optim import RegularizedEvolution
from morphml_dask.space import DagSpace
from morphml_dask.storage import ExperimentStore, open_store
from morphml_dask.tasks import TrainingTask, TrialContext
from morphml_dask.tasks._train import _planned_morphism
from morphml_dask.testing import morph_space
from morphml_dask.trial import Trial, TrialRecord, TrialResult

# Room to widen nodes and to grow kernels, so that children come from morphisms.
MORPH_SPACE = morph_space()


@pytest.fixture
def store() -> ExperimentStore:
    """A fresh experiment in memory, one per test."""
    return open_store(f"memory://inherit-{uuid.uuid4().hex}")


def _mlp(hidden: int) -> nn.Sequential:
    torch.manual_seed(hidden)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, hidden), nn.Linear(hidden, 2))


def _trial(trial_id: str, **fields: object) -> Trial:
    arch = DagSpace(max_nodes=2).sample(np.random.default_rng(0))
    return Trial(trial_id, arch, budget=2, **fields)  # type: ignore[arg-type]


def test_a_child_inherits_every_tensor_whose_name_and_shape_fit(store: ExperimentStore) -> None:
    parent_model = _mlp(hidden=6)
    TrialContext(_trial("t000001"), store=store).save({"model": parent_model.state_dict()})
    child = _trial("t000002", parent="t000001", parent_budget=2, inherits=True)
    ctx = TrialContext(child, store=store)
    model = _mlp(hidden=5)  # the last two layers change shape
    fresh = {k: v.clone() for k, v in model.state_dict().items()}

    inherited = ctx.inherit(model)

    assert inherited is not None
    assert sorted(inherited.copied) == ["0.bias", "0.weight", "3.bias"]  # 3.bias: (2,) both
    assert torch.equal(model.state_dict()["0.weight"], parent_model.state_dict()["0.weight"])
    assert torch.equal(model.state_dict()["2.weight"], fresh["2.weight"]), "a misfit was copied"
    total = sum(p.numel() for p in model.parameters())
    assert inherited.fraction == pytest.approx((4 * 8 + 8 + 2) / total)
    assert ctx.inherited_fraction == inherited.fraction
    assert ctx.restore() is None, "a child of another architecture restored its parent's state"


def test_only_an_inheriting_child_inherits(store: ExperimentStore) -> None:
    TrialContext(_trial("t000001"), store=store).save({"model": _mlp(6).state_dict()})
    promoted = TrialContext(_trial("t000002", parent="t000001", parent_budget=1), store=store)
    assert promoted.inherit(_mlp(6)) is None  # a promotion restores its parent's state
    assert promoted.restore() is not None and promoted.inherited_fraction == 1.0
    orphan = _trial("t000003", inherits=True)
    assert TrialContext(orphan, store=store).inherit(_mlp(6)) is None
    child = _trial("t000004", parent="t000001", inherits=True)
    assert TrialContext(child, store=None).inherit(_mlp(6)) is None


def test_a_parent_state_without_weights_is_a_clear_error(store: ExperimentStore) -> None:
    TrialContext(_trial("t000001"), store=store).save({"epoch": 3})
    child = TrialContext(_trial("t000002", parent="t000001", inherits=True), store=store)
    with pytest.raises(
        TaskError,
        match=r"(?s)the state parent t000001 saved holds no model weights.*"
        r"expected: ctx.save\(\{'model': model.state_dict\(\), ...\}\).*"
        r"received: a state with the keys \['epoch'\].*fix: save the model's state dict",
    ):
        child.inherit(_mlp(6))


def test_training_task_children_start_from_their_parents_morphed_weights(
    store: ExperimentStore,
) -> None:
    """REA with inherit_weights on digits: the child names its parent and morphism, the
    worker starts it from the transformed weights, and the store records the lineage."""
    rea = RegularizedEvolution(
        MORPH_SPACE,
        population_size=2,
        sample_size=1,
        budget=2,
        inherit_weights=True,
        child_budget=1,
        seed=0,
    )
    task = TrainingTask(dataset="digits", max_epochs=4, batch_size=128)
    records = []
    for _ in range(2):
        (trial,) = rea.ask(1)
        ctx = TrialContext(trial, store=store)
        result = TrialResult.complete(trial.id, task.run(trial, ctx).metrics)
        rea.tell(result)
        records.append(TrialRecord(trial, result))
    (child,) = rea.ask(1)
    assert child.inherits and child.parent in {r.trial.id for r in records}
    assert child.budget == 1 and "morphism" in child.info, child.info
    ctx = TrialContext(child, store=store)
    evaluation = task.run(child, ctx)
    assert ctx.inherited_fraction is not None and 0 < ctx.inherited_fraction <= 1
    store.append_records(
        [
            *records,
            TrialRecord(
                child,
                TrialResult.complete(child.id, evaluation.metrics),
                inherited_fraction=ctx.inherited_fraction,
            ),
        ]
    )
    chain = store.lineage(child.id)
    assert list(chain["trial_id"]) == [child.id, child.parent]
    first = chain.iloc[0]
    assert first["mutation"] == child.info["mutation"]
    assert first["inherited_fraction"] == pytest.approx(ctx.inherited_fraction)
    assert (first["epochs_trained"], chain.iloc[1]["epochs_trained"]) == (1, 2)
    with pytest.raises(StorageInputError, match=r"(?s)no trial 'nope' in the store.*fix: pick"):
        store.lineage("nope")


def test_a_morphism_planned_for_another_input_width_is_not_applied_as_exact(
    store: ExperimentStore,
) -> None:
    """Morphisms are planned for the 16-channel input of a network on 8x8 images; a task
    whose network has a reduction stage (a 32-channel input) inherits by name and shape."""
    rea = RegularizedEvolution(
        MORPH_SPACE, population_size=2, sample_size=1, budget=1, inherit_weights=True, seed=3
    )
    wide = TrainingTask(dataset="digits", reductions=1, batch_size=256)
    for root in rea.ask(2):
        wide.run(root, TrialContext(root, store=store))
        rea.tell(TrialResult.complete(root.id, {"val_accuracy": 50.0}))
    (child,) = rea.ask(1)
    assert child.info["morph_input_width"] == 16 and "morphism" in child.info
    assert _planned_morphism(TrainingTask(), child.info) == child.info["morphism"]
    assert _planned_morphism(wide, child.info) is None
    ctx = TrialContext(child, store=store)
    wide.run(child, ctx)
    assert ctx.inherited_fraction is not None and 0 < ctx.inherited_fraction <= 1
