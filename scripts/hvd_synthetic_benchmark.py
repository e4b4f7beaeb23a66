#!/usr/bin/env python3
"""Horovod's synthetic ResNet-50 benchmark, in the course's own code (`make bench`, notebooks/13).

    horovodrun -np 2 -H localhost:2 --gloo python scripts/hvd_synthetic_benchmark.py --out OUT
    horovodrun -np 1 -H localhost:1 --gloo python scripts/hvd_synthetic_benchmark.py --out OUT   # the baseline
    horovodrun -np 2 -H localhost:2 --gloo python scripts/hvd_synthetic_benchmark.py --out OUT --pin-core

The configuration of Horovod's examples/pytorch/pytorch_synthetic_benchmark.py, written
here (neither Horovod's nor torchvision's code is copied, and torchvision is not needed):
ResNet-50, a batch of 32 random 224x224x3 images with random labels per rank, SGD with
lr 0.01, hvd.DistributedOptimizer (fp16 gradient compression with --fp16-allreduce),
rank 0's weights and optimizer state broadcast to all, a few warm-up steps, then timed
steps. Images per second on 1 rank and on 2, from the same run, give the benchmark's
scaling efficiency beside the course's own worker (benchmarks/run.py).

Every line that differs from a single-process PyTorch script is marked `# Horovod:`. Each
rank writes OUT/rank<N>.json (atomically); rank 0 alone prints.

Defaults differ from Horovod's because this runs on a CPU: Horovod warms up for 10 batches
and times 10 iterations of 10 batches each (100 timed steps, seconds on a GPU), but a
ResNet-50 step of 32 images at 224x224 takes several seconds on one CPU core, so here 2
warm-up steps and 3 timed steps, one thread per rank. --image-size makes quick tests
(the network is fully convolutional up to its global average pool, so any size >= 32 runs;
the parameter count does not change).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

import horovod.torch as hvd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import course_worker as cw  # noqa: E402  (it also puts the course package on sys.path)
from dlcourse.fsutil import atomic_write  # noqa: E402

RESNET50_PARAMS = 25_557_032  # torchvision's resnet50(num_classes=1000), the benchmark's model


# --------------------------------------------------------------------------- ResNet-50
class Bottleneck(nn.Module):
    """1x1 conv (narrow to ``width``), 3x3 conv (``stride`` here, as in ResNet v1.5), 1x1 conv
    (widen to ``4 * width``), each followed by BatchNorm; ReLU after adding the shortcut. The
    shortcut is the identity, or a strided 1x1 conv + BatchNorm when the shape changes."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int = 1):
        super().__init__()
        out_ch = width * self.expansion
        self.conv1, self.bn1 = nn.Conv2d(in_ch, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, stride, padding=1, bias=False), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch)
        self.shortcut = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + self.shortcut(x))


class ResNet50(nn.Module):
    """He et al., arXiv 1512.03385: a 7x7 stride-2 stem and a 3x3 stride-2 max pool, four stages of
    [3, 4, 6, 3] bottleneck blocks of widths 64/128/256/512 (outputs x4; stages 2-4 start with
    stride 2), a global average pool and a fully connected layer. For 1000 classes it has
    25,557,032 parameters (25.6 M), as torchvision's resnet50; main() checks the count."""

    def __init__(self, num_classes: int = 1000, blocks=(3, 4, 6, 3), widths=(64, 128, 256, 512)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, padding=3, bias=False), nn.BatchNorm2d(64),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, padding=1))
        layers, in_ch = [], 64
        for stage, (n, width) in enumerate(zip(blocks, widths)):
            for i in range(n):
                layers.append(Bottleneck(in_ch, width, stride=2 if stage > 0 and i == 0 else 1))
                in_ch = width * Bottleneck.expansion
        self.stages = nn.Sequential(*layers)
        self.fc = nn.Linear(in_ch, num_classes)
        for m in self.modules():  # He initialization of the convolutions (BatchNorm: weight 1, bias 0)
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# --------------------------------------------------------------------------- the benchmark
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="folder for rank<N>.json")
    p.add_argument("--batch-size", type=int, default=32, help="images per rank per step (Horovod: 32)")
    p.add_argument("--image-size", type=int, default=224, help="height and width of the random images")
    p.add_argument("--warmup-steps", type=int, default=2, help="untimed steps first (Horovod: 10)")
    p.add_argument("--steps", type=int, default=3, help="timed steps (Horovod: 10 x 10)")
    p.add_argument("--fp16-allreduce", action="store_true", help="send gradients as float16 (halves the bytes)")
    p.add_argument("--pin-core", action="store_true",
                   help="bind this rank, all its threads, to one CPU core chosen by its local rank")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    hvd.init()  # Horovod: start this rank and connect it to the others
    rank, size = hvd.rank(), hvd.size()  # Horovod: who am I, how many are we
    core = None
    if args.pin_core:
        core = cw.pin_to_core(hvd.local_rank())  # Horovod: one core per rank on this machine, by local rank
    if torch.cuda.is_available():
        gpu = hvd.local_rank() % torch.cuda.device_count()
        torch.cuda.set_device(gpu)  # Horovod: pin one GPU per process, chosen by the local rank
        device = torch.device("cuda", gpu)
    else:
        torch.set_num_threads(1)  # Horovod: one CPU thread per rank, so ranks do not fight for cores
        device = torch.device("cpu")
    torch.manual_seed(args.seed + rank)  # different on purpose: broadcast_parameters makes the weights equal
    log = print if rank == 0 else (lambda *a, **k: None)  # Horovod: only rank 0 prints

    net = ResNet50().to(device)
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params == RESNET50_PARAMS, f"ResNet-50 has {RESNET50_PARAMS:,} parameters, this one {n_params:,}"
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    compression = hvd.Compression.fp16 if args.fp16_allreduce else hvd.Compression.none
    opt = hvd.DistributedOptimizer(opt, named_parameters=net.named_parameters(),  # Horovod: average gradients,
                                   compression=compression)                      # optionally sent as float16
    hvd.broadcast_parameters(net.state_dict(), root_rank=0)  # Horovod: everyone starts from rank 0's weights
    hvd.broadcast_optimizer_state(opt, root_rank=0)  # Horovod: and from rank 0's optimizer state

    # One fixed synthetic batch, as in Horovod's benchmark: random images, random labels.
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    labels = torch.randint(0, 1000, (args.batch_size,), device=device)

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(net(images), labels)
        loss.backward()  # Horovod: each gradient's allreduce starts as soon as backprop produces it
        opt.step()  # Horovod: waits for the averaged gradients, then updates
        if device.type == "cuda":
            torch.cuda.synchronize()

    log(f"Model: ResNet-50 ({n_params:,} parameters), batch size {args.batch_size}, "
        f"{args.image_size}x{args.image_size} images, {size} rank(s) on {device}"
        f"{', fp16 allreduce' if args.fp16_allreduce else ''}", flush=True)
    if core is not None:
        print(f"rank {rank}: pinned to CPU core {core}", flush=True)
    net.train()
    for _ in range(args.warmup_steps):
        step()
    step_times = []
    for i in range(args.steps):
        t0 = time.perf_counter()
        step()
        step_times.append(time.perf_counter() - t0)
        log(f"Iter #{i}: {args.batch_size / step_times[-1]:.2f} img/sec per rank", flush=True)
    images_per_s = args.batch_size * args.steps / sum(step_times)
    # Horovod: the mean over ranks of images/s per rank (what Horovod's benchmark prints), then x size
    mean_per_rank = hvd.allreduce(torch.tensor(images_per_s), name="images_per_s").item()
    log(f"Img/sec per rank: {mean_per_rank:.2f}; total img/sec on {size} rank(s): {mean_per_rank * size:.2f}",
        flush=True)

    record = {"rank": rank, "size": size, "batch_size": args.batch_size, "image_size": args.image_size,
              "steps": args.steps, "images_per_s": images_per_s, "images_per_s_total": images_per_s * size,
              "step_s": statistics.median(step_times), "step_times": step_times, "params": n_params,
              "fp16_allreduce": args.fp16_allreduce}
    if core is not None:
        record["core"] = core
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / f"rank{rank}.json", json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
