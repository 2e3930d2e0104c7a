"""Stores the workers cannot share are refused before the first trial: the pure check, and
the search on real clusters (worker processes, and workers in the driver's process)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from distributed import Client, LocalCluster

from morphml_dask.driver import Search
from morphml_dask.driver._shared import (
    Process,
    check_shared_store,
    local_folder,
    this_process,
    worker_processes,
)
from morphml_dask.exceptions import InputError, StorageError, StorageInputError
from morphml_dask.optim import RandomSearch
from morphml_dask.space import CellSpace
from morphml_dask.storage import open_store
from morphml_dask.tasks import NB201TabularTask
from morphml_dask.testing import local_client

DRIVER = Process("driver-host", 100)


# -- the pure check ------------------------------------------------------------------------------


def test_a_memory_store_with_workers_in_other_processes_is_refused() -> None:
    workers = {"tcp://a:1": Process("driver-host", 101), "tcp://a:2": DRIVER}
    with pytest.raises(StorageInputError, match="lives in the driver's memory") as caught:
        check_shared_store("memory://runs", DRIVER, workers)
    error = caught.value
    assert isinstance(error, StorageError) and isinstance(error, InputError)
    assert "1 worker(s) in other processes: tcp://a:1" in error.received
    assert "LocalCluster(processes=False)" in error.fix and "s3://" in error.fix


def test_a_memory_store_with_workers_in_the_drivers_process_is_fine() -> None:
    check_shared_store("memory://runs", DRIVER, {"inproc://a/1": DRIVER})
    check_shared_store("memory://runs", DRIVER, {})  # none yet: nothing to refuse


@pytest.mark.parametrize("url", ["./runs/search", "/data/runs/search", "file:///data/runs"])
def test_a_local_folder_that_workers_on_other_hosts_do_not_see_is_refused(url: str) -> None:
    workers = {
        "tcp://b:1": Process("node-2", 7, sees_store=False),
        "tcp://b:2": Process("node-3", 7, sees_store=False),
        "tcp://a:1": Process("driver-host", 8, sees_store=True),
    }
    with pytest.raises(StorageInputError, match="is a folder of driver-host") as caught:
        check_shared_store(url, DRIVER, workers)
    assert caught.value.received == "workers on node-2, node-3, which do not see the folder"
    assert "s3://" in caught.value.fix and "every host mounts" in caught.value.fix


def test_a_local_folder_on_one_host_or_a_shared_filesystem_is_fine() -> None:
    same_host = {"tcp://a:1": Process("driver-host", 5, sees_store=False)}
    check_shared_store("./runs/search", DRIVER, same_host)
    shared = {"tcp://b:1": Process("node-2", 5, sees_store=True)}
    check_shared_store("/shared/runs/search", DRIVER, shared)


def test_object_stores_are_shared_by_every_worker() -> None:
    elsewhere = {"tcp://b:1": Process("node-2", 5, sees_store=False)}
    check_shared_store("s3://bucket/search", DRIVER, elsewhere)


def test_only_local_urls_have_a_local_folder(tmp_path: Path) -> None:
    assert local_folder(str(tmp_path)) == str(tmp_path)
    assert local_folder(f"file://{tmp_path}") == str(tmp_path)
    assert local_folder("memory://runs") is None
    assert local_folder("s3://bucket/runs") is None


# -- on real clusters --------------------------------------------------------------------------


def _search(store: str, client: Client, max_trials: int = 8) -> Search:
    optimizer = RandomSearch(CellSpace(), max_trials=max_trials, seed=0)
    return Search(optimizer, NB201TabularTask(), store=store, client=client)


def test_a_memory_store_with_worker_processes_is_refused_before_any_trial() -> None:
    url = f"memory://shared-{uuid.uuid4().hex}"
    with local_client(n_workers=2, threads_per_worker=1) as client:
        search = _search(url, client)
        with pytest.raises(StorageInputError, match="lives in the driver's memory") as caught:
            search.run()
        assert "2 worker(s) in other processes" in caught.value.received
        assert f"pid {os.getpid()}" in caught.value.expected
    assert open_store(url).trials().empty, "a trial ran before the refusal"


def test_a_memory_store_with_workers_in_the_drivers_process_runs() -> None:
    url = f"memory://shared-{uuid.uuid4().hex}"
    with (
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=2,
            threads_per_worker=1,
            processes=False,
            dashboard_address=None,
            worker_dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        _search(url, client).run()
    table = open_store(url).trials()
    assert len(table) == 8 and table["trial_id"].is_unique


def test_the_workers_say_where_they_run_and_see_a_local_store(tmp_path: Path) -> None:
    with local_client(n_workers=2, threads_per_worker=1) as client:
        workers = worker_processes(client, str(tmp_path / "store"))
    driver = this_process()
    assert len(workers) == 2
    assert {p.host for p in workers.values()} == {driver.host}
    assert all(p.pid != driver.pid and p.sees_store for p in workers.values())
    assert list((tmp_path / "store").iterdir()) == [], "the probe file was left behind"
    check_shared_store(str(tmp_path / "store"), driver, workers)
