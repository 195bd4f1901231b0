# The CPU's C-level declarations: every struct the interpreter touches and the
# cdef classes that own them (docs/architecture.rst, "Layout").
# Nothing here is a Python object; the run loop works on these structs with the
# GIL released.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t, int32_t

cdef extern from "spec_gen.h" nogil:
    # A set of VM-entry checks, one bit per check (vtx/spec/generate.py; the C
    # header gives the real size, CK_WORDS words).
    ctypedef struct ck_mask_t:
        uint64_t w[4]

# Segment register with its hidden part.  `ar` is in the VMCS access-rights
# format (SDM Vol. 3 24.4.1, Table 24-2): type 3:0, S 4, DPL 6:5, P 7, AVL 12,
# L 13, D/B 14, G 15, unusable 16.  Keeping the VMX format inside the CPU makes
# VM entry/exit a plain copy.
ctypedef struct Seg:
    uint64_t base
    uint32_t limit
    uint32_t ar
    uint16_t sel

ctypedef struct Insn   # forward

# The host debugger (core/debugger.pxi; docs/architecture.rst, "Debugging"):
# a watchpoint on a linear or guest-physical range, and one record of the
# instruction trace.
ctypedef struct HostWatch:
    uint64_t addr
    uint64_t len
    uint32_t kind         # 1 read, 2 write, 3 either (gdb's Z3, Z2, Z4)
    uint32_t phys         # addr is guest-physical (else linear)

ctypedef struct TraceRec:
    uint64_t lin          # linear address of the instruction's first byte
    uint64_t rip
    uint64_t icount       # instructions retired before it (with events: tells a replay apart)
    uint64_t events
    uint16_t cs
    uint8_t mode          # TRACE_REAL .. TRACE_LONG64 (core/debugger.pxi)
    uint8_t len
    uint8_t nbytes        # bytes copied (fewer than len when it crosses a page)
    uint8_t bytes[15]
ctypedef struct Cpu    # forward
ctypedef struct Block  # forward
ctypedef int (*handler_t)(Cpu* c, Insn* d) noexcept nogil

# A decoded instruction (docs/architecture.rst, decision 4): operand size, address size and
# handler are fixed when the bytes are decoded, so executing it again is a
# table lookup and an indirect call.
ctypedef struct Insn:
    uint64_t tag          # host-physical address | mode << 56 | valid bit 63
    handler_t fn
    int64_t disp
    uint64_t imm
    uint8_t len
    uint8_t op            # primary opcode byte (second byte for 0F xx)
    uint8_t osz           # operand size in bytes: 1, 2, 4, 8
    uint8_t asz           # address size in bytes: 2, 4, 8
    uint8_t mod           # ModRM.mod (3 = register operand)
    uint8_t reg           # ModRM.reg (+REX.R); byte registers AH..BH as 16..19
    uint8_t rm            # ModRM.rm  (+REX.B) when mod == 3; byte regs as reg
    uint8_t base          # memory operand: base register, 0xFF = none
    uint8_t index         # memory operand: index register, 0xFF = none
    uint8_t scale         # log2 of the SIB scale
    uint8_t seg           # effective segment for the memory operand
    uint8_t rep           # 0, 0xF3 (REP/REPE) or 0xF2 (REPNE); in the 0F 38 map the
                          # mandatory prefix: 0, 0x66, 0xF2 or 0xF3 (core/decode.pxi)
    uint8_t ext           # opcode extension: ALU op, condition code, group /digit
    uint8_t flags         # INSN_* bits
    uint8_t cc2           # fused Jcc (INSN_FUSED): its condition; disp holds its rel
    uint8_t len2          # fused Jcc: its length (len covers both instructions)

# A link from one translated block to the block that ran after it (core/run.pxi,
# chained): valid while its slot still holds that block (tag) and nothing that
# can drop or move a block happened since (stamp: see chain_stamp).
ctypedef struct BlockLink:
    Block* to
    uint64_t rip          # the RIP it was entered at
    uint64_t tag          # its tag then
    uint64_t stamp        # chain_stamp then

# A translated block (core/run.pxi): decoded instructions that run one after
# the other, all in one page, built once and run with the checks done per
# block.  Its ops live in the Cpu's arena.
ctypedef struct Block:
    uint64_t tag          # host address of the first byte | mode << 56 | valid bit 63
    Insn* ops
    Insn* last            # ops + n - 1
    uint32_t page_gen     # code_gen[page] when built: a write to its code drops it
    uint32_t epoch        # block_epoch when built: an arena reset drops it
    uint32_t page         # its RAM page (host-physical address >> 12)
    uint16_t n            # ops
    uint16_t ninsn        # instructions (a fused pair counts two)
    uint16_t nbytes
    uint8_t link_next     # the link a new successor replaces (round robin)
    # (what running the block reads fits the first 64 bytes; the links follow)
    BlockLink link[4]     # chaining: BLOCK_LINKS ways out (side exits and the end)

ctypedef struct TlbEntry:
    uint64_t page         # linear page number
    uint64_t gen          # valid while equal to Cpu.tlb_gen
    uint8_t* host         # host pointer to the start of the 4 KiB page
    uint64_t hpa          # host-physical address of the page
    uint32_t perm         # TLB_* bits: which accesses may use this entry
    # Kept across the flushes that spare it (core/mmu.pxi, "The TLB"): an
    # entry whose gen is stale is valid again while its epoch is current and
    # it is global, or its PCID's generation and ngen are current.
    uint64_t epoch        # Cpu.tlb_epoch when filled (a full flush drops it)
    uint64_t ngen         # Cpu.tlb_ngen when filled (INVPCID type 3 drops non-global entries)
    uint32_t pgen         # Cpu.pcid_gen[pcid] when filled
    uint16_t pcid         # the PCID it was filled under (0 with CR4.PCIDE = 0)
    uint8_t glob          # global page (G = 1 in the leaf with CR4.PGE = 1)
    uint8_t lshift        # log2 of the size of the page that maps it (12, 21, 22, 30)

# VM-execution controls copied out of the VMCS at VM entry (decision 5): the
# instruction handlers test these bits, never the VMCS itself.
ctypedef struct VmxControls:
    uint32_t pin
    uint32_t proc
    uint32_t proc2
    uint32_t exit_ctl
    uint32_t entry_ctl
    uint32_t exception_bitmap
    uint32_t pfec_mask
    uint32_t pfec_match
    uint64_t io_bitmap_a
    uint64_t io_bitmap_b
    uint64_t msr_bitmap
    uint64_t tsc_offset
    uint64_t eptp
    uint64_t cr0_mask
    uint64_t cr4_mask
    uint64_t cr0_shadow
    uint64_t cr4_shadow
    uint32_t ple_gap      # PAUSE-loop exiting (SDM 26.1.3), in TSC ticks
    uint32_t ple_window
    # APIC virtualization (SDM Vol. 3C chapter 30; core/vmx/apicv.pxi)
    uint64_t virtual_apic     # physical address of the virtual-APIC page
    uint64_t apic_access      # physical address of the APIC-access page
    uint32_t tpr_threshold
    uint32_t pi_vector        # posted-interrupt notification vector
    uint64_t pi_desc          # physical address of the posted-interrupt descriptor
    uint64_t eoi_exit[4]      # EOI-exit bitmap, vectors 0-255
    uint64_t xss_bitmap       # XSS-exiting bitmap (0 without "enable XSAVES/XRSTORS")
    uint64_t spptp            # SPP-table pointer (core/vmx/spp.pxi)

# One memory slot: a run of host-physical addresses backed by a host buffer.
# Slot 0 is the guest's RAM; slot 1 is the hosted hypervisor's private memory
# (VMCS, bitmaps, EPT tables), which EPT never maps for the guest.
ctypedef struct Slot:
    uint64_t base
    uint64_t size
    uint8_t* ptr
    int guest_visible
    int readonly          # a ROM: writes to it are ignored (core/mmu.pxi, gpa_to_host)
    int mmio_writes       # read-only memory whose writes are MMIO accesses for the host
                          # (vtx.VM.add_memory(readonly=True)) rather than ignored
    uint64_t* dirty       # dirty-page log: a bit per 4 KiB page written by the guest since
                          # the log was last read (NULL: not logging; core/mmu.pxi)
    int cached            # its code may be kept decoded: RAM (slot 0, whose writes are
                          # tracked for self-modifying code) and ROM; other memory is
                          # decoded at every fetch

# An emulated MMIO access (core/mmu.pxi, "MMIO"): one a Python device answered.
ctypedef struct MmioAccess:
    uint64_t gpa
    uint64_t value
    uint32_t size         # 1, 2, 4 or 8; 0 in mmio_req: an access the model cannot emulate
    uint32_t write


# A logical processor's VMX state (SDM Vol. 3C chapters 24-31), held apart
# from its architectural state: whether it is in VMX operation, root or
# non-root, who the root-mode software is, the current-VMCS pointer, the
# controls of the running guest, the exit being staged and the bookkeeping of
# the entry checks.  Everything VMX-only lives here; AMD-V's SVM will keep
# its own struct beside it (docs/architecture.rst, "The VMX layer").
ctypedef struct VmxState:
    int on                # in VMX operation (VMXON done, or the hosted hypervisor's VCpu)
    int non_root          # VMX non-root operation: a guest runs
    int host_x86          # who is root: 1 x86 code (exits load host state and go on at
                          # HOST_RIP), 0 the Python hypervisor (exits return to Python)
    uint64_t vmxon_ptr    # VMXON pointer (physical address of the VMXON region)
    uint64_t vmcs_ptr     # current-VMCS pointer; VMCS_PTR_NONE when there is none
    uint8_t* vmcs         # host pointer to the current VMCS region (4 KiB); NULL when none
    int vmcs_in_ram       # the current VMCS lies in RAM that software can also write with MOV
    uint32_t vmxon_count  # VMXONs so far: a VMCS launched under an earlier one gives error 6
    VmxControls ctl
    int ept

    # pending VM exit (RC_VMEXIT): the exit-information fields, SDM 24.9
    uint32_t x_reason
    uint64_t x_qual
    uint32_t x_len
    uint32_t x_info
    uint32_t x_intr_info
    uint32_t x_intr_error
    uint64_t x_gla
    uint64_t x_gpa
    int x_gla_valid
    # IDT-vectoring information and error code (SDM 24.9.3): the event whose
    # delivery the exit interrupted; 0 when none.  vm_exit clears them.
    uint32_t x_idt_info
    uint32_t x_idt_error

    # PAUSE-loop exiting (SDM 26.1.3): TSC of the last PAUSE at CPL 0 and of
    # the first PAUSE of the current loop; ple_valid = 0 until the first PAUSE
    # at CPL 0 after VM entry (which always starts a loop).
    int ple_valid
    uint64_t ple_last
    uint64_t ple_first
    # A VM exit staged by VM entry itself (a fault while delivering the
    # injected event, SDM 27.6.1.2): the run loop performs it at the first
    # instruction boundary, before anything else (core/vmx/events.pxi).
    int x_pending

    # The monitor trap flag and the VMX-preemption timer (core/vmx/events.pxi).
    int mtf_pending       # VM entry injected a pending MTF VM exit (type 7, vector 0)
    uint64_t mtf_mark     # icount + events when the MTF was last armed: a change is an
                          # instruction retired or an event delivered since
    int pt_active         # "activate VMX-preemption timer" in the running guest
    uint64_t pt_deadline  # the TSC value at which the timer reaches 0

    # APIC virtualization (core/vmx/apicv.pxi): the guest interrupt status
    # (RVI, SVI; SDM 25.4.2) while the guest runs, whether a virtual interrupt
    # is recognized (30.2.1), and the work an instruction left for its
    # boundary (trap-like: TPR virtualization, EOI virtualization, self-IPI
    # virtualization, APIC-write emulation; 30.1.2 - 30.1.5, 30.4.3.2).
    uint32_t rvi
    uint32_t svi
    int vint
    uint32_t apic_pend    # APIC_PEND_* bits
    uint32_t apic_pend_off    # APIC-write emulation: page offset of the write
    uint32_t apic_pend_vec    # self-IPI virtualization from WRMSR 83FH: the vector

    # failed VM entry: which check (index into the Python check table)
    int entry_check

    # VMRESUME re-checks what changed (core/vmx/entry.pxi; docs/architecture.rst,
    # "Entry checks at VMRESUME")
    ck_mask_t ck_dirty    # checks whose inputs may differ from the last successful entry
    uint64_t ck_view_gen  # HostMemory.export_gen of the private memory when last looked at
    int ck_ept_private    # the EPT of the last successful entry may reach the private memory


# The x87 FPU, MMX and SSE state (SDM Vol. 1 chapters 8-11, and the FXSAVE
# layout of Vol. 2 FXSAVE, Table 3-53).  core/insn/x87.pxi owns the x87 part,
# core/insn/sse*.pxi the SSE part; FXSAVE/XSAVE move the whole of it.
ctypedef struct FpuState:
    # x87: the eight physical data registers R0-R7 (ST(i) is R[(TOP + i) & 7]),
    # each an 80-bit extended-precision value in bytes 0-9 (little-endian:
    # 64-bit significand, then sign and 15-bit exponent); bytes 10-15 are 0.
    # MMX register MMi is bytes 0-7 of R[i] (bytes 8-9 become FFFF when an MMX
    # instruction writes it).
    uint8_t st[8][16]
    uint16_t fcw          # control word (FNINIT: 037FH)
    uint16_t fsw          # status word, TOP in bits 13:11
    uint16_t ftw          # full tag word: 2 bits per physical register (00 valid, 01 zero,
                          # 10 special, 11 empty); FXSAVE stores its abridged form
                          # (x87.pxi keeps the non-empty tags equal to what the contents
                          # give; ES and B of fsw are set exactly while a raised exception
                          # flag is unmasked: see docs/architecture.rst, "The x87 FPU")
    uint16_t fop          # last non-control instruction's opcode (11 bits)
    uint64_t fip          # last instruction pointer (offset; a linear address in 64-bit mode)
    uint64_t fdp          # last data (operand) pointer
    uint16_t fcs          # their selectors (FXSAVE 32-bit format)
    uint16_t fds
    # SSE
    uint32_t mxcsr        # (reset: 1F80H)
    uint64_t xmm[16][2]   # XMM0-XMM15: [0] bits 63:0, [1] bits 127:64

# Accounting beyond the exit counts (docs/architecture.rst, "Accounting and
# cost profiles"): the split of each exit's wall time, its distribution, the
# qualification kinds that matter for pricing, VMREAD/VMWRITE, events, TLB
# flushes and page walks.  All of it is counted at points the model passes
# anyway (an exit, an entry, a flush, a walk), never per instruction.
ctypedef struct AcctQual:
    # A small open-addressed table of (key, count): I/O ports, MSR numbers.
    uint64_t key[64]      # key + 1 (0: an empty slot)
    uint64_t count[64]
    uint64_t other        # exits whose key found no free slot
    uint32_t used

ctypedef struct AcctRow:
    # A reason's rows as they were at its first change in a run (acct_touch):
    # the run's base, which its mark reads at the run's end (core/acct.pxi).
    uint64_t count, rt_ticks, handler_ticks, guest_ticks, guest_insns, handler_insns
    uint32_t hist[128]

ctypedef struct Acct:
    uint64_t count[128]          # exits per basic reason since the last reset
    uint64_t rt_ticks[128]       # exit to the next entry (the model's exit path + the handler)
    uint64_t handler_ticks[128]  # inside the Python handler
    uint64_t guest_ticks[128]    # guest execution from the entry before to the exit
    uint64_t guest_insns[128]    # guest instructions retired in that time
    uint64_t handler_insns[128]  # root-mode instructions from the exit to the next entry (x86 host)
    uint64_t min_ticks[128]      # round trip, exact (0: none yet)
    uint64_t max_ticks[128]
    uint64_t run_min[128]        # the same for the current run: valid where run_of[r] == run
    uint64_t run_max[128]
    uint32_t run_of[128]
    uint32_t run                 # advanced by every mark of a run (core/acct.pxi)
    uint32_t hist[128][128]      # round trip, log2 histogram with quarter-octave buckets
    AcctQual io                  # IO_INSTRUCTION by port | in << 16 | size << 17
    AcctQual msr                 # RDMSR / WRMSR by ECX | write << 32
    uint64_t cr[64]              # CR_ACCESS by qualification bits 5:0 (CR number, access type)
    uint64_t vmread_x86, vmwrite_x86, vmread_api, vmwrite_api
    uint64_t vmread_x86_exits, vmwrite_x86_exits  # those of x86 code between an exit and the next entry
    uint64_t delivered[8]        # events through the IVT/IDT per interruption type
    uint64_t tlb_flushes         # flushes of everything, of one PCID, of the non-global entries
    uint64_t page_walks          # guest paging walks (TLB misses)
    uint64_t entries0            # Cpu.entries at the last reset
    uint64_t guest_t0            # now_ticks() at the last entry
    uint64_t guest_i0            # icount at the last entry (guest instructions start)
    uint64_t exit_i0             # icount at the last exit (handler instructions start)
    # The base of the current run (core/acct.pxi): each row and table as it
    # was when the run first changed it, and the run it was saved in.
    uint32_t saved_of[128]
    uint32_t io_saved_of, msr_saved_of, cr_saved_of
    AcctRow saved[128]
    AcctQual io_saved
    AcctQual msr_saved
    uint64_t cr_saved[64]

ctypedef struct Cpu:
    # --- architectural state -------------------------------------------
    uint64_t regs[16]
    uint64_t rip
    uint64_t rflags
    Seg seg[8]            # ES CS SS DS FS GS LDTR TR (the VMCS order)
    uint64_t gdtr_base
    uint32_t gdtr_limit
    uint64_t idtr_base
    uint32_t idtr_limit
    uint64_t cr0, cr2, cr3, cr4, cr8
    uint64_t dr[4]        # DR0-DR3, the breakpoint linear addresses
    uint64_t dr6
    uint64_t dr7
    uint64_t xcr0         # XCR0, the XSAVE feature mask (XSETBV/XGETBV)
    uint64_t xss          # IA32_XSS, the supervisor state components of XSAVES/XRSTORS
    uint64_t pasid        # IA32_PASID (XSAVES state component 10; core/insn/xsaves.pxi)
    uint64_t umwait_control   # IA32_UMWAIT_CONTROL (core/insn/waitpkg.pxi)
    uint64_t efer
    uint64_t pat
    uint64_t sysenter_cs, sysenter_esp, sysenter_eip
    uint64_t star, lstar, cstar, fmask, kernel_gs_base, tsc_aux
    uint64_t apic_base, misc_enable, debugctl
    uint64_t feature_control    # IA32_FEATURE_CONTROL (3AH): lock bit 0, VMXON outside SMX bit 2
    uint64_t pdpte[4]
    uint64_t tsc_base     # TSC = tsc_base + instructions retired
    uint32_t activity     # 0 active, 1 HLT, 2 shutdown
    int monitor_armed     # MONITOR armed address-range monitoring (MWAIT's exit qualification)
    uint64_t monitor_addr # its linear address
    uint32_t interruptibility   # SDM 25.4.2: bit 0 STI, bit 1 MOV SS, bit 3 NMI blocking
                                # (virtual-NMI blocking with "virtual NMIs")
    FpuState fpu          # x87, MMX, SSE

    # --- the CPU model (vtx/spec/cpuid.py): what CPUID reports and what exists
    uint64_t features[2]  # bit FEAT_<name>: the feature is present (cpu_has); the
                          # generator keeps FEAT_COUNT <= 128
    uint64_t cr4_fixed1   # the CR4 bits that may be 1: those of the features present
                          # (also IA32_VMX_CR4_FIXED1; vtx/spec/capabilities.py cr4_fixed1)
    # The model's fixed CPUID leaves (vtx/cpu_model.py): leaf, subleaf, EAX,
    # EBX, ECX, EDX; the feature bits are ORed in (core/insn/system.pxi).
    uint32_t cpuid_tab[48][6]
    int cpuid_n
    uint32_t cpuid_max        # highest basic leaf
    uint32_t cpuid_max_ext    # highest extended leaf
    uint32_t signature        # CPUID.01H:EAX, also EDX after reset

    # --- external events (core/vmx/events.pxi) -------------------------------
    # What the platform has raised and the processor has not yet taken: the
    # INTR line as an interrupt controller's request register (one bit per
    # vector, the highest taken first) and a latched NMI.  While something
    # is pending, or a window-exiting control asks for a look, the run loop
    # checks at instruction boundaries: ev_armed says icount_limit was
    # lowered for that, and ev_limit holds the limit it replaced.
    uint64_t irr[4]
    uint32_t nmi_pending
    uint32_t ev_armed
    uint64_t ev_limit
    # INIT and start-up IPIs in VMX non-root operation (SDM Vol. 3C 26.2): a
    # latched INIT (a VM exit, blocked in the wait-for-SIPI state) and a SIPI
    # (bit 8 valid, bits 7:0 its vector: a VM exit in wait-for-SIPI, discarded
    # in any other activity state).
    uint32_t init_pending
    uint32_t sipi_pending

    # --- derived mode (recomputed by update_mode) -----------------------
    int cpl
    int code_size         # 2, 4 or 8: default operand/address size of CS
    int long64            # 64-bit mode (EFER.LMA and CS.L)
    int paging            # 0 none, 2 = 32-bit, 3 = PAE, 4 = 4-level
    int stack_size        # 2, 4 or 8: SS.B / 64-bit

    # --- VMX: the logical processor's VMX state, apart from the architectural
    # state above (core/vmx/; docs/architecture.rst, "The VMX layer") ------
    VmxState vmx

    # --- per-instruction scratch ----------------------------------------
    uint64_t next_rip

    # lazy status flags (core/flags.pxi): while lf_kind != 0 the status bits
    # of rflags are stale and these describe them
    uint32_t lf_kind
    uint32_t lf_size
    uint64_t lf_a
    uint64_t lf_b
    uint64_t lf_r
    uint64_t lf_cf

    # pending exception (RC_EXCEPTION)
    int exc_vector
    int exc_has_error
    uint32_t exc_error
    int exc_type          # event type: 3 hardware exception, 4 software interrupt, 6 software exception
    uint32_t exc_len      # instruction length of a software event
    uint64_t exc_cr2
    int exc_iret_nmi      # the exception is a fault on an IRET that unblocked NMIs (SDM 28.2.2 bit 12)
    uint64_t exc_dr6      # a #DB's conditions in DR6 form (B0-B3 BD BS BT): core/insn/debug.pxi

    # debug traps (core/insn/debug.pxi)
    uint32_t dbg_hits     # enabled data and I/O breakpoints the current instruction hit (B0-B3)
    uint64_t dbg_pending  # traps held to a later boundary (blocking by MOV SS, VM entry), in
                          # the format of the VMCS pending-debug-exceptions field

    # unbacked guest-physical access without EPT (RC_BAD_PHYS)
    uint64_t bad_addr
    int bad_write

    # port I/O in root operation on a bare machine goes to Python (RC_IO_HOST):
    # the instruction waits, RIP on it, while the host answers
    int io_to_host
    uint32_t io_port
    uint32_t io_size
    int io_in
    uint64_t io_value     # OUT: the value written
    uint32_t io_len       # the instruction's length, to retire it after the answer

    uint64_t rng          # RDRAND/RDSEED: a deterministic generator (decision 11)

    # --- MMIO: guest-physical addresses no slot backs, and writes to read-only
    # memory, emulated by the host (core/mmu.pxi, "MMIO"; docs/architecture.rst,
    # "Memory slots and MMIO").  An instruction that reaches one stops before
    # it changes anything (RC_MMIO with the access in mmio_req); the host
    # answers and appends it to the log, and the instruction runs again,
    # taking its answered accesses from the log in order.
    int mmio_on           # emulate (else: the raw EPT violation, or RC_BAD_PHYS)
    uint64_t mmio_range[32][2]  # the guest-physical ranges [base, end) devices claim: a hole
    int mmio_nranges            # outside them is the raw EPT violation (or RC_BAD_PHYS)
    uint64_t mmio_gpa     # translate_slow's RC_MMIO: the guest-physical address
    MmioAccess mmio_req   # the access waiting for the host
    uint64_t mmio_lin     # its linear address
    MmioAccess mmio_log[32]
    int mmio_n            # answered accesses of the instruction at mmio_rip
    int mmio_pos          # the next one its current run takes
    uint64_t mmio_icount  # the log holds while icount, events and rip are these
    uint64_t mmio_events
    uint64_t mmio_rip

    # --- memory -------------------------------------------------------------
    int dirty_log         # some slot logs dirty pages (Slot.dirty)
    Slot slots[16]
    int nslots
    uint64_t ram_size
    uint8_t* ram
    uint8_t* code_pages   # one byte per RAM page: decoded code lives there
    uint64_t* code_bits   # per RAM page: which 64-byte chunks hold decoded code
    TlbEntry* tlb
    uint64_t tlb_gen      # the fast path's generation: any flush or mode change advances it
    uint64_t tlb_epoch    # advanced by a flush of everything, global entries included
    uint64_t tlb_ngen     # advanced by a flush of every non-global entry of every PCID
    uint64_t tlb_cfg      # the paging controls the entries were computed under (tlb_config)
    uint32_t tlb_large    # where an entry INVLPG must look for outside its slot may be (core/mmu.pxi)
                          # (of a page larger than 4 KiB, or global with CR4.PCIDE = 1)
    uint64_t tlb_salt     # the current PCID's salt of the TLB index (core/mmu.pxi tlb_slot)
    uint32_t pcid_gen[4096]   # per PCID: advanced by a flush of its non-global entries
    # The translation context the TLB was kept for at the last VM exit with
    # VPID enabled (core/vmx/exit.pxi, tlb_kept_for); tlb_kept = 0: none.
    int tlb_kept
    uint32_t tlb_vpid
    uint64_t tlb_cr0, tlb_cr3, tlb_cr4, tlb_efer, tlb_eptp
    Insn* icache
    uint64_t icache_mask
    Block* blocks         # translated blocks, direct-mapped by a hash of the host address
    Insn* arena           # their ops
    uint64_t arena_used
    uint32_t block_epoch
    uint32_t* code_gen    # per RAM page: bumped when its decoded code is dropped
    uint64_t code_writes  # bumped whenever decoded code is dropped (ends a running block)
    # The machine's logical processors (docs/architecture.rst, "Several vCPUs"):
    # cpus[0..ncpus) is one array the Machine owns, the same in every sibling.
    # code_pages, code_bits and code_gen above, the slots and ram are shared;
    # the TLB, icache, blocks and arena are each processor's own.
    Cpu** cpus
    int ncpus
    int cpu_index         # this processor's place in cpus
    uint64_t blocks_built # translated blocks decoded (a measure of re-translation)

    # --- accounting (decision 10) ----------------------------------------
    uint64_t icount       # instructions retired (a REP string op: one per iteration)
    uint64_t icount_limit # the loop leaves with RC_BUDGET when icount reaches it
    uint64_t events       # exceptions and interrupts delivered through the IVT/IDT
    uint64_t exit_count[128]
    uint64_t exit_ticks[128]  # wall time per reason, in ticks of now_ticks (core/vmx/exit.pxi)
    uint64_t exit_t0      # now_ticks() when the last exit happened
    int acct_reason       # reason of that exit while its time runs, else -1
    uint64_t entries
    Acct* acct            # the detail (core/acct.pxi): its own allocation, so Cpu keeps its size

    # --- who is using the CPU (set and tested with the GIL held) ---------
    int running           # inside VCpu._run, handlers included: no second run
    int in_guest          # the run loop executes (GIL released): no host writes
    uint64_t run_limit    # a handler asked the current run to end at this step count
                          # (icount + events; 0: no such request): VCpu.end_run_after

    # --- the host debugger (core/debugger.pxi): set from Python, never saved --
    uint32_t hdbg         # HD_* bits: anything set sends every instruction down the debug path
    uint32_t hbp_n        # execute breakpoints in hbp (linear addresses)
    uint64_t hbp[32]
    uint32_t hbp_skip_on  # pass over the breakpoint at hbp_skip once (resuming from it)
    uint64_t hbp_skip
    uint32_t hbpp_n       # execute breakpoints in hbpp (guest-physical addresses)
    uint64_t hbpp[32]
    uint32_t hwp_n        # watchpoints in hwp
    HostWatch hwp[32]
    uint32_t hd_stop      # why the loop returned RC_HOSTDBG (HDS_*)
    int32_t hd_index      # the breakpoint or watchpoint that was hit
    uint64_t hd_addr      # a watchpoint hit: the access (linear, or guest-physical for a physical one)
    uint32_t hd_size
    uint32_t hd_write
    TraceRec* trace_buf   # the instruction trace (malloc'd; freed with the Cpu)
    uint32_t trace_n
    uint32_t trace_cap
    uint64_t trace_lo     # only instructions whose linear address is in [lo, hi]
    uint64_t trace_hi
    uint32_t trace_modes  # 1 << TRACE_* of the modes traced


cdef class HostMemory:
    """One memory slot's host buffer, with guard pages (core/hostmem.pxi)."""
    cdef uint8_t* base
    cdef uint8_t* ptr
    cdef readonly Py_ssize_t size
    cdef readonly Py_ssize_t exports      # buffer exports alive (memoryviews and what holds them)
    cdef readonly uint64_t export_gen     # +1 at every export and every release


cdef class Machine:
    """Guest memory and the processors that run it (Machine.c is the first)."""
    cdef Cpu* c
    cdef HostMemory ram_mem
    cdef HostMemory priv_mem
    cdef HostMemory icache_mem    # the decode cache: large, touched only where code runs
    cdef HostMemory block_mem     # translated blocks and their ops (core/run.pxi)
    cdef readonly uint64_t ram_size
    cdef readonly uint64_t priv_base
    cdef readonly uint64_t priv_size
    cdef object _model            # the vtx.CpuModel (cpu_model)
    cdef list _roms               # HostMemory buffers of the ROM slots (map_rom)
    cdef dict _extra              # guest memory slots beyond RAM: base -> HostMemory
    cdef Slot* _slot_at(self, uint64_t base) except NULL
    cdef Cpu** cpus               # every processor: cpus[0] is c (Cpu.cpus points here)
    cdef int ncpus
    cdef list _cpu_mem            # the decode caches and block arenas of cpus[1..]
    cdef int _share(self) except -1
    cdef Cpu* _new_cpu(self) except NULL
    cdef int _any_in_guest(self)


cdef class VCpuBase:
    cdef Cpu* c
    cdef readonly Machine machine
    cdef public object mmio_handler   # (vcpu, gpa, size, is_write, value) -> value read
    cdef uint64_t _vmcs_u64(self, int off) noexcept
    cdef int _vmcs_set_u64(self, int off, uint64_t v) except -1
    cdef int _mmio_answer(self) except -1
    cdef object _run_inner(self, list handlers, object default, uint64_t budget, object RESUME,
                           object RETRY, object STOP, bint step)
    cdef int _check_run(self, list handlers, object budget) except -1
    cdef tuple _run_counted(self, list handlers, object default, object budget, object RESUME, object RETRY,
                            object STOP, bint step, uint64_t* counts0, uint64_t* ticks0)
    cdef public object trace_handler  # called with the records when the trace buffer fills
    cdef public object vm             # the vtx.VM that made it (step, trace; None for a bare VCpu)


cdef class VCpu(VCpuBase):
    pass


cdef class Processor:
    """The processor of a bare machine (core/bare.pxi)."""
    cdef Cpu* c
    cdef readonly Machine machine
    cdef int _idle(self) except -1
    cdef int _root(self, str insn) except -1
    cdef int _done(self, str insn, int st) except -1
    cdef int _enter(self, str insn, int launch) except -1


cdef class Exit:
    cdef readonly uint32_t reason
    cdef readonly uint32_t raw_reason
    cdef readonly uint64_t qualification
    cdef readonly uint32_t instruction_length
    cdef readonly uint32_t instruction_info
    cdef readonly uint32_t interruption_info
    cdef readonly uint32_t interruption_error_code
    cdef readonly uint32_t idt_vectoring_info
    cdef readonly uint32_t idt_vectoring_error_code
    cdef readonly uint64_t guest_rip
    cdef readonly uint64_t guest_linear_address
    cdef readonly uint64_t guest_physical_address
    cdef readonly uint64_t rax


cdef class IoExit(Exit):
    pass


cdef class CpuidExit(Exit):
    cdef readonly uint32_t leaf
    cdef readonly uint32_t subleaf


cdef class MsrExit(Exit):
    cdef readonly uint32_t index
    cdef readonly uint64_t _value


cdef class HltExit(Exit):
    pass


cdef class VmcallExit(Exit):
    pass


cdef class RdtscExit(Exit):
    pass


cdef class ExceptionExit(Exit):
    pass


cdef class TripleFaultExit(Exit):
    pass


cdef class ExternalInterruptExit(Exit):
    pass


cdef class EptViolationExit(Exit):
    pass


cdef class EptMisconfigExit(Exit):
    pass


cdef class CrAccessExit(Exit):
    pass


cdef class MovDrExit(Exit):
    pass


cdef class DescriptorTableExit(Exit):
    pass


cdef class MwaitExit(Exit):
    pass


cdef class VmxInstructionExit(Exit):
    pass
