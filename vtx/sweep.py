"""Many VMs at once: fan a sweep of independent runs out over processes.

A VM's run releases the GIL for as long as the guest runs in the core
(``with nogil`` around VM entry and each slice of guest execution in
vtx/_core.pyx), so VMs in separate threads run in parallel between their
exits; the exits themselves (Python handlers) take the GIL.  A sweep whose
runs exit often scales better over processes: :func:`sweep` maps a function
over a list of parameters with a :class:`concurrent.futures.ProcessPoolExecutor`
(or threads, or any executor the caller passes, such as the one of a Dask
cluster, ``distributed.Client(...).get_executor()``; docs/architecture.rst,
"Many VMs at once").  Each call builds its own VM: a VM cannot cross a
process boundary (it refuses to be pickled), its parameters and results can.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
from typing import Any, Callable, Iterable, List, Optional

__all__ = ["sweep", "default_workers"]


def default_workers() -> int:
    """The processors this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def sweep(fn: Callable[[Any], Any], items: Iterable[Any], workers: Optional[int] = None,
          kind: str = "process", executor: Optional[cf.Executor] = None) -> List[Any]:
    """``[fn(item) for item in items]``, computed in parallel, results in the
    order of ``items``.

    ``kind`` is "process" (a ProcessPoolExecutor of ``workers`` processes,
    default :func:`default_workers`; ``fn`` and the items and results must
    pickle, so ``fn`` is a module-level function), "thread" (a
    ThreadPoolExecutor: the VMs share the interpreter and run in parallel
    while their guests run) or "serial" (in this thread, for debugging).
    ``executor``, when given, is used instead (not shut down here): any
    object with ``map(fn, items)``, such as a Dask ``Client.get_executor()``
    or a Ray ``ray.util.multiprocessing.Pool``.  The first exception a call
    raises is raised here."""
    items = list(items)
    if executor is not None:
        return list(executor.map(fn, items))
    if kind == "serial" or not items:
        return [fn(item) for item in items]
    if workers is None:
        workers = default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers is a positive int, not {workers!r}")
    workers = min(workers, len(items))
    if kind == "process":
        pool = cf.ProcessPoolExecutor(max_workers=workers)
    elif kind == "thread":
        pool = cf.ThreadPoolExecutor(max_workers=workers)
    else:
        raise ValueError(f"kind is 'process', 'thread' or 'serial', not {kind!r}")
    with pool:
        return list(pool.map(fn, items))
