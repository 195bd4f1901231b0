"""One fuzz case: build its VM from a spec, run it, check the invariants.

A spec is a plain JSON-able dict that fully describes a case (memory size,
mode, code bytes and where they go, extra memory contents, registers, the
exception bitmap, VMCS mutations, the exit handler's policy and the budget);
streams.py and vmcs.py make specs from case ids, and the minimizer edits them.

A streams case may run several times in a row (spec["more"]: small budgets
first), so that a REP string or an event loop cut off by the budget must
resume correctly; every run is held to its own budget.

This module is deliberately self-contained (the standard library and vtx
only): a reproducer script embeds its source verbatim, so the reproducer
runs exactly the code the fuzzer ran.

The invariants (each violation is a finding, a dict with kind, key, detail):

- ``overrun`` / ``underrun``: instructions + events of a run exceed the
  budget + 1, or a run that stopped on the budget did less than the budget;
- ``reentry``: after an exit, the budget, a halt or a handler's exception,
  the saved state does not pass the VM-entry checks, or a VMRESUME inside a
  run fails (streams only: a mutated VMCS may legitimately be unenterable);
- ``memory``: the hypervisor's private memory outside the VMCS page changed;
- ``inspect``: reading a register, a VMCS field or an exit's attributes
  raised something other than a vtx error;
- ``python``: a non-vtx exception escaped vm.run (or building the case);
- ``internal``: a vtx error with no message or an internal-error message;
- ``check_entry``: check_entry() had side effects or disagreed with the
  entry that followed (VMCS campaign);
- ``entry_checks``: a VMRESUME's incremental entry checks disagreed with the
  full pass (every case runs in the verification mode,
  docs/architecture.rst "Entry checks at VMRESUME");
- ``nested_run``: vm.run() called from inside a handler did not raise
  VmStateError;
- ``rerun`` (root campaign): BareMetal.run() refused to run (VmStateError)
  although no Python VMLAUNCH/VMRESUME had made Python the root-mode
  software, so x86 code was there to go on;
- ``host`` (root campaign): a VM exit returned to Python though x86 code
  is the root-mode software.

The root campaign (a vtx.BareMetal machine, spec["calls"]) holds each run
to the same budget rule (root and non-root instructions count together),
lets only VmFail, VmEntryError, VmStateError, GuestMemoryError and other
vtx errors with a real message escape run() and the processor's methods,
reads every property of hw.cpu and every VMCS field after each run, and
checks that the private slot is never written.

Crashes and hangs cannot be seen from inside; the parent process sees them.
"""

import inspect as _inspect
import os
import random
import time
import traceback

import vtx
from vtx.errors import EntryCheckMismatch
from vtx.spec import FIELDS, MODEL_FIELDS, FieldWidth, field_info
from vtx.spec.registers import ALL_NAMES

F = vtx.VmcsField
R = vtx.ExitReason

#: Private memory [0, VMCS_PAGE) is the VMCS, which exits write legitimately.
VMCS_PAGE = 0x1000

#: Every register name the API has: the spec table plus the vCPU's properties.
REGISTER_NAMES = sorted(set(ALL_NAMES) | {
    n for n in dir(vtx.VCpu)
    if not n.startswith("_") and _inspect.isdatadescriptor(getattr(vtx.VCpu, n))})

#: Every VMCS encoding VMREAD accepts: each field, and the high half of the 64-bit ones.
FIELD_ENCODINGS = [enc for n, enc, _d in FIELDS if n in MODEL_FIELDS] + [
    enc | 1 for n, enc, _d in FIELDS if n in MODEL_FIELDS and field_info(enc).width == FieldWidth.BITS64]

#: Test-only hook (tests/test_fuzz.py): "crash", "hang" or "overrun" makes a
#: case that carries the marker abort, hang or report a fake overrun, so the
#: tests can prove that the parent notices, minimizes and reports.
SELFTEST = os.environ.get("VTX_FUZZ_SELFTEST", "")
SELFTEST_BYTE = 0xF1                 # a streams case whose code holds this byte
SELFTEST_FIELD = int(F.GUEST_DR7)    # a vmcs case that mutates this field


def read_every_field(vmread, what, findings):
    """VMREAD every field of the model: vtx errors are answers, anything
    else is an "inspect" finding."""
    for enc in FIELD_ENCODINGS:
        try:
            vmread(enc)
        except vtx.VtxError:
            pass
        except Exception as ex:               # noqa: BLE001
            findings.append(finding("inspect", f"vmread {enc:#x}",
                                    f"{what}({enc:#x}) raised {type(ex).__name__}: {ex}"))


class HandlerRaised(Exception):
    """What the fuzz handler raises on purpose: the run must stop with it and
    leave the VM consistent (re-enterable)."""


def finding(kind, key, detail):
    return {"kind": kind, "key": str(key), "detail": str(detail)}


# --- building the VM ------------------------------------------------------------

def real_mode_cs(code_at, cs=None):
    """A CS selector from which IP can reach linear code_at (IP <= 0xFFFF):
    the spec's own when it works (the minimizer may move the code)."""
    if cs is not None and 0 <= code_at - 16 * cs <= 0xFFFF:
        return cs
    return max(0, min(0xFFFF, (code_at >> 4) - 0xFF0))


def code_address(spec, code):
    """Where the code goes: fixed, or ending exactly at the end of RAM."""
    if spec.get("code_at_end"):
        return spec["memory"] - len(code)
    return spec["code_at"]


def run_streams(vm, v, spec, findings, info):
    """The streams campaign: the run, then the runs of spec["more"] (each
    continues where the last stopped, so a REP or an event loop cut by the
    budget is resumed), each with its own budget, each followed by the
    re-entry check."""
    budgets = [spec["budget"]] + list(spec.get("more", ()))
    n = ev = 0
    for budget in budgets:
        entries = v.entries
        outcome, last, n1, ev1 = one_run(vm, v, budget, findings, info)
        n, ev = n + n1, ev + ev1
        if outcome.startswith("entry:") and v.entries != entries:
            # The first entry passed, so the state a VM exit saved (and the
            # handler left valid) failed: the same invariant as below.
            findings.append(finding("reentry", outcome[6:], "VMRESUME after an exit failed: "
                                    + info.get("error", "")))
        inspect_vm(v, last, findings)
        if not (outcome.startswith("exit:") or outcome in ("budget", "halted", "handler-raised")):
            break
        check_reentry(v, findings)
    return outcome, last, n, ev


def apply_mutation(v, enc, op, value):
    """vmwrite one field: "set" value, or "xor", "or" or "add" it to the
    field's current value."""
    width = 32 if enc & 1 else {FieldWidth.BITS16: 16, FieldWidth.BITS32: 32}.get(field_info(enc).width, 64)
    if op == "xor":
        value ^= v.vmread(enc)
    elif op == "or":
        value |= v.vmread(enc)
    elif op == "add":
        value += v.vmread(enc)
    v.vmwrite(enc, value & ((1 << width) - 1))


def build(spec):
    """The VM and vCPU of a spec, ready to run."""
    vm = vtx.VM(memory=spec["memory"])
    v = vm.add_vcpu()
    code = bytes.fromhex(spec["code"])
    at = code_address(spec, code)
    mode = spec["mode"]
    if mode == "real":
        cs = real_mode_cs(at, spec.get("cs"))
        vm.setup_real_mode(entry=at - 16 * cs, cs=cs)
    elif mode == "protected":
        vm.setup_protected_mode(entry=at, tables=spec.get("tables"))
    else:
        vm.setup_long_mode(entry=at, tables=spec.get("tables"))
    for addr, data in spec.get("fill", ()):
        vm.write(addr, bytes.fromhex(data))
    vm.write(at, code)
    for name, value in spec.get("regs", {}).items():
        setattr(v, name, value)
    if spec.get("cr4_or"):
        v.cr4 = v.cr4 | spec["cr4_or"]
    for name, seg in spec.get("segs", {}).items():
        setattr(v, name, vtx.Segment(*seg))
    if spec.get("idtr") is not None:
        v.idtr = vtx.DescriptorTable(*spec["idtr"])
    if spec.get("exception_bitmap") is not None:
        v.vmwrite(F.EXCEPTION_BITMAP, spec["exception_bitmap"])
    for enc, op, value in spec.get("vmwrites", ()):
        apply_mutation(v, enc, op, value)
    return vm, v


# --- the exit handler -------------------------------------------------------------

class Handler:
    """An exit handler that picks RESUME, RETRY or STOP at random (seeded by
    the spec, so a case replays exactly), answers IN/CPUID/RDMSR with values,
    sometimes changes state before a RETRY, and rarely raises or probes a
    nested vm.run().  It stops after ``max_exits`` exits so that a RETRY of
    a faulting instruction cannot loop forever."""

    def __init__(self, vm, spec, findings):
        h = spec["handler"]
        self.vm = vm
        self.rng = random.Random(h["seed"])
        self.p_stop = h["stop"]
        self.p_retry = h["retry"]
        self.p_raise = h.get("raise", 0.0)
        self.p_nested = h.get("nested", 0.0)
        self.max_exits = h["max_exits"]
        self.exits = 0
        self.findings = findings
        code = bytes.fromhex(spec["code"])
        self.code_len = max(1, len(code))
        at = code_address(spec, code)
        self.code_rip = at - 16 * real_mode_cs(at, spec.get("cs")) if spec["mode"] == "real" else at

    def __call__(self, v, e):
        rng = self.rng
        self.exits += 1
        if self.exits > self.max_exits:
            return vtx.STOP
        if rng.random() < self.p_nested:
            self.probe_nested_run()
        if rng.random() < self.p_raise:
            raise HandlerRaised(f"on purpose, at exit {self.exits}")
        reason = e.reason
        if reason == R.IO_INSTRUCTION and e.is_in and not e.string:
            v.rax = (v.rax & ~0xFFFFFFFF) | rng.getrandbits(32)
        elif reason == R.CPUID:
            v.eax, v.ebx, v.ecx, v.edx = v.model_cpuid(v.eax, v.ecx)
        elif reason == R.RDMSR:
            v.eax, v.edx = rng.getrandbits(32), rng.getrandbits(32)
        x = rng.random()
        if x < self.p_stop:
            return vtx.STOP
        if x < self.p_stop + self.p_retry or not e.instruction_length:
            y = rng.random()
            if y < 0.25:
                v.rip = self.code_rip + rng.randrange(self.code_len)
            elif y < 0.35:
                v.vmwrite(F.EXCEPTION_BITMAP, rng.getrandbits(32))
            elif y < 0.45:
                v.rcx = rng.choice((0, 1, 0xFFFF, 0xFFFFFFFF, (1 << 64) - 1, rng.getrandbits(64)))
            elif not e.instruction_length and y > 0.8:
                return vtx.STOP
            return vtx.RETRY
        return vtx.RESUME

    def probe_nested_run(self):
        try:
            self.vm.run(max_instructions=1)
        except vtx.VmStateError:
            return
        except BaseException as ex:           # noqa: BLE001 - any other outcome is the finding
            self.findings.append(finding("nested_run", type(ex).__name__,
                                         f"vm.run() inside a handler raised {type(ex).__name__}: {ex}"))
            return
        self.findings.append(finding("nested_run", "returned",
                                     "vm.run() inside a handler returned instead of raising VmStateError"))


# --- invariants -------------------------------------------------------------------

def inspect_vm(v, last_exit, findings):
    """Read every register, every VMCS field and the exit's attributes."""
    for name in REGISTER_NAMES:
        try:
            getattr(v, name)
        except vtx.VtxError:
            pass
        except Exception as ex:               # noqa: BLE001
            findings.append(finding("inspect", name, f"reading vcpu.{name} raised {type(ex).__name__}: {ex}"))
    read_every_field(v.vmread, "vmread", findings)
    if last_exit is not None:
        for name in dir(type(last_exit)):
            if name.startswith("_"):
                continue
            try:
                getattr(last_exit, name)
            except vtx.VtxError:
                pass
            except Exception as ex:           # noqa: BLE001
                findings.append(finding("inspect", f"exit.{name}",
                                        f"reading {type(last_exit).__name__}.{name} raised "
                                        f"{type(ex).__name__}: {ex}"))
        try:
            repr(last_exit)
        except Exception as ex:               # noqa: BLE001
            findings.append(finding("inspect", "repr(exit)", f"{type(ex).__name__}: {ex}"))


def check_budget(budget, stop, instructions, events, findings):
    total = instructions + events
    if total > budget + 1:
        findings.append(finding("overrun", stop,
                                f"budget {budget}, but {instructions} instructions + {events} events "
                                f"= {total} (stop {stop!r})"))
    elif stop == "budget" and total < budget:
        findings.append(finding("underrun", stop,
                                f"stopped on the budget {budget} after {instructions} instructions + "
                                f"{events} events = {total}"))


def check_reentry(v, findings):
    try:
        err = v.check_entry()
    except Exception as ex:                   # noqa: BLE001
        findings.append(finding("python", f"check_entry {type(ex).__name__}",
                                f"check_entry() raised {type(ex).__name__}: {ex}"))
        return
    if err is not None:
        findings.append(finding("reentry", getattr(err, "check", type(err).__name__),
                                f"the saved state does not re-enter: {err}"))


def gpr_state(v):
    return (v.rax, v.rbx, v.rcx, v.rdx, v.rsi, v.rdi, v.rbp, v.rsp, v.rip, v.rflags, v.efer)


def classify_error(ex, findings):
    """The outcome key of an exception out of vm.run (and findings for the bad ones)."""
    if isinstance(ex, vtx.VmEntryError):
        return f"entry:{ex.check}"
    if isinstance(ex, HandlerRaised):
        return "handler-raised"
    if isinstance(ex, EntryCheckMismatch):
        findings.append(finding("entry_checks", "incremental != full", str(ex)))
        return "entry-check-mismatch"
    if isinstance(ex, vtx.VtxError):
        msg = str(ex)
        if not msg.strip() or "internal error" in msg:
            findings.append(finding("internal", type(ex).__name__, f"{type(ex).__name__}: {msg!r}"))
        return f"vtx:{type(ex).__name__}"
    tb = traceback.extract_tb(ex.__traceback__)
    where = f"{os.path.basename(tb[-1].filename)}:{tb[-1].lineno}" if tb else "?"
    findings.append(finding("python", f"{type(ex).__name__} at {where}",
                            f"{type(ex).__name__}: {ex} (at {where})"))
    return f"python:{type(ex).__name__}"


def one_run(vm, v, budget, findings, info):
    """Run once; returns (outcome, last exit, instructions, events) and
    checks the budget.  info["error"] gets the message of an exception."""
    i0, ev0 = v.instructions, v.events
    last = None
    try:
        r = vm.run(max_instructions=budget)
    except Exception as ex:                   # noqa: BLE001 - classified below
        outcome = classify_error(ex, findings)
        info["error"] = f"{type(ex).__name__}: {ex}"[:500]
        instructions, events = v.instructions - i0, v.events - ev0
        stop = outcome
    else:
        stop = r.stop
        last = r.exit
        if r.stop == "stop":
            outcome = f"exit:{r.exit.name}"
        else:
            outcome = r.stop
        instructions = r.instructions
        events = r.events
    check_budget(budget, stop, instructions, events, findings)
    return outcome, last, instructions, events


# --- one case -----------------------------------------------------------------------

def has_selftest_marker(spec):
    if spec["campaign"] in ("streams", "root"):
        return SELFTEST_BYTE in bytes.fromhex(spec["code"])
    return any(m[0] == SELFTEST_FIELD for m in spec.get("mutations", ()))


def selftest(spec, findings):
    if not SELFTEST or not has_selftest_marker(spec):
        return
    if SELFTEST == "crash":
        os.abort()
    if SELFTEST == "hang":
        while True:
            time.sleep(3600)
    if SELFTEST == "overrun":
        findings.append(finding("overrun", "selftest", "VTX_FUZZ_SELFTEST=overrun: a fake overrun"))


def run_case(spec):
    """Run one case; returns {"outcome", "instructions", "events", "findings"}."""
    findings = []
    result = {"outcome": None, "instructions": 0, "events": 0, "findings": findings}
    # Every VMRESUME runs the incremental and the full entry checks, and a
    # disagreement is a finding (cheap: the full pass is what ran before).
    vtx._core.set_entry_check_mode("verify")
    if spec["campaign"] == "root":
        return run_root(spec, findings, result)
    try:
        vm, v = build(spec)
    except Exception as ex:                   # noqa: BLE001 - a case that cannot be built is a finding
        result["outcome"] = "build:" + type(ex).__name__
        findings.append(finding("python", f"build {type(ex).__name__}",
                                f"building the case raised {type(ex).__name__}: {ex}"))
        return result
    selftest(spec, findings)
    handler = Handler(vm, spec, findings)
    vm.default(handler)
    # Copies, not views: a view of the private memory makes the next
    # VMRESUME run every entry check, and the incremental ones go untested.
    before = vm._machine.priv_bytes(VMCS_PAGE)
    if spec["campaign"] == "vmcs":
        outcome, last, n, ev = run_vmcs(vm, v, spec, findings, result)
        inspect_vm(v, last, findings)
    else:
        outcome, last, n, ev = run_streams(vm, v, spec, findings, result)
    result.update(outcome=outcome, instructions=n, events=ev)
    after = vm._machine.priv_bytes(VMCS_PAGE)
    if after != before:
        allowed = processor_writes(v)
        for off in range(len(after)):
            if after[off] == before[off] or any(lo <= VMCS_PAGE + off < hi for lo, hi in allowed):
                continue
            # EPT accessed and dirty flags (bits 8 and 9 of an entry) that
            # the processor set (EPTP bit 6; SDM Vol. 3C 29.3.5).
            if off % 8 == 1 and not (after[off] ^ before[off]) & ~0x3 and not before[off] & ~after[off]:
                continue
            findings.append(finding("memory", f"page {(VMCS_PAGE + off) & ~0xFFF:#x}",
                                    f"private memory changed at offset {VMCS_PAGE + off:#x} "
                                    f"({before[off]:#04x} -> {after[off]:#04x})"))
            break
    return result


def processor_writes(v):
    """The private-memory ranges (offsets from the private base) the
    processor itself writes under the VMCS as it stands: the virtual-APIC
    page with "use TPR shadow", the page-modification log with "enable PML",
    the posted-interrupt descriptor with "process posted interrupts" (SDM
    Vol. 3C chapter 30, 29.3.6).  A VMCS that points them into the private
    memory makes those writes legitimate."""
    F, base, out = vtx.VmcsField, vtx._core.PRIV_BASE, []
    try:
        proc = v.vmread(F.PRIMARY_PROC_BASED_CONTROLS)
        proc2 = v.vmread(F.SECONDARY_PROC_BASED_CONTROLS) if proc & vtx.ProcBased.ACTIVATE_SECONDARY_CONTROLS else 0
        pin = v.vmread(F.PIN_BASED_CONTROLS)
        if proc & vtx.ProcBased.USE_TPR_SHADOW:
            a = v.vmread(F.VIRTUAL_APIC_ADDRESS) & ~0xFFF
            out.append((a - base, a - base + 0x1000))
        if proc2 & vtx.ProcBased2.ENABLE_PML:
            a = v.vmread(F.PML_ADDRESS) & ~0xFFF
            out.append((a - base, a - base + 0x1000))
        if pin & vtx.PinBased.PROCESS_POSTED_INTERRUPTS:
            a = v.vmread(F.POSTED_INTERRUPT_DESCRIPTOR_ADDRESS)
            out.append((a - base, a - base + 64))
    except vtx.VtxError:
        pass
    return out


def run_vmcs(vm, v, spec, findings, info):
    """The VMCS campaign: an optional short first run (so the VMCS is
    launched and the entry is a VMRESUME), the mutations, then the run,
    with check_entry() held to what the entry then does."""
    if spec.get("prerun"):
        pre, _last, _n, _ev = one_run(vm, v, spec["prerun"], findings, info)
        if pre.startswith("python:") or pre == "handler-raised":
            return "prerun-" + pre, None, 0, 0
    # A STOP in the first run may leave its instruction to be completed by
    # the next run (vtx.vm.VM.run: RIP past it, STI/MOV-SS blocking ended),
    # which changes the state check_entry() looks at; this campaign holds the
    # core's checks to the core's entry, so the run enters at the instruction.
    if hasattr(vm, "discard_pending"):
        vm.discard_pending(v)
    for enc, op, value in spec["mutations"]:
        apply_mutation(v, enc, op, value)
    snap, regs = vm._machine.priv_bytes(), gpr_state(v)
    checked = True
    try:
        predicted = v.check_entry()
    except Exception as ex:                   # noqa: BLE001
        findings.append(finding("python", f"check_entry {type(ex).__name__}",
                                f"check_entry() raised {type(ex).__name__}: {ex}"))
        checked = False
    else:
        if vm._machine.priv_bytes() != snap or gpr_state(v) != regs:
            findings.append(finding("check_entry", "side effect",
                                    "check_entry() changed the VMCS, private memory or registers"))
    entries = v.entries
    outcome, last, n, ev = one_run(vm, v, spec["budget"], findings, info)
    if checked:
        first_failed = outcome.startswith("entry:") and v.entries == entries
        # check_entry() covers the checks of SDM 27.2 and 27.3; the loading of
        # the VM-entry MSR-load area (27.4, exit reason 34) happens after it
        # passed, while the guest state is loaded.
        msr_loading = first_failed and outcome[6:].startswith("MSR_LOAD_")
        if predicted is None and first_failed and not msr_loading:
            findings.append(finding("check_entry", "missed " + outcome[6:],
                                    f"check_entry() passed, then the entry failed with {outcome[6:]}"))
        elif predicted is not None and not (first_failed and outcome[6:] == predicted.check):
            findings.append(finding("check_entry", "predicted " + predicted.check,
                                    f"check_entry() predicted {predicted.check}, the run gave {outcome}"))
    return outcome, last, n, ev


# --- the root campaign: a bare machine ------------------------------------------------

#: Every property of the bare machine's processor.
CPU_NAMES = sorted(n for n in dir(vtx.BareCpu)
                   if not n.startswith("_") and _inspect.isdatadescriptor(getattr(vtx.BareCpu, n)))
U64 = 1 << 64


def build_bare(spec):
    """The machine of a root spec, set up in its mode at the code."""
    hw = vtx.BareMetal(memory=spec["memory"])
    for addr, data in spec.get("fill", ()):
        hw.write(addr, bytes.fromhex(data))
    hw.write(spec["code_at"], bytes.fromhex(spec["code"]))
    mode, at, stack = spec["mode"], spec["code_at"], spec["stack"]
    if mode == "real":
        hw.setup_real_mode(entry=at, stack=stack)
    elif mode == "protected":
        hw.setup_protected_mode(entry=at, stack=stack, tables=spec.get("tables"))
    else:
        hw.setup_long_mode(entry=at, stack=stack, tables=spec.get("tables"))
    return hw


def inspect_bare(hw, findings):
    """Every property of hw.cpu, and every VMCS field when there is a
    current VMCS.  A successful VMREAD clears the status flags (SDM 31.2),
    which the next run would see: RFLAGS is put back."""
    cpu = hw.cpu
    for name in CPU_NAMES:
        try:
            getattr(cpu, name)
        except vtx.VtxError:
            pass
        except Exception as ex:               # noqa: BLE001
            findings.append(finding("inspect", name, f"reading cpu.{name} raised {type(ex).__name__}: {ex}"))
    try:
        cpu.exit_counts()
        current = cpu.current_vmcs
        flags = cpu.rflags
    except Exception as ex:                   # noqa: BLE001
        findings.append(finding("inspect", "cpu state", f"{type(ex).__name__}: {ex}"))
        return
    if current is None or cpu.non_root:
        return
    read_every_field(cpu.vmread, "cpu.vmread", findings)
    try:
        cpu.rflags = flags
    except Exception as ex:                   # noqa: BLE001
        findings.append(finding("inspect", "rflags", f"RFLAGS {flags:#x} as the machine left it cannot be "
                                                     f"written back: {type(ex).__name__}: {ex}"))


def bare_run(hw, budget, state, findings, info):
    """One hw.run(budget): (outcome, instructions, events), with the budget
    held as for the streams (root and non-root instructions together)."""
    cpu = hw.cpu
    i0, e0 = cpu.instructions, cpu.events
    try:
        r = hw.run(max_instructions=budget)
    except vtx.VmStateError as ex:
        info["error"] = f"VmStateError: {ex}"[:500]
        if not state["python_host"]:
            findings.append(finding("rerun", "VmStateError",
                                    f"run() raised VmStateError with no Python VMLAUNCH/VMRESUME before it "
                                    f"(x86 code is the root-mode software): {ex}"))
        outcome = stop = "vtx:VmStateError"
    except Exception as ex:                   # noqa: BLE001 - classified below
        outcome = stop = classify_error(ex, findings)
        info["error"] = f"{type(ex).__name__}: {ex}"[:500]
    else:
        outcome = stop = r.stop
        if r.stop == "vmexit" and not state["python_host"]:
            findings.append(finding("host", r.exit.name, f"a {r.exit.name} exit returned to Python, though "
                                                         f"x86 code is the root-mode software (HOST_RIP)"))
        if r.instructions != cpu.instructions - i0:
            findings.append(finding("overrun", "count", f"run() reported {r.instructions} instructions, "
                                                        f"the processor counted {cpu.instructions - i0}"))
    n, ev = cpu.instructions - i0, cpu.events - e0
    check_budget(budget, stop, n, ev, findings)
    inspect_bare(hw, findings)
    return outcome, n, ev


def out_of_range(args):
    return any(isinstance(a, int) and not 0 <= a < U64 for a in args)


def bare_call(hw, call, state, findings):
    """hw.write or a method of hw.cpu: vtx errors are outcomes, and so is a
    ValueError for an argument outside 64 bits; anything else is a finding."""
    name, args = call[0], call[1:]
    try:
        if name == "write":
            hw.write(args[0], bytes.fromhex(args[1]))
        else:
            getattr(hw.cpu, name)(*args)
    except vtx.VmStateError:
        return                                # refused before the operation (#UD, #GP, non-root)
    except vtx.VtxError as ex:
        msg = str(ex)
        if not msg.strip() or "internal error" in msg:
            findings.append(finding("internal", f"{name} {type(ex).__name__}", f"cpu.{name}: {msg!r}"))
    except ValueError as ex:
        if not out_of_range(args):
            findings.append(finding("python", f"{name} ValueError", f"cpu.{name}{tuple(args)} raised {ex}"))
        return
    except EntryCheckMismatch as ex:
        findings.append(finding("entry_checks", "incremental != full", str(ex)))
    except Exception as ex:                   # noqa: BLE001
        findings.append(finding("python", f"{name} {type(ex).__name__}",
                                f"cpu.{name}{tuple(args)} raised {type(ex).__name__}: {ex}"))
    # A VMLAUNCH/VMRESUME from Python (that got past the checks before the
    # operation) makes Python the root-mode software; VMXOFF from Python
    # hands the processor back to x86 code.
    if name in ("vmlaunch", "vmresume"):
        state["python_host"] = True
    elif name == "vmxoff" and not hw.cpu.in_vmx_operation:
        state["python_host"] = False


def run_root(spec, findings, result):
    """The root campaign: build the bare machine, then do spec["calls"]."""
    try:
        hw = build_bare(spec)
    except Exception as ex:                   # noqa: BLE001
        result["outcome"] = "build:" + type(ex).__name__
        findings.append(finding("python", f"build {type(ex).__name__}",
                                f"building the case raised {type(ex).__name__}: {ex}"))
        return result
    selftest(spec, findings)
    cpu = hw.cpu
    before = hw._machine.priv_bytes()
    entries = cpu.entries
    state = {"python_host": False}
    outcome, n, ev = "no run", 0, 0
    for call in spec["calls"]:
        if call[0] == "run":
            outcome, n1, ev1 = bare_run(hw, call[1], state, findings, result)
            n, ev = n + n1, ev + ev1
        else:
            bare_call(hw, call, state, findings)
    if hw._machine.priv_bytes() != before:
        after = hw._machine.priv_bytes()
        off = next(i for i in range(len(after)) if after[i] != before[i])
        findings.append(finding("memory", "private slot", f"the private slot changed at offset {off:#x} "
                                                          f"({before[off]:#04x} -> {after[off]:#04x})"))
    guest = "+guest" if cpu.entries != entries else ""
    result.update(outcome=f"{spec.get('kind', 'x86')}:{outcome}{guest}", instructions=n, events=ev)
    return result


def describe(result):
    """A one-line account of a result, for --replay and reproducers."""
    s = f"outcome {result['outcome']}, {result['instructions']} instructions, {result['events']} events"
    if result.get("error"):
        s += f"\n  error: {result['error']}"
    for f in result["findings"]:
        s += f"\n  FINDING {f['kind']} [{f['key']}]: {f['detail']}"
    return s
