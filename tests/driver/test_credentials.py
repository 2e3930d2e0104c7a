"""Credentials given for an S3 store are used, and never written to the store or the logs."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from distributed import LocalCluster

from morphml_dask.cli import main
from morphml_dask.credentials import without_credentials
from morphml_dask.storage import open_store

KEY_ID = "AKIAMORPHMLTESTKEYID"
SECRET = "morphml-test-secret-do-not-store-9f2c"


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    with LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=1, threads_per_worker=2, processes=True, dashboard_address="127.0.0.1:0"
    ) as cluster:
        yield cluster.scheduler_address


def test_secrets_of_storage_options_are_dropped_at_any_depth() -> None:
    document = {
        "store": "s3://bucket/x",
        "storage_options": {
            "key": KEY_ID,
            "secret": SECRET,
            "endpoint_url": "http://127.0.0.1:9000",
            "client_kwargs": {"aws_session_token": "t", "region_name": "eu-west-1"},
            "headers": {"Authorization": "Bearer t"},
        },
        "task": {"name": "digits", "storage_options": {"token": "t", "anon": False}},
        "optimizer": {"key": "not an option: kept"},
    }
    assert without_credentials(document) == {
        "store": "s3://bucket/x",
        "storage_options": {
            "endpoint_url": "http://127.0.0.1:9000",
            "client_kwargs": {"region_name": "eu-west-1"},
            "headers": {},
        },
        "task": {"name": "digits", "storage_options": {"anon": False}},
        "optimizer": {"key": "not an option: kept"},
    }


def test_credentials_reach_s3_but_not_the_store_or_the_output(
    scheduler: str,
    s3_endpoint: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import s3fs

    options = {"key": KEY_ID, "secret": SECRET, "endpoint_url": s3_endpoint}
    bucket = f"credentials-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(**options).mkdir(bucket)
    url = f"s3://{bucket}/search"
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text(
        yaml.safe_dump(
            {
                "name": "with-credentials",
                "space": {"name": "nb201-cell"},
                "task": {"name": "nb201-tabular"},
                "optimizer": {"name": "random-search", "seed": 0},
                "max_trials": 12,
                "store": url,
                "storage_options": options,
            }
        )
    )
    with caplog.at_level(logging.DEBUG, logger="morphml_dask"):
        assert main(["run", str(experiment), "--scheduler", scheduler]) == 0
    fs = s3fs.S3FileSystem(**options)
    written = fs.find(bucket)
    assert any(path.endswith("checkpoint.json") for path in written)
    for path in written:
        content = fs.cat_file(path)
        assert SECRET.encode() not in content and KEY_ID.encode() not in content, path
    checkpoint = open_store(url, options).load_checkpoint()
    assert checkpoint is not None
    assert checkpoint.config["storage_options"] == {"endpoint_url": s3_endpoint}

    # Resuming takes the credentials from the environment, the endpoint from the flag.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    flag = json.dumps({"endpoint_url": s3_endpoint})
    with caplog.at_level(logging.DEBUG, logger="morphml_dask"):
        assert main(["resume", url, "--scheduler", scheduler, "--storage-options", flag]) == 0
    output = capsys.readouterr()
    assert "12 trials" in output.out
    for text in (output.out, output.err, caplog.text):
        assert SECRET not in text and KEY_ID not in text


def test_storage_options_must_be_a_json_object(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["resume", str(tmp_path), "--storage-options", "endpoint_url=x"]) == 2
    error = capsys.readouterr().err
    assert "--storage-options is not a JSON object" in error
    assert "received: invalid JSON" in error
    assert main(["resume", str(tmp_path), "--storage-options", "[1, 2]"]) == 2
    assert "received: [1, 2]" in capsys.readouterr().err


def test_a_bucket_that_does_not_exist_stops_the_search_at_once(
    s3_options: dict[str, Any],
) -> None:
    """Not retried as an outage for morphml.store-outage-timeout: no wait can create it."""
    from distributed import Client

    from morphml_dask.driver import Search
    from morphml_dask.exceptions import StorageError
    from morphml_dask.optim import RandomSearch
    from morphml_dask.space import CellSpace
    from morphml_dask.tasks import NB201TabularTask

    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False) as cluster,  # type: ignore[no-untyped-call]
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        search = Search(
            RandomSearch(CellSpace(), max_trials=10, seed=0),
            NB201TabularTask(),
            store=f"s3://missing-{uuid.uuid4().hex[:8]}/experiment",
            storage_options=s3_options,
            client=client,
            store_outage_timeout=3600,
        )
        with pytest.raises(
            StorageError,
            match=r"(?s)the store at s3://missing-\w+/experiment cannot be written.*"
            r"received: FileNotFoundError: The specified bucket does not exist.*"
            r"fix: create the bucket",
        ):
            search.run()
