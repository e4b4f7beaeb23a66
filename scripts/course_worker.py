"""What the course's two distributed training scripts share (notebooks/13).

``hvd_train_torch.py`` (Horovod) and ``ddp_train_torch.py`` (torchrun and PyTorch's
DistributedDataParallel) train the same small CNN on the same MNIST images, in the same
order, with the same learning-rate schedule, and write the same result files; this
module holds those parts, so that the two scripts differ only in their distributed lines
and their results can be compared number for number. Nothing here knows about Horovod
or torch.distributed: every function takes the rank and the number of ranks as numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the course package, when not installed
from dlcourse import data  # noqa: E402
from dlcourse.fsutil import atomic_write  # noqa: E402


def arg_parser(description: str) -> argparse.ArgumentParser:
    """The options both training scripts accept."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", required=True, help="folder for the result files and the checkpoint")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--train-size", type=int, default=6000, help="training images used (<= 60000)")
    p.add_argument("--test-size", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=64, help="images per rank per step")
    p.add_argument("--base-lr", type=float, default=0.05, help="learning rate for a batch of --base-batch")
    p.add_argument("--base-batch", type=int, default=64)
    p.add_argument("--warmup-epochs", type=float, default=0.5)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pin-core", action="store_true",
                   help="bind each rank (all its threads) to its own CPU core, chosen by its local rank")
    return p


def pin_to_core(local_rank: int) -> int:
    """Bind this process, every thread it has so far, to one CPU core: the ``local_rank``-th of those
    it may use. Threads started later inherit it. Returns the core.

    On a CPU each rank is a worker the way a GPU is on a GPU node, and it should own its core: left
    unpinned, the scheduler moves ranks and Horovod's background threads between cores, and a rank
    that loses its core for a moment holds up the other at the next allreduce (BENCHMARKS.md measures
    the difference). Call it after ``hvd.init()``, so that Horovod's own threads are pinned too."""
    cores = sorted(os.sched_getaffinity(0))
    core = cores[local_rank % len(cores)]
    for thread in os.listdir("/proc/self/task"):   # Linux: one entry per thread of this process
        os.sched_setaffinity(int(thread), {core})
    return core


def helper_threads_cpu() -> float:
    """CPU seconds (user + system) used so far by this process's threads other than the calling one:
    the process's CPU time less the calling thread's. On a CPU rank these are Horovod's background
    thread and Gloo's, which share the rank's core with its training: BENCHMARKS.md measures how much
    of the core they take at each cycle time."""
    return time.process_time() - time.thread_time()


def make_net():
    """A small CNN: 20k parameters, about 2 MFLOPs per image forward and backward."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2),     # 8 x 12 x 12
        torch.nn.Conv2d(8, 16, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2),    # 16 x 4 x 4
        torch.nn.Flatten(), torch.nn.Linear(256, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))


def load_mnist(args, dtype):
    """``(X_train, y_train), (X_test, y_test)`` as tensors: images (N, 1, 28, 28) in [0, 1], labels (N,)."""
    (X_train, y_train), (X_test, y_test) = data.load_mnist("mnist")
    X_train = torch.tensor(X_train[:args.train_size, None] / 255.0, dtype=dtype)
    y_train = torch.tensor(y_train[:args.train_size], dtype=torch.long)
    X_test = torch.tensor(X_test[:args.test_size, None] / 255.0, dtype=dtype)
    y_test = torch.tensor(y_test[:args.test_size], dtype=torch.long)
    return (X_train, y_train), (X_test, y_test)


def epoch_shard(n: int, seed: int, epoch: int, rank: int, size: int) -> np.ndarray:
    """The examples rank ``rank`` of ``size`` visits in ``epoch``, in order: its 1/size of one
    permutation that every rank draws alike (the same seed), so together they cover the epoch."""
    return np.random.default_rng(seed + epoch).permutation(n)[rank::size]


def learning_rate(step: int, steps_per_epoch: int, args, size: int) -> float:
    """Goyal et al. (arXiv 1706.02677): the lr grows linearly with the effective batch (``base_lr``
    is right for a batch of ``base_batch``) and is reached by a linear warmup from ``base_lr``
    over the first ``warmup_epochs``."""
    target = args.base_lr * args.batch_size * size / args.base_batch   # scaled with the number of ranks
    warmup_steps = args.warmup_epochs * steps_per_epoch
    if step >= warmup_steps:
        return target
    return args.base_lr + (target - args.base_lr) * step / warmup_steps


def save_checkpoint(path: Path, net, opt, epoch: int) -> None:
    """Atomic: a crash never leaves half a checkpoint."""
    atomic_write(path, lambda fh: torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(),
                                              "epoch": epoch}, fh))


class StepTimer:
    """Seconds per training step and, of them, the time after ``backward()`` (the optimizer step,
    where a rank waits for the averaged gradients). The first ``skip`` steps, which include
    one-off set-up costs, are left out."""

    def __init__(self, skip: int = 5):
        self.skip, self.seen, self.total, self.wait, self.timed = skip, 0, 0.0, 0.0, 0

    def start(self):
        self._t0 = time.perf_counter()

    def backward_done(self):
        self._t1 = time.perf_counter()

    def step_done(self):
        t2 = time.perf_counter()
        if self.seen >= self.skip:
            self.total += t2 - self._t0
            self.wait += t2 - self._t1
            self.timed += 1
        self.seen += 1

    def summary(self, global_batch: int) -> dict:
        return {"images_per_s": global_batch * self.timed / max(self.total, 1e-9),
                "step_ms": 1e3 * self.total / max(self.timed, 1),
                "wait_ms": 1e3 * self.wait / max(self.timed, 1)}


def write_result(out: Path, rank: int, net, record: dict) -> None:
    """``params_rank<N>.npy`` (the final weights, float64) and ``rank<N>.json`` (``record`` plus the
    weights' absolute sum, a checksum), both written atomically."""
    params = torch.cat([p.detach().flatten().double().cpu() for p in net.parameters()]).numpy()
    atomic_write(out / f"params_rank{rank}.npy", lambda fh: np.save(fh, params))
    atomic_write(out / f"rank{rank}.json", json.dumps({**record, "params_sum": float(np.abs(params).sum())},
                                                      indent=1))
