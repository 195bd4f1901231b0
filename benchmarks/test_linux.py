"""The Linux boot (issue 9): an unmodified Debian kernel with a busybox
initramfs to the shell prompt under vtx.pc's Python hypervisor.  One round:
the figure is wall time to the prompt, with the guest instructions and the
exits per reason in extra_info (and in the saved JSON).  Three PCs: the 8259
PIC alone, the local APIC and I/O APIC, and those with two vCPUs (the IPIs
per delivery mode in extra_info)."""

import pytest

from conftest import record


@pytest.mark.parametrize("apic, cpus", [(False, 1), (True, 1), (True, 2)], ids=["pic", "apic", "apic-2cpus"])
def test_vtx_linux_boot(benchmark, apic, cpus):
    from vtx.linux import LinuxAssetsUnavailable, fetch
    try:
        assets = fetch()
    except LinuxAssetsUnavailable as e:
        pytest.skip(f"the Debian kernel and busybox packages cannot be fetched here: {e}")
    from vtx.linux.machine import LinuxMachine
    machines = []

    def boot():
        m = LinuxMachine(assets, apic=apic, cpus=cpus)
        assert m.boot()
        machines.append(m)
        return m
    m = benchmark.pedantic(boot, rounds=1, iterations=1)
    stats = m.platform.stats()
    benchmark.extra_info["instructions"] = stats["instructions"]
    benchmark.extra_info["exits"] = {getattr(k, "name", str(k)): v for k, v in stats["exits"].items()}
    benchmark.extra_info["phases"] = {name: s["instructions"] for name, s, _ in m.phases}
    benchmark.extra_info["ipis"] = dict(m.ipis)
    record(benchmark, "mips", lambda mean: stats["instructions"] / mean / 1e6)
    print()
    print(m.report())
