"""Assemble guest code with GNU as.

Guests in vtx are real x86 machine code. Writing the bytes by hand is tedious
and error-prone, so this module turns Intel-syntax assembly source into the
flat binary image a VM loads into guest memory::

    from vtx.asm import asm

    code = asm('''
        mov dx, 0x3f8
        mov si, offset msg
    next:
        lodsb
        test al, al
        jz done
        out dx, al
        jmp next
    done:
        hlt
    msg:
        .asciz "hello"
    ''', bits=16, org=0x7c00)

The source is Intel syntax without register prefixes (``mov eax, 1``, not
``movl $1, %eax``), in GNU as dialect: labels end with ``:``, ``offset label``
is a label's address as an immediate, data directives are ``.byte``,
``.word``, ``.long``, ``.quad``, ``.ascii``, ``.asciz``, ``.space`` and
``.align``, and ``;`` separates statements on one line. ``#`` starts a
comment. :func:`asm` adds ``.intel_syntax noprefix`` and the ``.code16``,
``.code32`` or ``.code64`` line for the requested mode, so the source should
not repeat them (it may switch mode later with its own ``.code32`` and so on).

How the image is laid out
-------------------------
The assembled object is linked so that its first byte sits at guest address
``org``: every absolute address the code contains (``mov si, offset msg``,
``lea rsi, [msg]`` written without ``rip``, ``.word label``, a far jump's
target) is the address the label has once the returned bytes are loaded at
``org``. The image holds, in this order, the ``.text`` sections, the
``.rodata`` sections, the ``.data`` sections and the ``.bss`` sections (as
zero bytes), each input section at its own alignment, and then any other
allocated section the source creates with ``.section``. Nothing else is added:
no headers, no padding at the end, no entry stub; execution starts wherever
the caller points RIP (normally ``org``).

In 16-bit code absolute addresses are 16 bits wide, so ``org`` plus the
offset of any label used as an address must stay below 64 KiB; in 64-bit code
an absolute ``[label]`` operand is a sign-extended 32-bit displacement, so
such labels must lie below 2 GiB. The linker reports a violation, and
:func:`asm` raises :class:`~vtx.errors.AsmError` for it.

Errors
------
When GNU as or ld rejects the source, :func:`asm` raises
:class:`~vtx.errors.AsmError`. Its ``line`` is the 1-based line number in the
text the caller passed (line 1 is the first line of ``source``; the lines
:func:`asm` prepends are not counted), ``text`` is that line of the source,
and ``message`` is the tool's message, for example
``"no such instruction: `foo eax'"``. When the tools report several errors,
``line`` and ``text`` belong to the first one that names a line, and
``message`` lists all of them. The exception also carries ``errors``, a list
of ``(line, text, message)`` tuples, one per reported error. Warnings do not
stop assembly and are not reported.

Two mistakes that GNU as would accept silently are errors before it runs:
AT&T register syntax (``mov %eax, %ebx`` would assemble as Intel with the
operands reversed), and an instruction operand that names a symbol defined by
a later ``.equ``/``.set``/``=`` without ``offset``, brackets or ``ptr`` (GNU
as reads it as a memory operand before the definition and as an immediate
after it): write ``offset NAME`` for the value, ``[NAME]`` for memory, or
define it first.

If GNU binutils are not installed, :func:`asm` raises
:class:`~vtx.errors.AssemblerNotFound`.

Caching
-------
Results are cached in memory, keyed by the source text, ``bits`` and ``org``
(and, for :func:`asm_file`, the file's directory), so a test suite or a
benchmark that assembles the same guest many times starts the assembler once.
``asm.cache_info()`` and ``asm.cache_clear()`` inspect and empty the cache.
The cache does not watch files pulled in with ``.include`` or ``.incbin``;
call ``asm.cache_clear()`` after changing them.
"""

import functools
import operator
import os
import re
import shutil
import subprocess
import tempfile

from .errors import AsmError, AssemblerNotFound

__all__ = ["asm", "asm_file", "Image"]

#: Seconds each tool (as, then ld) may run before the assembly is abandoned.
TIMEOUT = 60

#: How many distinct (source, bits, org) results the in-memory cache keeps.
CACHE_SIZE = 1024

_VALID_BITS = (16, 32, 64)

# Names to look for on PATH, most specific first: the target-prefixed tools
# are the x86 ones even on a host whose plain `as` targets another machine.
_AS_NAMES = ("x86_64-linux-gnu-as", "as")
_LD_NAMES = ("x86_64-linux-gnu-ld", "ld")

_SOURCE_NAME = "guest.s"
_OBJECT_NAME = "guest.o"
_IMAGE_NAME = "guest.bin"
_SCRIPT_NAME = "guest.ld"

# The linker script: one output section that starts at org and holds code,
# read-only data, data and zeroed bss back to back.
_LINKER_SCRIPT = """\
SECTIONS
{{
  . = {org:#x};
  .text :
  {{
    *(.text .text.*)
    *(.rodata .rodata.*)
    *(.data .data.*)
    *(.bss .bss.* COMMON)
  }}
  /DISCARD/ : {{ *(.note .note.*) *(.comment) *(.eh_frame .eh_frame_hdr) }}
}}
"""

# "guest.s:12: Error: message", "guest.s: Error: message" (no line), and the
# same with Warning, Info or "Fatal error".
_AS_MESSAGE = re.compile(
    r"^(?P<file>.*?):(?:(?P<line>\d+):)?\s*(?P<kind>Error|Fatal error|Warning|Info):\s*(?P<msg>.*)$"
)
# ld puts "(section+0xoffset): " before the message when it knows no line.
_LD_LOCATION = re.compile(r"^\([^()]*\+0x[0-9a-fA-F]+\):\s*")
_UNDEFINED = re.compile(r"undefined reference to `([^']+)'")


class Image(bytes):
    """The bytes :func:`asm` returns, which remember how they were made:
    ``org`` (the address the labels were resolved for) and ``bits``.
    :meth:`vtx.VM.load` uses them to refuse an image loaded at an address
    other than its ``org`` when that changes its meaning."""

    org: int
    bits: int

    def __new__(cls, data, org, bits, source, include_dirs):
        self = super().__new__(cls, data)
        self.org, self.bits = org, bits
        self._source, self._include_dirs = source, include_dirs
        return self

    def __reduce__(self):
        return (bytes, (bytes(self),))

    def same_at(self, addr: int) -> bool:
        """Whether the code assembled for ``addr`` is these very bytes (no
        absolute address in it depends on ``org``)."""
        if addr == self.org:
            return True
        limit = 1 << (64 if self.bits == 64 else 32)
        if not 0 <= addr < limit:
            return False
        return _assemble(self._source, self.bits, addr, self._include_dirs) == bytes(self)


def asm(source: str, bits: int = 16, org: int = 0) -> bytes:
    """Assemble Intel-syntax x86 source into a flat binary image.

    Args:
        source: The assembly text, Intel syntax without register prefixes, in
            GNU as dialect. Line 1 is the first line of this string. An empty
            (or whitespace-only) source gives ``b""``.
        bits: The processor mode the code is written for: 16 (real mode or
            16-bit protected mode), 32 or 64 (long mode).
        org: The guest address at which the image will be loaded. Labels used
            as addresses resolve to ``org`` plus their offset in the image.

    Returns:
        The machine code and data as :class:`bytes` (an :class:`Image`, which
        records ``org`` and ``bits``), to be loaded at ``org``.
        See the module documentation for the layout of ``.text``, ``.rodata``,
        ``.data`` and ``.bss``.

    Raises:
        ValueError: ``bits`` is not 16, 32 or 64, or ``org`` is negative or too large.
        TypeError: ``source`` is not a string, or ``org`` is not an integer.
        vtx.errors.AsmError: The assembler or the linker rejected the source.
        vtx.errors.AssemblerNotFound: GNU as or ld is not installed.

    ``org`` must lie in the address space of the mode: below 4 GiB for 16-
    and 32-bit code, below ``2**64`` for 64-bit code. The
    :class:`~vtx.errors.AsmError`'s ``line`` and ``text`` locate the error in
    ``source``.

    Example:
        >>> asm("nop; hlt", bits=16)
        b'\\x90\\xf4'
        >>> asm("mov eax, 1", bits=32).hex()
        'b801000000'
    """
    source, bits, org = _check_args(source, bits, org)
    return Image(_assemble(source, bits, org, ()), org, bits, source, ())


def asm_file(path, bits: int = 16, org: int = 0) -> bytes:
    """Assemble the file at ``path``; the same as ``asm(text_of_file, bits, org)``.

    The file is read as UTF-8. Its directory is added to the assembler's
    search path, so ``.include "other.s"`` and ``.incbin "blob.bin"`` find
    files next to it. Error line numbers are line numbers in the file.

    Args:
        path: A path (``str`` or :class:`os.PathLike`) to the source file.
        bits: 16, 32 or 64, as for :func:`asm`.
        org: The load address, as for :func:`asm`.

    Returns:
        The flat binary image, as for :func:`asm`.

    Raises:
        OSError: The file cannot be read.
        vtx.errors.AsmError: The assembler or the linker rejected the source.

    Bad arguments and missing binutils raise as for :func:`asm`.
    """
    path = os.fspath(path)
    with open(path, encoding="utf-8") as f:
        source = f.read()
    source, bits, org = _check_args(source, bits, org)
    directory = os.path.dirname(os.path.abspath(path))
    return Image(_assemble(source, bits, org, (directory,)), org, bits, source, (directory,))


def _check_args(source, bits, org):
    """Validate and normalise the arguments shared by asm and asm_file."""
    if not isinstance(source, str):
        raise TypeError(f"source must be a str, not {type(source).__name__}")
    try:
        bits_value = operator.index(bits)
    except TypeError:
        bits_value = None
    if isinstance(bits, bool) or bits_value not in _VALID_BITS:
        raise ValueError(f"bits must be 16, 32 or 64, not {bits!r}")
    try:
        org_value = operator.index(org)
    except TypeError:
        raise TypeError(f"org must be an integer, not {type(org).__name__}") from None
    if org_value < 0:
        raise ValueError(f"org must not be negative, got {org_value:#x}")
    limit = 1 << (64 if bits_value == 64 else 32)
    if org_value >= limit:
        raise ValueError(f"org {org_value:#x} is outside the {bits_value}-bit address space")
    # One spelling of line ends, so our line numbers match the assembler's.
    source = source.replace("\r\n", "\n")
    return source, bits_value, org_value


# A register written the AT&T way (%eax): GNU as in Intel mode accepts it and
# keeps Intel's operand order, so "mov %eax, %ebx" would silently assemble as
# mov eax, ebx, the reverse of what an AT&T reader meant.
_ATT_REGISTER = re.compile(
    r"%(?:[re]?[abcd]x|[re]?[sd]i|[re]?[sb]p|[abcd][lh]|[sd]il|[sb]pl|r(?:[89]|1[0-5])[dwb]?|"
    r"[c-gs]s|[cd]r[0-9]+|[xyz]mm[0-9]+|rip|eip)\b")
_COMMENT = re.compile(r"#.*$")          # the x86 line comment of GNU as (";" separates statements)


def _reject_att(source):
    """AsmError for a line that uses AT&T register syntax, unless the source
    switches to AT&T itself (.att_syntax)."""
    if ".att_syntax" in source:
        return
    for number, text in enumerate(source.split("\n"), start=1):
        code = _COMMENT.sub("", text.split('"')[0])
        if _ATT_REGISTER.search(code):
            raise AsmError(
                "AT&T register syntax (%reg); vtx.asm takes Intel syntax without prefixes, destination "
                "first: write 'mov ebx, eax' for AT&T 'mov %eax, %ebx' (or put .att_syntax in the source)",
                line=number, text=text)


# A symbol that .equ, .set, .equiv, .eqv or "=" defines after a line uses
# it: GNU as in Intel mode reads a bare symbol it does not yet know as a
# memory operand, so "mov eax, LEN" before ".equ LEN, 5" loads from address
# 5 while the same line after the .equ moves the immediate 5 (or, for
# operands that take no memory, fails with "operand size mismatch").
_SYMBOL = r"[A-Za-z_.$][\w.$]*"
_BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_EQU_DIRECTIVE = re.compile(rf"\.(?:equ|set|equiv|eqv)\s+({_SYMBOL})\s*,", re.I)
_EQU_ASSIGN = re.compile(rf"({_SYMBOL})\s*==?(?!=)")
_LEADING_LABEL = re.compile(rf"^\s*(?:{_SYMBOL}|\d+)\s*:(?!:)")
_IDENTIFIER = re.compile(rf"(?<![\w.$\\])({_SYMBOL})")
_PREFIXES = {"rep", "repe", "repz", "repne", "repnz", "lock", "data16", "data32", "addr16", "addr32", "rex",
             "rex.w", "notrack", "bnd", "xacquire", "xrelease"}
# Branch targets are addresses either way: a forward symbol there is fine.
_BRANCH = re.compile(r"(?:j[a-z]+|l?call[a-z]?|loop[a-z]*)$")


def _statements(source):
    """(line number, statement) for each statement of the source, comments
    and leading labels removed (";" separates statements; a string's
    contents are not looked into)."""
    # A /* */ comment (GNU as takes them too) becomes spaces, its line
    # breaks kept so the line numbers stay those of the source.
    source = _BLOCK_COMMENT.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), source)
    for number, text in enumerate(source.split("\n"), start=1):
        code = _COMMENT.sub("", text.split('"')[0])
        for stmt in code.split(";"):
            while True:
                m = _LEADING_LABEL.match(stmt)
                if m is None:
                    break
                stmt = stmt[m.end():]
            if stmt.strip():
                yield number, stmt.strip()


def _split_operands(text):
    """The operands of an instruction, split at the commas outside brackets
    and parentheses."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return out + [cur]


def _reject_forward_equ(source):
    """AsmError for an instruction operand that names, without ``offset``,
    brackets or ``ptr``, a symbol the source defines with .equ (or .set,
    .equiv, .eqv, =) only further down, whose meaning GNU as would take
    from the order of the lines."""
    stmts = list(_statements(source))
    defined = {}                    # symbol -> index of the first statement defining it
    for i, (_number, stmt) in enumerate(stmts):
        m = _EQU_DIRECTIVE.match(stmt) or (None if stmt.startswith(".") else _EQU_ASSIGN.match(stmt))
        if m is not None:
            defined.setdefault(m.group(1), i)
    if not defined:
        return
    lines = source.split("\n")
    for i, (number, stmt) in enumerate(stmts):
        if stmt.startswith(".") or _EQU_ASSIGN.match(stmt):
            continue                # directives take expressions: no memory operand to confuse
        words = stmt.split(None, 1)
        while len(words) == 2 and words[0].lower() in _PREFIXES:
            words = words[1].split(None, 1)
        if len(words) < 2 or _BRANCH.match(words[0].lower()):
            continue
        for operand in _split_operands(words[1]):
            low = operand.lower()
            if "[" in operand or re.search(r"\b(?:offset|ptr)\b", low):
                continue            # explicit: an immediate or a memory operand whatever the order
            for name in _IDENTIFIER.findall(operand):
                if defined.get(name, -1) > i:
                    raise AsmError(
                        f"'{name}' is defined by a later .equ/.set/'=' line: GNU as would read the bare "
                        f"'{operand.strip()}' here as a memory operand (the same line after the definition "
                        f"is an immediate); write 'offset {name}' for the value or '[{name}]' for the memory "
                        f"at that address, or move the definition above this line",
                        line=number, text=lines[number - 1])


@functools.lru_cache(maxsize=CACHE_SIZE)
def _assemble(source, bits, org, include_dirs):
    """Assemble and link; cached on all four (hashable) arguments."""
    if not source.strip():
        return b""
    _reject_att(source)
    _reject_forward_equ(source)
    as_path, ld_path = _find_tools()
    header = f".intel_syntax noprefix\n.code{bits}\n"
    header_lines = header.count("\n")
    body = source if source.endswith("\n") else source + "\n"
    lines = source.split("\n")

    with tempfile.TemporaryDirectory(prefix="vtx-asm-") as tmp:
        src = os.path.join(tmp, _SOURCE_NAME)
        obj = os.path.join(tmp, _OBJECT_NAME)
        image = os.path.join(tmp, _IMAGE_NAME)
        script = os.path.join(tmp, _SCRIPT_NAME)
        with open(src, "w", encoding="utf-8") as f:
            f.write(header)
            f.write(body)
        with open(script, "w", encoding="ascii") as f:
            f.write(_LINKER_SCRIPT.format(org=org))

        # -g gives the object line information, which ld uses to name the
        # source line of an undefined symbol or a truncated relocation.
        as_cmd = [as_path, "--64" if bits == 64 else "--32", "-g", "--noexecstack"]
        for directory in include_dirs:
            as_cmd += ["-I", directory]
        as_cmd += ["-o", obj, src]
        result = _run(as_cmd, "GNU as")
        if result.returncode != 0:
            errors = _parse_as_messages(result.stderr, src, header_lines, lines, tmp)
            _raise(errors, result.stderr, tmp, "GNU as")

        ld_cmd = [
            ld_path,
            "-m", "elf_x86_64" if bits == 64 else "elf_i386",
            "-T", script,
            "--oformat", "binary",
            "--build-id=none",
            "-o", image,
            obj,
        ]
        result = _run(ld_cmd, "GNU ld")
        if result.returncode != 0:
            errors = _parse_ld_messages(result.stderr, src, header_lines, lines, tmp)
            _raise(errors, result.stderr, tmp, "GNU ld")

        with open(image, "rb") as f:
            return f.read()


def _find_tools():
    """Return the paths of GNU as and ld, or raise AssemblerNotFound."""
    found = []
    for tool, names in (("as", _AS_NAMES), ("ld", _LD_NAMES)):
        path = next((p for p in map(shutil.which, names) if p), None)
        if path is None:
            raise AssemblerNotFound(
                f"GNU {tool} was not found on PATH; vtx.asm needs GNU binutils "
                "(as and ld). Install them with your package manager, for example "
                "'apt-get install binutils' on Debian or Ubuntu "
                "('binutils-x86-64-linux-gnu' on a non-x86 host)."
            )
        found.append(path)
    return tuple(found)


def _run(cmd, what):
    """Run one tool without a shell, with a timeout and C-locale messages."""
    env = dict(os.environ, LC_ALL="C", LANG="C")
    try:
        return subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=TIMEOUT,
            env=env,
            check=False,
        )
    except FileNotFoundError as exc:
        raise AssemblerNotFound(
            f"{what} could not be started ({exc}); install GNU binutils "
            "(Debian/Ubuntu package 'binutils')"
        ) from None
    except subprocess.TimeoutExpired:
        raise AsmError(f"{what} did not finish within {TIMEOUT} seconds") from None


def _caller_line(n, header_lines, lines):
    """Map a line number of the file we wrote to (line, text) in the caller's source."""
    line = n - header_lines
    if line < 1:
        return None, None
    text = lines[line - 1] if line <= len(lines) else None
    return line, text


def _scrub(message, tmp):
    """Drop our temporary directory from a tool message."""
    return message.replace(tmp + os.sep, "").replace(tmp, "")


def _parse_as_messages(stderr, src, header_lines, lines, tmp):
    """Collect [line, text, message] for each error GNU as reported."""
    errors = []
    for raw in stderr.splitlines():
        m = _AS_MESSAGE.match(raw)
        if m is None:
            continue
        kind = m.group("kind")
        msg = _scrub(m.group("msg").strip(), tmp)
        ours = m.group("file") == src
        line = text = None
        if m.group("line") is not None:
            if ours:
                line, text = _caller_line(int(m.group("line")), header_lines, lines)
            else:
                # An error inside a file pulled in with .include.
                name = _scrub(m.group("file"), tmp)
                msg = f"{name}:{m.group('line')}: {msg}"
        if kind in ("Error", "Fatal error"):
            errors.append([line, text, msg])
        elif kind == "Info" and errors:
            # "macro invoked from here" and the like: context for the last error.
            where = f"line {line}: " if line is not None else ""
            errors[-1][2] += f" ({where}{msg})"
    return errors


def _parse_ld_messages(stderr, src, header_lines, lines, tmp):
    """Collect [line, text, message] for each error GNU ld reported."""
    errors = []
    marker = re.compile(re.escape(src) + r":(\d+):\s*")
    for raw in stderr.splitlines():
        raw = raw.strip()
        if not raw or re.search(r"in function `[^']*':$", raw):
            continue
        if re.search(r"\bwarning:", raw):
            continue
        line = text = None
        m = marker.search(raw)
        if m is not None:
            line, text = _caller_line(int(m.group(1)), header_lines, lines)
            msg = raw[m.end():]
        else:
            msg = raw
            # Strip the "ld: guest.o:" style prefixes.
            for prefix in (r"^\S*ld:\s*", r"^\S*" + re.escape(_OBJECT_NAME) + r":\s*"):
                msg = re.sub(prefix, "", msg)
        msg = _scrub(_LD_LOCATION.sub("", msg).strip(), tmp)
        undefined = _UNDEFINED.search(msg)
        if undefined is not None:
            # ld takes the line from the debug line table, which covers only
            # instructions: a reference from a data directive gets the line of
            # the instruction before it. Find the line that names the symbol.
            line, text = _line_naming(undefined.group(1), line, lines)
        if msg:
            errors.append([line, text, msg])
    return errors


def _line_naming(symbol, line, lines):
    """The (line, text) that refers to ``symbol``: ``line`` if it does, else the first that does."""
    token = re.compile(r"(?<![\w.$])" + re.escape(symbol) + r"(?![\w.$])")
    if line is not None and line <= len(lines) and token.search(lines[line - 1]):
        return line, lines[line - 1]
    for number, text in enumerate(lines, 1):
        if token.search(text.split("#", 1)[0]):
            return number, text
    return None, None


def _raise(errors, stderr, tmp, what):
    """Raise AsmError for the collected errors (or the raw output if none parsed)."""
    if not errors:
        detail = _scrub(stderr.strip(), tmp) or "no message"
        raise AsmError(f"{what} failed: {detail}")
    primary = next((e for e in errors if e[0] is not None), errors[0])
    message = primary[2]
    others = [e for e in errors if e is not primary]
    if others:
        listed = "\n".join(
            f"  line {e[0]}: {e[2]}" if e[0] is not None else f"  {e[2]}" for e in others
        )
        message = f"{message}\n{len(others)} more error(s):\n{listed}"
    error = AsmError(message, primary[0], primary[1])
    error.errors = [tuple(e) for e in errors]
    raise error


asm.cache_info = _assemble.cache_info
asm.cache_clear = _assemble.cache_clear
# ``import vtx`` makes ``vtx.asm`` this function (it shadows the module), so
# the names the API reference gives as vtx.asm.asm_file and vtx.asm.Image
# are reachable from it too; ``from vtx.asm import asm_file`` works as well.
asm.asm_file = asm_file
asm.Image = Image
