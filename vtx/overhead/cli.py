"""``python -m vtx bench``: run the workload suite, print the table, write
JSON, CSV and charts."""

import sys

from .model import HOSTS
from .profiles import profile_names
from .workloads import DEFAULT_WORKLOADS, VARIANTS, WORKLOADS


def add_parser(sub):
    b = sub.add_parser("bench", help="run the exit-overhead workload suite and price it under the cost "
                                     "profiles of several processor generations")
    b.add_argument("names", nargs="*", metavar="NAME",
                   help=f"workloads to run (default: {', '.join(DEFAULT_WORKLOADS)}; also linux_boot, "
                        f"a Linux boot to the shell, which takes minutes)")
    b.add_argument("--profile", action="append", metavar="P",
                   help=f"a profile name ({', '.join(profile_names())}) or a TOML file; repeat for several "
                        f"(default all shipped)")
    b.add_argument("--host", default="type2", choices=HOSTS,
                   help="how the Python hypervisor's exits are priced (default type2: a hosted VMM)")
    b.add_argument("-n", "--ops", type=int, default=5000, help="operations per workload (default 5000)")
    b.add_argument("--json", metavar="F", help="write the results as JSON to F")
    b.add_argument("--csv", metavar="F", help="write one row per workload and setting as CSV to F")
    b.add_argument("--chart", metavar="DIR", help="write charts to DIR (needs matplotlib)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    return b


def _progress(total, quiet):
    """A progress callback: rich if installed, else tqdm, else plain lines
    on stderr."""
    if quiet:
        return None, lambda: None
    try:
        from rich.console import Console
        from rich.progress import Progress
        # On stderr, as tqdm's: stdout is the table alone, fit to redirect
        # (rich on a stdout that is not a terminal leaves a blank line).
        p = Progress(transient=True, console=Console(stderr=True))
        p.start()
        task = p.add_task("bench", total=total)

        def step(done, total, label):
            p.update(task, completed=done, description=label)
        return step, p.stop
    except ImportError:
        pass
    try:
        from tqdm import tqdm
        bar = tqdm(total=total, file=sys.stderr, leave=False)

        def step(done, total, label):
            bar.set_description(label)
            bar.update(done - bar.n)
        return step, bar.close
    except ImportError:
        pass

    def step(done, total, label):
        print(f"[{done}/{total}] {label}", file=sys.stderr, flush=True)
    return step, lambda: None


def main(args):
    from .suite import run_suite
    names = args.names or list(DEFAULT_WORKLOADS)
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        print(f"no workload {', '.join(unknown)}; the suite has {', '.join(WORKLOADS)}", file=sys.stderr)
        return 2
    if args.ops < 1:
        print("--ops is a positive number", file=sys.stderr)
        return 2
    step, done = _progress(len(names) * len(VARIANTS), args.no_progress)
    try:
        result = run_suite(names, args.ops, args.profile, args.host, step)
    except ValueError as e:
        done()
        print(e, file=sys.stderr)
        return 2
    done()
    print(result.table())
    if args.json:
        result.to_json(args.json)
        print(f"JSON: {args.json}")
    if args.csv:
        result.to_csv(args.csv)
        print(f"CSV: {args.csv}")
    if args.chart:
        try:
            for path in result.charts(args.chart):
                print(f"chart: {path}")
        except ImportError:
            print("charts need matplotlib (pip install vtx[bench])", file=sys.stderr)
    return 0
