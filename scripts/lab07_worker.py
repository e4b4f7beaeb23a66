#!/usr/bin/env python3
"""Run a student's data-parallel training function under Horovod (labs/lab07).

    horovodrun -np 2 -H localhost:2 --gloo python scripts/lab07_worker.py SOURCE.py --out OUT

SOURCE.py defines ``train_data_parallel(hvd, net, X, y, lr_at, num_epochs, batch_size, base_lr,
checkpoint_path)`` and ``lr_at``
(the lab's exercise). This script does what is not the exercise: it starts each rank
with the same seed and data, calls the function, and writes OUT/rank<N>.json with the
weights' checksum, the indices the rank trained on, and its test accuracy, for the
lab's check to compare across ranks. When the lab is graded, horovodrun and this script
run inside the submission's sandbox (dlcourse.grader), like the rest of the student's code.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the course package, when not installed


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("source", help="Python file defining train_data_parallel and lr_at")
    p.add_argument("--out", required=True)
    p.add_argument("--train-size", type=int, default=6000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--base-lr", type=float, default=0.02)
    args = p.parse_args(argv)

    import numpy as np
    import torch

    import horovod.torch as hvd
    from dlcourse import data, models

    torch.set_num_threads(1)
    torch.manual_seed(0)                       # different on purpose below: broadcast must fix it
    (X_train, y_train), (X_test, y_test) = data.load_mnist("mnist")
    namespace: dict = {}
    source = Path(args.source).read_text()
    exec(compile(source, args.source, "exec"), namespace)
    hvd.init()
    torch.manual_seed(1 + hvd.rank())          # each rank starts from different weights
    net = models.lenet5()
    checkpoint = Path(args.out) / f"checkpoint_rank{hvd.rank()}.pt"   # so the check sees who saved
    out = namespace["train_data_parallel"](hvd, net, X_train[:args.train_size], y_train[:args.train_size],
                                           namespace["lr_at"], args.epochs, args.batch_size, args.base_lr,
                                           str(checkpoint))
    seen = [int(i) for i in np.asarray(out["seen"]).ravel()]       # in training order
    weights = torch.cat([p.detach().flatten() for p in net.parameters()]).double()
    record = {"rank": hvd.rank(), "size": hvd.size(), "seen": seen,
              "weights_sum": float(weights.sum()), "weights_norm": float(weights.norm()),
              "accuracy": models.accuracy(net, X_test[:2000], y_test[:2000]),
              "lrs": [float(x) for x in out.get("lrs", [])],
              "checkpoint_exists": checkpoint.exists()}
    path = Path(args.out) / f"rank{hvd.rank()}.json"
    path.write_text(json.dumps(record))


if __name__ == "__main__":
    main()
