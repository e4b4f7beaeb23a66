"""Fraction of peak: 2-D convolution three ways, and CNN training steps, against a large matmul.

    python -m benchmarks.conv_peak --json OUT [--quick] [--threads 1]

The "peak" is what PyTorch's float32 matmul of two large square matrices reaches on this
machine with the same threads. Convolutions use the frameworks' own implementations:
``torch.nn.functional.conv2d`` (direct), ``torch.nn.functional.unfold`` + a matrix
product (im2col + GEMM) and ``torch.fft`` (pointwise products of spectra). Every method
is credited with the multiply-adds of the direct convolution, 2·N·Cout·Cin·k²·Ho·Wo FLOPs,
so the figures are comparable "useful" rates. A training step is credited 3x the
forward FLOPs (forward, plus backward for the inputs and for the weights), counted from
the layer shapes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402

# (name, batch, C_in, C_out, kernel, H=W, padding); quick mode uses batch 2.
CONV_SHAPES = [
    ("LeNet-5 conv2: 6->16, 5x5, 14x14", 128, 6, 16, 5, 14, 0),
    ("PyTorch example conv2: 32->64, 3x3, 26x26", 64, 32, 64, 3, 26, 0),
    ("VGG-style: 64->64, 3x3, 56x56, pad 1", 8, 64, 64, 3, 56, 1),
]


def time_call(fn, reps: int, min_s: float = 0.02, cpu: list | None = None) -> list[float]:
    """Seconds per call of ``fn`` for ``reps`` samples, each averaging enough calls to last ``min_s``.

    When ``cpu`` is a list, the ratio CPU time / wall time of the samples is appended to it:
    about 1.0 means one busy thread, more means the call used other threads too."""
    fn()
    fn()                                              # warm-up: allocations, kernel selection
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-6)
    inner = max(1, int(min_s / once))
    samples = []
    c0 = time.process_time()
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner)
    if cpu is not None:
        cpu.append(round((time.process_time() - c0) / (sum(samples) * inner), 2))
    return samples


def gflops(flops: float, seconds: list[float]) -> dict:
    return common.spread(flops / s / 1e9 for s in seconds)


def conv_flops(n, c_in, c_out, k, h_out, w_out) -> float:
    return 2.0 * n * c_out * c_in * k * k * h_out * w_out


def forward_flops(net, input_shape) -> float:
    """FLOPs of one forward pass of ``net`` (its Conv2d and Linear layers), counted from the
    shapes a dummy input produces: 2 per multiply-add; pooling and activations left out."""
    import torch

    total = []

    def hook(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total.append(2.0 * output.numel() * module.in_channels // module.groups * k)
        elif isinstance(module, torch.nn.Linear):
            total.append(2.0 * output.numel() * module.in_features)

    handles = [m.register_forward_hook(hook) for m in net.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        net(torch.zeros(input_shape))
    for h in handles:
        h.remove()
    return sum(total) / input_shape[0]


def conv_methods(x, w, padding: int):
    """The three implementations, as functions of no argument returning (N, C_out, Ho, Wo)."""
    import torch
    import torch.nn.functional as F

    n, c_in, h, _ = x.shape
    c_out, _, k, _ = w.shape
    h_out = h + 2 * padding - k + 1
    w_mat = w.reshape(c_out, -1)

    def direct():
        return F.conv2d(x, w, padding=padding)

    def im2col():
        cols = F.unfold(x, k, padding=padding)                    # (N, C_in*k*k, Ho*Wo)
        return torch.matmul(w_mat, cols).view(n, c_out, h_out, h_out)

    size = h + 2 * padding                                        # the padded input; linear conv of
    s = size + k - 1                                              # it with the kernel has size s
    w_flipped = torch.flip(w, dims=(2, 3))                        # conv2d correlates: flip for a convolution
    w_spec = torch.fft.rfft2(w_flipped, s=(s, s))                 # the weights' spectra are computed once

    def fft():
        xp = F.pad(x, (padding,) * 4) if padding else x
        x_spec = torch.fft.rfft2(xp, s=(s, s))                    # (N, C_in, s, s//2+1)
        y_spec = torch.einsum("nchw,ochw->nohw", x_spec, w_spec)  # sum over input channels
        y = torch.fft.irfft2(y_spec, s=(s, s))
        return y[:, :, k - 1:k - 1 + h_out, k - 1:k - 1 + h_out]

    return {"im2col + GEMM (unfold + matmul)": im2col, "direct (F.conv2d)": direct, "FFT (torch.fft)": fft}


def training_step(net, batch: int, optimizer="adam"):
    import torch
    import torch.nn.functional as F

    X = torch.rand(batch, 1, 28, 28)
    y = torch.randint(0, 10, (batch,))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3) if optimizer == "adam" else \
        torch.optim.Adadelta(net.parameters(), lr=1.0)
    net.train()

    def step():
        out = net(X)
        loss = F.cross_entropy(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.add_common_args(p)
    args = p.parse_args(argv)
    import torch

    from benchmarks.time_to_accuracy import pytorch_example_net
    from dlcourse import models

    common.pin_threads(args.threads)
    torch.manual_seed(0)
    reps = 3 if args.quick else 7
    n = 512 if args.quick else 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    cpu = []
    peak = gflops(2.0 * n ** 3, time_call(lambda: torch.mm(a, b), reps, min_s=0.05 if args.quick else 0.2, cpu=cpu))
    rows = [{"what": f"matmul {n}x{n} (torch.mm): the peak", "kind": "peak", "gflops": peak, "cpu_per_wall": cpu[-1]}]

    for name, batch, c_in, c_out, k, h, pad in CONV_SHAPES:
        batch = 2 if args.quick else batch
        x, w = torch.randn(batch, c_in, h, h), torch.randn(c_out, c_in, k, k)
        h_out = h + 2 * pad - k + 1
        flops = conv_flops(batch, c_in, c_out, k, h_out, h_out)
        methods = conv_methods(x, w, pad)
        ref = methods["direct (F.conv2d)"]()
        for method, fn in methods.items():
            err = float((fn() - ref).abs().max() / ref.abs().max())
            if err > 1e-4:
                raise AssertionError(f"{method} disagrees with F.conv2d on {name}: relative error {err:.1e}")
            rows.append({"what": f"{name}, batch {batch}", "method": method, "kind": "conv",
                         "gflops": gflops(flops, time_call(fn, reps, cpu=cpu)), "max_rel_err": err,
                         "cpu_per_wall": cpu[-1],
                         "mflop_per_call": round(flops / 1e6, 2)})

    for name, net_fn, batch, opt in (("course LeNet-5 training step (Adam)", models.lenet5, 128, "adam"),
                                     ("PyTorch example net training step (Adadelta)", pytorch_example_net, 64,
                                      "adadelta")):
        batch = 8 if args.quick else batch
        net = net_fn()
        fwd = forward_flops(net, (2, 1, 28, 28))
        flops = 3 * fwd * batch
        step_times = time_call(training_step(net, batch, opt), reps, min_s=0.1 if not args.quick else 0.02, cpu=cpu)
        rows.append({"what": f"{name}, batch {batch}", "kind": "train", "gflops": gflops(flops, step_times),
                     "cpu_per_wall": cpu[-1],
                     "forward_mflop_per_image": round(fwd / 1e6, 3), "step_ms": common.spread(
                         1e3 * s for s in step_times), "images_per_s": common.spread(batch / s for s in step_times)})

    for row in rows:
        row["percent_of_peak"] = round(100 * row["gflops"]["median"] / peak["median"], 2)
    common.write_json(args.json, {"threads": args.threads, "matmul_n": n, "reps": reps,
                                  "torch_threads": torch.get_num_threads(), "rows": rows})


if __name__ == "__main__":
    main()
