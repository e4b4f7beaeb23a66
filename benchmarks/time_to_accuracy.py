"""Time to 98.5% MNIST test accuracy: the course's CNN beside two reference recipes.

    python -m benchmarks.time_to_accuracy --json OUT [--quick] [--seeds 3] [--threads 1]
    python -m benchmarks.time_to_accuracy --json OUT --config keras --seed 0   # one run

Three configurations, each trained in its own process with the same thread count:

- ``course``: ``dlcourse.models.lenet5`` trained as ``dlcourse.models.fit`` trains it with
  ``MNIST_RECIPE`` (Adam 3e-3, batch 128, learning rate falling linearly to 0 over 4
  epochs, the first 55,000 training images), the loop of ``fit`` repeated here so that
  it can stop at evaluation points.
- ``pytorch_example``: the recipe of PyTorch's official MNIST example (two 3x3 convs of 32
  and 64 maps, max-pool, dropout 0.25, fc 9216->128, dropout 0.5, fc 128->10,
  log-softmax + NLL; Adadelta lr 1.0, StepLR gamma 0.7 per epoch, batch 64, inputs
  normalised with 0.1307/0.3081, up to 14 epochs), written for this benchmark.
- ``keras``: the recipe of Keras's "simple MNIST convnet" (Conv2D 32 3x3, MaxPool 2,
  Conv2D 64 3x3, MaxPool 2, Flatten, Dropout 0.5, Dense 10 softmax; Adam, batch 128,
  up to 15 epochs, validation_split 0.1), Keras 3 on TensorFlow, written for this benchmark.

All three read the images from in-memory arrays (no DataLoader, no tf.data pipeline).
Test accuracy (10,000 images) is measured every quarter epoch with the clock stopped;
a run stops at the target or at the time cap. The reported time is training time only.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402

CONFIGS = ("course", "pytorch_example", "keras")
LABELS = {"course": "course LeNet-5 (Adam 3e-3, batch 128, linear decay)",
          "pytorch_example": "PyTorch MNIST example (Adadelta 1.0, batch 64)",
          "keras": "Keras simple MNIST convnet (Adam, batch 128)"}
EVALS_PER_EPOCH = 4


# --------------------------------------------------------------------------- stopping logic
class TimeToAccuracy:
    """A stopwatch that counts training time only, and decides when a run stops.

    ``resume()`` before training, ``pause()`` before evaluating; ``record(step, acc)``
    (called while paused) logs an evaluation and returns True when the run should stop:
    the target is reached, or the training time reached ``cap_s``. ``reached_s`` and
    ``reached_step`` hold the first evaluation at or above the target (None otherwise).
    """

    def __init__(self, target: float, cap_s: float, clock=time.perf_counter):
        self.target, self.cap_s, self.clock = target, cap_s, clock
        self.train_s = 0.0
        self._since = None
        self.evals: list[tuple[float, int, float]] = []   # (training seconds, step, accuracy)
        self.reached_s = self.reached_step = None

    def resume(self) -> None:
        if self._since is None:
            self._since = self.clock()

    def pause(self) -> None:
        if self._since is not None:
            self.train_s += self.clock() - self._since
            self._since = None

    def elapsed(self) -> float:
        return self.train_s + (self.clock() - self._since if self._since is not None else 0.0)

    def record(self, step: int, acc: float) -> bool:
        t = self.elapsed()
        self.evals.append((round(t, 3), int(step), round(float(acc), 5)))
        if self.reached_s is None and acc >= self.target:
            self.reached_s, self.reached_step = t, int(step)
        return self.reached_s is not None or t >= self.cap_s

    def summary(self) -> dict:
        return {"target": self.target, "cap_s": self.cap_s, "reached": self.reached_s is not None,
                "time_s": None if self.reached_s is None else round(self.reached_s, 3),
                "steps": self.reached_step, "train_s": round(self.train_s, 3),
                "best_acc": max((a for _, _, a in self.evals), default=None), "evals": self.evals}


def train_loop(step_fn, evaluate, tracker: TimeToAccuracy, steps_per_epoch: int, max_epochs: int,
               epoch_start=None, evals_per_epoch: int = EVALS_PER_EPOCH) -> int:
    """Call ``step_fn(epoch, i)`` for every minibatch ``i`` of every epoch, evaluating
    ``evaluate()`` (clock stopped) every ``steps_per_epoch / evals_per_epoch`` steps and
    at the end of each epoch; stop when ``tracker.record`` says so. ``epoch_start(epoch)``
    runs (on the clock) before each epoch. Returns the number of steps taken."""
    every = max(1, steps_per_epoch // evals_per_epoch)
    step = 0
    tracker.resume()
    for epoch in range(max_epochs):
        if epoch_start is not None:
            epoch_start(epoch)
        for i in range(steps_per_epoch):
            step_fn(epoch, i)
            step += 1
            if (i + 1) % every == 0 or i + 1 == steps_per_epoch:
                tracker.pause()
                stop = tracker.record(step, evaluate())
                if stop:
                    return step
                tracker.resume()
    tracker.pause()
    return step


# --------------------------------------------------------------------------- data
def mnist(quick: bool):
    from dlcourse import data

    (X_train, y_train), (X_test, y_test) = data.load_mnist("mnist")
    if quick:  # the plumbing only: a slice of the data
        X_train, y_train, X_test, y_test = X_train[:3000], y_train[:3000], X_test[:1000], y_test[:1000]
    return X_train, y_train, X_test, y_test


# --------------------------------------------------------------------------- the course
def run_course(seed: int, target: float, cap_s: float, quick: bool) -> dict:
    import torch

    from dlcourse import models

    recipe = models.MNIST_RECIPE
    X_train, y_train, X_test, y_test = mnist(quick)
    n = min(recipe["num_train"], len(X_train) * 11 // 12)      # 55,000 of 60,000, as the recipe
    X_train, y_train = models.to_tensor(X_train[:n]), torch.as_tensor(y_train[:n]).long()
    batch, num_epochs = recipe["batch_size"], recipe["num_epochs"]
    torch.manual_seed(seed)
    net = models.lenet5()
    # As models.fit: Adam, the learning rate falling linearly to 0 over num_epochs epochs.
    optimizer = torch.optim.Adam(net.parameters(), lr=recipe["lr"])
    steps_per_epoch = -(-n // batch)
    total_steps = num_epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1 - s / total_steps))
    generator = torch.Generator().manual_seed(seed)
    state = {}

    def epoch_start(epoch):
        net.train()
        state["order"] = torch.randperm(n, generator=generator)

    def step(epoch, i):
        idx = state["order"][i * batch:(i + 1) * batch]
        loss = torch.nn.functional.cross_entropy(net(X_train[idx]), y_train[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        loss.item()   # as fit: it reads every loss for the epoch's mean

    def evaluate():
        acc = models.accuracy(net, X_test, y_test)
        net.train()
        return acc

    tracker = TimeToAccuracy(target, cap_s)
    train_loop(step, evaluate, tracker, steps_per_epoch, num_epochs, epoch_start)
    return {**tracker.summary(), "steps_per_epoch": steps_per_epoch, "batch": batch, "max_epochs": num_epochs,
            "train_images": n}


# --------------------------------------------------------------------------- PyTorch's MNIST example
def pytorch_example_net():
    """The network of PyTorch's official MNIST example (1.2 M parameters), written for this benchmark."""
    import torch
    from torch import nn
    import torch.nn.functional as F

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 32, 3, 1)
            self.conv2 = nn.Conv2d(32, 64, 3, 1)
            self.dropout1 = nn.Dropout(0.25)
            self.dropout2 = nn.Dropout(0.5)
            self.fc1 = nn.Linear(9216, 128)
            self.fc2 = nn.Linear(128, 10)

        def forward(self, x):
            x = F.relu(self.conv1(x))                  # (N, 32, 26, 26)
            x = F.relu(self.conv2(x))                  # (N, 64, 24, 24)
            x = self.dropout1(F.max_pool2d(x, 2))      # (N, 64, 12, 12)
            x = torch.flatten(x, 1)                    # (N, 9216)
            x = self.dropout2(F.relu(self.fc1(x)))
            return F.log_softmax(self.fc2(x), dim=1)

    return Net()


def run_pytorch_example(seed: int, target: float, cap_s: float, quick: bool) -> dict:
    import torch
    import torch.nn.functional as F

    X_train, y_train, X_test, y_test = mnist(quick)

    def prepare(X):
        return (torch.as_tensor(X).float().div_(255).unsqueeze(1) - 0.1307) / 0.3081

    X_train, X_test = prepare(X_train), prepare(X_test)
    y_train, y_test = torch.as_tensor(y_train).long(), torch.as_tensor(y_test).long()
    n, batch, max_epochs = len(X_train), 64, 14
    torch.manual_seed(seed)
    net = pytorch_example_net()
    optimizer = torch.optim.Adadelta(net.parameters(), lr=1.0)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    steps_per_epoch = -(-n // batch)
    generator = torch.Generator().manual_seed(seed)
    state = {}

    def epoch_start(epoch):
        if epoch > 0:
            schedule.step()          # the example steps its scheduler after every epoch
        net.train()
        state["order"] = torch.randperm(n, generator=generator)

    def step(epoch, i):
        idx = state["order"][i * batch:(i + 1) * batch]
        optimizer.zero_grad()
        loss = F.nll_loss(net(X_train[idx]), y_train[idx])
        loss.backward()
        optimizer.step()

    def evaluate():
        net.eval()
        with torch.no_grad():
            correct = sum(int((net(X_test[i:i + 1000]).argmax(1) == y_test[i:i + 1000]).sum())
                          for i in range(0, len(X_test), 1000))
        net.train()
        return correct / len(X_test)

    tracker = TimeToAccuracy(target, cap_s)
    train_loop(step, evaluate, tracker, steps_per_epoch, max_epochs, epoch_start)
    return {**tracker.summary(), "steps_per_epoch": steps_per_epoch, "batch": batch, "max_epochs": max_epochs,
            "train_images": n}


# --------------------------------------------------------------------------- Keras's simple convnet
def run_keras(seed: int, target: float, cap_s: float, quick: bool, threads: int) -> dict:
    os.environ["KERAS_BACKEND"] = "tensorflow"
    # TensorFlow's own default on x86 Linux: its oneDNN kernels on. (The Makefile turns them off for the
    # notebooks, only to keep TensorFlow's log lines out of nbval's output checks.)
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    X_train, y_train, X_test, y_test = mnist(quick)
    x_train = (X_train.astype("float32") / 255)[..., None]
    x_test = (X_test.astype("float32") / 255)[..., None]
    y_train_1h = keras.utils.to_categorical(y_train, 10)
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    batch, max_epochs = 128, 15
    n_fit = len(x_train) - int(len(x_train) * 0.1)       # what validation_split=0.1 leaves for training
    steps_per_epoch = -(-n_fit // batch)
    every = max(1, steps_per_epoch // EVALS_PER_EPOCH)
    tracker = TimeToAccuracy(target, cap_s)

    def evaluate():
        probs = model.predict(x_test, batch_size=1000, verbose=0)
        return float(np.mean(probs.argmax(axis=1) == y_test))

    class Watch(keras.callbacks.Callback):
        """Stops the clock for every evaluation: ours (every quarter epoch) and Keras's validation."""
        step = 0

        def on_epoch_begin(self, epoch, logs=None):
            tracker.resume()        # the epoch's reshuffle is on the clock

        def on_train_batch_end(self, batch_i, logs=None):
            Watch.step += 1
            last = batch_i + 1 == steps_per_epoch
            if (batch_i + 1) % every == 0 or last:
                tracker.pause()
                if tracker.record(Watch.step, evaluate()):
                    self.model.stop_training = True
                elif not last:      # after the last batch, Keras's validation runs off the clock
                    tracker.resume()

        def on_train_end(self, logs=None):
            tracker.pause()

    model.fit(x_train, y_train_1h, batch_size=batch, epochs=max_epochs, validation_split=0.1,
              callbacks=[Watch()], verbose=0)
    return {**tracker.summary(), "steps_per_epoch": steps_per_epoch, "batch": batch, "max_epochs": max_epochs,
            "train_images": n_fit, "jit_compile": str(getattr(model, "jit_compile", None)),
            "tf_onednn_opts": os.environ["TF_ENABLE_ONEDNN_OPTS"]}


# --------------------------------------------------------------------------- one run / all runs
def one_run(config: str, seed: int, target: float, cap_s: float, quick: bool, threads: int) -> dict:
    if config != "keras":
        import torch

        common.pin_threads(threads)
        assert torch.get_num_threads() == threads
    if config == "course":
        result = run_course(seed, target, cap_s, quick)
    elif config == "pytorch_example":
        result = run_pytorch_example(seed, target, cap_s, quick)
    else:
        result = run_keras(seed, target, cap_s, quick, threads)
    return {"config": config, "seed": seed, "threads": threads, **result}


def aggregate(runs: list[dict]) -> dict:
    """Per configuration: the median (and range) of time and steps to the target over the runs
    that reached it, and per seed the ratio reference / course, measured in the same round."""
    configs = {}
    for config in CONFIGS:
        mine = [r for r in runs if r.get("config") == config and "error" not in r]
        reached = [r for r in mine if r.get("reached")]
        configs[config] = {"label": LABELS[config], "runs": len(mine), "reached": len(reached),
                           "time_s": common.spread(r["time_s"] for r in reached),
                           "steps": common.spread(r["steps"] for r in reached),
                           "epochs": common.spread(r["steps"] / r["steps_per_epoch"] for r in reached),
                           "best_acc": common.spread(r.get("best_acc") for r in mine)}
    by_seed = {}
    for r in runs:
        if "error" not in r and r.get("reached"):
            by_seed.setdefault(r["seed"], {})[r["config"]] = r["time_s"]
    ratios = {}
    for config in CONFIGS[1:]:
        ratios[config] = common.spread(common.ratio(t.get(config), t.get("course")) for t in by_seed.values())
    return {"configs": configs, "ratio_to_course": ratios}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.add_common_args(p)
    p.add_argument("--config", choices=CONFIGS, help="one run of one configuration (used internally)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=3, help="runs per configuration")
    p.add_argument("--target", type=float, default=None, help="test accuracy to reach (0.985; 0.85 with --quick)")
    p.add_argument("--cap", type=float, default=None, help="training-time cap per run, s (180; 15 with --quick)")
    args = p.parse_args(argv)
    target = args.target if args.target is not None else (0.85 if args.quick else 0.985)
    cap = args.cap if args.cap is not None else (15.0 if args.quick else 180.0)
    if args.config:
        common.write_json(args.json, one_run(args.config, args.seed, target, cap, args.quick, args.threads))
        return
    seeds = 1 if args.quick else args.seeds
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(seeds):            # interleaved, so a slow spell of the machine hits every config
            for config in CONFIGS:
                extra = ["--quick"] if args.quick else []
                result = common.run_json("benchmarks.time_to_accuracy",
                                         ["--config", config, "--seed", seed, "--target", target, "--cap", cap,
                                          *extra], threads=args.threads, timeout=cap * 4 + 300)
                result.setdefault("config", config)
                result.setdefault("seed", seed)
                runs.append(result)
                status = result.get("error", "").splitlines()[0] if "error" in result else (
                    f"{result['time_s']} s, {result['steps']} steps" if result.get("reached")
                    else f"not reached in {result.get('train_s')} s (best {result.get('best_acc')})")
                print(f"  time to accuracy: {config} seed {seed}: {status}", flush=True)
    common.write_json(args.json, {"target": target, "cap_s": cap, "seeds": seeds, "threads": args.threads,
                                  "evals_per_epoch": EVALS_PER_EPOCH, "runs": runs, **aggregate(runs)})


if __name__ == "__main__":
    main()
