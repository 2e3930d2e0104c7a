"""Zero-cost proxy scores of every NAS-Bench-201 cell, as the warm-up benchmark charges them.

    python benchmarks/nb201_proxy_table.py --out benchmarks/results/nb201_synflow.npz

Each cell is built freshly initialised as the benchmark's network (CIFAR-10 shapes: a 3x32x32
input, 10 classes; weights seeded by the cell's index) and scored on one CPU thread, as a worker
would; the file keeps, per cell index, the score and the seconds that scoring took (building the
network included). A partial file is resumed: cells already scored are kept.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script or loaded by path
from proxies import nb201_table, rank_correlation, score_nb201

from morphml_dask.space import NUM_CELLS

SAVE_EVERY = 500


def scores_of(cells: list[int], proxy: str = "synflow") -> list[float]:
    """``proxy`` of each of ``cells``, scored as `score_cells` scores them."""
    return [_score(index, proxy)[0] for index in cells]


def _score(index: int, proxy: str) -> tuple[float, float]:
    """``proxy`` of cell ``index`` initialised from seed ``index``, and the seconds it took."""
    values, seconds = score_nb201(index, (proxy,))
    return values[proxy], seconds


def score_cells(proxy: str, out: Path, cells: int = NUM_CELLS, *, descending: bool = False) -> None:
    """Score cells 0..``cells``-1 by ``proxy`` into ``out`` (an .npz of ``scores`` and
    ``seconds``, NaN where not scored yet), saving every few hundred cells."""
    import torch

    torch.set_num_threads(1)  # the cost charged is one core's, as on a one-thread worker
    scores = np.full(NUM_CELLS, np.nan)
    seconds = np.full(NUM_CELLS, np.nan)
    if out.exists():
        kept = np.load(out)
        scores, seconds = kept["scores"].copy(), kept["seconds"].copy()
    todo = [i for i in range(cells) if np.isnan(scores[i])]
    if descending:  # a second process works from the other end of the same table
        todo.reverse()
    for done, index in enumerate(todo, 1):
        scores[index], seconds[index] = _score(index, proxy)
        if done % SAVE_EVERY == 0 or done == len(todo):
            out.parent.mkdir(parents=True, exist_ok=True)
            np.savez(out, scores=scores, seconds=seconds, proxy=proxy)
            print(f"{done}/{len(todo)} cells, {np.nanmean(seconds):.3f} s a cell", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--proxy", default="synflow")
    parser.add_argument("--cells", type=int, default=NUM_CELLS)
    parser.add_argument("--descending", action="store_true", help="score from the last cell")
    parser.add_argument(
        "--correlate", action="store_true", help="print the Spearman rho of the table's scores"
    )
    parser.add_argument("--merge", type=Path, nargs="*", default=[], help="tables to merge in")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/nb201_synflow.npz"))
    args = parser.parse_args()
    if args.correlate:
        print(f"Spearman rho over {NUM_CELLS} cells: {correlation(args.out):.4f}")
    elif args.merge:
        merge_tables(args.out, args.merge)
    else:
        score_cells(args.proxy, args.out, args.cells, descending=args.descending)


def correlation(table: Path) -> float:
    """Spearman's rho between the table's scores and the 200-epoch validation accuracy that
    ships with the package (as `benchmarks/proxies.py` correlates a sample of cells)."""
    accuracy = [row["val_accuracy_200"] for row in nb201_table()]
    scores = np.load(table)["scores"]
    return float(rank_correlation(scores.tolist(), accuracy))


def merge_tables(out: Path, others: list[Path]) -> None:
    """Fill the cells ``out`` lacks from ``others`` (tables of the same proxy)."""
    kept = dict(np.load(out))
    for other in others:
        extra = np.load(other)
        missing = np.isnan(kept["scores"])
        kept["scores"][missing] = extra["scores"][missing]
        kept["seconds"][missing] = extra["seconds"][missing]
    np.savez(out, **kept)
    print(f"{int(np.isnan(kept['scores']).sum())} cells left unscored in {out}")


if __name__ == "__main__":
    main()
