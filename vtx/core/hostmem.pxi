# Host memory behind the memory slots: anonymous mappings with guard pages.
#
# Each slot's buffer is one mmap of its size plus GUARD bytes of PROT_NONE on
# both sides.  The guest can reach a slot only through the MMU's checks; if
# the model itself ever computed an address just outside a buffer, the access
# would fault at once (and a fuzz worker would report the crash) instead of
# silently reading or corrupting a neighbouring allocation.  MAP_NORESERVE
# makes a large VM cost address space, not committed memory, until the guest
# touches its pages, as with KVM.

from posix.mman cimport (mmap, munmap, mprotect, PROT_NONE, PROT_READ, PROT_WRITE,
                         MAP_PRIVATE, MAP_ANONYMOUS, MAP_NORESERVE, MAP_FAILED)
from cpython.buffer cimport PyBuffer_FillInfo
from libc.errno cimport errno
from libc.string cimport strerror

cdef size_t GUARD = 1 << 16


cdef class HostMemory:
    """One slot's host memory: zero-filled, page-aligned, writable through
    the buffer protocol (``memoryview(mem)``), unmapped when the last view
    and the last owner are gone."""

    def __cinit__(self, size, str what):
        cdef size_t total
        cdef void* p
        cdef int err
        self.base = NULL
        self.ptr = NULL
        self.size = 0
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0 or size % 4096:
            raise ArgumentError(f"{what}: size must be a positive multiple of 4096 bytes, not {size!r}")
        if size > (1 << 46):
            raise ArgumentError(f"{what}: size {size:#x} is larger than the host's address space allows")
        total = <size_t>size + 2 * GUARD
        p = mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        if p == MAP_FAILED:
            err = errno
            raise HostMemoryError(f"{what}: the host refused to map {size:#x} bytes "
                                  f"({strerror(err).decode()})")
        if mprotect(<uint8_t*>p + GUARD, <size_t>size, PROT_READ | PROT_WRITE) != 0:
            err = errno
            munmap(p, total)
            raise HostMemoryError(f"{what}: the host refused to make {size:#x} bytes writable "
                                  f"({strerror(err).decode()})")
        self.base = <uint8_t*>p
        self.ptr = <uint8_t*>p + GUARD
        self.size = size

    def __dealloc__(self):
        if self.base != NULL:
            munmap(self.base, <size_t>self.size + 2 * GUARD)
            self.base = NULL
            self.ptr = NULL

    def __getbuffer__(self, Py_buffer* view, int flags):
        PyBuffer_FillInfo(view, self, self.ptr, self.size, 0, flags)
        # Counted so the VMCS checks know when the region may have been
        # written behind the API (docs/architecture.rst, "Entry checks at
        # VMRESUME"): while a view lives, and once after it is gone.
        self.exports += 1
        self.export_gen += 1

    def __releasebuffer__(self, Py_buffer* view):
        self.exports -= 1
        self.export_gen += 1

    def __len__(self):
        return self.size

    def __reduce__(self):
        raise TypeError("host memory cannot be pickled; copy the bytes out with bytes(memoryview(...))")
