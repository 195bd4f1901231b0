"""Memory slots and decoded MMIO (vtx/memory.py, core/mmu.pxi "MMIO")."""

import pytest

import vtx
from guest_idt import IDTR, LIDT, gate
from vtx.devices import Device

MMIO = 0xFEE00000


class Recorder:
    """An MMIO handler that logs every access and reads from a dict."""

    def __init__(self, values=None):
        self.log = []
        self.values = values or {}

    def __call__(self, vcpu, gpa, size, is_write, value):
        self.log.append((gpa, size, "w" if is_write else "r", value))
        if is_write:
            self.values[gpa] = value
            return None
        return self.values.get(gpa, 0x1122334455667788) & ((1 << (8 * size)) - 1)


def run64(body, handler=None, size=0x2000, memory=1 << 20, cr4_sse=False):
    vm = vtx.VM(memory=memory)
    rec = handler or Recorder()
    vm.map_mmio(MMIO, size, rec)
    vm.load(0x1000, vtx.asm(f"mov rbx, {MMIO:#x}\n{body}\nhlt", bits=64))
    vm.add_vcpu()
    vm.setup_long_mode(entry=0x1000)
    if cr4_sse:
        vm.vcpu.cr4 |= 0x600

    @vm.on(vtx.ExitReason.HLT)
    def hlt(vcpu, exit):
        return vtx.STOP
    r = vm.run(max_instructions=10000)
    assert r.stop == "stop"
    return vm, rec, r


@pytest.mark.parametrize("size,reg,op", [(1, "al", "byte"), (2, "ax", "word"), (4, "eax", "dword"), (8, "rax", "qword")])
def test_mov_read_each_size(size, reg, op):
    vm, rec, r = run64(f"mov rax, -1\nmov {reg}, {op} ptr [rbx+0x10]")
    v = 0x1122334455667788 & ((1 << (8 * size)) - 1)
    expect = {1: 0xFFFFFFFFFFFFFF00 | v, 2: 0xFFFFFFFFFFFF0000 | v, 4: v, 8: v}[size]
    assert vm.vcpu.rax == expect
    assert rec.log == [(MMIO + 0x10, size, "r", 0)]
    assert r.exits[vtx.ExitReason.EPT_VIOLATION] == 1


@pytest.mark.parametrize("size,op", [(1, "byte"), (2, "word"), (4, "dword"), (8, "qword")])
def test_mov_write_each_size(size, op):
    vm, rec, _ = run64(f"mov rax, 0x8877665544332211\nmov {op} ptr [rbx+0x18], {'al ax eax rax'.split()[[1, 2, 4, 8].index(size)]}")
    assert rec.log == [(MMIO + 0x18, size, "w", 0x8877665544332211 & ((1 << (8 * size)) - 1))]


def test_read_modify_write_reads_once_writes_once_and_sets_flags():
    rec = Recorder({MMIO + 0x30: 0xFFFFFFFF})
    vm, rec, _ = run64("add dword ptr [rbx+0x30], 1\npushfq\npop rdx", rec)
    assert rec.log == [(MMIO + 0x30, 4, "r", 0), (MMIO + 0x30, 4, "w", 0)]
    assert vm.vcpu.rdx & 0x8D5 == 0x55    # CF ZF AF PF set, SF OF clear


def test_xchg_with_mmio_is_one_read_then_one_write():
    rec = Recorder({MMIO + 8: 0xAB})
    vm, rec, _ = run64("mov ecx, 0x1234\nxchg dword ptr [rbx+8], ecx", rec)
    assert rec.log == [(MMIO + 8, 4, "r", 0), (MMIO + 8, 4, "w", 0x1234)]
    assert vm.vcpu.rcx == 0xAB


def test_push_and_pop_through_mmio():
    rec = Recorder({MMIO + 0x40: 0xCAFEBABE12345678})
    vm, rec, _ = run64("push qword ptr [rbx+0x40]\npop rcx\nmov rsp, rbx\nadd rsp, 0x100\npush rcx", rec)
    assert vm.vcpu.rcx == 0xCAFEBABE12345678
    assert rec.log == [(MMIO + 0x40, 8, "r", 0), (MMIO + 0xF8, 8, "w", 0xCAFEBABE12345678)]


def test_rep_stos_gives_one_write_per_iteration_in_order():
    vm, rec, r = run64("lea rdi, [rbx+0x100]\nmov ecx, 3\nmov eax, 0x77\nrep stosd")
    assert rec.log == [(MMIO + 0x100 + 4 * i, 4, "w", 0x77) for i in range(3)]
    assert vm.vcpu.rcx == 0 and vm.vcpu.rdi == MMIO + 0x10C


def test_rep_movs_from_one_register_to_ram():
    # A FIFO-like register read four times: each read is a new access.
    n = iter(range(1, 100))

    def fifo(vcpu, gpa, size, is_write, value):
        return next(n)
    vm, _, _ = run64("mov rsi, rbx\nmov rdi, 0x3000\nmov ecx, 4\ncld\nrep movsb\nsub rsi, 4\n"
                     "std\nmov ecx, 0\n", fifo)
    # rsi advanced, so each byte came from the next address: 1, 2, 3, 4
    assert vm.read(0x3000, 4) == bytes([1, 2, 3, 4])


def test_cross_page_access_between_ram_and_mmio():
    # [MMIO - 4, MMIO + 4): the low half is RAM that nothing backs -> EPT
    # violation; so test the other direction inside a 2-page MMIO range.
    rec = Recorder({MMIO + 0xFFC: 0xAAAAAAAA, MMIO + 0x1000: 0xBBBBBBBB})
    vm, rec, _ = run64("mov rax, [rbx+0xFFC]", rec)
    assert vm.vcpu.rax == 0xBBBBBBBBAAAAAAAA
    assert rec.log == [(MMIO + 0xFFC, 4, "r", 0), (MMIO + 0x1000, 4, "r", 0)]


def test_sse_load_and_store():
    rec = Recorder({MMIO + 0x200: 0x0807060504030201, MMIO + 0x208: 0x100F0E0D0C0B0A09})
    vm, rec, _ = run64("movups xmm0, [rbx+0x200]\nmovups [rbx+0x300], xmm0", rec, cr4_sse=True)
    assert vm.vcpu.xmm0 == int.from_bytes(bytes(range(1, 17)), "little")
    assert [e[:3] for e in rec.log] == [(MMIO + 0x200, 8, "r"), (MMIO + 0x208, 8, "r"),
                                        (MMIO + 0x300, 8, "w"), (MMIO + 0x308, 8, "w")]
    assert rec.values[MMIO + 0x300] == 0x0807060504030201


def test_a_polling_loop_sees_each_new_value():
    seq = iter([0, 0, 0, 5])

    def status(vcpu, gpa, size, is_write, value):
        return next(seq)
    vm, _, _ = run64("xor ecx, ecx\n1: inc ecx\nmov eax, [rbx]\ntest eax, eax\njz 1b", status)
    assert vm.vcpu.rcx == 4 and vm.vcpu.rax == 5


def test_device_object():
    class Reg(Device):
        name = "reg"

        def __init__(self):
            self.v = 7

        def mmio_read(self, addr, size):
            return self.v

        def mmio_write(self, addr, size, value):
            self.v = value * 2
    d = Reg()
    vm, _, _ = run64("mov dword ptr [rbx+4], 21\nmov eax, [rbx+4]", d)
    assert vm.vcpu.rax == 42


def test_unclaimed_hole_stays_the_raw_ept_violation():
    vm = vtx.VM(memory=1 << 20)
    vm.load(0x1000, vtx.asm("mov rbx, 0xFEC00000\nmov eax, [rbx+0x10]\nhlt", bits=64))
    vm.add_vcpu()
    vm.setup_long_mode(entry=0x1000)
    seen = []

    @vm.on(vtx.ExitReason.EPT_VIOLATION)
    def ev(vcpu, exit):
        seen.append(exit)
        return vtx.STOP
    vm.run(max_instructions=100)
    assert seen[0].guest_physical_address == 0xFEC00010
    assert seen[0].qualification & 0x187 == 0x181      # read, linear valid, final access


def test_handler_must_return_an_int_for_reads():
    vm = vtx.VM(memory=1 << 20)
    vm.map_mmio(MMIO, 0x1000, lambda vcpu, gpa, size, w, v: None)
    vm.load(0x1000, vtx.asm(f"mov rbx, {MMIO:#x}\nmov eax, [rbx]\nhlt", bits=64))
    vm.add_vcpu()
    vm.setup_long_mode(entry=0x1000)
    with pytest.raises(vtx.HandlerReturnError, match="a read returns an int"):
        vm.run(max_instructions=100)
    assert vm.vcpu.rip == 0x100A        # on the instruction, which can run again


def test_mmio_range_checks():
    vm = vtx.VM(memory=1 << 20)
    with pytest.raises(vtx.ArgumentError, match="overlaps the VM's RAM"):
        vm.map_mmio(0x80000, 0x1000, lambda *a: 0)
    with pytest.raises(vtx.ArgumentError, match="multiples of 4 KiB"):
        vm.map_mmio(MMIO + 4, 0x1000, lambda *a: 0)
    with pytest.raises(vtx.ArgumentError, match="address width"):
        vm.map_mmio(1 << 38, 0x1000, lambda *a: 0)
    vm.map_mmio(MMIO, 0x1000, lambda *a: 0)
    with pytest.raises(vtx.ArgumentError, match="overlaps the MMIO range"):
        vm.map_mmio(MMIO, 0x2000, lambda *a: 0)
    with pytest.raises(vtx.ArgumentError, match="neither a device"):
        vm.map_mmio(0xFEB00000, 0x1000, 42)
    vm.unmap_mmio(MMIO)
    with pytest.raises(vtx.ArgumentError, match="no MMIO range"):
        vm.unmap_mmio(MMIO)


# --- slots ---------------------------------------------------------------------------

def _slot_vm():
    vm = vtx.VM(memory=1 << 20)
    vm.add_vcpu()

    @vm.on(vtx.ExitReason.HLT)
    def hlt(vcpu, exit):
        return vtx.STOP
    return vm


def test_added_memory_is_read_written_and_runs_code():
    vm = _slot_vm()
    view = vm.add_memory(0x40000000, 0x200000 + 0x3000)   # a 2 MiB page and three 4 KiB pages
    vm.write(0x40201000, vtx.asm("mov dword ptr [0x40000010], 0x12345678\nmov eax, [0x40202000]\nhlt", bits=64))
    vm.write(0x40202000, (0xDEADBEEF).to_bytes(4, "little"))
    vm.setup_long_mode(entry=0x40201000)
    # the identity map of setup_long_mode covers 4 GiB
    assert vm.run(max_instructions=100).stop == "stop"
    assert vm.vcpu.rax == 0xDEADBEEF
    assert vm.read(0x40000010, 4) == (0x12345678).to_bytes(4, "little")
    assert bytes(view[0x10:0x14]) == (0x12345678).to_bytes(4, "little")
    assert vm.memory_slots == ((0x40000000, 0x203000, False),)


def test_code_patched_in_a_slot_runs_new_bytes():
    vm = _slot_vm()
    vm.add_memory(0x100000, 0x1000)
    # A loop that patches its own immediate each pass in slot memory.
    code = vtx.asm("""
        mov ecx, 3
    2:  mov eax, 1
        inc dword ptr [0x100006]
        loop 2b
        hlt""", bits=64)
    assert code[5:10] == b"\xb8\x01\x00\x00\x00"     # the immediate at 0x100006
    vm.write(0x100000, code)
    vm.setup_long_mode(entry=0x100000)
    vm.run(max_instructions=100)
    assert vm.vcpu.rax == 3


def test_readonly_slot_reads_and_reports_writes():
    vm = _slot_vm()
    writes = []
    vm.add_memory(0x200000, 0x1000, readonly=True, on_write=lambda v, gpa, size, value: writes.append((gpa, size, value)))
    vm.write(0x200000, b"\x5a" * 16)
    vm.load(0x1000, vtx.asm("mov eax, [0x200004]\nmov word ptr [0x200008], 0xbeef\nhlt", bits=64))
    vm.setup_long_mode(entry=0x1000)
    vm.run(max_instructions=100)
    assert vm.vcpu.rax == 0x5A5A5A5A
    assert writes == [(0x200008, 2, 0xBEEF)]
    assert vm.read(0x200008, 2) == b"\x5a\x5a"          # the memory itself is unchanged


def test_readonly_slot_without_handler_ignores_writes():
    vm = _slot_vm()
    vm.add_memory(0x200000, 0x1000, readonly=True)
    vm.load(0x1000, vtx.asm("mov dword ptr [0x200000], 7\nmov eax, [0x200000]\nhlt", bits=64))
    vm.setup_long_mode(entry=0x1000)
    vm.run(max_instructions=100)
    assert vm.vcpu.rax == 0


def test_removed_memory_is_a_hole_and_moved_memory_keeps_its_bytes():
    vm = _slot_vm()
    vm.add_memory(0x300000, 0x2000)
    vm.write(0x300000, b"abcd")
    vm.move_memory(0x300000, 0x500000)
    assert vm.read(0x500000, 4) == b"abcd"
    vm.load(0x1000, vtx.asm("mov eax, [0x500000]\nmov ebx, [0x300000]\nhlt", bits=64))
    vm.setup_long_mode(entry=0x1000)
    seen = []

    @vm.on(vtx.ExitReason.EPT_VIOLATION)
    def ev(vcpu, exit):
        seen.append(exit.guest_physical_address)
        return vtx.STOP
    vm.run(max_instructions=100)
    assert vm.vcpu.rax == int.from_bytes(b"abcd", "little")
    assert seen == [0x300000]
    vm.remove_memory(0x500000)
    assert vm.memory_slots == ()
    with pytest.raises(vtx.GuestMemoryError):
        vm.read(0x500000, 4)


def test_slot_layout_errors():
    vm = vtx.VM(memory=1 << 20)
    with pytest.raises(vtx.ArgumentError, match="overlaps the VM's RAM"):
        vm.add_memory(0xFF000, 0x2000)
    with pytest.raises(vtx.ArgumentError, match="multiples of 4 KiB"):
        vm.add_memory(0x100800, 0x1000)
    with pytest.raises(vtx.ArgumentError, match="multiples of 4 KiB"):
        vm.add_memory(0x100000, 100)
    with pytest.raises(vtx.ArgumentError, match="address width"):
        vm.add_memory((1 << 38) - 0x1000, 0x2000)
    with pytest.raises(TypeError):
        vm.add_memory("0x100000", 0x1000)
    vm.add_memory(0x100000, 0x1000)
    with pytest.raises(vtx.ArgumentError, match="overlaps the memory slot"):
        vm.add_memory(0x100000, 0x1000)
    with pytest.raises(vtx.ArgumentError, match="no memory slot"):
        vm.remove_memory(0x200000)
    with pytest.raises(vtx.ArgumentError, match="on_write"):
        vm.add_memory(0x300000, 0x1000, on_write=print)


def test_translate_walks_the_guest_page_tables_without_side_effects():
    vm = _slot_vm()
    vm.setup_long_mode(entry=0x1000)
    assert vm.translate(0x12345) == 0x12345                  # identity-mapped 2 MiB pages
    assert vm.translate(0x1_0000_0000) is None              # beyond the 4 GiB mapped
    assert vm.translate(0x1000, user=True) is None          # supervisor pages
    vm.setup_real_mode(entry=0)
    assert vm.translate(0xFFFF0) == 0xFFFF0


# --- dirty-page logging ------------------------------------------------------------

def test_dirty_log_records_guest_writes_and_page_table_updates():
    vm = _slot_vm()
    mem = 1 << 20
    vm.load(0x1000, vtx.asm("""
        mov dword ptr [0x3000], 1
        mov eax, [0x7000]
        mov qword ptr [0x5ff8], rax
        hlt""", bits=64))
    vm.setup_long_mode(entry=0x1000)
    vm.dirty_log()
    vm.run(max_instructions=100)
    tables = mem - 0x8000
    # The walk set accessed flags in the PML4, the PDPT and the first PD
    # (and the leaf's dirty flag): the processor's writes are logged too.
    assert vm.dirty_pages() == [0x3000, 0x5000, tables + 0x1000, tables + 0x2000, tables + 0x3000]
    # The log is fresh: only what the next run writes.
    vm.vcpu.rip = 0x1000
    vm.run(max_instructions=100)
    assert vm.dirty_pages() == [0x3000, 0x5000]
    assert vm.dirty_pages() == []


def test_dirty_log_of_an_added_slot_and_errors():
    vm = _slot_vm()
    vm.add_memory(0x400000, 0x4000)
    vm.load(0x1000, vtx.asm("mov byte ptr [0x402001], 1\nhlt", bits=64))
    vm.setup_long_mode(entry=0x1000)
    with pytest.raises(vtx.VmStateError, match="does not log"):
        vm.get_dirty_log(0x400000)
    vm.dirty_log(0x400000)
    vm.run(max_instructions=100)
    assert vm.get_dirty_log(0x400000) == b"\x04"
    assert vm.dirty_pages(0x400000) == []
    vm.dirty_log(0x400000, enable=False)
    with pytest.raises(vtx.ArgumentError, match="no memory slot"):
        vm.dirty_log(0x500000)


def test_cmpxchg_and_lock_xadd_on_mmio():
    rec = Recorder({MMIO + 0x10: 5, MMIO + 0x18: 40})
    vm, rec, _ = run64("""
    mov eax, 5
    mov ecx, 9
    lock cmpxchg dword ptr [rbx + 0x10], ecx
    pushfq
    pop r8
    mov edx, 2
    lock xadd dword ptr [rbx + 0x18], edx""", rec)
    assert rec.log == [(MMIO + 0x10, 4, "r", 0), (MMIO + 0x10, 4, "w", 9),
                       (MMIO + 0x18, 4, "r", 0), (MMIO + 0x18, 4, "w", 42)]
    assert vm.vcpu.r8 & 0x40                          # ZF: the comparison succeeded
    assert vm.vcpu.rdx == 40


def test_rep_movs_between_two_mmio_registers_interleaves_reads_and_writes():
    rec = Recorder({MMIO + 0x100: 0xA, MMIO + 0x104: 0xB})
    vm, rec, _ = run64("lea rsi, [rbx + 0x100]\nlea rdi, [rbx + 0x200]\nmov ecx, 2\ncld\nrep movsd", rec)
    assert rec.log == [(MMIO + 0x100, 4, "r", 0), (MMIO + 0x200, 4, "w", 0xA),
                       (MMIO + 0x104, 4, "r", 0), (MMIO + 0x204, 4, "w", 0xB)]


def test_mmio_from_32_bit_protected_mode():
    vm = vtx.VM(memory=1 << 20)
    rec = Recorder({MMIO + 0x20: 0x12345678})
    vm.map_mmio(MMIO, 0x1000, rec)
    vm.load(0x1000, vtx.asm(f"mov eax, [{MMIO + 0x20:#x}]\nmov word ptr [{MMIO + 0x30:#x}], ax\nhlt", bits=32))
    vm.add_vcpu()
    vm.setup_protected_mode(entry=0x1000)
    vm.on("HLT")(lambda vcpu, exit: vtx.STOP)
    vm.run(max_instructions=100)
    assert vm.vcpu.rax == 0x12345678
    assert rec.log == [(MMIO + 0x20, 4, "r", 0), (MMIO + 0x30, 2, "w", 0x5678)]


NOT_EMULATED = ("through an access the model does not emulate (an exception frame, a descriptor table, "
                "a task-state segment, an FXSAVE area or more than 32 accesses in one instruction)")


def test_an_exception_frame_on_mmio_is_a_clear_error_and_the_vcpu_can_go_on():
    """The limit of the replay (docs/architecture.rst, "Memory slots and
    MMIO"): an event's stack frame is written by the delivery, not by an
    instruction's accesses, so an INT3 with RSP in a device's range is a
    GuestMemoryError naming the address, the device sees nothing, and the
    vCPU stays at the INT3: with RSP back in RAM the same run goes on."""
    vm = vtx.VM(memory=1 << 20)
    rec = Recorder()
    vm.map_mmio(MMIO, 0x1000, rec)
    vm.load(0x1000, vtx.asm(gate(3, "h") + LIDT + f"""
    mov rsp, {MMIO + 0x100:#x}
    int3
    hlt
h:  mov r12, 0x33
    iretq
""" + IDTR, bits=64))
    vm.add_vcpu()
    vm.setup_long_mode(entry=0x1000)
    vm.vcpu.vmwrite(vtx.VmcsField.EXCEPTION_BITMAP, 0)
    vm.on(vtx.ExitReason.HLT)(lambda vcpu, exit: vtx.STOP)
    with pytest.raises(vtx.GuestMemoryError) as e:
        vm.run(max_instructions=1000)
    rip = vm.vcpu.rip
    assert str(e.value) == (f"the guest wrote guest-physical address {MMIO + 0xF8:#x}, which no memory slot "
                            f"backs (MMIO), {NOT_EMULATED} at rip {rip:#x}")
    assert vm.read(rip, 1) == b"\xcc" and rec.log == []
    vm.vcpu.rsp = 0x9000
    assert vm.run(max_instructions=1000).stop == "stop"
    assert vm.vcpu.r12 == 0x33 and vm.vcpu.rip == rip + 1 and vm.vcpu.rsp == 0x9000     # at the HLT


def test_more_than_32_accesses_in_one_instruction_is_a_clear_error():
    """FXSAVE's 512-byte area is more accesses than the replay log holds:
    the device has seen the first 32 (8-byte stores, in order) when the run
    ends with a GuestMemoryError naming the 33rd; the FXSAVE has not retired."""
    vm = vtx.VM(memory=1 << 20)
    rec = Recorder()
    vm.map_mmio(MMIO, 0x1000, rec)
    vm.load(0x1000, vtx.asm(f"mov rbx, {MMIO:#x}\nfxsave [rbx]\nhlt", bits=64))
    vm.add_vcpu()
    vm.setup_long_mode(entry=0x1000)
    vm.vcpu.cr4 |= 0x600
    with pytest.raises(vtx.GuestMemoryError) as e:
        vm.run(max_instructions=1000)
    assert str(e.value) == (f"the guest wrote guest-physical address {MMIO + 0x100:#x}, which no memory slot "
                            f"backs (MMIO), {NOT_EMULATED} at rip 0x100a")
    assert [(gpa - MMIO, size, d) for gpa, size, d, _ in rec.log] == [(8 * i, 8, "w") for i in range(32)]
    assert vm.vcpu.rip == 0x100A
