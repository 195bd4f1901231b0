"""The legacy devices together on a vtx.Platform: a guest that programs the
8259A and the 8254 as Linux does, takes timer interrupts in HLT, prints on
the UART and leaves through the debug exit port."""

import vtx
from guest_idt import IDTR, LIDT, gate
from vtx.devices import DebugExit, IrqLine, Pic8259Pair, Pit8254, Uart16550
from vtx.devices.pit import tick_time, ticks
from vtx.platform import Platform

IDT_SETUP = gate(0x20, "handler") + LIDT

GUEST = IDT_SETUP + """
    mov al, 0x11
    out 0x20, al
    mov al, 0x20
    out 0x21, al
    mov al, 4
    out 0x21, al
    mov al, 1
    out 0x21, al
    mov al, 0x11
    out 0xA0, al
    mov al, 0x28
    out 0xA1, al
    mov al, 2
    out 0xA1, al
    mov al, 1
    out 0xA1, al
    mov al, 0xFE
    out 0x21, al
    mov al, 0xFF
    out 0xA1, al
    mov al, 0x34
    out 0x43, al
    mov al, 0xA9
    out 0x40, al
    mov al, 0x04
    out 0x40, al
    rdtsc
    mov r12, rax
    xor ebx, ebx
1:  sti
    hlt
    cmp ebx, 5
    jb 1b
    cli
    mov dx, 0x3F8
    mov al, 'A'
    add al, bl
    out dx, al
    mov al, bl
    out 0xF4, al
    hlt
handler:
    inc ebx
    push rax
    mov al, 0x20
    out 0x20, al
    pop rax
    iretq
""" + IDTR


def test_timer_interrupts_through_pic_and_pit_uart_and_debug_exit():
    vm = vtx.VM(memory=1 << 20)
    vm.load(0x1000, vtx.asm(GUEST, bits=64))
    vm.add_vcpu()
    vm.setup_long_mode(entry=0x1000)
    p = Platform(vm)
    p.pic = p.attach(Pic8259Pair())
    pit = p.attach(Pit8254(IrqLine(p, 0), p.clock))
    uart = p.attach(Uart16550(IrqLine(p, 4), p.clock))
    codes = []

    def on_exit(code):
        codes.append(code)
        p.stopped = f"exit {code}"

    p.attach(DebugExit(on_exit))
    assert p.run(max_instructions=1_000_000) == "exit 11"
    assert codes == [11] and uart.output == bytearray(b"F")
    assert vm.vcpu.rbx == 5 and p.injected == 5
    assert p.pic.irq_in_service() == 0
    # The count was written just before the RDTSC (time = instructions, plus
    # what HLT skipped): the fifth IRQ0 edge comes 1 + 5 * 1193 pulses later.
    written = ticks(vm.vcpu.r12)
    fifth = tick_time(written + 1 + 5 * 1193)
    assert fifth <= p.clock.now_ns() < fifth + 1000
    assert pit.next_deadline() == tick_time(written + 1 + 6 * 1193)
