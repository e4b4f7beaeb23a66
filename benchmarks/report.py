"""Tables and the BENCHMARKS.md report, made from a results dictionary (benchmarks/run.py).

Pure formatting: no framework, no measurement; tests/test_benchmarks.py feeds it made-up results.
"""

from __future__ import annotations

from benchmarks import common
from benchmarks.common import fmt_num, fmt_spread, spread

TITLES = {"course": "1. Course time (fast profile)", "tta": "2. Time to 98.5% MNIST test accuracy",
          "conv": "3. Fraction of peak: convolutions and training steps",
          "scaling": "4. Scaling: Horovod here, and the alpha-beta model beyond",
          "install": "5. Install: set-up time and size",
          "seeds": "6. Targets on other seeds"}


def _pct(x, digits: int = 3) -> str:
    return "-" if x is None else f"{fmt_num(100 * x, digits)}%"


# --------------------------------------------------------------------------- one table per benchmark
def course_tables(r: dict) -> list[tuple[str, list, list]]:
    if not r.get("available"):
        return [("", ["run", "status"], [[mode, f"missing: run `{cmd}` first"]
                                         for mode, cmd in r.get("missing_modes", {}).items()])]
    modes = [m for m in ("serial", "parallel") if m in r["modes"]]
    rows = []
    for row in r["rows"]:
        secs = [fmt_num(row["seconds"][m]) if m in row["seconds"] else "-" for m in modes]
        status = sorted({row["status"][m] for m in modes if m in row["status"]}) or ["not timed"]
        rows.append([row["unit"], *secs, row.get("budget_s") or "-", ", ".join(status)])
    summary = []
    for m in modes:
        x = r["modes"][m]
        phases = ", ".join(f"{phase} {fmt_num(s)} s ({x['workers'].get(phase, 1)} at a time)"
                           for phase, s in x["phases"].items())
        summary.append([m, x["machine"], fmt_num(x["notebooks_s"]), fmt_num(x["labs_s"]), phases,
                        fmt_num(x["wall_s"]), x["aim_s"], x.get("finished") or "-"])
    for m, cmd in r.get("missing_modes", {}).items():
        summary.append([m, f"not measured: run `{cmd}`", "-", "-", "-", "-", "-", "-"])
    return [("Whole `make test` runs (wall time includes the unit tests and everything else)",
             ["run", "machine", "notebooks (s)", "lab gradings (s)", "phases", "wall (s)", "aim (s)", "finished"],
             summary),
            ("Each notebook's and lab grading's own time (kernel start included); a parallel run shares the cores",
             ["notebook or lab", *[f"{m} (s)" for m in modes], "budget (s)", "status"], rows)]


def tta_run_rates(runs: list[dict], config: str) -> dict:
    return spread(1e3 * r["time_s"] / r["steps"] for r in runs
                  if r.get("config") == config and r.get("reached") and r.get("steps"))


def tta_tables(r: dict) -> list[tuple[str, list, list]]:
    target = r.get("target", 0.985)
    rows = []
    for config, c in r["configs"].items():
        ratio = "1 (reference point)" if config == "course" else fmt_spread(r["ratio_to_course"].get(config))
        rows.append([c["label"], fmt_spread(c["time_s"], "s"), fmt_spread(c["steps"], digits=4),
                     fmt_spread(c["epochs"]), fmt_spread(tta_run_rates(r.get("runs", []), config), "ms"),
                     f"{c['reached']}/{c['runs']}", fmt_spread(c["best_acc"], digits=4), ratio])
    title = (f"Target {100 * target:.4g}% test accuracy, {r['seeds']} seed(s) per configuration, "
             f"{r['threads']} thread(s) each, test accuracy measured every 1/{r['evals_per_epoch']} epoch "
             f"off the clock, cap {fmt_num(r['cap_s'])} s of training")
    return [(title, ["configuration", f"time to {100 * target:.4g}%", "steps", "epochs", "ms per step",
                     "reached", "best test accuracy", "time ratio reference/course"], rows)]


def conv_tables(r: dict) -> list[tuple[str, list, list]]:
    rows = [[row["what"], row.get("method", "-"), fmt_spread(row["gflops"]), f"{fmt_num(row['percent_of_peak'])}%",
             fmt_num(row.get("cpu_per_wall"), 2)] for row in r["rows"]]
    return [(f"Float32, {r['threads']} thread(s); medians of {r['reps']} samples (min-max); CPU/wall about 1 "
             "means a single busy thread", ["what", "method", "GFLOP/s", "% of matmul peak", "CPU/wall"], rows)]


def scaling_tables(r: dict) -> list[tuple[str, list, list]]:
    tables = []
    if r.get("ladder"):
        rows = []
        for number, rung in enumerate(r["ladder"]):
            ips, helpers = rung["images_per_s"], rung.get("helper_threads_cpu_share", {})
            rows.append([str(number), ("" if number == 0 else "+ ") + rung["change"], str(rung["batch_per_rank"]),
                         fmt_spread(ips.get("1") or ips.get(1)), fmt_spread(ips.get("2") or ips.get(2)),
                         fmt_spread(rung["wait_ms_2"], " ms"), _pct_spread(helpers.get("2") or helpers.get(2)),
                         _pct_spread(rung["efficiency_2"])])
        synth = r.get("synthetic")
        if synth:
            rows.append(["-", f"Horovod's pytorch_synthetic_benchmark configuration: {synth['config']}", "32",
                         fmt_spread(spread(x["images_per_s_total"] for x in synth["runs"].get("1") or synth["runs"].get(1, []))),
                         fmt_spread(spread(x["images_per_s_total"] for x in synth["runs"].get("2") or synth["runs"].get(2, []))),
                         "-", "-", _pct_spread(synth["efficiency_2"])])
        steps = ("at least 40 steps of the 2-process run (the first 5 untimed), on whole passes over the 60,000 MNIST "
                 "images" if "epochs" in r["ladder"][-1] else "one epoch of 30,000-60,000 MNIST images (at least 29 steps)")
        tables.append((f"scripts/hvd_train_torch.py, {steps}, "
                       f"{r['threads_per_rank']} thread per rank, weak scaling (the batch per rank fixed); each rung "
                       f"adds one change to the last rung kept; {r['repeats']} round(s) of a 1- and a 2-process run "
                       "per rung; efficiency: median 2-process throughput over twice the median 1-process one "
                       "(min-max of the rounds); Horovod's threads: the CPU time of each rank's threads other than "
                       "the training thread (Horovod's background loop, Gloo's), as a share of its core",
                       ["rung", "change", "images per rank", "images/s, 1 process", "images/s, 2 processes",
                        "wait in step(), 2 processes", "Horovod's threads, 2 processes", "efficiency"], rows))
    else:   # results saved before the ladder existed
        ips = r["images_per_s"]
        tables.append((f"scripts/hvd_train_torch.py, {r['threads_per_rank']} thread per rank, 64 images per rank",
                       ["processes", "images/s (all ranks)", "efficiency"],
                       [["1", fmt_spread(ips.get("1") or ips.get(1)), "100% (reference point)"],
                        ["2", fmt_spread(ips.get("2") or ips.get(2)), _pct_spread(r["efficiency_2"])]]))
    fit_note = "" if r.get("fit_ok", True) else " (meaningless fit: timings too noisy)"
    model = [["alpha (latency per ring step)", f"{fmt_num(r['alpha_s'] * 1e6)} us{fit_note}"],
             ["1/beta (bandwidth per worker)", f"{fmt_num(r['bandwidth_gb_s'])} GB/s"],
             ["model's efficiency at 2 processes for notebook 13's job", _pct(r["model_efficiency_2_here"])],
             ["measured efficiency at 2 processes (rung 0)", _pct_spread(r["efficiency_2"])]]
    gpus = r["gpus"]
    pred = [[name, *[_pct(e, 3) for e in effs]] for name, effs in r["predictions"].items()]
    return tables + [
        ("Alpha-beta fit of scripts/allreduce_bench.py (2 processes, this machine)", ["quantity", "value"], model),
        (f"Predicted efficiency, ResNet-50 ({fmt_num(r['resnet50_bytes'] / 1e6)} MB of gradients), "
         f"{fmt_num(r['t_compute_s'] * 1e3)} ms of compute per step, {_pct(r['overlap'])} overlap; "
         f"Horovod published ~{_pct(r['horovod_published_512'])} at 512 GPUs on 25 GbE",
         ["interconnect", *[str(g) for g in gpus]], pred)]


def _pct_spread(s: dict | None) -> str:
    if not s or s.get("median") is None:
        return "-"
    return fmt_spread({k: (100 * v if k != "n" else v) for k, v in s.items()}, "%")


def install_tables(r: dict) -> list[tuple[str, list, list]]:
    cold = r.get("cold")
    if cold:
        when = f"measured {cold.get('measured', '?')}" + (", from an earlier run" if cold.get("carried_over") else "")
        if cold.get("ok"):
            cold_lab = f"{fmt_num(cold.get('lab_ready_s'))} s ({when})"
            cold_hvd = f"{fmt_num(cold.get('horovod_s'))} s more ({when})"
        else:
            cold_lab = cold_hvd = f"failed ({when})"
        cold_size = f"{fmt_num(cold.get('venv_mib'))} MiB" if cold.get("venv_mib") else "-"
    else:
        cold_lab = cold_hvd = "not measured (run with --cold-install)"
        cold_size = "-"
    rows = [["warm set-up (`scripts/setup_env.py`, .venv up to date)", fmt_spread(r.get("warm_s"), "s")],
            ["cold `make lab` in a fresh clone (empty pip, npm and wheel caches) until `/lab` answers HTTP 200",
             cold_lab],
            ["then, until the Horovod build it started in the background is installed", cold_hvd],
            ["size of .venv", f"{fmt_num(r.get('venv_mib'))} MiB"],
            ["size of a cold-built venv", cold_size],
            ["cached Horovod wheel(s)", f"{fmt_num(r.get('wheel_cache_mib'))} MiB"]]
    if r.get("warm_error"):
        rows.append(["warm set-up error", r["warm_error"].splitlines()[0]])
    return [("", ["what", "figure"], rows)]


def seeds_tables(r: dict) -> list[tuple[str, list, list]]:
    seeds = r.get("seeds", [])

    def value(v):   # a number, or the error that stood in for it (a name the run never defined)
        return fmt_num(v, 4) if isinstance(v, (int, float)) or v is None else f"error: {str(v)[:60]}"

    rows = [[row["notebook"], row["target"], f"{row['op']} {row['bar']}",
             *[value(row["values"].get(str(sd), row["values"].get(sd))) for sd in seeds],
             fmt_num(row["worst"], 4), "yes" if row["met"] else "**NO**"] for row in r.get("rows", [])]
    return [("", ["notebook", "target", "bar", *[f"seed {sd}" for sd in seeds], "worst", "met on every seed"], rows)]


TABLES = {"course": course_tables, "tta": tta_tables, "conv": conv_tables, "scaling": scaling_tables,
          "install": install_tables, "seeds": seeds_tables}


def tables(key: str, result: dict) -> list[tuple[str, list, list]]:
    if "error" in result:
        return [("", ["benchmark", "error"], [[key, result["error"].splitlines()[0]]])]
    return TABLES[key](result)


def text_section(key: str, result: dict) -> str:
    out = [TITLES[key]]
    for title, headers, rows in tables(key, result):
        if title:
            out.append(f"  {title}")
        out.append(common.table_text(headers, rows))
    if "error" in result:
        out.append(result["error"])
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- findings
def findings(results: dict) -> list[str]:
    """Sentences drawn from the figures: where the course is slower than a reference, and why."""
    b = results.get("benchmarks", {})
    out = []
    tta = b.get("tta")
    if tta and "error" not in tta:
        course = tta["configs"]["course"]
        c_time, c_steps = course["time_s"]["median"], course["steps"]["median"]
        c_rate = tta_run_rates(tta.get("runs", []), "course")["median"]
        c_epochs = next((r["max_epochs"] for r in tta.get("runs", []) if r.get("config") == "course"), "its")
        if c_time is None:
            out.append(f"**Time to accuracy:** the course's LeNet-5 did not reach {100 * tta['target']:.4g}% "
                       f"(best {fmt_num(course['best_acc']['median'], 4)}) within its recipe's "
                       f"{c_epochs} epochs or the cap.")
        for config in ("pytorch_example", "keras"):
            ref = tta["configs"][config]
            r_time, r_steps = ref["time_s"]["median"], ref["steps"]["median"]
            ratio = tta["ratio_to_course"][config]["median"]
            r_rate = tta_run_rates(tta.get("runs", []), config)["median"]
            name = ref["label"].split(" (")[0]
            if r_time is None or c_time is None or ratio is None:
                if r_time is None:
                    out.append(f"**{name}** did not reach the target within the cap "
                               f"(best {fmt_num(ref['best_acc']['median'], 4)}).")
                continue
            why = (f"it needs {fmt_num(c_steps, 4)} steps of {fmt_num(c_rate)} ms where the reference needs "
                   f"{fmt_num(r_steps, 4)} of {fmt_num(r_rate)} ms")
            if ratio < 1:
                more, dearer = c_steps > r_steps, c_rate > r_rate
                cause = "both more and dearer steps" if more and dearer else (
                    "more optimizer steps" if more else "dearer steps")
                hints = []
                if more:
                    hints.append("the course's recipe needs more updates to get there (a smaller network, "
                                 f"a learning rate tuned for {c_epochs} epochs rather than for reaching the target early)")
                if dearer and config == "keras":
                    hints.append("Keras runs each training step as one compiled TensorFlow graph, while PyTorch "
                                 "runs it eagerly, operation by operation from Python, which costs relatively "
                                 "more for a network this small")
                elif dearer:
                    hints.append("per-step overheads weigh more for a network this small")
                out.append(f"**The course is slower than {name}** to {100 * tta['target']:.4g}%: "
                           f"{fmt_num(c_time)} s against {fmt_num(r_time)} s (reference/course = {fmt_num(ratio)}). "
                           f"The cause is {cause}: {why}; " + "; ".join(hints) + ".")
            else:
                out.append(f"**The course is faster than {name}** to {100 * tta['target']:.4g}%: "
                           f"{fmt_num(c_time)} s against {fmt_num(r_time)} s ({fmt_num(ratio)}x): {why}.")
    conv = b.get("conv")
    if conv and "error" not in conv:
        rows = {(row["what"].split(",")[0], row.get("method")): row for row in conv["rows"]}
        train = [row for row in conv["rows"] if row["kind"] == "train"]
        if len(train) == 2:
            out.append(f"**Fraction of peak:** the course's LeNet-5 training step runs at "
                       f"{fmt_num(train[0]['percent_of_peak'])}% of the matmul peak against "
                       f"{fmt_num(train[1]['percent_of_peak'])}% for the PyTorch example's wider network: "
                       f"LeNet-5's layers ({fmt_num(train[0]['forward_mflop_per_image'])} MFLOP per image forward, "
                       f"against {fmt_num(train[1]['forward_mflop_per_image'])}) are too small to keep the vector "
                       "units busy, so fixed per-operation costs (Python, dispatch, the optimizer) weigh more.")
        over = [f"{k[0]} ({k[1]})" for k, row in rows.items() if row["kind"] == "conv" and row["percent_of_peak"] > 100]
        if over:
            text = ("Convolutions above 100% of the matmul peak (" + "; ".join(over) + "): `F.conv2d` runs "
                    "oneDNN's JIT-compiled direct convolution, while `torch.mm` calls MKL's SGEMM, so the "
                    "\"peak\" is MKL's on this CPU, not the hardware's.")
            if "AMD" in results.get("machine", {}).get("cpu", ""):
                text += (" MKL is known not to choose its fastest code paths on AMD processors, while oneDNN "
                         "picks its kernels by the CPU's own flags (`ONEDNN_VERBOSE=1` names the direct "
                         "convolution and the instruction set it chose), so the extra speed is not fewer "
                         "operations.")
            out.append(text)
        fft = [row for row in conv["rows"] if row.get("method", "").startswith("FFT")]
        if fft:
            lo, hi = (fmt_num(f(r["percent_of_peak"] for r in fft)) for f in (min, max))
            out.append(f"FFT convolution stays at {lo if lo == hi else lo + '-' + hi}% of peak: with 3x3 and 5x5 "
                       "kernels the transforms and complex products cost more than the few multiply-adds they replace.")
    sc = b.get("scaling")
    if sc and "error" not in sc:
        e2, m2 = sc["efficiency_2"]["median"], sc["model_efficiency_2_here"]
        pred25 = sc["predictions"].get("25 GbE (RoCE)")
        i512 = sc["gpus"].index(512) if 512 in sc["gpus"] else None
        model_text = (f"the alpha-beta model fitted on this machine's loopback predicts {_pct(m2)}" if m2 is not None
                      else "the alpha-beta fit of this run's allreduce timings is meaningless: too noisy")
        text = (f"**Scaling:** notebook 13's job (64 images per rank) reaches {_pct(e2)} of twice the 1-process "
                f"throughput on 2 processes here ({model_text}).")
        if sc.get("ladder"):
            steps = "; ".join(f"+ {rung['change']}: {_pct(rung['efficiency_2']['median'])}" for rung in sc["ladder"][1:])
            tuned, synth = sc["tuned"], sc["synthetic"]["efficiency_2"]["median"]
            text += (f" One change at a time: {steps}. Tuned (rung {tuned.get('rung', '-')}, every change kept), the course "
                     "worker reaches "
                     f"{_pct(tuned['efficiency_2']['median'])} (target {_pct(sc['target_efficiency'])}: "
                     f"{'met' if tuned['met'] else '**not met**'}); Horovod's own synthetic benchmark configuration "
                     f"(ResNet-50, 32 images per rank) reaches {_pct(synth)} in the same run, a ratio of "
                     f"{fmt_num(sc['ratio_course_to_synthetic'], 2)}.")
            first, last = (rung.get("helper_threads_cpu_share", {}) for rung in (sc["ladder"][0], sc["ladder"][tuned["rung"]]))
            first, last = ((share.get("2") or share.get(2) or {}).get("median") for share in (first, last))
            if first is not None and last is not None:
                text += (f" Horovod's own threads (its background loop and Gloo's) took {_pct(first)} of each rank's core "
                         f"in notebook 13's job and {_pct(last)} tuned.")
        load, cores = results.get("load_before"), results.get("machine", {}).get("cores") or 1
        if load is not None and load > cores - 0.5:
            text += (f" The machine was busy (load {load} on {cores} cores), which hurts the 2-process run most: "
                     "it needs every core.")
        if pred25 and i512 is not None:
            text += (f" For ResNet-50 on 25 GbE the model predicts {_pct(pred25[i512])} at 512 GPUs, against "
                     f"Horovod's published ~{_pct(sc['horovod_published_512'])}.")
        out.append(text)
    course = b.get("course")
    if course and "error" not in course:
        if not course.get("available"):
            out.append("**Course time:** no saved `make test` run: run `make test` (and `make test TEST_WORKERS=0` "
                       "for the serial time) before `make bench`.")
        else:
            parts = []
            for mode, x in course["modes"].items():
                verdict = "within" if x["wall_s"] <= x["aim_s"] else "over"
                parts.append(f"{mode}, {fmt_num(x['wall_s'])} s in all ({verdict} the aim of {x['aim_s']} s for "
                             f"this kind of CPU; notebooks {fmt_num(x['notebooks_s'])} s, lab gradings "
                             f"{fmt_num(x['labs_s'])} s of their own time"
                             + (f"; not ok (over budget or a failed target): {', '.join(x['over_budget'])}"
                                if x["over_budget"] else "") + ")")
            out.append("**Course time:** " + "; ".join(parts) + ".")
    return out


# --------------------------------------------------------------------------- BENCHMARKS.md
def markdown(results: dict) -> str:
    m = results["machine"]
    v = m.get("versions", {})
    quick = results.get("quick")
    lines = ["# Benchmarks", ""]
    if quick:
        lines += ["> **These figures come from a `--quick` run (tiny sizes, one run each, a lower accuracy "
                  "target): they check that the benchmarks work and mean nothing about speed.** "
                  "Run `make bench` on a quiet machine for the real figures.", ""]
    load, cores = results.get("load_before"), m.get("cores") or 1
    if load is not None and load >= 0.75 * cores:
        lines += [f"> **The machine was busy when this ran (load average {load} on {cores} cores)**: other "
                  "processes took CPU time, so absolute figures are low and noisy; ratios within the run suffer less.",
                  ""]
    lines += [
        "How the course compares with reference recipes and with what this machine can do. All figures "
        "come from one run of `make bench`; ratios compare measurements taken in that same run, never "
        "absolute times across runs.", "",
        f"- **Date:** {results.get('started')} to {results.get('finished')} "
        f"({fmt_num(results.get('total_s'))} s in all)",
        f"- **Machine:** {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), {m['ram_gib']} GiB RAM, "
        f"{'an NVIDIA GPU present but unused' if m.get('gpu') else 'no GPU'}; {m['os']}",
        f"- **Software:** Python {m['python']}, PyTorch {v.get('torch')}, TensorFlow {v.get('tensorflow')}, "
        f"Keras {v.get('keras')}, Horovod {v.get('horovod')}, NumPy {v.get('numpy')}",
        f"- **Threads:** {results.get('threads')} per process for every framework and benchmark "
        "(OMP/MKL/TF thread pools pinned); one benchmark process at a time",
        f"- **Load average (1 min):** {results.get('load_before')} before, {results.get('load_after')} after",
        "", "## Findings", ""]
    lines += [f"- {f}" for f in findings(results)] or ["- (no benchmark results)"]
    lines += ["", "## Reproduce", "", "```bash",
              "make bench                                    # the five default benchmarks, about 20 minutes on 2 AVX2 cores",
              "make bench BENCH_ARGS=\"--quick\"               # tiny sizes: checks the plumbing (~2 minutes)",
              "make bench BENCH_ARGS=\"--only tta,conv\"       # a subset: course, tta, conv, scaling, install",
              "make bench BENCH_ARGS=\"--only seeds\"          # targets of 05, 06, 08, 11 on seeds 0-2 (~15 minutes)",
              "make bench BENCH_ARGS=\"--cold-install\"        # also time a set-up from nothing (~5 minutes more)",
              "make bench BENCH_ARGS=\"--seeds 5 --threads 2\" # more runs per configuration; more threads",
              ".venv/bin/python benchmarks/run.py --markdown-only   # rewrite this file from the saved results",
              "```", "",
              "Run `make test` first: the course-time table reads the notebook times it saves in "
              "`reports/notebook-times.json`. Results are saved to `reports/bench/results.json` (and a "
              "dated copy); `--quick` writes `reports/bench/results-quick.json` and "
              "`reports/bench/BENCHMARKS.quick.md` instead, leaving this file alone. Each benchmark is a "
              "module of `benchmarks/` that also runs alone, e.g. "
              "`python -m benchmarks.conv_peak --json out.json --quick`. A busy machine slows everything: "
              "compare the load averages above.", ""]
    notes = {
        "course": "Each notebook's and lab grading's own time as `make test` measured it (kernel start "
                  "included), against its fast-profile budget, from the last whole `make test` (parallel: the "
                  "default) and `make test TEST_WORKERS=0` (serial); \"ok\" means within budget and every "
                  "asserted target met (a failed target shows as FAILED). The run's wall time covers everything "
                  "`make test` does after set-up.",
        "tta": "The course's LeNet-5 trained exactly as `dlcourse.models.fit` does with `MNIST_RECIPE` (its loop "
               "repeated so that it can stop at an evaluation), beside this project's own re-implementations of "
               "the recipes of PyTorch's official MNIST example and of Keras's \"simple MNIST convnet\" (Keras 3, "
               "TensorFlow backend, TensorFlow's default oneDNN kernels, intra- and inter-op pools of the same thread count). "
               "All three read images from in-memory arrays. Time counts training only, "
               "up to the first evaluation at or above the target, so it is exact to a quarter epoch. The ratio "
               "is taken seed by seed, between runs made one after the other.",
        "conv": "Convolutions by the frameworks' implementations (`F.unfold` + matmul, `F.conv2d`, `torch.fft`), each "
                "credited with the direct convolution's FLOPs; training steps credited with 3x their forward FLOPs "
                "counted from the layer shapes. The peak is a large square float32 `torch.mm` with the same threads.",
        "scaling": "`scripts/hvd_train_torch.py` and `scripts/allreduce_bench.py` launched by "
                   "`dlcourse.dist.launch`; `dlcourse.dist.fit_alpha_beta` and `scaling_efficiency` give the "
                   "model, with `dlcourse.dist.INTERCONNECTS` for the extrapolation (as notebooks/13 does).",
        "install": "Warm: `scripts/setup_env.py` with `.venv` already matching `requirements.txt` (what every "
                   "`make lab`/`make test` pays). Cold: `git clone` of the course into a temporary folder and "
                   "`make lab` there, with empty pip, npm and Horovod-wheel caches (network needed for PyPI): the "
                   "time until JupyterLab answers `/lab` with HTTP 200, and then until the Horovod build that "
                   "`make lab` starts in the background is installed; measured only with `--cold-install`.",
        "seeds": "Each training notebook executed again with every literal seed 0 in its code replaced by "
                 "another seed (`benchmarks/seeds.py`): initial weights, shuffling, dropout and validation "
                 "splits change, the code does not. The values are read from the finished kernel; \"worst\" is "
                 "the seed closest to failing. Not part of the default run (about 15 minutes): "
                 "`--only seeds`.",
    }
    for key in ("course", "tta", "conv", "scaling", "install", "seeds"):
        lines += [f"## {TITLES[key]}", ""]
        result = results.get("benchmarks", {}).get(key)
        if result is None:
            lines += ["Not run (see `--only`).", ""]
            continue
        lines += [notes[key], ""]
        if result.get("measured"):
            lines += [f"Measured {result['measured']}, {fmt_num(result.get('wall_s'))} s.", ""]
        for title, headers, rows in tables(key, result):
            if title:
                lines += [f"*{title}.*", ""]
            lines += [common.table_markdown(headers, rows), ""]
    return "\n".join(lines).rstrip() + "\n"
