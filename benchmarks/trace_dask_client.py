#!/usr/bin/env python
"""Where the memory of the dask client goes during a cluster fit, batch by batch.

Fits the mlearn Si training set repeated ``SIZE`` times (the settings and cluster of
``bench_scaling.py --modes cluster``: a ``LocalCluster`` of 2 worker processes of one
thread) and, after each batch of dask tasks, prints the client's resident memory, its
glibc heap (``mallinfo2``: bytes of the arenas, in use and free) and the number of
dask futures the client still holds. A sampler thread records the peak resident memory
of each pass. Futures that outlive their batch keep its results alive on the client and
on the workers; this is how the growth of the client with the number of batches was
traced (see ``benchmarks/README.md``).

Usage (from the project root; Linux with glibc 2.33 or later)::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 \\
        PYTHONPATH=. python benchmarks/trace_dask_client.py 4
"""

import argparse
import ctypes
import json
import os
import sys
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_scaling  # noqa: E402

MIB = 2.0**20


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


def _resident() -> float:
    """Resident memory of this process now, in bytes."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _Tracer:
    """Wraps ``gapy.parallel._dask_map``: a line per batch, the peak resident memory per pass."""

    def __init__(self):
        import gapy.parallel

        self._parallel = gapy.parallel
        self._original = gapy.parallel._dask_map
        self._libc = ctypes.CDLL("libc.so.6")
        self._libc.mallinfo2.restype = _Mallinfo2
        self.phase = "start"
        self.peaks = {}
        self.batches = []
        self._stop = threading.Event()

    def __enter__(self):
        self._parallel._dask_map = self._traced_map
        threading.Thread(target=self._sample, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._parallel._dask_map = self._original
        self._stop.set()

    def _sample(self):
        while not self._stop.wait(0.05):
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0.0), _resident())

    def _traced_map(self, client, function, items, progress, shared=None):
        self.phase = getattr(function, "__name__", "task")
        results = self._original(client, function, items, progress, shared)
        heap = self._libc.mallinfo2()
        self.batches.append({"task": self.phase, "batch": len(self.batches) + 1,
                             "resident_mib": round(_resident() / MIB), "arena_mib": round(heap.arena / MIB),
                             "in_use_mib": round(heap.uordblks / MIB), "free_mib": round(heap.fordblks / MIB),
                             "futures": len(client.futures)})
        print(json.dumps(self.batches[-1]), flush=True)
        return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("size", type=int, help="repetitions of the training set")
    parser.add_argument("--data", type=Path, default=bench_scaling.DEFAULT_DATA)
    parser.add_argument("--n-sparse", type=int, default=1000)
    args = parser.parse_args(argv)

    import distributed
    from joblib import parallel_config

    work = Path(tempfile.mkdtemp(prefix="gapy-trace-"))
    path = bench_scaling.repeated_file(args.data, args.size, work)
    with distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None,
                                  memory_limit=None) as cluster, distributed.Client(cluster) as client:
        client.run(bench_scaling._warm_up)
        with _Tracer() as tracer, parallel_config(backend="dask"):
            bench_scaling._model({"n_sparse": args.n_sparse}, n_jobs=2).fit(str(path))
    print(json.dumps({"size": args.size,
                      "peak_gib": {phase: round(value / 2**30, 3) for phase, value in tracer.peaks.items()},
                      "most_in_use_mib": max(batch["in_use_mib"] for batch in tracer.batches),
                      "most_futures": max(batch["futures"] for batch in tracer.batches)}))
    path.unlink()
    work.rmdir()


if __name__ == "__main__":
    main()
