"""The parent's side of worker subprocesses.

:class:`Worker` starts ``python -m vtx.fuzz.worker``, sends it commands,
forwards its answer lines into a queue (a thread per worker, so the parent
waits on one queue for all of them) and reads its progress file.
:class:`Evaluator` runs single specs in a worker and turns a dead or stuck
worker into an outcome ("crash" with the signal, "hang"), restarting it;
triage and minimization use it.
"""

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

from .worker import IDLE, PROGRESS, open_progress

_PKG_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def worker_env():
    """The environment of a worker: the parent's, with the vtx the parent
    imported first on the path (the worker must test the same build)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = _PKG_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def describe_returncode(rc):
    if rc is None:
        return "still running"
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit status {rc}"


class Worker:
    _serial = 0

    def __init__(self, tmpdir, answers=None):
        Worker._serial += 1
        self.name = f"w{Worker._serial}"
        self.progress_path = os.path.join(tmpdir, f"{self.name}.progress")
        with open(self.progress_path, "wb") as f:
            f.write(PROGRESS.pack(IDLE, 0))
        self.progress_map = open_progress(self.progress_path)
        self.stderr_path = os.path.join(tmpdir, f"{self.name}.stderr")
        self.answers = answers if answers is not None else queue.Queue()
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vtx.fuzz.worker", self.progress_path],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=worker_env(),
                text=True, bufsize=1)
        self.batch = None                 # the batch it is running (cli.py's bookkeeping)
        self.beat = (0, time.monotonic())  # the last heartbeat seen and when it changed
        self.ready = False
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.answers.put((self, line))
        self.answers.put((self, None))    # end of file: the worker is gone

    def send(self, obj):
        """Send a command; False if the worker is already gone."""
        try:
            self.proc.stdin.write(json.dumps(obj) + "\n")
            self.proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def progress(self):
        """(index of the running case or IDLE/SINGLE, heartbeat)."""
        return PROGRESS.unpack_from(self.progress_map, 0)

    def stderr_tail(self, n=3000):
        try:
            with open(self.stderr_path, "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - n))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def close(self):
        if self.proc.poll() is None:
            self.send({"op": "exit"})
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (subprocess.TimeoutExpired, OSError):
                self.kill()
        self.progress_map.close()


class Evaluator:
    """Run one spec at a time in a subprocess.  run(spec) returns
    ("ok", result), ("crash", description, stderr tail) or ("hang", None,
    stderr tail).  The worker is reused while it stays healthy; fresh=True
    starts a new one first (to confirm a finding in a clean process)."""

    START_TIMEOUT = 60.0

    def __init__(self, tmpdir, timeout):
        self.tmpdir = tmpdir
        self.timeout = timeout
        self.worker = None
        self.runs = 0

    def _start(self):
        w = Worker(self.tmpdir)
        try:
            who, line = w.answers.get(timeout=self.START_TIMEOUT)
        except queue.Empty:
            w.kill()
            raise RuntimeError("a fuzz worker did not start within a minute") from None
        if line is None:
            w.kill()
            raise RuntimeError(f"a fuzz worker died while starting ({describe_returncode(w.proc.returncode)}):"
                               f"\n{w.stderr_tail()}")
        self.worker = w

    def run(self, spec, fresh=False):
        if fresh and self.worker is not None:
            self.worker.close()
            self.worker = None
        if self.worker is None:
            self._start()
        w = self.worker
        self.runs += 1
        if not w.send({"op": "case", "spec": spec}):
            return self._dead(w)
        try:
            _who, line = w.answers.get(timeout=self.timeout)
        except queue.Empty:
            w.kill()
            self.worker = None
            return ("hang", None, w.stderr_tail())
        if line is None:
            return self._dead(w)
        return ("ok", json.loads(line)["result"], "")

    def _dead(self, w):
        w.proc.wait()
        self.worker = None
        return ("crash", describe_returncode(w.proc.returncode), w.stderr_tail())

    def close(self):
        if self.worker is not None:
            self.worker.close()
            self.worker = None
