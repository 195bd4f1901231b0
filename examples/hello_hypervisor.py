"""A complete hypervisor in about twenty lines: a 64-bit guest prints through
port 0xE9, the Python handlers serve its exits.

    python examples/hello_hypervisor.py
"""

import vtx

vm = vtx.VM(memory=1 << 20)
vm.load(0x1000, vtx.asm("""
    lea rsi, [rip + msg]
1:  lodsb
    test al, al
    jz 2f
    out 0xe9, al
    jmp 1b
2:  hlt
msg: .asciz "Hello from long mode\\n"
""", bits=64, org=0x1000))
vm.add_vcpu()
vm.setup_long_mode(entry=0x1000)


@vm.on(vtx.ExitReason.IO_INSTRUCTION)
def debug_port(vcpu, exit):
    print(chr(exit.value), end="")
    return vtx.RESUME


@vm.on(vtx.ExitReason.EXCEPTION_OR_NMI)
def fault(vcpu, exit):
    print(f"guest fault: {exit}")
    return vtx.STOP


@vm.on(vtx.ExitReason.HLT)
def halt(vcpu, exit):
    return vtx.STOP


print(vm.run().table())
