"""What this CPU is and what it computes in hardware (introduced in notebooks/07 and 12).

Machines differ: one of the course's CPUs has AVX-512 and native BF16, another only AVX2
and FMA. Sentences about the hardware are therefore generated from what is detected here
and measured in the notebook, never written for one machine. Reading the CPU needs no
framework; only :func:`torch_capability` imports PyTorch (when called).

The float32 peak (notebook 07) is *measured*: :func:`measure_fma_peak_gflops` compiles a
tiny C program of independent fused multiply-add chains with the system C compiler and
runs it on every core. Without a compiler, :func:`fma_peak` falls back to the datasheet
formula of :func:`computed_peak_gflops` and says that the number is computed, not measured.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import NamedTuple

CPUINFO = Path("/proc/cpuinfo")

# Instruction-set extensions that matter for deep learning, in the names Linux uses.
FLAGS_OF_INTEREST = {
    "avx2": "256-bit vectors (8 float32 numbers per instruction)",
    "fma": "fused multiply-add: a*b+c in one instruction",
    "f16c": "converts between float16 and float32 (no float16 arithmetic)",
    "avx512f": "512-bit vectors (16 float32 numbers per instruction)",
    "avx512_bf16": "BF16 dot products accumulated in float32",
    "avx512_fp16": "float16 arithmetic",
    "avx512_vnni": "int8 dot products accumulated in int32 (512-bit)",
    "avx_vnni": "int8 dot products accumulated in int32 (256-bit)",
    "amx_bf16": "matrix tiles for BF16 (Intel AMX)",
    "amx_int8": "matrix tiles for int8 (Intel AMX)",
}


def _read_cpuinfo() -> str:
    try:
        return CPUINFO.read_text()
    except OSError:
        return ""


def parse_cpuinfo(text: str) -> dict[str, str]:
    """The ``name: value`` fields of the first processor in a /proc/cpuinfo text (``{}`` for an empty text)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break                                   # a blank line ends the first processor's block
            continue
        name, sep, value = line.partition(":")
        if sep and name.strip() not in fields:
            fields[name.strip()] = value.strip()
    return fields


def _cpuinfo_field(name: str, text: str | None = None) -> str | None:
    return parse_cpuinfo(_read_cpuinfo() if text is None else text).get(name)


def cpu_model(text: str | None = None) -> str:
    """The CPU's name as the OS reports it, e.g. ``"AMD EPYC"``; ``text``: a /proc/cpuinfo text to read instead."""
    return _cpuinfo_field("model name", text) or platform.processor() or platform.machine()


def cpu_flags(text: str | None = None) -> set[str]:
    """The CPU's instruction-set flags from /proc/cpuinfo (empty where there is none, e.g. macOS).

    ``text``: a /proc/cpuinfo text to parse instead of this machine's."""
    flags = _cpuinfo_field("flags", text)
    return set(flags.split()) if flags else set()


def vector_isa(flags: set[str] | None = None) -> str:
    """The widest float32 vector extension: ``"AVX-512"``, ``"AVX2"``, ``"AVX"``, ``"SSE"`` or ``"unknown"``."""
    flags = cpu_flags() if flags is None else flags
    for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"), ("sse2", "SSE")):
        if flag in flags:
            return name
    return "unknown"


def float32_lanes(flags: set[str] | None = None) -> int:
    """float32 numbers in one vector register: 16 (AVX-512), 8 (AVX, AVX2), 4 (SSE) or 1 (unknown)."""
    return {"AVX-512": 16, "AVX2": 8, "AVX": 8, "SSE": 4}.get(vector_isa(flags), 1)


def native_bf16(flags: set[str] | None = None) -> bool:
    """True when the CPU multiplies BF16 in hardware (AVX-512 BF16 or AMX); else BF16 is emulated."""
    flags = cpu_flags() if flags is None else flags
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def native_fp16(flags: set[str] | None = None) -> bool:
    """True when the CPU computes in float16 (AVX-512 FP16 or AMX-FP16); F16C only converts."""
    flags = cpu_flags() if flags is None else flags
    return bool(flags & {"avx512_fp16", "amx_fp16"})


def bf16_speedup_bound(flags: set[str] | None = None) -> float:
    """The most BF16 arithmetic can gain over float32 FMAs on this CPU, from the instruction definitions.

    1.0 without native BF16 (the products are computed in float32 after a conversion, or
    slower); 2.0 with AVX-512 BF16 (``VDPBF16PS`` multiplies two BF16 pairs per 32-bit lane,
    twice the products of an FMA of the same width); 16.0 with AMX (a tile unit does 1,024
    BF16 FLOPs per cycle and core, against 64 for two 512-bit float32 FMA units).
    """
    flags = cpu_flags() if flags is None else flags
    if "amx_bf16" in flags:
        return 16.0
    return 2.0 if "avx512_bf16" in flags else 1.0


def clock_ghz(text: str | None = None) -> float | None:
    """The cores' clock in GHz: the maximum from cpufreq where the OS exposes it, else /proc/cpuinfo's ``cpu MHz``."""
    if text is None:
        try:
            khz = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()
            return int(khz) / 1e6
        except (OSError, ValueError):
            pass
    mhz = _cpuinfo_field("cpu MHz", text)
    try:
        return float(mhz) / 1000 if mhz else None
    except ValueError:
        return None


def computed_peak_gflops(threads: int, flags: set[str] | None = None, ghz: float | None = None,
                         fma_units: int = 2) -> float | None:
    """The datasheet float32 peak: threads x lanes x 2 FLOPs (an FMA) x FMA units x clock, in GFLOP/s.

    ``fma_units`` cannot be read from the CPU: 2 per core is right for most x86 cores since
    2013 (Intel Haswell, AMD Zen 2 and later), 1 for some AVX-512 Xeons. Returns None when
    the clock or the vector width is unknown. The clock in /proc/cpuinfo may be the base
    clock, so boost clocks can beat this number, and throttling can fall short of it.
    """
    flags = cpu_flags() if flags is None else flags
    ghz = clock_ghz() if ghz is None else ghz
    if not ghz or ("fma" not in flags and "avx512f" not in flags):
        return None
    return threads * float32_lanes(flags) * 2 * fma_units * ghz


class NoCompiler(RuntimeError):
    """No C compiler was found, or it could not build the peak kernel; the message says how to fix it."""


FMA_KERNEL = r"""
/* Register-only float32 peak: CHAINS independent chains of fused multiply-adds per thread. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#if defined(__AVX512F__)
#define LANES 16
#elif defined(__AVX__)
#define LANES 8
#else
#define LANES 4
#endif
#define CHAINS 12  /* FMA latency (4 cycles) x 2 units = 8 in flight; 12 leave a margin, in 16 registers */

typedef float vec __attribute__((vector_size(4 * LANES)));
static long iterations;

static double now(clockid_t clock) {
    struct timespec t;
    clock_gettime(clock, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static void *chains(void *result) {          /* result: [0] checksum, [1] this thread's CPU seconds */
    vec acc[CHAINS], a = {0}, b = {0};
    a += 0.999f;                             /* x -> 0.999 x + 0.001 stays near 1: no overflow, no subnormals */
    b += 0.001f;
    for (int i = 0; i < CHAINS; i++) { acc[i] = a; acc[i] *= (float)i / CHAINS; }
    double start = now(CLOCK_THREAD_CPUTIME_ID);
    for (long n = 0; n < iterations; n++)
        for (int i = 0; i < CHAINS; i++)
            acc[i] = acc[i] * a + b;         /* one FMA instruction: a multiply and an add */
    double seconds = now(CLOCK_THREAD_CPUTIME_ID) - start;
    float sum = 0;                           /* use every result, so the compiler keeps all the work */
    for (int i = 0; i < CHAINS; i++)
        for (int j = 0; j < LANES; j++) sum += acc[i][j];
    ((double *)result)[0] = sum;
    ((double *)result)[1] = seconds;
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1, repeats = argc > 2 ? atoi(argv[2]) : 5;
    double target = argc > 3 ? atof(argv[3]) : 0.05, best = 0, checksum = 0;
    pthread_t id[threads];
    double result[threads][2];
    for (iterations = 1 << 14;; iterations *= 2) {       /* grow the run until it lasts `target` s */
        double start = now(CLOCK_MONOTONIC);
        chains(result[0]);
        if (now(CLOCK_MONOTONIC) - start > target / 4) break;
    }
    iterations *= 4;
    for (int r = 0; r < repeats; r++) {                  /* every thread at once; keep the best repeat */
        for (int t = 0; t < threads; t++) pthread_create(&id[t], NULL, chains, result[t]);
        double gflops = 0;
        for (int t = 0; t < threads; t++) {
            pthread_join(id[t], NULL);
            gflops += 2.0 * LANES * CHAINS * iterations / result[t][1] / 1e9;
            checksum += result[t][0];
        }
        if (gflops > best) best = gflops;
    }
    printf("%.3f %d %d %g\n", best, LANES, CHAINS, checksum);
    return 0;
}
"""


def find_c_compiler() -> str | None:
    """The C compiler to use: ``$CC`` if set, else the first of cc, gcc, clang on the PATH (None if none)."""
    for name in ([os.environ["CC"]] if os.environ.get("CC") else []) + ["cc", "gcc", "clang"]:
        path = shutil.which(name)
        if path:
            return path
    return None


def measure_fma_peak_gflops(threads: int | None = None, repeats: int = 5, seconds: float = 0.05,
                            compiler: str | None = None) -> float:
    """Measured float32 peak in GFLOP/s: independent FMA chains in registers, on ``threads`` threads at once.

    Compiles :data:`FMA_KERNEL` with ``cc -O3 -march=native`` (so it uses the widest vectors
    this CPU has) in a temporary folder and runs it; every thread counts 2 FLOPs per lane and
    FMA. Each thread divides its FLOPs by its own CPU time, so the number says what the cores
    do while they run, even when other programs share the machine; the best of ``repeats``
    runs of about ``seconds`` each is kept. ``threads`` defaults to every core this process may
    use. Raises :class:`NoCompiler` with what to do when no C compiler works.
    """
    from dlcourse.config import cpu_threads

    threads = threads or cpu_threads()
    if threads < 1 or repeats < 1 or seconds <= 0:
        raise ValueError(f"threads ({threads}) and repeats ({repeats}) must be at least 1, seconds ({seconds}) positive")
    compiler = compiler or find_c_compiler()
    if compiler is None:
        raise NoCompiler("no C compiler found (looked for $CC, cc, gcc and clang): install one "
                         "(Debian/Ubuntu: `apt install gcc`, macOS: `xcode-select --install`) to measure the "
                         "peak, or use computed_peak_gflops() for the datasheet formula")
    with tempfile.TemporaryDirectory(prefix="fma-peak-") as folder:
        source, program = Path(folder) / "fma_peak.c", Path(folder) / "fma_peak"
        source.write_text(FMA_KERNEL)
        build = subprocess.run([compiler, "-O3", "-march=native", "-ffp-contract=fast", "-pthread",
                                str(source), "-o", str(program)], capture_output=True, text=True)
        if build.returncode != 0:
            raise NoCompiler(f"{compiler} could not build the FMA peak kernel:\n{build.stderr.strip()[-800:]}")
        run = subprocess.run([str(program), str(threads), str(repeats), str(seconds)],
                             capture_output=True, text=True, timeout=120)
    if run.returncode != 0:
        raise RuntimeError(f"the FMA peak kernel failed ({run.returncode}): {run.stderr.strip()[-800:]}")
    return float(run.stdout.split()[0])


class Peak(NamedTuple):
    """A float32 peak in GFLOP/s, whether it was ``"measured"`` or ``"computed"``, and a sentence saying how."""

    gflops: float | None
    how: str
    note: str


def fma_peak(threads: int | None = None) -> Peak:
    """This machine's float32 peak: measured with :func:`measure_fma_peak_gflops`, else computed.

    The note names the method, so a notebook can print it as it is.
    """
    from dlcourse.config import cpu_threads

    threads = threads or cpu_threads()
    flags = cpu_flags()
    lanes = float32_lanes(flags)
    try:
        gflops = measure_fma_peak_gflops(threads)
        return Peak(gflops, "measured", f"measured: independent {vector_isa(flags)} FMA chains "
                    f"({lanes} float32 lanes) in registers on {threads} thread(s), compiled at run time")
    except (NoCompiler, RuntimeError, OSError, subprocess.TimeoutExpired) as error:
        ghz = clock_ghz()
        gflops = computed_peak_gflops(threads, flags, ghz)
        reason = str(error).splitlines()[0]
        if gflops is None:
            return Peak(None, "unknown", f"not measured ({reason}) and not computable (clock or vector width unknown)")
        return Peak(gflops, "computed", f"computed, not measured ({reason}): {threads} thread(s) x {lanes} lanes x "
                    f"2 FLOPs x 2 FMA units (assumed) x {ghz:.2f} GHz")


def cpu_summary() -> str:
    """One line naming the CPU and its widest vector unit, e.g. ``"AMD EPYC (AVX2, FMA, no native BF16)"``."""
    flags = cpu_flags()
    if not flags:
        return cpu_model()
    parts = [vector_isa(flags)]
    if "fma" in flags:
        parts.append("FMA")
    parts.append("native BF16" if native_bf16(flags) else "no native BF16")
    return f"{cpu_model()} ({', '.join(parts)})"


def torch_capability() -> str:
    """The instruction set PyTorch's CPU kernels chose, e.g. ``"AVX2"`` or ``"AVX512"``.

    ``ATEN_CPU_CAPABILITY=avx2`` in the environment (set before Python starts) makes PyTorch
    behave as on an AVX2-only CPU.
    """
    import torch

    return torch.backends.cpu.get_cpu_capability()
