"""vtx.linux: the initramfs writer, the bzImage parser, the 64-bit boot
protocol loader, the asset fetcher, and a real Debian kernel started on a
vtx.VM until it prints its memory map and command line."""

import gzip
import importlib
import json
import stat

import pytest

import vtx
from vtx import ExitReason as R
from vtx.linux import (BzImage, BzImageError, INIT_MARKER, LinuxAssetsUnavailable, Newc, build_boot_params,
                       busybox_initramfs, e820_map, fetch, load_linux)

# The package exports the function fetch, which hides the module of that name.
fetch_mod = importlib.import_module("vtx.linux.fetch")
from vtx.linux.initramfs import APPLETS


# --- a reader of cpio newc, to check the writer against -----------------------------

def read_newc(blob):
    """[(name, fields dict, data)] of a newc archive, checking the framing:
    magic, 4-byte alignment of every header and of every member's data."""
    names = ("ino", "mode", "uid", "gid", "nlink", "mtime", "filesize", "devmajor", "devminor",
             "rdevmajor", "rdevminor", "namesize", "check")
    out, pos = [], 0
    while True:
        assert pos % 4 == 0, f"member header at {pos:#x} is not 4-byte aligned"
        assert blob[pos:pos + 6] == b"070701"
        f = {n: int(blob[pos + 6 + 8 * i:pos + 14 + 8 * i], 16) for i, n in enumerate(names)}
        name_end = pos + 110 + f["namesize"]
        assert blob[name_end - 1] == 0, "name is NUL-terminated"
        name = blob[pos + 110:name_end - 1].decode()
        data_at = name_end + (-name_end % 4)
        assert data_at % 4 == 0
        assert blob[name_end:data_at] == b"\0" * (data_at - name_end)
        data = blob[data_at:data_at + f["filesize"]]
        pos = data_at + f["filesize"]
        pad = -pos % 4
        assert blob[pos:pos + pad] == b"\0" * pad
        pos += pad
        out.append((name, f, data))
        if name == "TRAILER!!!":
            assert pos == len(blob), "nothing after the trailer"
            return out


def test_newc_one_file_exact_bytes():
    a = Newc()
    a.file("/init", b"abcde", 0o755)
    blob = a.bytes()
    # header: magic, ino 1, mode 100755, uid 0, gid 0, nlink 1, mtime 0,
    # filesize 5, dev 0:0, rdev 0:0, namesize 5 ("init" + NUL), check 0
    head = (b"070701" + b"00000001" + b"000081ED" + b"00000000" * 2 + b"00000001" + b"00000000"
            + b"00000005" + b"00000000" * 4 + b"00000005" + b"00000000")
    assert blob[:110] == head
    # 110 + 5 = 115 -> padded to 116; data 5 -> padded to 8
    assert blob[110:116] == b"init\0\0"
    assert blob[116:124] == b"abcde\0\0\0"
    trailer = blob[124:]
    assert trailer[:6] == b"070701" and trailer[110:121] == b"TRAILER!!!\0"
    assert int(trailer[94:102], 16) == 11          # namesize of TRAILER!!! + NUL
    assert len(blob) % 4 == 0


def test_newc_member_kinds():
    a = Newc()
    a.directory("dev", 0o755)
    a.device("/dev/console", "c", 5, 1, 0o600)
    a.device("dev/sda", "b", 8, 0)
    a.symlink("bin/sh", "busybox")
    a.file("etc/motd", "hello\n")
    members = read_newc(a.bytes())
    by = {n: (f, d) for n, f, d in members}
    assert [n for n, _, _ in members] == ["dev", "dev/console", "dev/sda", "bin/sh", "etc/motd", "TRAILER!!!"]
    assert by["dev"][0]["mode"] == stat.S_IFDIR | 0o755 and by["dev"][0]["nlink"] == 2
    f = by["dev/console"][0]
    assert (f["mode"], f["rdevmajor"], f["rdevminor"], f["filesize"]) == (stat.S_IFCHR | 0o600, 5, 1, 0)
    f = by["dev/sda"][0]
    assert (f["mode"], f["rdevmajor"], f["rdevminor"]) == (stat.S_IFBLK | 0o600, 8, 0)
    assert by["bin/sh"][0]["mode"] == stat.S_IFLNK | 0o777 and by["bin/sh"][1] == b"busybox"
    assert by["etc/motd"][0]["mode"] == stat.S_IFREG | 0o644 and by["etc/motd"][1] == b"hello\n"
    inos = [f["ino"] for n, f, _ in members if n != "TRAILER!!!"]
    assert inos == [1, 2, 3, 4, 5]


def test_newc_gzip_is_deterministic():
    def make():
        a = Newc()
        a.file("x", b"1" * 1000)
        return a.gzip()
    g1, g2 = make(), make()
    assert g1 == g2 and g1[:2] == b"\x1f\x8b"
    assert read_newc(gzip.decompress(g1))[0][2] == b"1" * 1000


@pytest.mark.parametrize("call, words", [
    (lambda a: a.file("", b""), "bad member name"),
    (lambda a: a.file("a/../b", b""), "bad member name"),
    (lambda a: a.directory("x", 0o10000), "mode"),
    (lambda a: a.device("dev/x", "p", 1, 1), "'c' (character) or 'b' (block)"),
    (lambda a: a.device("dev/x", "c", -1, 1), "device major"),
    (lambda a: a.symlink("l", ""), "target"),
])
def test_newc_bad_arguments(call, words):
    with pytest.raises(vtx.ArgumentError, match=words.replace("(", r"\(").replace(")", r"\)")):
        call(Newc())


def test_newc_duplicate_and_finished():
    a = Newc()
    a.directory("bin")
    with pytest.raises(vtx.ArgumentError, match="member 'bin' already"):
        a.file("/bin/", b"")
    a.bytes()
    with pytest.raises(vtx.ArgumentError, match="finished"):
        a.file("late", b"")


def fake_busybox(tmp_path):
    p = tmp_path / "busybox"
    p.write_bytes(b"\x7fELF" + bytes(range(256)) * 3)
    return p


def test_busybox_initramfs(tmp_path):
    bb = fake_busybox(tmp_path)
    members = read_newc(gzip.decompress(busybox_initramfs(bb)))
    by = {n: (f, d) for n, f, d in members}
    names = [n for n, _, _ in members]
    assert names[-1] == "TRAILER!!!"
    # directories come before what they hold
    for n in names:
        parent = n.rpartition("/")[0]
        if parent:
            assert names.index(parent) < names.index(n)
    f, d = by["bin/busybox"]
    assert f["mode"] == stat.S_IFREG | 0o755 and f["filesize"] == len(bb.read_bytes()) and d == bb.read_bytes()
    for node, major, minor in (("dev/console", 5, 1), ("dev/ttyS0", 4, 64), ("dev/null", 1, 3),
                               ("dev/kmsg", 1, 11)):
        f = by[node][0]
        assert stat.S_ISCHR(f["mode"]) and (f["rdevmajor"], f["rdevminor"]) == (major, minor)
    for applet in ("sh", "mount", "uname", "cat", "head", "echo", "ls", "setsid", "cttyhack"):
        f, d = by[f"bin/{applet}"]
        assert stat.S_ISLNK(f["mode"]) and d == b"busybox"
    assert len([n for n in names if n.startswith("bin/") and n != "bin/busybox"]) == len(APPLETS)
    f, init = by["init"]
    assert f["mode"] == stat.S_IFREG | 0o755
    text = init.decode()
    assert text.startswith("#!/bin/busybox sh\n")
    for line in ("mount -t proc proc /proc", "mount -t sysfs sysfs /sys", "mount -t devtmpfs devtmpfs /dev",
                 f'echo "{INIT_MARKER}"', "PS1='~ # '", "exec setsid cttyhack sh"):
        assert line in text
    assert by["tmp"][0]["mode"] == stat.S_IFDIR | 0o1777


def test_busybox_initramfs_custom_init_and_errors(tmp_path):
    bb = fake_busybox(tmp_path)
    members = read_newc(gzip.decompress(busybox_initramfs(bb, init_script="#!/bin/sh\necho hi\n")))
    assert dict((n, d) for n, _, d in members)["init"] == b"#!/bin/sh\necho hi\n"
    with pytest.raises(vtx.ArgumentError, match="starts with #!"):
        busybox_initramfs(bb, init_script="echo no shebang")
    with pytest.raises(vtx.ArgumentError, match="cannot read busybox"):
        busybox_initramfs(tmp_path / "missing")
    text = tmp_path / "text"
    text.write_bytes(b"#!/bin/sh\n")
    with pytest.raises(vtx.ArgumentError, match="not an ELF"):
        busybox_initramfs(text)


# --- a synthetic bzImage -----------------------------------------------------------

def put(buf, off, size, value):
    buf[off:off + size] = value.to_bytes(size, "little")


def make_bzimage(setup_sects=1, version=0x020F, xloadflags=0x7F, pref_address=0x1000000, init_size=0x200000,
                 kernel=b"\x90" * 0x300, cmdline_size=0x7FF, initrd_addr_max=0x7FFFFFFF, loadflags=0x01,
                 relocatable=1, alignment=0x200000, header_end_byte=0x6A):
    img = bytearray((setup_sects + 1) * 512)
    img[0x1F1] = setup_sects
    put(img, 0x1FA, 2, 0xFFFF)                 # vid_mode
    put(img, 0x1FE, 2, 0xAA55)
    img[0x200] = 0xEB                          # jmp short to the end of the header
    img[0x201] = header_end_byte               # header ends at 0x202 + 0x6A = 0x26C
    img[0x202:0x206] = b"HdrS"
    put(img, 0x206, 2, version)
    put(img, 0x20E, 2, 0x300 - 0x200)          # kernel_version -> string at 0x300
    img[0x300:0x313] = b"6.1.0-synthetic #1\0"
    img[0x211] = loadflags
    put(img, 0x214, 4, 0x100000)               # code32_start
    put(img, 0x22C, 4, initrd_addr_max)
    put(img, 0x230, 4, alignment)
    img[0x234] = relocatable
    img[0x235] = 21
    put(img, 0x236, 2, xloadflags)
    put(img, 0x238, 4, cmdline_size)
    put(img, 0x258, 8, pref_address)
    put(img, 0x260, 4, init_size)
    return bytes(img) + kernel


def test_bzimage_header_fields():
    b = BzImage(make_bzimage())
    h = b.header
    assert (h.setup_sects, h.boot_flag, h.version, h.loadflags) == (1, 0xAA55, 0x020F, 1)
    assert (h.pref_address, h.init_size, h.kernel_alignment, h.relocatable_kernel, h.min_alignment) == \
        (0x1000000, 0x200000, 0x200000, 1, 21)
    assert (h.xloadflags, h.cmdline_size, h.initrd_addr_max, h.code32_start) == (0x7F, 0x7FF, 0x7FFFFFFF, 0x100000)
    assert b.protocol == (2, 15)
    assert b.kernel_offset == 0x400 and bytes(b.kernel) == b"\x90" * 0x300
    assert len(b.setup_header_bytes) == 0x26C - 0x1F1
    assert b.version_string == "6.1.0-synthetic #1"
    assert b.field("jump") == 0x6AEB
    with pytest.raises(KeyError):
        b.field("nonesuch")


def test_bzimage_setup_sects_zero_means_four():
    img = bytearray(make_bzimage(setup_sects=4, kernel=b"K" * 16))
    img[0x1F1] = 0
    b = BzImage(bytes(img))
    assert b.setup_sects == 4 and b.kernel_offset == 5 * 512 and bytes(b.kernel) == b"K" * 16


@pytest.mark.parametrize("data, words", [
    (b"\0" * 0x100, "shorter than the setup header"),
    (make_bzimage()[:0x202] + b"HdrX" + make_bzimage()[0x206:], "no 'HdrS' magic"),
    (make_bzimage()[:0x1FE] + b"\x55\x55" + make_bzimage()[0x200:], "boot_flag"),
    (make_bzimage(version=0x020B), "older than 2.12"),
    (make_bzimage(xloadflags=0x7E), "no 64-bit entry point"),
    (make_bzimage(kernel=b""), "truncated bzImage"),
    (make_bzimage(header_end_byte=0x40), "before init_size"),
])
def test_bzimage_errors(data, words):
    with pytest.raises(BzImageError, match=words):
        BzImage(data)


def test_bzimage_open(tmp_path):
    p = tmp_path / "vmlinuz"
    p.write_bytes(make_bzimage())
    assert BzImage.open(p).header.version == 0x020F
    with pytest.raises(BzImageError, match="cannot read"):
        BzImage.open(tmp_path / "missing")
    with pytest.raises(TypeError, match="BzImage.open"):
        BzImage(str(p))


# --- boot_params and the E820 map --------------------------------------------------

def u(vm, addr, size):
    return int.from_bytes(vm.read(addr, size), "little")


def test_e820_map_plain_and_with_holes():
    assert e820_map(64 << 20) == [(0, 0x9FC00, 1), (0x9FC00, 0x60400, 2), (0x100000, (64 << 20) - 0x100000, 1)]
    m = e820_map(64 << 20, reserved=[(0xFEC00000, 0x1000), (0x2000000, 0x100000)])
    assert m == [(0, 0x9FC00, 1), (0x9FC00, 0x60400, 2), (0x100000, 0x1F00000, 1), (0x2000000, 0x100000, 2),
                 (0x2100000, (64 << 20) - 0x2100000, 1), (0xFEC00000, 0x1000, 2)]
    with pytest.raises(vtx.ArgumentError, match="overlap"):
        e820_map(64 << 20, reserved=[(0x2000000, 0x2000), (0x2001000, 0x1000)])
    with pytest.raises(vtx.ArgumentError, match=r"\(base, size\) pair"):
        e820_map(64 << 20, reserved=[(1, 2, 3)])
    with pytest.raises(vtx.ArgumentError, match="size"):
        e820_map(64 << 20, reserved=[(0x2000000, 0)])


def test_build_boot_params_ext_fields_above_4g():
    b = BzImage(make_bzimage())
    bp = build_boot_params(b, 0x1_0002_0000, 0x1_2345_6000, 0x1234, [(0, 0x1000, 1)], acpi_rsdp=0xE0000)
    g = lambda off, n: int.from_bytes(bp[off:off + n], "little")
    assert len(bp) == 4096
    assert (g(0x228, 4), g(0x0C8, 4)) == (0x00020000, 1)            # cmd_line_ptr, ext_cmd_line_ptr
    assert (g(0x218, 4), g(0x0C0, 4)) == (0x23456000, 1)            # ramdisk_image, ext_ramdisk_image
    assert (g(0x21C, 4), g(0x0C4, 4)) == (0x1234, 0)                # ramdisk_size, ext_ramdisk_size
    assert g(0x070, 8) == 0xE0000                                   # acpi_rsdp_addr
    assert g(0x1E8, 1) == 1 and (g(0x2D0, 8), g(0x2D8, 8), g(0x2E0, 4)) == (0, 0x1000, 1)
    assert g(0x1EF, 1) == 0                                         # sentinel


def synthetic_vm(memory=64 << 20, **kw):
    vm = vtx.VM(memory=memory)
    image = make_bzimage(**kw)
    return vm, image


def test_load_linux_boot_params_bytes():
    vm, image = synthetic_vm()
    initrd = bytes(range(256)) * 20                                 # 5120 bytes
    info = load_linux(vm, image, initrd=initrd, cmdline="console=ttyS0 quiet")
    bp = info.boot_params
    assert bp == 0x7000
    # the setup header, copied from 1F1H to its end, with the loader's fields
    hdr = bytearray(vm.read(bp + 0x1F1, 0x26C - 0x1F1))
    orig = bytearray(image[0x1F1:0x26C])
    for off, size in ((0x210, 1), (0x211, 1), (0x218, 4), (0x21C, 4), (0x224, 2), (0x228, 4)):
        hdr[off - 0x1F1:off - 0x1F1 + size] = orig[off - 0x1F1:off - 0x1F1 + size]
    assert hdr == orig
    assert u(vm, bp + 0x210, 1) == 0xFF                             # type_of_loader: undefined
    assert u(vm, bp + 0x211, 1) == 0x01 | 0x80                      # LOADED_HIGH | CAN_USE_HEAP
    assert u(vm, bp + 0x224, 2) == 0xDE00                           # heap_end_ptr
    assert u(vm, bp + 0x228, 4) == 0x20000 and u(vm, bp + 0x0C8, 4) == 0
    assert vm.read(0x20000, 20) == b"console=ttyS0 quiet\0"
    # initrd: page aligned, as high as it fits in the 64 MiB of RAM
    assert info.initrd_address == ((64 << 20) - len(initrd)) & ~0xFFF == 0x3FFE000
    assert u(vm, bp + 0x218, 4) == 0x3FFE000 and u(vm, bp + 0x0C0, 4) == 0
    assert u(vm, bp + 0x21C, 4) == len(initrd) and u(vm, bp + 0x0C4, 4) == 0
    assert vm.read(0x3FFE000, len(initrd)) == initrd
    # E820: three entries at 2D0H, 20 bytes each
    assert u(vm, bp + 0x1E8, 1) == 3
    want = [(0, 0x9FC00, 1), (0x9FC00, 0x100000 - 0x9FC00, 2), (0x100000, (64 << 20) - 0x100000, 1)]
    for i, (a, s, t) in enumerate(want):
        e = bp + 0x2D0 + 20 * i
        assert (u(vm, e, 8), u(vm, e + 8, 8), u(vm, e + 16, 4)) == (a, s, t)
    assert u(vm, bp + 0x2D0 + 60, 20) == 0
    assert u(vm, bp + 0x1EF, 1) == 0                                # sentinel
    assert u(vm, bp, 0x1E8) == 0                                    # the rest of the zero page is zero
    # the protected-mode kernel at pref_address
    assert info.load_address == 0x1000000 and vm.read(0x1000000, 0x300) == b"\x90" * 0x300
    assert info.entry == 0x1000200 and info.kernel_size == 0x300
    assert info.kernel_version == "6.1.0-synthetic #1" and info.protocol == (2, 15)
    assert info.e820 == tuple(want)


def test_load_linux_vcpu_state_and_gdt():
    vm, image = synthetic_vm()
    info = load_linux(vm, image)
    v = vm.vcpu
    assert v.rip == 0x1000200 and v.rsi == 0x7000 and v.rflags == 2
    assert v.cs == vtx.Segment(0x10, 0, 0xFFFFFFFF, 0xA09B)
    for s in (v.ds, v.es, v.ss):
        assert s == vtx.Segment(0x18, 0, 0xFFFFFFFF, 0xC093)
    assert v.cr0 & 0x80000001 == 0x80000001                         # PG, PE
    assert v.cr4 & 0x20 and v.cr3 == info.page_tables == 0x9000
    assert v.efer == 0x500
    assert v.vmread(vtx.VmcsField.VM_ENTRY_CONTROLS) & vtx.EntryControls.IA32E_MODE_GUEST
    assert v.gdtr == vtx.DescriptorTable(0x1000, 31)
    assert u(vm, 0x1000 + 0x10, 8) == 0x00AF9B000000FFFF
    assert u(vm, 0x1000 + 0x18, 8) == 0x00CF93000000FFFF
    # identity map: PML4[0] -> PDPT, PDPT[3] -> the 4th PD, whose last entry maps 4 GiB - 2 MiB
    assert u(vm, 0x9000, 8) == 0xA003
    pd3 = u(vm, 0xA000 + 24, 8) & ~0xFFF
    assert u(vm, pd3 + 511 * 8, 8) == (4 << 30) - (2 << 20) | 0x83
    assert v.check_entry() is None


def test_load_linux_runs_to_the_64bit_entry():
    """The entry state runs: code at load + 200H reads cmd_line_ptr through
    RSI and CS, and halts."""
    code = bytes.fromhex("8b8628020000"       # mov eax, [rsi + 0x228]
                         "8ccb"               # mov ebx, cs
                         "8cda"               # mov edx, ds
                         "f4")                # hlt
    kernel = b"\xcc" * 0x200 + code
    vm, image = synthetic_vm(kernel=kernel)
    load_linux(vm, image)
    vm.on(R.HLT)(lambda vcpu, e: vtx.STOP)
    res = vm.run(max_instructions=100)
    v = vm.vcpu
    assert res.stop == "stop" and isinstance(res.exit, vtx.HltExit)
    assert v.rip == 0x1000200 + len(code) - 1
    assert (v.rax, v.rbx & 0xFFFF, v.rdx & 0xFFFF) == (0x20000, 0x10, 0x18)


def test_load_linux_uses_an_existing_vcpu_and_reserved_ranges():
    vm, image = synthetic_vm()
    v = vm.add_vcpu()
    info = load_linux(vm, image, initrd=b"x" * 10, reserved=[(0x3000000, 0x1000000)])
    assert vm.vcpu is v and v.rip == 0x1000200
    # the initrd avoids the reserved range at the top of RAM and goes below it
    assert info.initrd_address == 0x2FFF000
    assert (0x3000000, 0x1000000, 2) in info.e820
    assert u(vm, 0x7000 + 0x1E8, 1) == 4


@pytest.mark.parametrize("kw, words", [
    (dict(cmdline="x" * 0x800), "cmdline_size"),
    (dict(cmdline="console=ttyS0\0"), "without NUL"),
    (dict(cmdline="caf\u00e9"), "ASCII"),
    (dict(initrd=b"x" * (48 << 20)), "no room for the"),
    (dict(reserved=[(1, 2, 3)]), "pair"),
])
def test_load_linux_bad_arguments(kw, words):
    vm, image = synthetic_vm()
    with pytest.raises(vtx.ArgumentError, match=words):
        load_linux(vm, image, **kw)


def test_load_linux_kernel_that_does_not_fit():
    vm, image = synthetic_vm(memory=32 << 20, init_size=0x1800000)
    with pytest.raises(vtx.ArgumentError, match="init_size 0x1800000"):
        load_linux(vm, image)
    vm = vtx.VM(memory=16 << 20)
    with pytest.raises(BzImageError, match="HdrS"):
        load_linux(vm, b"\0" * 0x1000)
    with pytest.raises(TypeError, match="bytes or a path"):
        load_linux(vm, 12345)


def test_load_linux_from_paths(tmp_path):
    vm, image = synthetic_vm()
    (tmp_path / "vmlinuz").write_bytes(image)
    (tmp_path / "initrd").write_bytes(b"ABCD" * 3)
    info = load_linux(vm, tmp_path / "vmlinuz", initrd=str(tmp_path / "initrd"))
    assert info.initrd_size == 12 and vm.read(info.initrd_address, 12) == b"ABCD" * 3
    assert vm.read(0x1000000, 0x300) == b"\x90" * 0x300
    with pytest.raises(vtx.ArgumentError, match="cannot read the initrd"):
        load_linux(vtx.VM(memory=64 << 20), image, initrd=tmp_path / "missing")


def test_load_linux_foreign_vcpu():
    vm, image = synthetic_vm()
    other = vtx.VM(memory=1 << 20)
    with pytest.raises(vtx.ArgumentError, match="not a vCPU of this VM"):
        load_linux(vm, image, vcpu=other.add_vcpu())


def test_load_linux_low_memory_reserved():
    vm, image = synthetic_vm()
    with pytest.raises(vtx.ArgumentError, match="tables and command line need"):
        load_linux(vm, image, reserved=[(0x8000, 0x1000)])


def test_load_linux_unaligned_pref_address():
    vm, image = synthetic_vm(pref_address=0x1100000)
    assert load_linux(vm, image).load_address == 0x1200000
    vm, image = synthetic_vm(pref_address=0x1100000, relocatable=0)
    assert load_linux(vm, image).load_address == 0x1100000
    assert vm.vcpu.rip == 0x1100200
    vm, image = synthetic_vm(pref_address=0x1000, relocatable=0)
    assert load_linux(vm, image).load_address == 0x100000
    vm, image = synthetic_vm(pref_address=0)
    assert load_linux(vm, image).load_address == 0x1000000


# --- fetch without the network --------------------------------------------------------

def test_fetch_reads_the_manifest_and_downloads_nothing(tmp_path, monkeypatch):
    for rel in ("k/boot/vmlinuz-6.1.0-9-cloud-amd64", "k/boot/config-6.1.0-9-cloud-amd64", "b/bin/busybox"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "assets.json").write_text(json.dumps({
        "kernel": "k/boot/vmlinuz-6.1.0-9-cloud-amd64", "config": "k/boot/config-6.1.0-9-cloud-amd64",
        "busybox": "b/bin/busybox", "kernel_package": "linux-image-6.1.0-9-cloud-amd64",
        "kernel_version": "6.1.27-1", "kernel_release": "6.1.0-9-cloud-amd64", "busybox_version": "1:1.35.0-4"}))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))       # no apt-get: any download would fail
    a = fetch(tmp_path)
    assert a.kernel == tmp_path / "k/boot/vmlinuz-6.1.0-9-cloud-amd64"
    assert a.busybox == tmp_path / "b/bin/busybox"
    assert (a.kernel_package, a.kernel_version, a.kernel_release, a.busybox_version) == \
        ("linux-image-6.1.0-9-cloud-amd64", "6.1.27-1", "6.1.0-9-cloud-amd64", "1:1.35.0-4")
    monkeypatch.setenv("VTX_CACHE", str(tmp_path))
    assert fetch() == a


def test_fetch_without_apt_raises(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(LinuxAssetsUnavailable, match="apt-get is not installed") as e:
        fetch(tmp_path / "cache")
    assert "apt-get" in e.value.reason
    # a manifest naming a file that is gone is not trusted
    (tmp_path / "c2").mkdir()
    (tmp_path / "c2" / "assets.json").write_text('{"kernel": "gone"}')
    with pytest.raises(LinuxAssetsUnavailable):
        fetch(tmp_path / "c2")


def test_fetch_command_line_reports_the_reason(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert fetch_mod.main(["--cache", str(tmp_path / "c")]) == 1
    assert "Linux boot assets unavailable: apt-get is not installed" in capsys.readouterr().err


def test_resolve_kernel_package(monkeypatch):
    monkeypatch.setattr(fetch_mod, "_run", lambda argv, cwd=None:
                        "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-50-cloud-amd64\n")
    assert fetch_mod.resolve_kernel_package() == "linux-image-6.1.0-50-cloud-amd64"
    monkeypatch.setattr(fetch_mod, "_run", lambda argv, cwd=None: "linux-image-cloud-amd64\n")
    with pytest.raises(LinuxAssetsUnavailable, match="names no linux-image package"):
        fetch_mod.resolve_kernel_package()


def test_run_failure_is_unavailable():
    with pytest.raises(LinuxAssetsUnavailable, match="failed: .*no such"):
        fetch_mod._run(["sh", "-c", "echo 'E: no such package' >&2; exit 100"])


# --- the real kernel -------------------------------------------------------------------

@pytest.fixture(scope="module")
def assets():
    try:
        return fetch()
    except LinuxAssetsUnavailable as e:
        pytest.skip(e.reason)


def test_real_kernel_image(assets):
    b = BzImage.open(assets.kernel)
    assert b.protocol >= (2, 12) and b.header.xloadflags & 1
    assert b.version_string.startswith(assets.kernel_release + " ")
    assert b.header.relocatable_kernel == 1 and b.header.pref_address % b.header.kernel_alignment == 0
    assert assets.config.read_text().count("CONFIG_SERIAL_8250_CONSOLE=y") == 1
    assert assets.busybox.read_bytes()[:4] == b"\x7fELF"


class SerialLog:
    """What the guest writes to COM1's transmit register (3F8H), and a stop
    when a wanted line is complete."""

    def __init__(self, until):
        self.chars = []
        self.until = until

    @property
    def text(self):
        return "".join(self.chars)

    def io(self, vcpu, e):
        if e.is_in:
            mask = (1 << (8 * e.size)) - 1
            # LSR (3FDH): THRE and TEMT, so the kernel's serial output never
            # waits; every other port reads as nothing there (all ones).
            value = 0x60 if e.port == 0x3FD else mask
            vcpu.rax = (vcpu.rax & ~mask) | value
        elif e.port == 0x3F8:
            self.chars.append(chr(e.value & 0xFF))
            if self.chars[-1] == "\n" and self.until in self.text:
                return vtx.STOP
        return vtx.RESUME


def start_kernel(assets, cmdline, until, budget, init_script=None):
    """A VM with the kernel and a busybox initramfs loaded, the platform's
    few choices made, run until the serial line ``until`` is complete (or HLT,
    or the budget); returns (vm, BootInfo, RunResult, serial text)."""
    vm = vtx.VM(memory=256 << 20)
    initrd = busybox_initramfs(assets.busybox, init_script=init_script)
    info = load_linux(vm, assets.kernel, initrd=initrd, cmdline=cmdline)
    v = vm.vcpu
    # A platform's choices, not the loader's: the guest handles its own
    # exceptions (the decompressor maps memory on #PF); INVPCID, RDTSCP,
    # XSAVES/XRSTORS and TPAUSE, which CPUID reports, run instead of #UD (SDM
    # Vol. 3C 25.6.2, "enable INVPCID", "enable RDTSCP", "enable XSAVES/
    # XRSTORS", "enable user wait and pause": Linux's udelay with TPAUSE
    # reads the TSC with RDTSCP); and MSR accesses reach the processor (an MSR bitmap of zeros, SDM 25.6.9),
    # so SYSCALL finds the LSTAR the kernel wrote.
    v.vmwrite(vtx.VmcsField.EXCEPTION_BITMAP, 0)
    v.vmwrite(vtx.VmcsField.SECONDARY_PROC_BASED_CONTROLS,
              v.vmread(vtx.VmcsField.SECONDARY_PROC_BASED_CONTROLS) | vtx.ProcBased2.ENABLE_INVPCID
              | vtx.ProcBased2.ENABLE_RDTSCP | vtx.ProcBased2.ENABLE_XSAVES_XRSTORS | vtx.ProcBased2.ENABLE_USER_WAIT_AND_PAUSE)
    v.vmwrite(vtx.VmcsField.PRIMARY_PROC_BASED_CONTROLS,
              v.vmread(vtx.VmcsField.PRIMARY_PROC_BASED_CONTROLS) | vtx.ProcBased.USE_MSR_BITMAPS)
    serial = SerialLog(until)

    @vm.on(R.CPUID)
    def cpuid(vcpu, e):
        vcpu.rax, vcpu.rbx, vcpu.rcx, vcpu.rdx = vcpu.model_cpuid(e.leaf, e.subleaf)
        return vtx.RESUME

    @vm.on(R.XSETBV)
    def xsetbv(vcpu, e):                  # XSETBV exits unconditionally (SDM 26.1.2)
        if vcpu.rcx & 0xFFFFFFFF:
            return vtx.STOP
        vcpu.xcr0 = ((vcpu.rdx & 0xFFFFFFFF) << 32) | (vcpu.rax & 0xFFFFFFFF)
        return vtx.RESUME

    @vm.on(R.RDMSR, R.WRMSR)
    def msr(vcpu, e):
        # Only MSRs outside the bitmap's two ranges still exit (SDM 25.1.3);
        # the model has none of them: #GP(0), as the processor gives for an
        # MSR it does not have (injected: SDM 27.6.1.1, type 3, error code).
        vcpu.vmwrite(vtx.VmcsField.VM_ENTRY_INTERRUPTION_INFO, (1 << 31) | (1 << 11) | (3 << 8) | 13)
        vcpu.vmwrite(vtx.VmcsField.VM_ENTRY_EXCEPTION_ERROR_CODE, 0)
        return vtx.RETRY

    vm.on(R.IO_INSTRUCTION)(serial.io)
    vm.on(R.HLT)(lambda vcpu, e: vtx.STOP)
    vm.default(lambda vcpu, e: vtx.STOP)
    res = vm.run(max_instructions=budget)
    return vm, info, res, serial.text


@pytest.mark.parametrize("kaslr", [False, True])
def test_real_kernel_boots_to_its_command_line(assets, kaslr):
    """The kernel decompresses itself, enters start_kernel, and prints (over
    earlyprintk on COM1) the E820 map and the command line it found in
    boot_params."""
    cmdline = "console=ttyS0 earlyprintk=serial,ttyS0" + ("" if kaslr else " nokaslr")
    vm, info, res, text = start_kernel(assets, cmdline, "Kernel command line:", 1_500_000_000)
    assert res.stop == "stop" and isinstance(res.exit, vtx.IoExit), (res, text[-2000:])
    assert f"Linux version {assets.kernel_release} " in text
    assert "BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable" in text
    assert "BIOS-e820: [mem 0x000000000009fc00-0x00000000000fffff] reserved" in text
    assert "BIOS-e820: [mem 0x0000000000100000-0x000000000fffffff] usable" in text
    assert f"Kernel command line: {cmdline}\r\n" in text
    assert ("KASLR disabled: 'nokaslr' on cmdline." in text) != kaslr
    assert info.initrd_size > 0 and info.initrd_address % 4096 == 0


def test_real_kernel_runs_init_from_the_initramfs(assets):
    """With the delay loop preset (no timer interrupt yet: lpj=), the kernel
    unpacks the initramfs and runs /init (busybox: mount, uname, cat).  /init
    writes to /dev/kmsg, whose lines the kernel prints on its console by
    polling: the console tty's own output needs the UART's interrupt, which
    this test's port handler does not give."""
    cmdline = "console=ttyS0 earlyprintk=serial,ttyS0 lpj=4000000"
    init = ("#!/bin/busybox sh\n"
            "/bin/busybox mount -t proc proc /proc\n"
            "/bin/busybox mount -t devtmpfs devtmpfs /dev\n"
            "echo \"init: started\" > /dev/kmsg\n"
            "echo \"init: $(uname -r)\" > /dev/kmsg\n"
            "echo \"init: $(cat /proc/cmdline)\" > /dev/kmsg\n"
            "exec sleep 1000\n")
    vm, info, res, text = start_kernel(assets, cmdline, f"] init: {cmdline}\r\n", 6_000_000_000, init_script=init)
    assert res.stop == "stop" and isinstance(res.exit, vtx.IoExit), (res, text[-3000:])
    assert "Run /init as init process" in text
    assert "] init: started\r\n" in text
    assert f"] init: {assets.kernel_release}\r\n" in text
    assert text.endswith(f"] init: {cmdline}\r\n")
