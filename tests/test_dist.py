"""dlcourse.dist and the Horovod scripts of notebooks/13: real `horovodrun -np 2 --gloo` jobs,
a worker that dies, the alpha-beta model, and Keras 3's broken Horovod wrapper."""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import pytest

from dlcourse import data, dist

pytest.importorskip("horovod.torch", reason="Horovod with PyTorch is not installed (run `make lab`)")

TORCH_SCRIPT = dist.SCRIPTS / "hvd_train_torch.py"
DDP_SCRIPT = dist.SCRIPTS / "ddp_train_torch.py"
TINY = ["--train-size", "1024", "--test-size", "200", "--epochs", "1", "--dtype", "float64"]


def needs_data():
    try:
        data.fetch("mnist", progress=False)
    except data.DataError as exc:
        pytest.skip(f"MNIST is not available: {exc}")


# --------------------------------------------------------------------------- pure functions
def test_helper_threads_cpu_counts_other_threads_not_the_caller():
    import threading
    sys.path.insert(0, str(dist.SCRIPTS))
    import course_worker as cw

    before = cw.helper_threads_cpu()
    t0 = time.thread_time()
    while time.thread_time() - t0 < 0.5:   # the calling thread's own work is not counted
        pass
    assert cw.helper_threads_cpu() - before < 0.25

    def burn(stop):
        while not stop.is_set():
            sum(range(1000))
    stop = threading.Event()
    thread = threading.Thread(target=burn, args=(stop,))
    thread.start()
    before, deadline = cw.helper_threads_cpu(), time.time() + 20
    while cw.helper_threads_cpu() - before < 0.5 and time.time() < deadline:
        time.sleep(0.05)
    counted = cw.helper_threads_cpu() - before
    stop.set()
    thread.join()
    assert counted >= 0.5, f"a busy thread's CPU time was not counted: {counted:.2f} s in 20 s"


def test_fit_recovers_alpha_and_beta():
    rng = np.random.default_rng(0)
    alpha, beta = 30e-6, 1 / 2e9  # 30 us per step, 2 GB/s
    n_bytes = 2.0 ** np.arange(2, 27, 2)
    for p in (2, 8):
        seconds = dist.ring_allreduce_time(n_bytes, p, alpha, beta) * rng.normal(1, 0.02, n_bytes.size)
        a, b = dist.fit_alpha_beta(n_bytes, seconds, p=p)
        assert a == pytest.approx(alpha, rel=0.05) and b == pytest.approx(beta, rel=0.05)
    with pytest.raises(ValueError):
        dist.fit_alpha_beta([1.0, 2.0], [1.0, 2.0], p=1)


def test_ring_cost_and_efficiency():
    # T(n, p) = 2(p-1) alpha + 2(p-1)/p n beta: the bandwidth term tends to 2 n beta, not growing with p.
    assert dist.ring_allreduce_time(1e6, 2, 1e-5, 1e-9) == pytest.approx(2e-5 + 1e-3)
    assert dist.ring_allreduce_time(1e6, 1024, 0, 1e-9) < 2e-3
    assert dist.scaling_efficiency(1, 1e8, 0.3, 1e-5, 1e-9) == 1.0
    e = dist.scaling_efficiency(np.array([8, 64, 512]), 1e8, 0.3, 1e-5, 1 / 3e9)
    assert np.all(np.diff(e) < 0) and np.all((0 < e) & (e < 1))
    assert dist.scaling_efficiency(512, 1e8, 0.3, 1e-5, 1 / 3e9, overlap=1.0) == 1.0


def test_output_parsing():
    out = "[0]<stdout>:hello\n[1]<stderr>:oops\nProcess 1 exit with status code 3.\n[0]<stdout>:bye\n"
    per_rank, launcher = dist.split_by_rank(out)
    assert per_rank == {0: ["hello", "bye"], 1: ["oops"]} and len(launcher) == 1
    assert dist.failed_rank(out) == (1, 3) and dist.failed_rank("all good") == (None, None)


def test_torchrun_output_parsing():
    out = ("[default0]:hello\n[default1]:oops\nW1130 launcher line\n"
           "Root Cause (first observed failure):\n[0]:\n  time      : 2026-11-30_14:30:48\n"
           "  host      : localhost\n  rank      : 1 (local_rank: 1)\n  exitcode  : 3 (pid: 20488)\n")
    per_rank, launcher = dist.split_by_rank(out)
    assert per_rank == {0: ["hello"], 1: ["oops"]} and launcher[0] == "W1130 launcher line"
    assert dist.failed_rank(out) == (1, 3)
    with pytest.raises(ValueError, match="launcher"):
        dist.launch(TORCH_SCRIPT, launcher="mpirun")


# --------------------------------------------------------------------------- real jobs
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_torch_two_ranks_equal_one_rank_on_the_combined_batch(tmp_path):
    needs_data()
    two = dist.launch(TORCH_SCRIPT, TINY, np=2, out=tmp_path / "np2", timeout=100)
    one = dist.launch(TORCH_SCRIPT, TINY + ["--batch-size", "128"], np=1, out=tmp_path / "np1", timeout=100)
    assert [r["rank"] for r in two.results] == [0, 1] and one.results[0]["size"] == 1
    assert two.results[0]["global_batch"] == one.results[0]["global_batch"] == 128
    assert two.per_rank[0][-1].startswith("epoch 1/1") and not any("epoch 1/1" in line for line in two.per_rank[1])
    p0, p1 = (np.load(tmp_path / "np2" / f"params_rank{r}.npy") for r in (0, 1))
    ref = np.load(tmp_path / "np1" / "params_rank0.npy")
    assert np.array_equal(p0, p1), "the two ranks hold different weights"
    assert np.abs(p0 - ref).max() < 1e-5, "2 ranks x 64 differ from 1 rank x 128"
    assert (tmp_path / "np2" / "checkpoint.pt").exists() and not list((tmp_path / "np2").glob("*.tmp"))


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_pinned_ranks_with_fp16_gradients_stay_in_sync(tmp_path):
    """The tuning options of BENCHMARKS.md's scaling ladder: each rank on its own core, float16 gradients."""
    needs_data()
    job = dist.launch(TORCH_SCRIPT, TINY + ["--batch-size", "32", "--pin-core", "--fp16-allreduce"], np=2,
                      out=tmp_path, timeout=180)
    r0, r1 = sorted(job.results, key=lambda r: r["rank"])
    assert r0["fp16_allreduce"] and r1["fp16_allreduce"]
    # Horovod's background thread and Gloo's take a measurable share of each rank's core (BENCHMARKS.md)
    assert 0 < r0["helper_threads_cpu_share"] < 1 and 0 < r1["helper_threads_cpu_share"] < 1
    if len(os.sched_getaffinity(0)) >= 2:
        assert r0["core"] != r1["core"], (r0["core"], r1["core"])
    params = [np.load(tmp_path / f"params_rank{r}.npy") for r in range(2)]
    assert np.array_equal(params[0], params[1]), "float16 gradients must still leave the ranks identical"


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_dead_worker_fails_the_job_naming_its_rank(tmp_path):
    needs_data()
    start = time.time()
    with pytest.raises(dist.HorovodRunError) as err:
        dist.launch(TORCH_SCRIPT, TINY + ["--fail-rank", "1", "--fail-step", "2", "--fail-how", "kill"],
                    np=2, out=tmp_path, timeout=80)
    assert err.value.rank == 1 and "rank 1" in str(err.value) and "SIGKILL" in str(err.value)
    assert time.time() - start < 80, "the surviving rank hung instead of being stopped"


def test_timeout_kills_the_job(tmp_path):
    script = tmp_path / "sleepy.py"
    script.write_text("import time\ntime.sleep(60)\n")
    start = time.time()
    with pytest.raises(dist.HorovodRunError, match="did not finish within"):
        dist.launch(script, np=1, timeout=3)
    assert time.time() - start < 15


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_allreduce_bench_times_every_size(tmp_path):
    run = dist.launch(dist.SCRIPTS / "allreduce_bench.py", ["--max-log2-bytes", "16", "--reps", "5",
                                                           "--fusion-tensors", "8"], np=2, out=tmp_path,
                      timeout=100)
    res = run.results[0]
    assert res["size"] == 2 and len(res["bytes"]) == len(res["seconds"]) == 8
    assert all(t > 0 for t in res["seconds"]) and set(res["fusion"]["seconds"]) == {
        "one by one", "all at once (fused)", "concatenated"}


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_synthetic_benchmark_times_resnet50_on_two_ranks(tmp_path):
    run = dist.launch(dist.SCRIPTS / "hvd_synthetic_benchmark.py", ["--image-size", "32", "--batch-size", "4",
                                                                    "--steps", "2", "--warmup-steps", "1"],
                      np=2, out=tmp_path, timeout=80)
    assert [r["rank"] for r in run.results] == [0, 1] and {r["size"] for r in run.results} == {2}
    for res in run.results:
        assert res["params"] == 25_557_032, "not ResNet-50's parameter count"
        assert res["images_per_s"] > 0 and res["images_per_s_total"] == pytest.approx(2 * res["images_per_s"])
        assert len(res["step_times"]) == 2 and res["step_s"] > 0 and res["fp16_allreduce"] is False
    assert "Img/sec per rank" in run.log(0) and not any("Img/sec" in line for line in run.per_rank.get(1, []))
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_keras3_distributed_optimizer_diverges_while_the_tape_stays_in_sync(tmp_path):
    needs_data()
    pytest.importorskip("horovod.tensorflow", reason="Horovod with TensorFlow is not installed")
    run = dist.launch(dist.SCRIPTS / "hvd_keras3_sync.py", ["--steps", "10"], np=2, out=tmp_path, timeout=140)
    res = run.results[0]
    assert res["keras DistributedOptimizer: before"] == 0.0 and res["DistributedGradientTape: before"] == 0.0
    assert res["DistributedGradientTape: after"] == 0.0, "the supported path must keep ranks identical"
    # If this fails, Horovod's Keras wrapper works again: update notebook 13 and ENV notes.
    assert res["keras DistributedOptimizer: after"] > 1e-3, "Keras 3 + hvd.DistributedOptimizer stayed in sync"


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_torchrun_ddp_gives_the_horovod_weights(tmp_path):
    needs_data()
    ddp = dist.launch(DDP_SCRIPT, TINY, np=2, out=tmp_path / "ddp", timeout=150, launcher="torchrun")
    hvd = dist.launch(TORCH_SCRIPT, TINY, np=2, out=tmp_path / "hvd", timeout=150)
    assert [r["launcher"] for r in ddp.results] == ["torchrun"] * 2 and "epoch 1/1" in ddp.log(0)
    weights = {name: [np.load(tmp_path / name / f"params_rank{r}.npy") for r in range(2)] for name in ("ddp", "hvd")}
    np.testing.assert_array_equal(*weights["ddp"])
    np.testing.assert_allclose(weights["ddp"][0], weights["hvd"][0], rtol=0, atol=1e-10)


@pytest.mark.timeout(120)
def test_torchrun_names_the_rank_that_died(tmp_path):
    script = tmp_path / "dies.py"
    script.write_text("import os, time, torch.distributed as td\n"
                      "td.init_process_group('gloo')\n"
                      "print('rank', td.get_rank(), 'up', flush=True)\n"
                      "if td.get_rank() == 1:\n    os._exit(3)\n"
                      "time.sleep(60)\n")
    with pytest.raises(dist.HorovodRunError) as err:
        dist.launch(script, np=2, timeout=100, launcher="torchrun")
    assert err.value.rank == 1 and "rank 1 died with exit code 3" in str(err.value)
