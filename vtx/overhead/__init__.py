"""What virtualization costs: the accounting of runs (:class:`Stats`), cost
profiles per processor generation (:class:`Profile`), the cost model
(:func:`price`), the workload suite and the what-if studies
(docs/architecture.rst, "Accounting and cost profiles")."""

from .model import HOSTS, Cost, price
from .profiles import Profile, load_profile, profile_names, profiles
from .stats import ReasonStats, Stats

__all__ = ["Stats", "ReasonStats", "Profile", "load_profile", "profile_names", "profiles", "Cost", "price",
           "HOSTS", "Workload", "Measurement", "WORKLOADS", "run_workload", "run_suite", "what_if",
           "WHAT_IFS"]

_LAZY = {"Workload": "workloads", "Measurement": "workloads", "WORKLOADS": "workloads",
         "run_workload": "workloads", "run_suite": "suite", "what_if": "whatif", "WHAT_IFS": "whatif"}


def __getattr__(name):
    # The suite needs vtx.VM, which itself imports this package's stats:
    # loaded on first use.
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
