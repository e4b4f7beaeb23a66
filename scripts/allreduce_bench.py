#!/usr/bin/env python3
"""Time Horovod allreduces against message size, and tensor fusion (notebooks/13).

    horovodrun -np 2 -H localhost:2 --gloo python scripts/allreduce_bench.py --out runs/bench

Rank 0 writes OUT/rank0.json with, for each message size in bytes, the median time of
an allreduce (the slowest rank's: every rank waits for the others anyway), and the
time to allreduce many small gradients one by one, all at once (Horovod fuses them into
one buffer), and as one tensor concatenated by hand. Other ranks write their own file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

import horovod.torch as hvd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the course package, when not installed
from dlcourse.fsutil import atomic_write  # noqa: E402


def timed(fn, reps: int) -> float:
    """Median seconds of fn() over reps calls: the typical cost a training step would see. (The
    fastest call is too lucky: with Horovod's 1 ms cycle, a call that happens to start just before
    the background thread wakes up skips most of the wait.)

    Every rank must make the same calls: a rank that did one more allreduce than the
    others would wait for them forever. So reps is fixed in advance, never "until 0.1 s".
    """
    fn()  # warm-up: the first call of a new tensor name negotiates with the other ranks
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--max-log2-bytes", type=int, default=24, help="largest message: 2**this bytes")
    p.add_argument("--reps", type=int, default=30, help="timed calls per small message (fewer for big ones)")
    p.add_argument("--fusion-tensors", type=int, default=64, help="small gradients in the fusion test")
    p.add_argument("--fusion-floats", type=int, default=4096, help="floats in each of them")
    args = p.parse_args()

    hvd.init()  # Horovod: start this rank
    torch.set_num_threads(1)
    sizes = [2 ** k for k in range(2, args.max_log2_bytes + 1, 2)]  # 4 B ... 16 MiB, float32
    seconds = []
    for n_bytes in sizes:
        x = torch.ones(n_bytes // 4)
        name = f"bench_{n_bytes}"
        reps = max(5, min(args.reps, 2 ** 22 // n_bytes))  # about 4 MiB moved per size at least
        t = timed(lambda: hvd.allreduce(x, name=name), reps)
        # Horovod: agree on the slowest rank's time
        seconds.append(hvd.allreduce(torch.tensor([t], dtype=torch.float64), op=hvd.Max, name=f"t_{n_bytes}").item())

    # Tensor fusion: k small gradients, three ways.
    grads = [torch.ones(args.fusion_floats) for _ in range(args.fusion_tensors)]

    def one_by_one():  # wait for each allreduce before starting the next: k latencies in a row
        for i, g in enumerate(grads):
            hvd.allreduce(g, name=f"seq_{i}")

    def all_at_once():  # Horovod: start them all, then wait; the background thread fuses them
        handles = [hvd.allreduce_async(g, name=f"async_{i}") for i, g in enumerate(grads)]
        for h in handles:
            hvd.synchronize(h)

    flat = torch.cat(grads)

    def concatenated():  # one big tensor, fused by hand
        hvd.allreduce(flat, name="flat")

    fusion = {name: timed(fn, 10)
              for name, fn in (("one by one", one_by_one), ("all at once (fused)", all_at_once),
                               ("concatenated", concatenated))}
    record = {"rank": hvd.rank(), "size": hvd.size(), "bytes": sizes, "seconds": seconds,
              "fusion": {"tensors": args.fusion_tensors, "bytes_each": 4 * args.fusion_floats,
                         "seconds": fusion},
              "cycle_time_ms": float(os.environ.get("HOROVOD_CYCLE_TIME", "1"))}
    out = Path(args.out)
    atomic_write(out / f"rank{hvd.rank()}.json", json.dumps(record, indent=1))
    if hvd.rank() == 0:
        print(f"timed {len(sizes)} message sizes from {sizes[0]} B to {sizes[-1] // 2**20} MiB on {hvd.size()} ranks")


if __name__ == "__main__":
    main()
