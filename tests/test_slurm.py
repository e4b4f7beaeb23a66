"""A real Slurm cluster of one node, started on loopback from Debian's packages (munge,
slurmctld, slurmd), runs scripts/slurm/train.sbatch with both launchers: a 2-task job
under horovodrun and the same job under torchrun (DDP). Both must give every rank the
same weights, and the two launchers the same weights as each other.

`.ci/run` installs the packages and sets DLCOURSE_REQUIRE_SLURM=1, so in CI a missing
Slurm fails instead of skipping. The cluster lives in a temporary folder with its own
munge key, ports and state, and is stopped afterwards; nothing in /etc is used.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from dlcourse import data

ROOT = Path(__file__).resolve().parent.parent
SBATCH = ROOT / "scripts" / "slurm" / "train.sbatch"
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "sinfo", "scontrol")
TINY = ["--train-size", "1024", "--test-size", "200", "--epochs", "1", "--dtype", "float64"]


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def _require_slurm() -> dict[str, str]:
    found = {name: _which(name) for name in DAEMONS + CLIENTS}
    missing = [name for name, path in found.items() if path is None]
    why = None
    if missing:
        why = f"Slurm is not installed (missing {', '.join(missing)}): apt-get install munge slurmctld slurmd slurm-client"
    elif os.geteuid() != 0:
        why = "starting slurmd needs root (it runs jobs as their user)"
    if why:
        if os.environ.get("DLCOURSE_REQUIRE_SLURM") == "1":
            pytest.fail(why)
        pytest.skip(why)
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _slurm_conf(d: Path, host: str, cpus: int) -> str:
    return "\n".join([
        "ClusterName=dlcourse-test",
        f"SlurmctldHost={host}(127.0.0.1)",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN",
        "PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={d}/munge.sock",
        "SlurmUser=root", "SlurmdUser=root",
        f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
        f"StateSaveLocation={d}/state", f"SlurmdSpoolDir={d}/spool",
        f"SlurmctldPidFile={d}/slurmctld.pid", f"SlurmdPidFile={d}/slurmd.pid",
        f"SlurmctldLogFile={d}/slurmctld.log", f"SlurmdLogFile={d}/slurmd.log",
        f"PlugStackConfig={d}/plugstack.conf",
        # No cgroups (containers rarely allow them): processes tracked by their parent, no binding.
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU", "SchedulerType=sched/builtin",
        "MpiDefault=none", "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none", "ReturnToService=2", ""])


def _log_tails(d: Path) -> str:
    tails = []
    for name in ("munged.log", "slurmctld.log", "slurmd.log"):
        path = d / name
        if path.exists():
            tails.append(f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-15:]))
    return "\n".join(tails)


@pytest.fixture(scope="module")
def cluster():
    """``(env, folder)`` of a running one-node cluster; ``env`` has ``SLURM_CONF`` for the clients."""
    binaries = _require_slurm()
    # munged insists that everyone may traverse its socket's folder and nobody else may write it.
    d = Path(tempfile.mkdtemp(prefix="dlcourse-slurm-"))
    d.chmod(0o711)
    (d / "state").mkdir()
    (d / "spool").mkdir()
    (d / "plugstack.conf").write_text("")
    key = d / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    conf = d / "slurm.conf"
    host = socket.gethostname().split(".")[0]
    conf.write_text(_slurm_conf(d, host, os.cpu_count() or 2))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    env.pop("SLURM_JOB_ID", None)  # a test run inside a Slurm job must not talk to that job's cluster
    started = []
    try:
        subprocess.run([binaries["munged"], f"--socket={d}/munge.sock", f"--key-file={key}",
                        f"--pid-file={d}/munged.pid", f"--log-file={d}/munged.log",
                        f"--seed-file={d}/munged.seed"], check=True, env=env, timeout=30)
        started.append(d / "munged.pid")
        for daemon in ("slurmctld", "slurmd"):
            subprocess.run([binaries[daemon], "-f", str(conf)], check=True, env=env, timeout=30)
            started.append(d / f"{daemon}.pid")
        deadline = time.time() + 60
        state = ""
        while time.time() < deadline:
            state = subprocess.run([binaries["sinfo"], "-h", "-o", "%T"], env=env, capture_output=True,
                                   text=True).stdout.strip()
            if state == "idle":
                break
            time.sleep(1)
        else:
            pytest.fail(f"the test cluster's node did not become idle in 60 s (state {state!r})\n{_log_tails(d)}")
        yield env, d
    finally:
        for pid_file in reversed(started):
            try:
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
            except (OSError, ValueError):
                pass
        time.sleep(1)
        shutil.rmtree(d, ignore_errors=True)


def _submit(cluster, launcher: str, out: Path) -> tuple[list[dict], list[np.ndarray]]:
    env, d = cluster
    log = d / f"{launcher}.out"
    job_env = {**env, "OUT": str(out), "PYTHON": sys.executable}
    start = time.time()
    proc = subprocess.run(["sbatch", "--wait", "--parsable", f"--output={log}", f"--chdir={ROOT}",
                           str(SBATCH), launcher, *TINY], env=job_env, capture_output=True, text=True,
                          timeout=300)
    output = log.read_text(errors="replace") if log.exists() else "(no job output)"
    assert proc.returncode == 0, (f"sbatch {launcher} failed ({proc.returncode}): {proc.stderr}\n{output}\n"
                                  f"{_log_tails(d)}")
    print(f"{launcher} job {proc.stdout.strip()}: {time.time() - start:.1f} s from sbatch to its end")
    results = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    params = [np.load(out / f"params_rank{r}.npy") for r in range(2)]
    return results, params


@pytest.mark.timeout(600)
def test_sbatch_runs_the_course_worker_with_horovod_and_with_torchrun(cluster, tmp_path):
    try:
        data.fetch("mnist", progress=False)
    except data.DataError as exc:
        pytest.skip(f"MNIST is not available: {exc}")
    pytest.importorskip("horovod.torch", reason="Horovod with PyTorch is not installed (run `make horovod`)")
    by_launcher = {}
    for launcher, name in (("horovod", "horovodrun"), ("torchrun", "torchrun")):
        results, params = _submit(cluster, launcher, tmp_path / launcher)
        assert [r["rank"] for r in results] == [0, 1] and {r["size"] for r in results} == {2}
        assert {r["launcher"] for r in results} == {name}
        assert results[0]["steps"] == results[1]["steps"] == 1024 // (2 * 64)
        np.testing.assert_array_equal(params[0], params[1])     # data parallelism: one model, two ranks
        by_launcher[launcher] = params[0]
    # Same data, order, schedule and averaging: the launchers differ only in who adds the gradients.
    np.testing.assert_allclose(by_launcher["horovod"], by_launcher["torchrun"], rtol=0, atol=1e-10)


def test_sbatch_script_refuses_an_unknown_launcher(cluster, tmp_path):
    env, d = cluster
    proc = subprocess.run(["sbatch", "--wait", f"--output={tmp_path}/bad.out", f"--chdir={ROOT}", str(SBATCH),
                           "mpirun"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "usage: sbatch scripts/slurm/train.sbatch horovod|torchrun" in (tmp_path / "bad.out").read_text()
