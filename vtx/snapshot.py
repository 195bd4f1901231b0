"""Snapshots: a whole machine saved to a file and brought back
(docs/architecture.rst, "Snapshots").

:meth:`vtx.VM.save` writes every vCPU's processor state (registers, segments,
control, debug and model-specific registers, the x87/SSE state, activity and
interruptibility, pending events and debug traps, the TSC and instruction
count, the CPU model, the VMX state), the private memory (the VMCS, the
bitmaps, the EPT tables), guest RAM, the ROM if one is mapped, and an
``extra`` dict of JSON data the platform adds (its devices' states).
:meth:`vtx.VM.restore` brings a VM back to exactly that state;
:meth:`vtx.VM.load_snapshot` makes a new VM from the file.  The same works for
a :class:`vtx.BareMetal` machine (with its debug console).

The file::

    prefix    magic "VTXSNAP\\0", format version (u32), 0 (u32), file length (u64)
    sections  tag (4 ASCII bytes), length (u64), payload; in this order:
              HEAD  JSON: vtx version, processor layout hash, kind, sizes, CPU model, ROM
              VCPU  one per vCPU: the processor state (vtx/core/snapshot.pxi)
              RAMB  a bitmap of the RAM pages that are not all zero
              RAMD  those pages, zlib-compressed (level 1)
              PRIV  the private memory, zlib-compressed
              ROMI  the ROM image (only with a ROM)
              EXTR  JSON: the platform's ``extra``
    digest    SHA-256 of everything before it

All integers are little-endian.  Reading checks everything (length, digest,
format, vtx version, layout, every section) into temporaries before the
receiving machine is touched; any problem is a :class:`vtx.errors.SnapshotError`
that names it.  What the file does not hold: exit handlers and I/O handlers
(code: register them again), the caches (TLB, decoded instructions,
translated blocks), which a restore empties, and host wall-clock statistics.
"""

import hashlib
import json
import os
import struct
import tempfile
import threading
import zlib

from . import _core
from .cpu_model import CpuModel
from .errors import ArgumentError, SnapshotError, VmStateError

__all__ = ["MAGIC", "FORMAT_VERSION", "Snapshot", "read", "save", "apply"]

MAGIC = b"VTXSNAP\0"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sIIQ")
_SECTION = struct.Struct("<4sQ")
_DIGEST = 32
_PAGE = 4096
_ORDER = ("HEAD", "VCPU", "RAMB", "RAMD", "PRIV", "ROMI", "EXTR")


def _version():
    import vtx
    return vtx.__version__


def _kind(machine):
    from .bare import BareMetal
    from .vm import VM
    if isinstance(machine, VM):
        return "VM"
    if isinstance(machine, BareMetal):
        return "BareMetal"
    raise TypeError(f"a snapshot is of a vtx.VM or a vtx.BareMetal, not {type(machine).__name__}")


def _vcpus(machine):
    return list(machine.vcpus) if _kind(machine) == "VM" else [machine.cpu]


def _model_json(m):
    return {"preset": m.preset, "features": sorted(m.features), "vendor": m.vendor, "family": m.family,
            "model": m.model, "stepping": m.stepping, "brand": m.brand, "max_leaf": m.max_leaf,
            "caches": [list(c) for c in m.caches]}


def _model_from_json(d):
    """The CpuModel object of a header (its features and CPUID table are in
    the processor state; this is the Python identity vm.cpu_model shows)."""
    try:
        m = object.__new__(CpuModel)
        m.__attrs_init__(d["preset"], frozenset(d["features"]), d["vendor"], d["family"], d["model"],
                         d["stepping"], d["brand"], d["max_leaf"], tuple(tuple(c) for c in d["caches"]))
        return m
    except (KeyError, TypeError, ValueError, ArgumentError) as e:
        raise SnapshotError(f"the snapshot's CPU model is malformed ({e})") from None


def _ram_pages(machine, bitmap):
    """The RAM pages the bitmap marks, zlib-compressed, runs of pages at a time."""
    view = machine._machine.ram_view()
    z = zlib.compressobj(1)
    out = []
    npages = machine.memory_size // _PAGE
    pg = 0
    while pg < npages:
        if not (bitmap[pg >> 3] >> (pg & 7)) & 1:
            if bitmap[pg >> 3] == 0:
                pg = (pg | 7) + 1
            else:
                pg += 1
            continue
        start = pg
        while pg < npages and (bitmap[pg >> 3] >> (pg & 7)) & 1:
            pg += 1
        out.append(z.compress(view[start * _PAGE:pg * _PAGE]))
    out.append(z.flush())
    view.release()
    return b"".join(out)


def save(machine, path, extra=None):
    """Write ``machine`` (a :class:`vtx.VM` or :class:`vtx.BareMetal`) to
    ``path``.  ``extra`` is JSON data of the platform's (a dict; None: {}).
    Between runs, or from an exit handler during a run (the state of that
    exit is saved; restored, the guest is at the exiting instruction, as a
    handler that returns RETRY would leave it); not while another thread's
    run is active.  (A BareMetal machine is saved between runs.)"""
    kind = _kind(machine)
    if extra is None:
        extra = {}
    if not isinstance(extra, dict):
        raise ArgumentError(f"extra is a dict of JSON data, not {type(extra).__name__}")
    try:
        extra_json = json.dumps(extra, sort_keys=True, allow_nan=False).encode()
    except (TypeError, ValueError) as e:
        raise ArgumentError(f"extra must be JSON data (dicts, lists, str, int, float, bool, None): {e}") from None
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"path is a file path, not {path!r}")
    m = machine._machine
    vcpus = _vcpus(machine)
    if kind == "VM" and not vcpus:
        raise VmStateError("the VM has no vCPU to save; call vm.add_vcpu() first")
    # From a handler of the run, the exit is complete and nothing executes;
    # from another thread, the guest may execute at any moment of the save.
    if any(_core._vcpu_busy(v) for v in vcpus) and machine._run_thread != threading.get_ident():
        raise VmStateError("the machine cannot be saved while another thread's run() is active "
                           "(save from an exit handler of that run, or after it returns)")
    layout = _core._snapshot_layout()
    images = [_core._snapshot_cpu(v) for v in vcpus]
    bitmap = _core._ram_nonzero_pages(m)
    ram = _ram_pages(machine, bitmap)
    priv = zlib.compress(m.priv_bytes(), 1)
    rom = m.rom_bytes()
    rom_at = _core._rom_layout(m)
    slots = []
    slot_data = []
    if kind == "VM":
        for base, size, readonly in machine.memory_slots:
            on_write = machine._slots[base][2] is not None
            slots.append([base, size, readonly, on_write])
            slot_data.append(zlib.compress(machine.read(base, size), 1))
    header = {
        "slots": slots,
        "ept_pool": [machine._pool_next, list(machine._pool_free)] if kind == "VM" else None,
        # the round-robin's next vCPU: a run after a restore takes the same turns
        "next_vcpu": machine._next if kind == "VM" else 0,
        # the instructions a STOP left pending completion (vtx.STOP): the
        # restored VM completes them on its next run, as this one would
        "stop_pending": sorted([i, rip, n] for i, (rip, n) in machine._pending.items()) if kind == "VM" else None,
        "vtx_version": _version(), "kind": kind, "cpu_layout": layout["hash"], "cpu_size": layout["cpu_size"],
        "cpu_image": layout["size"], "ram_size": m.ram_size, "priv_size": m.priv_size, "vcpus": len(vcpus),
        "rom": list(rom_at) if rom_at else None, "cpu_model": _model_json(m.cpu_model),
        "console": bytes(machine.console).hex() if kind == "BareMetal" else None,
    }
    sections = [("HEAD", json.dumps(header, sort_keys=True).encode())]
    sections += [("VCPU", img) for img in images]
    sections += [("RAMB", bitmap), ("RAMD", ram), ("PRIV", priv)]
    if rom is not None:
        sections.append(("ROMI", rom))
    sections += [("SLOT", d) for d in slot_data]
    sections.append(("EXTR", extra_json))
    total = _PREFIX.size + sum(_SECTION.size + len(p) for _, p in sections) + _DIGEST
    h = hashlib.sha256()
    parts = [_PREFIX.pack(MAGIC, FORMAT_VERSION, 0, total)]
    for tag, payload in sections:
        parts.append(_SECTION.pack(tag.encode(), len(payload)))
        parts.append(payload)
    for p in parts:
        h.update(p)
    parts.append(h.digest())
    # A new file beside the old one, renamed over it when complete: a failed
    # save leaves no half-written snapshot.
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".vtxsnap-", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            for p in parts:
                f.write(p)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return total


class Snapshot:
    """A snapshot file read and checked: ``header`` (dict), ``vcpus`` (the
    processor images), ``ram_bitmap`` and ``ram_pages`` (the non-zero pages,
    decompressed), ``priv``, ``rom`` (bytes or None), ``extra`` (the
    platform's dict) and ``cpu_model``."""

    def __init__(self, header, vcpus, ram_bitmap, ram_pages, priv, rom, extra, cpu_model):
        self.header = header
        self.vcpus = vcpus
        self.ram_bitmap = ram_bitmap
        self.ram_pages = ram_pages
        self.priv = priv
        self.rom = rom
        self.extra = extra
        self.cpu_model = cpu_model

    @property
    def kind(self):
        return self.header["kind"]

    @property
    def ram_size(self):
        return self.header["ram_size"]


def _json(what, payload):
    try:
        return json.loads(bytes(payload).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise SnapshotError(f"the snapshot's {what} is not valid JSON ({e})") from None


_HEADER_KEYS = {"vtx_version": str, "kind": str, "cpu_layout": str, "cpu_size": int, "cpu_image": int,
                "ram_size": int, "priv_size": int, "vcpus": int, "rom": (list, type(None)),
                "cpu_model": dict, "console": (str, type(None)), "slots": list,
                "ept_pool": (list, type(None)), "next_vcpu": int}


def read(path):
    """Read and check a snapshot file: a :class:`Snapshot`, or a
    SnapshotError naming what is wrong.  The receiving machine is not
    looked at here (:func:`apply` does)."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    name = os.path.basename(path)
    if len(data) < _PREFIX.size or data[:len(MAGIC)] != MAGIC:
        raise SnapshotError(f"{name} is not a vtx snapshot (no VTXSNAP magic at its start)")
    _magic, fmt, _zero, total = _PREFIX.unpack_from(data)
    if len(data) < total:
        raise SnapshotError(f"{name} is truncated: {len(data)} of its {total} bytes")
    if len(data) > total:
        raise SnapshotError(f"{name} is corrupted: {len(data) - total} bytes after its end ({total} bytes)")
    if hashlib.sha256(memoryview(data)[:total - _DIGEST]).digest() != data[total - _DIGEST:]:
        raise SnapshotError(f"{name} is corrupted: its SHA-256 digest does not match its contents")
    if fmt != FORMAT_VERSION:
        raise SnapshotError(f"{name} has snapshot format version {fmt}; this vtx reads version {FORMAT_VERSION}")
    # The sections, in the fixed order.
    sections = []
    pos, end = _PREFIX.size, total - _DIGEST
    while pos < end:
        if pos + _SECTION.size > end:
            raise SnapshotError(f"{name} is malformed: a section header runs past the end")
        tag, n = _SECTION.unpack_from(data, pos)
        pos += _SECTION.size
        if pos + n > end:
            raise SnapshotError(f"{name} is malformed: section {tag!r} runs past the end")
        sections.append((tag.decode("ascii", "replace"), memoryview(data)[pos:pos + n]))
        pos += n
    tags = [t for t, _ in sections]
    if not tags or tags[0] != "HEAD":
        raise SnapshotError(f"{name} is malformed: it does not start with its HEAD section")
    header = _json("header", sections[0][1])
    if not isinstance(header, dict):
        raise SnapshotError("the snapshot's header is not a JSON object")
    for key, typ in _HEADER_KEYS.items():
        if key not in header or not isinstance(header[key], typ) or isinstance(header[key], bool):
            raise SnapshotError(f"the snapshot's header lacks a valid {key!r}")
    if header["vtx_version"] != _version():
        raise SnapshotError(f"{name} was written by vtx {header['vtx_version']}; this is vtx {_version()} "
                            f"(snapshots are restored by the version that wrote them)")
    layout = _core._snapshot_layout()
    if header["cpu_layout"] != layout["hash"] or header["cpu_size"] != layout["cpu_size"] \
            or header["cpu_image"] != layout["size"]:
        raise SnapshotError(f"{name} was written with another processor layout (Cpu struct of "
                            f"{header['cpu_size']} bytes, layout {header['cpu_layout'][:16]}; this build: "
                            f"{layout['cpu_size']} bytes, layout {layout['hash'][:16]})")
    if header["kind"] not in ("VM", "BareMetal"):
        raise SnapshotError(f"the snapshot is of an unknown kind of machine {header['kind']!r}")
    nv = header["vcpus"]
    rom_at = header["rom"]
    slots = header["slots"]
    for sl in slots:
        if not (isinstance(sl, list) and len(sl) == 4 and all(isinstance(x, int) and not isinstance(x, bool)
                                                                for x in sl[:2])
                and sl[0] % _PAGE == 0 and sl[1] > 0 and sl[1] % _PAGE == 0 and sl[1] <= 1 << 38):
            raise SnapshotError(f"the snapshot's memory slot {sl!r} is malformed")
    pool = header["ept_pool"]
    if pool is not None and not (len(pool) == 2 and isinstance(pool[0], int) and isinstance(pool[1], list)
                                 and all(isinstance(x, int) for x in pool[1])):
        raise SnapshotError(f"the snapshot's EPT pool state {pool!r} is malformed")
    expect = ["HEAD"] + ["VCPU"] * nv + ["RAMB", "RAMD", "PRIV"] + (["ROMI"] if rom_at else []) + \
        ["SLOT"] * len(slots) + ["EXTR"]
    if tags != expect:
        raise SnapshotError(f"{name} is malformed: sections {' '.join(tags)}, expected {' '.join(expect)}")
    first_slot = nv + 4 + (1 if rom_at else 0)
    slot_pages = [_inflate(f"memory slot at {sl[0]:#x}", sections[first_slot + i][1], sl[1])
                  for i, sl in enumerate(slots)]
    sections = sections[:first_slot] + sections[first_slot + len(slots):]
    tags = [t for t, _ in sections]
    body = dict(zip(tags[nv + 1:], (p for _, p in sections[nv + 1:])))
    vcpus = [bytes(p) for _, p in sections[1:nv + 1]]
    for img in vcpus:
        if len(img) != layout["size"]:
            raise SnapshotError(f"a vCPU section is {len(img)} bytes, not {layout['size']}")
    ram_size, priv_size = header["ram_size"], header["priv_size"]
    if ram_size <= 0 or ram_size % _PAGE or priv_size <= 0 or priv_size % _PAGE:
        raise SnapshotError(f"the snapshot's memory sizes {ram_size:#x}, {priv_size:#x} are not whole pages")
    npages = ram_size // _PAGE
    bitmap = bytes(body["RAMB"])
    if len(bitmap) != (npages + 7) // 8 or (npages % 8 and bitmap[-1] >> (npages % 8)):
        raise SnapshotError(f"the RAM page bitmap is {len(bitmap)} bytes; {npages} pages need {(npages + 7) // 8}")
    used = sum(bin(b).count("1") for b in bitmap)
    pages = _inflate("RAM", body["RAMD"], used * _PAGE)
    priv = _inflate("private memory", body["PRIV"], priv_size)
    rom = None
    if rom_at:
        if len(rom_at) != 3 or not all(isinstance(x, int) and not isinstance(x, bool) for x in rom_at):
            raise SnapshotError(f"the snapshot's ROM placement {rom_at!r} is malformed")
        rom = bytes(body["ROMI"])
        if len(rom) != rom_at[1]:
            raise SnapshotError(f"the ROM image is {len(rom)} bytes, the header says {rom_at[1]}")
    extra = _json("extra", body["EXTR"])
    if not isinstance(extra, dict):
        raise SnapshotError("the snapshot's extra is not a JSON object")
    model = _model_from_json(header["cpu_model"])
    if header["console"] is not None:
        try:
            bytes.fromhex(header["console"])
        except ValueError:
            raise SnapshotError("the snapshot's console is not hex text") from None
    snap = Snapshot(header, vcpus, bitmap, pages, priv, rom, extra, model)
    snap.slot_pages = slot_pages
    return snap


def _inflate(what, payload, size):
    try:
        z = zlib.decompressobj()
        out = z.decompress(payload, size + 1)
        if not z.eof or z.unused_data or z.unconsumed_tail:
            raise zlib.error("the stream does not end where its section does")
    except zlib.error as e:
        raise SnapshotError(f"the snapshot's {what} does not decompress ({e})") from None
    if len(out) != size:
        raise SnapshotError(f"the snapshot's {what} is {len(out)} bytes, not {size}")
    return out


def check_fits(snap, machine):
    """SnapshotError (or VmStateError) if ``snap`` cannot be restored into
    ``machine`` as it is; nothing is changed."""
    kind = _kind(machine)
    m = machine._machine
    vcpus = _vcpus(machine)
    for v in vcpus:
        if v.machine is not m:
            raise VmStateError("a vCPU of this machine belongs to another machine")
    if any(_core._vcpu_busy(v) for v in vcpus):
        raise VmStateError("a snapshot cannot be restored while the machine runs (from an exit handler or "
                           "another thread's run()); return STOP and restore after run() returns")
    if snap.kind != kind:
        raise SnapshotError(f"the snapshot is of a {snap.kind}, not of a {kind}")
    if snap.ram_size != m.ram_size:
        raise SnapshotError(f"the snapshot has {snap.ram_size:#x} bytes of guest memory; this {kind} has "
                            f"{m.ram_size:#x}")
    if snap.header["priv_size"] != m.priv_size:
        raise SnapshotError(f"the snapshot has {snap.header['priv_size']:#x} bytes of private memory; this "
                            f"{kind} has {m.priv_size:#x}")
    if kind == "VM" and vcpus and len(vcpus) != len(snap.vcpus):
        raise SnapshotError(f"the snapshot has {len(snap.vcpus)} vCPUs; this VM has {len(vcpus)}")
    if kind == "BareMetal" and len(snap.vcpus) != 1:
        raise SnapshotError(f"the snapshot has {len(snap.vcpus)} processors; a BareMetal machine has 1")
    here = _core._rom_layout(m)
    there = tuple(snap.header["rom"]) if snap.header["rom"] else None
    if here is not None and (here != there or m.rom_bytes() != snap.rom):
        raise SnapshotError("this machine's ROM is not the snapshot's (a ROM, once mapped, stays: restore "
                            "into a machine with the same ROM or none)")
    if kind == "VM":
        mine = [list(x) for x in machine.memory_slots]
        theirs = [sl[:3] for sl in snap.header["slots"]]
        if mine and mine != theirs:
            raise SnapshotError(f"this VM's memory slots {mine} are not the snapshot's {theirs} (restore into "
                                f"a VM with the same slots, or none: restore adds them)")
        if not mine and any(sl[3] for sl in snap.header["slots"]):
            raise SnapshotError("the snapshot has read-only memory whose writes went to a handler (on_write); "
                                "add that slot with its handler before restoring")
    if there is not None and here is None:
        base, size, low = there
        if base != (1 << 32) - size or low > size or low % _PAGE or m.ram_size > base:
            raise SnapshotError(f"the snapshot's ROM placement {there!r} does not fit this {kind}")


def apply(snap, machine):
    """Restore ``snap`` (from :func:`read`) into ``machine``: checked with
    :func:`check_fits` first, so a refused snapshot changes nothing."""
    check_fits(snap, machine)
    m = machine._machine
    # A restored vCPU has the state it was saved with: set up, and no STOP
    # pending completion (vtx.vm.VM.run).
    if hasattr(machine, "_pending"):
        machine._pending.clear()
        machine._pending_intr.clear()
        for entry in snap.header.get("stop_pending") or ():
            if not (isinstance(entry, list) and len(entry) == 3 and all(isinstance(x, int) for x in entry)):
                raise SnapshotError(f"the snapshot's pending completion {entry!r} is malformed")
        machine._set_up = True
    kind = _kind(machine)
    if kind == "VM":
        while len(machine.vcpus) < len(snap.vcpus):
            machine.add_vcpu()
    if snap.rom is not None and _core._rom_layout(m) is None:
        base, _size, low = snap.header["rom"]
        m.map_rom(snap.rom, base, low)        # the EPT for it comes with the private memory
    if kind == "VM":
        if not machine.memory_slots:
            for base, size, readonly, _w in snap.header["slots"]:
                machine.add_memory(base, size, readonly=bool(readonly))
        for (base, size, _ro, _w), data in zip(snap.header["slots"], snap.slot_pages):
            machine._machine.slot_view(base)[:size] = data
    _core._ram_restore(m, snap.ram_bitmap, snap.ram_pages)
    _core._priv_restore(m, snap.priv)
    if kind == "VM":
        machine._next = snap.header["next_vcpu"]
    if kind == "VM" and snap.header["ept_pool"] is not None:
        # The EPT tables of the slots came with the private memory: so does
        # the bookkeeping of the pool they live in.
        machine._pool_next, machine._pool_free = snap.header["ept_pool"][0], list(snap.header["ept_pool"][1])
    _core._set_cpu_model(m, snap.cpu_model)
    for v, img in zip(_vcpus(machine), snap.vcpus):
        _core._restore_cpu(v, img)
    if kind == "BareMetal":
        machine.console = bytearray(bytes.fromhex(snap.header["console"] or ""))
    if hasattr(machine, "_pending"):
        machine._pending.update({i: (rip, n) for i, rip, n in snap.header.get("stop_pending") or ()})
    machine.snapshot_extra = snap.extra
    return snap.extra
