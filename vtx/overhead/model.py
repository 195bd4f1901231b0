"""The cost model: a run's counts and a cost profile give modeled cycles.

Cycles = guest instructions x CPI
       + per VM exit: the profile's round trip for its reason (exit + entry)
       + the handler's work, by who handles the exit (``host``):

  ``"x86"``    an x86 hypervisor in VMX root operation on the model (type 1):
               the instructions it ran between exit and entry x CPI, its
               VMREADs and VMWRITEs at the profile's prices;
  ``"type2"``  the Python hypervisor as a hosted VMM: a trivial exit's
               handling inside the kernel (``kvm_handler``) plus the world
               switch to the user-space VMM and back (``world_switch``), and
               the VMREADs and VMWRITEs it made through the API;
  ``"kvm"``    as type2, but only the exits KVM sends to user space pay the
               world switch (port I/O and MMIO: :data:`USERSPACE_REASONS`);
  ``"type1"``  as type2 with no world switch: the handler priced as if it ran
               in the kernel hypervisor.

Nothing here is fitted to a benchmark result: the profile's inputs are
published primitives (docs/reference/cost_profiles.rst), and the outputs are
what those results are compared with.
"""

import attrs

from ..spec import ExitReason
from .profiles import load_profile

__all__ = ["Cost", "price", "HOSTS", "USERSPACE_REASONS"]

HOSTS = ("type2", "kvm", "type1", "x86")

#: The exits KVM completes in user space (the VMM's device models): port I/O
#: and MMIO (an EPT violation on an unbacked address).
USERSPACE_REASONS = frozenset({ExitReason.IO_INSTRUCTION, ExitReason.EPT_VIOLATION})


@attrs.frozen
class Cost:
    """Modeled cycles of a run under one profile, split into ``guest`` (its
    instructions), ``round_trips`` (VM exits and entries), ``vmcs`` (VMREAD
    and VMWRITE), ``handler`` (the hypervisor's work: an x86 handler's
    instructions or the kernel hypervisor's handling) and ``world_switch``
    (the hosted trips to user space); ``per_reason`` the exits' cycles
    (round trip, handler and world switch) by reason."""

    profile: str
    host: str
    guest: float
    round_trips: float
    vmcs: float
    handler: float
    world_switch: float
    per_reason: dict = attrs.field(factory=dict)

    @property
    def total(self):
        return self.guest + self.round_trips + self.vmcs + self.handler + self.world_switch

    @property
    def overhead(self):
        """Everything but the guest's own instructions."""
        return self.total - self.guest

    def per(self, ops):
        """The split divided by ``ops`` operations."""
        return {k: v / ops for k, v in self.to_dict().items() if isinstance(v, (int, float))}

    def to_dict(self):
        return {"profile": self.profile, "host": self.host, "guest": self.guest,
                "round_trips": self.round_trips, "vmcs": self.vmcs, "handler": self.handler,
                "world_switch": self.world_switch, "total": self.total}


def _get(counts, name, default=0):
    if isinstance(counts, dict):
        return counts.get(name, default)
    return getattr(counts, name, default)


def price(counts, profile, host="type2", guest_instructions=None):
    """Modeled cycles (:class:`Cost`) of ``counts`` under ``profile`` (a
    :class:`~vtx.overhead.Profile`, a shipped profile's name or a TOML path).

    ``counts`` is a :class:`~vtx.overhead.Stats` (a run's or cumulative) or a
    dict with ``exits`` ({reason: count}) and optionally ``instructions``,
    ``handler_instructions``, ``vmread_x86``, ``vmwrite_x86`` (or, better,
    ``vmread_x86_exits`` and ``vmwrite_x86_exits``: those of the handlers),
    ``vmread_api``, ``vmwrite_api``.  ``guest_instructions`` defaults to
    ``instructions`` less ``handler_instructions`` (for an x86 hypervisor
    that also ran set-up code before its first VM entry, pass the guest's
    own count: ``Stats.guest_instructions``)."""
    p = load_profile(profile)
    if host not in HOSTS:
        raise ValueError(f"host is one of {', '.join(HOSTS)}, not {host!r}")
    exits = _get(counts, "exits", {})
    handler_insns = _get(counts, "handler_instructions")
    if guest_instructions is None:
        guest_instructions = _get(counts, "instructions") - handler_insns
    guest = guest_instructions * p.cpi
    per_reason = {}
    round_trips = handler = world = 0.0
    for reason, n in exits.items():
        key = ExitReason(reason) if not isinstance(reason, ExitReason) and \
            reason in ExitReason._value2member_map_ else reason
        rt = p.round_trip_of(key) * n
        h = ws = 0.0
        if host != "x86":
            h = p.kvm_handler * n
            if host == "type2" or (host == "kvm" and key in USERSPACE_REASONS):
                ws = p.world_switch * n
        round_trips += rt
        handler += h
        world += ws
        per_reason[key] = rt + h + ws
    if host == "x86":
        # Those of the handlers (between exit and entry) where counted so;
        # the hypervisor's set-up is not the workload's.
        vr = _get(counts, "vmread_x86_exits", None)
        vw = _get(counts, "vmwrite_x86_exits", None)
        if vr is None or vw is None:
            vr, vw = _get(counts, "vmread_x86"), _get(counts, "vmwrite_x86")
        # The VMREADs and VMWRITEs are among the handler's instructions:
        # priced once, at their own cost.
        handler += max(0, handler_insns - vr - vw) * p.cpi
    else:
        vr, vw = _get(counts, "vmread_api"), _get(counts, "vmwrite_api")
    vmcs = vr * p.vmread + vw * p.vmwrite
    return Cost(p.name, host, guest, round_trips, vmcs, handler, world, per_reason)
