"""Find, for each input of each VM-entry check, a VMCS that shows the dependency.

For every pair (check K, field F) of vtx/spec/entry_checks.py INPUTS this
searches a VMCS state S0 that passes every check and a new value of F alone
after which the full pass fails first at K.  tests/test_vmx_entry_dirty.py
replays each scenario as a VMRESUME from S0: if F were missing from K's inputs,
the incremental checks would not run K and the entry would pass or fail
elsewhere (docs/architecture.rst, "Entry checks at VMRESUME").

S0 starts from the VMCS of vm.setup_{real,protected,long}_mode, with some of
the templates below (virtual-8086 mode, ring 3 without "unrestricted guest",
compatibility mode, PAE paging, blocking by STI, event injection, ...) and
random changes of K's other inputs that keep it valid; the scenario kept is
minimized.  Some inputs cannot show alone (another check that reads the same
change fails first, or the model's capabilities forbid the setting): those
are listed as not found, and stay in INPUTS because the code reads them.

Usage::

    python tools/entry_check_scenarios.py [--seed N] [--trials N] > tests/entry_check_scenarios.py

writes the module of scenarios the test replays; the pairs not found go to
stderr too.  ``--negative --trials 100`` searches the other way: a change of
bits that INPUTS says a check does not read, after which that check fails
first (a missing input; none is known).
"""

import argparse
import random
import sys

import vtx
from vtx import EntryControls as EC, ExitControls as XC, ProcBased as PB, ProcBased2 as PB2, VmcsField as F
from vtx.spec import FIELDS, field_size
from vtx.spec.entry_checks import ALWAYS, INPUTS

CODE = 0x1000
NONCANON = 0x0000800000000000
# (vtx._core.PRIV_BASE: where the hosted hypervisor's VMCS is, for the link-pointer rule)
SPECIAL = [0, 1, 2, 3, 4, 8, 0xF3, 0x93, 0x9B, 0x8B, 0x83, 0x82, 0xFFFF, 0x10000, 0xFFFFF, 0xFFFFFFFF, 1 << 32,
           NONCANON, NONCANON - 1, 0xFFFF800000000000, (1 << 64) - 1, 0x80000000, 0x7FFFFFFF, vtx._core.PRIV_BASE]
BITS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 19, 20, 21, 31, 32, 38, 39, 47, 48, 63]
V86_SEGS = [w for s in ("ES", "CS", "SS", "DS", "FS", "GS")
            for w in ((f"GUEST_{s}_SELECTOR", 0x100), (f"GUEST_{s}_BASE", 0x1000),
                      (f"GUEST_{s}_LIMIT", 0xFFFF), (f"GUEST_{s}_ACCESS_RIGHTS", 0xF3))]
RING3 = [("GUEST_CS_SELECTOR", 0x1B), ("GUEST_CS_ACCESS_RIGHTS", 0xC0FB), ("GUEST_SS_SELECTOR", 0x23),
         ("GUEST_SS_ACCESS_RIGHTS", 0xC0F3)] + [(f"GUEST_{s}_{k}", v) for s in ("DS", "ES", "FS", "GS")
                                                  for k, v in (("SELECTOR", 0x23), ("ACCESS_RIGHTS", 0xC0F3))]


def ctl(field, set_=0, clear=0):
    return (field, lambda old: (old | int(set_)) & ~int(clear))


# Everything "IA-32e mode guest" needs but the control itself (EFER is not loaded).
PRE_IA32E = [ctl("VM_ENTRY_CONTROLS", clear=EC.LOAD_IA32_EFER), ctl("GUEST_CR0", set_=1 | (1 << 31)),
             ctl("GUEST_CR4", set_=1 << 5)]
NO_SECONDARY = [ctl("PRIMARY_PROC_BASED_CONTROLS", clear=PB.ACTIVATE_SECONDARY_CONTROLS),
                ctl("GUEST_CR0", set_=1 | (1 << 31))]

#: Writes that take the VMCS of a mode to an unusual valid state (a template
#: is kept whole if the state still passes every check, else dropped).
TEMPLATES = {
    "v86": [("GUEST_RFLAGS", 0x20002)] + V86_SEGS,
    "v86-rpl3-ss": [("GUEST_RFLAGS", 0x20002)] + V86_SEGS + [("GUEST_SS_SELECTOR", 0x103), ("GUEST_SS_BASE", 0x1030)],
    "no-ug": [ctl("SECONDARY_PROC_BASED_CONTROLS", clear=PB2.UNRESTRICTED_GUEST),
              ctl("GUEST_CR0", set_=1 | (1 << 31))],
    "ring3": RING3,
    "compat": [("GUEST_CS_ACCESS_RIGHTS", 0xC09B)],
    "rip-high": [("GUEST_RIP", 1 << 32)],
    "pae": [ctl("GUEST_CR0", set_=1 | (1 << 31)), ctl("GUEST_CR4", set_=1 << 5)],
    "pae-no-ept": [ctl("SECONDARY_PROC_BASED_CONTROLS", clear=PB2.UNRESTRICTED_GUEST | PB2.ENABLE_EPT),
                   ctl("GUEST_CR0", set_=1 | (1 << 31)), ctl("GUEST_CR4", set_=1 << 5), ("GUEST_CR3", 0x20000)],
    "sti": [ctl("GUEST_RFLAGS", set_=1 << 9), ("GUEST_INTERRUPTIBILITY_STATE", 1)],
    "if": [ctl("GUEST_RFLAGS", set_=1 << 9)],
    "hlt": [("GUEST_ACTIVITY_STATE", 1)],
    "inject-ext": [ctl("GUEST_RFLAGS", set_=1 << 9), ("VM_ENTRY_INTERRUPTION_INFO", 0x80000020)],
    "inject-nmi": [("VM_ENTRY_INTERRUPTION_INFO", 0x80000202)],
    "inject-gp": [("VM_ENTRY_INTERRUPTION_INFO", 0x80000B0D)],
    "inject-ud": [("VM_ENTRY_INTERRUPTION_INFO", 0x80000306)],
    "inject-int": [("VM_ENTRY_INSTRUCTION_LENGTH", 2), ("VM_ENTRY_INTERRUPTION_INFO", 0x80000480)],
    "inject-gp-no-error-code": [("VM_ENTRY_INTERRUPTION_INFO", 0x8000030D)],
    "nmi-exiting": [ctl("PIN_BASED_CONTROLS", set_=1 << 3)],
    "preemption-timer": [ctl("PIN_BASED_CONTROLS", set_=1 << 6)],
    "save-preemption-timer": [ctl("PIN_BASED_CONTROLS", set_=1 << 6), ctl("VM_EXIT_CONTROLS", set_=1 << 22)],
    "inject-mtf": [("VM_ENTRY_INTERRUPTION_INFO", 0x80000700)],
    "virtual-nmis": [ctl("PIN_BASED_CONTROLS", set_=(1 << 3) | (1 << 5))],
    "inject-nmi-nmi-blocked": [ctl("PIN_BASED_CONTROLS", set_=1 << 3), ("GUEST_INTERRUPTIBILITY_STATE", 8),
                               ("VM_ENTRY_INTERRUPTION_INFO", 0x80000202)],
    "vpid-0-inactive": NO_SECONDARY + [ctl("SECONDARY_PROC_BASED_CONTROLS", set_=PB2.ENABLE_VPID),
                                       ("VIRTUAL_PROCESSOR_ID", 0)],
    "ug-without-ept-inactive": NO_SECONDARY + [ctl("SECONDARY_PROC_BASED_CONTROLS", clear=PB2.ENABLE_EPT)],
    "ldtr": [("GUEST_LDTR_SELECTOR", 0x28), ("GUEST_LDTR_ACCESS_RIGHTS", 0x82), ("GUEST_LDTR_LIMIT", 0xFFF)],
    "ss-unusable": [("GUEST_SS_ACCESS_RIGHTS", 0x10000)],
    "ds-unusable": [("GUEST_DS_ACCESS_RIGHTS", 0x10000)],
    "tr-286": [("GUEST_TR_ACCESS_RIGHTS", 0x83)],
    "debug-ctls": [ctl("VM_ENTRY_CONTROLS", set_=EC.LOAD_DEBUG_CONTROLS)],
    "no-debug-ctls": [ctl("VM_ENTRY_CONTROLS", clear=EC.LOAD_DEBUG_CONTROLS)],
    "no-load-efer": [ctl("VM_ENTRY_CONTROLS", clear=EC.LOAD_IA32_EFER)],
    "no-load-pat": [ctl("VM_ENTRY_CONTROLS", clear=EC.LOAD_IA32_PAT)],
    "exit-no-efer": [ctl("VM_EXIT_CONTROLS", clear=XC.LOAD_IA32_EFER)],
    "exit-no-pat": [ctl("VM_EXIT_CONTROLS", clear=XC.LOAD_IA32_PAT)],
    "io-bitmaps": [ctl("PRIMARY_PROC_BASED_CONTROLS", set_=PB.USE_IO_BITMAPS)],
    "msr-bitmaps": [ctl("PRIMARY_PROC_BASED_CONTROLS", set_=PB.USE_MSR_BITMAPS)],
    "vpid": [ctl("SECONDARY_PROC_BASED_CONTROLS", set_=PB2.ENABLE_VPID), ("VIRTUAL_PROCESSOR_ID", 1)],
    "no-secondary": [ctl("SECONDARY_PROC_BASED_CONTROLS", clear=PB2.UNRESTRICTED_GUEST),
                     ctl("GUEST_CR0", set_=1 | (1 << 31)),
                     ctl("PRIMARY_PROC_BASED_CONTROLS", clear=PB.ACTIVATE_SECONDARY_CONTROLS)],
    "cr0-pe-off": [ctl("GUEST_CR0", clear=1 | (1 << 31))],
    "dr7-high-unloaded": [ctl("VM_ENTRY_CONTROLS", clear=EC.LOAD_DEBUG_CONTROLS), ("GUEST_DR7", 1 << 32)],
    "rpl3-under-ug": [ctl("GUEST_CR0", set_=1 | (1 << 31)), ("GUEST_CS_SELECTOR", 0x0B), ("GUEST_SS_SELECTOR", 0x13)],
    "pre-ia32e": PRE_IA32E,
    "pre-ia32e-cs-l-db": PRE_IA32E + [("GUEST_CS_ACCESS_RIGHTS", 0xE09B)],
    "pre-ia32e-tr-286": PRE_IA32E + [("GUEST_TR_ACCESS_RIGHTS", 0x83)],
    "code-conforming": [("GUEST_CS_ACCESS_RIGHTS", 0xC09F)],
    # (an area the checks of 27.2.1.3 accept; check_entry() does not load it)
    "entry-msr-area": [("VM_ENTRY_MSR_LOAD_ADDRESS", 0x6000), ("VM_ENTRY_MSR_LOAD_COUNT", 1)],
    "entry-msr-area-high": [("VM_ENTRY_MSR_LOAD_ADDRESS", (1 << 39) - 0x100), ("VM_ENTRY_MSR_LOAD_COUNT", 8)],
    "exit-msr-areas": [("VM_EXIT_MSR_STORE_ADDRESS", 0x6000), ("VM_EXIT_MSR_STORE_COUNT", 1),
                       ("VM_EXIT_MSR_LOAD_ADDRESS", 0x6100), ("VM_EXIT_MSR_LOAD_COUNT", 1)],
    "exit-msr-areas-high": [("VM_EXIT_MSR_STORE_ADDRESS", (1 << 39) - 0x100), ("VM_EXIT_MSR_STORE_COUNT", 8),
                            ("VM_EXIT_MSR_LOAD_ADDRESS", (1 << 39) - 0x100), ("VM_EXIT_MSR_LOAD_COUNT", 8)],
    "tf-mov-ss": [ctl("GUEST_RFLAGS", set_=1 << 8), ("GUEST_INTERRUPTIBILITY_STATE", 2),
                  ("GUEST_PENDING_DEBUG_EXCEPTIONS", 0x4000)],
    "tf-hlt": [ctl("GUEST_RFLAGS", set_=1 << 8), ("GUEST_ACTIVITY_STATE", 1), ("GUEST_PENDING_DEBUG_EXCEPTIONS", 0x4000)],
    "btf-hlt": [("GUEST_IA32_DEBUGCTL", 2), ("GUEST_ACTIVITY_STATE", 1)],
    "rtm": [("GUEST_PENDING_DEBUG_EXCEPTIONS", 0x1000)],
    "ldtr-g": [("GUEST_LDTR_SELECTOR", 0x28), ("GUEST_LDTR_ACCESS_RIGHTS", 0x8082), ("GUEST_LDTR_LIMIT", 0xFFFFFFFF)],
    "tr-g": [("GUEST_TR_ACCESS_RIGHTS", 0x808B), ("GUEST_TR_LIMIT", 0xFFFFFFFF)],
    "cs-type-3": [("GUEST_CS_ACCESS_RIGHTS", 0x93)],
}


#: Why some inputs cannot show alone (the search confirms it by finding nothing).
WHY = {
    ("GUEST_DR7", "VM_ENTRY_CONTROLS"): "'load debug controls' is fixed to 1 by IA32_VMX_TRUE_ENTRY_CTLS",
    ("GUEST_IA32_DEBUGCTL", "VM_ENTRY_CONTROLS"): "'load debug controls' is fixed to 1 by IA32_VMX_TRUE_ENTRY_CTLS",
    ("IA32E_MODE_GUEST_OUTSIDE_IA32E", "VM_ENTRY_CONTROLS"): "read only for x86 host code outside IA-32e mode, "
                                                            "whose VMCS is in RAM and checked in full at every entry",
    ("HOST_ADDRESS_SPACE_SIZE_OUTSIDE_IA32E", "VM_EXIT_CONTROLS"): "read only for x86 host code outside IA-32e "
                                                                  "mode (VMCS in RAM, checked in full)",
    ("HOST_CR4_PCIDE", "VM_EXIT_CONTROLS"): "with 'host address-space size' 0 the hosted hypervisor fails "
                                           "HOST_ADDRESS_SPACE_SIZE_IN_IA32E first",
    ("HOST_CR4_PCIDE", "HOST_CR4"): "read only with 'host address-space size' 0: x86 host code outside "
                                   "IA-32e mode (VMCS in RAM, checked in full)",
    ("HOST_RIP_HIGH_BITS", "VM_EXIT_CONTROLS"): "as HOST_CR4_PCIDE",
    ("HOST_RIP_HIGH_BITS", "HOST_RIP"): "as HOST_CR4_PCIDE",
    ("HOST_SS_SELECTOR_NULL", "VM_EXIT_CONTROLS"): "as HOST_CR4_PCIDE",
    ("HOST_SS_SELECTOR_NULL", "HOST_SS_SELECTOR"): "as HOST_CR4_PCIDE",
}


def make(mode):
    vm = vtx.VM(memory=1 << 20)
    vm.load(CODE, vtx.asm("out 0x80, al\nhlt", bits={"real": 16, "protected": 32, "long": 64}[mode], org=CODE))
    vm.add_vcpu()
    getattr(vm, f"setup_{mode}_mode")(entry=CODE)
    vm.default(lambda v, e: vtx.STOP)
    vm.run()
    return vm


def fields_of(check):
    return sorted({i if isinstance(i, str) else i[0] for i in INPUTS[check]})


class Search:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.vms = {m: make(m) for m in ("real", "protected", "long")}
        self.snap = {m: vm._machine.priv_bytes(0, 4096) for m, vm in self.vms.items()}

    def restore(self, mode):
        vm = self.vms[mode]
        vm._priv[0:4096] = self.snap[mode]
        return vm.vcpu

    def value(self, old, width):
        rng = self.rng
        x = rng.random()
        ones = (1 << width) - 1
        if x < 0.45:
            return (old ^ (1 << rng.choice([b for b in BITS if b < width]))) & ones
        if x < 0.6:
            return (old ^ (1 << rng.randrange(width)) ^ (1 << rng.randrange(width))) & ones
        if x < 0.72:
            ar = rng.randrange(16) | (rng.random() < 0.8) << 4 | rng.randrange(4) << 5 | (rng.random() < 0.9) << 7
            ar |= (rng.random() < 0.3) << 13 | (rng.random() < 0.5) << 14 | (rng.random() < 0.5) << 15
            ar |= (rng.random() < 0.15) << 16
            return ar & ones
        return rng.choice(SPECIAL) & ones

    def write(self, v, name, value, kept):
        """Write; keep it (append to kept) only if every check still passes."""
        enc = int(F[name])
        old = v.vmread(enc)
        new = value(old) if callable(value) else value
        v.vmwrite(enc, new)
        if v.check_entry() is None:
            kept.append((name, new))
            return True
        v.vmwrite(enc, old)
        return False

    def replay(self, mode, writes):
        v = self.restore(mode)
        for name, val in writes:
            v.vmwrite(int(F[name]), val)
        return v

    def shows(self, mode, s0, f, new, k):
        v = self.replay(mode, s0)
        if v.check_entry() is not None or v.vmread(int(F[f])) == new:
            return False
        v.vmwrite(int(F[f]), new)
        err = v.check_entry()
        return err is not None and err.check == k

    def random_s0(self, ctx):
        """A random valid state: a mode, up to three templates (each kept whole
        if valid), then up to five valid changes of the fields in ctx.
        Returns (mode, vcpu, the writes made)."""
        rng = self.rng
        mode = rng.choice(("real", "protected", "long"))
        v = self.restore(mode)
        s0 = []
        for t in rng.sample(list(TEMPLATES), rng.randint(0, 3)):
            olds, news = [], []
            for name, val in TEMPLATES[t]:
                enc = int(F[name])
                olds.append((enc, v.vmread(enc)))
                new = val(v.vmread(enc)) if callable(val) else val
                v.vmwrite(enc, new)
                news.append((name, new))
            if v.check_entry() is None:
                s0 += news
            else:
                for enc, old in reversed(olds):
                    v.vmwrite(enc, old)
        for _ in range(rng.randint(0, 5)):
            g = rng.choice(ctx)
            self.write(v, g, lambda old, g=g: self.value(old, 8 * field_size(int(F[g]))), s0)
        return mode, v, s0

    def find(self, k, f, trials):
        ctx = fields_of(k)
        for _ in range(trials):
            mode, v, s0 = self.random_s0(ctx)
            enc = int(F[f])
            old = v.vmread(enc)
            new = self.value(old, 8 * field_size(enc))
            if new == old:
                continue
            v.vmwrite(enc, new)
            err = v.check_entry()
            if err is None or err.check != k:
                continue
            # Minimize: drop the writes of S0 that the scenario does not need
            # (later writes of a field win, so drop from the front).
            i = 0
            while i < len(s0):
                shorter = s0[:i] + s0[i + 1:]
                if self.shows(mode, shorter, f, new, k):
                    s0 = shorter
                else:
                    i += 1
            return mode, s0, new
        return None


HEADER = '''"""Scenarios of tests/test_vmx_entry_dirty.py: for each input F of each check K
(vtx/spec/entry_checks.py INPUTS), a VMCS state S0 that passes every check
and a new value of F alone after which the full pass fails first at K.

GENERATED by tools/entry_check_scenarios.py --seed {seed} --trials {trials};
run it again after changing INPUTS or the checks.
"""

# (check K, field F, mode of the VM, S0 as [(field, value)] on top of it, new value of F)
SCENARIOS = [
'''


def read_bits(check, field):
    """The bits of `field` that INPUTS says `check` reads (0: none)."""
    bits = 0
    for item in INPUTS[check]:
        name, b = (item, (1 << 64) - 1) if isinstance(item, str) else item
        if name == field:
            bits |= b
    return bits


def negative(search, trials):
    """The other direction: a change of a field confined to bits a check does
    not read (by INPUTS) must never make that check the first to fail.
    Prints each counterexample (a missing input); returns how many."""
    names = [n for n, e, _ in FIELDS if (e >> 10) & 3 != 1]       # all but the exit information
    bad = 0
    for k in INPUTS:
        if k in ALWAYS:
            continue
        ctx = fields_of(k)
        for f in names:
            enc = int(F[f])
            width = 8 * field_size(enc)
            free = ((1 << width) - 1) & ~read_bits(k, f)
            if not free:
                continue
            for _ in range(trials):
                mode, v, s0 = search.random_s0(ctx + [f])
                old = v.vmread(enc)
                new = (old & ~free) | (search.value(old, width) & free)
                if new == old:
                    continue
                v.vmwrite(enc, new)
                err = v.check_entry()
                if err is not None and err.check == k:
                    print(f"MISSING INPUT: {k} reads {f} ({mode}, S0 {s0}, {old:#x} -> {new:#x})", flush=True)
                    bad += 1
                    break
    return bad


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--trials", type=int, default=200000)
    ap.add_argument("--negative", action="store_true",
                    help="search instead for a check that reads a field (or bits) INPUTS does not list "
                         "(--trials per pair; a few hundred take minutes)")
    args = ap.parse_args(argv)
    search = Search(args.seed)
    if args.negative:
        bad = negative(search, args.trials)
        print(f"{bad} missing inputs found", file=sys.stderr)
        return 1 if bad else 0
    out = [HEADER.format(seed=args.seed, trials=args.trials)]
    missing = []
    for k in INPUTS:
        if k in ALWAYS:
            continue            # re-run at every VMRESUME: its inputs need no scenario
        for f in fields_of(k):
            r = search.find(k, f, args.trials)
            if r is None:
                missing.append((k, f))
                print(f"not found: {k} <- {f}", file=sys.stderr, flush=True)
                continue
            mode, s0, new = r
            items = [f"({n!r}, {v:#x})" for n, v in s0]
            rows = [", ".join(items[i:i + 2]) for i in range(0, len(items), 2)]
            out.append(f"    ({k!r}, {f!r}, {mode!r},\n")
            out.append("     [" + ",\n      ".join(rows) + f"], {new:#x}),\n")
    out.append("]\n\n")
    out.append("# Inputs no scenario was found for.  The code reads them, so they stay in INPUTS.\n")
    out.append("NOT_SHOWN = [\n" + "".join(f"    ({k!r}, {f!r}),    # {WHY.get((k, f), f'none found in {args.trials} trials')}\n"
                                          for k, f in missing) + "]\n")
    sys.stdout.write("".join(out))
    print(f"{len(missing)} pairs not found", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
