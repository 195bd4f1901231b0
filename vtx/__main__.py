"""Command line: ``python -m vtx demo``."""

import argparse
import os
import sys


def main(argv=None):
    # Called as the "vtx" console script or as python -m vtx: name it as called.
    prog = "vtx" if os.path.basename(sys.argv[0]) == "vtx" else "python -m vtx"
    parser = argparse.ArgumentParser(prog=prog, description="vtx: a software model of Intel VT-x")
    from . import __version__
    parser.add_argument("--version", action="version", version=f"vtx {__version__}")
    sub = parser.add_subparsers(dest="subcommand", metavar="COMMAND")
    sub.add_parser("demo", help="run a hello-world guest in real, protected and long mode under a "
                                "Python hypervisor and show its VM exits")
    lx = sub.add_parser("linux", help="boot an unmodified Debian Linux kernel with a busybox initramfs "
                                      "to a shell under a Python hypervisor and show what its VM exits cost")
    lx.add_argument("--cache", help="where the kernel and busybox packages go (default $VTX_CACHE or "
                                    "~/.cache/vtx/linux)")
    lx.add_argument("--memory", type=int, default=256, help="guest RAM in MiB (default 256)")
    lx.add_argument("--cmdline", help="the kernel command line (default: vtx.linux.machine.DEFAULT_CMDLINE)")
    lx.add_argument("--command", default="uname -r; cat /proc/cpuinfo | head; echo ok",
                    help="what to type at the prompt after the boot")
    lx.add_argument("--interactive", action="store_true",
                    help="after the boot, read commands from the terminal until EOF")
    lx.add_argument("--quiet", action="store_true", help="do not echo the console while booting")
    lx.add_argument("--gdb", type=int, metavar="PORT",
                    help="before the boot, wait for gdb on this TCP port (target remote :PORT) and let it "
                         "drive the kernel until it detaches; the boot then goes on")
    lx.add_argument("--apic", action="store_true",
                    help="give the PC a local APIC and an I/O APIC (described by ACPI tables) instead of "
                         "the 8259 PIC alone")
    lx.add_argument("--cpus", type=int, default=1,
                    help="the number of vCPUs (default 1; more than one needs --apic): the first boots, "
                         "the kernel starts the others with INIT and start-up IPIs")
    args = parser.parse_args(argv)
    if args.subcommand == "linux" and (args.cpus < 1 or (args.cpus > 1 and not args.apic)):
        parser.error("--cpus is at least 1, and more than one needs --apic")
    if args.subcommand == "linux":
        return _linux(args)
    if args.subcommand == "demo":
        from .demo import demo
        try:
            return demo()
        except BrokenPipeError:          # the output went to a pipe that closed (| head)
            sys.stderr.close()
            return 0
    parser.print_help()
    return 2


def _linux(args):
    from .linux import LinuxAssetsUnavailable, fetch
    from .linux.machine import DEFAULT_CMDLINE, LinuxMachine
    try:
        assets = fetch(args.cache)
    except LinuxAssetsUnavailable as e:
        print(f"cannot fetch the Linux kernel and busybox: {e}", file=sys.stderr)
        return 1

    def echo(data):
        sys.stdout.write(data.decode("utf-8", "replace"))
        sys.stdout.flush()
    m = LinuxMachine(assets, memory=args.memory << 20, cmdline=args.cmdline or DEFAULT_CMDLINE,
                     console=None if args.quiet else echo, apic=args.apic, cpus=args.cpus)
    if args.gdb is not None:
        m.gdb_serve(args.gdb, ready=lambda port: print(f"waiting for gdb on port {port} "
                                                       f"(gdb -ex 'target remote :{port}')", flush=True))
    if not m.boot():
        print(f"\nthe boot did not reach the shell prompt ({m.platform.stopped or 'budget spent'})",
              file=sys.stderr)
        return 1
    if args.interactive:
        m.uart.on_output = echo
        for line in sys.stdin:
            m.command(line)
    elif args.command:
        out = m.command(args.command)
        if args.quiet:
            sys.stdout.write(out)
    print("\n")
    print(m.report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
