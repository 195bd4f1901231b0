# The run loop: fetch through the TLB, run the translated block there (or one
# decoded instruction at a time where a block cannot run).  It runs without
# the GIL and leaves only by a return code (docs/architecture.rst, "The path of
# a guest instruction" and "The fast path of the interpreter").

cdef enum:
    ICACHE_ENTRIES = 1 << 20
    BLOCK_ENTRIES = 1 << 20     # translated blocks (direct-mapped, lazily backed)
    ARENA_INSNS = 1 << 20       # their ops (lazily backed: about 1 MiB of code); when full, every block is dropped
    MAX_BLOCK = 32              # ops per block
    BLOCK_LINKS = 4             # successors a block remembers (Block.link)

# A block's op keeps in its tag (build_block): bits 0-7 the instructions of
# the block before it, 8-15 those up to and including it (a fused pair
# counts two), 56-62 the block's instructions, and bit 63 on the block's
# last op; for a Jcc marked CC2_LOCAL, what following it changes, all signed
# (a loop goes back): bits 16-31 the op pointer (in bytes), 32-47 RIP (from
# the Jcc's end), 48-55 run_block's count (its post less the target's pre).
# Relative and ready to add, and the end marked in the ops, so that
# run_block's op loop keeps in registers only the Cpu, the op, RIP, the
# code-write count and its own count, and a loop's turn is a few adds.
cdef enum:
    OP_POST_SHIFT = 8
    OP_DPTR_SHIFT = 16
    OP_DRIP_SHIFT = 32
    OP_DACC_SHIFT = 48
    OP_NINSN_SHIFT = 56
    OP_LAST_SHIFT = 63


cdef inline uint64_t op_pre(Insn* d) noexcept nogil:
    return d.tag & 0xFF


cdef inline uint64_t op_post(Insn* d) noexcept nogil:
    return (d.tag >> OP_POST_SHIFT) & 0xFF


cdef inline uint64_t op_block_insns(uint64_t tag) noexcept nogil:
    return (tag >> OP_NINSN_SHIFT) & 0x7F


cdef inline Insn* op_target(Insn* d, uint64_t tag) noexcept nogil:
    return <Insn*>(<char*>d + <int16_t>((tag >> OP_DPTR_SHIFT) & 0xFFFF))


cdef inline uint64_t op_target_rip(uint64_t tag, uint64_t nxt) noexcept nogil:
    """The target's address, nxt being the address after the Jcc (so that
    the op loop needs the Jcc's own address no more once it ran)."""
    return nxt + <uint64_t><int64_t><int16_t>((tag >> OP_DRIP_SHIFT) & 0xFFFF)


cdef inline uint64_t op_target_acc(uint64_t tag) noexcept nogil:
    """What run_block's count (acc) changes by at the branch: the Jcc's
    post less the target's pre."""
    return <uint64_t><int64_t><int8_t>((tag >> OP_DACC_SHIFT) & 0xFF)


cdef int decode_at(Cpu* c, uint64_t lin, uint8_t* p, Insn** dp, uint64_t tag) noexcept nogil:
    """Decode the instruction at linear address lin (host pointer p) into the
    cache slot *dp; an instruction that crosses into the next page is decoded
    into the scratch slot and not cached (the next page may be remapped)."""
    cdef uint8_t buf[16]
    cdef uint8_t* q
    cdef int avail = 4096 - <int>(lin & 0xFFF)
    cdef int rc
    cdef Insn* d = dp[0]
    cdef uint64_t hpa
    d.tag = 0
    if avail >= MAX_INSN:
        rc = decode(c, p, MAX_INSN, d)
    else:
        memcpy(buf, p, avail)
        rc = decode(c, buf, avail, d)
        if rc == DECODE_MORE:
            d = &c.icache[c.icache_mask + 1]     # scratch
            dp[0] = d
            rc = translate(c, (lin + avail) & (0xFFFFFFFFFFFFFFFFULL if c.long64 else 0xFFFFFFFFULL),
                           ACC_FETCH, c.cpl == 3, &q)
            if rc:
                return rc
            memcpy(buf + avail, q, MAX_INSN - avail)
            rc = decode(c, buf, MAX_INSN, d)
            if rc == DECODE_OK:
                d.tag = 0
                return RC_OK
    if rc == DECODE_UD:
        return raise_ud(c)
    if rc == DECODE_GP or rc == DECODE_MORE:
        return raise_gp0(c)
    if d != &c.icache[c.icache_mask + 1]:
        hpa = tlb_slot(c, lin).hpa | (lin & 0xFFF)
        if hpa >= c.ram_size and not hpa_cached(c, hpa):
            # Memory outside RAM and ROM: its writes are not tracked for
            # self-modifying code, so its code is decoded at every fetch.
            return RC_OK
        if avail > d.len:
            fuse(c, d, p + d.len, avail - d.len)
        d.tag = tag
        mark_code_page(c, hpa, d.len)
    return RC_OK


cdef inline Block* block_slot(Cpu* c, uint8_t* p) noexcept nogil:
    """Direct-mapped by the host address, like the decode cache: blocks in
    any 1 MiB of code never evict each other (a hash would pair them up)."""
    return &c.blocks[(<size_t>p) & (BLOCK_ENTRIES - 1)]


cdef inline int is_cond_branch(Insn* d) noexcept nogil:
    """A Jcc, alone or fused, whose handler returns RC_BRANCHED when taken:
    a block goes on past it (the fall-through path), leaving by a side exit
    when it is taken (run_block)."""
    cdef int k
    if (d.flags & INSN_FUSED) or d.fn == h_jcc:
        return 1
    for k in range(16):
        if d.fn == FAST_JCC[k]:
            return 1
    return 0


cdef Block* build_block(Cpu* c, uint64_t lin, uint8_t* p, uint64_t hpa, uint64_t tag) noexcept nogil:
    """Decode a translated block at linear lin (host p, host-physical hpa):
    instructions that keep the flags lazy, up to MAX_BLOCK, ended by a
    branch other than a Jcc, any other instruction (included as the last
    op), the end of the page, or an instruction that does not decode or
    crosses the page (left out: the one-at-a-time path handles it).  A Jcc,
    alone or fused with the compare before it, does not end a block: the
    ops after it are its fall-through path, and run_block leaves by a side
    exit where it is taken.  NULL
    when not even the first instruction fits.  Code outside RAM is not
    translated (its writes are not tracked)."""
    cdef int avail = 4096 - <int>(lin & 0xFFF)
    cdef int off = 0, n = 0, ninsn = 0, rc, k, t
    cdef int64_t end, rel, at
    cdef Insn* ops
    cdef Insn* d
    cdef Block* b
    if hpa >= c.ram_size:
        return NULL
    if (c.dr7 & 0xFF) or c.dbg_pending or c.hdbg:
        return NULL             # [debug] one instruction at a time (core/insn/debug.pxi)
    if c.arena_used + MAX_BLOCK > ARENA_INSNS:
        c.block_epoch += 1          # drops every block: the arena starts over
        c.arena_used = 0
    ops = &c.arena[c.arena_used]
    while n < MAX_BLOCK and off < avail:
        d = &ops[n]
        rc = decode(c, p + off, MAX_INSN if avail - off >= MAX_INSN else avail - off, d)
        if rc != DECODE_OK:
            break
        if avail - off > d.len:
            fuse(c, d, p + off + d.len, avail - off - d.len)
        mark_code_page(c, hpa + <uint64_t>off, d.len)
        n += 1
        off += d.len
        if not (d.flags & INSN_LAZY) or ((d.flags & (INSN_END | INSN_FUSED)) and not is_cond_branch(d)):
            break
    if n == 0:
        return NULL
    # Each op's tag (free in a block's ops, which are not in the decode
    # cache): the instructions before it and up to it (a fused pair counts
    # two), by which run_block counts what retired, the block's count and
    # its end; and for a Jcc whose target is the first byte of one of the
    # block's ops, what following it changes (OP_* above), with CC2_LOCAL
    # (core/decode.pxi).  The block is entered only
    # at its start and only after block_fits checked all its bytes against
    # the CS limit and the IP width, so such a target needs no check of its
    # own and cannot wrap, whatever RIP the block is entered at.  A plain
    # Jcc only in the code's own size (a 66H-prefixed one wraps its target
    # at 16 bits).  A target inside an op (the Jcc of a pair, the middle of
    # an instruction) stays an ordinary branch: a side exit.
    ninsn = 0
    for k in range(n):
        d = &ops[k]
        d.tag = <uint64_t>ninsn
        ninsn += 2 if (d.flags & INSN_FUSED) else 1
        d.tag |= <uint64_t>ninsn << OP_POST_SHIFT
    for k in range(n):
        ops[k].tag |= <uint64_t>ninsn << OP_NINSN_SHIFT
    ops[n - 1].tag |= 1ULL << OP_LAST_SHIFT
    end = 0
    for k in range(n):
        d = &ops[k]
        end += d.len
        if d.flags & INSN_FUSED:
            rel = d.disp
        elif is_cond_branch(d) and d.osz == c.code_size:
            rel = <int64_t>d.imm
        else:
            continue
        rel += end
        if rel < 0 or rel >= off:
            continue
        at = 0
        for t in range(n):
            if at == rel:
                d.cc2 |= CC2_LOCAL
                d.tag |= ((<uint64_t>(<uint16_t>((t - k) * <int>sizeof(Insn))) << OP_DPTR_SHIFT)
                          | (<uint64_t>(<uint16_t>(rel - end)) << OP_DRIP_SHIFT)
                          | (<uint64_t>(<uint8_t>(<int>op_post(d) - <int>op_pre(&ops[t]))) << OP_DACC_SHIFT))
                break
            at += ops[t].len
    spend(c, <uint64_t>n)       # decoding is work: see spend() in state.pxi
    c.arena_used += <uint64_t>n
    c.blocks_built += 1
    b = block_slot(c, p)
    b.tag = tag
    b.ops = ops
    b.last = ops + (n - 1)
    for k in range(BLOCK_LINKS):
        b.link[k].to = NULL
    b.link_next = 0
    b.page = <uint32_t>(hpa >> 12)
    b.page_gen = c.code_gen[hpa >> 12]
    b.epoch = c.block_epoch
    b.n = <uint16_t>n
    b.ninsn = <uint16_t>ninsn
    b.nbytes = <uint16_t>off
    return b


cdef inline uint64_t chain_stamp(Cpu* c) noexcept nogil:
    """What a link between two blocks relies on, in one number: the TLB
    generation (the same RIP gives the same host address, fetch permission
    and mode), the code writes (no block dropped: every change of code_gen
    counts one in every processor, code_page_written) and the block epoch
    (no arena reset, no debug change).  The three only grow, so their sum
    changes whenever one of them does."""
    return c.tlb_gen + c.code_writes + c.block_epoch


cdef inline Block* chained(Cpu* c, Block* prev) noexcept nogil:
    """The block that ran after prev before at this RIP, if the link still
    holds (its slot still has that block, and chain_stamp is unchanged:
    the block was valid when linked and nothing that drops one happened
    since).  NULL otherwise (the loop then looks it up, link_to)."""
    cdef BlockLink* l = &prev.link[0]
    cdef BlockLink* end = l + BLOCK_LINKS
    cdef Block* nb
    while l.rip != c.rip:
        l += 1
        if l == end:
            return NULL
    nb = l.to
    if nb == NULL or l.stamp != chain_stamp(c) or nb.tag != l.tag:
        return NULL
    return nb


cdef inline void link_to(Cpu* c, Block* prev, Block* b) noexcept nogil:
    """Record b (valid, just looked up or built) as prev's successor at the
    current RIP: in the link that already names this RIP (it went stale),
    else in the oldest."""
    cdef int k
    for k in range(BLOCK_LINKS):
        if prev.link[k].rip == c.rip:
            break
    else:
        k = prev.link_next
        prev.link_next = <uint8_t>((k + 1) % BLOCK_LINKS)
    prev.link[k].to = b
    prev.link[k].rip = c.rip
    prev.link[k].tag = b.tag
    prev.link[k].stamp = chain_stamp(c)


cdef inline int block_extent_fits(Cpu* c, Block* b) noexcept nogil:
    """The per-block checks that depend on the block: budget for all its
    instructions and (outside 64-bit mode) all its bytes within the CS
    limit and the IP width."""
    return (c.icount + b.ninsn <= c.icount_limit and (
            c.long64 or c.rip + b.nbytes - 1 <= (c.seg[S_CS].limit if c.seg[S_CS].limit < SIZE_MASK[c.code_size]
                                                 else SIZE_MASK[c.code_size])))


cdef inline int block_fits(Cpu* c, Block* b) noexcept nogil:
    """The per-block checks: no blocking by STI or MOV SS, neither TF nor RF
    (the debug path, core/insn/debug.pxi: while a breakpoint is armed no
    block exists at all, see dbg_changed), and block_extent_fits."""
    return ((c.interruptibility & 3) == 0 and not (c.rflags & (F_TF | F_RF)) and block_extent_fits(c, b))


cdef int run_block(Cpu* c, Block** bp) noexcept nogil:
    """Run the translated block *bp from its first op (c.rip is its
    address), then the blocks chained after it while their links hold; *bp
    is left on the last block run.  The checks that hold for the whole
    block were made by the caller (block_fits, and the fetch or chained):
    budget for all its instructions, no STI/MOV SS blocking, CS limit and
    fetch permission for all its bytes.  Per op only what an op can change
    is looked at: a fault or exit ends the block with c.rip on that op; a
    write that drops decoded code ends it after the writer (the rest may be
    stale).

    Out of line (run_loop calls it through RUN_BLOCK), so that the C
    compiler keeps the op loop's few variables in registers rather than
    sharing them with the rest of run_loop."""
    cdef Block* b = bp[0]
    cdef Block* nb
    cdef Insn* d = b.ops
    cdef uint64_t start = c.rip
    cdef uint64_t rip = start
    cdef uint64_t writes = c.code_writes
    cdef uint64_t gen = c.tlb_gen
    cdef uint64_t smask = SIZE_MASK[c.code_size]   # a mode change ends the chain (TLB generation)
    cdef uint64_t nxt
    # Instructions retired in this call and not yet added to c.icount, less
    # op_pre of the op d: acc + op_pre(d) is the count when d is about to
    # run.  Kept here, in a register, until the block stops: the ops before
    # the last read neither the count nor the flags (build_block), so the
    # Cpu need not see it sooner.
    cdef uint64_t acc = 0
    cdef uint64_t t
    cdef int rc
    cdef int side
    while True:
        # The ops before the last.  None of them reads the flags (every op
        # but the last keeps them lazy, build_block) or the instruction
        # count (RDTSC, the events, anything that exits ends a block).
        # None of them ends where IP or EIP would wrap (block_fits keeps the
        # whole block below the limit of the IP width), so no mask.  A
        # conditional branch among them that is taken leaves the block
        # there (RC_BRANCHED: a side exit, retired, at its target), or, to
        # one of the block's own ops (RC_LOCAL), goes on at that op.
        side = 0
        while not (d.tag >> OP_LAST_SHIFT):
            nxt = rip + d.len
            c.next_rip = nxt
            rc = d.fn(c, d)
            if rc != RC_OK:
                if rc == RC_LOCAL:
                    # A loop within the block: the target is an op whose
                    # bytes block_fits checked, so only what a lazy op can
                    # change matters: the budget (for the rest of the
                    # block from there at most) and a flush (tlb_gen).  No
                    # code write: a Jcc writes nothing and every op before
                    # it was looked at.
                    t = d.tag
                    acc += op_target_acc(t)
                    rip = op_target_rip(t, nxt)
                    d = op_target(d, t)
                    c.rip = rip
                    if c.tlb_gen != gen or c.icount + acc + op_block_insns(t) > c.icount_limit:
                        c.icount += acc + op_pre(d)
                        return RC_OK
                    continue
                if rc == RC_BRANCHED:
                    side = 1
                    break
                c.icount += acc + op_pre(d)
                return rc
            rip = nxt
            c.rip = nxt
            d += 1
            if c.code_writes != writes:
                c.icount += acc + op_pre(d)
                return RC_OK
        if side:
            c.icount += acc + op_post(d)
            rip = c.next_rip
            c.rip = rip
        else:
            c.icount += acc + op_pre(d)
            c.next_rip = (rip + d.len) & smask
            if not (d.flags & INSN_LAZY) and c.lf_kind != LF_NONE:
                flags_compute(c)
            rc = d.fn(c, d)
            if rc == RC_LOCAL:
                c.next_rip = op_target_rip(d.tag, rip + d.len)
            elif rc != RC_OK and rc != RC_BRANCHED:
                return rc
            c.icount += op_post(d) - op_pre(d)
            rip = c.next_rip
            c.rip = rip
        acc = 0
        # On to the next block without going back to the run loop, when
        # nothing the checks relied on changed: same bytes (no code
        # dropped); no blocking by STI or MOV SS and nothing for the debug
        # path (TF, RF, DR7, a trap pending), which only a last op that is
        # not lazy (STI, MOV SS, POP SS, POPF, IRET, MOV DR) can have
        # changed since block_fits passed for this block; and the next
        # block's own checks (block_extent_fits).  A block that branches
        # back to its own start (a loop of one block) needs only the same
        # translation and mode (TLB generation) besides; any other goes by
        # its link (chained), as the run loop would.
        if c.code_writes != writes:
            return RC_OK
        if not (d.flags & INSN_LAZY) and (dbg_guest_on(c) or (c.interruptibility & 3)):
            return RC_OK
        if rip == start and c.tlb_gen == gen:
            nb = b
        else:
            nb = chained(c, b)
            if nb == NULL:
                return RC_OK
        if not block_extent_fits(c, nb):
            return RC_OK
        if nb != b:
            b = nb
            bp[0] = b
            start = rip
            gen = c.tlb_gen
        d = b.ops


ctypedef int (*run_block_t)(Cpu* c, Block** bp) noexcept nogil
cdef run_block_t RUN_BLOCK = run_block     # a pointer gcc does not see through: never inlined


cdef void vm_leave(Cpu* c) noexcept nogil:
    """Leave non-root operation without a VM exit (the budget ran out, the
    guest halted with nothing to wake it, or the model stopped): save the
    guest state so the hosted hypervisor sees it and VMRESUME continues."""
    if c.vmx.non_root:
        save_guest_state(c)
        events_save_timer(c, 1)     # [events] the next entry goes on counting
        tlb_at_exit(c)
        c.vmx.non_root = 0
        c.vmx.ept = 0


cdef int run_loop(Cpu* c) noexcept nogil:
    """Execute until something needs the host: a VM exit, the end of the
    budget or slice (RC_BUDGET), a halt, a shutdown or an error.  Every trip
    round the loop either retires an instruction, delivers an event or
    performs one REP iteration, and each of those counts toward icount_limit
    (see spend), so the loop reaches its check in bounded time.

    The fetch translation is done once per code page, not per instruction:
    while RIP stays in the linear page last translated for a fetch and no
    TLB flush or mode change happened since (c.tlb_gen, which update_mode
    and every flush advance), the host address of the page is reused.  From
    there the translated block at that address runs (run_block) when the
    checks for its whole extent pass; otherwise, and for code outside RAM,
    one instruction runs from the decode cache with every check of its own
    (the reference path).  The status flags may be lazy (core/flags.pxi)
    only while a handler marked INSN_LAZY runs; they are materialized before
    any other handler, before event delivery or a VM exit, and before the
    loop returns."""
    cdef uint64_t lin, tag
    cdef uint64_t fetch_page = 0
    cdef uint64_t fetch_gen
    cdef uint8_t* fetch_host = NULL
    cdef uint64_t fetch_hpa = 0
    cdef Block* b
    cdef Block* prev = NULL         # the block that just ran to its end, for chaining
    cdef Block* link_from
    cdef uint8_t* p
    cdef Insn* d
    cdef int rc
    cdef uint32_t shadow
    fetch_gen = c.tlb_gen - 1           # not current: the first fetch translates
    while True:
        if c.icount >= c.icount_limit:
            if c.ev_armed:
                # [events] A pending event, a window-exiting control or the
                # HLT state asked for a look at this boundary (the limit was
                # lowered for it: nothing costs while nothing is pending).
                # core/vmx/events.pxi; it also ends the run at the budget.
                prev = NULL
                rc = event_boundary(c)
                if rc == RC_OK:
                    continue
                flags_sync(c)
                if rc == RC_VMEXIT:
                    # As for any exit below: to Python, or on at HOST_RIP.
                    rc = vm_exit(c)
                    if rc == RC_OK:
                        continue
                return rc
            flags_sync(c)
            return RC_BUDGET
        rc = RC_OK
        link_from = NULL
        if prev != NULL:
            # Chaining: the block that followed prev last time, without the
            # fetch and the lookup; or, when that link is missing or stale,
            # link prev to the block the lookup below finds.
            b = chained(c, prev)
            if b == NULL:
                link_from = prev
            elif block_fits(c, b):
                prev = NULL
                rc = RUN_BLOCK(c, &b)
                if rc == RC_OK:
                    prev = b
                    continue
                if rc == RC_REP_PAUSED or rc == RC_TRANSFERRED:
                    continue
            prev = NULL
        # [debug] Traps held for this boundary and instruction breakpoints
        # come before the fetch and its faults (core/insn/debug.pxi).
        if dbg_on(c):
            rc = dbg_boundary(c)
        # Fetch: CS limit outside 64-bit mode, canonical RIP in it (a page
        # already translated is canonical as a whole).
        if rc != RC_OK:
            pass
        elif c.long64:
            lin = c.rip
        elif c.rip > c.seg[S_CS].limit:
            rc = raise_gp0(c)
        else:
            lin = (c.seg[S_CS].base + c.rip) & 0xFFFFFFFFULL
        if rc == RC_OK:
            if (lin >> 12) == fetch_page and c.tlb_gen == fetch_gen:
                p = fetch_host + (lin & 0xFFF)
            elif c.long64 and not is_canonical(lin):
                rc = raise_gp0(c)
            else:
                rc = translate(c, lin, ACC_FETCH, c.cpl == 3, &p)
                if rc == RC_OK:
                    fetch_page = lin >> 12
                    fetch_gen = c.tlb_gen
                    fetch_host = p - (lin & 0xFFF)
                    fetch_hpa = tlb_slot(c, lin).hpa
        if rc == RC_OK and (c.interruptibility & 3) == 0 and fetch_hpa < c.ram_size:
            # The translated block here, if one is valid, and if the checks
            # for its whole extent pass; else one instruction at a time below.
            tag = (<uint64_t>(<size_t>p)) | (<uint64_t>c.code_size << 56) | (1ULL << 63)
            b = block_slot(c, p)
            if b.tag != tag or b.epoch != c.block_epoch or b.page_gen != c.code_gen[fetch_hpa >> 12]:
                b = build_block(c, lin, p, fetch_hpa | (lin & 0xFFF), tag)
            if b != NULL and link_from != NULL:
                link_to(c, link_from, b)
            if b != NULL and block_fits(c, b):
                rc = RUN_BLOCK(c, &b)
                if rc == RC_OK:
                    prev = b
                    continue
                if rc == RC_REP_PAUSED or rc == RC_TRANSFERRED:
                    continue
                p = NULL            # handled below with the other outcomes
        if rc == RC_OK and p != NULL:
            tag = (<uint64_t>(<size_t>p)) | (<uint64_t>c.code_size << 56) | (1ULL << 63)
            d = &c.icache[(<size_t>p) & c.icache_mask]
            if d.tag != tag:
                rc = decode_at(c, lin, p, &d, tag)
            if rc == RC_OK and (d.flags & INSN_FUSED) and (
                    (c.interruptibility & 3) or c.icount + 1 >= c.icount_limit or dbg_on(c) or
                    (not c.long64 and c.rip + d.len - 1 > c.seg[S_CS].limit)):
                d = unfuse(c, d)
            # Every byte of the instruction, not just the first, must lie
            # within the CS limit (SDM Vol. 3 5.3): #GP(0) before it executes.
            if rc == RC_OK and not c.long64 and c.rip + d.len - 1 > c.seg[S_CS].limit:
                rc = raise_gp0(c)
            if rc == RC_OK and dbg_on(c):
                # [debug] TF, RF or breakpoints: the instruction and its
                # debug traps (core/insn/debug.pxi).
                c.next_rip = (c.rip + d.len) & SIZE_MASK[c.code_size]
                if c.hdbg & (HD_TRACE | HD_PBREAK):
                    # [hdbg] physical breakpoints, the trace (core/debugger.pxi)
                    rc = hd_fetched(c, lin, p, d, fetch_hpa | (lin & 0xFFF))
                if rc == RC_OK:
                    rc = dbg_exec(c, d)
                if rc == RC_OK or rc == RC_REP_PAUSED or rc == RC_TRANSFERRED:
                    continue
            elif rc == RC_OK:
                c.next_rip = (c.rip + d.len) & SIZE_MASK[c.code_size]
                # Only STI and MOV SS blocking end after one instruction;
                # blocking by NMI lasts until IRET (events.pxi).
                shadow = c.interruptibility & 3
                if c.lf_kind != LF_NONE and not (d.flags & INSN_LAZY):
                    flags_compute(c)
                rc = d.fn(c, d)
                if rc == RC_BRANCHED:
                    rc = RC_OK
                if rc == RC_OK:
                    c.rip = c.next_rip
                    c.icount += 2 if (d.flags & INSN_FUSED) else 1
                    if shadow:
                        # STI / MOV SS blocking lasts one instruction.
                        c.interruptibility &= ~shadow
                    continue
                if rc == RC_REP_PAUSED or rc == RC_TRANSFERRED:
                    continue
        # Leaving the fast path: everything below sees a plain RFLAGS.
        flags_sync(c)
        if rc == RC_EXCEPTION:
            rc = handle_exception(c)
            if rc == RC_OK:
                continue
        if rc == RC_VMEXIT:
            # To the Python hypervisor (RC_VMEXIT), or on at HOST_RIP for x86
            # host code (docs/architecture.rst, "The VMX layer").
            rc = vm_exit(c)
            if rc == RC_OK:
                continue
            return rc
        if rc == RC_HALTED:
            # HLT retired (h_hlt).  [events] The event check decides at the
            # next boundary whether something wakes the processor or the
            # loop returns RC_HALTED (core/vmx/events.pxi).
            events_arm(c, c.icount)
            continue
        return rc


# Steps between two looks at Python's signals while the guest runs (see
# spend() in core/state.pxi): some milliseconds at the interpreter's speed.
cdef uint64_t SLICE = 1ULL << 20

# Steps a VM entry's first slice runs with the GIL held (VCpuBase._run_inner):
# at the interpreter's speed some microseconds, well inside Python's switch
# interval (5 ms), and more than most guests run between two exits.
cdef uint64_t GIL_HOLD = 2048


cdef int guest_slice(Cpu* c, uint64_t limit) noexcept nogil:
    """Run the entered guest until a VM exit, a halt, an error, the budget
    (``limit`` in steps: icount + events) or the end of a slice.  On
    RC_BUDGET the processor stays in non-root operation: the host looks at
    signals and calls again, or leaves with vm_leave when the budget is
    spent.  On anything but a VM exit the guest state is saved (vm_leave)."""
    cdef uint64_t used = c.icount + c.events
    cdef int rc
    # [events] An exit staged by the VM entry (a fault while delivering the
    # injected event) or a pending MTF exit it injected happens even with
    # no budget left.
    if used >= limit and not c.vmx.x_pending and not c.vmx.mtf_pending:
        return RC_BUDGET
    c.icount_limit = c.icount + ((limit - used if limit - used <= SLICE else SLICE) if used < limit else 0)
    # [events] Anything to look at before the first instruction (a pending
    # event, an open window, the HLT state: core/vmx/events.pxi).
    if events_wanted(c):
        events_arm(c, c.icount)
    rc = run_loop(c)
    c.ev_armed = 0          # the next slice arms again if it must
    if rc == RC_HOSTDBG and c.hd_stop == HDS_TRACE:
        return rc           # [hdbg] the trace buffer is full: Python empties it and goes on
    if rc != RC_VMEXIT and rc != RC_BUDGET:
        vm_leave(c)
    return rc
