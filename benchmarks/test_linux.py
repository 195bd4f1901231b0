"""The Linux boot (issue 9): an unmodified Debian kernel with a busybox
initramfs to the shell prompt under vtx.pc's Python hypervisor.  One round:
the figure is wall time to the prompt, with the guest instructions and the
exits per reason in extra_info (and in the saved JSON)."""

import pytest

from conftest import record


def test_vtx_linux_boot(benchmark):
    from vtx.linux import LinuxAssetsUnavailable, fetch
    try:
        assets = fetch()
    except LinuxAssetsUnavailable as e:
        pytest.skip(f"the Debian kernel and busybox packages cannot be fetched here: {e}")
    from vtx.linux.machine import LinuxMachine
    machines = []

    def boot():
        m = LinuxMachine(assets)
        assert m.boot()
        machines.append(m)
        return m
    m = benchmark.pedantic(boot, rounds=1, iterations=1)
    stats = m.platform.stats()
    benchmark.extra_info["instructions"] = stats["instructions"]
    benchmark.extra_info["exits"] = {getattr(k, "name", str(k)): v for k, v in stats["exits"].items()}
    benchmark.extra_info["phases"] = {name: s["instructions"] for name, s, _ in m.phases}
    record(benchmark, "mips", lambda mean: stats["instructions"] / mean / 1e6)
    print()
    print(m.report())
