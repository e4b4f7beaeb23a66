"""Checks for labs/lab07_data_parallel (after notebook 13)."""

from __future__ import annotations

import numpy as np

from dlcourse.grading import register, student_side


@register("lab07.ring_allreduce", points=2,
          hint="Keep each worker's buffer as a list of p chunks (np.array_split). Each step, build every message "
               "first, then deliver them all: p - 1 steps that add, then p - 1 steps that copy.",
          more="Reduce-scatter step s: worker r sends chunk (r - s) % p to (r + 1) % p, which adds it to its own. "
               "Allgather step s: worker r sends chunk (r + 1 - s) % p, which the next worker copies.")
def check_ring_allreduce(ring_allreduce):
    for p, n in ((2, 6), (3, 9), (5, 20)):
        rng = np.random.default_rng(p)
        buffers = [rng.normal(size=n) for _ in range(p)]
        originals = [b.copy() for b in buffers]
        messages = []

        def send(src, dst, chunk, messages=messages, p=p):
            assert dst == (src + 1) % p, f"worker {src} sent to worker {dst}: in a ring it may only send to {(src + 1) % p}"
            messages.append((src, np.size(chunk)))
            return np.array(chunk, dtype=float, copy=True)

        result = ring_allreduce(buffers, send)
        assert all(np.array_equal(a, b) for a, b in zip(buffers, originals)), "do not modify the input buffers"
        assert len(result) == p, f"return one buffer per worker ({p}), got {len(result)}"
        total = np.sum(originals, axis=0)
        assert all(np.allclose(r, total) for r in result), f"with {p} workers, not every worker ends with the sum"
        per_worker = [sum(size for src, size in messages if src == r) for r in range(p)]
        expected = 2 * (p - 1) * n // p
        assert per_worker == [expected] * p, \
            f"with {p} workers and {n} numbers each, every worker should send 2(p-1)/p * n = {expected} numbers, sent {per_worker}"


@register("lab07.allreduce_time", points=1,
          hint="Count the steps (each pays alpha) and the bytes each worker sends (each costs beta); the formula is "
               "above the exercise.",
          more="2 (p - 1) steps each pay alpha; each worker sends 2 (p - 1) / p of the n_bytes, each byte costing "
               "beta. One worker (p = 1) sends nothing: 0 s.")
def check_allreduce_time(allreduce_time):
    from dlcourse.dist import ring_allreduce_time

    for n, p, a, b in ((1e3, 2, 1e-5, 1e-9), (1e8, 8, 5e-6, 1 / 25e9), (4e6, 512, 1e-5, 1 / 3.125e9)):
        got, expected = float(allreduce_time(n, p, a, b)), float(ring_allreduce_time(n, p, a, b))
        assert np.isclose(got, expected, rtol=1e-9), f"allreduce_time({n:g}, {p}, {a:g}, {b:g}) = {got:.4g} s, expected {expected:.4g} s"
    assert float(allreduce_time(1e6, 1, 1e-5, 1e-9)) == 0.0, "one worker has nothing to exchange: 0 s"


@register("lab07.lr_schedule", points=2,
          hint="Two cases: after the warmup (or with none) the rate is base_lr scaled by the number of workers; during "
               "it, a straight line from base_lr to that value.",
          more="target = base_lr * size; if warmup_steps <= 0 or step >= warmup_steps: return target; "
               "else return base_lr + (target - base_lr) * step / warmup_steps.")
def check_lr_schedule(lr_at):
    cases = [((0, 0.1, 8, 100), 0.1), ((50, 0.1, 8, 100), 0.45), ((100, 0.1, 8, 100), 0.8), ((5000, 0.1, 8, 100), 0.8),
             ((0, 0.1, 1, 100), 0.1), ((10, 0.05, 4, 0), 0.2)]
    for (step, base, size, warmup), expected in cases:
        got = float(lr_at(step, base, size, warmup))
        assert np.isclose(got, expected), f"lr_at(step={step}, base_lr={base}, size={size}, warmup_steps={warmup}) = {got:.4g}, expected {expected:.4g}"


# lab07.large_batch: Goyal et al. (2017) in a few seconds. The numbers come from a sweep on this course's 2-core
# AMD EPYC (one thread; MLPs 784-128-10 and 784-256-256-10, 6,000 to 24,000 images, batch 32 or 64, k = 8 to 32,
# base rates 0.002 to 0.01, 3 to 8 epochs, warmup 0 to 1 epoch). A base rate this small keeps k * rate = 0.08
# stable, and k = 16 opens a gap of 8.5 to 9.5 points for the naive large batch. Seeds 0, 1, 2 (initial weights and
# data order), baseline / naive / scaled with warmup: 0.944 / 0.857 / 0.943, 0.942 / 0.856 / 0.941,
# 0.948 / 0.853 / 0.942, the same with ONEDNN_MAX_CPU_ISA=AVX2. Fewer epochs or a larger rate cost the scaled run
# more; k = 8 loses only 5 to 6 points. About 7 s on one core.
LB_TRAIN = 12_000            # the first 12,000 MNIST training images; accuracy on all 10,000 test images
LB_HIDDEN = (256, 256)       # an MLP 784-256-256-10 on standardized pixels
LB_BATCH, LB_K = 32, 16      # the small batch b and the factor k: the large batch is k * b = 512
LB_LR = 0.005                # the base rate for batch 32; SGD with momentum 0.9 in all three runs
LB_EPOCHS = 4
LB_WARMUP_EPOCHS = 0.25      # about Goyal et al.'s share: their 5 warmup epochs of 90
LB_SEED = 0                  # initial weights and data order, the same in all three runs


def _mnist_vectors():
    """(X, y) of the first LB_TRAIN training images and (X, y) of the test images, standardized, as tensors."""
    import torch

    from dlcourse import data

    (X_train, y_train), (X_test, y_test) = data.load_mnist("mnist")
    X = torch.as_tensor(X_train[:LB_TRAIN].reshape(LB_TRAIN, -1), dtype=torch.float32)
    X_te = torch.as_tensor(X_test.reshape(len(X_test), -1), dtype=torch.float32)
    mean, std = X.mean(), X.std()
    return (((X - mean) / std, torch.as_tensor(y_train[:LB_TRAIN]).long()),
            ((X_te - mean) / std, torch.as_tensor(y_test).long()))


def large_batch_accuracies(lr_at, seed=LB_SEED):
    """Test accuracies of the three runs of lab07.large_batch: (batch b, rate LB_LR), (batch k * b, rate LB_LR),
    (batch k * b, rate lr_at(step, LB_LR, LB_K, warmup) at every step); the same initial weights and data order."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    large = LB_K * LB_BATCH
    steps, warmup = LB_EPOCHS * (LB_TRAIN // large), int(LB_WARMUP_EPOCHS * (LB_TRAIN // large))
    scaled = []
    for step in range(steps):            # the student's rates first: a bad one fails before any training
        value = lr_at(step, LB_LR, LB_K, warmup)
        try:
            lr = float(value)
        except (TypeError, ValueError):
            lr = float("nan")
        assert np.isfinite(lr) and lr > 0, \
            f"lr_at(step={step}, base_lr={LB_LR}, size={LB_K}, warmup_steps={warmup}) returned {value!r}: " \
            "a learning rate must be a positive, finite float"
        scaled.append(lr)

    (X, y), (X_test, y_test) = _mnist_vectors()
    sizes = (X.shape[1], *LB_HIDDEN, 10)

    def accuracy(batch, lrs):
        torch.manual_seed(seed)                             # every run starts from the same weights
        net = nn.Sequential(*[m for a, b in zip(sizes, sizes[1:]) for m in (nn.Linear(a, b), nn.ReLU())][:-1])
        optimizer = torch.optim.SGD(net.parameters(), lr=lrs[0], momentum=0.9)
        generator = torch.Generator().manual_seed(seed)     # every run sees the images in the same order
        per_epoch = len(X) // batch
        for epoch in range(LB_EPOCHS):
            order = torch.randperm(len(X), generator=generator)
            for i in range(per_epoch):
                optimizer.param_groups[0]["lr"] = lrs[epoch * per_epoch + i]
                idx = order[i * batch:(i + 1) * batch]
                loss = F.cross_entropy(net(X[idx]), y[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        with torch.no_grad():
            return (net(X_test).argmax(dim=1) == y_test).float().mean().item()

    threads = torch.get_num_threads()
    torch.set_num_threads(1)             # faster for this small network, and the same numbers on any machine
    try:
        with torch.random.fork_rng():    # leave the notebook's random state as it was
            baseline = accuracy(LB_BATCH, [LB_LR] * LB_EPOCHS * (LB_TRAIN // LB_BATCH))
            return (baseline, accuracy(large, [LB_LR] * steps), accuracy(large, scaled)), scaled
    finally:
        torch.set_num_threads(threads)


@register("lab07.large_batch", points=1,
          hint="This check runs your lr_at with base_lr = 0.005 and size = 16 on a batch 16 times larger: the rate "
               "must climb to base_lr * size during the warmup and stay there.",
          more="The same lr_at as in lab07.lr_schedule: target = base_lr * size; return target once step >= "
               "warmup_steps (or with no warmup), else base_lr + (target - base_lr) * step / warmup_steps.")
def check_large_batch(lr_at):
    (base, naive, scaled), lrs = large_batch_accuracies(lr_at)
    large = LB_K * LB_BATCH
    mlp = "-".join(map(str, (784, *LB_HIDDEN, 10)))
    print(f"test accuracy after {LB_EPOCHS} epochs on {LB_TRAIN:,} MNIST images (MLP {mlp}, momentum 0.9):")
    print(f"  batch {LB_BATCH:>3}, lr {LB_LR:g}            {base:.3f}   (baseline)")
    print(f"  batch {large:>3}, lr {LB_LR:g}            {naive:.3f}   (naive large batch)")
    print(f"  batch {large:>3}, your lr_at          {scaled:.3f}   ({lrs[0]:.3g} to {max(lrs):.3g}, ends at {lrs[-1]:.3g})")
    assert base - naive >= 0.05, \
        f"the course's runs did not reproduce the effect (naive large batch {naive:.3f} against {base:.3f}): not your lr_at"
    assert scaled >= base - 0.01, (
        f"with your lr_at the large batch reached {scaled:.3f} against the baseline's {base:.3f}: it must come within "
        f"1 point. Your rate ends at {lrs[-1]:.3g}; linear scaling ends at base_lr * size = {LB_LR * LB_K:g}")


def run_horovod_job(train_data_parallel, lr_at) -> list[dict]:
    """Run the student's function under ``horovodrun -np 2`` (scripts/lab07_worker.py); the ranks' results.

    Runs where the student's code runs (``student_side``): in the grader, inside the sandbox."""
    import inspect
    import tempfile
    from pathlib import Path

    from dlcourse import dist

    header = ("import numpy as np\nimport torch\nimport torch.nn.functional as F\nfrom torch import nn\n"
              "from dlcourse import models\n\n")
    out = Path(tempfile.mkdtemp(prefix="lab07-"))
    source = out / "student.py"
    source.write_text(header + inspect.getsource(lr_at) + "\n\n" + inspect.getsource(train_data_parallel))
    try:
        return dist.launch(dist.SCRIPTS / "lab07_worker.py", [source], np=2, out=out, timeout=300).results
    except dist.HorovodRunError as exc:
        raise AssertionError(f"the Horovod job failed: {exc}") from None


@register("lab07.horovod", points=3,
          hint="Notebook 13's script: an optimizer that averages gradients, equal starting weights on every rank, "
               "a different shard of the data per rank, and a single writer.",
          more="hvd.DistributedOptimizer(opt, named_parameters=net.named_parameters()); hvd.broadcast_parameters and "
               "hvd.broadcast_optimizer_state from rank 0; the same permutation on every rank (a torch.Generator with "
               "a fixed seed), sliced [hvd.rank()::hvd.size()]; torch.save only when hvd.rank() == 0.")
def check_horovod(train_data_parallel, lr_at):
    results = student_side(run_horovod_job)(train_data_parallel, lr_at)
    assert isinstance(results, list) and all(isinstance(r, dict) and "rank" in r for r in results), \
        "the Horovod workers did not report their results"
    ranks = sorted(results, key=lambda r: r["rank"])
    assert len(ranks) == 2, f"expected results from 2 ranks, got {len(ranks)}"
    r0, r1 = ranks
    assert np.isclose(r0["weights_sum"], r1["weights_sum"], rtol=1e-6, atol=1e-6) and \
        np.isclose(r0["weights_norm"], r1["weights_norm"], rtol=1e-6), \
        "the two ranks end with different weights: broadcast the initial parameters and average the gradients"
    epoch0, epoch1 = (set(r["seen"][: len(r["seen"]) // 3]) for r in (r0, r1))   # the first of the 3 epochs
    assert epoch0 and not (epoch0 & epoch1), "in one epoch the ranks trained on the same images: give each rank its own shard"
    assert len(epoch0 | epoch1) >= 0.9 * 6000, \
        f"in one epoch the ranks together trained on only {len(epoch0 | epoch1)} of the 6,000 images"
    assert r0["lrs"] and np.isclose(r0["lrs"][0], 0.02) and np.isclose(max(r0["lrs"]), 0.04), \
        "use lr_at: start at base_lr = 0.02 and warm up to base_lr * hvd.size() = 0.04"
    assert r0["checkpoint_exists"], "rank 0 must save a checkpoint to checkpoint_path"
    assert not r1["checkpoint_exists"], "only rank 0 saves: the others would write the same weights again"
    assert r0["accuracy"] >= 0.9, f"test accuracy {r0['accuracy']:.1%} after 3 epochs on 6,000 images (needs 90%)"
