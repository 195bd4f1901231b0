"""Command line: ``python -m vtx demo``."""

import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m vtx", description="vtx: a software model of Intel VT-x")
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
