"""dlcourse.hardware: CPU flags from cpuinfo text, native BF16/FP16 logic, the float32 peak and its fallback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dlcourse import hardware

# Two processors of an AVX2-only machine, then the fields an AVX-512 BF16 machine adds.
AVX2_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
cpu MHz\t\t: 2450.000
flags\t\t: fpu sse sse2 avx f16c fma avx2

processor\t: 1
model name\t: should not be read
flags\t\t: sse2
"""
AVX512_FLAGS = {"sse2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_vnni"}


def test_parse_cpuinfo_reads_the_first_processor_only():
    fields = hardware.parse_cpuinfo(AVX2_CPUINFO)
    assert fields["model name"] == "AMD EPYC 7B13"
    assert hardware.cpu_model(AVX2_CPUINFO) == "AMD EPYC 7B13"
    assert hardware.cpu_flags(AVX2_CPUINFO) == {"fpu", "sse", "sse2", "avx", "f16c", "fma", "avx2"}
    assert hardware.clock_ghz(AVX2_CPUINFO) == pytest.approx(2.45)
    assert hardware.parse_cpuinfo("") == {}
    assert hardware.cpu_flags("") == set()


def test_missing_cpuinfo_gives_no_flags_and_still_a_summary(monkeypatch, tmp_path):
    monkeypatch.setattr(hardware, "CPUINFO", tmp_path / "no-such-file")
    assert hardware.cpu_flags() == set()
    assert hardware.vector_isa() == "unknown"
    assert hardware.cpu_summary()          # falls back to the platform's name


@pytest.mark.parametrize("flags, isa, lanes", [
    (AVX512_FLAGS, "AVX-512", 16), ({"sse2", "avx", "avx2", "fma"}, "AVX2", 8),
    ({"sse2", "avx"}, "AVX", 8), ({"sse2"}, "SSE", 4), (set(), "unknown", 1)])
def test_vector_width(flags, isa, lanes):
    assert hardware.vector_isa(flags) == isa
    assert hardware.float32_lanes(flags) == lanes


def test_native_bf16_and_fp16_need_arithmetic_not_conversion():
    avx2 = hardware.cpu_flags(AVX2_CPUINFO)
    assert not hardware.native_bf16(avx2) and not hardware.native_fp16(avx2)   # f16c only converts
    assert hardware.native_bf16(AVX512_FLAGS) and not hardware.native_fp16(AVX512_FLAGS)
    assert hardware.native_bf16({"amx_bf16"}) and hardware.native_fp16({"avx512_fp16"})
    assert not hardware.native_bf16({"avx512f", "avx512bw"})                   # AVX-512 alone is not BF16
    assert hardware.bf16_speedup_bound(avx2) == 1.0
    assert hardware.bf16_speedup_bound(AVX512_FLAGS) == 2.0
    assert hardware.bf16_speedup_bound(AVX512_FLAGS | {"amx_bf16"}) == 16.0


def test_computed_peak_is_the_datasheet_formula():
    # 2 threads x 8 lanes x 2 FLOPs x 2 FMA units x 2.5 GHz
    assert hardware.computed_peak_gflops(2, {"avx2", "fma"}, 2.5) == pytest.approx(160.0)
    assert hardware.computed_peak_gflops(1, AVX512_FLAGS, 2.0, fma_units=1) == pytest.approx(64.0)
    assert hardware.computed_peak_gflops(2, {"sse2"}, 2.5) is None            # no FMA: no such peak
    assert hardware.computed_peak_gflops(2, {"avx2", "fma"}, ghz=0) is None   # unknown clock


def test_without_a_compiler_the_peak_is_computed_and_says_so(monkeypatch):
    monkeypatch.setattr(hardware, "find_c_compiler", lambda: None)
    with pytest.raises(hardware.NoCompiler, match="no C compiler found.*install one"):
        hardware.measure_fma_peak_gflops(1)
    monkeypatch.setattr(hardware, "cpu_flags", lambda text=None: {"avx2", "fma"})
    monkeypatch.setattr(hardware, "clock_ghz", lambda text=None: 2.5)
    peak = hardware.fma_peak(threads=2)
    assert peak.how == "computed" and peak.gflops == pytest.approx(160.0)
    assert "computed, not measured" in peak.note and "no C compiler" in peak.note


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="at least 1"):
        hardware.measure_fma_peak_gflops(threads=-1)
    with pytest.raises(ValueError, match="positive"):
        hardware.measure_fma_peak_gflops(threads=1, seconds=0)


def test_a_compiler_that_fails_is_reported(tmp_path):
    broken = tmp_path / "cc"
    broken.write_text("#!/bin/sh\necho 'cc: broken on purpose' >&2\nexit 1\n")
    broken.chmod(0o755)
    with pytest.raises(hardware.NoCompiler, match="(?s)could not build.*broken on purpose"):
        hardware.measure_fma_peak_gflops(1, compiler=str(broken))


@pytest.mark.skipif(hardware.find_c_compiler() is None, reason="no C compiler on this machine")
def test_measured_peak_is_plausible():
    gflops = hardware.measure_fma_peak_gflops(threads=1, repeats=1, seconds=0.01)
    # One core: at least 1 FLOP per cycle at 0.5 GHz, at most 16 lanes x 2 x 4 units x 6 GHz.
    assert 0.5 < gflops < 768, gflops


def test_import_loads_no_framework():
    code = "import sys, dlcourse.hardware; sys.exit('torch' in sys.modules or 'tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
