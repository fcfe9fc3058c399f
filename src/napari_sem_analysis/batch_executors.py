"""Where a batch's images are computed: in this process, in local worker processes or on Dask distributed.

Each runner takes ``tasks`` (``(key, args)`` pairs), the function the workers run, and ``on_done(key, result)``,
which is always called in the calling process (it writes the results).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

from ._validation import SEMAnalysisError


def _worker_init() -> None:
    """Pool worker start-up: exit when the parent (the batch) dies, instead of running on.

    Linux: the kernel sends SIGKILL when the parent exits (``prctl(PR_SET_PDEATHSIG)``). Elsewhere,
    and as a check for a parent that died before this ran, a daemon thread polls the parent's pid.
    """
    import threading

    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            libc = ctypes.CDLL(None, use_errno=True)
            PR_SET_PDEATHSIG = 1
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent or parent == 1:
        os._exit(1)

    def watch():
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _result_or_failure(future, args) -> dict:
    """The worker's result, or an error record when the worker itself failed (killed, lost...)."""
    try:
        return future.result()
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        return {"file": str(args[1]), "status": "error", "error": f"worker failed: {type(exc).__name__}: {exc}"}


def _run_serial(tasks, func: Callable, on_done: Callable) -> None:
    for key, args in tasks:
        on_done(key, func(*args))


def _run_processes(tasks, func: Callable, on_done: Callable, jobs: int) -> None:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = mp.get_context("spawn")
    # workers exit when this process dies (even by SIGKILL) instead of running on for minutes
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init) as pool:
        futures = {pool.submit(func, *args): (key, args) for key, args in tasks}
        try:
            for fut in as_completed(futures):
                key, args = futures[fut]
                on_done(key, _result_or_failure(fut, args))
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _dask_client(scheduler, jobs: int):
    """(client, owned) for ``scheduler`` = "local", an address, a Client or a cluster."""
    from distributed import Client, LocalCluster

    if isinstance(scheduler, Client):
        return scheduler, []
    if hasattr(scheduler, "scheduler_address") and not isinstance(scheduler, str):
        client = Client(scheduler)
        return client, [client]
    if scheduler in ("local", "", True):
        cluster = LocalCluster(n_workers=max(1, jobs), threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
        return client, [client, cluster]
    try:
        client = Client(str(scheduler), timeout="20s")
    except Exception as exc:
        raise SEMAnalysisError(f"cannot connect to the Dask scheduler at {scheduler}: {exc}") from exc
    return client, [client]


def _run_dask(tasks, func: Callable, on_done: Callable, scheduler, jobs: int) -> None:
    from distributed import as_completed

    client, owned = _dask_client(scheduler, jobs)
    try:
        futures = {}
        for key, args in tasks:
            # pure=False: each image is computed; retries for lost workers
            fut = client.submit(func, *args, pure=False, retries=1, key=f"sem-{key}-{time.time_ns()}")
            futures[fut] = (key, args)
        try:
            for fut in as_completed(list(futures)):
                key, args = futures[fut]
                on_done(key, _result_or_failure(fut, args))
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    finally:
        for obj in owned:
            obj.close()
