"""VMM bus-lock detection (core/vmx/buslock.pxi): a locked read-modify-write
whose operand crosses a 64-byte cache line is a bus lock, and with the
secondary control "VMM bus-lock detection" it causes a trap-like VM exit
(reason 74) after the instruction; an exit that comes first carries the bus
lock in bit 26 of its exit reason (SDM Vol. 3C 25.6.2, 28.2.1)."""

import pytest

import vtx
from vtx import ExitReason as R, ProcBased2 as P2

from test_vmx_exits_insn import first_exit, make_vm, run_to_hlt

BLD = P2.VMM_BUS_LOCK_DETECTION
LINE_END = 0x203E                   # a dword here crosses the line at 2040H
BUS_LOCK_DETECTED = 1 << 26


def length(src, mode):
    return len(vtx.asm(src, bits={"real": 16, "protected": 32, "long": 64}[mode], org=0x1000))


@pytest.mark.parametrize("mode", ["protected", "long"])
@pytest.mark.parametrize("insn", [
    f"lock add dword ptr [{LINE_END:#x}], 1",
    f"lock inc dword ptr [{LINE_END:#x}]",
    f"lock xadd dword ptr [{LINE_END:#x}], ebx",
    f"lock cmpxchg dword ptr [{LINE_END:#x}], ebx",
    f"lock bts dword ptr [{LINE_END:#x}], 3",
    f"lock or word ptr [{0x203F:#x}], 1",
    f"xchg dword ptr [{LINE_END:#x}], ebx",          # implicitly locked
    f"lock cmpxchg8b qword ptr [{0x2038 + 4:#x}]",
])
def test_split_lock_exits_after_the_instruction(mode, insn):
    pre = "mov ebx, 0x10\n"
    vm = make_vm(pre + insn + "\nmov ecx, 5", mode, proc2=BLD)
    vm.write(0x2038, bytes(16))
    ex = first_exit(vm)
    assert ex.reason == R.BUS_LOCK and ex.raw_reason == 74 and ex.name == "BUS_LOCK"
    assert ex.qualification == 0 and ex.instruction_length == 0
    assert ex.guest_rip == 0x1000 + length(pre + insn, mode)      # trap-like: the next instruction
    assert vm.read(0x2038, 16) != bytes(16)                       # the instruction completed
    run_to_hlt(vm)
    assert vm.vcpu.ecx == 5


@pytest.mark.parametrize("src", [
    f"lock add dword ptr [{0x2040:#x}], 1",          # within one line
    f"lock add byte ptr [{0x203F:#x}], 1",
    f"add dword ptr [{LINE_END:#x}], 1",             # split, but not locked
    f"xchg ebx, ecx",
    f"mov dword ptr [{LINE_END:#x}], 1",
])
def test_no_bus_lock(src):
    vm = make_vm(src, "protected", proc2=BLD)
    run_to_hlt(vm)


def test_without_the_control_nothing_exits():
    vm = make_vm(f"lock add dword ptr [{LINE_END:#x}], 1", "protected")
    run_to_hlt(vm)
    assert vm.read(LINE_END, 4) == b"\x01\0\0\0"


def test_a_trap_that_comes_first_reports_the_bus_lock_in_bit_26():
    """With TF set, the single-step #DB after the locked instruction is an
    exception exit (the exception bitmap intercepts everything here); the
    bus lock it preempted is reported in bit 26 of its exit reason, and no
    bus-lock exit follows."""
    vm = make_vm("pushfd\nor dword ptr [esp], 0x100\npopfd\n"
                 f"lock add dword ptr [{LINE_END:#x}], 1\nmov ecx, 5", "protected", proc2=BLD)
    seen = []

    def record(vcpu, ex):
        seen.append((ex.reason, ex.raw_reason))
        if ex.reason == R.EXCEPTION_OR_NMI:
            vcpu.rflags &= ~0x100
            return vtx.RETRY            # a trap: the guest goes on after the instruction
        return vtx.STOP
    vm.default(record)
    vm.run(max_instructions=1000)
    assert seen == [(R.EXCEPTION_OR_NMI, BUS_LOCK_DETECTED | 0), (R.HLT, 12)]
    assert vm.vcpu.ecx == 5
