"""thread_map: local threads by default, the user's joblib backend (dask) when chosen."""

import gc
import threading
import time
import weakref

import numpy as np
import pytest
from joblib import parallel_config
from sklearn.base import clone

from gapy import GAPRegressor, SOAP
from gapy.datasets import load_si
from gapy import parallel
from gapy.parallel import thread_map


def test_results_in_order_on_several_threads():
    names = set()

    def work(x):
        names.add(threading.current_thread().name)
        return x * x

    assert thread_map(work, range(50), n_jobs=2) == [x * x for x in range(50)]
    assert thread_map(work, [], n_jobs=2) == []
    with parallel_config(backend="sequential"):
        names.clear()
        assert thread_map(work, range(5), n_jobs=2) == [x * x for x in range(5)]
        assert names == {threading.current_thread().name}


def test_errors_reach_the_caller():
    def work(x):
        if x == 3:
            raise ValueError("structure 3: bad")
        return x

    with pytest.raises(ValueError, match="structure 3"):
        thread_map(work, range(6), n_jobs=2)


def test_progress_advances_once_per_item():
    class Counter:
        n = 0

        def update(self, k):
            self.n += k

    counter = Counter()
    thread_map(abs, range(-7, 0), n_jobs=2, progress=counter)
    assert counter.n == 7


def _scaled(x, shared):
    return x * shared["factor"]


def test_a_shared_input_reaches_every_call_and_goes_to_dask_once():
    shared = {"factor": 3, "big": np.zeros(10_000)}
    assert thread_map(_scaled, range(6), n_jobs=2, shared=shared) == [3 * x for x in range(6)]
    with parallel_config(backend="sequential"):
        assert thread_map(_scaled, range(3), n_jobs=2, shared=shared) == [0, 3, 6]
    distributed = pytest.importorskip("distributed")
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2,
                            dashboard_address=None) as client:
        with parallel_config(backend="dask"), distributed.get_task_stream(client) as tasks:
            assert thread_map(_scaled, range(5), n_jobs=2, shared=shared) == [3 * x for x in range(5)]
    names = sorted(task["key"].split("-")[0] for task in tasks.data)
    assert names == ["gapy_scaled"] * 5 + ["gapy_shared"]


def _slow_block(x):
    time.sleep(0.3)
    return np.full(1000, float(x))


def test_dask_futures_and_results_are_released_without_the_garbage_collector(monkeypatch):
    # a batch's futures and results must not outlive it in a reference cycle (held on the
    # client and the workers until Python's cyclic collector ran: the client of a long
    # fit grew with the number of batches)
    distributed = pytest.importorskip("distributed")
    monkeypatch.setattr(parallel, "_POLL", 0.05)  # the waits time out while the tasks run
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2,
                            dashboard_address=None) as client:
        gc.disable()
        try:
            with parallel_config(backend="dask"):
                results = thread_map(_slow_block, range(4), n_jobs=2)
            assert [r[0] for r in results] == [0.0, 1.0, 2.0, 3.0]
            alive = [weakref.ref(r) for r in results]
            del results
            deadline = time.monotonic() + 10  # dask releases the keys asynchronously
            while (client.futures or any(ref() is not None for ref in alive)) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not client.futures
            assert all(ref() is None for ref in alive)
        finally:
            gc.enable()


def test_fit_and_descriptors_run_on_a_dask_cluster():
    distributed = pytest.importorskip("distributed")
    frames = load_si("train")[:6]
    soap = SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3)
    model = GAPRegressor(soap, n_sparse=20, random_state=0, n_jobs=2, sigma_virial=0.05)
    local = clone(model).fit(frames)
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2,
                            dashboard_address=None) as client:
        with parallel_config(backend="dask"), distributed.get_task_stream(client) as tasks:
            on_cluster = clone(model).fit(frames)
            values = soap.compute_many(frames, n_jobs=2)
        assert len(tasks.data) > 0  # the work really went through the scheduler
    np.testing.assert_allclose(on_cluster.gp_.alpha, local.gp_.alpha, rtol=1e-10, atol=1e-12)
    for got, frame in zip(values, frames):
        np.testing.assert_array_equal(got, soap.compute(frame))
