#!/usr/bin/env python3
"""Train a small CNN on MNIST with Horovod and PyTorch (notebooks/13).

    horovodrun -np 2 -H localhost:2 --gloo python scripts/hvd_train_torch.py --out runs/hvd2
    horovodrun -np 8 python scripts/hvd_train_torch.py --out runs/hvd8      # a node with 8 GPUs (NCCL)
    sbatch scripts/slurm/train.sbatch horovod                               # a Slurm cluster

Every line that differs from a single-process PyTorch script is marked `# Horovod:`; the
network, data, order of examples and learning-rate schedule come from course_worker.py,
which the torchrun version (ddp_train_torch.py) shares. Each rank writes OUT/rank<N>.json
(its history, timing and a checksum of its weights) and OUT/params_rank<N>.npy (its final
weights); rank 0 alone prints and checkpoints.

Data parallelism, as in Goyal et al. (arXiv 1706.02677): every rank reads a different
1/size of each epoch (the epoch's permutation, strided by rank), the effective batch is
batch_size * size, the learning rate is scaled with it and warmed up gradually.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import horovod.torch as hvd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import course_worker as cw  # noqa: E402


def parse_args(argv=None):
    p = cw.arg_parser(__doc__.split("\n")[0])
    p.add_argument("--fail-rank", type=int, default=-1, help="this rank dies at --fail-step (failure drill)")
    p.add_argument("--fail-step", type=int, default=3)
    p.add_argument("--fail-how", choices=["exit", "kill"], default="exit", help="os._exit(3) or SIGKILL")
    p.add_argument("--fp16-allreduce", action="store_true", help="send gradients as float16 (hvd.Compression.fp16)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    hvd.init()  # Horovod: start this rank and connect it to the others
    rank, size = hvd.rank(), hvd.size()  # Horovod: who am I, how many are we
    core = None
    if torch.cuda.is_available():
        gpu = hvd.local_rank() % torch.cuda.device_count()  # (ranks share a GPU only if there are too few)
        torch.cuda.set_device(gpu)  # Horovod: pin one GPU per process, chosen by the local rank
        device = torch.device("cuda", gpu)
    else:
        torch.set_num_threads(1)  # Horovod: one CPU thread per rank, so ranks do not fight for cores
        device = torch.device("cpu")
        if args.pin_core:
            core = cw.pin_to_core(hvd.local_rank())  # Horovod: and each rank owns its core, as it would a GPU
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(args.seed + rank)  # different on purpose: broadcast_parameters must make them equal
    log = print if rank == 0 else (lambda *a, **k: None)  # Horovod: only rank 0 prints

    (X_train, y_train), (X_test, y_test) = cw.load_mnist(args, dtype)
    global_batch = args.batch_size * size  # Horovod: the effective batch grows with the number of ranks
    steps_per_epoch = len(X_train) // global_batch
    print(f"rank {rank} of {size}: {steps_per_epoch * args.batch_size} images per epoch, device {device}",
          flush=True)

    net = cw.make_net().to(device=device, dtype=dtype)
    opt = torch.optim.SGD(net.parameters(), lr=args.base_lr, momentum=args.momentum)
    hvd.broadcast_parameters(net.state_dict(), root_rank=0)  # Horovod: everyone starts from rank 0's weights
    compression = hvd.Compression.fp16 if args.fp16_allreduce else hvd.Compression.none  # Horovod: float16 on the wire?
    opt = hvd.DistributedOptimizer(opt, named_parameters=net.named_parameters(), compression=compression)  # Horovod: average gradients
    hvd.broadcast_optimizer_state(opt, root_rank=0)  # Horovod: and from rank 0's optimizer state (momentum)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    history = {"train loss": [], "test accuracy": [], "lr": []}
    timer = cw.StepTimer(skip=5)  # the first steps include one-off set-up costs
    helpers_cpu, started = cw.helper_threads_cpu(), time.perf_counter()  # Horovod's own threads' share of the core
    step = 0
    for epoch in range(args.epochs):
        net.train()
        shard = cw.epoch_shard(len(X_train), args.seed, epoch, rank, size)  # Horovod: this rank's 1/size
        losses = []
        for i in range(steps_per_epoch):
            if rank == args.fail_rank and step == args.fail_step:  # failure drill for the launcher's tests
                print(f"rank {rank}: dying at step {step} ({args.fail_how})", flush=True)
                if args.fail_how == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                os._exit(3)
            idx = torch.from_numpy(shard[i * args.batch_size:(i + 1) * args.batch_size])
            X, y = X_train[idx].to(device), y_train[idx].to(device)
            lr = cw.learning_rate(step, steps_per_epoch, args, size)  # Horovod: lr scaled with hvd.size()
            for group in opt.param_groups:
                group["lr"] = lr
            timer.start()
            opt.zero_grad()
            loss = F.cross_entropy(net(X), y)
            loss.backward()  # Horovod: each gradient's allreduce starts as soon as backprop produces it
            timer.backward_done()
            opt.step()  # Horovod: waits for the averaged gradients, then updates
            timer.step_done()
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
            cw.save_checkpoint(out / "checkpoint.pt", net, opt, epoch)

    helpers_share = (cw.helper_threads_cpu() - helpers_cpu) / (time.perf_counter() - started)
    cw.write_result(out, rank, net, {
        "rank": rank, "size": size, "device": str(device), "dtype": args.dtype, "launcher": "horovodrun",
        "core": core, "fp16_allreduce": args.fp16_allreduce, "helper_threads_cpu_share": helpers_share,
        "global_batch": global_batch, "steps": step, "history": history, **timer.summary(global_batch)})


if __name__ == "__main__":
    main()
