"""Map a function over structures on threads, or on the joblib backend the user chose.

gapy's hot loops (numba kernels, BLAS) release the GIL, so threads are the natural
workers on one machine. A plain thread pool is used by default: ``joblib.Parallel``
costs 10-20 ms per call in dispatch and result polling, which is a quarter of the work
when a call covers a few small structures. Inside ``joblib.parallel_config(backend=...)``
with a backend other than loky, multiprocessing, threading or sequential (``"dask"`` on
a cluster, ...), the work goes through ``joblib.Parallel`` on that backend instead;
``"sequential"`` runs everything in the calling thread.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Optional, Sequence, TypeVar

from joblib import Parallel, delayed, effective_n_jobs
from joblib.parallel import (
    LokyBackend,
    MultiprocessingBackend,
    SequentialBackend,
    ThreadingBackend,
    get_active_backend,
)

#: joblib backends replaced by a local thread pool (gapy's work releases the GIL).
_LOCAL_BACKENDS = (LokyBackend, MultiprocessingBackend, ThreadingBackend)

Item = TypeVar("Item")
Result = TypeVar("Result")


def thread_map(function: Callable[[Item], Result], items: Sequence[Item], n_jobs: int = 1,
               progress=None) -> List[Result]:
    """``[function(item) for item in items]`` on ``n_jobs`` threads, in order.

    Parameters
    ----------
    function : callable
        ``function(item) -> result``; called from worker threads when ``n_jobs > 1``.
    items : sequence
        The items (any iterable; it is consumed into a list).
    n_jobs : int, default=1
        Threads (``-1``: all cores), as in joblib.
    progress : tqdm progress bar, optional
        Advanced by one as each item finishes (on a local pool), or by ``len(items)``
        at the end on another joblib backend.

    Returns
    -------
    list
        ``function(item)`` of each item, in the order of ``items``. The first exception
        raised by ``function`` propagates.

    Examples
    --------
    >>> from gapy.parallel import thread_map
    >>> thread_map(lambda x: x * x, range(5), n_jobs=2)
    [0, 1, 4, 9, 16]
    """
    items = list(items)
    backend, _ = get_active_backend()
    n_workers = 1 if isinstance(backend, SequentialBackend) else min(effective_n_jobs(n_jobs), len(items))
    if n_workers > 1 and not isinstance(backend, _LOCAL_BACKENDS):
        results = Parallel(n_jobs=n_jobs, prefer="threads")(delayed(function)(item) for item in items)
        _advance(progress, len(items))
        return results

    def run(item):
        result = function(item)
        _advance(progress, 1)
        return result

    if n_workers <= 1:
        return [run(item) for item in items]
    with ThreadPoolExecutor(n_workers) as pool:
        return list(pool.map(run, items))


def _advance(progress: Optional[object], n: int) -> None:
    if progress is not None:
        progress.update(n)


def physical_memory() -> float:
    """Bytes of memory of this machine (inf where the system does not say)."""
    try:
        return float(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return float("inf")
