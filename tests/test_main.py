"""vtx/__main__.py: ``vtx linux --gdb PORT``: gdb gets the machine before
the boot, and the boot goes on after it detaches."""

import vtx.__main__ as main_mod


def test_linux_gdb_serves_before_the_boot(monkeypatch, capsys):
    calls = []

    class FakeMachine:
        def __init__(self, assets, **kwargs):
            calls.append(("made", assets))

        def gdb_serve(self, port, ready=None):
            ready(port)
            calls.append(("gdb", port))

        def boot(self):
            calls.append(("boot",))
            return False

        class platform:
            stopped = "a test"

    import vtx.linux
    import vtx.linux.machine
    monkeypatch.setattr(vtx.linux, "fetch", lambda cache: "assets")
    monkeypatch.setattr(vtx.linux.machine, "LinuxMachine", FakeMachine)
    assert main_mod.main(["linux", "--gdb", "4321", "--quiet"]) == 1
    assert calls == [("made", "assets"), ("gdb", 4321), ("boot",)]
    assert "waiting for gdb on port 4321 (gdb -ex 'target remote :4321')" in capsys.readouterr().out


def test_linux_without_assets_says_so(monkeypatch, capsys):
    # The subcommand is not confused with the linux subcommand's --command
    # option (it was: "vtx linux" printed the help).
    import vtx.linux

    def unavailable(cache):
        raise vtx.linux.LinuxAssetsUnavailable("no network")
    monkeypatch.setattr(vtx.linux, "fetch", unavailable)
    assert main_mod.main(["linux"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cannot fetch the Linux kernel and busybox:") and err.rstrip().endswith("no network")
