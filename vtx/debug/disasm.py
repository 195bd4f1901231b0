"""Disassembly for the instruction trace, the step result and the GDB stub.

vtx uses capstone (``pip install vtx[debug]``) when it is installed: a
maintained disassembler that knows every x86 extension the model runs, in
Intel syntax like the rest of vtx.  Without it, GNU objdump (binutils, which
vtx needs anyway for its assembler) disassembles one instruction at a time:
slower, but the same syntax.  When neither is there, the text is the bytes
as ``.byte`` data, so a trace never fails for want of a disassembler.
"""

import functools
import os
import shutil
import subprocess
import tempfile

#: The execution modes, in the order of the core's trace records
#: (core/debugger.pxi, TRACE_*): real-address, virtual-8086, 16- and 32-bit
#: protected mode (compatibility mode included), 64-bit mode.
MODES = ("real", "vm86", "prot16", "prot32", "long64")

_BITS = {"real": 16, "vm86": 16, "prot16": 16, "prot32": 32, "long64": 64}



def _sanitized():
    """Whether this process runs with AddressSanitizer's runtime
    (tools/asan_tests.sh preloads it)."""
    try:
        with open("/proc/self/maps") as f:
            return "libasan" in f.read()
    except OSError:
        return False


def _import_capstone():
    # capstone dlopens its library with RTLD_DEEPBIND when the os module
    # offers the flag, which the sanitizer runtime refuses (it aborts the
    # process).  Under the sanitizer the flag is hidden while capstone loads,
    # so the ASan test run disassembles as every other run does.
    if not (hasattr(os, "RTLD_DEEPBIND") and _sanitized()):
        import capstone
        return capstone
    saved = os.RTLD_DEEPBIND
    del os.RTLD_DEEPBIND
    try:
        import capstone
    finally:
        os.RTLD_DEEPBIND = saved
    return capstone


try:
    _cs = _import_capstone()
except ImportError:         # the optional extra is not installed
    _cs = None


def bits_of(mode):
    """The code size in bits of a mode name of :data:`MODES`."""
    try:
        return _BITS[mode]
    except KeyError:
        raise ValueError(f"a mode is one of {', '.join(MODES)}, not {mode!r}") from None


@functools.lru_cache(maxsize=None)
def _capstone(bits):
    md = _cs.Cs(_cs.CS_ARCH_X86, {16: _cs.CS_MODE_16, 32: _cs.CS_MODE_32, 64: _cs.CS_MODE_64}[bits])
    md.syntax = _cs.CS_OPT_SYNTAX_INTEL
    return md


def backend():
    """Which disassembler is in use: ``"capstone"``, ``"objdump"`` or
    ``"none"``."""
    if _cs is not None:
        return "capstone"
    if shutil.which("objdump"):
        return "objdump"
    return "none"


@functools.lru_cache(maxsize=65536)
def _objdump(code, address, bits):
    machine = {16: "i8086", 32: "i386", 64: "i386:x86-64"}[bits]
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        f.write(code)
        f.flush()
        out = subprocess.run(["objdump", "-D", "-b", "binary", "-m", machine, "-M", "intel",
                              f"--adjust-vma={address:#x}", f.name],
                             capture_output=True, text=True, check=False).stdout
    # The first instruction: its line (address, bytes, text), then the
    # lines that only continue its bytes, up to the next instruction.
    hexes = []
    text = None
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) < 2 or not parts[0].strip().endswith(":"):
            continue
        if len(parts) >= 3:
            if text is not None:
                break
            text = " ".join(parts[2].split())
        if text is not None:
            hexes.extend(parts[1].split())
    if text is None:
        return None
    return text, len(hexes)


def disassemble(code, address=0, mode="long64"):
    """The first instruction of ``code`` (bytes) at ``address`` in ``mode``
    (one of :data:`MODES`): ``(text, length)``, Intel syntax, or
    ``("(bad)", 0)`` when the bytes do not start an instruction."""
    bits = bits_of(mode)
    code = bytes(code)
    if _cs is not None:
        for insn in _capstone(bits).disasm(code, address, 1):
            text = f"{insn.mnemonic} {insn.op_str}".strip()
            return text, insn.size
        return "(bad)", 0
    if shutil.which("objdump"):
        r = _objdump(code[:15], address, bits)
        if r is not None and r[0] != "(bad)":
            return r
        return "(bad)", 0
    return ".byte " + ", ".join(f"{b:#04x}" for b in code), len(code)
