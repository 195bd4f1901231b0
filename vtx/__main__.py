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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("demo", help="run a hello-world guest in real, protected and long mode under a "
                                "Python hypervisor and show its VM exits")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import demo
        try:
            return demo()
        except BrokenPipeError:          # the output went to a pipe that closed (| head)
            sys.stderr.close()
            return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
