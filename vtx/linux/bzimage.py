"""A bzImage and its setup header (the Linux/x86 boot protocol).

A bzImage is the real-mode setup code (``setup_sects`` sectors of 512 bytes
after the boot sector) followed by the protected-mode kernel.  The boot sector
holds, at 01F1H, the *setup header* a boot loader reads and writes; the
fields and their offsets here are those of the boot protocol document
(Documentation/arch/x86/boot.rst, "THE REAL-MODE KERNEL HEADER").  A 64-bit
loader needs protocol 2.12 or later (``xloadflags``, whose bit 0 says the
kernel has a 64-bit entry point at its load address + 200H).
"""

import os
import pathlib

import attrs

from ..errors import VtxError

HEADER_OFFSET = 0x1F1
HDRS = b"HdrS"
BOOT_FLAG = 0xAA55
MIN_PROTOCOL = 0x020C          # 2.12: xloadflags
ENTRY_64 = 0x200               # the 64-bit entry: load address + 200H

# loadflags (01F1H + 0x20 = 0211H)
LOADED_HIGH = 1 << 0           # the protected-mode code is loaded at 100000H or above
KASLR_FLAG = 1 << 1            # set by the kernel itself
QUIET_FLAG = 1 << 5
KEEP_SEGMENTS = 1 << 6         # obsolete
CAN_USE_HEAP = 1 << 7          # heap_end_ptr is valid

# xloadflags (0236H)
XLF_KERNEL_64 = 1 << 0
XLF_CAN_BE_LOADED_ABOVE_4G = 1 << 1
XLF_EFI_HANDOVER_32 = 1 << 2
XLF_EFI_HANDOVER_64 = 1 << 3
XLF_EFI_KEXEC = 1 << 4
XLF_5LEVEL = 1 << 5
XLF_5LEVEL_ENABLED = 1 << 6

#: The setup header's fields: name -> (offset in the image and in
#: boot_params, size in bytes).  Boot protocol, "THE REAL-MODE KERNEL HEADER".
FIELDS = {
    "setup_sects": (0x1F1, 1),
    "root_flags": (0x1F2, 2),
    "syssize": (0x1F4, 4),
    "ram_size": (0x1F8, 2),
    "vid_mode": (0x1FA, 2),
    "root_dev": (0x1FC, 2),
    "boot_flag": (0x1FE, 2),
    "jump": (0x200, 2),
    "header": (0x202, 4),
    "version": (0x206, 2),
    "realmode_swtch": (0x208, 4),
    "start_sys_seg": (0x20C, 2),
    "kernel_version": (0x20E, 2),
    "type_of_loader": (0x210, 1),
    "loadflags": (0x211, 1),
    "setup_move_size": (0x212, 2),
    "code32_start": (0x214, 4),
    "ramdisk_image": (0x218, 4),
    "ramdisk_size": (0x21C, 4),
    "bootsect_kludge": (0x220, 4),
    "heap_end_ptr": (0x224, 2),
    "ext_loader_ver": (0x226, 1),
    "ext_loader_type": (0x227, 1),
    "cmd_line_ptr": (0x228, 4),
    "initrd_addr_max": (0x22C, 4),
    "kernel_alignment": (0x230, 4),
    "relocatable_kernel": (0x234, 1),
    "min_alignment": (0x235, 1),
    "xloadflags": (0x236, 2),
    "cmdline_size": (0x238, 4),
    "hardware_subarch": (0x23C, 4),
    "hardware_subarch_data": (0x240, 8),
    "payload_offset": (0x248, 4),
    "payload_length": (0x24C, 4),
    "setup_data": (0x250, 8),
    "pref_address": (0x258, 8),
    "init_size": (0x260, 4),
    "handover_offset": (0x264, 4),
    "kernel_info_offset": (0x268, 4),
}


class BzImageError(VtxError, ValueError):
    """The bytes are not a bzImage this loader can boot (the message says
    which check failed)."""


def _u(data, name):
    off, size = FIELDS[name]
    return int.from_bytes(data[off:off + size], "little")


@attrs.frozen
class SetupHeader:
    """The setup header's fields as read from the image (see :data:`FIELDS`)."""

    setup_sects: int
    boot_flag: int
    version: int
    loadflags: int
    code32_start: int
    initrd_addr_max: int
    kernel_alignment: int
    relocatable_kernel: int
    min_alignment: int
    xloadflags: int
    cmdline_size: int
    payload_offset: int
    payload_length: int
    pref_address: int
    init_size: int
    vid_mode: int


class BzImage:
    """A parsed bzImage: ``BzImage(data)`` (bytes) or ``BzImage.open(path)``.

    ``header`` is the :class:`SetupHeader`; ``setup_header_bytes`` the bytes
    from 01F1H to the end of the header (02H + the byte at 0201H past 0200H),
    which a loader copies into boot_params; ``kernel`` the protected-mode
    kernel (everything after the ``setup_sects + 1`` sectors);
    ``version_string`` the kernel's version text (``kernel_version`` points to
    it, 200H before its offset)."""

    def __init__(self, data):
        if isinstance(data, (str, os.PathLike)):
            raise TypeError("BzImage() takes the image's bytes; use BzImage.open(path) for a file")
        data = bytes(memoryview(data).cast("B"))
        # The fields a 64-bit loader reads end with init_size (0260H, 4 bytes).
        end_of_header = FIELDS["init_size"][0] + 4
        if len(data) < end_of_header:
            raise BzImageError(f"not a bzImage: {len(data)} bytes, shorter than the setup header "
                               f"(which ends at {end_of_header:#x})")
        if data[0x202:0x206] != HDRS:
            raise BzImageError(f"not a bzImage: no 'HdrS' magic at 0x202 (found {data[0x202:0x206]!r})")
        if _u(data, "boot_flag") != BOOT_FLAG:
            raise BzImageError(f"not a bzImage: boot_flag at 0x1fe is {_u(data, 'boot_flag'):#06x}, not 0xaa55")
        version = _u(data, "version")
        if version < MIN_PROTOCOL:
            raise BzImageError(f"boot protocol {version >> 8}.{version & 0xFF} is older than 2.12, "
                               f"the first with a 64-bit entry (xloadflags)")
        xlf = _u(data, "xloadflags")
        if not xlf & XLF_KERNEL_64:
            raise BzImageError("the kernel has no 64-bit entry point (xloadflags bit 0, XLF_KERNEL_64, is clear)")
        setup_sects = _u(data, "setup_sects") or 4          # 0 means 4 (boot protocol)
        kernel_offset = (setup_sects + 1) * 512
        if len(data) <= kernel_offset:
            raise BzImageError(f"truncated bzImage: {len(data)} bytes, but the protected-mode kernel starts "
                               f"at {kernel_offset:#x} (setup_sects {setup_sects})")
        header_end = 0x202 + data[0x201]
        if header_end < end_of_header:
            raise BzImageError(f"the setup header ends at {header_end:#x} (0x202 + byte at 0x201), before "
                               f"init_size, which ends at {end_of_header:#x}")
        self.data = data
        self.header = SetupHeader(**{f.name: _u(data, f.name) for f in attrs.fields(SetupHeader)})
        self.setup_sects = setup_sects
        self.kernel_offset = kernel_offset
        self.setup_header_bytes = data[HEADER_OFFSET:header_end]
        self.version_string = self._version_string()

    @classmethod
    def open(cls, path):
        try:
            data = pathlib.Path(os.fspath(path)).read_bytes()
        except OSError as e:
            raise BzImageError(f"cannot read {path}: {e.strerror}") from None
        return cls(data)

    def _version_string(self):
        ptr = _u(self.data, "kernel_version")
        if not ptr:
            return ""
        start = ptr + 0x200
        end = self.data.find(b"\0", start, start + 256)
        if start >= self.kernel_offset or end < 0:
            return ""
        return self.data[start:end].decode("ascii", "replace")

    @property
    def kernel(self):
        """The protected-mode kernel: the bytes a loader puts at the load address."""
        return memoryview(self.data)[self.kernel_offset:]

    @property
    def protocol(self):
        """The boot protocol version as (major, minor)."""
        return (self.header.version >> 8, self.header.version & 0xFF)

    def field(self, name):
        """A setup-header field by its name in :data:`FIELDS`."""
        if name not in FIELDS:
            raise KeyError(f"the setup header has no field {name!r}")
        return _u(self.data, name)

    def __repr__(self):
        h = self.header
        return (f"<BzImage protocol {self.protocol[0]}.{self.protocol[1]}, {len(self.data)} bytes, "
                f"pref_address {h.pref_address:#x}, init_size {h.init_size:#x}, {self.version_string!r}>")
