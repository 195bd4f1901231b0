"""A small shadow-paging hypervisor in Python: how VMMs ran guests with
paging before EPT, for the ``shadow_paging`` what-if study.

With "enable EPT" clear, the CR3 the processor walks is the hypervisor's: a
*shadow* of the guest's 4-level paging structures that maps the guest's
linear addresses straight to (host-)physical memory.  This one is a virtual
TLB, filled lazily:

* every #PF exits (exception bitmap bit 14).  The handler walks the guest's
  own tables: if they map the address with the rights the access needs, it
  sets the guest's accessed (and, for a write, dirty) flags, as the
  processor would, installs a 4 KiB shadow entry and lets the instruction
  run again; otherwise the fault is the guest's, and it is reflected with
  the guest's error code and CR2;
* INVLPG exits (the guest dropped a translation): the shadow entry goes;
* MOV to CR3 exits (a new address space): the shadow starts empty; MOV from
  CR3 exits too, and reads the guest's value.

A write-enabled shadow entry is made only once the guest's dirty flag is
set, so the first write to a page faults and sets it.  The guest's tables
are ordinary memory it writes freely: like a TLB, the shadow follows them
at INVLPG and CR3 loads only, which is what the architecture promises the
guest (SDM Vol. 3A 4.10.4).  The shadow pages live in a pool of guest RAM
the workloads do not use (a real VMM keeps them out of the guest's reach);
large guest pages are shadowed 4 KiB at a time.
"""

from ..spec import ExitReason, ProcBased, ProcBased2, VmcsField as F
from ..vm import RESUME, RETRY

__all__ = ["ShadowPaging"]

_ADDR = 0x000FFFFFFFFFF000
_GPRS = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
         "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
P, RW, US, A, D, PS = 1, 2, 4, 0x20, 0x40, 0x80


def _redeliver(vcpu, ex):
    """An exit while delivering an event (the IDT-vectoring information is
    valid, SDM Vol. 3C 28.2.4) loses that event unless the hypervisor
    injects it again at the next entry (SDM 29.2.4)."""
    info = ex.idt_vectoring_info
    if not info & 0x80000000:
        return
    if info & 0x800:
        vcpu.vmwrite(F.VM_ENTRY_EXCEPTION_ERROR_CODE, ex.idt_vectoring_error_code)
    if (info >> 8) & 7 in (4, 5, 6):
        vcpu.vmwrite(F.VM_ENTRY_INSTRUCTION_LENGTH, ex.instruction_length)
    vcpu.vmwrite(F.VM_ENTRY_INTERRUPTION_INFO, info & 0x80000FFF)


class ShadowPaging:
    """Shadow paging for ``vm``'s first vCPU, with its shadow pages in
    guest-physical ``[pool, pool + pages * 4096)``.  ``enable()`` switches
    EPT off and installs the handlers; ``fills`` counts the shadow entries
    made, ``reflected`` the faults given back to the guest."""

    def __init__(self, vm, pool=0x800000, pages=1024):
        self.vm = vm
        self.pool, self.pages = pool, pages
        self.fills = self.reflected = 0

    # --- the shadow tables -------------------------------------------------------------

    def _reset(self):
        self.next = 1
        self.vm.write(self.pool, bytes(4096))
        self.vm.vcpu.cr3 = self.pool

    def _page(self):
        if self.next >= self.pages:
            self._reset()                    # out of pages: start again, as a full TLB would
            return None
        at = self.pool + 4096 * self.next
        self.next += 1
        self.vm.write(at, bytes(4096))
        return at

    def _install(self, va, pa, writable, user):
        table = self.pool
        for shift in (39, 30, 21):
            slot = table + 8 * ((va >> shift) & 511)
            e = self.vm.read_u64(slot)
            if not e & P:
                nxt = self._page()
                if nxt is None:
                    return self._install(va, pa, writable, user)
                self.vm.write_u64(slot, nxt | P | RW | US)
                e = nxt
            table = e & _ADDR
        self.vm.write_u64(table + 8 * ((va >> 12) & 511), (pa & _ADDR) | P | (RW if writable else 0)
                          | (US if user else 0))
        self.fills += 1

    def _drop(self, va):
        table = self.pool
        for shift in (39, 30, 21):
            e = self.vm.read_u64(table + 8 * ((va >> shift) & 511))
            if not e & P:
                return
            table = e & _ADDR
        self.vm.write_u64(table + 8 * ((va >> 12) & 511), 0)

    # --- the guest's tables ---------------------------------------------------------------

    def _walk(self, va, write):
        """The guest's translation of va: (physical address, writable, user,
        leaf entry's address) or None where it maps nothing.  Sets the
        accessed flags on the way and the dirty flag for a write."""
        table = self.guest_cr3 & _ADDR
        w = u = True
        path = []
        for level, shift in enumerate((39, 30, 21, 12)):
            slot = table + 8 * ((va >> shift) & 511)
            e = self.vm.read_u64(slot)
            if not e & P:
                return None
            path.append((slot, e))
            w, u = w and bool(e & RW), u and bool(e & US)
            if shift == 12 or (level in (1, 2) and e & PS):
                size = 1 << shift
                pa = (e & _ADDR & ~(size - 1)) | (va & (size - 1))
                break
            table = e & _ADDR
        if write and not w:
            return pa, w, u, None
        for slot, e in path:
            if not e & A:
                self.vm.write_u64(slot, e | A)
        leaf, e = path[-1]
        e = self.vm.read_u64(leaf)
        if write and not e & D:
            self.vm.write_u64(leaf, e | D)
            e |= D
        return pa, w and bool(e & D), u, leaf

    # --- the exits ------------------------------------------------------------------------

    def enable(self):
        vm, v = self.vm, self.vm.vcpu
        self.guest_cr3 = v.cr3
        v.vmwrite(F.SECONDARY_PROC_BASED_CONTROLS, v.vmread(F.SECONDARY_PROC_BASED_CONTROLS)
                  & ~(ProcBased2.ENABLE_EPT | ProcBased2.UNRESTRICTED_GUEST))
        v.vmwrite(F.PRIMARY_PROC_BASED_CONTROLS, v.vmread(F.PRIMARY_PROC_BASED_CONTROLS)
                  | ProcBased.INVLPG_EXITING | ProcBased.CR3_LOAD_EXITING | ProcBased.CR3_STORE_EXITING)
        v.vmwrite(F.EXCEPTION_BITMAP, v.vmread(F.EXCEPTION_BITMAP) | (1 << 14))
        v.vmwrite(F.PAGE_FAULT_ERROR_CODE_MASK, 0)
        v.vmwrite(F.PAGE_FAULT_ERROR_CODE_MATCH, 0)
        self._reset()
        own = self

        @vm.on(ExitReason.EXCEPTION_OR_NMI)
        def fault(vcpu, ex):
            if ex.vector != 14:
                vcpu.inject(ex.vector, "exception",
                            error_code=ex.error_code if ex.vector in (8, 10, 11, 12, 13, 17) else None)
                return RETRY
            va, code = ex.qualification, ex.error_code
            write, user = bool(code & 2), bool(code & 4)
            t = own._walk(va, write)
            if t is None or t[3] is None or (user and not t[2]):
                # The guest's own fault: its error code says whether its
                # tables mapped the page (P) and how it was accessed.
                own.reflected += 1
                info = ex.idt_vectoring_info
                if info & 0x80000000 and (info >> 8) & 7 == 3 and (info & 0xFF) in (0, 10, 11, 12, 13, 14):
                    # A #PF while delivering a #PF or a contributory
                    # exception: a double fault (SDM Vol. 3A 6.15, Table 6-5).
                    vcpu.inject(8, "exception", error_code=0)
                    return RETRY
                vcpu.cr2 = va
                vcpu.inject(14, "exception", error_code=(0 if t is None else 1) | (code & 0x1E))
                return RETRY
            pa, writable, u, _leaf = t
            own._install(va, pa, writable, u)
            _redeliver(vcpu, ex)
            return RETRY

        @vm.on(ExitReason.INVLPG)
        def invlpg(vcpu, ex):
            own._drop(ex.qualification)
            return RESUME

        @vm.on(ExitReason.CONTROL_REGISTER_ACCESS)
        def cr(vcpu, ex):
            if ex.cr != 3 or ex.access_type > 1:
                return RESUME
            if ex.access_type == 0:
                own.guest_cr3 = getattr(vcpu, _GPRS[ex.gpr])
                own._reset()
            else:
                setattr(vcpu, _GPRS[ex.gpr], own.guest_cr3)
            return RESUME
        return self
