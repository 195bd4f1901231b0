"""vtx.acpi: the tables a PC's firmware gives the OS (ACPI 6.4 chapter 5)."""

import struct

import pytest

from vtx import acpi


def test_tables_have_valid_checksums_and_links():
    data, rsdp = acpi.build(0xE0000, apic_ids=(0, 1), ioapic_base=0xFEC00000)
    assert rsdp == 0xE0000

    def at(addr, n):
        return data[addr - 0xE0000:addr - 0xE0000 + n]
    r = at(rsdp, 36)
    assert r[:8] == b"RSD PTR " and sum(r[:20]) % 256 == 0 and sum(r) % 256 == 0
    assert r[15] == 2                                            # revision 2: XSDT
    xsdt_at = struct.unpack_from("<Q", r, 24)[0]
    xsdt = at(xsdt_at, struct.unpack_from("<I", at(xsdt_at, 8), 4)[0])
    assert xsdt[:4] == b"XSDT" and sum(xsdt) % 256 == 0
    tables = {}
    for (addr,) in struct.iter_unpack("<Q", xsdt[36:]):
        length = struct.unpack_from("<I", at(addr, 8), 4)[0]
        t = at(addr, length)
        assert sum(t) % 256 == 0
        tables[t[:4]] = t
    assert set(tables) == {b"FACP", b"APIC"}
    fadt = tables[b"FACP"]
    assert len(fadt) == 276 and fadt[8] == 6
    x_dsdt = struct.unpack_from("<Q", fadt, 140)[0]
    assert at(x_dsdt, 4) == b"DSDT"
    assert struct.unpack_from("<I", fadt, 112)[0] & acpi.FADT_HW_REDUCED_ACPI == 0
    assert struct.unpack_from("<II", fadt, 56)[0] == acpi.PM1A_EVT_BLK
    madt = tables[b"APIC"]
    assert struct.unpack_from("<II", madt, 36) == (0xFEE00000, 1)
    entries = madt[44:]
    kinds = []
    while entries:
        kinds.append((entries[0], entries[1]))
        entries = entries[entries[1]:]
    assert kinds == [(0, 8), (0, 8), (1, 12), (2, 10), (2, 10)]
    # Processor UID, APIC ID, flags (enabled) per processor.
    assert [struct.unpack_from("<BBBBI", madt, 44 + 8 * i)[2:] for i in range(2)] == [(0, 0, 1), (1, 1, 1)]
    assert struct.unpack_from("<BBBBII", madt, 44 + 16)[2:] == (2, 0, 0xFEC00000, 0)     # I/O APIC ID 2
    assert struct.unpack_from("<BBBBIH", madt, 44 + 28)[3:] == (0, 2, 0)      # IRQ 0 -> GSI 2
    assert struct.unpack_from("<BBBBIH", madt, 44 + 38)[3:] == (9, 9, 0x0D)   # the SCI: level, active high


def test_alignment():
    with pytest.raises(ValueError, match="16-byte"):
        acpi.build(0xE0004)


def test_acpi_pm_registers():
    from vtx.devices import AcpiPm
    offs = []
    pm = AcpiPm(on_sleep=offs.append)
    assert pm.io_read(0x604, 2) == 1                   # SCI_EN: in ACPI mode
    pm.io_write(0x602, 2, 0x0120)
    assert pm.io_read(0x600, 4) == 0x01200000          # PM1_STS 0, PM1_EN as written
    pm.io_write(0x604, 2, (5 << 10) | (1 << 13))       # SLP_TYP 5, SLP_EN
    assert offs == [5]
    assert pm.io_read(0x604, 2) == (5 << 10) | 1
    state = pm.get_state()
    fresh = AcpiPm()
    fresh.set_state(state)
    assert fresh.get_state() == state
