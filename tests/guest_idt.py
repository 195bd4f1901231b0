"""A 64-bit guest's interrupt gate, in GNU as source, for the platform tests:
``gate(vector, label)`` points IDT entry ``vector`` (the IDT at 8000H) at
``label`` with the 64-bit code segment 18H of vtx.VM.setup_long_mode, and
``IDTR`` is the LIDT operand (put it after the code)."""


def gate(vector, label):
    return f"""
    lea rax, [rip + {label}]
    mov rdi, 0x8000 + {vector:#x} * 16
    mov word ptr [rdi], ax
    mov word ptr [rdi + 2], 0x18
    mov word ptr [rdi + 4], 0x8E00
    shr rax, 16
    mov word ptr [rdi + 6], ax
    shr rax, 16
    mov dword ptr [rdi + 8], eax
"""


LIDT = "    lidt [rip + idtr]\n"
IDTR = """
idtr: .word 0xFFF
      .quad 0x8000
"""
