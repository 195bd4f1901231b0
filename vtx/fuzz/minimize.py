"""Shrinking a failing case while the same failure persists.

Streams: delta debugging (Zeller's ddmin) on the code bytes, then one pass
that tries to drop each initial register, segment, memory fill, the IDTR and
the exception bitmap, to make the handler plainer and to lower the budget.
VMCS: drop mutations one at a time (and the pre-run), then the same
handler and budget simplifications.  Root: ddmin on the root program's
bytes, then drop the calls (runs, Python VMX operations) and the memory
fills (exit handler, guest code, VMCS contents) one at a time.  Every candidate runs in a worker
subprocess (pool.Evaluator), so a candidate that crashes or hangs costs a
restart, not the parent.
"""

import copy
import time


class Deadline(Exception):
    """The minimization ran out of time; the best case so far stands."""


def same_failure(signature, outcome):
    """Does an Evaluator outcome show the failure of signature (kind, key)?"""
    kind, key = signature
    status, result, _err = outcome
    if kind in ("crash", "hang"):
        return status == kind and (kind == "hang" or result == key)
    return status == "ok" and any(f["kind"] == kind and f["key"] == key for f in result["findings"])


def ddmin(data, test):
    """A 1-minimal subsequence of data (bytes) for which test holds, given
    that it holds for data: split into n chunks, keep a chunk or drop one
    when the failure survives, else split finer."""
    if test(b""):
        return b""
    n = 2
    while len(data) >= 2:
        size = -(-len(data) // n)
        chunks = [data[i:i + size] for i in range(0, len(data), size)]
        for chunk in chunks:
            if test(chunk):
                data, n = chunk, 2
                break
        else:
            # With two chunks the complements are the chunks: tried already.
            for i in range(len(chunks) if len(chunks) > 2 else 0):
                rest = b"".join(chunks[:i] + chunks[i + 1:])
                if test(rest):
                    data, n = rest, max(n - 1, 2)
                    break
            else:
                if n >= len(data):
                    break
                n = min(len(data), 2 * n)
    return data


def smaller_memory(spec):
    """2 MiB of RAM instead of more (one EPT entry, a shorter reproducer),
    when the code and the memory fills lie low enough."""
    small = 0x200000
    if spec["memory"] <= small or spec.get("code_at_end"):
        return False
    top = max([spec["code_at"] + len(spec["code"]) // 2]
              + [addr + len(data) // 2 for addr, data in spec.get("fill", ())])
    if top > small - 0x8000:             # the system tables go to the last 32 KiB
        return False
    spec["memory"] = small
    if "tables" in spec:
        spec["tables"] = small - 0x8000
    return True


class Minimizer:
    def __init__(self, evaluator, signature, seconds):
        self.ev = evaluator
        self.signature = signature
        self.deadline = time.monotonic() + seconds
        self.tries = 0

    def fails(self, spec):
        if time.monotonic() > self.deadline:
            raise Deadline()
        self.tries += 1
        return same_failure(self.signature, self.ev.run(spec))

    def attempt(self, spec, edit):
        """spec with edit applied if the failure survives it, else spec."""
        cand = copy.deepcopy(spec)
        if edit(cand) is False:
            return spec
        return cand if self.fails(cand) else spec

    def minimize(self, spec):
        best = spec
        try:
            if spec["campaign"] == "vmcs":
                best = self._mutations(best)
            best = self._code(best)
            if spec["campaign"] == "root":
                best = self._root(best)
            else:
                best = self._simplify(best)
        except Deadline:
            pass
        return best

    def _code(self, spec):
        holder = {"spec": spec}

        def test(code):
            cand = copy.deepcopy(holder["spec"])
            cand["code"] = code.hex()
            return self.fails(cand)

        code = bytes.fromhex(spec["code"])
        try:
            small = ddmin(code, test)
        except Deadline:
            return spec
        out = copy.deepcopy(spec)
        out["code"] = small.hex()
        return out

    def _drop_each(self, spec, key, keep=0):
        """Drop the entries of the list spec[key] one at a time while the
        failure persists, keeping at least keep of them."""
        i = 0
        while i < len(spec.get(key, ())) and len(spec[key]) > keep:
            def drop(c, i=i):
                del c[key][i]
            smaller = self.attempt(spec, drop)
            if smaller is spec:
                i += 1
            spec = smaller
        return spec

    def _mutations(self, spec):
        spec = self._drop_each(spec, "mutations")
        if spec.get("prerun"):
            spec = self.attempt(spec, lambda c: c.update(prerun=0))
        return spec

    def _root(self, spec):
        """A root case's calls and fills.  Its budgets live in the run
        calls, so a smaller budget is a dropped or shortened run."""
        spec = self._drop_each(spec, "calls", keep=1)
        for i in reversed(range(len(spec.get("fill", ())))):
            spec = self.attempt(spec, lambda c, i=i: c["fill"].pop(i))
        return spec

    def _simplify(self, spec):
        spec = self._drop_each(spec, "vmwrites")
        spec = self._drop_each(spec, "more")
        for name in list(spec.get("regs", {})):
            spec = self.attempt(spec, lambda c, n=name: c["regs"].pop(n))
        for name in list(spec.get("segs", {})):
            spec = self.attempt(spec, lambda c, n=name: c["segs"].pop(n))
        for i in reversed(range(len(spec.get("fill", ())))):
            spec = self.attempt(spec, lambda c, i=i: c["fill"].pop(i))
        if spec.get("idtr") is not None:
            spec = self.attempt(spec, lambda c: c.pop("idtr"))
        if spec.get("exception_bitmap") is not None:
            spec = self.attempt(spec, lambda c: c.pop("exception_bitmap"))
        for key, plain in (("raise", 0.0), ("nested", 0.0), ("retry", 0.0)):
            if spec["handler"].get(key):
                spec = self.attempt(spec, lambda c, k=key, p=plain: c["handler"].update({k: p}))
        if not spec.get("code_at_end") and spec.get("code_at") != 0x1000 and spec.get("cs") is None:
            spec = self.attempt(spec, lambda c: c.update(code_at=0x1000))
        spec = self.attempt(spec, smaller_memory)
        if self.signature[0] == "hang":
            return spec          # a hang ignores the budget: every halving would cost a timeout
        budget = spec["budget"]
        while budget > 1:
            budget //= 2
            smaller = self.attempt(spec, lambda c, b=budget: c.update(budget=b))
            if smaller is spec:
                break
            spec = smaller
        return spec
