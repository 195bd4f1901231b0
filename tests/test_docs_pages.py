"""The docs beyond the tutorials (tests/test_docs.py runs those): the index
and concept pages' examples run and print what the pages say, the exit-cost
chart's guests take the exits they claim to measure, every public name is
in the API reference, and the Korean translation of the concept pages is
complete and builds."""

import contextlib
import html
import importlib.util
import io
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

import vtx

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
BLOCK = re.compile(r"^\.\. code-block:: (python|text)\n\n((?:    .*\n|\n)+)", re.M)

needs_as = pytest.mark.skipif(shutil.which("as") is None, reason="GNU as is not installed")
needs_sphinx = pytest.mark.skipif(
    shutil.which("dot") is None or importlib.util.find_spec("furo") is None
    or importlib.util.find_spec("sphinx") is None,
    reason="building the docs needs sphinx, furo and Graphviz's dot")

# The pages whose examples must run; each has at least one python block.
RUNNABLE = ["index", "concepts/hypervisor_types", "concepts/trap_and_emulate", "concepts/hypercalls"]
# The concept pages translated into Korean (docs/locale/ko/LC_MESSAGES).
TRANSLATED = ["concepts/index", "concepts/rings", "concepts/hypervisor_types", "concepts/techniques",
              "concepts/trap_and_emulate", "concepts/hypercalls", "concepts/vms_vs_containers"]


def blocks(path):
    for m in BLOCK.finditer(path.read_text()):
        body = "\n".join(line[4:] for line in m.group(2).rstrip("\n").split("\n"))
        yield m.group(1), body.rstrip() + "\n"


@needs_as
@pytest.mark.parametrize("page", RUNNABLE)
def test_page_examples_run(page):
    """Every python block runs, in order, in one namespace; a text block
    after it is exactly what it printed."""
    path = DOCS / f"{page}.rst"
    ns, printed, count = {}, None, 0
    for kind, body in blocks(path):
        if kind == "python":
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                exec(compile(body, str(path), "exec"), ns)
            printed = buf.getvalue()
            count += 1
        else:
            assert printed is not None, f"{page}: a text block must follow a python block"
            assert printed == body, f"{page}: expected\n{body}\ngot\n{printed}"
            printed = None
    assert count >= 1


def test_every_concept_page_in_the_toctree():
    index = (DOCS / "concepts" / "index.rst").read_text()
    for page in sorted((DOCS / "concepts").glob("*.rst")):
        if page.stem != "index":
            assert f"\n   {page.stem}\n" in index, f"{page.name} is not in the concepts toctree"


def test_diagrams_are_used():
    """Each diagram in docs/diagrams is drawn on some page."""
    text = "\n".join(p.read_text() for p in DOCS.rglob("*.rst"))
    for dot in sorted((DOCS / "diagrams").glob("*.dot")):
        assert f".. graphviz:: /diagrams/{dot.name}" in text, f"{dot.name} is on no page"


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
@pytest.mark.parametrize("dot", sorted((DOCS / "diagrams").glob("*.dot")), ids=lambda p: p.stem)
def test_diagram_draws(dot):
    out = subprocess.run(["dot", "-Tsvg", str(dot)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and not out.stderr, out.stderr
    assert "<svg" in out.stdout


def _exitcosts():
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        import exitcosts
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    return exitcosts


@needs_as
def test_exit_cost_guests_take_the_exits_they_measure():
    ec = _exitcosts()
    R = vtx.ExitReason
    expect = {
        "OUT to a port": (R.IO_INSTRUCTION, ec.ROUNDS),
        "CPUID": (R.CPUID, ec.ROUNDS),
        "HLT": (R.HLT, ec.ROUNDS),
        # the measured VMCALLs and the one that ends the loop
        "VMCALL (hypercall)": (R.VMCALL, ec.ROUNDS + 1),
        "EPT violation (unbacked read)": (R.EPT_VIOLATION, ec.ROUNDS),
        # an MMIO access is accounted as the EPT-violation exit it is
        "MMIO read (Python device)": (R.EPT_VIOLATION, ec.ROUNDS),
    }
    assert [label for label, _, _ in ec.CASES] == list(expect)
    for label, body, how in ec.CASES:
        ns, r = ec.measure_case(vtx, body, how)
        reason, count = expect[label]
        assert r.stop == "stop", label
        assert r.exits[reason] == count, (label, r.exits)
        assert ns > 0
    # The MMIO device's answer reached the guest's EAX.
    assert r.vcpu.eax == 0x12345678


@needs_as
def test_exit_cost_table_without_matplotlib(monkeypatch):
    """Without matplotlib the directive still gives the table."""
    ec = _exitcosts()
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert ec._svg_chart([("x", 100.0)]) is None
    table = ec._table([("OUT to a port", 1234.4)])
    assert "1,234" in table.astext() and "OUT to a port" in table.astext()


# --- the built site -----------------------------------------------------------------


def _env():
    """The child Sphinx imports the vtx this test imported."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(pathlib.Path(vtx.__file__).parent.parent)]
                                                        + [p for p in sys.path if p])}


def _build(out, *extra):
    env = _env()
    r = subprocess.run([sys.executable, "-m", "sphinx", "-q", "-W", "--keep-going", "-b", "html", *extra,
                        str(DOCS), str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("docs_en"))


def _documented(site):
    from sphinx.util.inventory import InventoryFile
    with open(site / "objects.inv", "rb") as f:
        inv = InventoryFile.load(f, "", lambda base, uri: uri)
    return {name for objects in inv.values() for name in objects}


def _public(module_name):
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, o in vars(module).items()
                 if not n.startswith("_") and getattr(o, "__module__", None) == module_name]
    return module, names


@needs_sphinx
@pytest.mark.parametrize("module_name", ["vtx", "vtx.devices", "vtx.pc", "vtx.linux", "vtx.debug", "vtx.sweep",
                                         "vtx.asm", "vtx.loader", "vtx.cguest", "vtx.overhead"])
def test_every_public_name_is_documented(site, module_name):
    documented = _documented(site)
    module, names = _public(module_name)
    missing = []
    for name in names:
        obj = getattr(module, name)
        canonical = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', name)}"
        # A name that vtx re-exports (vtx.load_elf for vtx.loader.load_elf)
        # is documented once, under vtx.
        exported = getattr(vtx, name, None) is obj and f"vtx.{name}" in documented
        if f"{module_name}.{name}" not in documented and canonical not in documented and not exported:
            missing.append(name)
    assert not missing, f"public names of {module_name} missing from the API reference: {missing}"


@needs_sphinx
@pytest.mark.parametrize("cls", [vtx.VM, vtx.VCpu, vtx.RunResult], ids=lambda c: c.__name__)
def test_every_public_method_and_property_is_documented(site, cls):
    """The members a hypervisor uses (model_cpuid, vmread, the read_u*
    helpers...) once went unrendered: inherited from a base class, or
    without a docstring."""
    documented = _documented(site)
    missing = [name for name, value in vars_all(cls).items()
               if not name.startswith("_") and f"vtx.{cls.__name__}.{name}" not in documented]
    assert not missing, f"members of vtx.{cls.__name__} missing from the API reference: {missing}"


def vars_all(cls):
    """The public methods and properties of a class, its bases' included
    (not object's); a RunResult's attrs fields are described in its class
    docstring, so only its methods and properties count."""
    out = {}
    for klass in reversed(cls.__mro__[:-1]):
        for name, value in vars(klass).items():
            if cls is vtx.RunResult and not (callable(value) or isinstance(value, property)):
                continue
            out[name] = value
    return out


@needs_sphinx
def test_every_exit_field_is_documented(site):
    documented = _documented(site)
    missing = []
    for name in vtx.__all__:
        cls = getattr(vtx, name)
        if not (isinstance(cls, type) and issubclass(cls, vtx.Exit)):
            continue
        for attr, value in vars(cls).items():
            if attr.startswith("_") or callable(value) and not isinstance(value, property):
                continue
            if f"vtx.{name}.{attr}" not in documented and f"vtx.Exit.{attr}" not in documented:
                missing.append(f"{name}.{attr}")
    assert not missing, f"exit fields missing from the API reference: {missing}"


@needs_sphinx
def test_register_docs_are_not_read_as_types(site):
    """Napoleon once rendered "bits 15:0 of RAX" as the type "bits 15"."""
    page = (site / "reference" / "api.html").read_text()
    i = page.index('id="vtx.VCpu.ax"')
    assert "bits 15:0 of RAX" in re.sub(r"<[^>]+>", "", page[i:i + 2000])


@needs_sphinx
def test_site_has_diagrams_and_chart(site):
    page = (site / "concepts" / "index.html").read_text()
    assert page.count('class="graphviz') >= 4
    assert 'class="exit-costs' in page
    assert "CPUID" in page and "EPT violation" in page
    index = html.unescape(re.sub(r"<[^>]+>", "", (site / "index.html").read_text()))
    assert "pip install -e . && python -m vtx demo" in index
    assert "the guest wrote 'A' to port 0xe9" in index


# --- the Korean translation -----------------------------------------------------------


def _po_entries(path):
    """(msgid, msgstr, fuzzy) of each entry of a .po file."""
    entries, cur, field, fuzzy = [], None, None, False
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        if line.startswith("#,") and "fuzzy" in line:
            fuzzy = True
        elif line.startswith("msgid "):
            cur, field = {"msgid": line[6:], "msgstr": ""}, "msgid"
        elif line.startswith("msgstr "):
            cur["msgstr"], field = line[7:], "msgstr"
        elif line.startswith('"') and cur is not None:
            cur[field] += line
        elif not line.strip() and cur is not None:
            unq = {k: "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', v)) for k, v in cur.items()}
            entries.append((unq["msgid"], unq["msgstr"], fuzzy))
            cur, field, fuzzy = None, None, False
    return [e for e in entries if e[0]]


@needs_sphinx
def test_korean_catalogs_cover_the_pages(tmp_path):
    """Every message of the translated pages, as Sphinx extracts them now,
    has a Korean translation that is not fuzzy: a changed page without an
    updated catalog fails here."""
    env = _env()
    r = subprocess.run([sys.executable, "-m", "sphinx", "-q", "-b", "gettext", str(DOCS), str(tmp_path)],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    problems = []
    for page in TRANSLATED:
        wanted = {m for m, _, _ in _po_entries(tmp_path / f"{page}.pot")}
        po = DOCS / "locale" / "ko" / "LC_MESSAGES" / f"{page}.po"
        assert po.exists(), f"no Korean catalog for {page}"
        have = {m: (s, fz) for m, s, fz in _po_entries(po)}
        for msg in sorted(wanted):
            s, fz = have.get(msg, ("", False))
            if not s or fz:
                problems.append(f"{page}: {msg[:60]!r}")
    assert not problems, f"{len(problems)} untranslated messages:\n" + "\n".join(problems[:20])


@needs_sphinx
@needs_as
def test_korean_build(tmp_path):
    out = _build(tmp_path / "ko", "-D", "language=ko")
    page = (out / "concepts" / "trap_and_emulate.html").read_text()
    assert 'lang="ko"' in page
    assert "Popek" in page and "가상화" in page
    # The example's code is the same in both languages.
    assert "POPF_TEST" in page
