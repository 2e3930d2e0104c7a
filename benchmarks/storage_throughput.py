"""Store throughput: trial rows and learning curves to S3 (a local moto server) and a folder.

    python benchmarks/storage_throughput.py --trials 10000 --epochs 50 --batch 500 \
        --json benchmarks/results/storage_throughput.json

Writes ``--trials`` finished trials (`TrialRecord`, a row each) and as many learning curves
of ``--epochs`` epochs in batches of ``--batch`` (one Parquet part and one Zarr part per
batch, as a driver that persists in batches does), reads both back, checks that nothing was
lost or duplicated, and prints rows/s for each backend side by side. The S3 endpoint is
moto's server, started here on 127.0.0.1: the bytes cross a real HTTP socket, but absolute
numbers are those of a local emulator.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from morphml_dask import open_store
from morphml_dask.optim import RandomSearch
from morphml_dask.space import CellSpace
from morphml_dask.testing import moto_s3_server, synthetic_result
from morphml_dask.trial import TrialRecord


def _measure(
    url: str, options: dict[str, Any] | None, trials: int, epochs: int, batch: int
) -> dict[str, Any]:
    store = open_store(url, storage_options=options)
    asked = RandomSearch(CellSpace(), seed=0).ask(trials)
    records = [TrialRecord(t, synthetic_result(t), worker="bench", attempt=1) for t in asked]
    curves = {
        t.id: [
            {"epoch": e, "val_accuracy": e / epochs, "val_loss": 1 / e}
            for e in range(1, epochs + 1)
        ]
        for t in asked
    }
    ids = [t.id for t in asked]
    started = time.perf_counter()
    for start in range(0, trials, batch):
        store.append_records(records[start : start + batch])
    rows_write = time.perf_counter() - started
    started = time.perf_counter()
    for start in range(0, trials, batch):
        store.append_curves({i: curves[i] for i in ids[start : start + batch]})
    curves_write = time.perf_counter() - started
    started = time.perf_counter()
    table = open_store(url, storage_options=options).trials()
    rows_read = time.perf_counter() - started
    started = time.perf_counter()
    data = open_store(url, storage_options=options).curves()
    curves_read = time.perf_counter() - started
    assert len(table) == trials and table["trial_id"].is_unique, "rows lost or duplicated"
    assert sorted(table["trial_id"]) == sorted(ids)
    assert data.sizes["trial"] == trials and data.sizes["epoch"] == epochs, "curves lost"
    assert int(data["val_accuracy"].notnull().sum()) == trials * epochs
    return {
        "rows_write_per_s": trials / rows_write,
        "rows_read_per_s": trials / rows_read,
        "curves_write_per_s": trials / curves_write,
        "curves_read_per_s": trials / curves_read,
        "seconds": rows_write + curves_write + rows_read + curves_read,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument(
        "--json", type=Path, default=Path("benchmarks/results/storage_throughput.json")
    )
    args = parser.parse_args()
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    results: dict[str, Any] = {}
    with moto_s3_server() as endpoint:
        import s3fs

        options = {"key": "bench", "secret": "bench", "endpoint_url": endpoint}
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        s3fs.S3FileSystem(**options).mkdir(bucket)
        with tempfile.TemporaryDirectory() as folder:
            results["local"] = _measure(f"{folder}/run", None, args.trials, args.epochs, args.batch)
        results["s3 (moto)"] = _measure(
            f"s3://{bucket}/run", options, args.trials, args.epochs, args.batch
        )
    print(f"{args.trials} trials, {args.epochs}-epoch curves, batches of {args.batch}; per second:")
    print(
        f"{'backend':<12}{'rows write':>12}{'rows read':>12}{'curves write':>14}{'curves read':>13}"
    )
    for name, r in results.items():
        print(
            f"{name:<12}{r['rows_write_per_s']:>12.0f}{r['rows_read_per_s']:>12.0f}"
            f"{r['curves_write_per_s']:>14.0f}{r['curves_read_per_s']:>13.0f}"
        )
    ratio = results["s3 (moto)"]["rows_write_per_s"] / results["local"]["rows_write_per_s"]
    print(f"S3 / local, rows written per second: {ratio:.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {"settings": vars(args) | {"json": str(args.json)}, "results": results}, indent=1
        )
    )
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
