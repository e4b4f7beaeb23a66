"""Scaling: Horovod throughput at 1 and 2 processes here, and the alpha-beta model at 8-1024 GPUs.

    python -m benchmarks.scaling --json OUT [--quick] [--repeats 2]

Uses the course's own pieces, unchanged: ``scripts/hvd_train_torch.py`` (the small CNN
of notebooks/13, one CPU thread per rank, 64 images per rank per step: weak scaling)
launched with ``dlcourse.dist.launch``, and ``scripts/allreduce_bench.py`` whose times
``dlcourse.dist.fit_alpha_beta`` turns into (alpha, beta). The 1- and 2-process runs
alternate, so that a busy spell of the machine hits both. The extrapolation repeats
notebooks/13's: ResNet-50 gradients (25.5 M float32), 64 images per GPU at 219 images/s
(a P100), half of the communication hidden behind the backward pass.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402

# Notebooks/13's extrapolation: ResNet-50 on P100s.
RESNET50_BYTES = 25.5e6 * 4
T_COMPUTE_P100 = 64 / 219
OVERLAP = 0.5
GPUS = [8, 16, 32, 64, 128, 256, 512, 1024]
HOROVOD_PUBLISHED_512 = 0.90      # Horovod's paper/README: ~90% scaling efficiency at 512 GPUs (25 GbE)
# Parameters of scripts/hvd_train_torch.py's make_net: conv 1->8 5x5, conv 8->16 5x5, fc 256->64, fc 64->10.
SMALL_CNN_PARAMS = (8 * 25 + 8) + (16 * 8 * 25 + 16) + (256 * 64 + 64) + (64 * 10 + 10)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.add_common_args(p)
    p.add_argument("--repeats", type=int, default=2, help="runs at each process count")
    args = p.parse_args(argv)
    import numpy as np

    from dlcourse import dist

    train = ["--train-size", 1280 if args.quick else 12_800, "--test-size", 200, "--epochs", 1,
             "--batch-size", 64]
    repeats = 1 if args.quick else args.repeats
    runs = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            for np_ in (1, 2):
                job = dist.launch(dist.SCRIPTS / "hvd_train_torch.py", train, np=np_, out=Path(tmp) / f"np{np_}_{r}",
                                  timeout=300, threads_per_rank=args.threads)
                rec = job.results[0]
                runs[np_].append({"images_per_s": rec["images_per_s"], "step_ms": rec["step_ms"],
                                  "wait_ms": rec["wait_ms"], "steps": rec["steps"], "job_s": round(job.seconds, 2)})
                print(f"  scaling: {np_} process(es): {rec['images_per_s']:.0f} images/s", flush=True)
        bench_args = ["--max-log2-bytes", 20, "--reps", 5] if args.quick else []
        bench = dist.launch(dist.SCRIPTS / "allreduce_bench.py", bench_args, np=2, out=Path(tmp) / "bench",
                            timeout=300, threads_per_rank=args.threads).results[0]

    ips = {n: common.spread(r["images_per_s"] for r in runs[n]) for n in runs}
    # Efficiency per round (runs made one after the other), then their median.
    eff = common.spread(b["images_per_s"] / (2 * a["images_per_s"]) for a, b in zip(runs[1], runs[2]))
    sizes, seconds = np.array(bench["bytes"], dtype=float), np.array(bench["seconds"])
    alpha, beta = dist.fit_alpha_beta(sizes, seconds, p=2)
    fit_ok = alpha > 0 and beta > 0          # noisy timings can give a meaningless (negative) fit
    step1 = float(np.median([r["step_ms"] for r in runs[1]])) / 1e3
    predicted_here = float(dist.scaling_efficiency(2, SMALL_CNN_PARAMS * 4, step1, alpha, beta)) if fit_ok else None
    n_buffers = int(np.ceil(RESNET50_BYTES / 64e6))
    systems = {name: (net["alpha"], net["beta"]) for name, net in dist.INTERCONNECTS.items()}
    if fit_ok:
        systems["this machine's loopback (measured)"] = (alpha, beta)
    predictions = {name: [round(float(e), 4) for e in dist.scaling_efficiency(
        np.array(GPUS), RESNET50_BYTES, T_COMPUTE_P100, a, b, overlap=OVERLAP, n_buffers=n_buffers)]
        for name, (a, b) in systems.items()}
    common.write_json(args.json, {
        "threads_per_rank": args.threads, "repeats": repeats, "train_args": [str(a) for a in train],
        "runs": runs, "images_per_s": ips, "efficiency_2": eff,
        "alpha_s": alpha, "beta_s_per_byte": beta, "bandwidth_gb_s": 1 / beta / 1e9 if beta else None,
        "fit_ok": fit_ok,
        "allreduce": {"bytes": bench["bytes"], "seconds": bench["seconds"]},
        "model_efficiency_2_here": predicted_here, "small_cnn_params": SMALL_CNN_PARAMS,
        "gpus": GPUS, "predictions": predictions, "horovod_published_512": HOROVOD_PUBLISHED_512,
        "resnet50_bytes": RESNET50_BYTES, "t_compute_s": T_COMPUTE_P100, "overlap": OVERLAP})


if __name__ == "__main__":
    main()
