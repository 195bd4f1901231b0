"""vtx/debug/gdbstub.py: the GDB remote stub, driven by the real gdb (in
batch mode with a command file) in 16-, 32- and 64-bit code, and at the
protocol level for what batch mode cannot do (Ctrl-C while running)."""

import os
import shutil
import socket
import subprocess
import threading

import pytest

import vtx

CODE = 0x1000
GDB = shutil.which("gdb")

needs_gdb = pytest.mark.skipif(GDB is None, reason="gdb is not installed")

LOOP = {
    64: ("mov ecx, 5\nxor eax, eax", "top:\nadd eax, 3\nmov [0x5000], eax\ndec ecx\njnz top\nmov ebx, 7\nhlt"),
    32: ("mov ecx, 5\nxor eax, eax", "top:\nadd eax, 3\nmov [0x5000], eax\ndec ecx\njnz top\nmov ebx, 7\nhlt"),
    16: ("mov cx, 5\nxor ax, ax", "top:\nadd ax, 3\nmov [0x5000], ax\ndec cx\njnz top\nmov bx, 7\nhlt"),
}


def machine(bits, vcpus=1):
    head, tail = LOOP[bits]
    vm = vtx.VM(memory=1 << 20)
    vm.load(CODE, vtx.asm(head + "\n" + tail, bits=bits))
    setup = {64: vm.setup_long_mode, 32: vm.setup_protected_mode, 16: vm.setup_real_mode}[bits]
    for i in range(vcpus):
        v = vm.add_vcpu()
        setup(entry=CODE, vcpu=v, **({} if bits == 16 else {"tables": 0xF0000 - 0x10000 * i}))
    vm.on(vtx.ExitReason.HLT)(lambda v, e: vtx.STOP)
    top = CODE + len(vtx.asm(head, bits=bits))
    store = top + len(vtx.asm(tail.split("\n")[1], bits=bits))
    return vm, top, store


def serve(vm):
    """Start vm.gdb_serve on a free port in a thread; returns (thread, port)."""
    ports = []
    ready = threading.Event()
    t = threading.Thread(target=vm.gdb_serve, kwargs={"port": 0, "ready": lambda p: (ports.append(p),
                                                                                        ready.set())})
    t.daemon = True
    t.start()
    assert ready.wait(5)
    return t, ports[0]


def run_gdb(script):
    """Run the real gdb on a command file; without the sanitizer runtime
    that tools/asan_tests.sh preloads into this process (gdb is not ours)."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")}
    out = subprocess.run([GDB, "-nx", "-batch", "-x", str(script)], capture_output=True, text=True,
                         timeout=60, env=env)
    return out.stdout + out.stderr


def gdb(vm, commands, tmp_path):
    t, port = serve(vm)
    script = tmp_path / "cmds.gdb"
    script.write_text("set pagination off\nset confirm off\n"
                      f"target remote 127.0.0.1:{port}\n" + commands + "\ndetach\n")
    out = run_gdb(script)
    t.join(10)
    assert not t.is_alive(), "the stub did not end after detach"
    return out


@needs_gdb
@pytest.mark.parametrize("bits,arch,pc,ax", [(64, "i386:x86-64", "rip", "rax"), (32, "i386", "eip", "eax"),
                                             (16, "i8086", "eip", "eax")])
def test_gdb_break_step_registers_memory_continue(bits, arch, pc, ax, tmp_path):
    vm, top, store = machine(bits)
    out = gdb(vm, f"""
show architecture
print/x ${pc}
break *{store:#x}
continue
print/x ${ax}
stepi
print/x ${pc}
set var ${ax} = 0x100
print/x ${ax}
x/2xb {CODE:#x}
set var *(unsigned char*)0x6000 = 0x42
x/1xb 0x6000
delete
continue
print/x ${ax}
""", tmp_path)
    assert f'currently "{arch}"' in out
    assert "$1 = 0x1000" in out
    assert f"Breakpoint 1, 0x{store:0{16 if bits == 64 else 8}x} in ?? ()" in out
    assert "$2 = 0x3" in out                                 # stopped before the store
    store_len = len(vtx.asm(LOOP[bits][1].split("\n")[2], bits=bits))
    assert f"$3 = {store + store_len:#x}" in out             # stepi: one instruction
    assert "$4 = 0x100" in out
    first = vtx.asm(LOOP[bits][0], bits=bits)
    assert f"0x1000:\t{first[0]:#04x}\t{first[1]:#04x}" in out
    assert "0x6000:\t0x42" in out
    assert "$5 = 0x10c" in out                               # 0x100 + 4 more adds of 3
    v = vm.vcpu
    assert vm.read(0x6000, 1) == b"\x42" and v.rip == CODE + len(vtx.asm("\n".join(LOOP[bits]), bits=bits)) - 1
    assert v.ebx == 7 and vm.read_u16(0x5000) == 0x10c
    assert vm.breakpoints == ()                              # gdb's breakpoints are gone with it


@needs_gdb
def test_gdb_watchpoints(tmp_path):
    vm, top, store = machine(64)
    out = gdb(vm, """
watch *(int*)0x5000
continue
continue
delete
rwatch *(int*)0x5000
continue
print $rip
""", tmp_path)
    assert "Old value = 0\nNew value = 3" in out
    assert "Old value = 3\nNew value = 6" in out
    assert "Hardware read watchpoint 2: *(int*)0x5000" in out
    # Nothing reads 0x5000: the read watchpoint never fires and the guest
    # runs to its HLT (whose handler's STOP gdb sees as SIGTRAP).
    assert "Value = " not in out
    hlt = CODE + len(vtx.asm("\n".join(LOOP[64]), bits=64)) - 1
    assert vm.vcpu.rip == hlt and f"$1 = (void (*)()) {hlt:#x}" in out


@needs_gdb
def test_gdb_unmapped_memory_and_registers(tmp_path):
    # The error ends gdb's command file: it comes last, and gdb's exit ends
    # the session.
    vm, top, store = machine(64)
    out = gdb(vm, """
set var $rbx = 0x1122334455667788
set var $r15 = 0xabcdef
print/x $rbx
info registers eflags
x/1xb 0x200000000
""", tmp_path)
    assert "Cannot access memory at address 0x200000000" in out
    assert "$1 = 0x1122334455667788" in out
    assert (vm.vcpu.rbx, vm.vcpu.r15) == (0x1122334455667788, 0xABCDEF)
    assert "eflags         0x2" in out


@needs_gdb
def test_gdb_threads_are_vcpus(tmp_path):
    vm, top, store = machine(64, vcpus=2)
    vm.vcpus[1].rip = top
    out = gdb(vm, """
info threads
thread 2
print/x $rip
stepi
print/x $rip
thread 1
print/x $rip
""", tmp_path)
    assert "Thread 2" in out
    assert f"$1 = {top:#x}" in out and f"$2 = {top + 3:#x}" in out and "$3 = 0x1000" in out
    assert vm.vcpus[1].rip == top + 3 and vm.vcpus[0].rip == CODE


# --- the protocol, without gdb ---------------------------------------------------------------------


class Client:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, payload):
        data = payload.encode("latin-1")
        self.s.sendall(b"$" + data + b"#" + f"{sum(data) & 0xFF:02x}".encode())
        return self.reply()

    def reply(self):
        while True:
            while self.buf[:1] == b"+":
                self.buf = self.buf[1:]
            if b"#" in self.buf and len(self.buf) >= self.buf.index(b"#") + 3:
                start, end = self.buf.index(b"$"), self.buf.index(b"#")
                payload = self.buf[start + 1:end].decode("latin-1")
                assert int(self.buf[end + 1:end + 3], 16) == sum(self.buf[start + 1:end]) & 0xFF
                self.buf = self.buf[end + 3:]
                self.s.sendall(b"+")
                return payload
            self.buf += self.s.recv(65536)


def test_protocol_ctrl_c_interrupts_a_running_guest():
    vm = vtx.VM(memory=1 << 20)
    vm.load(CODE, vtx.asm("top: inc rax\njmp top", bits=64))
    vm.add_vcpu()
    vm.setup_long_mode(entry=CODE)
    t, port = serve(vm)
    c = Client(port)
    assert "qXfer:features:read+" in c.send("qSupported:multiprocess+")
    assert c.send("?") == "T05thread:1;"
    c.s.sendall(b"$c#63")
    import time
    time.sleep(0.3)
    c.s.sendall(b"\x03")
    assert c.reply() == "T02thread:1;"
    assert vm.vcpu.rax > 1000
    assert vm.vcpu.rip in (CODE, CODE + 3)
    c.send("D")
    t.join(5)
    assert not t.is_alive()


def test_protocol_reports_a_failing_handler_as_a_stop():
    vm = vtx.VM(memory=1 << 20)
    vm.load(CODE, vtx.asm("nop\nout 0x80, al\nhlt", bits=64))
    vm.add_vcpu()
    vm.setup_long_mode(entry=CODE)
    t, port = serve(vm)
    c = Client(port)
    assert c.send("c") == "T05thread:1;"                 # no handler for the OUT exit
    assert vm.vcpu.rip == CODE + 1
    c.send("D")
    t.join(5)
    assert not t.is_alive()


def test_protocol_registers_memory_and_target_description():
    vm, top, store = machine(32, vcpus=2)
    t, port = serve(vm)
    c = Client(port)
    xml = c.send("qXfer:features:read:target.xml:0,fffff")
    assert xml.startswith("l<?xml") and "<architecture>i386</architecture>" in xml
    assert c.send("qfThreadInfo") == "m1,2" and c.send("qsThreadInfo") == "l"
    g = c.send("g")
    # eax ecx edx ebx esp ebp esi edi eip eflags cs ...: eip is the 9th 32-bit register.
    assert g[8 * 8:9 * 8] == "00100000" and g[9 * 8:10 * 8] == "02000000" and g[10 * 8:11 * 8] == "08000000"
    assert c.send("P0=78563412") == "OK" and vm.vcpu.eax == 0x12345678
    assert c.send("p0") == "78563412"
    # G writes the whole file back: ebx (the 4th register) and eip changed,
    # cs (a selector alone) ignored.
    g2 = g[:3 * 8] + "efbeadde" + g[4 * 8:8 * 8] + "00200000" + g[9 * 8:10 * 8] + "10000000" + g[11 * 8:]
    assert c.send("G" + g2) == "OK"
    assert (vm.vcpu.ebx, vm.vcpu.eip, vm.vcpu.cs.selector, vm.vcpu.eax) == (0xDEADBEEF, 0x2000, 8, 0)
    assert c.send("P8=00100000") == "OK" and vm.vcpu.eip == CODE
    assert c.send(f"m{CODE:x},2") == vtx.asm(LOOP[32][0], bits=32)[:2].hex()
    assert c.send("M7000,2:abcd") == "OK" and vm.read(0x7000, 2) == b"\xab\xcd"
    assert c.send("X7002,2:\x7d\x5d\x01") == "OK" and vm.read(0x7002, 2) == b"\x7d\x01"
    assert c.send("mf0000000,1") == "E14"          # no memory there
    assert c.send(f"Z0,{store:x},1") == "OK" and len(vm.breakpoints) == 1
    assert c.send("c") == "T05swbreak:;thread:1;"
    assert vm.vcpu.rip == store
    assert c.send(f"z0,{store:x},1") == "OK" and vm.breakpoints == ()
    assert c.send("Hg2") == "OK" and c.send("qC") == "QC2"
    assert c.send("Z2,5000,4") == "OK"
    assert c.send("vCont;s:2") == "T05thread:2;"
    assert c.send("vCont;c") == "T05watch:5000;thread:1;"
    assert c.send("vMustReplyEmpty") == ""
    assert c.send("mzz,1") == "E01" and c.send("Z0,") == "E01" and c.send("p999") == "E00"
    c.s.sendall(b"$k#6b")
    t.join(5)
    assert not t.is_alive() and vm.watchpoints == ()


@needs_gdb
def test_gdb_on_a_pc_keeps_its_devices_running(tmp_path):
    # PcMachine.gdb_serve continues through the platform's run loop: the PIT
    # interrupt arrives while gdb continues, and the handler it runs hits
    # the breakpoint.
    from vtx.pc import PcMachine
    from guest_idt import IDTR, LIDT, gate
    m = PcMachine(memory=4 << 20)
    src = gate(0x20, "tick") + LIDT + """
    mov al, 0x11
    out 0x20, al
    mov al, 0x20
    out 0x21, al
    mov al, 4
    out 0x21, al
    mov al, 1
    out 0x21, al
    mov al, 0xfe
    out 0x21, al
    mov al, 0x34
    out 0x43, al
    mov al, 0
    out 0x40, al
    out 0x40, al
    sti
spin:
    inc r13
    jmp spin
tick:
    inc r12
    mov al, 0x20
    out 0x20, al
    iretq
""" + IDTR
    code = vtx.asm(src, bits=64)
    m.vm.load(0x1000, code)
    m.vm.setup_long_mode(entry=0x1000)
    tick = 0x1000 + code.index(vtx.asm("inc r12\nmov al, 0x20", bits=64))
    ports = []
    ready = threading.Event()
    t = threading.Thread(target=m.gdb_serve, kwargs={"port": 0, "ready": lambda p: (ports.append(p),
                                                                                      ready.set())})
    t.daemon = True
    t.start()
    assert ready.wait(5)
    script = tmp_path / "cmds.gdb"
    script.write_text(f"target remote 127.0.0.1:{ports[0]}\nbreak *{tick:#x}\ncontinue\nprint/x $r12\n"
                      "print $r13 > 1000\ndetach\n")
    out = run_gdb(script)
    t.join(10)
    assert f"Breakpoint 1, 0x{tick:016x} in ?? ()" in out
    assert "$1 = 0x0" in out and "$2 = 1" in out
    assert m.vcpu.rip == tick


def test_protocol_survives_garbage():
    # Bad input from the network ends in an error reply, never in a dead
    # stub: random packets, then a well-formed session goes on.
    import random
    vm, top, store = machine(64)
    t, port = serve(vm)
    c = Client(port)
    rng = random.Random(11)
    alphabet = "mMXgGpPzZHTqQsvc?,:;=0123456789abcdefxyz-\x7d"
    for _ in range(300):
        pkt = rng.choice("mMXpPzZHTqv") + "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))
        if pkt[0] == "v" and pkt.startswith(("vCont", "vKill")):
            continue
        reply = c.send(pkt)
        assert isinstance(reply, str)
    assert c.send("m0,100000") == "E01"
    assert c.send("M1000,4:00") == "E01"
    assert c.send(f"m{CODE:x},1") == vtx.asm(LOOP[64][0], bits=64)[:1].hex()
    c.send("D")
    t.join(5)
    assert not t.is_alive()
