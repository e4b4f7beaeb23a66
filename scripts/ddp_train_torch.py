#!/usr/bin/env python3
"""Train a small CNN on MNIST with torchrun and DistributedDataParallel (notebooks/13).

    torchrun --standalone --nproc-per-node=2 scripts/ddp_train_torch.py --out runs/ddp2   # this CPU (Gloo)
    torchrun --standalone --nproc-per-node=8 scripts/ddp_train_torch.py --out runs/ddp8   # a node with 8 GPUs (NCCL)
    sbatch scripts/slurm/train.sbatch torchrun                                            # a Slurm cluster

The job of hvd_train_torch.py written with PyTorch's own tools, which most clusters use
today: the same network, data, order of examples and learning-rate schedule (from
course_worker.py), so the two give the same weights. Every line that differs from a
single-process PyTorch script is marked `# DDP:`. Each rank writes OUT/rank<N>.json and
OUT/params_rank<N>.npy as the Horovod script does.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as td
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, str(Path(__file__).resolve().parent))
import course_worker as cw  # noqa: E402


def main(argv=None):
    args = cw.arg_parser(__doc__.split("\n")[0]).parse_args(argv)
    # DDP: torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and where to meet; Horovod's hvd.init()
    td.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank, size = td.get_rank(), td.get_world_size()  # DDP: hvd.rank(), hvd.size()
    if torch.cuda.is_available():
        gpu = int(os.environ["LOCAL_RANK"]) % torch.cuda.device_count()  # DDP: hvd.local_rank()
        torch.cuda.set_device(gpu)  # DDP: one GPU per process
        device = torch.device("cuda", gpu)
    else:
        torch.set_num_threads(1)  # DDP: one CPU thread per rank, so ranks do not fight for cores
        device = torch.device("cpu")
        if args.pin_core:
            cw.pin_to_core(int(os.environ["LOCAL_RANK"]))  # DDP: each rank owns its core, as it would a GPU
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(args.seed + rank)  # different on purpose: DDP must start everyone from rank 0's weights
    log = print if rank == 0 else (lambda *a, **k: None)  # DDP: only rank 0 prints

    (X_train, y_train), (X_test, y_test) = cw.load_mnist(args, dtype)
    global_batch = args.batch_size * size  # DDP: the effective batch grows with the number of ranks
    steps_per_epoch = len(X_train) // global_batch
    print(f"rank {rank} of {size}: {steps_per_epoch * args.batch_size} images per epoch, device {device}",
          flush=True)

    net = cw.make_net().to(device=device, dtype=dtype)
    # DDP: the wrapper broadcasts rank 0's weights now, and averages gradients during backward()
    ddp_net = DistributedDataParallel(net)
    opt = torch.optim.SGD(net.parameters(), lr=args.base_lr, momentum=args.momentum)  # a plain optimizer

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    history = {"train loss": [], "test accuracy": [], "lr": []}
    timer = cw.StepTimer(skip=5)  # the first steps include one-off set-up costs
    step = 0
    for epoch in range(args.epochs):
        net.train()
        shard = cw.epoch_shard(len(X_train), args.seed, epoch, rank, size)  # DDP: this rank's 1/size
        losses = []
        for i in range(steps_per_epoch):
            idx = torch.from_numpy(shard[i * args.batch_size:(i + 1) * args.batch_size])
            X, y = X_train[idx].to(device), y_train[idx].to(device)
            lr = cw.learning_rate(step, steps_per_epoch, args, size)  # DDP: lr scaled with the world size
            for group in opt.param_groups:
                group["lr"] = lr
            timer.start()
            opt.zero_grad()
            loss = F.cross_entropy(ddp_net(X), y)
            loss.backward()  # DDP: gradients are averaged here, bucket by bucket, while backprop runs
            timer.backward_done()
            opt.step()
            timer.step_done()
            losses.append(loss.item())
            step += 1
        # DDP: the epoch's mean loss over all ranks, not just this one
        epoch_loss = torch.tensor(float(np.mean(losses)), dtype=torch.float64, device=device)
        td.all_reduce(epoch_loss)
        mean_loss = epoch_loss.item() / size
        net.eval()
        with torch.no_grad():
            acc = (net(X_test.to(device)).argmax(1).cpu() == y_test).double().mean().item()
        history["train loss"].append(mean_loss)
        history["test accuracy"].append(acc)
        history["lr"].append(lr)
        log(f"epoch {epoch + 1}/{args.epochs}: loss {mean_loss:.4f}, test accuracy {acc:.4f}, lr {lr:.4f}",
            flush=True)
        if rank == 0:  # DDP: only rank 0 writes the checkpoint
            cw.save_checkpoint(out / "checkpoint.pt", net, opt, epoch)

    cw.write_result(out, rank, net, {
        "rank": rank, "size": size, "device": str(device), "dtype": args.dtype, "launcher": "torchrun",
        "global_batch": global_batch, "steps": step, "history": history, **timer.summary(global_batch)})
    td.destroy_process_group()  # DDP: leave cleanly


if __name__ == "__main__":
    main()
