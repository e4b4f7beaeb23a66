"""benchmarks/: statistics, tables, the time-to-accuracy stopping logic and the report (no real benchmark runs)."""

from __future__ import annotations

import json
import re

import pytest

from benchmarks import common, course_time, report, run
from benchmarks.time_to_accuracy import TimeToAccuracy, aggregate, train_loop


class FakeClock:
    """A clock that advances only when told: training steps cost 1 s, evaluations 100 s."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


# --------------------------------------------------------------------------- statistics and tables
def test_spread_median_min_max_and_missing_values():
    assert common.spread([3, 1, 2, None]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    assert common.spread([1, 2, 3, 10])["median"] == 2.5
    assert common.spread([]) == {"median": None, "min": None, "max": None, "n": 0}
    assert common.spread(x for x in [None])["n"] == 0


def test_formatting_of_numbers_and_spreads():
    assert common.fmt_num(None) == "-"
    assert common.fmt_num(12.345) == "12.3"
    assert common.fmt_num(123456) == "123,456"
    assert common.fmt_spread(common.spread([1.0, 2.0, 4.0]), "s") == "2 s (1-4, n=3)"
    assert common.fmt_spread(common.spread([5.0]), "s") == "5 s"
    assert common.fmt_spread({"median": 50.0, "min": 40.0, "max": 60.0, "n": 2}, "%") == "50% (40-60, n=2)"
    assert common.fmt_spread(common.spread([])) == "-"
    assert common.ratio(3, 2) == 1.5 and common.ratio(None, 2) is None and common.ratio(1, 0) is None


def test_text_and_markdown_tables():
    text = common.table_text(["a", "long header"], [[1, None], ["xyz", "b"]])
    lines = text.splitlines()
    assert lines[0].startswith("a    long header") and set(lines[1]) <= {"-", " "}
    assert lines[2].split() == ["1", "-"]
    md = common.table_markdown(["x", "y"], [["a|b", 2]])
    assert md.splitlines() == ["| x | y |", "|---|---|", "| a\\|b | 2 |"]


# --------------------------------------------------------------------------- time to accuracy
def test_stopwatch_counts_training_time_only_and_stops_at_the_target():
    clock = FakeClock()
    tracker = TimeToAccuracy(target=0.9, cap_s=1000, clock=clock)
    accuracies = iter([0.5, 0.8, 0.91, 0.95])

    def step(epoch, i):
        clock.now += 1.0                  # one training step: 1 s

    def evaluate():
        clock.now += 100.0                # evaluation is slow but off the clock
        return next(accuracies)

    steps = train_loop(step, evaluate, tracker, steps_per_epoch=8, max_epochs=5, evals_per_epoch=4)
    assert steps == 6                     # evaluations after steps 2, 4, 6: the third reaches 0.91
    summary = tracker.summary()
    assert summary["reached"] and summary["time_s"] == 6.0 and summary["steps"] == 6
    assert [e[2] for e in summary["evals"]] == [0.5, 0.8, 0.91]


def test_stopwatch_stops_at_the_cap_or_the_last_epoch_without_reaching():
    clock = FakeClock()
    tracker = TimeToAccuracy(target=0.99, cap_s=5, clock=clock)

    def step(epoch, i):
        clock.now += 1.0

    steps = train_loop(step, lambda: 0.5, tracker, steps_per_epoch=4, max_epochs=10, evals_per_epoch=2)
    assert steps == 6 and not tracker.summary()["reached"] and tracker.summary()["time_s"] is None
    assert tracker.train_s == 6.0         # stopped at the first evaluation past the 5 s cap

    clock2 = FakeClock()
    tracker2 = TimeToAccuracy(target=0.99, cap_s=1e9, clock=clock2)
    starts = []
    steps2 = train_loop(lambda e, i: None, lambda: 0.1, tracker2, steps_per_epoch=3, max_epochs=2,
                        epoch_start=starts.append, evals_per_epoch=4)
    assert steps2 == 6 and starts == [0, 1] and len(tracker2.evals) == 6   # every step when the epoch is short


def test_aggregate_takes_ratios_seed_by_seed():
    def run_(config, seed, t, steps=100):
        return {"config": config, "seed": seed, "reached": t is not None, "time_s": t, "steps": steps,
                "steps_per_epoch": 50, "best_acc": 0.99}
    runs = [run_("course", 0, 10.0), run_("pytorch_example", 0, 30.0), run_("keras", 0, 5.0),
            run_("course", 1, 20.0), run_("pytorch_example", 1, 40.0), run_("keras", 1, None),
            {"config": "keras", "seed": 2, "error": "boom"}]
    agg = aggregate(runs)
    assert agg["configs"]["course"]["time_s"]["median"] == 15.0
    assert agg["configs"]["course"]["epochs"]["median"] == 2.0
    assert agg["ratio_to_course"]["pytorch_example"] == {"median": 2.5, "min": 2.0, "max": 3.0, "n": 2}
    assert agg["ratio_to_course"]["keras"]["n"] == 1 and agg["ratio_to_course"]["keras"]["median"] == 0.5
    assert agg["configs"]["keras"]["runs"] == 2 and agg["configs"]["keras"]["reached"] == 1


# --------------------------------------------------------------------------- course time
def test_course_time_puts_serial_and_parallel_runs_side_by_side():
    paths = ["notebooks/00_a.ipynb", "notebooks/01_b.ipynb"]
    none = course_time.summarize({}, paths)
    assert none["available"] is False and set(none["missing_modes"]) == {"serial", "parallel"}
    assert "make test TEST_WORKERS=0" in report.course_tables(none)[0][2][0][1]
    parallel = {"finished": "2026-01-01T00:00:00", "machine": "Test CPU (AVX2, FMA, no native BF16); 2 cores",
                "wall_s": {"parallel": 600.0, "serial": 300.0}, "workers": {"parallel": 2, "serial": 1},
                "notebooks": [{"notebook": "notebooks/00_a.ipynb", "seconds": 12.0, "budget_s": 60, "status": "ok"}],
                "labs": [{"lab": "grading lab01 (solution + student version)", "seconds": 20.0, "status": "ok"}]}
    s = course_time.summarize({"parallel": parallel}, paths)
    x = s["modes"]["parallel"]
    assert x["wall_s"] == 900.0 and x["aim_s"] == 1800 and x["missing"] == ["notebooks/01_b.ipynb"]
    assert x["notebooks_s"] == 12.0 and x["labs_s"] == 20.0 and list(s["missing_modes"]) == ["serial"]
    assert course_time.aim_for("CPU (AVX-512, FMA, native BF16)") == 900
    summary, per_unit = report.course_tables(s)
    assert summary[2][0][0] == "parallel" and "not measured" in summary[2][1][1]
    assert [r[0] for r in per_unit[2]] == ["notebooks/00_a.ipynb", "notebooks/01_b.ipynb",
                                           "grading lab01 (solution + student version)"]
    assert per_unit[2][1][-1] == "not timed"


# --------------------------------------------------------------------------- the whole report
def fake_results(quick=False):
    tta_runs = [{"config": c, "seed": 0, "reached": True, "time_s": t, "steps": s, "steps_per_epoch": 400,
                 "best_acc": 0.986, "max_epochs": 4} for c, t, s in
                (("course", 10.0, 800), ("pytorch_example", 40.0, 500), ("keras", 8.0, 1000))]
    agg = aggregate(tta_runs)
    flat = {"median": 50.0, "min": 49.0, "max": 51.0, "n": 3}
    return {"quick": quick, "threads": 1, "started": "2026-01-01 10:00:00 UTC", "finished": "2026-01-01 10:15:00 UTC",
            "total_s": 900.0, "load_before": 0.1, "load_after": 1.0,
            "machine": {"cpu": "Test CPU", "cores": 2, "usable_cores": 2, "ram_gib": 8.0, "os": "Linux 6",
                        "python": "3.11.9", "gpu": False,
                        "versions": {"torch": "2.x", "tensorflow": "2.y", "keras": "3.z", "horovod": "0.28.1",
                                     "numpy": "1.26"}},
            "benchmarks": {
                "course": {"available": False, "modes": {}, "rows": [],
                           "missing_modes": {"serial": "make test TEST_WORKERS=0", "parallel": "make test"}},
                "tta": {"target": 0.985, "cap_s": 150, "seeds": 1, "threads": 1, "evals_per_epoch": 4,
                        "runs": tta_runs, **agg, "measured": "2026-01-01 10:01", "wall_s": 300},
                "conv": {"threads": 1, "reps": 7, "rows": [
                    {"what": "matmul", "kind": "peak", "gflops": flat, "percent_of_peak": 100, "cpu_per_wall": 1.0},
                    {"what": "VGG, batch 8", "method": "direct (F.conv2d)", "kind": "conv", "gflops": flat,
                     "percent_of_peak": 180.0, "cpu_per_wall": 1.0},
                    {"what": "VGG, batch 8", "method": "FFT (torch.fft)", "kind": "conv", "gflops": flat,
                     "percent_of_peak": 15.0, "cpu_per_wall": 1.0},
                    {"what": "LeNet step", "kind": "train", "gflops": flat, "percent_of_peak": 10.0,
                     "forward_mflop_per_image": 0.833},
                    {"what": "ref step", "kind": "train", "gflops": flat, "percent_of_peak": 40.0,
                     "forward_mflop_per_image": 24.0}]},
                "scaling": {"error": "horovodrun failed\nmore"},
                "install": {"venv_mib": 3000.0, "wheel_cache_mib": 40.0, "warm_s": common.spread([0.1, 0.2])},
            }}


def test_markdown_report_has_machine_findings_and_reproduction(tmp_path):
    md = report.markdown(fake_results())
    assert md.startswith("# Benchmarks") and "--quick" in md and "make bench" in md
    assert "Test CPU, 2 cores" in md and "2026-01-01 10:00:00" in md and "PyTorch 2.x" in md
    slower = next(line for line in md.splitlines() if "**The course is slower than Keras" in line)
    assert "The cause is dearer steps" in slower and "compiled TensorFlow graph" in slower
    assert "**The course is faster than PyTorch MNIST example**" in md
    assert "not measured (run with --cold-install)" in md
    assert "horovodrun failed" in md and "no saved `make test` run" in md
    assert "figures come from a `--quick` run" not in md
    assert "figures come from a `--quick` run" in report.markdown(fake_results(quick=True))
    assert not re.search(r"/(home|root|tmp|work|Users)/", md)        # no machine paths


def test_text_sections_render_every_benchmark():
    res = fake_results()
    for key, result in res["benchmarks"].items():
        assert report.TITLES[key] in report.text_section(key, result)


def test_markdown_only_rewrites_the_report_from_saved_results(tmp_path):
    results, md = tmp_path / "results.json", tmp_path / "B.md"
    results.write_text(json.dumps(fake_results()))
    assert run.main(["--markdown-only", "--results", str(results), "--markdown", str(md)]) == 0
    assert md.read_text() == report.markdown(fake_results())


def test_unknown_benchmark_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="unknown benchmark"):
        run.main(["--only", "nope", "--results", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "m.md")])


# --------------------------------------------------------------------------- seeds
def test_reseed_replaces_only_literal_seed_zero():
    from benchmarks.seeds import reseed

    source = "config.seed_everything(0)\ntorch.manual_seed(0)\nfit(net, seed=0, lr=0.01)\nseed=10; k(0)"
    out, n = reseed(source, 3)
    assert n == 3
    assert out == "config.seed_everything(3)\ntorch.manual_seed(3)\nfit(net, seed=3, lr=0.01)\nseed=10; k(0)"


def test_seeds_summary_flags_the_worst_seed_and_a_missing_value():
    from benchmarks.seeds import summarize

    runs = [{"notebook": "08_cnns", "seed": s, "values": v} for s, v in
            [(0, {"PyTorch LeNet-5 test accuracy": 0.991, "Keras LeNet-5 test accuracy": 0.987}),
             (1, {"PyTorch LeNet-5 test accuracy": 0.989, "Keras LeNet-5 test accuracy": "NameError('x')"})]]
    rows = {r["target"]: r for r in summarize(runs)}
    torch_row, keras_row = rows["PyTorch LeNet-5 test accuracy"], rows["Keras LeNet-5 test accuracy"]
    assert torch_row["worst"] == 0.989 and torch_row["met"]
    assert keras_row["worst"] == 0.987 and not keras_row["met"]   # one seed gave no number
    table = report.seeds_tables({"seeds": [0, 1], "rows": list(rows.values())})[0]
    headers, body = table[1], table[2]
    assert headers[3:5] == ["seed 0", "seed 1"] and headers[-2] == "worst"
    assert any("**NO**" in row for row in body)
    assert any("error: NameError('x')" in row for row in body)


def fake_scaling(eff_tuned=0.84):
    rung = lambda change, batch, eff: {   # noqa: E731
        "change": change, "batch_per_rank": batch, "options": [], "env": {}, "kept": True,
        "images_per_s": {"1": common.spread([6000.0]), "2": common.spread([12000.0 * eff])},
        "wait_ms_2": common.spread([3.0]), "efficiency_2": common.spread([eff]), "epochs": 3,
        "helper_threads_cpu_share": {"1": common.spread([0.02]), "2": common.spread([0.1 if eff < 0.8 else 0.04])}}
    return {"threads_per_rank": 1, "repeats": 1,
            "runs": {"1": [], "2": []}, "images_per_s": {"1": common.spread([6000.0]), "2": common.spread([5400.0])},
            "efficiency_2": common.spread([0.45]),
            "ladder": [rung("notebook 13's job", 64, 0.45), rung("512 images per rank", 512, 0.7),
                       rung("each rank pinned to its own core", 512, eff_tuned)],
            "target_efficiency": 0.8, "tuned": {"efficiency_2": common.spread([eff_tuned]), "met": eff_tuned >= 0.8,
                                                "rung": 2},
            "synthetic": {"runs": {"1": [{"images_per_s_total": 2.0}], "2": [{"images_per_s_total": 3.6}]},
                          "efficiency_2": common.spread([0.9]), "args": [], "config": "ResNet-50, 32 per rank"},
            "ratio_course_to_synthetic": eff_tuned / 0.9,
            "alpha_s": 1e-3, "beta_s_per_byte": 3e-9, "bandwidth_gb_s": 0.33, "fit_ok": True,
            "allreduce": {"bytes": [4, 8], "seconds": [1e-3, 1e-3]}, "model_efficiency_2_here": 0.9,
            "small_cnn_params": 20522, "gpus": [8, 512], "predictions": {"25 GbE (RoCE)": [0.99, 0.87]},
            "horovod_published_512": 0.9, "resnet50_bytes": 1.02e8, "t_compute_s": 0.29, "overlap": 0.5}


def test_scaling_report_shows_each_rung_the_target_and_the_synthetic_ratio():
    res = fake_results()
    res["benchmarks"]["scaling"] = fake_scaling(0.84)
    md = report.markdown(res)
    assert "+ each rank pinned to its own core" in md and "Horovod's pytorch_synthetic_benchmark configuration" in md
    assert "| 4% |" in md and "at least 40 steps" in md   # Horovod's threads' share of a core, the run length
    finding = next(line for line in md.splitlines() if line.startswith("- **Scaling:**"))
    assert "84%" in finding and "target 80%: met" in finding and "a ratio of 0.93" in finding
    res["benchmarks"]["scaling"] = fake_scaling(0.75)
    assert "target 80%: **not met**" in report.markdown(res)
