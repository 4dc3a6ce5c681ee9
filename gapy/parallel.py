"""Map a function over structures on threads, or on the joblib backend the user chose.

gapy's hot loops (numba kernels, BLAS) release the GIL, so threads are the natural
workers on one machine. A plain thread pool is used by default: ``joblib.Parallel``
costs 10-20 ms per call in dispatch and result polling, which is a quarter of the work
when a call covers a few small structures. Inside ``joblib.parallel_config(backend=...)``
with a backend other than loky, multiprocessing, threading or sequential (``"dask"`` on
a cluster, ...), the work goes to that backend's workers instead; ``"sequential"`` runs
everything in the calling thread.

On joblib's dask backend gapy submits the tasks to its ``distributed.Client`` itself and
watches them: a worker that dies is replaced by dask and its tasks run again (the
results are the same); a cluster that goes away (scheduler lost, tasks cancelled, no
worker left for :data:`NO_WORKERS_TIMEOUT` seconds, a task that keeps killing its
workers) raises :class:`~gapy.exceptions.ClusterError` instead of waiting forever.
"""

import functools
import os
import re
import threading
import time
import uuid
from concurrent.futures import CancelledError, ThreadPoolExecutor
from typing import Callable, List, Optional, Sequence, TypeVar

from joblib import Parallel, delayed, effective_n_jobs
from joblib.parallel import (
    LokyBackend,
    MultiprocessingBackend,
    SequentialBackend,
    ThreadingBackend,
    get_active_backend,
)

from .exceptions import ClusterError

#: joblib backends replaced by a local thread pool (gapy's work releases the GIL).
_LOCAL_BACKENDS = (LokyBackend, MultiprocessingBackend, ThreadingBackend)

#: Seconds a dask cluster may have no worker while gapy's tasks wait, before
#: :class:`~gapy.exceptions.ClusterError` (the dask setting
#: ``distributed.scheduler.no-workers-timeout``, when set, takes precedence).
NO_WORKERS_TIMEOUT = 60.0
#: Seconds between checks of a dask cluster while waiting for tasks.
_POLL = 1.0

Item = TypeVar("Item")
Result = TypeVar("Result")


def thread_map(function: Callable[..., Result], items: Sequence[Item], n_jobs: int = 1,
               progress=None, *, shared: Optional[object] = None) -> List[Result]:
    """``[function(item) for item in items]`` on ``n_jobs`` threads, in order.

    Parameters
    ----------
    function : callable
        ``function(item) -> result``, or ``function(item, shared=shared)`` when
        ``shared`` is given; called from worker threads when ``n_jobs > 1``.
    items : sequence
        The items (any iterable; it is consumed into a list).
    n_jobs : int, default=1
        Threads (``-1``: all cores), as in joblib.
    progress : tqdm progress bar, optional
        Advanced as items finish.
    shared : object, optional
        An input common to every call. On a dask cluster it is sent once per call of
        ``thread_map``, as a task the items depend on (recomputed if the worker holding
        it dies), instead of inside every task: give large inputs (sparse points) here
        and make ``function`` a small module-level function.

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
    >>> thread_map(lambda x, shared: x**shared, [1, 2, 3], shared=2)
    [1, 4, 9]
    """
    items = list(items)
    backend, _ = get_active_backend()
    n_workers = 1 if isinstance(backend, SequentialBackend) else min(effective_n_jobs(n_jobs), len(items))
    client = _dask_client(backend)
    if client is not None and items and runs_remotely(n_jobs):
        # even a single item goes to the cluster: it may be a file position only workers read
        return _dask_map(client, function, items, progress, shared)
    if shared is not None:
        function = functools.partial(_with_shared, function, shared)
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


def runs_remotely(n_jobs: int = 1) -> bool:
    """True when :func:`thread_map` sends work to another joblib backend (dask workers).

    Work that would ship large inputs can then send small handles (a file path and a
    position) that the workers read themselves.
    """
    backend, _ = get_active_backend()
    if isinstance(backend, (SequentialBackend,) + _LOCAL_BACKENDS):
        return False
    return effective_n_jobs(n_jobs) > 1


def _with_shared(function: Callable, shared, item):
    return function(item, shared=shared)


def _identity(value):
    return value


def _dask_client(backend):
    """The ``distributed.Client`` of joblib's dask backend, None for other backends."""
    if type(backend).__name__ != "DaskDistributedBackend":
        return None
    return getattr(backend, "client", None)


def _no_workers_timeout() -> float:
    try:
        import dask

        configured = dask.config.get("distributed.scheduler.no-workers-timeout", None)
        if configured is not None:
            return float(dask.utils.parse_timedelta(configured))
    except (ImportError, ValueError, TypeError):
        pass
    return float(NO_WORKERS_TIMEOUT)


def _dask_map(client, function: Callable, items: list, progress, shared=None) -> list:
    """``[function(item) for item in items]`` as tasks of ``client``, in order; with
    ``shared``, ``function(item, shared=shared)``, ``shared`` sent once as a task.

    Raises
    ------
    ClusterError
        The cluster went away: the scheduler connection was lost, the tasks were
        cancelled, a task killed ``allowed-failures`` workers, or no worker was there for
        :data:`NO_WORKERS_TIMEOUT` seconds.
    """
    name = re.sub(r"[^A-Za-z0-9_]", "", getattr(function, "__name__", "task")).strip("_") or "task"
    tag = uuid.uuid4().hex
    futures = []
    try:
        try:
            extra = {}
            if shared is not None:
                extra["shared"] = client.submit(_identity, shared, pure=False, key=f"gapy_shared-{tag}")
            futures = client.map(function, items, pure=False,
                                 key=[f"gapy_{name}-{tag}-{i}" for i in range(len(items))], **extra)
        except (OSError, CancelledError, RuntimeError) as error:
            raise _cluster_error(error) from error
        done = 0
        without_workers = None
        timeout = _no_workers_timeout()
        finished = _Countdown(futures)
        while not finished.wait(_POLL):
            _advance(progress, finished.count - done)
            done = finished.count
            if client.status in ("closing", "closed"):
                raise ClusterError(f"the dask client was closed while {len(items) - done} of gapy's tasks "
                                   "were running; nothing was fitted")
            try:
                n_workers = len(client.scheduler_info()["workers"])
            except Exception as error:  # the scheduler cannot be reached
                raise _cluster_error(error) from error
            if n_workers:
                without_workers = None
            elif without_workers is None:
                without_workers = time.monotonic()
            elif time.monotonic() - without_workers > timeout:
                raise ClusterError(
                    f"the dask cluster has had no worker for {timeout:.0f} s while {len(items) - done} of gapy's "
                    "tasks were waiting; nothing was fitted. Restart the workers and run again (gapy.parallel."
                    "NO_WORKERS_TIMEOUT or dask's distributed.scheduler.no-workers-timeout sets the wait)"
                )
        try:
            results = client.gather(futures)
        except (CancelledError, OSError) as error:
            raise _cluster_error(error) from error
        except Exception as error:
            if type(error).__name__ == "KilledWorker":
                raise _cluster_error(error) from error
            raise
        _advance(progress, len(items) - done)
        futures.clear()  # released now: dask frees the results on the workers
        _trim_memory()
        return results
    finally:
        unfinished = [future for future in futures if not future.done()]
        if unfinished:
            try:
                client.cancel(unfinished)
            except Exception:  # the cluster is gone already
                pass


class _Countdown:
    """Waits for dask futures without raising: set once every one of them has finished.

    ``distributed.wait(futures, timeout=...)`` signals a timeout by an exception that
    dask keeps in a reference cycle with the frames it passed through, the caller's
    included: the futures and the results gathered later in that frame then stay alive
    (on the workers and on the client) until Python's cyclic garbage collector runs,
    i.e. for many batches of a long fit. Done-callbacks and an event leave no cycle.

    Parameters
    ----------
    futures : list of distributed.Future
        The futures to wait for; finished counts done, failed and cancelled ones.
    """

    def __init__(self, futures: list):
        self.count = 0
        self._total = len(futures)
        self._lock = threading.Lock()
        self._event = threading.Event()
        if not futures:
            self._event.set()
        for future in futures:
            future.add_done_callback(self._one_done)

    def _one_done(self, _future) -> None:
        with self._lock:
            self.count += 1
            if self.count >= self._total:
                self._event.set()

    def wait(self, timeout: float) -> bool:
        """True once every future has finished; False after ``timeout`` seconds."""
        return self._event.wait(timeout)


def _trim_memory() -> None:
    """Give freed heap memory back to the system (glibc's ``malloc_trim``; a no-op elsewhere).

    Results of dask tasks arrive as buffers allocated on the client's communication
    thread and freed on the calling thread; without a trim the heap keeps them and the
    client's resident memory creeps up over a long fit.
    """
    global _LIBC
    if _LIBC is None:
        try:
            import ctypes

            _LIBC = ctypes.CDLL("libc.so.6")
            _LIBC.malloc_trim(0)
        except (OSError, AttributeError):
            _LIBC = False
    elif _LIBC:
        _LIBC.malloc_trim(0)


#: glibc, once loaded by :func:`_trim_memory` (False where there is none).
_LIBC = None


def _cluster_error(error: BaseException) -> ClusterError:
    if type(error).__name__ == "KilledWorker":
        what = ("a task was running on every worker that died, as many times as dask allows "
                "(distributed.scheduler.allowed-failures): a worker runs out of memory, or the cluster is "
                "being shut down")
    else:
        what = "the dask cluster went away (scheduler connection lost or tasks cancelled)"
    detail = str(error)
    detail = detail if len(detail) < 300 else detail[:300] + "..."
    return ClusterError(f"{what} ({type(error).__name__}: {detail}); nothing was fitted. Check the cluster and "
                        "run again")


def _advance(progress: Optional[object], n: int) -> None:
    if progress is not None:
        progress.update(n)


def physical_memory() -> float:
    """Bytes of memory of this machine (inf where the system does not say)."""
    try:
        return float(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return float("inf")
