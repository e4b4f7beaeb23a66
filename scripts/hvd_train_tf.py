#!/usr/bin/env python3
"""Train an MNIST MLP with Horovod and TensorFlow's GradientTape (notebooks/13).

    horovodrun -np 2 -H localhost:2 --gloo python scripts/hvd_train_tf.py --out runs/tf2

The TensorFlow twin of hvd_train_torch.py, written with `horovod.tensorflow` and
`hvd.DistributedGradientTape`: the path that works with Keras 3 (Horovod's own Keras
wrappers do not, see hvd_keras3_sync.py). The Keras model is used as a container of
layers and variables; the training step is ours. Lines that differ from a
single-process script are marked `# Horovod:`. Each rank writes OUT/rank<N>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

import horovod.tensorflow as hvd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the course package, when not installed
from dlcourse import data  # noqa: E402
from dlcourse.fsutil import atomic_write  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--train-size", type=int, default=6000)
    p.add_argument("--test-size", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=64, help="images per rank per step")
    p.add_argument("--base-lr", type=float, default=0.05, help="learning rate for a batch of --base-batch")
    p.add_argument("--base-batch", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    hvd.init()  # Horovod: start this rank
    rank, size = hvd.rank(), hvd.size()
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        gpu = gpus[hvd.local_rank() % len(gpus)]  # (ranks share a GPU only if there are too few)
        tf.config.set_visible_devices(gpu, "GPU")  # Horovod: pin one GPU per process, chosen by the local rank
        tf.config.experimental.set_memory_growth(gpu, True)
    else:
        tf.config.threading.set_intra_op_parallelism_threads(1)  # Horovod: one CPU thread per rank
        tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.random.set_seed(args.seed + rank)  # different on purpose: the broadcast must make them equal

    (X_train, y_train), (X_test, y_test) = data.load_mnist("mnist")
    X_train = (X_train[:args.train_size].reshape(-1, 784) / 255.0).astype("float32")
    y_train = y_train[:args.train_size].astype("int64")
    X_test = (X_test[:args.test_size].reshape(-1, 784) / 255.0).astype("float32")
    y_test = y_test[:args.test_size].astype("int64")
    global_batch = args.batch_size * size  # Horovod: the effective batch
    steps_per_epoch = len(X_train) // global_batch

    net = tf.keras.Sequential([tf.keras.Input((784,)), tf.keras.layers.Dense(128, activation="relu"),
                               tf.keras.layers.Dense(10)])
    lr = args.base_lr * global_batch / args.base_batch  # Horovod: linear scaling with hvd.size()
    opt = tf.keras.optimizers.SGD(learning_rate=lr, momentum=0.9)
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def train_step(X, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, net(X, training=True))
        tape = hvd.DistributedGradientTape(tape)  # Horovod: gradient() returns averaged gradients
        # Keras 3 wraps each tf.Variable; Horovod's tape needs the tf.Variable itself (.value).
        grads = tape.gradient(loss, [v.value for v in net.trainable_variables])
        opt.apply_gradients(zip(grads, net.trainable_variables))
        return loss

    for v in net.variables:  # Horovod: everyone starts from rank 0's weights
        v.assign(hvd.broadcast(v.value, root_rank=0, name=v.path.replace("/", "_")))

    history = {"train loss": [], "test accuracy": []}
    seconds, timed_steps = 0.0, 0
    for epoch in range(args.epochs):
        order = np.random.default_rng(args.seed + epoch).permutation(len(X_train))
        shard = order[rank::size]  # Horovod: this rank's part of the epoch
        losses = []
        for i in range(steps_per_epoch):
            idx = shard[i * args.batch_size:(i + 1) * args.batch_size]
            t0 = time.perf_counter()
            losses.append(float(train_step(X_train[idx], y_train[idx])))
            if epoch > 0 or i >= 5:  # skip tracing and warm-up
                seconds += time.perf_counter() - t0
                timed_steps += 1
        mean_loss = float(hvd.allreduce(tf.constant(np.mean(losses)), name="epoch_loss"))  # Horovod: over all ranks
        acc = float(np.mean(np.argmax(net(X_test).numpy(), axis=1) == y_test))
        history["train loss"].append(mean_loss)
        history["test accuracy"].append(acc)
        if rank == 0:  # Horovod: only rank 0 prints
            print(f"epoch {epoch + 1}/{args.epochs}: loss {mean_loss:.4f}, test accuracy {acc:.4f}", flush=True)

    flat = np.concatenate([v.numpy().ravel() for v in net.trainable_variables])
    record = {"rank": rank, "size": size, "global_batch": global_batch, "history": history,
              "images_per_s": global_batch * timed_steps / max(seconds, 1e-9),
              "params_sum": float(np.abs(flat).sum())}
    out = Path(args.out)
    atomic_write(out / f"rank{rank}.json", json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
