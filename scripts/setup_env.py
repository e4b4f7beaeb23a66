#!/usr/bin/env python3
"""Create or refresh the course environment in .venv (called by `make setup/lab/test`).

    python3 scripts/setup_env.py [--venv .venv] [--gpu] [--horovod background|wait|skip]
    python scripts/setup_env.py --horovod-only      # into the running env (conda)

- Does nothing (in well under a second) when .venv already matches requirements.txt:
  a stamp file in .venv records a hash of everything that defines the environment.
- Otherwise installs the pins of requirements.txt and the course package (editable).
- Horovod (needed only by notebook 13 and lab07) is built from its released source with
  PyTorch, TensorFlow, MXNet and Gloo, applying two fixes the 0.28.1 release needs with
  today's frameworks (see patch_horovod), and the wheel is cached in
  ~/.cache/dlcourse/wheels so it is built once per machine, not once per set-up.
  `--horovod background` (`make lab`): JupyterLab does not wait for it; a cached wheel is
  installed at once, else the build runs in the background and writes its progress to
  .venv/horovod-build.log. `--horovod wait` (`make test`, `make horovod`): Horovod is
  ready when the script returns (it waits for a background build, or builds).
- Prints how long each phase took.

--gpu is for CUDA machines: TensorFlow with CUDA instead of tensorflow-cpu, the CUDA
build of PyTorch from PyPI, and Horovod built with NCCL for GPU collectives.

Uses only the standard library, so it runs with any Python 3.11 before .venv exists.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements.txt"
# Everything whose change must trigger a reinstall, plus ENV_VERSION, bumped when this
# script changes what it installs (hashing the whole script would reinstall after any edit).
STAMP_INPUTS = [REQUIREMENTS, ROOT / "pyproject.toml"]
ENV_VERSION = "2"
# Bump when patch_horovod changes, so cached wheels built with the old patch are not reused.
HOROVOD_PATCH_VERSION = "1"
# Front-end files the slide decks load from disk (scripts/build_slides.py): exact versions
# from the npm registry, unpacked into slides/NAME/ (not committed).
WEB_ASSETS = {"reveal.js": "5.2.1", "mathjax": "3.2.2"}


def say(msg: str) -> None:
    print(f"[setup] {msg}", flush=True)


def fail(msg: str) -> None:
    print(f"[setup] error: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def run(cmd: list[str], **kwargs) -> None:
    say("$ " + " ".join(str(c) for c in cmd))
    result = subprocess.run(cmd, **kwargs)
    if result.returncode != 0:
        fail(f"command failed with exit code {result.returncode}: {' '.join(str(c) for c in cmd)}")


def pins() -> dict[str, str]:
    """``{package: version}`` from requirements.txt (every line must be an exact pin)."""
    out = {}
    for line in REQUIREMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+(?:\[[a-z0-9,\-]+\])?)==([A-Za-z0-9_.+\-]+)", line)
        if not m:
            fail(f"requirements.txt: {line!r} is not an exact pin (name==version)")
        out[m.group(1).lower()] = m.group(2)
    return out


def requirement_lines(gpu: bool) -> list[str]:
    """The pins to install with pip: all but Horovod, with CUDA packages when gpu."""
    lines = []
    for name, version in pins().items():
        if name == "horovod":
            continue
        if gpu and name == "tensorflow-cpu":
            name = "tensorflow[and-cuda]"
        lines.append(f"{name}=={version}")
    return lines


def stamp_value(gpu: bool) -> str:
    h = hashlib.sha256()
    for path in STAMP_INPUTS:
        h.update(path.read_bytes())
    h.update(f"gpu={gpu} python={platform.python_version()} env={ENV_VERSION}".encode())
    return h.hexdigest()


def wheel_cache() -> Path:
    if os.environ.get("DLCOURSE_WHEEL_CACHE"):
        return Path(os.environ["DLCOURSE_WHEEL_CACHE"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "dlcourse" / "wheels"


def horovod_wheel_dir(gpu: bool) -> Path:
    """Cache folder for a Horovod wheel built against exactly these framework versions."""
    p = pins()
    key = "|".join([p["horovod"], p["torch"], p["tensorflow-cpu"], p["mxnet"], p["numpy"],
                    platform.python_version(), platform.machine(), f"gpu={gpu}", HOROVOD_PATCH_VERSION])
    return wheel_cache() / f"horovod-{p['horovod']}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def patch_horovod(src: Path) -> None:
    """The two changes Horovod 0.28.1 needs to build against PyTorch 2.x and TensorFlow 2.21.

    1. C++17 instead of C++14: PyTorch 2's headers need C++17 (fixed upstream after 0.28.1).
    2. Leave out horovod/tensorflow/xla_mpi_ops.cc: it includes XLA headers that TensorFlow
       no longer ships, and is only used for XLA on GPUs.
    Each edit is checked, so a changed source fails loudly instead of building wrongly.
    """
    edits = [
        ("CMakeLists.txt", "set(CMAKE_CXX_STANDARD 14)", "set(CMAKE_CXX_STANDARD 17)"),
        ("horovod/torch/CMakeLists.txt", "set(CMAKE_CXX_STANDARD 14)", "set(CMAKE_CXX_STANDARD 17)"),
        ("horovod/tensorflow/CMakeLists.txt",
         'list(APPEND TF_SOURCES "${PROJECT_SOURCE_DIR}/horovod/tensorflow/xla_mpi_ops.cc")\n', ""),
    ]
    for rel, old, new in edits:
        path = src / rel
        text = path.read_text()
        if old not in text:
            fail(f"cannot patch Horovod: {rel} does not contain {old.strip()!r}")
        path.write_text(text.replace(old, new, 1))


def run_with_progress(cmd: list, env: dict, log) -> None:
    """Run a long build, its whole output into ``log``; on the console one line per 10% that CMake reports."""
    say("$ " + " ".join(str(c) for c in cmd))
    log.write("$ " + " ".join(str(c) for c in cmd) + "\n")
    log.flush()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace")
    shown = -10
    for line in proc.stdout:
        log.write(line)
        log.flush()
        m = re.match(r"\s*\[\s*(\d+)%\]", line)
        if m and int(m.group(1)) >= shown + 10:
            shown = int(m.group(1))
            say(f"  Horovod build {shown}%")
    if proc.wait() != 0:
        fail(f"command failed with exit code {proc.returncode}: {' '.join(str(c) for c in cmd)} "
             f"(full output in {log.name})")


def build_horovod(py: Path, wheel_dir: Path, gpu: bool, log) -> Path:
    version = pins()["horovod"]
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="horovod-build-") as tmp:
        tmp = Path(tmp)
        run([py, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:", "--no-build-isolation",
             "-d", tmp, f"horovod=={version}"])
        sdist = next(tmp.glob("horovod-*.tar.gz"))
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        src = tmp / f"horovod-{version}"
        patch_horovod(src)
        # The MXNet part of the build runs `import mxnet`, which needs the numpy alias fix.
        site = tmp / "site"
        site.mkdir()
        (site / "sitecustomize.py").write_text(
            "from dlcourse.config import patch_numpy_for_mxnet\npatch_numpy_for_mxnet()\n")
        env = {
            **os.environ,
            "PATH": f"{py.parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(site),
            "HOROVOD_WITH_PYTORCH": "1",
            "HOROVOD_WITH_TENSORFLOW": "1",
            "HOROVOD_WITH_GLOO": "1",
            "HOROVOD_WITHOUT_MPI": "1",  # Gloo is the controller; no MPI install needed
            "MAKEFLAGS": f"-j{os.cpu_count() or 2}",
        }
        if gpu:
            env["HOROVOD_GPU_OPERATIONS"] = "NCCL"
            env["HOROVOD_WITHOUT_MXNET"] = "1"  # PyPI's MXNet is a CPU build; Horovod refuses to mix
        else:
            env["HOROVOD_WITH_MXNET"] = "1"
        say(f"building Horovod {version} (5-10 minutes on 2 cores; cached afterwards)")
        out = tmp / "wheel"
        # -v: CMake's "[ 42%] Building CXX object ..." lines are the build's progress.
        run_with_progress([py, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation", "-w", out, src],
                          env, log)
        wheel = next(out.glob("horovod-*.whl"))
        # Atomic: a half-written cache entry must never be taken for a good wheel.
        partial = wheel_dir.with_name(wheel_dir.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        shutil.copy2(wheel, partial / wheel.name)
        shutil.rmtree(wheel_dir, ignore_errors=True)
        partial.rename(wheel_dir)
    say(f"Horovod built in {time.time() - t0:.0f} s, cached in {wheel_dir}")
    return wheel_dir / wheel.name


def horovod_marker(py: Path) -> Path:
    """File in the environment that names the Horovod build installed there (absent: none)."""
    return py.parent.parent / ".dlcourse-horovod"


def horovod_log(py: Path) -> Path:
    """Where a Horovod build writes its output; `make doctor` and notebook 13 point here."""
    return py.parent.parent / "horovod-build.log"


def horovod_installed(py: Path, gpu: bool) -> bool:
    marker = horovod_marker(py)
    return marker.exists() and marker.read_text().strip() == horovod_wheel_dir(gpu).name


def install_horovod(py: Path, gpu: bool, rebuild: bool, log=None) -> None:
    """Install Horovod into the environment of ``py``, from the wheel cache or a fresh build."""
    wheel_dir = horovod_wheel_dir(gpu)
    wheels = sorted(wheel_dir.glob("horovod-*.whl")) if wheel_dir.is_dir() else []
    if wheels and not rebuild:
        say(f"using cached Horovod wheel {wheels[0]}")
        wheel = wheels[0]
    else:
        with open(horovod_log(py), "w") if log is None else contextlib.nullcontext(log) as out:
            wheel = build_horovod(py, wheel_dir, gpu, out)
    run([py, "-m", "pip", "install", "--quiet", "--progress-bar", "off", "--no-deps", "--force-reinstall", wheel])
    horovod_marker(py).write_text(wheel_dir.name + "\n")


def horovod_lock(py: Path):
    """An open lock file; whoever holds an exclusive flock on it is building or installing Horovod."""
    return open(py.parent.parent / ".horovod-build.lock", "a+")


def ensure_horovod(py: Path, gpu: bool, mode: str, rebuild: bool) -> str:
    """Make Horovod available as ``mode`` asks; returns what was done, for the phase summary.

    - ``"wait"``: installed when this returns (waits for a background build, or builds here);
    - ``"background"``: a cached wheel is installed now; otherwise a build is started in the
      background (unless one is running) and this returns at once;
    - ``"skip"``: nothing.
    """
    if mode == "skip" or (horovod_installed(py, gpu) and not rebuild):
        return "skipped" if mode == "skip" else "already installed"
    lock = horovod_lock(py)
    log = horovod_log(py)
    wheel_dir = horovod_wheel_dir(gpu)
    cached = wheel_dir.is_dir() and any(wheel_dir.glob("horovod-*.whl"))
    if mode == "background" and not (cached and not rebuild):
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"Horovod is being built in the background; progress: tail -f {log}")
            return "building in the background"
        fcntl.flock(lock, fcntl.LOCK_UN)   # the background process takes it for itself
        args = [sys.executable, str(Path(__file__).resolve()), "--venv", str(py.parent.parent),
                "--horovod-build-worker"] + (["--gpu"] if gpu else []) + (["--rebuild-horovod"] if rebuild else [])
        with open(log, "w") as out:
            subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True, cwd=ROOT)
        say("JupyterLab does not need Horovod (only notebook 13 and lab07 do): it is being built in the "
            f"background, 5-10 minutes on 2 cores. Progress: tail -f {log}; `make horovod` waits for it.")
        return "build started in the background"
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        say(f"waiting for the Horovod build running in the background (progress: {log})")
        t0, last = time.time(), ""
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(5)
                progress = [line for line in log.read_text(errors="replace").splitlines()
                            if re.match(r"\s*\[\s*\d+%\]", line)] if log.exists() else []
                if progress and progress[-1][:6] != last:
                    last = progress[-1][:6]
                    say(f"  Horovod build {last.strip()} ({time.time() - t0:.0f} s waited)")
    try:
        if not horovod_installed(py, gpu) or rebuild:
            install_horovod(py, gpu, rebuild)
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
    if not horovod_installed(py, gpu):
        fail(f"Horovod could not be installed; see {log}")
    return "installed"


def horovod_build_worker(py: Path, gpu: bool, rebuild: bool) -> None:
    """The background build started by ensure_horovod(mode="background"); its output is the log."""
    lock = horovod_lock(py)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        say("another Horovod build is running; nothing to do")
        return
    t0 = time.time()
    say(f"background Horovod build started {time.strftime('%Y-%m-%d %H:%M:%S')}")
    install_horovod(py, gpu, rebuild, log=sys.stdout)
    say(f"Horovod ready in {time.time() - t0:.0f} s: notebook 13 and lab07 can run")


def npm_cache() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "dlcourse" / "npm"


def install_web_assets(dest_root: Path = ROOT / "slides") -> None:
    """Unpack reveal.js and MathJax for the slide decks; a no-op when they are in place.

    The packages come from the npm registry (`npm pack`, which checks their integrity)
    and are cached in ~/.cache/dlcourse/npm. Without npm the decks are left as they are
    and a message says what to install; nothing else in the course needs them.
    """
    for name, version in WEB_ASSETS.items():
        dest = dest_root / name
        marker = dest / ".dlcourse-version"
        if marker.exists() and marker.read_text().strip() == version:
            continue
        tarball = npm_cache() / f"{name}-{version}.tgz"
        if not tarball.exists():
            npm = shutil.which("npm")
            if npm is None:
                say(f"npm not found: the slide decks need {name} {version} in slides/{name}/; "
                    "install Node.js with npm, then run `make setup` again")
                continue
            tarball.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix="npm-pack-") as tmp:
                say(f"$ npm pack {name}@{version}")
                result = subprocess.run([npm, "pack", f"{name}@{version}", "--pack-destination", tmp,
                                         "--silent"], stdout=subprocess.DEVNULL)
                packed = sorted(Path(tmp).glob("*.tgz"))
                if result.returncode != 0 or not packed:
                    say(f"could not fetch {name} {version} from the npm registry; "
                        "the slide decks will not display until `make setup` succeeds")
                    continue
                partial = tarball.with_suffix(".partial")
                shutil.move(packed[0], partial)
                partial.replace(tarball)
        # Unpack next to the destination, then swap it in: never a half-unpacked folder.
        dest_root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=dest_root) as tmp:
            with tarfile.open(tarball) as tar:
                tar.extractall(tmp, filter="data")
            unpacked = Path(tmp) / "package"
            (unpacked / ".dlcourse-version").write_text(version + "\n")
            shutil.rmtree(dest, ignore_errors=True)
            unpacked.rename(dest)
        say(f"{name} {version} unpacked into slides/{name}/ for the slide decks")


class Phases:
    """Wall time of each set-up phase, printed at the end (the README quotes them)."""

    def __init__(self):
        self.times: list[tuple[str, float]] = []

    def run(self, name: str, fn, *args):
        t0 = time.time()
        result = fn(*args)
        self.times.append((name, time.time() - t0))
        return result

    def summary(self) -> str:
        total = sum(t for _, t in self.times)
        return "set-up took " + ", ".join(f"{name} {t:.1f} s" for name, t in self.times) + f"; total {total:.1f} s"


def install_pins(py: Path, venv: Path, gpu: bool) -> None:
    if not py.exists():
        say(f"creating {venv}")
        run([sys.executable, "-m", "venv", venv])
    with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="requirements-", delete=False) as fh:
        fh.write("\n".join(requirement_lines(gpu)) + "\n")
    say(f"installing {len(requirement_lines(gpu))} pinned packages from requirements.txt "
        "(a few minutes the first time; pip prints only problems)")
    try:
        run([py, "-m", "pip", "install", "--quiet", "--progress-bar", "off", "-r", fh.name])
    finally:
        os.unlink(fh.name)


def install_course(py: Path) -> None:
    # The venv's own setuptools builds it: an isolated build environment would be fetched each time.
    run([py, "-m", "pip", "install", "--quiet", "--progress-bar", "off", "--no-deps", "--no-build-isolation",
         "-e", ROOT])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--venv", default=str(ROOT / ".venv"))
    parser.add_argument("--gpu", action="store_true", help="CUDA builds and Horovod with NCCL")
    parser.add_argument("--cpu", action="store_true", help="go back to CPU builds after --gpu")
    parser.add_argument("--horovod", choices=["background", "wait", "skip"], default="background",
                        help="background: JupyterLab does not wait for the Horovod build (default); "
                             "wait: Horovod is ready when set-up returns; skip: leave it alone")
    parser.add_argument("--rebuild-horovod", action="store_true", help="ignore the cached Horovod wheel")
    parser.add_argument("--horovod-only", action="store_true",
                        help="only build/install Horovod into the running Python (e.g. a conda env)")
    parser.add_argument("--horovod-build-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if sys.version_info[:2] != (3, 11):
        fail(f"the course's pins need Python 3.11, but this is {platform.python_version()} "
             f"({sys.executable}). Install Python 3.11 and run `make setup PYTHON=python3.11`.")
    if args.horovod_only:
        install_horovod(Path(sys.executable), args.gpu, args.rebuild_horovod)
        return
    venv = Path(args.venv).resolve()
    py = venv / "bin" / "python"
    if args.horovod_build_worker:
        horovod_build_worker(py, args.gpu, args.rebuild_horovod)
        return
    stamp = venv / ".dlcourse-stamp"
    # The GPU variant is sticky: once set up with --gpu, a plain `make lab` keeps it.
    variant = venv / ".dlcourse-variant"
    if args.cpu:
        args.gpu = False
    elif not args.gpu and variant.exists() and variant.read_text().strip() == "gpu":
        args.gpu = True
    want = stamp_value(args.gpu)
    phases = Phases()
    phases.run("web assets", install_web_assets)
    if py.exists() and stamp.exists() and stamp.read_text().strip() == want:
        hvd = ensure_horovod(py, args.gpu, args.horovod, args.rebuild_horovod) if args.horovod != "skip" else ""
        say(f"{venv.name} is up to date" + (f" (Horovod: {hvd})" if hvd and hvd != "already installed" else ""))
        return

    if stamp.exists():
        stamp.unlink()  # until this run finishes, the environment is not known to be good
    phases.run("pip install", install_pins, py, venv, args.gpu)
    phases.run("course package", install_course, py)
    variant.write_text("gpu\n" if args.gpu else "cpu\n")
    tmp_stamp = stamp.with_suffix(".tmp")
    tmp_stamp.write_text(want + "\n")
    tmp_stamp.replace(stamp)
    hvd = phases.run("Horovod", ensure_horovod, py, args.gpu, args.horovod, args.rebuild_horovod)
    say(f"{venv.name} ready (Horovod: {hvd}); {phases.summary()}")


if __name__ == "__main__":
    main()
