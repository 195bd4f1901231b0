"""Tests for vtx.asm: exact bytes, load address, layout, errors, caching.

These tests import only vtx.asm and vtx.errors, never the Cython core.
"""
import importlib
import shutil
import struct
import uuid

import pytest

from vtx.asm import asm, asm_file
from vtx.errors import AsmError, AssemblerNotFound

# The module itself, even if the package re-exports the function as ``vtx.asm``.
asm_module = importlib.import_module("vtx.asm")

needs_binutils = pytest.mark.skipif(
    shutil.which("as") is None and shutil.which("x86_64-linux-gnu-as") is None,
    reason="GNU as (binutils) is not installed",
)


def unique(source):
    """Make a source text no other test has assembled, so the cache cannot answer."""
    return f"# {uuid.uuid4().hex}\n{source}"


# --- exact encodings ---------------------------------------------------------


@needs_binutils
@pytest.mark.parametrize(
    "source, bits, expected",
    [
        ("nop; hlt", 16, b"\x90\xf4"),
        ("nop\nhlt", 32, b"\x90\xf4"),
        ("mov ax, 1", 16, b"\xb8\x01\x00"),
        ("mov eax, 1", 32, b"\xb8\x01\x00\x00\x00"),
        ("mov rax, 0x1122334455667788", 64, b"\x48\xb8\x88\x77\x66\x55\x44\x33\x22\x11"),
        # The operand-size prefix 0x66 selects the other operand size.
        ("mov eax, 1", 16, b"\x66\xb8\x01\x00\x00\x00"),
        ("mov ax, 1", 32, b"\x66\xb8\x01\x00"),
        ("mov ax, 1", 64, b"\x66\xb8\x01\x00"),
        ("out dx, al\nin al, 0x60", 16, b"\xee\xe4\x60"),
        ("cpuid", 64, b"\x0f\xa2"),
        ("vmcall", 64, b"\x0f\x01\xc1"),
        ("push rbx\npop rbx", 64, b"\x53\x5b"),
        ("xor eax, eax", 64, b"\x31\xc0"),
        (".byte 1, 2\n.word 0x0403\n.long 0x08070605", 32, bytes(range(1, 9))),
    ],
)
def test_exact_bytes(source, bits, expected):
    assert asm(source, bits=bits) == expected


@needs_binutils
def test_default_mode_is_16_bit():
    assert asm("mov ax, 1") == b"\xb8\x01\x00"


@needs_binutils
def test_mode_switch_inside_source():
    code = asm("mov ax, 1\n.code32\nmov ax, 1", bits=16)
    assert code == b"\xb8\x01\x00" + b"\x66\xb8\x01\x00"


@needs_binutils
def test_semicolon_and_comments():
    assert asm("nop ; nop  # two of them\n/* block */ hlt", bits=32) == b"\x90\x90\xf4"


@needs_binutils
def test_empty_source_gives_empty_bytes():
    assert asm("") == b""
    assert asm("\n\n   \n", bits=64) == b""
    assert asm("# only a comment\n", bits=32) == b""


@needs_binutils
def test_source_without_trailing_newline_and_with_crlf():
    assert asm("nop\r\nhlt") == b"\x90\xf4"


# --- load address ------------------------------------------------------------


@needs_binutils
@pytest.mark.parametrize("org", [0, 0x7C00, 0x1234])
def test_label_as_immediate_is_org_plus_offset_16(org):
    code = asm("mov si, offset msg\nhlt\nmsg: .ascii \"hi\"", bits=16, org=org)
    # be imm16, f4, then the data at offset 4.
    assert code[0] == 0xBE and code[3] == 0xF4 and code[4:] == b"hi"
    assert struct.unpack_from("<H", code, 1)[0] == org + 4


@needs_binutils
def test_label_as_immediate_32():
    code = asm("mov esi, offset msg\nmsg: .byte 0", bits=32, org=0x100000)
    assert code == b"\xbe" + struct.pack("<I", 0x100005) + b"\x00"


@needs_binutils
def test_absolute_memory_operand_64():
    # [msg] without rip is an absolute address (ModRM with a SIB, no base).
    code = asm("lea rsi, [msg]\nmsg: .byte 0", bits=64, org=0x200000)
    assert code[:4] == b"\x48\x8d\x34\x25"
    assert struct.unpack_from("<i", code, 4)[0] == 0x200000 + 8


@needs_binutils
def test_rip_relative_does_not_depend_on_org():
    source = "lea rdi, [rip + msg]\nmsg: .byte 0"
    assert asm(source, bits=64, org=0) == asm(source, bits=64, org=0x400000)


@needs_binutils
def test_word_directive_holds_label_address():
    code = asm("here: jmp here\n.word here\n.word there\nthere:", bits=16, org=0x7C00)
    assert code[:2] == b"\xeb\xfe"
    assert struct.unpack_from("<HH", code, 2) == (0x7C00, 0x7C06)


@needs_binutils
def test_org_does_not_change_position_independent_code():
    source = "top: dec cx\njnz top\nhlt"
    assert asm(source, org=0) == asm(source, org=0x8000)


# --- sections -----------------------------------------------------------------


@needs_binutils
def test_data_section_follows_text():
    source = """
        mov ax, offset value
        .data
    value: .word 0xbeef
        .text
        hlt
    """
    code = asm(source, bits=16, org=0x1000)
    # All of .text first (mov ax, imm16; hlt), then .data.
    assert code == b"\xb8" + struct.pack("<H", 0x1000 + 4) + b"\xf4" + b"\xef\xbe"


@needs_binutils
def test_section_order_text_rodata_data_bss():
    source = """
        .data
    d:  .byte 0xdd
        .section .rodata
    r:  .byte 0xcc
        .bss
    b:  .space 2
        .text
        mov eax, offset d
        mov ebx, offset r
        mov ecx, offset b
    """
    org = 0x8000
    code = asm(source, bits=32, org=org)
    assert len(code) == 15 + 1 + 1 + 2
    assert code[15:] == b"\xcc\xdd\x00\x00"
    d, r, b = (struct.unpack_from("<I", code, 1 + 5 * i)[0] for i in range(3))
    assert (r, d, b) == (org + 15, org + 16, org + 17)


@needs_binutils
def test_alignment_in_data_is_absolute():
    code = asm("nop\n.data\n.align 16\nx: .byte 7\n.text\nmov ax, offset x", bits=16, org=0x100)
    assert struct.unpack_from("<H", code, 2)[0] == 0x110
    assert code[0x10] == 7


# --- errors -------------------------------------------------------------------


@needs_binutils
def test_error_reports_caller_line_and_text():
    source = "nop\nmov ax, 1\nfoo eax\nhlt\n"
    with pytest.raises(AsmError) as info:
        asm(source, bits=32)
    err = info.value
    assert err.line == 3
    assert err.text == "foo eax"
    assert err.message == "no such instruction: `foo eax'"
    assert "line 3" in str(err)


@needs_binutils
def test_error_line_counts_a_leading_empty_line():
    with pytest.raises(AsmError) as info:
        asm("\n    nop\n    bogus_insn al\n", bits=16)
    assert info.value.line == 3
    assert info.value.text == "    bogus_insn al"


@needs_binutils
def test_error_on_first_line():
    with pytest.raises(AsmError) as info:
        asm("mov ax,", bits=16)
    assert info.value.line == 1
    assert info.value.text == "mov ax,"


@needs_binutils
def test_several_errors_first_reported_all_listed():
    with pytest.raises(AsmError) as info:
        asm("nop\nfirst_bad\nnop\nsecond_bad\n", bits=64)
    err = info.value
    assert err.line == 2 and err.text == "first_bad"
    assert "first_bad" in err.message and "second_bad" in err.message
    assert "line 4" in err.message
    assert [e[0] for e in err.errors] == [2, 4]


@needs_binutils
def test_bad_operand_for_mode():
    with pytest.raises(AsmError) as info:
        asm("nop\npush rax", bits=32)
    assert info.value.line == 2


@needs_binutils
def test_undefined_symbol_names_line():
    with pytest.raises(AsmError) as info:
        asm("nop\nnop\njmp nowhere\n", bits=32)
    err = info.value
    assert "nowhere" in err.message
    assert err.line == 3 and err.text == "jmp nowhere"


@needs_binutils
def test_undefined_symbol_in_data_directive():
    with pytest.raises(AsmError) as info:
        asm("nop\n.data\n.long missing_label\n", bits=32)
    assert info.value.line == 3
    assert "missing_label" in info.value.message


@needs_binutils
def test_address_beyond_16_bits_is_an_error():
    # The data lands above 64 KiB, so its address does not fit a 16-bit immediate.
    with pytest.raises(AsmError) as info:
        asm("mov si, offset msg\n.data\nmsg: .byte 0", bits=16, org=0xFFFE)
    assert info.value.line == 1
    assert "truncated" in info.value.message


@pytest.mark.parametrize("bits", [0, 8, 15, 128, -16, True, 16.0, "16", None])
def test_bad_bits(bits):
    with pytest.raises(ValueError):
        asm("nop", bits=bits)


@pytest.mark.parametrize("org, bits", [(-1, 16), (-0x1000, 64), (1 << 32, 32), (1 << 64, 64)])
def test_bad_org(org, bits):
    with pytest.raises(ValueError):
        asm("nop", bits=bits, org=org)


def test_source_must_be_text():
    with pytest.raises(TypeError):
        asm(b"nop")


def test_missing_binutils(monkeypatch):
    monkeypatch.setattr(asm_module.shutil, "which", lambda name: None)
    with pytest.raises(AssemblerNotFound) as info:
        asm(unique("nop"), bits=16)
    assert "binutils" in str(info.value)


# --- caching ------------------------------------------------------------------


@needs_binutils
def test_same_source_is_assembled_once(monkeypatch):
    source = unique("mov ebx, 0x12345678\nhlt")
    first = asm(source, bits=32, org=0x1000)
    calls = []
    real_run = asm_module.subprocess.run

    def counting_run(*args, **kwargs):
        calls.append(args)
        return real_run(*args, **kwargs)

    monkeypatch.setattr(asm_module.subprocess, "run", counting_run)
    assert asm(source, bits=32, org=0x1000) == first
    assert calls == []
    # A different mode or load address is a different image.
    asm(source, bits=16, org=0x1000)
    assert len(calls) == 2  # as, then ld


@needs_binutils
def test_cache_info_and_clear():
    source = unique("nop")
    asm(source)
    hits = asm.cache_info().hits
    asm(source)
    assert asm.cache_info().hits == hits + 1
    asm.cache_clear()
    assert asm.cache_info().currsize == 0


@needs_binutils
def test_errors_are_not_cached():
    source = unique("nop\nnot_an_instruction")
    for _ in range(2):
        with pytest.raises(AsmError):
            asm(source)


# --- files --------------------------------------------------------------------


@needs_binutils
def test_asm_file_and_include(tmp_path):
    (tmp_path / "inc.s").write_text("hlt\n")
    main = tmp_path / "main.s"
    main.write_text('nop\n.include "inc.s"\n')
    assert asm_file(main, bits=16) == b"\x90\xf4"
    assert asm_file(str(main), bits=32, org=0x500) == b"\x90\xf4"


@needs_binutils
def test_asm_file_error_line(tmp_path):
    path = tmp_path / "bad.s"
    path.write_text("nop\nnop\nwhatever ax\n")
    with pytest.raises(AsmError) as info:
        asm_file(path)
    assert info.value.line == 3 and info.value.text == "whatever ax"


@pytest.mark.parametrize("source,line", [
    ("mov %eax, %ebx", 1),
    ("nop\nadd %rax, 8", 2),
    ("nop; mov %al, [rbx]", 1),           # ";" separates statements in GNU as
    ("lea rax, [%rip + 4]", 1),
])
def test_att_register_syntax_is_an_error(source, line):
    """GNU as in Intel mode accepts %reg and keeps Intel's operand order, so
    AT&T source would assemble silently with its operands reversed."""
    with pytest.raises(AsmError) as ei:
        asm(source, bits=64)
    assert ei.value.line == line and "AT&T" in str(ei.value)


def test_percent_elsewhere_is_not_att():
    """A modulo, a string and a comment may hold '%'; .att_syntax opts out."""
    assert asm('mov eax, 5 % 3\n.ascii "%eax"  # %ebx', bits=32) == bytes.fromhex("b802000000") + b"%eax"
    assert asm(".att_syntax\nmovl %eax, %ebx\n.intel_syntax noprefix", bits=32) == bytes.fromhex("89c3")


@pytest.mark.parametrize("source,line,name", [
    ("mov eax, LEN\n.equ LEN, 5", 1, "LEN"),
    ("nop\nx: push LEN + 4   # a comment\n.set LEN, 5", 2, "LEN"),
    ("mov eax, 1 ; mov ebx, N ; N = 5", 1, "N"),
    ("mov cx, len\nmsg: .ascii \"hi\"\n.equ len, . - msg", 1, "len"),   # the usual string-length idiom
    ("rep movsb\nlock add dword ptr [rbx], K\n.equiv K, 1", 2, "K"),
])
def test_forward_equ_without_offset_is_an_error(source, line, name):
    """Before its .equ, GNU as reads a bare symbol as a memory operand; the
    same line after the .equ is an immediate.  The order of the lines must
    not change the meaning silently."""
    with pytest.raises(AsmError) as ei:
        asm(source, bits=64)
    assert ei.value.line == line
    assert f"'{name}' is defined by a later .equ" in ei.value.message
    assert f"'offset {name}'" in ei.value.message


def test_equ_uses_whose_meaning_does_not_depend_on_order():
    """A definition above the use, offset, brackets, ptr, a branch target and
    a data directive mean the same whatever the order: assembled as GNU as
    does."""
    assert asm(".equ N, 5\nmov eax, N", bits=32) == bytes.fromhex("b805000000")
    assert asm("mov eax, offset N\n.equ N, 5", bits=32) == bytes.fromhex("b805000000")
    assert asm("mov eax, [N]\n.equ N, 5", bits=32) == bytes.fromhex("a105000000")
    assert asm("mov eax, dword ptr N\n.equ N, 5", bits=32) == bytes.fromhex("a105000000")
    assert asm("jmp N\n.equ N, 0x20", bits=32) == bytes.fromhex("e91b000000")
    assert asm(".long N\n.equ N, 5", bits=32) == bytes.fromhex("05000000")
    assert asm("mov eax, lbl\nlbl: .long 1", bits=32) == bytes.fromhex("a10500000001000000")  # a label is memory
    # a use inside a /* */ comment is no use
    assert asm("/* mov eax, N\n */ nop\n.equ N, 5", bits=32) == bytes.fromhex("90")


def test_documented_names_reachable_from_vtx_asm(tmp_path):
    """import vtx makes vtx.asm the function; vtx.asm.asm_file (as the API
    reference names it) once raised AttributeError."""
    import sys
    import vtx
    module = sys.modules["vtx.asm"]          # the module (the attribute vtx.asm is the function)
    src = tmp_path / "g.s"
    src.write_text("nop\nhlt\n")
    assert vtx.asm.asm_file(src, bits=16) == b"\x90\xf4"
    assert module is not vtx.asm
    assert vtx.asm.asm_file is module.asm_file and vtx.asm.Image is module.Image
    assert isinstance(vtx.asm("nop", bits=16, org=0x100), vtx.asm.Image)
