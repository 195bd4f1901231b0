"""A minimal real-KVM peer for the exit benchmarks: a 16-bit guest on
/dev/kvm driven from Python with ioctl, the way a small VMM does it.

This is a benchmark peer only; the KVM backend behind vtx's API is its own
issue.  Structure layouts are Linux's <linux/kvm.h> UAPI.
"""

import ctypes
import fcntl
import mmap
import os
import struct

import pytest

KVM_GET_API_VERSION = 0xAE00
KVM_CREATE_VM = 0xAE01
KVM_GET_VCPU_MMAP_SIZE = 0xAE04
KVM_CREATE_VCPU = 0xAE41
KVM_SET_USER_MEMORY_REGION = 0x4020AE46
KVM_RUN = 0xAE80
KVM_GET_REGS = 0x8090AE81
KVM_SET_REGS = 0x4090AE82
KVM_GET_SREGS = 0x8138AE83
KVM_SET_SREGS = 0x4138AE84

KVM_EXIT_IO = 2
KVM_EXIT_HLT = 5
KVM_EXIT_MMIO = 6

MEM_SIZE = 1 << 20


class KvmGuest:
    """One vCPU in real mode at 0000:entry with MEM_SIZE bytes of memory."""

    def __init__(self, code, entry, mem_size=MEM_SIZE):
        self.entry = entry
        self.kvm = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
        if fcntl.ioctl(self.kvm, KVM_GET_API_VERSION) != 12:
            raise OSError("unexpected KVM API version")
        self.vm = fcntl.ioctl(self.kvm, KVM_CREATE_VM, 0)
        self.mem = mmap.mmap(-1, mem_size)
        self.mem[entry:entry + len(code)] = code
        addr = ctypes.addressof(ctypes.c_char.from_buffer(self.mem))
        region = struct.pack("IIQQQ", 0, 0, 0, mem_size, addr)
        fcntl.ioctl(self.vm, KVM_SET_USER_MEMORY_REGION, region)
        self.vcpu = fcntl.ioctl(self.vm, KVM_CREATE_VCPU, 0)
        size = fcntl.ioctl(self.kvm, KVM_GET_VCPU_MMAP_SIZE)
        self.run_page = mmap.mmap(self.vcpu, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)

    def reset(self):
        sregs = bytearray(312)
        fcntl.ioctl(self.vcpu, KVM_GET_SREGS, sregs)
        struct.pack_into("Q", sregs, 0, 0)        # CS.base
        struct.pack_into("H", sregs, 12, 0)       # CS.selector
        fcntl.ioctl(self.vcpu, KVM_SET_SREGS, bytes(sregs))
        regs = bytearray(144)
        struct.pack_into("Q", regs, 16 * 8, self.entry)   # RIP
        struct.pack_into("Q", regs, 17 * 8, 2)            # RFLAGS
        fcntl.ioctl(self.vcpu, KVM_SET_REGS, bytes(regs))

    def run_out_loop(self):
        """Run until HLT, counting I/O exits; returns the count."""
        self.reset()
        n = 0
        while True:
            fcntl.ioctl(self.vcpu, KVM_RUN, 0)
            reason = struct.unpack_from("I", self.run_page, 8)[0]
            if reason == KVM_EXIT_IO:
                n += 1
            elif reason == KVM_EXIT_HLT:
                return n
            else:
                raise OSError(f"unexpected KVM exit {reason}")

    def run_mmio_loop(self, value=0x1234):
        """Run until HLT answering every MMIO read with `value` (struct
        kvm_run's mmio member at offset 32: phys_addr, data[8], len,
        is_write); returns the count."""
        self.reset()
        n = 0
        data = struct.pack("<Q", value)
        while True:
            fcntl.ioctl(self.vcpu, KVM_RUN, 0)
            reason = struct.unpack_from("I", self.run_page, 8)[0]
            if reason == KVM_EXIT_MMIO:
                n += 1
                if not self.run_page[32 + 20]:
                    self.run_page[40:48] = data
            elif reason == KVM_EXIT_HLT:
                return n
            else:
                raise OSError(f"unexpected KVM exit {reason}")

    def close(self):
        self.run_page.close()
        os.close(self.vcpu)
        os.close(self.vm)
        os.close(self.kvm)


def _kvm_usable():
    if not os.path.exists("/dev/kvm") or not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is absent or not accessible"
    try:
        g = KvmGuest(b"\xe6\x80\xf4", 0x1000)     # out 0x80, al; hlt
        ok = g.run_out_loop() == 1
        g.close()
        return ok, "KVM did not run a real-mode guest"
    except OSError as e:
        return False, f"KVM is not usable here: {e}"


KVM_OK, KVM_WHY = _kvm_usable()
needs_kvm = pytest.mark.skipif(not KVM_OK, reason=KVM_WHY)
