"""Snapshots (vtx/snapshot.py, vtx/core/snapshot.pxi): a machine saved to a
file and restored is the machine it was.

Deterministic replay is the test: a guest runs N steps, is saved, runs M more
while its exits (reason, qualification, RIP, RAX) are recorded; restored into
the same VM and into a new one it runs the same M steps through the same
exits to byte-identical registers (the processor state, the VMCS) and memory.
Bad files (truncated, a byte changed, another version or layout, another
memory size) are refused with a message naming the problem, and the VM that
refused them runs on as if nothing had happened.
"""

import hashlib
import json
import os
import re
import struct

import pytest

import vtx
from vtx import ExitReason as R, ProcBased, VmcsField as F
from vtx import snapshot as snap
from vtx.errors import SnapshotError

from conftest import needs_as

pytestmark = needs_as

HERE = os.path.dirname(os.path.abspath(__file__))
PXD = os.path.join(os.path.dirname(HERE), "vtx", "_core.pxd")
CODE = 0x1000
MEMORY = 8 << 20

# A 64-bit guest (identity-mapped 2 MiB pages: paging in long mode) that mixes
# integer arithmetic, stores, RDTSC, SSE and x87 arithmetic, and exits: OUT
# every 16 iterations, CPUID every 32.
LOOP = """
    xor r15d, r15d
    mov rsi, 0x243F6A8885A308D3
    mov r12, 0x5851F42D4C957F2D
    mov r13, 0x14057B7EF767814F
    fninit
    fld1
    mov qword ptr [0x300000], 3
1:  imul rsi, r12
    add rsi, r13
    mov rdx, r15
    and edx, 0x3ff
    mov [0x200000 + rdx*8], rsi
    rdtsc
    mov [0x280000 + rdx*4], eax
    cvtsi2sd xmm0, r15
    addsd xmm1, xmm0
    mulsd xmm0, xmm0
    addsd xmm2, xmm0
    sqrtsd xmm3, xmm2
    fild qword ptr [0x300000]
    faddp st(1), st
    fsqrt
    test r15d, 15
    jnz 2f
    mov eax, r15d
    out 0x80, al
2:  test r15d, 31
    jnz 3f
    mov eax, 1
    cpuid
3:  inc r15
    cmp r15, 1000000
    jb 1b
    hlt
"""


def make(log, memory=MEMORY):
    vm = vtx.VM(memory=memory)
    vm.load(CODE, vtx.asm(LOOP, bits=64, org=CODE))
    vm.add_vcpu()
    v = vm.setup_long_mode(entry=CODE)
    # CR4.OSFXSR and OSXMMEXCPT: SSE (SDM Vol. 3A 13.1.3).
    v.cr4 = v.cr4 | 0x600
    v.vmwrite(F.CR4_READ_SHADOW, v.vmread(F.CR4_READ_SHADOW) | 0x600)
    handlers(vm, log)
    return vm


def handlers(vm, log):
    @vm.on(R.IO_INSTRUCTION)
    def out(vcpu, e):
        log.append((int(e.reason), e.qualification, e.guest_rip, vcpu.rax))
        return vtx.RESUME

    @vm.on(R.CPUID)
    def cpuid(vcpu, e):
        log.append((int(e.reason), e.qualification, e.guest_rip, vcpu.rax))
        vcpu.rax, vcpu.rbx, vcpu.rcx, vcpu.rdx = vcpu.model_cpuid(vcpu.rax & 0xFFFFFFFF, vcpu.rcx & 0xFFFFFFFF)
        return vtx.RESUME

    @vm.on(R.HLT)
    def hlt(vcpu, e):
        log.append((int(e.reason), e.qualification, e.guest_rip, vcpu.rax))
        return vtx.STOP


def _readable(f):
    v = vtx.VM(memory=1 << 20).add_vcpu()
    try:
        v.vmread(f)
        return True
    except vtx.VtxError:
        return False


GUEST_FIELDS = [f for f in F if f.name.startswith("GUEST_") and _readable(f)]


def state(vm):
    """Everything that must repeat: named registers (for a readable diff),
    the VMCS guest area, the whole processor image, the private memory and
    a hash of RAM."""
    v = vm.vcpu
    named = {name: getattr(v, name) for name in
             ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp", "r8", "r9", "r10", "r11", "r12", "r13",
              "r14", "r15", "rip", "rflags", "fcw", "fsw", "ftw", "mxcsr")}
    named.update({f"xmm{i}": getattr(v, f"xmm{i}") for i in range(16)})
    named.update({f"st{i}": getattr(v, f"st{i}") for i in range(8)})
    named.update({f.name: v.vmread(f) for f in GUEST_FIELDS})
    named["instructions"] = v.instructions
    named["pending"] = (v.pending_interrupts, v.nmi_pending)
    return (named, vtx._core._snapshot_cpu(v), vm._machine.priv_bytes(),
            hashlib.sha256(vm.memory).hexdigest())


def run_and_record(vm, log, steps):
    log.clear()
    r = vm.run(max_instructions=steps)
    return (r.stop, r.instructions, r.events, list(log)), state(vm)


def assert_same(a, b):
    (run_a, (named_a, img_a, priv_a, ram_a)), (run_b, (named_b, img_b, priv_b, ram_b)) = a, b
    assert run_a == run_b
    assert named_a == named_b
    assert img_a == img_b
    assert priv_a == priv_b
    assert ram_a == ram_b


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "vm.snap")


# ---------------------------------------------------------------------------
# The layout table of the Cpu struct
# ---------------------------------------------------------------------------

def _struct_members(text, name):
    body = re.search(r"ctypedef struct %s:\n(.*?)(?=\n\S)" % name, text, re.S).group(1)
    out = []
    for line in body.splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        m = re.match(r"([A-Za-z_][\w]*\**)\s+(.*)", line)
        typ, names = m.group(1), m.group(2)
        for n in names.split(","):
            n = n.strip()
            pointer = typ.endswith("*") or n.startswith("*")
            out.append((re.sub(r"\[.*", "", n.lstrip("*")), pointer))
    return out


def test_the_layout_table_names_every_member_of_cpu():
    """Every member of Cpu (VmxState and FpuState member by member) has a row,
    in declaration order: a member added to _core.pxd without deciding
    whether snapshots save it fails here.  Host pointers are never saved."""
    text = open(PXD).read()
    expect = []
    for name, pointer in _struct_members(text, "Cpu"):
        if name in ("vmx", "fpu"):
            sub = "VmxState" if name == "vmx" else "FpuState"
            expect += [(f"{name}.{n}", p) for n, p in _struct_members(text, sub)]
        else:
            expect.append((name, pointer))
    layout = vtx._core._snapshot_layout()
    rows = [r for r in layout["rows"] if r[3] != 2]
    assert [r[0] for r in rows] == [n for n, _ in expect]
    how = {r[0]: r[3] for r in rows}
    pointers = [n for n, p in expect if p]
    assert "vmx.vmcs" in pointers and "icache" in pointers
    assert all(how[n] == 0 for n in pointers)
    # The rows tile the struct: in offset order, no overlap, no hole larger
    # than alignment padding, up to sizeof(Cpu).
    end = 0
    for name, off, size, _how in sorted(rows, key=lambda r: r[1]):
        assert end <= off < end + 8, name
        end = off + size
    assert layout["cpu_size"] - 8 < end <= layout["cpu_size"]
    assert layout["size"] == sum(r[2] for r in rows if r[3] == 1)


# ---------------------------------------------------------------------------
# Deterministic replay
# ---------------------------------------------------------------------------

def test_replay_in_the_same_vm_and_in_a_new_one(path):
    log = []
    vm = make(log)
    r = vm.run(max_instructions=5000)
    assert r.stop == "budget" and log            # mid-stream, after some exits
    size = vm.save(path)
    assert size == os.path.getsize(path)
    first = run_and_record(vm, log, 20000)
    exits = first[0][3]
    assert {e[0] for e in exits} == {int(R.IO_INSTRUCTION), int(R.CPUID)} and len(exits) > 40

    assert vm.restore(path) == {}
    assert_same(run_and_record(vm, log, 20000), first)

    log2 = []
    vm2 = vtx.VM.load_snapshot(path)
    handlers(vm2, log2)
    assert vm2.memory_size == MEMORY and vm2.cpu_model == vm.cpu_model
    assert_same(run_and_record(vm2, log2, 20000), first)
    # And they go on together.
    assert_same(run_and_record(vm2, log2, 3000), run_and_record(vm, log, 3000))


def test_restore_into_a_vm_without_a_vcpu(path):
    log = []
    vm = make(log)
    vm.run(max_instructions=3000)
    vm.save(path)
    first = run_and_record(vm, log, 4000)
    vm2 = vtx.VM(memory=MEMORY)
    vm2.restore(path)
    assert len(vm2.vcpus) == 1
    log2 = []
    handlers(vm2, log2)
    assert_same(run_and_record(vm2, log2, 4000), first)


def test_restore_drops_stale_decoded_code(path):
    """The restored RAM holds other code at the same address: what the VM
    decoded before the restore must not run."""
    vm = vtx.VM(memory=1 << 20)
    vm.load(CODE, vtx.asm("mov eax, 1\nhlt", bits=32, org=CODE))
    vm.add_vcpu()
    vm.setup_protected_mode(entry=CODE)
    vm.on(R.HLT)(lambda vcpu, e: vtx.STOP)
    vm.save(path)
    vm.load(CODE, vtx.asm("mov eax, 2\nhlt", bits=32, org=CODE))
    vm.setup_protected_mode(entry=CODE)
    vm.run()
    assert vm.vcpu.rax == 2
    vm.restore(path)
    assert vm.vcpu.rip == CODE
    vm.run()
    assert vm.vcpu.rax == 1


# ---------------------------------------------------------------------------
# Saving from an exit handler; no restore during a run
# ---------------------------------------------------------------------------

def test_save_from_an_exit_handler(path):
    """A snapshot taken in a handler holds the state of that exit: restored,
    the guest is at the exiting instruction, and its first exit is that one
    again; after it the sequence is the original's."""
    log = []
    vm = make(log)
    saved_at = []

    @vm.on(R.IO_INSTRUCTION)
    def out(vcpu, e):
        log.append((int(e.reason), e.qualification, e.guest_rip, vcpu.rax))
        if vcpu.rax == 64:                      # the fifth OUT
            vm.save(path)
            saved_at.append(log[-1])
        return vtx.RESUME

    vm.run(max_instructions=4000)
    assert saved_at
    original = log[log.index(saved_at[0]):]

    log2 = []
    vm2 = vtx.VM.load_snapshot(path)
    handlers(vm2, log2)
    assert vm2.vcpu.rip == saved_at[0][2]
    vm2.run(max_instructions=4000)
    n = len(original)
    assert n > 10 and log2[:n] == original


def test_restore_during_a_run_is_refused(path):
    log = []
    vm = make(log)
    vm.save(path)
    errors = []

    @vm.on(R.IO_INSTRUCTION)
    def out(vcpu, e):
        log.append((int(e.reason), e.qualification, e.guest_rip, vcpu.rax))
        try:
            vm.restore(path)
        except vtx.VmStateError as ex:
            errors.append(str(ex))
        return vtx.RESUME

    vm.run(max_instructions=2000)
    assert errors and "cannot be restored while the machine runs" in errors[0]
    # Nothing was restored: the loop went on (several OUT exits, rising RAX).
    outs = [e[3] for e in log if e[0] == int(R.IO_INSTRUCTION)]
    assert len(outs) > 2 and outs == sorted(outs)


# ---------------------------------------------------------------------------
# Events: a pending interrupt, an injected event, the HLT state
# ---------------------------------------------------------------------------

IRQ_GUEST = """
    cli
    mov eax, 1
    out 0x80, al
    sti
    nop
    mov eax, 2
    out 0x80, al
    hlt
2:  jmp 2b
handler:
    mov eax, 0x77
    out 0x81, al
    iretd
"""


def irq_vm(log):
    """32-bit guest with an IDT whose vector 0x30 goes to `handler`."""
    vm = vtx.VM(memory=1 << 20)
    code = vtx.asm(IRQ_GUEST, bits=32, org=CODE)
    vm.load(CODE, code)
    vm.add_vcpu()
    v = vm.setup_protected_mode(entry=CODE)
    handler = CODE + code.index(bytes([0xB8, 0x77]))
    idt = 0x8000
    gate = (handler & 0xFFFF) | (0x08 << 16) | (0x8E00 << 32) | ((handler >> 16) << 48)
    vm.write(idt + 0x30 * 8, gate.to_bytes(8, "little"))
    v.idtr = vtx.DescriptorTable(idt, 0x30 * 8 + 7)
    handlers(vm, log)
    return vm


def test_pending_interrupt_survives(path):
    log = []
    vm = irq_vm(log)
    vm.on(R.IO_INSTRUCTION)(lambda vcpu, e: (log.append((e.qualification, e.guest_rip, vcpu.rax)),
                                             vtx.STOP)[1])
    vm.run()                                     # stops at the first OUT, IF = 0
    vm.vcpu.raise_interrupt(0x30)
    vm.save(path)
    handlers(vm, log)
    first = run_and_record(vm, log, 100)
    # The OUT the first run stopped at is completed, not executed again
    # (vtx.STOP); then the interrupt, taken after STI and one more
    # instruction (OUT 0x81 from its handler), then the last OUT.
    ports = [(e[1] >> 16) & 0xFFFF for e in first[0][3] if e[0] == int(R.IO_INSTRUCTION)]
    assert ports == [0x81, 0x80]
    vm2 = vtx.VM.load_snapshot(path)
    assert vm2.vcpu.pending_interrupts == (0x30,)
    log2 = []
    handlers(vm2, log2)
    assert_same(run_and_record(vm2, log2, 100), first)


def test_injected_event_survives(path):
    """A VM-entry interruption-information field armed by the hypervisor is
    in the VMCS: the restored VM delivers it at its first entry."""
    log = []
    vm = irq_vm(log)
    vm.vcpu.rflags = 0x202                  # IF = 1 for an injected external interrupt (SDM 27.3.1.4)
    vm.vcpu.vmwrite(F.VM_ENTRY_INTERRUPTION_INFO, (1 << 31) | 0x30)    # external interrupt 0x30
    vm.save(path)
    first = run_and_record(vm, log, 50)
    assert ((first[0][3][0][1] >> 16) & 0xFFFF) == 0x81
    vm2 = vtx.VM.load_snapshot(path)
    log2 = []
    handlers(vm2, log2)
    assert_same(run_and_record(vm2, log2, 50), first)


def test_hlt_state_survives(path):
    log = []
    vm = irq_vm(log)
    v = vm.vcpu
    v.vmwrite(F.PRIMARY_PROC_BASED_CONTROLS, v.vmread(F.PRIMARY_PROC_BASED_CONTROLS) & ~ProcBased.HLT_EXITING)
    r = vm.run()
    assert r.stop == "halted" and v.vmread(F.GUEST_ACTIVITY_STATE) == 1
    vm.save(path)
    vm2 = vtx.VM.load_snapshot(path)
    log2 = []
    handlers(vm2, log2)
    assert vm2.vcpu.vmread(F.GUEST_ACTIVITY_STATE) == 1
    assert vm2.run().stop == "halted" and vm2.vcpu.instructions == v.instructions
    assert vm.run().stop == "halted"                 # the same entry for both
    for m in (vm, vm2):
        m.vcpu.raise_interrupt(0x30)
    assert_same(run_and_record(vm2, log2, 20), run_and_record(vm, log, 20))
    assert [(e[1] >> 16) & 0xFFFF for e in log if e[0] == int(R.IO_INSTRUCTION)] == [0x81]


# ---------------------------------------------------------------------------
# extra, the ROM, a large VM, a bare machine
# ---------------------------------------------------------------------------

def test_extra_round_trip(path):
    log = []
    vm = make(log)
    extra = {"devices": {"uart": {"lcr": 3, "fifo": [1, 2, 3]}}, "name": "x"}
    vm.save(path, extra=extra)
    assert vm.restore(path) == extra and vm.snapshot_extra == extra
    assert vtx.VM.load_snapshot(path).snapshot_extra == extra
    with pytest.raises(vtx.ArgumentError, match="extra must be JSON data"):
        vm.save(path, extra={"b": b"bytes"})
    with pytest.raises(vtx.ArgumentError, match="extra is a dict"):
        vm.save(path, extra=[1])
    assert vm.restore(path) == extra              # the refused saves left the file alone


def test_rom_round_trip(path):
    rom = bytes(range(256)) * 256                 # 64 KiB
    vm = vtx.VM(memory=1 << 20)
    vm.map_rom(rom)
    vm.add_vcpu()
    vm.save(path)
    vm2 = vtx.VM.load_snapshot(path)
    assert vm2.rom_bytes() == rom
    assert vtx._core._rom_layout(vm2._machine) == ((1 << 32) - len(rom), len(rom), len(rom))
    other = vtx.VM(memory=1 << 20)
    other.map_rom(bytes(len(rom)))
    with pytest.raises(SnapshotError, match="ROM is not the snapshot's"):
        other.restore(path)
    plain = vtx.VM(memory=1 << 20)
    plain.add_vcpu()
    plain.save(path)
    with pytest.raises(SnapshotError, match="ROM is not the snapshot's"):
        vm2.restore(path)


def test_a_large_mostly_empty_vm_saves_small(path):
    vm = vtx.VM(memory=256 << 20)
    vm.add_vcpu()
    vm.write(200 << 20, b"\x5a" * 8192)
    vm.save(path)
    assert os.path.getsize(path) < 256 << 10
    vm2 = vtx.VM.load_snapshot(path)
    assert vm2.read(200 << 20, 8192) == b"\x5a" * 8192
    assert hashlib.sha256(vm2.memory).digest() == hashlib.sha256(vm.memory).digest()


def test_bare_metal_round_trip(path):
    src = """
        xor ecx, ecx
    1:  mov al, cl
        and al, 0x0f
        add al, 0x41
        out 0xe9, al
        inc ecx
        jmp 1b
    """
    bm = vtx.BareMetal(memory=1 << 20)
    bm.load(CODE, vtx.asm(src, bits=32, org=CODE))
    bm.setup_protected_mode(entry=CODE)
    bm.run(max_instructions=100)
    assert bm.console == b"ABCDEFGHIJKLMNOP"         # 6 instructions an iteration
    bm.save(path)
    bm.run(max_instructions=300)
    bm2 = vtx.BareMetal.load_snapshot(path)
    assert bm2.console == b"ABCDEFGHIJKLMNOP"
    bm2.run(max_instructions=300)
    assert bm2.console == bm.console and bm2.cpu.rip == bm.cpu.rip
    assert vtx._core._snapshot_cpu(bm2.cpu) == vtx._core._snapshot_cpu(bm.cpu)
    with pytest.raises(SnapshotError, match="is of a BareMetal, not of a VM"):
        vtx.VM.load_snapshot(path)
    vm = vtx.VM(memory=1 << 20)
    with pytest.raises(SnapshotError, match="is of a BareMetal, not of a VM"):
        vm.restore(path)


# ---------------------------------------------------------------------------
# Bad files: refused with a message, the VM untouched
# ---------------------------------------------------------------------------

def rewrite(path, header_change=None, body=None):
    """The file with its HEAD JSON changed, lengths and digest made right
    again (a well-formed file of another version or layout)."""
    data = open(path, "rb").read()
    prefix = struct.Struct("<8sIIQ")
    sec = struct.Struct("<4sQ")
    pos = prefix.size
    sections = []
    while pos < len(data) - 32:
        tag, n = sec.unpack_from(data, pos)
        sections.append([tag, data[pos + sec.size:pos + sec.size + n]])
        pos += sec.size + n
    if header_change:
        h = json.loads(sections[0][1])
        header_change(h)
        sections[0][1] = json.dumps(h).encode()
    if body:
        body(sections)
    out = b"".join(sec.pack(t, len(p)) + p for t, p in sections)
    total = prefix.size + len(out) + 32
    out = prefix.pack(b"VTXSNAP\0", 1, 0, total) + out
    return out + hashlib.sha256(out).digest()


def _set(key, value):
    return lambda h: h.__setitem__(key, value)


@pytest.fixture
def victim(tmp_path):
    """A VM mid-run, its expected future, and a good snapshot of another
    point of it."""
    log = []
    vm = make(log)
    vm.run(max_instructions=2000)
    good = str(tmp_path / "good.snap")
    vm.save(good)
    vm.run(max_instructions=1000)
    before = state(vm)
    probe = str(tmp_path / "probe.snap")
    vm.save(probe)
    future = run_and_record(vm, log, 3000)
    vm.restore(probe)
    assert state(vm) == before
    return vm, log, good, future, str(tmp_path / "bad.snap")


def _corrupt(data, where):
    b = bytearray(data)
    b[where] ^= 0x01
    return bytes(b)


BAD = {
    "empty": (lambda d, good: b"", "is not a vtx snapshot"),
    "not-a-snapshot": (lambda d, good: b"PK\x03\x04" + d[4:], "is not a vtx snapshot"),
    "truncated": (lambda d, good: d[:len(d) // 2], "is truncated"),
    "truncated-digest": (lambda d, good: d[:-1], "is truncated"),
    "trailing-bytes": (lambda d, good: d + b"\0", "bytes after its end"),
    "byte-in-header": (lambda d, good: _corrupt(d, 40), "SHA-256 digest does not match"),
    "byte-in-ram": (lambda d, good: _corrupt(d, len(d) // 2), "SHA-256 digest does not match"),
    "byte-in-digest": (lambda d, good: _corrupt(d, len(d) - 3), "SHA-256 digest does not match"),
    "byte-in-length": (lambda d, good: _corrupt(d, 16), "corrupted|truncated"),
    "other-version": (lambda d, good: rewrite(good, _set("vtx_version", "0.0.1")),
                      "written by vtx 0.0.1; this is vtx"),
    "other-layout": (lambda d, good: rewrite(good, _set("cpu_layout", "0" * 64)), "another processor layout"),
    "other-cpu-size": (lambda d, good: rewrite(good, _set("cpu_size", 123)), "another processor layout"),
    "other-format": (lambda d, good: _reformat(good), "snapshot format version 2"),
    "missing-section": (lambda d, good: rewrite(good, body=lambda s: s.pop(3)), "sections HEAD VCPU"),
    "bad-zlib": (lambda d, good: rewrite(good, body=lambda s: s[3].__setitem__(1, b"x" * 40)),
                 "does not decompress"),
    "other-memory-size": (lambda d, good: _other_size(good), "has 0x100000 bytes of guest memory; this VM has"),
}


def _reformat(good):
    data = rewrite(good)
    out = struct.pack("<8sIIQ", b"VTXSNAP\0", 2, 0, len(data)) + data[24:-32]
    return out + hashlib.sha256(out).digest()


def _other_size(good):
    vm = vtx.VM(memory=1 << 20)
    vm.add_vcpu()
    p = good + ".small"
    vm.save(p)
    return open(p, "rb").read()


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_files_are_refused_and_the_vm_runs_on(victim, case):
    vm, log, good, future, bad = victim
    make_bad, message = BAD[case]
    data = open(good, "rb").read()
    with open(bad, "wb") as f:
        f.write(make_bad(data, good))
    before = state(vm)
    with pytest.raises(SnapshotError, match=message):
        vm.restore(bad)
    assert state(vm) == before
    if case != "other-memory-size":            # a VM of that size can be made from it
        with pytest.raises(SnapshotError, match=message):
            vtx.VM.load_snapshot(bad)
    assert_same(run_and_record(vm, log, 3000), future)


def test_the_good_file_of_the_bad_cases_restores(victim):
    """The files the cases start from are good: only the change is refused."""
    vm, log, good, future, bad = victim
    with open(bad, "wb") as f:
        f.write(rewrite(good))
    vm.restore(bad)
    vm.restore(good)


def test_save_refuses_a_vm_without_a_vcpu(path):
    with pytest.raises(vtx.VmStateError, match="no vCPU to save"):
        vtx.VM(memory=1 << 20).save(path)
    assert not os.path.exists(path)


def test_pickling_points_to_snapshots():
    vm = vtx.VM(memory=1 << 20)
    with pytest.raises(TypeError, match="vm.save"):
        vm.__reduce__()


def test_save_and_restore_while_another_thread_runs_the_guest_are_refused(path, tmp_path):
    """While another thread's run is active the state may change at any
    moment: save and restore are VmStateErrors.  The run is not disturbed."""
    import threading
    vm = vtx.VM(memory=1 << 20)
    vm.load(CODE, vtx.asm("out 0x80, al\n1: inc eax\njmp 1b", bits=32, org=CODE))
    vm.add_vcpu()
    vm.setup_protected_mode(entry=CODE)
    good = str(tmp_path / "good.snap")
    vm.save(good)
    started = threading.Event()
    vm.on(R.IO_INSTRUCTION)(lambda vcpu, e: (started.set(), vtx.RESUME)[1])
    result = []
    t = threading.Thread(target=lambda: result.append(vm.run(max_instructions=30_000_000)))
    t.start()
    started.wait()
    errors = set()
    while t.is_alive() and len(errors) < 2:
        for what, call in (("save", lambda: vm.save(path)), ("restore", lambda: vm.restore(good))):
            try:
                call()
            except vtx.VmStateError as e:
                errors.add((what, "another thread's run() is active" in str(e) if what == "save"
                            else "cannot be restored while the machine runs" in str(e)))
    t.join()
    assert errors == {("save", True), ("restore", True)}
    assert result[0].stop == "budget" and result[0].instructions == 30_000_000


def test_a_changed_byte_anywhere_is_refused(victim):
    """One bit flipped at positions spread over the whole file (prefix,
    every section, digest): always a SnapshotError, never a restore."""
    vm, log, good, future, bad = victim
    data = open(good, "rb").read()
    before = state(vm)
    positions = sorted(set(range(0, 24)) | set(range(24, len(data), max(1, len(data) // 97))) | {len(data) - 1})
    for where in positions:
        with open(bad, "wb") as f:
            f.write(_corrupt(data, where))
        with pytest.raises(SnapshotError, match="not a vtx snapshot|truncated|corrupted|format version"):
            vm.restore(bad)
    assert state(vm) == before
    assert_same(run_and_record(vm, log, 3000), future)


def test_memory_slots_are_saved_and_restored(tmp_path):
    vm = vtx.VM(memory=1 << 20)
    vm.add_vcpu()
    vm.add_memory(0x40000000, 0x3000)
    vm.add_memory(0x50000000, 0x1000, readonly=True)
    vm.write(0x40001000, b"slot bytes")
    vm.write(0x50000000, b"rom-like")
    vm.load(0x1000, vtx.asm("mov eax, [0x40001000]\nmov ebx, [0x50000000]\nhlt", bits=64))
    vm.setup_long_mode(entry=0x1000)
    path = tmp_path / "slots.snap"
    vm.save(path)
    fresh = vtx.VM.load_snapshot(path)
    assert fresh.memory_slots == ((0x40000000, 0x3000, False), (0x50000000, 0x1000, True))
    assert fresh.read(0x40001000, 10) == b"slot bytes"
    fresh.on("HLT")(lambda vcpu, exit: vtx.STOP)
    fresh.run(max_instructions=10)
    assert fresh.vcpu.rax == int.from_bytes(b"slot", "little")
    assert fresh.vcpu.rbx == int.from_bytes(b"rom-", "little")
    # A VM with other slots is refused and left as it was.
    other = vtx.VM(memory=1 << 20)
    other.add_vcpu()
    other.add_memory(0x60000000, 0x1000)
    with pytest.raises(vtx.errors.SnapshotError, match="memory slots"):
        other.restore(path)
    assert other.memory_slots == ((0x60000000, 0x1000, False),)


def test_several_vcpus_replay_from_a_snapshot(tmp_path):
    vm = vtx.VM(memory=1 << 20)
    for entry, counter in ((0x1000, 0x3000), (0x2000, 0x3008)):
        vm.load(entry, vtx.asm(f"""
            mov rbx, {counter:#x}
        1:  lock inc qword ptr [rbx]
            lock inc qword ptr [0x3010]
            jmp 1b""", bits=64))
    a, b = vm.add_vcpu(), vm.add_vcpu()
    vm.setup_long_mode(entry=0x1000, vcpu=a)
    vm.setup_long_mode(entry=0x2000, vcpu=b, tables=0x8000)
    vm.run(max_instructions=10_000, quantum=777)
    path = tmp_path / "smp.snap"
    vm.save(path)
    vm.run(max_instructions=20_000, quantum=777)
    after = (vm.read(0x3000, 24), a.rip, b.rip, a.instructions, b.instructions)
    vm.run(max_instructions=777)      # the round-robin moves on; the restore brings its turn back
    vm.restore(path)
    vm.run(max_instructions=20_000, quantum=777)
    assert (vm.read(0x3000, 24), a.rip, b.rip, a.instructions, b.instructions) == after
    counts = [int.from_bytes(after[0][i:i + 8], "little") for i in (0, 8, 16)]
    assert counts[0] + counts[1] == counts[2] and counts[0] > 0 and counts[1] > 0
