"""The ACPI tables firmware gives an OS to describe the interrupt controllers.

A PC with a local APIC and an I/O APIC tells the OS where they are through
ACPI (ACPI Specification 6.4): the Root System Description Pointer (RSDP,
5.2.5) points to the Extended System Description Table (XSDT, 5.2.8), which
lists the Fixed ACPI Description Table (FADT, 5.2.9) and the Multiple APIC
Description Table (MADT, 5.2.12).  The model's PC is "hardware-reduced"
is not "hardware-reduced" (it has the 8259s and the 8254, which an OS
bypasses on such a platform), so it has the two register blocks an OS
requires of fixed ACPI hardware (PM1a event and control, served by
:class:`vtx.devices.AcpiPm`); its FADT points to a DSDT (5.2.11.1) that
defines nothing.

:func:`build` lays the tables out at a guest-physical address and returns the
bytes and the RSDP's address (for boot_params.acpi_rsdp_addr, or found by an
OS that scans the BIOS area E0000H-FFFFFH for "RSD PTR ").
"""

import struct

OEM_ID = b"VTX   "            # 6 bytes
OEM_TABLE_ID = b"VTXPC   "     # 8 bytes
CREATOR_ID = b"VTX "
FADT_HW_REDUCED_ACPI = 1 << 20
#: FADT flags: not hardware-reduced (an OS bypasses the 8259 and the 8254 on a
#: hardware-reduced platform, and this PC has both), WBINVD works (bit 0).
FADT_FLAGS = 1
MADT_PCAT_COMPAT = 1           # the 8259 pair is present (and masked by an OS that uses the I/O APIC)


def _checksum(data):
    """The byte that makes ``data`` sum to 0 mod 256 (5.2.5.3, 5.2.6)."""
    return (-sum(data)) & 0xFF


def _table(signature, revision, body):
    """A table with the common header (5.2.6): signature, length, revision,
    checksum, OEM ID, OEM table ID, OEM revision, creator ID and revision."""
    length = 36 + len(body)
    head = struct.pack("<4sIBB6s8sI4sI", signature, length, revision, 0, OEM_ID, OEM_TABLE_ID, 1,
                       CREATOR_ID, 1)
    data = bytearray(head + body)
    data[9] = _checksum(data)
    return bytes(data)


#: MPS INTI flags (ACPI 6.4 Table 5.50): active high (polarity 01),
#: level-triggered (trigger mode 11).
INTI_LEVEL_HIGH = 0x0D
#: The Interrupt Source Overrides: IRQ 0 on GSI 2 (the PC convention), and
#: the SCI (IRQ 9) level-triggered active high.  Without the second an OS
#: takes the SCI as ACPI's default, active low (5.2.12.5), and the I/O
#: APIC's input, which nothing drives (the model has no SCI events), would
#: read as asserted: an interrupt storm on IRQ 9.
OVERRIDES = ((0, 2, 0), (9, 9, INTI_LEVEL_HIGH))


def madt(lapic_base=0xFEE00000, apic_ids=(0,), ioapic_base=0xFEC00000, ioapic_id=None, overrides=OVERRIDES):
    """The MADT (5.2.12): the local APIC address and flags, a Processor Local
    APIC structure per processor (type 0, enabled; ACPI processor UIDs 0 to
    N-1 in the order of ``apic_ids``), the I/O APIC (type 1, GSI base 0, ID
    after the highest APIC ID unless given), and Interrupt Source Overrides
    (type 2: ISA IRQ -> GSI, with MPS INTI flags; :data:`OVERRIDES`)."""
    body = bytearray(struct.pack("<II", lapic_base, MADT_PCAT_COMPAT))
    for i, apic_id in enumerate(apic_ids):
        body += struct.pack("<BBBBI", 0, 8, i, apic_id, 1)
    if ioapic_base is not None:
        if ioapic_id is None:
            ioapic_id = max(apic_ids) + 1
        body += struct.pack("<BBBBII", 1, 12, ioapic_id, 0, ioapic_base, 0)
    for irq, gsi, flags in overrides:
        body += struct.pack("<BBBBIH", 2, 10, 0, irq, gsi, flags)
    return _table(b"APIC", 5, bytes(body))


def dsdt():
    """A DSDT with no definition blocks (an empty AML body)."""
    return _table(b"DSDT", 2, b"")


#: The ACPI fixed-hardware registers the FADT points to (I/O ports, 4.8.3):
#: the PM1a event block (status and enable, 2 bytes each) and the PM1a
#: control block; vtx.devices.AcpiPm serves them.
PM1A_EVT_BLK = 0x600
PM1A_CNT_BLK = 0x604


def fadt(dsdt_address):
    """A revision 6 FADT (5.2.9, 276 bytes): X_DSDT (offset 140) points to the
    DSDT; SCI on IRQ 9; the PM1a event and control blocks at
    :data:`PM1A_EVT_BLK` and :data:`PM1A_CNT_BLK` (the two fixed-hardware
    register blocks an OS requires); no SMI command port, so the platform is
    in ACPI mode from the start (SCI_EN reads 1); no PM timer, no GPE blocks.
    IAPC_BOOT_ARCH (offset 109) says legacy devices (bit 0) and an 8042
    (bit 1)."""
    body = bytearray(276 - 36)

    def put(offset, fmt, value):
        struct.pack_into(fmt, body, offset - 36, value)
    put(40, "<I", dsdt_address if dsdt_address < 1 << 32 else 0)     # DSDT
    put(109, "<H", 0x3)                                              # IAPC_BOOT_ARCH
    put(46, "<H", 9)                                                 # SCI_INT: IRQ 9, as PCs have it
    put(56, "<I", PM1A_EVT_BLK)                                      # PM1a_EVT_BLK
    put(64, "<I", PM1A_CNT_BLK)                                      # PM1a_CNT_BLK
    put(88, "<B", 4)                                                 # PM1_EVT_LEN
    put(89, "<B", 2)                                                 # PM1_CNT_LEN
    put(112, "<I", FADT_FLAGS)                                       # Flags
    put(131, "<B", 4)                                                # FADT minor version (6.4)
    put(140, "<Q", dsdt_address)                                     # X_DSDT
    return _table(b"FACP", 6, bytes(body))


def build(at, lapic_base=0xFEE00000, apic_ids=(0,), ioapic_base=0xFEC00000, ioapic_id=None):
    """The RSDP, XSDT, FADT, DSDT and MADT laid out from guest-physical ``at``
    (16-byte aligned): returns ``(bytes, rsdp_address)``."""
    if at % 16:
        raise ValueError("the ACPI tables start at a 16-byte boundary (the RSDP's alignment)")
    rsdp_at = at
    xsdt_at = at + 64
    dsdt_at = xsdt_at + 64
    fadt_at = dsdt_at + 64
    madt_at = fadt_at + 288
    the_madt = madt(lapic_base, apic_ids, ioapic_base, ioapic_id)
    xsdt = _table(b"XSDT", 1, struct.pack("<QQ", fadt_at, madt_at))
    # RSDP revision 2 (5.2.5.3): the first 20 bytes checksum to 0, and all 36.
    rsdp = bytearray(struct.pack("<8sB6sBIIQB3s", b"RSD PTR ", 0, OEM_ID, 2, 0, 36, xsdt_at, 0, b"\0\0\0"))
    rsdp[8] = _checksum(rsdp[:20])
    rsdp[32] = _checksum(rsdp)
    out = bytearray(madt_at - at + len(the_madt))
    for where, data in ((rsdp_at, rsdp), (xsdt_at, xsdt), (dsdt_at, dsdt()), (fadt_at, fadt(dsdt_at)),
                        (madt_at, the_madt)):
        out[where - at:where - at + len(data)] = data
    return bytes(out), rsdp_at
