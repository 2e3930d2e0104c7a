"""Search a character-level transformer language model on Python's own standard library.

The text is the source of the standard library that ships with the interpreter running the
trial, read from disk: the first ``TEXT_FILES`` of its top-level ``.py`` files in sorted
order, cut to ``TEXT_CHARS`` characters, the last tenth held out for validation. The same
Python gives the same text, so trials compare; nothing is downloaded.

Each trial decides the number of layers, the attention heads, the embedding width, the
context length and the learning rate (log-uniform). The objective is the validation loss in
nats per character (minimize); ``ln(vocabulary size)`` is what a model that learnt nothing
scores. An epoch is a fixed number of optimizer steps on random windows of the text, so the
budget is comparable across context lengths.

    python examples/char_transformer.py          # 16 trials of 3 epochs on a local cluster
    python examples/char_transformer.py --full   # 48 trials of 20 epochs
    morphml run examples/char_transformer.yaml   # from the shell, resumable

The local cluster's worker processes import this file as the module ``char_transformer``,
so the space and train functions live at module level and the search starts only under
``__main__``.
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from morphml_dask.driver import Search
from morphml_dask.optim import RegularizedEvolution
from morphml_dask.space import FunctionSpace, Sampler
from morphml_dask.tasks import FunctionTask, TrialContext

TEXT_FILES = 40
TEXT_CHARS = 400_000
VALIDATION_FRACTION = 0.1
STEPS_PER_EPOCH = 30
BATCH_SIZE = 16
# The validation loss is measured on the same windows in every trial and every epoch.
VALIDATION_WINDOWS = 64
VALIDATION_SEED = 0


@dataclass(frozen=True)
class Corpus:
    """The text as character ids, split into a training and a validation part."""

    train: torch.Tensor
    val: torch.Tensor
    vocabulary: str


def standard_library_text(files: int = TEXT_FILES, chars: int = TEXT_CHARS) -> str:
    """The first ``chars`` characters of the first ``files`` standard-library modules."""
    folder = Path(os.__file__).parent
    sources = sorted(folder.glob("*.py"))[:files]
    if not sources:
        raise FileNotFoundError(
            f"no .py files in {folder}: this Python ships its standard library compiled only;"
            " run the example with an interpreter that has the sources"
        )
    text = "\n".join(path.read_text(encoding="utf-8", errors="replace") for path in sources)
    return text[:chars]


@lru_cache(maxsize=1)
def corpus() -> Corpus:
    """The character ids of the text (on the CPU), its vocabulary sorted."""
    text = standard_library_text()
    vocabulary = "".join(sorted(set(text)))
    index = {char: i for i, char in enumerate(vocabulary)}
    ids = torch.tensor([index[char] for char in text], dtype=torch.long)
    cut = int(len(ids) * (1 - VALIDATION_FRACTION))
    return Corpus(ids[:cut], ids[cut:], vocabulary)


def windows(
    text: torch.Tensor, context: int, count: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` random windows of ``context`` characters and the characters that follow."""
    starts = torch.randint(0, len(text) - context - 1, (count,), generator=generator)
    offsets = torch.arange(context)
    inputs = text[starts[:, None] + offsets]
    return inputs, text[starts[:, None] + offsets + 1]


class CharTransformer(nn.Module):
    """A decoder-only transformer: embeddings, causal pre-norm layers, a linear read-out."""

    def __init__(self, config: dict[str, Any], vocabulary_size: int) -> None:
        super().__init__()
        width, context = config["width"], config["context"]
        self.embed = nn.Embedding(vocabulary_size, width)
        self.position = nn.Parameter(0.02 * torch.randn(context, width))
        layer = nn.TransformerEncoderLayer(
            width,
            config["heads"],
            dim_feedforward=4 * width,
            dropout=0.0,
            batch_first=True,
            norm_first=True,
        )
        self.layers = nn.TransformerEncoder(layer, config["layers"], enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocabulary_size)
        mask = nn.Transformer.generate_square_subsequent_mask(context)
        self.register_buffer("causal", mask, persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        hidden = self.embed(ids) + self.position
        hidden = self.layers(hidden, mask=self.causal, is_causal=True)
        logits: torch.Tensor = self.head(self.norm(hidden))
        return logits


def loss_of(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of predicting each next character, in nats."""
    logits = model(inputs)
    return nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())


def train_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    text: torch.Tensor,
    context: int,
    generator: torch.Generator,
) -> float:
    """``STEPS_PER_EPOCH`` steps on random windows; the mean training loss."""
    model.train()
    device = next(model.parameters()).device
    total = 0.0
    for _ in range(STEPS_PER_EPOCH):
        inputs, targets = windows(text, context, BATCH_SIZE, generator)
        opt.zero_grad()
        loss = loss_of(model, inputs.to(device), targets.to(device))
        loss.backward()  # type: ignore[no-untyped-call]
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        total += loss.item()
    return total / STEPS_PER_EPOCH


@torch.no_grad()
def validation_loss(model: nn.Module, text: torch.Tensor, context: int) -> float:
    """The loss on ``VALIDATION_WINDOWS`` fixed windows of the validation text."""
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(VALIDATION_SEED)
    inputs, targets = windows(text, context, VALIDATION_WINDOWS, generator)
    return loss_of(model, inputs.to(device), targets.to(device)).item()


def space(s: Sampler) -> dict[str, Any]:
    """Layers, heads, embedding width, context length and learning rate."""
    return {
        "layers": s.int("layers", 1, 3),
        "heads": s.choice("heads", [1, 2, 4]),  # each divides every width
        "width": s.choice("width", [32, 64, 128]),
        "context": s.choice("context", [32, 64, 128]),
        "lr": s.float("lr", 3e-4, 3e-2, log=True),
    }


def fit(config: dict[str, Any], ctx: TrialContext) -> None:
    """Train with AdamW from where the saved state left off, reporting each epoch."""
    text = corpus()
    torch.manual_seed(ctx.seed)
    model = CharTransformer(config, len(text.vocabulary)).apply(_initialise).to(ctx.device)
    opt = torch.optim.AdamW(model.parameters(), config["lr"], weight_decay=0.01)
    generator = torch.Generator().manual_seed(ctx.seed)
    if state := ctx.restore():  # an ASHA promotion, or a retried trial, continues
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        generator.set_state(state["generator"])
    for epoch in range(ctx.trained_epochs + 1, ctx.budget + 1):
        train_loss = train_epoch(model, opt, text.train, config["context"], generator)
        val_loss = validation_loss(model, text.val, config["context"])
        ctx.report(epoch, train_loss=train_loss, val_loss=val_loss, val_bits=val_loss / math.log(2))
        # Each epoch: a trial that runs again after its worker died continues from here.
        weights = {"model": model.state_dict(), "opt": opt.state_dict()}
        ctx.save({**weights, "generator": generator.get_state()})


def _initialise(module: nn.Module) -> None:
    # Small normal weights, as in GPT-2: PyTorch's defaults make a deep stack's first
    # losses far above ln(vocabulary size).
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


def main(argv: list[str] | None = None) -> None:
    """Run the search on a local cluster of worker processes and print the best trials."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="48 trials of 20 epochs")
    parser.add_argument("--store", default="./runs/char-transformer", help="the store's URL")
    args = parser.parse_args(argv)
    trials, epochs = (48, 20) if args.full else (16, 3)
    search = Search(
        RegularizedEvolution(
            FunctionSpace(space),
            population_size=8,
            budget=epochs,
            max_trials=trials,
            objective="val_loss",
            direction="minimize",
            seed=0,
        ),
        FunctionTask(fit, objective="val_loss", direction="minimize"),
        store=args.store,
    )
    table = search.run()
    print(table.nsmallest(3, "val_loss")[["trial_id", "val_loss", "val_bits"]])


if __name__ == "__main__":  # the workers import this file; only the driver searches
    main()
