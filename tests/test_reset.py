"""The power-on state and firmware (core/reset.pxi; vtx.vm map_rom): after
reset() the processor is where SDM Vol. 3A 10.1.1 (Table 10-1) puts it, real
mode at F000:FFF0 with CS.base FFFF0000H, and a ROM image mapped at the top
of 4 GiB and below 1 MiB runs from the reset vector, on bare metal and as a
hosted VM's guest.  Writes to the ROM are ignored."""

import pytest

import vtx
from vtx import CpuModel, Segment

ROM_SIZE = 0x20000          # 128 KiB: FFFE0000-FFFFFFFF, and E0000-FFFFF below 1 MiB
MAIN = 0xE000               # IP of the firmware's main code in segment F000
DATA = 0xE800               # IP of a data byte pattern in the ROM


def rom_offset(ip):
    """Offset in the image of F000:ip as fetched after reset (linear
    FFFF0000H + ip, the image ending at 4 GiB)."""
    return ROM_SIZE - 0x10000 + ip


def firmware(main_src):
    """A 128 KiB image: JMP rel16 to MAIN at the reset vector (F000:FFF0,
    physical FFFFFFF0H), `main_src` at MAIN, the bytes 'ROM!' at DATA."""
    img = bytearray(b"\xff" * ROM_SIZE)
    vec = vtx.asm(f"jmp {MAIN:#x}", bits=16, org=0xFFF0)
    assert len(vec) == 3 and vec[0] == 0xE9       # a near JMP rel16
    img[rom_offset(0xFFF0):rom_offset(0xFFF0) + len(vec)] = vec
    code = vtx.asm(main_src, bits=16, org=MAIN)
    img[rom_offset(MAIN):rom_offset(MAIN) + len(code)] = code
    img[rom_offset(DATA):rom_offset(DATA) + 4] = b"ROM!"
    return bytes(img)


# The near jump stays in the top segment (CS.base FFFF0000H): the code runs
# from the copy at the top of 4 GiB.  DS = F000 reads the copy below 1 MiB
# (F0000H + DATA); a write there, and one through CS to the top copy, are
# ignored.  Output goes to port E9H.
MAIN_SRC = f"""
    mov ax, 0xf000
    mov ds, ax
    mov al, [{DATA}]            # 'R' from the low copy
    out 0xe9, al
    mov al, cs:[{DATA + 1}]     # 'O' from the top copy
    out 0xe9, al
    mov byte ptr [{DATA + 2}], 0x55
    mov byte ptr cs:[{DATA + 3}], 0x66
    mov al, cs:[{DATA + 2}]     # 'M': the write to the low copy was ignored
    out 0xe9, al
    mov al, [{DATA + 3}]        # '!': and the one to the top copy
    out 0xe9, al
    mov eax, edx                # the signature reset left in EDX
    out 0xe9, al
    hlt
"""


def check_reset_registers(get, signature):
    cs = get("cs")
    assert (cs.selector, cs.base, cs.limit) == (0xF000, 0xFFFF0000, 0xFFFF)
    assert cs.access_rights & 0xFF == 0x9B
    for name in ("ds", "es", "ss", "fs", "gs"):
        s = get(name)
        assert (s.selector, s.base, s.limit, s.access_rights & 0xFF) == (0, 0, 0xFFFF, 0x93), name
    assert get("rip") == 0xFFF0
    assert get("rflags") == 2
    assert get("rdx") == signature
    for r in ("rax", "rbx", "rcx", "rsi", "rdi", "rbp", "rsp", "r8", "r15"):
        assert get(r) == 0, r
    assert get("cr2") == 0 and get("cr3") == 0
    assert get("gdtr").base == 0 and get("gdtr").limit == 0xFFFF
    assert get("idtr").base == 0 and get("idtr").limit == 0xFFFF
    assert get("efer") == 0


# --- bare metal ------------------------------------------------------------------

@pytest.mark.parametrize("preset", ["default", "core2"])
def test_bare_metal_reset_state(preset):
    bm = vtx.BareMetal(memory=1 << 20, cpu=preset)
    bm.setup_long_mode(entry=0x1000)        # anything but the reset state
    bm.cpu.reset()
    check_reset_registers(lambda n: getattr(bm.cpu, n), CpuModel(preset).signature)
    assert bm.cpu.cr0 == 0x60000010
    assert bm.cpu.cr4 == 0
    assert not bm.cpu.in_vmx_operation


def test_bare_metal_boots_from_the_reset_vector():
    bm = vtx.BareMetal(memory=2 << 20)
    bm.map_rom(firmware(MAIN_SRC))
    bm.setup_long_mode(entry=0x1000)
    bm.cpu.reset()
    r = bm.run(max_instructions=1000)
    assert r.stop == "halted"
    assert bytes(bm.console) == b"ROM!" + bytes([0x906EA & 0xFF])
    assert bm.cpu.cs.selector == 0xF000 and bm.cpu.cs.base == 0xFFFF0000
    assert bm.rom_bytes()[rom_offset(DATA):rom_offset(DATA) + 4] == b"ROM!"


def test_low_copy_hides_ram_and_ram_elsewhere_is_untouched():
    bm = vtx.BareMetal(memory=2 << 20)
    bm.write(0xF0000 + DATA, b"RAM.")            # under the ROM's low copy: hidden once mapped
    bm.write(0x7000, b"keep")
    bm.map_rom(firmware(MAIN_SRC), low=0x10000)  # only F0000-FFFFF
    bm.cpu.reset()
    assert bm.run(max_instructions=1000).stop == "halted"
    assert bytes(bm.console)[:4] == b"ROM!"
    assert bm.read(0x7000, 4) == b"keep"
    assert bm.read(0xF0000 + DATA, 4) == b"RAM."  # the RAM itself is unchanged (and unseen)


def test_no_low_copy():
    """With low=0 only the top copy exists: DS:DATA reads the RAM there."""
    bm = vtx.BareMetal(memory=2 << 20)
    bm.write(0xF0000 + DATA, b"RAM.")
    bm.map_rom(firmware(MAIN_SRC), low=0)
    bm.cpu.reset()
    assert bm.run(max_instructions=1000).stop == "halted"
    # the low reads and the low write go to RAM (now 0x55 at DATA + 2)
    assert bytes(bm.console)[:4] == b"RO" + b"M" + b"."
    assert bm.read(0xF0000 + DATA, 4) == b"RA\x55."


@pytest.mark.parametrize("kwargs,error", [
    (dict(image=b"\0" * 1000), vtx.ArgumentError),
    (dict(image=b"\0" * (32 << 20)), vtx.ArgumentError),
    (dict(image=b"\0" * 0x10000, low=0x20000), vtx.ArgumentError),
    (dict(image=b"\0" * 0x10000, low=0x800), vtx.ArgumentError),
    (dict(image=b"\0" * 0x10000, low="big"), TypeError),
])
def test_map_rom_checks(kwargs, error):
    bm = vtx.BareMetal(memory=1 << 20)
    with pytest.raises(error):
        bm.map_rom(**kwargs)


def test_one_rom_per_machine_and_memory_below_it():
    bm = vtx.BareMetal(memory=1 << 20)
    bm.map_rom(b"\0" * 0x10000)
    with pytest.raises(vtx.VmStateError):
        bm.map_rom(b"\0" * 0x10000)
    big = vtx.BareMetal(memory=(4 << 30) - 0x8000)
    with pytest.raises(vtx.ArgumentError):
        big.map_rom(b"\0" * 0x10000)


# --- the hosted VM -----------------------------------------------------------------

def hosted(preset="default", rom=True):
    vm = vtx.VM(memory=2 << 20, cpu=preset)
    v = vm.add_vcpu()
    if rom:
        vm.map_rom(firmware(MAIN_SRC))
    out = bytearray()

    @vm.on(vtx.ExitReason.IO_INSTRUCTION)
    def io(vcpu, exit):
        out.append(exit.value & 0xFF)
        return vtx.RESUME

    @vm.on(vtx.ExitReason.HLT)
    def hlt(vcpu, exit):
        return vtx.STOP
    return vm, v, out


@pytest.mark.parametrize("preset", ["default", "skylake", "core2"])
def test_vcpu_reset_state(preset):
    vm, v, out = hosted(preset, rom=False)
    vm.setup_long_mode(entry=0x1000)
    v.reset()
    check_reset_registers(lambda n: getattr(v, n), CpuModel(preset).signature)
    # VMX fixes CR0.NE and CR4.VMXE to 1; the read shadows hold the power-on values
    assert v.cr0 == 0x60000030
    assert v.vmread(vtx.VmcsField.CR0_READ_SHADOW) == 0x60000010
    assert v.vmread(vtx.VmcsField.CR0_GUEST_HOST_MASK) == 0x20
    assert v.cr4 == 0x2000 and v.vmread(vtx.VmcsField.CR4_READ_SHADOW) == 0
    assert v.dr7 == 0x400
    assert not v.launched
    assert v.check_entry() is None


def test_hosted_guest_boots_from_the_reset_vector():
    vm, v, out = hosted()
    vm.setup_protected_mode(entry=0x1000)
    v.reset()
    r = vm.run(max_instructions=1000)
    assert r.stop == "stop" and r.exit.reason == vtx.ExitReason.HLT
    assert bytes(out) == b"ROM!" + bytes([0x906EA & 0xFF])
    assert v.cs.base == 0xFFFF0000 and v.cs.selector == 0xF000


def test_hosted_guest_reads_the_power_on_cr0():
    """MOV from CR0 gives 60000010H (the read shadow), although VMX keeps NE
    set; clearing CD and NW as firmware does works without an exit."""
    src = """
        mov eax, cr0
        mov ebx, eax
        and eax, 0x9fffffff
        mov cr0, eax
        mov ecx, cr0
        hlt
    """
    vm, v, out = hosted(rom=False)
    vm.map_rom(firmware(src))
    v.reset()
    r = vm.run(max_instructions=1000)
    assert r.exit.reason == vtx.ExitReason.HLT
    assert v.rbx & 0xFFFFFFFF == 0x60000010
    assert v.rcx & 0xFFFFFFFF == 0x00000010
    assert v.cr0 == 0x30


def test_reset_then_setup_clears_the_cr0_shadow():
    vm, v, out = hosted(rom=False)
    v.reset()
    vm.setup_real_mode(entry=0x1000)
    assert v.vmread(vtx.VmcsField.CR0_GUEST_HOST_MASK) == 0


def far_firmware():
    """The usual BIOS start: a far JMP at the reset vector to F000:E05B-like
    code, which reloads CS (base F0000H) so the code runs from the copy
    below 1 MiB."""
    img = bytearray(firmware(MAIN_SRC))
    vec = vtx.asm(f"jmp 0xf000:{MAIN:#x}", bits=16, org=0xFFF0)
    assert vec[0] == 0xEA
    img[rom_offset(0xFFF0):rom_offset(0xFFF0) + len(vec)] = vec
    return bytes(img)


def test_bare_metal_far_jump_to_the_low_copy():
    bm = vtx.BareMetal(memory=2 << 20)
    bm.map_rom(far_firmware())
    bm.cpu.reset()
    r = bm.run(max_instructions=1000)
    assert r.stop == "halted"
    assert bytes(bm.console) == b"ROM!" + bytes([0x906EA & 0xFF])
    assert (bm.cpu.cs.selector, bm.cpu.cs.base) == (0xF000, 0xF0000)
    assert bm.cpu.rip == MAIN + len(vtx.asm(MAIN_SRC, bits=16, org=MAIN))


def test_hosted_far_jump_to_the_low_copy():
    vm, v, out = hosted(rom=False)
    vm.map_rom(far_firmware())
    v.reset()
    r = vm.run(max_instructions=1000)
    assert r.exit.reason == vtx.ExitReason.HLT
    assert bytes(out) == b"ROM!" + bytes([0x906EA & 0xFF])
    assert (v.cs.selector, v.cs.base) == (0xF000, 0xF0000)
