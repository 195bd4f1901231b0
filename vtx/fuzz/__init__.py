"""Adversarial campaigns against the vtx core: ``python -m vtx.fuzz``.

Two campaigns run real guest code on the modeled CPU and check invariants
after every case: ``streams`` (random, biased and mutated instruction
streams in real, protected and long mode) and ``vmcs`` (random mutations of
a known-good VMCS).  A parent process runs the cases in worker
subprocesses, notices crashes and hangs, minimizes what it finds and writes
standalone reproducer scripts.

Files: cli.py (options, the campaign loop, the summary), cases.py (case ids),
streams.py and vmcs.py (the generators), corpus.py (seed programs),
harness.py (build, run and check one case; embedded in reproducers),
worker.py (the subprocess side), pool.py (the parent's side of a worker),
minimize.py (delta debugging), report.py (summary and reproducer files).
"""
