"""vtx/debug/disasm.py: capstone when installed, GNU objdump without it."""

import shutil

import pytest

from vtx.debug import disasm


def test_capstone_in_every_mode():
    if disasm._cs is None:
        pytest.skip("capstone is not installed (pip install vtx[debug])")
    assert disasm.backend() == "capstone"
    assert disasm.disassemble(bytes.fromhex("4889c8"), 0x1000, "long64") == ("mov rax, rcx", 3)
    assert disasm.disassemble(bytes.fromhex("89c8"), 0x1000, "prot32") == ("mov eax, ecx", 2)
    assert disasm.disassemble(bytes.fromhex("89c8"), 0x1000, "real") == ("mov ax, cx", 2)
    assert disasm.disassemble(bytes.fromhex("ebfe"), 0x1000, "long64") == ("jmp 0x1000", 2)
    assert disasm.disassemble(b"\x0f", 0, "long64") == ("(bad)", 0)


@pytest.mark.skipif(shutil.which("objdump") is None, reason="objdump is not installed")
def test_objdump_fallback(monkeypatch):
    monkeypatch.setattr(disasm, "_cs", None)
    assert disasm.backend() == "objdump"
    assert disasm.disassemble(bytes.fromhex("4889c8"), 0x1000, "long64") == ("mov rax,rcx", 3)
    assert disasm.disassemble(bytes.fromhex("89c8"), 0x1000, "vm86") == ("mov ax,cx", 2)
    assert disasm.disassemble(bytes.fromhex("ebfe90"), 0x2000, "prot32")[1] == 2


def test_no_disassembler_shows_the_bytes(monkeypatch):
    monkeypatch.setattr(disasm, "_cs", None)
    monkeypatch.setattr(disasm.shutil, "which", lambda name: None)
    assert disasm.backend() == "none"
    assert disasm.disassemble(b"\x90\xc3", 0, "long64") == (".byte 0x90, 0xc3", 2)


def test_bad_mode():
    with pytest.raises(ValueError):
        disasm.disassemble(b"\x90", 0, "protected")
