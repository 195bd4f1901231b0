"""The hosted-hypervisor API: memory, registers, handlers, results."""

import os
import signal
import threading

import pytest

import vtx
from conftest import guest, needs_as

pytestmark = needs_as


def test_memory_load_read_write_and_bounds():
    vm = vtx.VM(memory=64 << 10)
    vm.load(0x100, b"\x01\x02\x03")
    assert vm.read(0x100, 3) == b"\x01\x02\x03"
    vm.write_u32(0x200, 0xDEADBEEF)
    assert vm.read_u32(0x200) == 0xDEADBEEF
    assert vm.memory[0x200:0x204].tobytes() == b"\xef\xbe\xad\xde"
    with pytest.raises(TypeError):
        vm.memory[0] = 1                      # the view is read-only
    with pytest.raises(vtx.GuestMemoryError, match=r"\[0xfffe, 0x10002\)"):
        vm.load(0xFFFE, b"abcd")
    with pytest.raises(vtx.GuestMemoryError):
        vm.read(-1, 2)
    with pytest.raises(vtx.GuestMemoryError):
        vm.read(0x10000, 1)
    assert vm.read(0x10000, 0) == b""
    assert isinstance(vtx.GuestMemoryError("x"), IndexError)


@pytest.mark.parametrize("size", [0, 100, -4096, 1 << 40])
def test_bad_memory_sizes(size):
    with pytest.raises(ValueError):
        vtx.VM(memory=size)


def test_partial_register_writes_follow_x86():
    """A 32-bit register write zero-extends into the 64-bit register, as on
    x86; 16- and 8-bit writes keep the other bits."""
    vm = vtx.VM(memory=64 << 10)
    v = vm.add_vcpu()
    v.rax = 0x1122334455667788
    v.eax = 0xAABBCCDD
    assert v.rax == 0xAABBCCDD
    v.rax = 0x1122334455667788
    v.ax = 0x1234
    v.ah = 0xFE
    assert v.rax == 0x112233445566FE34
    v.rsp = 0xFFFF800000001000
    v.esp = 0x2000
    assert v.rsp == 0x2000
    v.r8 = -1
    v.r8d = 5
    assert v.r8 == 5
    assert (v.al, v.ah, v.ax) == (0x34, 0xFE, 0xFE34)
    v.r9b = 0x7F
    v.r9w = 0x0102
    assert v.r9 == 0x0102
    v.ecx = -1                                 # two's complement
    assert v.rcx == 0xFFFFFFFF
    with pytest.raises(ValueError, match="does not fit in the 16-bit register ax"):
        v.ax = 0x10000
    with pytest.raises(ValueError):
        v.rax = 1 << 64
    with pytest.raises(TypeError):
        v.rax = "1"
    with pytest.raises(vtx.RegisterError, match="'rxx'"):
        v.rxx
    with pytest.raises(AttributeError):
        v.rxx


def test_vmcs_backed_registers_and_segments():
    vm = vtx.VM(memory=1 << 20)
    v = vm.add_vcpu()
    vm.setup_long_mode(entry=0x4000)
    assert v.rip == v.vmread(vtx.VmcsField.GUEST_RIP) == 0x4000
    assert v.vmread("GUEST_RIP") == 0x4000
    v.esp = 0x8000
    assert v.vmread(vtx.VmcsField.GUEST_RSP) == 0x8000
    assert v.cs == vtx.Segment(0x18, 0, 0xFFFFFFFF, 0xA09B)
    assert v.cs.long and not v.cs.db
    assert v.efer == 0x500
    assert v.cr4 & (1 << 13) and v.vmread(vtx.VmcsField.CR4_READ_SHADOW) == 0x20
    with pytest.raises(TypeError):
        v.cs = 0x18
    with pytest.raises(vtx.VtxError, match="no VMCS field is named"):
        v.vmread("GUEST_NOPE")
    with pytest.raises(vtx.VtxError, match="error 12"):
        v.vmread(0x7FFE)
    with pytest.raises(ValueError):
        v.vmwrite(vtx.VmcsField.GUEST_CS_SELECTOR, 0x10000)


def test_string_instructions_with_rep():
    vm = guest("""
        cld
        mov edi, 0x3000
        mov ecx, 5
        mov al, 0x41
        rep stosb               # AAAAA at 0x3000
        mov esi, 0x3000
        mov edi, 0x3010
        mov ecx, 5
        rep movsb               # copy
        mov esi, 0x3010
        lodsw                   # ax = 0x4141
        mov bx, ax
        mov edi, 0x3010
        mov ecx, 8
        mov al, 0
        repne scasb             # find the NUL after the copy
        mov edx, ecx
        std
        mov edi, 0x3024
        mov eax, 0x11223344
        stosd
        cld
        hlt
    """)
    r = vm.run()
    v = vm.vcpu
    assert r.stop == "stop"
    assert vm.read(0x3000, 5) == b"AAAAA" and vm.read(0x3010, 6) == b"AAAAA\x00"
    assert v.bx == 0x4141
    assert v.edx == 2            # 8 - 6 bytes scanned
    assert v.edi == 0x3020       # STD: EDI decremented by 4
    assert vm.read_u32(0x3024) == 0x11223344


def test_handler_exception_propagates_and_vm_runs_again():
    vm = guest("out 0x80, al\nhlt")
    calls = []

    @vm.on("IO_INSTRUCTION")
    def io(vcpu, exit):
        calls.append(exit.port)
        if len(calls) == 1:
            raise KeyError("boom")
        return vtx.RESUME

    with pytest.raises(KeyError, match="boom"):
        vm.run()
    assert vm.vcpu.rip == 0x1000              # still at the OUT
    r = vm.run()
    assert calls == [0x80, 0x80] and r.stop == "stop"
    assert r.exits == {vtx.ExitReason.IO_INSTRUCTION: 1, vtx.ExitReason.HLT: 1}


def test_run_result_accounting():
    vm = guest("mov ecx, 3\n1: out 0x80, al\ndec ecx\njnz 1b\nhlt")
    vm.on("IO_INSTRUCTION")(lambda v, e: vtx.RESUME)
    r = vm.run()
    # OUT and HLT exit instead of retiring: MOV, then DEC and JNZ three times
    assert r.instructions == 1 + 3 * 2
    assert r.exits[vtx.ExitReason.IO_INSTRUCTION] == 3
    assert r.total_exits == 4
    assert r.exit_ns[vtx.ExitReason.IO_INSTRUCTION] > 0
    assert r.wall_ns >= sum(r.exit_ns.values())
    table = r.table()
    assert "IO_INSTRUCTION (30)" in table and "total" in table


def test_handler_registration_errors():
    vm = vtx.VM(memory=64 << 10)
    with pytest.raises(ValueError):
        vm.on("NOT_A_REASON")
    with pytest.raises(ValueError):
        vm.on(35)
    with pytest.raises(TypeError):
        vm.on(vtx.ExitReason.HLT)(42)
    with pytest.raises(TypeError):
        vm.on()
    with pytest.raises(vtx.VmStateError, match="add_vcpu"):
        vm.run()
    vm.add_vcpu()
    with pytest.raises(TypeError):
        vm.add_vcpu(wait_for_sipi="yes")


def test_ctrl_c_stops_a_guest_that_never_exits():
    vm = guest("1: jmp 1b")
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            vm.run()
    finally:
        timer.cancel()
    assert vm.vcpu.rip == 0x1000
    assert vm.run(max_instructions=10).stop == "budget"


def test_hlt_without_hlt_exiting_halts_the_run():
    vm = guest("hlt", stop_on_hlt=False)
    v = vm.vcpu
    v.vmwrite(vtx.VmcsField.PRIMARY_PROC_BASED_CONTROLS,
              v.vmread(vtx.VmcsField.PRIMARY_PROC_BASED_CONTROLS) & ~vtx.ProcBased.HLT_EXITING)
    r = vm.run()
    assert r.stop == "halted" and r.instructions == 1
    assert v.rip == 0x1001
    assert v.vmread(vtx.VmcsField.GUEST_ACTIVITY_STATE) == 1


def test_handlers_are_testable_on_fabricated_exits():
    e = vtx.fabricate_exit(vtx.ExitReason.IO_INSTRUCTION, qualification=(0x3F8 << 16) | 0, rax=0x141,
                           instruction_length=1, guest_rip=0x1234)
    assert isinstance(e, vtx.IoExit)
    assert (e.port, e.size, e.direction, e.value, e.guest_rip) == (0x3F8, 1, "out", 0x41, 0x1234)
    c = vtx.fabricate_exit(10, rax=0x80000001, rcx=7)
    assert isinstance(c, vtx.CpuidExit) and (c.leaf, c.subleaf) == (0x80000001, 7)
    w = vtx.fabricate_exit(vtx.ExitReason.WRMSR, rax=0xFFFFFFFF00000001, rcx=0xC0000080, rdx=2)
    assert (w.index, w.value, w.is_write) == (0xC0000080, 0x200000001, True)
    x = vtx.fabricate_exit(0, interruption_info=0x80000B0D, interruption_error_code=0x18,
                           idt_vectoring_info=0x80000320)
    assert (x.exception, x.error_code) == ("#GP", 0x18)
    assert x.raw["IDT_VECTORING_INFO"] == 0x80000320


def test_exit_reports_idt_vectoring_information():
    # #GP while delivering #UD through an IDT whose limit is too small: #UD
    # is not intercepted, #GP is, and the exit names the #UD it interrupted.
    vm = guest("ud2\nhlt")
    v = vm.vcpu
    v.vmwrite(vtx.VmcsField.EXCEPTION_BITMAP, 1 << 13)
    v.idtr = vtx.DescriptorTable(0x6000, 0x10)       # vector 6 lies beyond the limit
    vm.on(vtx.ExitReason.EXCEPTION_OR_NMI)(lambda vcpu, e: vtx.STOP)
    r = vm.run()
    assert (r.exit.vector, r.exit.error_code) == (13, 6 * 8 + 3)
    assert r.exit.idt_vectoring_info == 0x80000306     # #UD, hardware exception, no error code


def test_copy_and_pickle_say_what_to_do():
    """A VM, its vCPU and its machine refuse copy and pickle with a message
    that says why and what to do instead, not an opaque Cython error."""
    import copy
    import pickle
    vm = vtx.VM(memory=1 << 20)
    vm.add_vcpu()
    for obj in (vm, vm.vcpu, vm._machine):
        for f in (copy.copy, copy.deepcopy, pickle.dumps):
            with pytest.raises(TypeError, match="cannot be copied or pickled"):
                f(obj)


def test_command_line_version(capsys):
    from vtx.__main__ import main
    with pytest.raises(SystemExit) as ei:
        main(["--version"])
    assert ei.value.code == 0 and capsys.readouterr().out.strip() == f"vtx {vtx.__version__}"


def test_command_line_linux_options(monkeypatch, capsys):
    """``linux`` reaches its runner with its options (its --command option
    does not hide the subcommand); --cpus above 1 needs --apic."""
    import vtx.__main__ as cli
    seen = []
    monkeypatch.setattr(cli, "_linux", lambda args: seen.append((args.apic, args.cpus, args.command)) or 42)
    assert cli.main(["linux", "--apic", "--cpus", "2"]) == 42
    assert seen == [(True, 2, "uname -r; cat /proc/cpuinfo | head; echo ok")]
    for bad in (["linux", "--cpus", "2"], ["linux", "--apic", "--cpus", "0"]):
        with pytest.raises(SystemExit) as ei:
            cli.main(bad)
        assert ei.value.code == 2 and "--cpus" in capsys.readouterr().err
    assert len(seen) == 1


def test_exit_time_is_wall_time_in_nanoseconds():
    """The exit clock counts ticks (the TSC where there is one) and reports
    nanoseconds: a handler that sleeps 20 ms shows as at least 20 ms and
    not far above the run's wall time."""
    import time
    vm = guest("out 0x80, al\nhlt")

    def slow(v, e):
        time.sleep(0.02)
        return vtx.RESUME
    vm.on("IO_INSTRUCTION")(slow)
    r = vm.run()
    ns = r.exit_ns[vtx.ExitReason.IO_INSTRUCTION]
    assert 20_000_000 <= ns <= r.wall_ns * 1.01
    assert vm.vcpu.exit_nanoseconds()[30] >= ns


# --- no traps: STOP, a forgotten set-up, code loaded away from its org -------------

def out_hlt_vm():
    """OUT 0x80 (AL = 1), HLT, OUT 0x80 (AL = 2), HLT at 0x1000: every exit STOPs."""
    vm = vtx.VM(memory=1 << 20)
    vm.load(0x1000, vtx.asm("mov al, 1\nout 0x80, al\nhlt\nmov al, 2\nout 0x80, al\nhlt", bits=32, org=0x1000))
    vm.add_vcpu()
    vm.setup_protected_mode(entry=0x1000)
    seen = []
    vm.on(vtx.ExitReason.IO_INSTRUCTION, vtx.ExitReason.HLT)(
        lambda vcpu, exit: (seen.append((exit.name, exit.guest_rip, vcpu.al)), vtx.STOP)[1])
    return vm, seen


def test_stop_completes_the_hlt_or_out_on_the_next_run():
    vm, seen = out_hlt_vm()
    for _ in range(4):
        vm.run(max_instructions=100)
    # each exit once: the OUT's byte is not written twice, the HLT not
    # stopped at forever
    assert seen == [("IO_INSTRUCTION", 0x1002, 1), ("HLT", 0x1004, 1),
                    ("IO_INSTRUCTION", 0x1007, 2), ("HLT", 0x1009, 2)]
    # between runs the guest is at the exiting instruction, pending completion
    assert vm.vcpu.rip == 0x1009 and vm.pending_completion() == (0x1009, 1)
    assert vm.run(max_instructions=1).stop == "budget" and vm.vcpu.rip == 0x100c   # HLT, then ADD [EAX], AL (00 00)


def test_stop_then_moving_rip_or_discarding_reexecutes():
    vm, seen = out_hlt_vm()
    vm.run()
    vm.vcpu.rip = 0x1000                       # moved by the user: nothing to complete
    assert vm.pending_completion() is None
    vm.run()
    vm.discard_pending()                       # enter at the OUT again
    vm.run()
    vm.setup_protected_mode(entry=0x1005)      # a new set-up forgets the pending OUT
    vm.run()
    assert seen == [("IO_INSTRUCTION", 0x1002, 1)] * 3 + [("IO_INSTRUCTION", 0x1007, 2)]


def test_stop_on_other_exits_is_not_completed():
    """An exception exit has nothing to step over: the next run enters at the
    faulting instruction again."""
    vm = guest("ud2", bits=32)
    seen = []
    vm.on(vtx.ExitReason.EXCEPTION_OR_NMI)(lambda vcpu, exit: (seen.append(exit.guest_rip), vtx.STOP)[1])
    vm.run()
    vm.run()
    assert seen == [0x1000, 0x1000] and vm.pending_completion() is None


def test_a_run_without_setup_is_refused():
    vm = vtx.VM(memory=1 << 20)
    vm.add_vcpu()
    with pytest.raises(vtx.VmStateError, match="never set up and would run zeros from 0000:0000"):
        vm.run(max_instructions=10)
    vm.load(0, b"\xf4")                        # code at the reset state's 0000:0000: meant
    vm.on(vtx.ExitReason.HLT)(lambda vcpu, exit: vtx.STOP)
    assert vm.run(max_instructions=10).exit.guest_rip == 0


def test_a_run_at_zeros_warns():
    vm = vtx.VM(memory=1 << 20)
    vm.load(0x2000, vtx.asm("hlt", bits=32, org=0x2000))
    vm.add_vcpu()
    vm.setup_protected_mode(entry=0x1000)     # not where the code is
    with pytest.warns(vtx.VtxWarning, match=r"starts at 0x1000 \(CS base \+ RIP\), where memory holds zeros"):
        vm.run(max_instructions=5)


def test_code_loaded_away_from_its_org():
    vm = vtx.VM(memory=1 << 20)
    code = vtx.asm("mov esi, offset msg\nhlt\nmsg: .byte 1", bits=32, org=0x1000)
    assert (code.org, code.bits) == (0x1000, 32)
    with pytest.raises(vtx.ArgumentError, match="assembled for org 0x1000 loaded at 0x2000"):
        vm.load(0x2000, code)
    assert vm.read(0x2000, 1) == b"\0"
    vm.load(0x2000, vtx.asm("nop\nhlt", bits=32))          # position-independent: fine anywhere
    assert vm.read(0x2000, 2) == b"\x90\xf4"
    with pytest.warns(vtx.VtxWarning, match="CS base"):
        vm.load(0x3000, vtx.asm("mov si, offset m\nm: hlt", bits=16, org=0x100))
    with pytest.raises(vtx.ArgumentError, match="org 0x1000"):
        vtx.load_flat(vm, code, 0x4000)


def test_package_is_typed():
    import pathlib
    import tomllib
    import typing
    root = pathlib.Path(vtx.__file__).parent
    assert (root / "py.typed").exists()
    config = tomllib.loads((root.parent / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "py.typed" in config["package-data"]["vtx"] and "runtime/*.c" in config["package-data"]["vtx"]
    assert {"vtx.devices", "vtx.linux"} <= set(config["packages"])
    # the annotations resolve (no name only a type checker knows)
    assert typing.get_type_hints(vtx.load_elf)["return"] is vtx.LoadedImage
    assert typing.get_type_hints(vtx.VM.run)["return"] is vtx.RunResult
    assert typing.get_type_hints(vtx.VM.load)["addr"] is int
    assert typing.get_type_hints(vtx.cc)["return"] is vtx.CGuest


def test_read_and_write_uint_helpers():
    """write_u8..write_u64 store little-endian and read_u* read it back; a
    value that does not fit or is not an int is refused, memory untouched."""
    vm = vtx.VM(memory=1 << 20)
    vm.write_u8(0x100, 0xAB)
    vm.write_u16(0x102, 0x1234)
    vm.write_u32(0x104, 0xDEADBEEF)
    vm.write_u64(0x108, 0x0123456789ABCDEF)
    assert vm.read(0x100, 16) == bytes.fromhex("ab003412efbeadde efcdab8967452301".replace(" ", ""))
    assert (vm.read_u8(0x100), vm.read_u16(0x102), vm.read_u32(0x104), vm.read_u64(0x108)) == (
        0xAB, 0x1234, 0xDEADBEEF, 0x0123456789ABCDEF)
    with pytest.raises(vtx.ArgumentError, match="does not fit in 16 bits"):
        vm.write_u16(0x102, 0x10000)
    with pytest.raises(vtx.ArgumentError, match=r"value & 0xffffffff"):
        vm.write_u32(0x104, -1)
    with pytest.raises(TypeError, match="value is an int"):
        vm.write_u64(0x108, 1.5)
    with pytest.raises(TypeError, match="value is an int"):
        vm.write_u8(0x100, True)
    assert vm.read(0x100, 16) == bytes.fromhex("ab003412efbeadde efcdab8967452301".replace(" ", ""))
