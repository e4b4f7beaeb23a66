#!/usr/bin/env python3
"""Train a small CNN on MNIST with Horovod and PyTorch (notebooks/13).

    horovodrun -np 2 -H localhost:2 --gloo python scripts/hvd_train_torch.py --out runs/hvd2
    horovodrun -np 8 python scripts/hvd_train_torch.py --out runs/hvd8      # a node with 8 GPUs (NCCL)

Every line that differs from a single-process PyTorch script is marked `# Horovod:`.
Each rank writes OUT/rank<N>.json (its history, timing and a checksum of its weights)
and OUT/params_rank<N>.npy (its final weights); rank 0 alone prints and checkpoints.

Data parallelism, as in Goyal et al. (arXiv 1706.02677): every rank reads a different
1/size of each epoch (the epoch's permutation, strided by rank), the effective batch is
batch_size * size, the learning rate is scaled with it and warmed up gradually.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import horovod.torch as hvd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the course package, when not installed
from dlcourse import data  # noqa: E402
from dlcourse.fsutil import atomic_write  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
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
    p.add_argument("--fail-rank", type=int, default=-1, help="this rank dies at --fail-step (failure drill)")
    p.add_argument("--fail-step", type=int, default=3)
    p.add_argument("--fail-how", choices=["exit", "kill"], default="exit", help="os._exit(3) or SIGKILL")
    return p.parse_args(argv)


def make_net():
    # A small CNN: 20k parameters, about 2 MFLOPs per image forward and backward.
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2),     # 8 x 12 x 12
        torch.nn.Conv2d(8, 16, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2),    # 16 x 4 x 4
        torch.nn.Flatten(), torch.nn.Linear(256, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))


def learning_rate(step, steps_per_epoch, args, size):
    # Goyal et al.: scale the lr linearly with the effective batch (base_lr is right for a batch of
    # base_batch), and reach it by a linear warmup from base_lr over the first warmup_epochs.
    target = args.base_lr * args.batch_size * size / args.base_batch  # Horovod: lr scaled with hvd.size()
    warmup_steps = args.warmup_epochs * steps_per_epoch
    if step >= warmup_steps:
        return target
    return args.base_lr + (target - args.base_lr) * step / warmup_steps


def save_checkpoint(path: Path, net, opt, epoch):
    # Atomic: a crash never leaves half a checkpoint.
    atomic_write(path, lambda fh: torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(),
                                              "epoch": epoch}, fh))


def main(argv=None):
    args = parse_args(argv)
    hvd.init()  # Horovod: start this rank and connect it to the others
    rank, size = hvd.rank(), hvd.size()  # Horovod: who am I, how many are we
    if torch.cuda.is_available():
        gpu = hvd.local_rank() % torch.cuda.device_count()  # (ranks share a GPU only if there are too few)
        torch.cuda.set_device(gpu)  # Horovod: pin one GPU per process, chosen by the local rank
        device = torch.device("cuda", gpu)
    else:
        torch.set_num_threads(1)  # Horovod: one CPU thread per rank, so ranks do not fight for cores
        device = torch.device("cpu")
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(args.seed + rank)  # different on purpose: broadcast_parameters must make them equal
    log = print if rank == 0 else (lambda *a, **k: None)  # Horovod: only rank 0 prints

    (X_train, y_train), (X_test, y_test) = data.load_mnist("mnist")
    X_train = torch.tensor(X_train[:args.train_size, None] / 255.0, dtype=dtype)
    y_train = torch.tensor(y_train[:args.train_size], dtype=torch.long)
    X_test = torch.tensor(X_test[:args.test_size, None] / 255.0, dtype=dtype)
    y_test = torch.tensor(y_test[:args.test_size], dtype=torch.long)
    global_batch = args.batch_size * size  # Horovod: the effective batch grows with the number of ranks
    steps_per_epoch = len(X_train) // global_batch
    print(f"rank {rank} of {size}: {steps_per_epoch * args.batch_size} images per epoch, device {device}",
          flush=True)

    net = make_net().to(device=device, dtype=dtype)
    opt = torch.optim.SGD(net.parameters(), lr=args.base_lr, momentum=args.momentum)
    hvd.broadcast_parameters(net.state_dict(), root_rank=0)  # Horovod: everyone starts from rank 0's weights
    opt = hvd.DistributedOptimizer(opt, named_parameters=net.named_parameters())  # Horovod: average gradients
    hvd.broadcast_optimizer_state(opt, root_rank=0)  # Horovod: and from rank 0's optimizer state (momentum)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    history = {"train loss": [], "test accuracy": [], "lr": []}
    step, train_seconds, wait_seconds, timed_steps = 0, 0.0, 0.0, 0
    for epoch in range(args.epochs):
        net.train()
        order = np.random.default_rng(args.seed + epoch).permutation(len(X_train))  # same on every rank
        shard = order[rank::size]  # Horovod: this rank's 1/size of the epoch
        losses = []
        for i in range(steps_per_epoch):
            if rank == args.fail_rank and step == args.fail_step:  # failure drill for the launcher's tests
                print(f"rank {rank}: dying at step {step} ({args.fail_how})", flush=True)
                if args.fail_how == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                os._exit(3)
            idx = torch.from_numpy(shard[i * args.batch_size:(i + 1) * args.batch_size])
            X, y = X_train[idx].to(device), y_train[idx].to(device)
            lr = learning_rate(step, steps_per_epoch, args, size)
            for group in opt.param_groups:
                group["lr"] = lr
            t0 = time.perf_counter()
            opt.zero_grad()
            loss = F.cross_entropy(net(X), y)
            loss.backward()  # Horovod: each gradient's allreduce starts as soon as backprop produces it
            t1 = time.perf_counter()
            opt.step()  # Horovod: waits for the averaged gradients, then updates
            t2 = time.perf_counter()
            if step >= 5:  # the first steps include one-off set-up costs
                train_seconds += t2 - t0
                wait_seconds += t2 - t1
                timed_steps += 1
            losses.append(loss.item())
            step += 1
        # Horovod: the epoch's mean loss over all ranks, not just this one
        mean_loss = hvd.allreduce(torch.tensor(float(np.mean(losses))), name="epoch_loss").item()
        net.eval()
        with torch.no_grad():
            acc = (net(X_test.to(device)).argmax(1).cpu() == y_test).double().mean().item()
        history["train loss"].append(mean_loss)
        history["test accuracy"].append(acc)
        history["lr"].append(lr)
        log(f"epoch {epoch + 1}/{args.epochs}: loss {mean_loss:.4f}, test accuracy {acc:.4f}, lr {lr:.4f}",
            flush=True)
        if rank == 0:  # Horovod: only rank 0 writes the checkpoint
            save_checkpoint(out / "checkpoint.pt", net, opt, epoch)

    params = torch.cat([p.detach().flatten().double().cpu() for p in net.parameters()]).numpy()
    np.save(out / f"params_rank{rank}.npy", params)
    record = {"rank": rank, "size": size, "device": str(device), "dtype": args.dtype,
              "global_batch": global_batch, "steps": step, "history": history,
              "images_per_s": global_batch * timed_steps / max(train_seconds, 1e-9),
              "step_ms": 1e3 * train_seconds / max(timed_steps, 1),
              "wait_ms": 1e3 * wait_seconds / max(timed_steps, 1),
              "params_sum": float(np.abs(params).sum())}
    atomic_write(out / f"rank{rank}.json", json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
