"""Distributed training plumbing: launch Horovod and torchrun jobs, and the alpha-beta cost model (notebooks/13).

Two halves:

- :func:`launch` runs ``horovodrun -np N --gloo`` (or ``torchrun``) on a training script
  with this Python, waits with a timeout, splits the output by rank and reads the JSON result
  file each rank writes. When a worker dies it raises :class:`HorovodRunError`
  naming the rank and its exit code, never hangs.
- The alpha-beta model of a ring allreduce, :func:`ring_allreduce_time`,
  :func:`fit_alpha_beta` and :func:`scaling_efficiency`, plus the interconnects
  the notebook extrapolates to (:data:`INTERCONNECTS`).

``python -m dlcourse.dist horovodrun ARGS...`` is ``horovodrun ARGS...``, started a
few seconds faster: before launching, horovodrun checks that Horovod was built with
Gloo by importing its framework extensions in a child process, TensorFlow first
(about 5 s). We let it ask PyTorch first (about 1 s); the answer is the same.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"

# A rank's line: ``[1]<stdout>:...`` from horovodrun, ``[default1]:...`` from ``torchrun --tee 3``.
_RANK_LINE = re.compile(r"^\[(?:(\d+)\]<(?:stdout|stderr)>|default(\d+)\]):(.*)$")
# The launchers' own words when a worker exits with a non-zero status: horovodrun (Gloo), then
# torchrun's "Root Cause (first observed failure)" block.
_FAILED = (re.compile(r"Process name: (\d+)\s*\nExit code: (-?\d+)"),
           re.compile(r"Process (\d+) exit with status code (-?\d+)"),
           re.compile(r"Root Cause[^\n]*\n(?:.*\n)*?\s*rank\s*: (\d+)[^\n]*\n\s*exitcode\s*: (-?\d+)"))
LAUNCHERS = ("horovodrun", "torchrun")


class HorovodRunError(RuntimeError):
    """A distributed job (horovodrun or torchrun) failed or timed out; ``rank`` is the first rank that died (None if unknown)."""

    def __init__(self, message: str, rank: int | None = None, returncode: int | None = None,
                 output: str = ""):
        super().__init__(message)
        self.rank, self.returncode, self.output = rank, returncode, output


@dataclass
class RunResult:
    """What a finished distributed job left: its command, time, output per rank and result files."""

    command: list[str]
    np: int
    seconds: float
    output: str
    per_rank: dict[int, list[str]] = field(default_factory=dict)
    results: list[dict] = field(default_factory=list)

    def log(self, rank: int) -> str:
        """Everything rank ``rank`` printed (stdout and stderr, in order)."""
        return "\n".join(self.per_rank.get(rank, []))


def display_command(np_: int, script: str | Path, args=(), launcher: str = "horovodrun") -> str:
    """The command line a student would type for this job, without machine paths."""
    script = Path(script)
    shown = script.relative_to(ROOT) if script.is_absolute() and script.is_relative_to(ROOT) else script
    if launcher == "torchrun":
        return " ".join(["torchrun", "--standalone", f"--nproc-per-node={np_}", str(shown), *map(str, args)])
    return " ".join(["horovodrun", "-np", str(np_), "-H", f"localhost:{np_}", "--gloo", "python",
                     str(shown), *map(str, args)])


def split_by_rank(output: str) -> tuple[dict[int, list[str]], list[str]]:
    """Split a launcher's output (``[rank]<stdout>:line`` or ``[default<rank>]:line``) into lines
    per rank and the launcher's own lines."""
    per_rank: dict[int, list[str]] = {}
    launcher = []
    for line in output.splitlines():
        m = _RANK_LINE.match(line)
        if m:
            per_rank.setdefault(int(m.group(1) or m.group(2)), []).append(m.group(3))
        elif line.strip():
            launcher.append(line)
    return per_rank, launcher


def failed_rank(output: str) -> tuple[int | None, int | None]:
    """The first rank the launcher reports as failed, and its exit code; (None, None) if none."""
    for pattern in _FAILED:
        m = pattern.search(output)
        if m:
            return int(m.group(1)), int(m.group(2))
    return None, None


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "an unknown status"
    if code < 0 or code > 128:
        signum = -code if code < 0 else code - 128
        try:
            return f"exit code {code} (killed by {signal.Signals(signum).name})"
        except ValueError:
            pass
    return f"exit code {code}"


def read_results(out: str | Path, np_: int) -> list[dict]:
    """The ``rank<N>.json`` files a job wrote to ``out``, in rank order (missing ones skipped)."""
    out = Path(out)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(np_)
            if (out / f"rank{r}.json").exists()]


def horovod_status() -> tuple[bool, str]:
    """Is Horovod installed in this environment? ``(True, version line)`` or ``(False, what to do)``.

    `make lab` builds Horovod in the background (scripts/setup_env.py), writing its progress to
    ``horovod-build.log`` in the environment's folder, so a student can open notebook 13 before
    the build is done; this says which case we are in. Introduced in notebooks/13; the doctor
    uses it too.
    """
    if importlib.util.find_spec("horovod") is not None:
        from importlib.metadata import version

        return True, f"Horovod {version('horovod')} is installed"
    env = Path(sys.prefix)
    log, lock = env / "horovod-build.log", env / ".horovod-build.lock"
    building = False
    if lock.exists():
        with open(lock, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fh, fcntl.LOCK_UN)
            except BlockingIOError:
                building = True
    if building:
        return False, (f"Horovod is still being built in the background (started by `make lab`; 5-10 minutes on "
                       f"2 cores). Progress: {log}. Run `make horovod` to wait for it, then restart the kernel.")
    if log.exists():
        return False, (f"Horovod is not installed: its last build stopped before the end (see the end of {log}). "
                       "Run `make horovod` in the course folder to build it again.")
    return False, ("Horovod is not installed. Run `make horovod` in the course folder: it builds Horovod once "
                   "(5-10 minutes on 2 cores) and caches it.")


def launch(script: str | Path, args=(), np: int = 2, out: str | Path | None = None, timeout: float = 300,
           threads_per_rank: int = 1, env: dict | None = None, python: str | None = None,
           launcher: str = "horovodrun") -> RunResult:
    """Run ``horovodrun -np {np} --gloo python {script} {args}`` on this machine and wait for it.

    - ``launcher="torchrun"`` runs ``torchrun --standalone --nproc-per-node {np}`` instead, for
      a script written with torch.distributed (scripts/ddp_train_torch.py); it needs no Horovod.

    - ``out``: a folder passed to the script as ``--out``; each rank writes ``rank<N>.json``
      there, returned in ``RunResult.results``.
    - ``threads_per_rank``: ``OMP_NUM_THREADS`` for every worker (one thread per rank on a
      small CPU, so that ranks do not fight for cores).
    - ``timeout``: seconds; past it the whole process group is killed and
      :class:`HorovodRunError` is raised, so a stuck collective never hangs a notebook.

    A worker that dies (exception, ``os._exit``, SIGKILL) makes horovodrun stop the others;
    we then raise :class:`HorovodRunError` whose message names the rank, its exit code and
    the last lines it printed.
    """
    if launcher not in LAUNCHERS:
        raise ValueError(f"launcher must be one of {LAUNCHERS}, not {launcher!r}")
    if python is None and launcher == "horovodrun":
        ready, message = horovod_status()
        if not ready:
            raise HorovodRunError(message)
    python = python or sys.executable
    script = Path(script)
    args = [str(a) for a in args]
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        args += ["--out", str(out)]
    if launcher == "horovodrun":
        command = [python, "-m", "dlcourse.dist", "horovodrun", "-np", str(np), "-H", f"localhost:{np}", "--gloo",
                   python, str(script), *args]
    else:  # --tee 3: every rank's stdout and stderr on ours, each line prefixed with its rank
        command = [python, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={np}", "--tee", "3",
                   str(script), *args]
    run_env = {**os.environ, **(env or {})}
    run_env.update(OMP_NUM_THREADS=str(threads_per_rank), PYTHONUNBUFFERED="1")
    run_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ logs
    run_env.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    # `python -m dlcourse.dist` must find this package even when it is not installed.
    run_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), run_env.get("PYTHONPATH", "")) if p)
    start = time.time()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=run_env, cwd=ROOT, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # horovodrun and every worker it started
        output, _ = proc.communicate()
        per_rank, _ = split_by_rank(output)
        raise HorovodRunError(f"{launcher} job {script.name} (-np {np}) did not finish within {timeout:.0f} s "
                              f"and was killed. Ranks that printed something: {sorted(per_rank)}.",
                              returncode=None, output=output) from None
    seconds = time.time() - start
    per_rank, _ = split_by_rank(output)
    if proc.returncode != 0:
        rank, code = failed_rank(output)
        tail = "\n".join(per_rank.get(rank, [])[-8:]) if rank is not None else output[-1500:]
        who = f"rank {rank} died with {_describe_exit(code)}" if rank is not None else \
            f"{launcher} exited with code {proc.returncode}"
        raise HorovodRunError(f"{launcher} job {script.name} (-np {np}) failed: {who}. Last output:\n{tail}",
                              rank=rank, returncode=proc.returncode, output=output)
    results = read_results(out, np) if out is not None else []
    return RunResult(command=command, np=np, seconds=seconds, output=output, per_rank=per_rank,
                     results=results)


# --------------------------------------------------------------------------- alpha-beta model
def ring_allreduce_time(n_bytes, p, alpha: float, beta: float, n_buffers=1):
    """Time of a ring allreduce of ``n_bytes`` over ``p`` workers (notebooks/13).

    ``2(p-1)`` steps (reduce-scatter, then allgather), each paying the latency ``alpha``
    (seconds) once per buffer, and each worker sending and receiving ``2(p-1)/p * n``
    bytes at ``beta`` seconds per byte:

        T(n, p) = n_buffers * 2(p-1) * alpha + 2(p-1)/p * n * beta
    """
    n_bytes, p = np.asarray(n_bytes, dtype=float), np.asarray(p, dtype=float)
    return n_buffers * 2 * (p - 1) * alpha + 2 * (p - 1) / p * n_bytes * beta


def fit_alpha_beta(n_bytes, seconds, p: int = 2, relative: bool = True) -> tuple[float, float]:
    """Least-squares ``(alpha, beta)`` of :func:`ring_allreduce_time` from measured times.

    ``relative=True`` minimizes the *relative* error (each equation divided by its
    measured time), so that microsecond-long small messages count as much as
    millisecond-long big ones; otherwise the big messages alone would set ``alpha``.
    """
    n_bytes, seconds = np.asarray(n_bytes, dtype=float), np.asarray(seconds, dtype=float)
    if n_bytes.shape != seconds.shape or n_bytes.size < 2:
        raise ValueError("need at least two (size, time) pairs of equal length")
    if p < 2:
        raise ValueError("an allreduce over one worker costs nothing: p must be >= 2")
    A = np.stack([np.full_like(n_bytes, 2.0 * (p - 1)), 2.0 * (p - 1) / p * n_bytes], axis=1)
    b = seconds
    if relative:
        A, b = A / seconds[:, None], np.ones_like(seconds)
    (alpha, beta), *_ = np.linalg.lstsq(A, b, rcond=None)
    return float(alpha), float(beta)


def scaling_efficiency(p, n_bytes, t_compute: float, alpha: float, beta: float, overlap: float = 0.0,
                       n_buffers=1):
    """Predicted weak-scaling efficiency of synchronous data-parallel SGD on ``p`` workers.

    Each step computes for ``t_compute`` seconds, then averages ``n_bytes`` of gradients
    with a ring allreduce; a fraction ``overlap`` of that communication hides behind the
    backward pass. Efficiency = (time of a step on one worker) / (time of a step on p):

        E(p) = t_compute / (t_compute + (1 - overlap) * T(n, p))
    """
    if not 0.0 <= overlap <= 1.0:
        raise ValueError(f"overlap is a fraction in [0, 1], got {overlap}")
    t_comm = ring_allreduce_time(n_bytes, p, alpha, beta, n_buffers)
    return t_compute / (t_compute + (1.0 - overlap) * t_comm)


# Interconnects for the extrapolation. beta = 1 / (bandwidth one worker can send with in a
# ring); alpha = the time of one ring step for a tiny message (link latency plus software).
INTERCONNECTS = {
    "NVLink (A100, in a node)": {
        "alpha": 5e-6, "beta": 1 / 240e9,
        "source": "NVIDIA A100 datasheet: NVLink 600 GB/s total, 300 GB/s each way; NCCL allreduce "
                  "reaches ~240 GB/s bus bandwidth on 8 A100s; ~5 us per ring step is NCCL's small-message latency"},
    "InfiniBand HDR (200 Gb/s)": {
        "alpha": 5e-6, "beta": 1 / 25e9,
        "source": "InfiniBand HDR: 200 Gb/s = 25 GB/s per port; ~1-2 us MPI latency, ~5 us per NCCL ring step"},
    "25 GbE (RoCE)": {
        "alpha": 10e-6, "beta": 1 / 3.125e9,
        "source": "IEEE 802.3by 25 Gb/s Ethernet = 3.125 GB/s; ~10 us per step with RoCE "
                  "(the network of Horovod's 512-GPU benchmark)"},
}


def _horovodrun_main(argv: list[str]) -> None:
    """``horovodrun`` with the Gloo build check asking PyTorch first (see the module docstring)."""
    try:
        import horovod.common.util as hvd_util

        if "torch" in hvd_util.EXTENSIONS:
            hvd_util.EXTENSIONS[:] = ["torch"] + [e for e in hvd_util.EXTENSIONS if e != "torch"]
    except (ImportError, AttributeError):
        pass  # another Horovod version: the check just takes its usual time
    from horovod.runner.launch import run_commandline

    sys.argv = ["horovodrun", *argv]
    run_commandline()


if __name__ == "__main__":  # the guard matters: horovodrun starts helper processes with multiprocessing
    if len(sys.argv) < 2 or sys.argv[1] != "horovodrun":
        sys.exit("usage: python -m dlcourse.dist horovodrun -np N ... python script.py ...")
    _horovodrun_main(sys.argv[2:])
