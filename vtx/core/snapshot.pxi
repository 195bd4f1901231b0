# Snapshots: the processor state and the memory of a machine, out to bytes
# and back (vtx/snapshot.py writes the file; docs/architecture.rst,
# "Snapshots").
#
# The Cpu struct is saved member by member from the table below, which
# names every member of Cpu in declaration order (VmxState and FpuState
# member by member too) and says which are state (SAVED) and which belong
# to the machine that runs it (KEPT: host pointers, the caches that hang
# off them, counters of host work, host clock readings, the run's own
# bookkeeping).  A restore copies the SAVED members in and leaves the KEPT
# ones to the receiving machine, then makes its caches agree with the new
# state: the TLB is flushed, every decoded instruction and translated block
# dropped, the current-VMCS pointer pointed again into the receiving
# machine's memory.  tests/test_snapshot.py compares the table with
# vtx/_core.pxd, so a member added to Cpu without a row fails a test; the
# layout hash (offsets and sizes of every row, the CPUID feature table, the
# VMCS field layout) keeps a file from one layout out of another.

import hashlib as _hashlib
from posix.mman cimport madvise, MADV_DONTNEED

cdef enum:
    SNAP_KEPT = 0         # the receiving machine's own
    SNAP_SAVED = 1        # state: written to the file, copied in by a restore
    SNAP_LAYOUT = 2       # inside a SAVED member (a struct's fields): in the hash only


cdef int _fld(list rows, Cpu* c, str name, void* p, size_t size, int how) except -1:
    rows.append((name, <size_t>p - <size_t>c, size, how))
    return 0


cdef list _snap_rows(Cpu* c):
    """(name, offset, size, how) for every member of Cpu (see above)."""
    cdef list r = []
    cdef int S = SNAP_SAVED, K = SNAP_KEPT, L = SNAP_LAYOUT
    # --- architectural state
    _fld(r, c, "regs", &c.regs, sizeof(c.regs), S)
    _fld(r, c, "rip", &c.rip, sizeof(c.rip), S)
    _fld(r, c, "rflags", &c.rflags, sizeof(c.rflags), S)
    _fld(r, c, "seg", &c.seg, sizeof(c.seg), S)
    _fld(r, c, "gdtr_base", &c.gdtr_base, sizeof(c.gdtr_base), S)
    _fld(r, c, "gdtr_limit", &c.gdtr_limit, sizeof(c.gdtr_limit), S)
    _fld(r, c, "idtr_base", &c.idtr_base, sizeof(c.idtr_base), S)
    _fld(r, c, "idtr_limit", &c.idtr_limit, sizeof(c.idtr_limit), S)
    _fld(r, c, "cr0", &c.cr0, sizeof(c.cr0), S)
    _fld(r, c, "cr2", &c.cr2, sizeof(c.cr2), S)
    _fld(r, c, "cr3", &c.cr3, sizeof(c.cr3), S)
    _fld(r, c, "cr4", &c.cr4, sizeof(c.cr4), S)
    _fld(r, c, "cr8", &c.cr8, sizeof(c.cr8), S)
    _fld(r, c, "dr", &c.dr, sizeof(c.dr), S)
    _fld(r, c, "dr6", &c.dr6, sizeof(c.dr6), S)
    _fld(r, c, "dr7", &c.dr7, sizeof(c.dr7), S)
    _fld(r, c, "xcr0", &c.xcr0, sizeof(c.xcr0), S)
    _fld(r, c, "xss", &c.xss, sizeof(c.xss), S)
    _fld(r, c, "pasid", &c.pasid, sizeof(c.pasid), S)
    _fld(r, c, "umwait_control", &c.umwait_control, sizeof(c.umwait_control), S)
    _fld(r, c, "efer", &c.efer, sizeof(c.efer), S)
    _fld(r, c, "pat", &c.pat, sizeof(c.pat), S)
    _fld(r, c, "sysenter_cs", &c.sysenter_cs, sizeof(c.sysenter_cs), S)
    _fld(r, c, "sysenter_esp", &c.sysenter_esp, sizeof(c.sysenter_esp), S)
    _fld(r, c, "sysenter_eip", &c.sysenter_eip, sizeof(c.sysenter_eip), S)
    _fld(r, c, "star", &c.star, sizeof(c.star), S)
    _fld(r, c, "lstar", &c.lstar, sizeof(c.lstar), S)
    _fld(r, c, "cstar", &c.cstar, sizeof(c.cstar), S)
    _fld(r, c, "fmask", &c.fmask, sizeof(c.fmask), S)
    _fld(r, c, "kernel_gs_base", &c.kernel_gs_base, sizeof(c.kernel_gs_base), S)
    _fld(r, c, "tsc_aux", &c.tsc_aux, sizeof(c.tsc_aux), S)
    _fld(r, c, "apic_base", &c.apic_base, sizeof(c.apic_base), S)
    _fld(r, c, "misc_enable", &c.misc_enable, sizeof(c.misc_enable), S)
    _fld(r, c, "debugctl", &c.debugctl, sizeof(c.debugctl), S)
    _fld(r, c, "feature_control", &c.feature_control, sizeof(c.feature_control), S)
    _fld(r, c, "pdpte", &c.pdpte, sizeof(c.pdpte), S)
    _fld(r, c, "tsc_base", &c.tsc_base, sizeof(c.tsc_base), S)
    _fld(r, c, "activity", &c.activity, sizeof(c.activity), S)
    _fld(r, c, "monitor_armed", &c.monitor_armed, sizeof(c.monitor_armed), S)
    _fld(r, c, "monitor_addr", &c.monitor_addr, sizeof(c.monitor_addr), S)
    _fld(r, c, "interruptibility", &c.interruptibility, sizeof(c.interruptibility), S)
    _fld(r, c, "fpu.st", &c.fpu.st, sizeof(c.fpu.st), S)
    _fld(r, c, "fpu.fcw", &c.fpu.fcw, sizeof(c.fpu.fcw), S)
    _fld(r, c, "fpu.fsw", &c.fpu.fsw, sizeof(c.fpu.fsw), S)
    _fld(r, c, "fpu.ftw", &c.fpu.ftw, sizeof(c.fpu.ftw), S)
    _fld(r, c, "fpu.fop", &c.fpu.fop, sizeof(c.fpu.fop), S)
    _fld(r, c, "fpu.fip", &c.fpu.fip, sizeof(c.fpu.fip), S)
    _fld(r, c, "fpu.fdp", &c.fpu.fdp, sizeof(c.fpu.fdp), S)
    _fld(r, c, "fpu.fcs", &c.fpu.fcs, sizeof(c.fpu.fcs), S)
    _fld(r, c, "fpu.fds", &c.fpu.fds, sizeof(c.fpu.fds), S)
    _fld(r, c, "fpu.mxcsr", &c.fpu.mxcsr, sizeof(c.fpu.mxcsr), S)
    _fld(r, c, "fpu.xmm", &c.fpu.xmm, sizeof(c.fpu.xmm), S)
    # --- the CPU model
    _fld(r, c, "features", &c.features, sizeof(c.features), S)
    _fld(r, c, "cr4_fixed1", &c.cr4_fixed1, sizeof(c.cr4_fixed1), S)
    _fld(r, c, "cpuid_tab", &c.cpuid_tab, sizeof(c.cpuid_tab), S)
    _fld(r, c, "cpuid_n", &c.cpuid_n, sizeof(c.cpuid_n), S)
    _fld(r, c, "cpuid_max", &c.cpuid_max, sizeof(c.cpuid_max), S)
    _fld(r, c, "cpuid_max_ext", &c.cpuid_max_ext, sizeof(c.cpuid_max_ext), S)
    _fld(r, c, "signature", &c.signature, sizeof(c.signature), S)
    # --- external events; ev_armed and ev_limit are a slice's bookkeeping
    _fld(r, c, "irr", &c.irr, sizeof(c.irr), S)
    _fld(r, c, "nmi_pending", &c.nmi_pending, sizeof(c.nmi_pending), S)
    _fld(r, c, "ev_armed", &c.ev_armed, sizeof(c.ev_armed), K)
    _fld(r, c, "ev_limit", &c.ev_limit, sizeof(c.ev_limit), K)
    _fld(r, c, "init_pending", &c.init_pending, sizeof(c.init_pending), S)
    _fld(r, c, "sipi_pending", &c.sipi_pending, sizeof(c.sipi_pending), S)
    # --- the derived mode
    _fld(r, c, "cpl", &c.cpl, sizeof(c.cpl), S)
    _fld(r, c, "code_size", &c.code_size, sizeof(c.code_size), S)
    _fld(r, c, "long64", &c.long64, sizeof(c.long64), S)
    _fld(r, c, "paging", &c.paging, sizeof(c.paging), S)
    _fld(r, c, "stack_size", &c.stack_size, sizeof(c.stack_size), S)
    # --- VMX: vmcs is a host pointer (pointed again from vmcs_ptr), ck_view_gen
    # a count of the receiving machine's buffer views
    _fld(r, c, "vmx.on", &c.vmx.on, sizeof(c.vmx.on), S)
    _fld(r, c, "vmx.non_root", &c.vmx.non_root, sizeof(c.vmx.non_root), S)
    _fld(r, c, "vmx.host_x86", &c.vmx.host_x86, sizeof(c.vmx.host_x86), S)
    _fld(r, c, "vmx.vmxon_ptr", &c.vmx.vmxon_ptr, sizeof(c.vmx.vmxon_ptr), S)
    _fld(r, c, "vmx.vmcs_ptr", &c.vmx.vmcs_ptr, sizeof(c.vmx.vmcs_ptr), S)
    _fld(r, c, "vmx.vmcs", &c.vmx.vmcs, sizeof(c.vmx.vmcs), K)
    _fld(r, c, "vmx.vmcs_in_ram", &c.vmx.vmcs_in_ram, sizeof(c.vmx.vmcs_in_ram), S)
    _fld(r, c, "vmx.vmxon_count", &c.vmx.vmxon_count, sizeof(c.vmx.vmxon_count), S)
    _fld(r, c, "vmx.ctl", &c.vmx.ctl, sizeof(c.vmx.ctl), S)
    _fld(r, c, "vmx.ctl.pin", &c.vmx.ctl.pin, sizeof(c.vmx.ctl.pin), L)
    _fld(r, c, "vmx.ctl.proc", &c.vmx.ctl.proc, sizeof(c.vmx.ctl.proc), L)
    _fld(r, c, "vmx.ctl.proc2", &c.vmx.ctl.proc2, sizeof(c.vmx.ctl.proc2), L)
    _fld(r, c, "vmx.ctl.exit_ctl", &c.vmx.ctl.exit_ctl, sizeof(c.vmx.ctl.exit_ctl), L)
    _fld(r, c, "vmx.ctl.entry_ctl", &c.vmx.ctl.entry_ctl, sizeof(c.vmx.ctl.entry_ctl), L)
    _fld(r, c, "vmx.ctl.exception_bitmap", &c.vmx.ctl.exception_bitmap, sizeof(c.vmx.ctl.exception_bitmap), L)
    _fld(r, c, "vmx.ctl.pfec_mask", &c.vmx.ctl.pfec_mask, sizeof(c.vmx.ctl.pfec_mask), L)
    _fld(r, c, "vmx.ctl.pfec_match", &c.vmx.ctl.pfec_match, sizeof(c.vmx.ctl.pfec_match), L)
    _fld(r, c, "vmx.ctl.io_bitmap_a", &c.vmx.ctl.io_bitmap_a, sizeof(c.vmx.ctl.io_bitmap_a), L)
    _fld(r, c, "vmx.ctl.io_bitmap_b", &c.vmx.ctl.io_bitmap_b, sizeof(c.vmx.ctl.io_bitmap_b), L)
    _fld(r, c, "vmx.ctl.msr_bitmap", &c.vmx.ctl.msr_bitmap, sizeof(c.vmx.ctl.msr_bitmap), L)
    _fld(r, c, "vmx.ctl.tsc_offset", &c.vmx.ctl.tsc_offset, sizeof(c.vmx.ctl.tsc_offset), L)
    _fld(r, c, "vmx.ctl.eptp", &c.vmx.ctl.eptp, sizeof(c.vmx.ctl.eptp), L)
    _fld(r, c, "vmx.ctl.cr0_mask", &c.vmx.ctl.cr0_mask, sizeof(c.vmx.ctl.cr0_mask), L)
    _fld(r, c, "vmx.ctl.cr4_mask", &c.vmx.ctl.cr4_mask, sizeof(c.vmx.ctl.cr4_mask), L)
    _fld(r, c, "vmx.ctl.cr0_shadow", &c.vmx.ctl.cr0_shadow, sizeof(c.vmx.ctl.cr0_shadow), L)
    _fld(r, c, "vmx.ctl.cr4_shadow", &c.vmx.ctl.cr4_shadow, sizeof(c.vmx.ctl.cr4_shadow), L)
    _fld(r, c, "vmx.ctl.ple_gap", &c.vmx.ctl.ple_gap, sizeof(c.vmx.ctl.ple_gap), L)
    _fld(r, c, "vmx.ctl.ple_window", &c.vmx.ctl.ple_window, sizeof(c.vmx.ctl.ple_window), L)
    _fld(r, c, "vmx.ctl.virtual_apic", &c.vmx.ctl.virtual_apic, sizeof(c.vmx.ctl.virtual_apic), L)
    _fld(r, c, "vmx.ctl.apic_access", &c.vmx.ctl.apic_access, sizeof(c.vmx.ctl.apic_access), L)
    _fld(r, c, "vmx.ctl.tpr_threshold", &c.vmx.ctl.tpr_threshold, sizeof(c.vmx.ctl.tpr_threshold), L)
    _fld(r, c, "vmx.ctl.pi_vector", &c.vmx.ctl.pi_vector, sizeof(c.vmx.ctl.pi_vector), L)
    _fld(r, c, "vmx.ctl.pi_desc", &c.vmx.ctl.pi_desc, sizeof(c.vmx.ctl.pi_desc), L)
    _fld(r, c, "vmx.ctl.eoi_exit", &c.vmx.ctl.eoi_exit, sizeof(c.vmx.ctl.eoi_exit), L)
    _fld(r, c, "vmx.ctl.xss_bitmap", &c.vmx.ctl.xss_bitmap, sizeof(c.vmx.ctl.xss_bitmap), L)
    _fld(r, c, "vmx.ctl.spptp", &c.vmx.ctl.spptp, sizeof(c.vmx.ctl.spptp), L)
    _fld(r, c, "vmx.ept", &c.vmx.ept, sizeof(c.vmx.ept), S)
    _fld(r, c, "vmx.x_reason", &c.vmx.x_reason, sizeof(c.vmx.x_reason), S)
    _fld(r, c, "vmx.x_qual", &c.vmx.x_qual, sizeof(c.vmx.x_qual), S)
    _fld(r, c, "vmx.x_len", &c.vmx.x_len, sizeof(c.vmx.x_len), S)
    _fld(r, c, "vmx.x_info", &c.vmx.x_info, sizeof(c.vmx.x_info), S)
    _fld(r, c, "vmx.x_intr_info", &c.vmx.x_intr_info, sizeof(c.vmx.x_intr_info), S)
    _fld(r, c, "vmx.x_intr_error", &c.vmx.x_intr_error, sizeof(c.vmx.x_intr_error), S)
    _fld(r, c, "vmx.x_gla", &c.vmx.x_gla, sizeof(c.vmx.x_gla), S)
    _fld(r, c, "vmx.x_gpa", &c.vmx.x_gpa, sizeof(c.vmx.x_gpa), S)
    _fld(r, c, "vmx.x_gla_valid", &c.vmx.x_gla_valid, sizeof(c.vmx.x_gla_valid), S)
    _fld(r, c, "vmx.x_idt_info", &c.vmx.x_idt_info, sizeof(c.vmx.x_idt_info), S)
    _fld(r, c, "vmx.x_idt_error", &c.vmx.x_idt_error, sizeof(c.vmx.x_idt_error), S)
    _fld(r, c, "vmx.ple_valid", &c.vmx.ple_valid, sizeof(c.vmx.ple_valid), S)
    _fld(r, c, "vmx.ple_last", &c.vmx.ple_last, sizeof(c.vmx.ple_last), S)
    _fld(r, c, "vmx.ple_first", &c.vmx.ple_first, sizeof(c.vmx.ple_first), S)
    _fld(r, c, "vmx.x_pending", &c.vmx.x_pending, sizeof(c.vmx.x_pending), S)
    _fld(r, c, "vmx.mtf_pending", &c.vmx.mtf_pending, sizeof(c.vmx.mtf_pending), S)
    _fld(r, c, "vmx.mtf_mark", &c.vmx.mtf_mark, sizeof(c.vmx.mtf_mark), S)
    _fld(r, c, "vmx.pt_active", &c.vmx.pt_active, sizeof(c.vmx.pt_active), S)
    _fld(r, c, "vmx.pt_deadline", &c.vmx.pt_deadline, sizeof(c.vmx.pt_deadline), S)
    _fld(r, c, "vmx.rvi", &c.vmx.rvi, sizeof(c.vmx.rvi), S)
    _fld(r, c, "vmx.svi", &c.vmx.svi, sizeof(c.vmx.svi), S)
    _fld(r, c, "vmx.vint", &c.vmx.vint, sizeof(c.vmx.vint), S)
    _fld(r, c, "vmx.apic_pend", &c.vmx.apic_pend, sizeof(c.vmx.apic_pend), S)
    _fld(r, c, "vmx.apic_pend_off", &c.vmx.apic_pend_off, sizeof(c.vmx.apic_pend_off), S)
    _fld(r, c, "vmx.apic_pend_vec", &c.vmx.apic_pend_vec, sizeof(c.vmx.apic_pend_vec), S)
    _fld(r, c, "vmx.entry_check", &c.vmx.entry_check, sizeof(c.vmx.entry_check), S)
    _fld(r, c, "vmx.ck_dirty", &c.vmx.ck_dirty, sizeof(c.vmx.ck_dirty), S)
    _fld(r, c, "vmx.ck_view_gen", &c.vmx.ck_view_gen, sizeof(c.vmx.ck_view_gen), K)
    _fld(r, c, "vmx.ck_ept_private", &c.vmx.ck_ept_private, sizeof(c.vmx.ck_ept_private), S)
    # --- per-instruction scratch, pending exception and debug traps, host I/O
    _fld(r, c, "next_rip", &c.next_rip, sizeof(c.next_rip), S)
    _fld(r, c, "lf_kind", &c.lf_kind, sizeof(c.lf_kind), S)
    _fld(r, c, "lf_size", &c.lf_size, sizeof(c.lf_size), S)
    _fld(r, c, "lf_a", &c.lf_a, sizeof(c.lf_a), S)
    _fld(r, c, "lf_b", &c.lf_b, sizeof(c.lf_b), S)
    _fld(r, c, "lf_r", &c.lf_r, sizeof(c.lf_r), S)
    _fld(r, c, "lf_cf", &c.lf_cf, sizeof(c.lf_cf), S)
    _fld(r, c, "exc_vector", &c.exc_vector, sizeof(c.exc_vector), S)
    _fld(r, c, "exc_has_error", &c.exc_has_error, sizeof(c.exc_has_error), S)
    _fld(r, c, "exc_error", &c.exc_error, sizeof(c.exc_error), S)
    _fld(r, c, "exc_type", &c.exc_type, sizeof(c.exc_type), S)
    _fld(r, c, "exc_len", &c.exc_len, sizeof(c.exc_len), S)
    _fld(r, c, "exc_cr2", &c.exc_cr2, sizeof(c.exc_cr2), S)
    _fld(r, c, "exc_iret_nmi", &c.exc_iret_nmi, sizeof(c.exc_iret_nmi), S)
    _fld(r, c, "exc_dr6", &c.exc_dr6, sizeof(c.exc_dr6), S)
    _fld(r, c, "dbg_hits", &c.dbg_hits, sizeof(c.dbg_hits), S)
    _fld(r, c, "dbg_pending", &c.dbg_pending, sizeof(c.dbg_pending), S)
    _fld(r, c, "bad_addr", &c.bad_addr, sizeof(c.bad_addr), S)
    _fld(r, c, "bad_write", &c.bad_write, sizeof(c.bad_write), S)
    _fld(r, c, "io_to_host", &c.io_to_host, sizeof(c.io_to_host), S)
    _fld(r, c, "io_port", &c.io_port, sizeof(c.io_port), S)
    _fld(r, c, "io_size", &c.io_size, sizeof(c.io_size), S)
    _fld(r, c, "io_in", &c.io_in, sizeof(c.io_in), S)
    _fld(r, c, "io_value", &c.io_value, sizeof(c.io_value), S)
    _fld(r, c, "io_len", &c.io_len, sizeof(c.io_len), S)
    _fld(r, c, "rng", &c.rng, sizeof(c.rng), S)
    # --- MMIO: the replay log of the instruction stopped at an access is
    # state (a restored run replays it); the ranges devices claim are the
    # receiving machine's (its memory map is rebuilt by its owner)
    _fld(r, c, "mmio_on", &c.mmio_on, sizeof(c.mmio_on), K)
    _fld(r, c, "mmio_range", &c.mmio_range, sizeof(c.mmio_range), K)
    _fld(r, c, "mmio_nranges", &c.mmio_nranges, sizeof(c.mmio_nranges), K)
    _fld(r, c, "mmio_gpa", &c.mmio_gpa, sizeof(c.mmio_gpa), S)
    _fld(r, c, "mmio_req", &c.mmio_req, sizeof(c.mmio_req), S)
    _fld(r, c, "mmio_lin", &c.mmio_lin, sizeof(c.mmio_lin), S)
    _fld(r, c, "mmio_log", &c.mmio_log, sizeof(c.mmio_log), S)
    _fld(r, c, "mmio_n", &c.mmio_n, sizeof(c.mmio_n), S)
    _fld(r, c, "mmio_pos", &c.mmio_pos, sizeof(c.mmio_pos), S)
    _fld(r, c, "mmio_icount", &c.mmio_icount, sizeof(c.mmio_icount), S)
    _fld(r, c, "mmio_events", &c.mmio_events, sizeof(c.mmio_events), S)
    _fld(r, c, "mmio_rip", &c.mmio_rip, sizeof(c.mmio_rip), S)
    # --- memory: slots, the TLB, the decode cache, translated blocks
    _fld(r, c, "dirty_log", &c.dirty_log, sizeof(c.dirty_log), K)
    _fld(r, c, "slots", &c.slots, sizeof(c.slots), K)
    _fld(r, c, "nslots", &c.nslots, sizeof(c.nslots), K)
    _fld(r, c, "ram_size", &c.ram_size, sizeof(c.ram_size), K)
    _fld(r, c, "ram", &c.ram, sizeof(c.ram), K)
    _fld(r, c, "code_pages", &c.code_pages, sizeof(c.code_pages), K)
    _fld(r, c, "code_bits", &c.code_bits, sizeof(c.code_bits), K)
    _fld(r, c, "tlb", &c.tlb, sizeof(c.tlb), K)
    _fld(r, c, "tlb_gen", &c.tlb_gen, sizeof(c.tlb_gen), K)
    _fld(r, c, "tlb_epoch", &c.tlb_epoch, sizeof(c.tlb_epoch), K)
    _fld(r, c, "tlb_ngen", &c.tlb_ngen, sizeof(c.tlb_ngen), K)
    _fld(r, c, "tlb_cfg", &c.tlb_cfg, sizeof(c.tlb_cfg), K)
    _fld(r, c, "tlb_large", &c.tlb_large, sizeof(c.tlb_large), K)
    _fld(r, c, "tlb_salt", &c.tlb_salt, sizeof(c.tlb_salt), K)
    _fld(r, c, "pcid_gen", &c.pcid_gen, sizeof(c.pcid_gen), K)
    _fld(r, c, "tlb_kept", &c.tlb_kept, sizeof(c.tlb_kept), K)
    _fld(r, c, "tlb_vpid", &c.tlb_vpid, sizeof(c.tlb_vpid), K)
    _fld(r, c, "tlb_cr0", &c.tlb_cr0, sizeof(c.tlb_cr0), K)
    _fld(r, c, "tlb_cr3", &c.tlb_cr3, sizeof(c.tlb_cr3), K)
    _fld(r, c, "tlb_cr4", &c.tlb_cr4, sizeof(c.tlb_cr4), K)
    _fld(r, c, "tlb_efer", &c.tlb_efer, sizeof(c.tlb_efer), K)
    _fld(r, c, "tlb_eptp", &c.tlb_eptp, sizeof(c.tlb_eptp), K)
    _fld(r, c, "icache", &c.icache, sizeof(c.icache), K)
    _fld(r, c, "icache_mask", &c.icache_mask, sizeof(c.icache_mask), K)
    _fld(r, c, "blocks", &c.blocks, sizeof(c.blocks), K)
    _fld(r, c, "arena", &c.arena, sizeof(c.arena), K)
    _fld(r, c, "arena_used", &c.arena_used, sizeof(c.arena_used), K)
    _fld(r, c, "block_epoch", &c.block_epoch, sizeof(c.block_epoch), K)
    _fld(r, c, "code_gen", &c.code_gen, sizeof(c.code_gen), K)
    _fld(r, c, "code_writes", &c.code_writes, sizeof(c.code_writes), K)
    # the machine's processors: its own, whatever the file's
    _fld(r, c, "cpus", &c.cpus, sizeof(c.cpus), K)
    _fld(r, c, "ncpus", &c.ncpus, sizeof(c.ncpus), K)
    _fld(r, c, "cpu_index", &c.cpu_index, sizeof(c.cpu_index), K)
    _fld(r, c, "blocks_built", &c.blocks_built, sizeof(c.blocks_built), K)
    # --- accounting: the counts are the machine's history; icount_limit is a
    # slice's, exit_ticks, exit_t0 and acct_reason are host wall-clock time
    _fld(r, c, "icount", &c.icount, sizeof(c.icount), S)
    _fld(r, c, "icount_limit", &c.icount_limit, sizeof(c.icount_limit), K)
    _fld(r, c, "events", &c.events, sizeof(c.events), S)
    _fld(r, c, "exit_count", &c.exit_count, sizeof(c.exit_count), S)
    _fld(r, c, "exit_ticks", &c.exit_ticks, sizeof(c.exit_ticks), K)
    _fld(r, c, "exit_t0", &c.exit_t0, sizeof(c.exit_t0), K)
    _fld(r, c, "acct_reason", &c.acct_reason, sizeof(c.acct_reason), K)
    _fld(r, c, "entries", &c.entries, sizeof(c.entries), S)
    # the detail of the accounting (a host pointer) measures the host's work
    # on this machine (wall time, histograms), like blocks_built: not state
    _fld(r, c, "acct", &c.acct, sizeof(c.acct), K)
    # --- who is using the CPU
    _fld(r, c, "running", &c.running, sizeof(c.running), K)
    _fld(r, c, "in_guest", &c.in_guest, sizeof(c.in_guest), K)
    _fld(r, c, "run_limit", &c.run_limit, sizeof(c.run_limit), K)
    # --- the host debugger (core/debugger.pxi): the session's, set again from Python
    _fld(r, c, "hdbg", &c.hdbg, sizeof(c.hdbg), K)
    _fld(r, c, "hbp_n", &c.hbp_n, sizeof(c.hbp_n), K)
    _fld(r, c, "hbp", &c.hbp, sizeof(c.hbp), K)
    _fld(r, c, "hbp_skip_on", &c.hbp_skip_on, sizeof(c.hbp_skip_on), K)
    _fld(r, c, "hbp_skip", &c.hbp_skip, sizeof(c.hbp_skip), K)
    _fld(r, c, "hbpp_n", &c.hbpp_n, sizeof(c.hbpp_n), K)
    _fld(r, c, "hbpp", &c.hbpp, sizeof(c.hbpp), K)
    _fld(r, c, "hwp_n", &c.hwp_n, sizeof(c.hwp_n), K)
    _fld(r, c, "hwp", &c.hwp, sizeof(c.hwp), K)
    _fld(r, c, "hd_stop", &c.hd_stop, sizeof(c.hd_stop), K)
    _fld(r, c, "hd_index", &c.hd_index, sizeof(c.hd_index), K)
    _fld(r, c, "hd_addr", &c.hd_addr, sizeof(c.hd_addr), K)
    _fld(r, c, "hd_size", &c.hd_size, sizeof(c.hd_size), K)
    _fld(r, c, "hd_write", &c.hd_write, sizeof(c.hd_write), K)
    _fld(r, c, "trace_buf", &c.trace_buf, sizeof(c.trace_buf), K)
    _fld(r, c, "trace_n", &c.trace_n, sizeof(c.trace_n), K)
    _fld(r, c, "trace_cap", &c.trace_cap, sizeof(c.trace_cap), K)
    _fld(r, c, "trace_lo", &c.trace_lo, sizeof(c.trace_lo), K)
    _fld(r, c, "trace_hi", &c.trace_hi, sizeof(c.trace_hi), K)
    _fld(r, c, "trace_modes", &c.trace_modes, sizeof(c.trace_modes), K)
    # --- the layout of the structs inside SAVED members
    _fld(r, c, "seg[0].base", &c.seg[0].base, sizeof(c.seg[0].base), L)
    _fld(r, c, "seg[0].limit", &c.seg[0].limit, sizeof(c.seg[0].limit), L)
    _fld(r, c, "seg[0].ar", &c.seg[0].ar, sizeof(c.seg[0].ar), L)
    _fld(r, c, "seg[0].sel", &c.seg[0].sel, sizeof(c.seg[0].sel), L)
    _fld(r, c, "seg[1]", &c.seg[1], sizeof(c.seg[1]), L)
    return r


cdef object _snap_layout_cache = None


def _snapshot_layout():
    """The Cpu struct as snapshots see it: a dict with ``rows`` (name,
    offset, size, how: 0 kept, 1 saved, 2 layout only), ``size`` (bytes
    of the saved members), ``cpu_size`` (sizeof(Cpu)) and ``hash`` (SHA-256
    hex of the rows, the CPUID feature table and the VMCS field layout)."""
    global _snap_layout_cache
    cdef Cpu* c
    cdef uint32_t e
    if _snap_layout_cache is not None:
        return _snap_layout_cache
    c = <Cpu*>calloc(1, sizeof(Cpu))
    if c == NULL:
        raise MemoryError()
    try:
        rows = _snap_rows(c)
    finally:
        free(c)
    from vtx.spec import VmcsField
    h = _hashlib.sha256()
    h.update(f"Cpu {sizeof(Cpu)};".encode())
    for name, off, size, how in rows:
        h.update(f"{name}:{off}:{size}:{how};".encode())
    h.update(("features " + ",".join(row[0] for row in _FEATURES) + ";").encode())
    h.update(f"vmcs {VMCS_REGION_SIZE} {CK_COUNT};".encode())
    for f in VmcsField:
        e = int(f)
        h.update(f"{f.name}:{e:#x}:{vmcs_field_offset(e)}:{vmcs_field_width(e)};".encode())
    _snap_layout_cache = {"rows": tuple(rows), "size": sum(r[2] for r in rows if r[3] == SNAP_SAVED),
                          "cpu_size": sizeof(Cpu), "hash": h.hexdigest()}
    return _snap_layout_cache


cdef Cpu* _snap_cpu(object vcpu) except NULL:
    if isinstance(vcpu, VCpuBase):
        return (<VCpuBase>vcpu).c
    if isinstance(vcpu, Processor):
        return (<Processor>vcpu).c
    raise TypeError(f"a snapshot saves a vtx.VCpu or a vtx.BareCpu, not {type(vcpu).__name__}")


def _snapshot_cpu(vcpu):
    """The SAVED members of the vCPU's Cpu struct, in table order: bytes.
    Between runs, or from an exit handler (the exit is done, the guest state
    saved); not while the guest executes."""
    cdef Cpu* c = _snap_cpu(vcpu)
    cdef size_t off, size, pos = 0
    cdef uint8_t* dst
    cdef uint8_t[::1] view
    if c.in_guest:
        raise VmStateError("the vCPU cannot be saved while the guest runs (run() is active in another thread)")
    layout = _snapshot_layout()
    out = bytearray(layout["size"])
    view = out
    dst = &view[0]
    cdef size_t pad_at = <size_t>(<uint8_t*>&c.seg[0].sel - <uint8_t*>&c.seg[0]) + sizeof(c.seg[0].sel)
    cdef int i
    for name, off, size, how in layout["rows"]:
        if how == SNAP_SAVED:
            memcpy(dst + pos, (<uint8_t*>c) + off, size)
            if name == "seg":
                # Seg ends in padding after sel (6 bytes), which a struct copy
                # from an uninitialised local fills with whatever the stack
                # held: the image keeps zeros there, so that two saves of one
                # state are the same bytes (and the same hash).
                for i in range(8):
                    memset(dst + pos + i * sizeof(Seg) + pad_at, 0, sizeof(Seg) - pad_at)
            pos += size
    return bytes(out)


def _restore_cpu(vcpu, const uint8_t[::1] image):
    """Copy a ``_snapshot_cpu`` image into the vCPU (the caller checked the
    file; the machine's memory is restored first, so that the current VMCS
    is pointed into it), then drop every cache the old state filled."""
    cdef Cpu* c = _snap_cpu(vcpu)
    cdef size_t off, size, pos = 0
    layout = _snapshot_layout()
    if image.shape[0] != layout["size"]:
        raise ArgumentError(f"a vCPU image is {layout['size']} bytes, not {image.shape[0]}")
    if c.in_guest or c.running:
        raise VmStateError("the vCPU cannot be restored while it runs")
    for name, off, size, how in layout["rows"]:
        if how == SNAP_SAVED:
            memcpy((<uint8_t*>c) + off, &image[pos], size)
            pos += size
    # The current VMCS: the private memory (hosted hypervisor) or RAM at the
    # pointer VMPTRLD named (bare machine), in this machine's memory.
    if c.vmx.vmcs_ptr == VMCS_PTR_NONE:
        c.vmx.vmcs = NULL
    else:
        c.vmx.vmcs = hpa_ptr(c, c.vmx.vmcs_ptr, VMCS_REGION_SIZE, c.vmx.vmcs_in_ram)
    # ck_dirty comes with the VMCS it describes: the record of what changed
    # since the last successful entry is the saved machine's, exactly
    # (docs/architecture.rst, "Entry checks at VMRESUME"); ck_view_gen stays
    # this machine's, so a view of its private memory still counts.
    c.ev_armed = 0
    c.acct_reason = -1
    _snap_drop_caches(c, vcpu.machine)
    return None


cdef int _snap_drop_caches(Cpu* c, Machine m) except -1:
    """Nothing decoded or translated under the old memory and state may
    survive: the decode cache is emptied (its mapping discarded, so the
    kernel gives zero pages, whose tags are invalid), no page holds code,
    every translated block is stale (a new epoch, an empty arena) and the
    TLB is flushed with no kept context."""
    cdef uint64_t pg
    # This processor's own decode cache (each vCPU has one: "Several vCPUs"),
    # a page-aligned HostMemory mapping of (icache_mask + 2) slots.
    cdef size_t size = ((c.icache_mask + 2) * sizeof(Insn) + 4095) & ~(<size_t>4095)
    if madvise(<void*>c.icache, size, MADV_DONTNEED) != 0:
        memset(<void*>c.icache, 0, size)
    memset(c.code_pages, 0, <size_t>(c.ram_size >> 12))
    memset(c.code_bits, 0, <size_t>(c.ram_size >> 12) * sizeof(uint64_t))
    for pg in range(c.ram_size >> 12):
        c.code_gen[pg] += 1
    c.block_epoch += 1
    c.arena_used = 0
    c.code_writes += 1
    tlb_flush(c)
    c.tlb_kept = 0
    tlb_set_salt(c)
    return 0


def _ram_nonzero_pages(Machine m):
    """A bitmap of the RAM pages that hold a non-zero byte (bit i of byte
    i >> 3 for page i)."""
    cdef uint64_t npages = m.ram_size >> 12
    cdef uint64_t pg, i
    cdef const uint64_t* p
    cdef uint8_t[::1] bits
    out = bytearray((npages + 7) >> 3)
    bits = out
    if m.c.in_guest:
        raise VmStateError("guest memory cannot be saved while the guest runs (run() is active in another thread)")
    with nogil:
        for pg in range(npages):
            p = <const uint64_t*>(m.c.ram + (pg << 12))
            for i in range(512):
                if p[i]:
                    bits[pg >> 3] |= <uint8_t>(1 << (pg & 7))
                    break
    return bytes(out)


def _ram_restore(Machine m, const uint8_t[::1] bitmap, const uint8_t[::1] pages):
    """RAM = zero except the pages the bitmap marks, which take the 4 KiB
    pieces of ``pages`` in order (the caller checked the lengths)."""
    cdef uint64_t npages = m.ram_size >> 12
    cdef uint64_t pg, pos = 0
    if m.c.in_guest or m.c.running:
        raise VmStateError("guest memory cannot be restored while the vCPU runs")
    if bitmap.shape[0] != <Py_ssize_t>((npages + 7) >> 3):
        raise ArgumentError("the page bitmap does not match the size of guest memory")
    if madvise(m.ram_mem.ptr, <size_t>m.ram_size, MADV_DONTNEED) != 0:
        memset(m.ram_mem.ptr, 0, <size_t>m.ram_size)
    for pg in range(npages):
        if (bitmap[pg >> 3] >> (pg & 7)) & 1:
            if pos + 4096 > <uint64_t>pages.shape[0]:
                raise ArgumentError("the page data is shorter than the bitmap says")
            memcpy(m.ram_mem.ptr + (pg << 12), &pages[pos], 4096)
            pos += 4096
    return None


def _priv_restore(Machine m, const uint8_t[::1] data):
    """The private memory (VMCS, bitmaps, EPT tables) = data."""
    if m.c.in_guest or m.c.running:
        raise VmStateError("the private memory cannot be restored while the vCPU runs")
    if <uint64_t>data.shape[0] != m.priv_size:
        raise ArgumentError(f"the private memory is {m.priv_size:#x} bytes, not {data.shape[0]:#x}")
    memcpy(m.priv_mem.ptr, &data[0], m.priv_size)
    return None


def _rom_layout(Machine m):
    """Where the ROM is mapped: (base, size, low) with low the size of the
    copy below 1 MiB (0: none), or None without a ROM."""
    cdef HostMemory mem
    cdef int i
    cdef Slot* s
    if not m._roms:
        return None
    mem = <HostMemory>m._roms[0]
    base, low = None, 0
    for i in range(m.c.nslots):
        s = &m.c.slots[i]
        if not s.readonly or s.ptr < mem.ptr or s.ptr >= mem.ptr + mem.size:
            continue
        if s.base + s.size == 0x100000000ULL:
            base = s.base          # the whole image, ending at 4 GiB
        else:
            low = s.size           # its end again below 1 MiB
    return (base, mem.size, low)


def _set_cpu_model(Machine m, model):
    """Make ``model`` the machine's CPU model object without touching the
    processor (a restore copied its features and CPUID table already)."""
    m._model = model


def _vcpu_busy(vcpu):
    """Whether the vCPU is inside a run (an exit handler included) or its
    guest executes: no restore then."""
    cdef Cpu* c = _snap_cpu(vcpu)
    return bool(c.running or c.in_guest)
