"""A tiny PyTorch job for `horovodrun -np 2`: allreduce, broadcast and two training steps.

Each rank writes OUTDIR/rank<N>.json; tests/test_horovod.py compares them.
Lines that differ from a single-process script are marked `# Horovod:`.
"""

import json
import sys
from pathlib import Path

import torch

import horovod.torch as hvd

hvd.init()  # Horovod: start the ranks and the Gloo controller
torch.set_num_threads(1)
torch.manual_seed(100 + hvd.rank())  # different on purpose: the broadcast must make them equal

net = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(net.parameters(), lr=0.1)
hvd.broadcast_parameters(net.state_dict(), root_rank=0)  # Horovod: everyone starts from rank 0's weights
opt = hvd.DistributedOptimizer(opt, named_parameters=net.named_parameters())  # Horovod: average gradients

gen = torch.Generator().manual_seed(0)
X, y = torch.randn(8, 4, generator=gen), torch.randn(8, 1, generator=gen)
X, y = X[hvd.rank()::hvd.size()], y[hvd.rank()::hvd.size()]  # Horovod: each rank its own shard
for _ in range(2):
    opt.zero_grad()
    torch.nn.functional.mse_loss(net(X), y).backward()
    opt.step()

total = hvd.allreduce(torch.tensor([float(hvd.rank() + 1)]), op=hvd.Sum)  # Horovod: 1 + 2 = 3
record = {"rank": hvd.rank(), "size": hvd.size(), "allreduce_sum": total.item(),
          "params": [p.detach().flatten().tolist() for p in net.parameters()]}
Path(sys.argv[1], f"rank{hvd.rank()}.json").write_text(json.dumps(record))
