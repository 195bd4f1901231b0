"""Case ids: every fuzz case is named ``campaign:mode:seed:index:budget``
(for example ``streams:long:7:1234:2000``) and its spec is a pure function of
that name, so any case can be rebuilt anywhere (``--replay``, the triage of
a crash, a reproducer).  The mode is part of the id because ``--mode all``
gives index i the mode MODES[i % 3].
"""

import random

CAMPAIGNS = ("streams", "vmcs", "root")
MODES = ("real", "protected", "long")
BITS = {"real": 16, "protected": 32, "long": 64}

#: The default --budget (the most instructions + events a case may run).
DEFAULT_BUDGET = {"streams": 2000, "vmcs": 200, "root": 3000}


def mode_of(mode_arg, index):
    """The mode of case index under --mode mode_arg ("all" cycles through them)."""
    return MODES[index % 3] if mode_arg == "all" else mode_arg


def case_id(campaign, mode, seed, index, budget):
    return f"{campaign}:{mode}:{seed}:{index}:{budget}"


def parse_case_id(cid):
    """(campaign, mode, seed, index, budget) of a case id; ValueError if malformed."""
    parts = cid.strip().split(":")
    if len(parts) != 5 or parts[0] not in CAMPAIGNS or parts[1] not in MODES:
        raise ValueError(f"a case id is campaign:mode:seed:index:budget "
                         f"(campaign {'|'.join(CAMPAIGNS)}, mode {'|'.join(MODES)}), not {cid!r}")
    try:
        seed, index, budget = int(parts[2]), int(parts[3]), int(parts[4])
    except ValueError:
        raise ValueError(f"seed, index and budget of a case id are integers: {cid!r}") from None
    if index < 0 or budget <= 0:
        raise ValueError(f"index must be >= 0 and budget > 0 in {cid!r}")
    return parts[0], parts[1], seed, index, budget


def make_spec(cid):
    """The spec (see harness.py) of a case id."""
    campaign, mode, seed, index, budget = parse_case_id(cid)
    # Seeding with the id string is deterministic (SHA-512 of the string,
    # independent of PYTHONHASHSEED), so the id alone rebuilds the case.
    rng = random.Random(cid)
    if campaign == "streams":
        from .streams import make_stream_spec
        spec = make_stream_spec(rng, mode, budget)
    elif campaign == "vmcs":
        from .vmcs import make_vmcs_spec
        spec = make_vmcs_spec(rng, mode, budget)
    else:
        from .root import make_root_spec
        spec = make_root_spec(rng, mode, budget)
    spec["id"] = cid
    return spec
