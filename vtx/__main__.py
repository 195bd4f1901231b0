"""Command line: ``vtx demo``, ``vtx run FILE``, ``vtx linux``, ``vtx bench`` (also as ``python -m vtx``)."""

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
    demo = sub.add_parser("demo", help="run a hello-world guest in real, protected and long mode under a "
                                       "Python hypervisor and show its VM exits")
    demo.add_argument("--mode", choices=("real", "protected", "long", "all"), default="all",
                      help="the processor mode to run the guest in (default: all three in turn)")
    demo.add_argument("--guest", choices=("hello", "c"), default="hello",
                      help="hello: the assembly greeting (default); c: a C guest built with gcc by vtx.cc "
                           "(protected and long mode)")
    run = sub.add_parser("run", help="run an ELF executable or a flat binary under a default hypervisor "
                                     "with a serial console (COM1 and the debug port E9H to standard output)")
    run.add_argument("file", help="an ELF file (loaded at its physical addresses, entered at its entry "
                                  "point) or a flat binary (loaded and entered at --load)")
    run.add_argument("--mode", choices=("real", "protected", "long"),
                     help="the processor mode at entry (default: long for ELF64, protected for ELF32 and "
                          "flat binaries)")
    run.add_argument("--memory", type=int, default=64, help="guest RAM in MiB (default 64)")
    run.add_argument("--load", type=lambda t: int(t, 0), default=0x1000,
                     help="where a flat binary goes and starts (default 0x1000)")
    run.add_argument("--max-instructions", type=int, default=None,
                     help="stop after this many instructions (default: no bound; Ctrl-C stops)")
    run.add_argument("--stats", action="store_true", help="print the VM exits per reason at the end")
    run.add_argument("--progress", action="store_true",
                     help="show the instructions run and their rate on standard error, once a second")
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
    from .overhead import cli as bench_cli
    bench_cli.add_parser(sub)
    args = parser.parse_args(argv)
    if args.subcommand == "bench":
        return bench_cli.main(args)
    if args.subcommand == "linux" and (args.cpus < 1 or (args.cpus > 1 and not args.apic)):
        parser.error("--cpus is at least 1, and more than one needs --apic")
    if args.subcommand == "linux":
        return _linux(args)
    if args.subcommand == "run":
        from .cli_run import run_file
        return run_file(args)
    if args.subcommand == "demo":
        from .demo import demo
        try:
            return demo(mode=args.mode, guest=args.guest)
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
