"""A GDB remote-serial-protocol stub for a :class:`vtx.VM`.

``vm.gdb_serve(port)`` listens on a TCP port for one gdb (``target remote
:port``) and serves it until gdb detaches or kills.  What gdb sees:

* the architecture of the vCPU's mode when gdb connects, in a target
  description (``qXfer:features:read``): ``i386:x86-64`` with the 64-bit
  registers in 64-bit mode, ``i386`` in protected mode, ``i8086`` (the same
  32-bit register file, code disassembled as 16-bit) in real and
  virtual-8086 mode.  gdb reads it once: reconnect after the guest changed
  mode;
* addresses are linear (CS base + IP for code) and go through the guest's
  paging; an unmapped page answers ``E14`` (EFAULT);
* software breakpoints (``Z0``) and hardware ones (``Z1``) are execute
  breakpoints of the host debugger: guest memory is never patched, so gdb
  reads the original bytes; ``Z2``/``Z3``/``Z4`` are write, read and access
  watchpoints;
* threads are vCPUs (thread id = vCPU index + 1); ``s`` steps the selected
  vCPU by one instruction (:meth:`vtx.VCpu.step`), ``c`` runs the VM
  (:meth:`vtx.VM.run`, exits going to their handlers) until a breakpoint,
  a watchpoint, a handler's STOP, a halt, or Ctrl-C from gdb.

The protocol is described in the GDB manual, appendix "GDB Remote Serial
Protocol"; this file follows it, with the acknowledgements (``+``) until gdb
asks for ``QStartNoAckMode``.
"""

import select
import socket

from ..errors import VtxError
from .debugger import mode_of

_SIGINT = 2
_SIGTRAP = 5

# The registers of gdb's i386 and amd64 target descriptions, in gdb's order
# (feature "org.gnu.gdb.i386.core", then "org.gnu.gdb.i386.sse"): name, size
# in bytes, tdesc type, the vCPU attribute (None: read as 0, writes ignored).
_SEGS = [(s, 4, "int32", s) for s in ("cs", "ss", "ds", "es", "fs", "gs")]
_X87 = ([(f"st{i}", 10, "i387_ext", f"st{i}") for i in range(8)] +
        [("fctrl", 4, "int", "fcw"), ("fstat", 4, "int", "fsw"), ("ftag", 4, "int", "ftw"),
         ("fiseg", 4, "int", None), ("fioff", 4, "int", None), ("foseg", 4, "int", None),
         ("fooff", 4, "int", None), ("fop", 4, "int", None)])
_CORE64 = ([(r, 8, "int64", r) for r in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi")] +
           [("rbp", 8, "data_ptr", "rbp"), ("rsp", 8, "data_ptr", "rsp")] +
           [(f"r{i}", 8, "int64", f"r{i}") for i in range(8, 16)] +
           [("rip", 8, "code_ptr", "rip"), ("eflags", 4, "int32", "rflags")] + _SEGS + _X87)
_SSE64 = [(f"xmm{i}", 16, "uint128", f"xmm{i}") for i in range(16)] + [("mxcsr", 4, "int", "mxcsr")]
_CORE32 = ([(r, 4, "int32", r) for r in ("eax", "ecx", "edx", "ebx")] +
           [("esp", 4, "data_ptr", "esp"), ("ebp", 4, "data_ptr", "ebp"), ("esi", 4, "int32", "esi"),
            ("edi", 4, "int32", "edi"), ("eip", 4, "code_ptr", "eip"), ("eflags", 4, "int32", "rflags")] +
           _SEGS + _X87)
_SSE32 = [(f"xmm{i}", 16, "uint128", f"xmm{i}") for i in range(8)] + [("mxcsr", 4, "int", "mxcsr")]


def _target_xml(arch, core, sse):
    def regs(rows):
        return "".join(f'<reg name="{n}" bitsize="{8 * size}" type="{t}"/>' for n, size, t, _a in rows)
    return ('<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd">'
            f'<target version="1.0"><architecture>{arch}</architecture>'
            f'<feature name="org.gnu.gdb.i386.core">{regs(core)}</feature>'
            f'<feature name="org.gnu.gdb.i386.sse">{regs(sse)}</feature></target>')


def _escape_binary(data):
    """Undo the escaping of an X packet's binary data (0x7d, then the byte
    XOR 0x20)."""
    out = bytearray()
    it = iter(data)
    for b in it:
        if b == 0x7D:
            out.append(next(it) ^ 0x20)
        else:
            out.append(b)
    return bytes(out)


class GdbServer:
    """One gdb connection to ``vm`` on ``host:port`` (``port=0``: any free
    port, see :attr:`port`).  :meth:`serve` accepts gdb and serves it.
    ``run(max_instructions)`` runs the guest for gdb's continue and returns
    why it stopped (default: :meth:`vtx.VM.run`'s ``stop``)."""

    #: Instructions of a continue between two looks for Ctrl-C from gdb.
    SLICE = 100_000

    def __init__(self, vm, port=1234, host="127.0.0.1", run=None):
        self.vm = vm
        self._run = run if run is not None else (lambda n: vm.run(max_instructions=n).stop)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, port))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        self.conn = None
        self._buf = b""
        self._ack = True
        self._thread = 0             # the vCPU index that g/p/m/s use (Hg/Hc)
        self._points = {}            # (type, addr, length) -> Breakpoint or Watchpoint
        self._xml = None
        self._regs = None
        self._interrupted = False
        #: Exceptions raised while gdb had the guest run (an exit handler that
        #: raised, an unhandled exit): gdb saw a stop (SIGTRAP) for each.
        self.errors = []

    # --- the connection -----------------------------------------------------------

    def serve(self):
        """Accept one gdb and serve it until it detaches, kills, or closes
        the connection; the breakpoints gdb set are removed at the end."""
        self.conn, _addr = self.listener.accept()
        self.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.listener.close()
        try:
            while True:
                pkt = self._packet()
                if pkt is None:
                    break
                try:
                    reply = self._handle(pkt)
                except (ValueError, IndexError, KeyError, TypeError):
                    reply = "E01"           # a malformed packet
                except VtxError as e:
                    # The run gdb asked for ended in an error: gdb sees the
                    # guest stopped where it is; the error is kept.
                    self.errors.append(e)
                    reply = self._stop_reply(_SIGTRAP)
                if reply is _CLOSE:
                    break
                if reply is not None:
                    self._send(reply)
        finally:
            for p in list(self._points.values()):
                self._remove(p)
            self._points.clear()
            self.conn.close()

    def _recv(self):
        data = self.conn.recv(65536)
        if not data:
            raise ConnectionError("gdb closed the connection")
        self._buf += data

    def _packet(self):
        """The next packet's payload (str), or None when gdb is gone; a
        Ctrl-C (0x03) outside a packet is the packet "\\x03"."""
        try:
            while True:
                while self._buf[:1] in (b"+", b"-"):
                    self._buf = self._buf[1:]
                if self._buf[:1] == b"\x03":
                    self._buf = self._buf[1:]
                    return "\x03"
                start = self._buf.find(b"$")
                if start >= 0:
                    end = self._buf.find(b"#", start)
                    if end >= 0 and len(self._buf) >= end + 3:
                        payload = self._buf[start + 1:end]
                        self._buf = self._buf[end + 3:]
                        if self._ack:
                            self.conn.sendall(b"+")
                        return payload.decode("latin-1")
                self._recv()
        except (ConnectionError, OSError):
            return None

    def _send(self, payload):
        data = payload.encode("latin-1")
        frame = b"$" + data + b"#" + f"{sum(data) & 0xFF:02x}".encode()
        self.conn.sendall(frame)
        if self._ack:
            # gdb acknowledges each packet; a '-' asks for it again.
            while True:
                while not self._buf:
                    self._recv()
                c, self._buf = self._buf[:1], self._buf[1:]
                if c == b"+":
                    return
                if c == b"-":
                    self.conn.sendall(frame)
                elif c == b"\x03":
                    self._interrupted = True

    def _pending_interrupt(self):
        """Whether gdb sent Ctrl-C (looked at without blocking)."""
        if self._interrupted:
            return True
        try:
            while select.select([self.conn], [], [], 0)[0]:
                data = self.conn.recv(65536)
                if not data:
                    return True
                self._buf += data
        except OSError:
            return True
        if b"\x03" in self._buf:
            self._buf = self._buf.replace(b"\x03", b"", 1)
            return True
        return False

    # --- the packets --------------------------------------------------------------------

    @property
    def vcpu(self):
        return self.vm.vcpus[self._thread]

    def _layout(self):
        if self._regs is None:
            mode = mode_of(self.vcpu)
            if mode == "long64":
                self._xml = _target_xml("i386:x86-64", _CORE64, _SSE64)
                self._regs = _CORE64 + _SSE64
            else:
                arch = "i8086" if mode in ("real", "vm86") else "i386"
                self._xml = _target_xml(arch, _CORE32, _SSE32)
                self._regs = _CORE32 + _SSE32
        return self._regs

    def _handle(self, pkt):
        if pkt == "\x03":
            return self._stop_reply(_SIGINT)
        cmd = pkt[:1]
        if pkt.startswith("qSupported"):
            return ("PacketSize=20000;qXfer:features:read+;QStartNoAckMode+;swbreak+;hwbreak+;"
                    "vContSupported+")
        if pkt == "QStartNoAckMode":
            self._send("OK")
            self._ack = False
            return None
        if pkt.startswith("qXfer:features:read:target.xml:"):
            self._layout()
            off, length = (int(x, 16) for x in pkt.split(":")[4].split(","))
            chunk = self._xml[off:off + length]
            return ("l" if off + length >= len(self._xml) else "m") + chunk
        if pkt.startswith("qXfer:"):
            return "E00"
        if pkt == "?":
            return self._stop_reply(_SIGTRAP)
        if pkt == "qAttached":
            return "1"
        if pkt == "qC":
            return f"QC{self._thread + 1:x}"
        if pkt == "qfThreadInfo":
            return "m" + ",".join(f"{v.index + 1:x}" for v in self.vm.vcpus)
        if pkt == "qsThreadInfo":
            return "l"
        if pkt.startswith("qThreadExtraInfo,"):
            i = int(pkt.split(",")[1], 16) - 1
            return f"vCPU {i} ({mode_of(self.vm.vcpus[i])})".encode().hex()
        if cmd == "H":
            return self._select_thread(pkt[2:])
        if cmd == "T":
            return "OK" if 0 < int(pkt[1:], 16) <= len(self.vm.vcpus) else "E01"
        if cmd == "g":
            return "".join(self._reg_hex(r) for r in self._layout())
        if cmd == "G":
            return self._write_all(pkt[1:])
        if cmd == "p":
            regs = self._layout()
            n = int(pkt[1:], 16)
            return self._reg_hex(regs[n]) if n < len(regs) else "E00"
        if cmd == "P":
            n, value = pkt[1:].split("=")
            regs = self._layout()
            n = int(n, 16)
            if n >= len(regs):
                return "E00"
            self._reg_set(regs[n], bytes.fromhex(value))
            return "OK"
        if cmd == "m":
            addr, length = (int(x, 16) for x in pkt[1:].split(","))
            if length > _MAX_MEMORY:
                return "E01"            # more than a reply packet holds (PacketSize)
            try:
                return self.vm.read_linear(addr, length, vcpu=self.vcpu).hex()
            except Exception:
                return "E14"
        if cmd in ("M", "X"):
            head, _, data = pkt[1:].partition(":")
            addr, length = (int(x, 16) for x in head.split(","))
            raw = bytes.fromhex(data) if cmd == "M" else _escape_binary(data.encode("latin-1"))
            if length > len(raw):
                return "E01"
            try:
                if length:
                    self.vm.write_linear(addr, raw[:length], vcpu=self.vcpu)
            except Exception:
                return "E14"
            return "OK"
        if cmd in ("Z", "z"):
            return self._point(cmd == "Z", pkt[1:])
        if cmd == "s":
            return self._step()
        if cmd == "c":
            return self._continue()
        if pkt == "vCont?":
            return "vCont;c;C;s;S"
        if pkt.startswith("vCont;"):
            return self._vcont(pkt[6:])
        if pkt.startswith("vKill") or cmd == "k":
            return _CLOSE
        if cmd == "D":
            self._send("OK")
            return _CLOSE
        return ""           # not supported: the empty reply

    def _select_thread(self, tid):
        if tid in ("0", "-1"):
            return "OK"
        i = int(tid, 16) - 1
        if not 0 <= i < len(self.vm.vcpus):
            return "E01"
        self._thread = i
        return "OK"

    def _stop_reply(self, sig, hit=None):
        extra = ""
        if hit is not None and hit.kind == "watchpoint":
            kind = {"write": "watch", "read": "rwatch", "access": "awatch"}[hit.watchpoint.kind]
            extra = f"{kind}:{hit.watchpoint.address:x};"
        elif hit is not None and hit.kind == "breakpoint":
            extra = "swbreak:;"
        return f"T{sig:02x}{extra}thread:{self._thread + 1:x};"

    # --- registers -------------------------------------------------------------------------

    def _reg_hex(self, reg):
        _name, size, _t, attr = reg
        value = getattr(self.vcpu, attr) if attr else 0
        if attr in ("cs", "ss", "ds", "es", "fs", "gs"):
            value = value.selector
        return (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little").hex()

    def _reg_set(self, reg, raw):
        _name, size, _t, attr = reg
        if attr is None or attr in ("cs", "ss", "ds", "es", "fs", "gs"):
            return                  # a selector alone would leave the hidden part stale: ignored
        value = int.from_bytes(raw[:size], "little")
        v = self.vcpu
        if attr == "rflags":
            value = (v.rflags & ~0xFFFFFFFF) | value | 2
        if value != getattr(v, attr):
            setattr(v, attr, value)

    def _write_all(self, hexdata):
        raw = bytes.fromhex(hexdata)
        off = 0
        for reg in self._layout():
            size = reg[1]
            if off + size > len(raw):
                break
            self._reg_set(reg, raw[off:off + size])
            off += size
        return "OK"

    # --- breakpoints and execution ----------------------------------------------------------

    def _point(self, insert, args):
        kind, addr, length = args.split(";")[0].split(",")
        kind, addr, length = int(kind), int(addr, 16), int(length, 16)
        key = (kind, addr, length)
        if kind in (0, 1):
            if insert and key not in self._points:
                self._points[key] = self.vm.add_breakpoint(addr)
        elif kind in (2, 3, 4):
            if insert and key not in self._points:
                what = {2: "write", 3: "read", 4: "access"}[kind]
                self._points[key] = self.vm.add_watchpoint(addr, max(length, 1), what)
        else:
            return ""
        if not insert and key in self._points:
            self._remove(self._points.pop(key))
        return "OK"

    def _remove(self, p):
        if hasattr(p, "kind"):
            self.vm.remove_watchpoint(p)
        else:
            self.vm.remove_breakpoint(p)

    def _step(self):
        r = self.vcpu.step()
        if r.stop == "shutdown":
            return "W00"
        return self._stop_reply(_SIGTRAP, r.hit)

    def _continue(self):
        self._interrupted = False
        while True:
            stop = self._run(self.SLICE)
            if stop != "budget":
                hit = self.vm.last_hit
                if hit is not None:
                    self._thread = hit.vcpu.index
                if stop == "shutdown":
                    return "W00"
                return self._stop_reply(_SIGTRAP, hit)
            if self._pending_interrupt():
                return self._stop_reply(_SIGINT)

    def _vcont(self, actions):
        for action in actions.split(";"):
            op, _, tid = action.partition(":")
            if tid and tid not in ("-1", "0"):
                self._select_thread(tid)
            if op[:1] in ("s", "S"):
                return self._step()
            if op[:1] in ("c", "C"):
                return self._continue()
        return "E01"


_CLOSE = object()

# The most bytes an m packet may ask for: its hex fits the PacketSize that
# qSupported announces (20000 bytes).
_MAX_MEMORY = 0x2000
