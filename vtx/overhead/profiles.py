"""Cost profiles: per processor generation, the price in cycles of the
primitives of hardware-assisted virtualization, each number with its source.

A profile is a small TOML file (``vtx/overhead/profiles/*.toml``, read with
importlib.resources); copy one, edit it, and load the copy with
:func:`load_profile`.  docs/reference/cost_profiles.rst lists every number
with its source.
"""

import importlib.resources
import os

import attrs

try:
    import tomllib
except ImportError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from ..spec import ExitReason

__all__ = ["Profile", "load_profile", "profile_names", "profiles", "DEFAULT_PROFILES"]

#: The profiles shipped with vtx, oldest first.
DEFAULT_PROFILES = ("p4-prescott", "core2-merom", "core2-penryn", "nehalem", "westmere-sandybridge",
                    "haswell-coffeelake")

_KEYS = ("cpi", "round_trip", "vmread", "vmwrite", "kvm_handler", "world_switch")


@attrs.frozen
class Profile:
    """Cycles per primitive: ``cpi`` per instruction retired,
    ``round_trip`` per minimal VM exit + VM entry (``round_trip_by_reason``
    where a reason's differs), ``vmread`` and ``vmwrite`` per VMCS access,
    ``kvm_handler`` for a trivial exit's handling inside a kernel
    hypervisor, ``world_switch`` for the hosted (type 2) trip to a
    user-space VMM and back.  ``sources`` says where each number comes
    from, ``references`` expands the keys the sources use."""

    name: str
    cpu: str
    cpi: float
    round_trip: float
    vmread: float
    vmwrite: float
    kvm_handler: float
    world_switch: float
    round_trip_by_reason: dict = attrs.field(factory=dict)
    sources: dict = attrs.field(factory=dict)
    references: dict = attrs.field(factory=dict)
    path: str = ""

    def round_trip_of(self, reason):
        """The round trip of a VM exit for ``reason`` and the entry after it."""
        return self.round_trip_by_reason.get(reason, self.round_trip)

    @classmethod
    def from_dict(cls, d, path=""):
        where = path or "it"
        if not isinstance(d, dict):
            raise ValueError(f"a cost profile is a table (name, cpu, [cycles]), not {d!r}")
        try:
            name, cpu, cyc = d["name"], d["cpu"], d["cycles"]
        except KeyError as e:
            raise ValueError(f"a cost profile needs name, cpu and [cycles]; {where} has no {e}") from None
        if not isinstance(name, str) or not isinstance(cpu, str):
            raise ValueError(f"a cost profile's name and cpu are strings; {where} has name = {name!r}, "
                             f"cpu = {cpu!r}")
        for table in ("cycles", "round_trip_by_reason", "sources", "references"):
            if table in d and not isinstance(d[table], dict):
                raise ValueError(f"the profile {name!r}: {table} is a table ([{table}]), not {d[table]!r}")
        missing = [k for k in _KEYS if k not in cyc]
        if missing:
            raise ValueError(f"the profile {name!r} has no {', '.join(missing)} in [cycles]")
        # A key the model does not read is most likely a misspelling or a
        # price it has no place for (an instruction class): said, not
        # silently ignored.
        unknown = [k for k in cyc if k not in _KEYS]
        if unknown:
            raise ValueError(f"the profile {name!r}: [cycles] has {', '.join(map(repr, unknown))}, which the "
                             f"cost model does not read (it reads {', '.join(_KEYS)})")
        for k in _KEYS:
            v = cyc[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"the profile {name!r}: {k} is a number of cycles >= 0, not {v!r}")
        by_reason = {}
        for r, v in d.get("round_trip_by_reason", {}).items():
            try:
                key = ExitReason[r]
            except KeyError:
                raise ValueError(f"the profile {name!r}: {r!r} in [round_trip_by_reason] is not an exit "
                                 f"reason name") from None
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"the profile {name!r}: the round trip of {r} is a number >= 0, not {v!r}")
            by_reason[key] = v
        return cls(name, cpu, *(cyc[k] for k in _KEYS), by_reason, dict(d.get("sources", {})),
                   dict(d.get("references", {})), path)

    def to_dict(self):
        return {"name": self.name, "cpu": self.cpu, "cycles": {k: getattr(self, k) for k in _KEYS},
                "round_trip_by_reason": {r.name: v for r, v in self.round_trip_by_reason.items()},
                "sources": dict(self.sources), "path": self.path}


def profile_names():
    """The names of the profiles shipped with vtx, oldest first."""
    return DEFAULT_PROFILES


def load_profile(which):
    """A :class:`Profile`: a shipped one by name (:func:`profile_names`), or
    a TOML file by path, or a Profile (returned as is)."""
    if isinstance(which, Profile):
        return which
    if not isinstance(which, (str, os.PathLike)):
        raise TypeError(f"a profile is a name, a path or a Profile, not {which!r}")
    text = str(which)
    if text in DEFAULT_PROFILES:
        res = importlib.resources.files(__package__).joinpath("profiles").joinpath(text + ".toml")
        with res.open("rb") as f:
            return Profile.from_dict(tomllib.load(f), f"vtx/overhead/profiles/{text}.toml")
    if os.path.isfile(text):
        with open(text, "rb") as f:
            try:
                data = tomllib.load(f)
            except tomllib.TOMLDecodeError as e:
                raise ValueError(f"the cost profile {text} is not valid TOML: {e}") from None
        return Profile.from_dict(data, text)
    raise ValueError(f"no cost profile {text!r}: a name of {', '.join(DEFAULT_PROFILES)}, or a TOML file")


def profiles(names=None):
    """Profiles by name or path (default: every shipped one)."""
    return [load_profile(n) for n in (names or DEFAULT_PROFILES)]
