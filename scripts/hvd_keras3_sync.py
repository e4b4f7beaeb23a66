#!/usr/bin/env python3
"""Do Horovod's ranks stay in sync under Keras 3? Two ways of training, compared (notebooks/13).

    horovodrun -np 2 -H localhost:2 --gloo python scripts/hvd_keras3_sync.py --out runs/keras3

Both ranks build the same Keras 3 model from the same weights and train a few steps,
each on its own shard of MNIST:

1. "keras DistributedOptimizer": Horovod's Keras wrapper,
   `horovod.tensorflow.keras.DistributedOptimizer(keras.optimizers.SGD(...))`, with
   `model.compile` / `model.fit`: the way Horovod's Keras examples are written;
2. "DistributedGradientTape": `horovod.tensorflow`'s tape in a training step of our own.

Afterwards each rank allgathers every rank's weights and records the largest difference.
Synchronous data parallelism means the ranks hold *identical* weights after every
step; Horovod 0.28.1's Keras wrapper, written for Keras 2, silently fails to average
the gradients under Keras 3, so the ranks drift apart. Each rank writes OUT/rank<N>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

import horovod.tensorflow as hvd
import horovod.tensorflow.keras as hvd_keras

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dlcourse import data  # noqa: E402
from dlcourse.fsutil import atomic_write  # noqa: E402

import keras  # noqa: E402  (Keras 3, the TensorFlow backend)


def make_net(seed):
    keras.utils.set_random_seed(seed)  # the same seed on every rank: identical starting weights
    return keras.Sequential([keras.Input((784,)), keras.layers.Dense(32, activation="relu"),
                             keras.layers.Dense(10)])


def spread(net) -> float:
    """Largest difference between any rank's weights and rank 0's (0.0 when in sync)."""
    flat = np.concatenate([v.numpy().ravel() for v in net.trainable_variables]).astype("float64")
    every = hvd.allgather(tf.constant(flat[None]), name=f"spread_{spread.calls}").numpy()  # (size, n)
    spread.calls += 1
    return float(np.abs(every - every[0]).max())


spread.calls = 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.1)
    args = p.parse_args()

    hvd.init()
    rank, size = hvd.rank(), hvd.size()
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:  # one GPU per rank, growing its memory as needed (ranks may share one)
        gpu = gpus[hvd.local_rank() % len(gpus)]
        tf.config.set_visible_devices(gpu, "GPU")
        tf.config.experimental.set_memory_growth(gpu, True)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    (X_train, y_train), _ = data.load_mnist("mnist")
    n = args.steps * args.batch_size * size
    X = (X_train[:n].reshape(-1, 784) / 255.0).astype("float32")[rank::size]  # this rank's shard
    y = y_train[:n].astype("int64")[rank::size]
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    result = {"rank": rank, "size": size, "keras": keras.__version__, "steps": args.steps}

    # 1. Horovod's Keras wrapper, as in its Keras examples.
    net = make_net(0)
    result["keras DistributedOptimizer: before"] = spread(net)
    opt = hvd_keras.DistributedOptimizer(keras.optimizers.SGD(args.lr))
    net.compile(optimizer=opt, loss=loss_fn)
    net.fit(X, y, batch_size=args.batch_size, epochs=1, shuffle=False, verbose=0)
    result["keras DistributedOptimizer: after"] = spread(net)

    # 2. horovod.tensorflow's DistributedGradientTape in our own step.
    net = make_net(0)
    result["DistributedGradientTape: before"] = spread(net)
    opt = keras.optimizers.SGD(args.lr)

    @tf.function
    def train_step(X_batch, y_batch):
        with tf.GradientTape() as tape:
            loss = loss_fn(y_batch, net(X_batch, training=True))
        tape = hvd.DistributedGradientTape(tape)
        grads = tape.gradient(loss, [v.value for v in net.trainable_variables])
        opt.apply_gradients(zip(grads, net.trainable_variables))
        return loss

    for i in range(args.steps):
        train_step(X[i * args.batch_size:(i + 1) * args.batch_size], y[i * args.batch_size:(i + 1) * args.batch_size])
    result["DistributedGradientTape: after"] = spread(net)

    out = Path(args.out)
    atomic_write(out / f"rank{rank}.json", json.dumps(result, indent=1))
    if rank == 0:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
