"""The tutorials are executed: every ``python`` code block runs in order in
one namespace, and the ``text`` block after it must equal what it printed."""

import contextlib
import io
import pathlib
import re
import shutil

import pytest

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs" / "tutorials"
BLOCK = re.compile(r"^\.\. code-block:: (python|text)\n\n((?:    .*\n|\n)+)", re.M)


def blocks(path):
    for m in BLOCK.finditer(path.read_text()):
        body = "\n".join(line[4:] for line in m.group(2).rstrip("\n").split("\n"))
        yield m.group(1), body.rstrip() + "\n"


@pytest.mark.skipif(shutil.which("as") is None, reason="GNU as is not installed")
@pytest.mark.parametrize("path", sorted(DOCS.glob("*.rst")), ids=lambda p: p.stem)
def test_tutorial_runs(path):
    if path.stem == "linux":
        from vtx.linux import LinuxAssetsUnavailable, fetch
        try:
            fetch()
        except LinuxAssetsUnavailable as e:
            pytest.skip(f"the Debian kernel and busybox packages cannot be fetched here: {e}")
    if path.stem == "c_guest":
        from vtx.cguest import missing_tools
        if missing_tools():
            pytest.skip(f"needs {' and '.join(missing_tools())}")
    ns = {}
    printed = None
    count = 0
    for kind, body in blocks(path):
        if kind == "python":
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                exec(compile(body, f"{path.name}", "exec"), ns)
            printed = buf.getvalue()
            count += 1
        else:
            assert printed is not None, "a text block must follow a python block"
            assert printed == body, f"{path.name}: expected\n{body}\ngot\n{printed}"
            printed = None
    assert count >= 3


@pytest.mark.skipif(shutil.which("as") is None, reason="GNU as is not installed")
def test_readme_example_runs():
    readme = (DOCS.parent.parent / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(code, "README.md", "exec"), {})
    out = buf.getvalue()
    assert out.startswith("hello, VMX\n")
    assert "IO_INSTRUCTION (30)     11" in out
    assert "CPUID (10)               1" in out


def test_demo_prints_three_modes():
    from vtx.demo import demo
    buf = io.StringIO()
    assert demo(buf) == 0
    out = buf.getvalue()
    for mode in ("16-bit real mode", "32-bit protected mode", "64-bit long mode"):
        assert f"guest: Hello from {mode}! The CPU vendor is: vtxVMXmodel!\n" in out
