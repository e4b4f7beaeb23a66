"""The batch grader: ``python -m dlcourse grade LAB SUBMISSIONS --out grades.csv`` (INSTRUCTORS.md).

Three kinds of process grade a folder of submissions:

* **the grader** (the command, trusted) copies every submission into its private folder
  before any student code runs, starts one judge per submission (``--jobs`` at a time), and
  writes the CSV and the feedback files (atomically) from what the judges report;
* **a judge** (``python -m dlcourse.grader judge JOB``, trusted: it runs no student code)
  runs the official solution notebook's setup and check cells, hidden tests included. The
  student's functions are :class:`Remote` objects there: calling one sends the inputs to the
  sandbox and brings back *plain data* (None, numbers, strings, lists, tuples, dicts, NumPy
  arrays and tensors as ``.npy`` bytes read with ``allow_pickle=False``). Anything else a
  student's code returns (a network, say) stays in the sandbox; the judge holds a reference it
  can call or read attributes of, which again returns plain data. Every verdict is computed
  in the judge from those values, so no code in a submission can change how it is scored;
* **a sandbox** (``python -m dlcourse.grader student``, untrusted) runs the notebook's setup
  cells and the student's exercise cells, then answers the judge's calls. It runs under
  bubblewrap (``bwrap``) with its own empty writable folder (also its ``HOME`` and ``/tmp``),
  the course code, Python and data read-only and nothing else of the file system (no
  ``solutions/``, no ``.git``, no submissions, no results, no home folder), new PID, network
  (no network at all), IPC and UTS namespaces, no capabilities, and limits on memory,
  processes, CPU time, file size, disk use and wall time. Run as root, it also switches to a
  user id of its own (from 60000 on; one per sandbox running on the machine at a time). Where
  no such sandbox can be made the grader refuses to run unless given ``--unsafe-no-sandbox``.

The sandbox and the judge talk over two pipes: length-prefixed frames, each a JSON header
plus raw ``.npy`` byte blobs. A sandbox's answer is data, never code: the judge decodes it
with ``json`` and ``numpy.load(allow_pickle=False)`` and nothing else. The judge sends its
own objects that are not plain data (a network built by a check) as pickles, which only the
sandbox loads, and the functions a check passes to a student's code (a ``send`` callback)
as references: calling one in the sandbox calls back into the judge with plain data.
Random-number state (PyTorch, NumPy's global generator, ``random``) travels with every call
both ways, so ``torch.manual_seed(0)`` in a check seeds the student's code as it does in the
notebook; warnings raised in the student's code are raised again in the judge, and NumPy
arrays or tensors the student's code changes in place are changed in the judge too.
"""

from __future__ import annotations

import csv
import functools
import importlib
import io
import json
import os
import pickle
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from dlcourse import grading
from dlcourse.fsutil import atomic_write

FEEDBACK_CHARS = 2000          # of each cell's output kept in the feedback file
MAX_NOTEBOOK_BYTES = 50 << 20  # a bigger "notebook" is not read
MAX_HEADER = 64 << 20          # limits on one frame from the sandbox
MAX_FRAME = 1 << 30
GRACE = 15.0                   # seconds a sandbox gets past a time limit to stop by itself
MEMORY_GB = 8.0                # default memory limit of one sandbox (all its processes)
DISK_GB = 2.0                  # files a sandbox may leave in its folder
PROCESSES = 256                # processes and threads of one sandbox
UID_BASE = 60000               # as root, sandboxes run as user ids from here on (_claim_uids)


class SandboxError(Exception):
    """The sandbox stopped, broke a limit, or sent something that is not plain data."""

    explained = True   # grading._explain shows the message as it is


class WireError(SandboxError):
    """A frame that does not decode to plain data."""


# --------------------------------------------------------------------------- plain data on the wire
_NUMERIC = frozenset("biufc")


def _npy(array) -> bytes:
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def _from_npy(data: bytes):
    import numpy as np

    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:
        raise WireError(f"an array that does not load: {type(exc).__name__}: {exc}"[:300]) from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in _NUMERIC or array.dtype.fields:
        raise WireError("an array that is not numbers")
    return array


def _plain_tensor(value) -> bool:
    import torch

    plain = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float16,
             torch.bfloat16, torch.float32, torch.float64, torch.complex64, torch.complex128)
    return (value.layout == torch.strided and not value.is_quantized and value.device.type != "meta"
            and value.dtype in plain)


class _Encoder:
    """Turns a value into a JSON-able structure plus blobs; ``other`` handles what is not plain data."""

    def __init__(self, other):
        self.blobs: list[bytes] = []
        self.other = other

    def _blob(self, data: bytes) -> int:
        self.blobs.append(data)
        return len(self.blobs) - 1

    def __call__(self, value, depth: int = 0):
        if depth > 60:
            raise WireError("a value nested more than 60 levels deep")
        if value is None or isinstance(value, (bool, str)) or type(value) in (int, float):
            return value
        np = sys.modules.get("numpy")
        if np is not None:
            if isinstance(value, np.ndarray) and value.dtype.kind in _NUMERIC and not value.dtype.fields:
                return {"$": "nd", "b": self._blob(_npy(np.asarray(value)))}
            if isinstance(value, np.generic) and value.dtype.kind in _NUMERIC:
                return {"$": "np", "b": self._blob(_npy(np.asarray(value)))}
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(value, torch.Tensor) and _plain_tensor(value):
            tensor, dtype = value.detach().cpu(), None
            if tensor.dtype == torch.bfloat16:
                tensor, dtype = tensor.float(), "bfloat16"
            return {"$": "t", "b": self._blob(_npy(tensor.resolve_conj().resolve_neg().numpy())),
                    "g": bool(value.requires_grad), "d": dtype}
        if isinstance(value, tuple):
            return {"$": "tuple", "v": [self(v, depth + 1) for v in value]}
        if type(value) is list:
            return [self(v, depth + 1) for v in value]
        if isinstance(value, dict):
            return {"$": "dict", "v": [[self(k, depth + 1), self(v, depth + 1)] for k, v in value.items()]}
        return self.other(value)


class _Decoder:
    """The inverse of :class:`_Encoder`; ``markers`` decode the kinds of reference a side accepts."""

    def __init__(self, blobs: list[bytes], markers: dict):
        self.blobs = blobs
        self.markers = markers

    def blob(self, spec) -> bytes:
        index = spec.get("b")
        if type(index) is not int or not 0 <= index < len(self.blobs):
            raise WireError("a reference to a missing blob")
        return self.blobs[index]

    def __call__(self, value, depth: int = 0):
        if depth > 60:
            raise WireError("a value nested more than 60 levels deep")
        if isinstance(value, list):
            return [self(v, depth + 1) for v in value]
        if not isinstance(value, dict):
            return value
        kind = value.get("$")
        if kind == "tuple" and isinstance(value.get("v"), list):
            return tuple(self(v, depth + 1) for v in value["v"])
        if kind == "dict" and isinstance(value.get("v"), list):
            out = {}
            for pair in value["v"]:
                if not (isinstance(pair, list) and len(pair) == 2):
                    raise WireError("a dict entry that is not a key and a value")
                try:
                    out[self(pair[0], depth + 1)] = self(pair[1], depth + 1)
                except TypeError:
                    raise WireError("a dict key that cannot be a key") from None
            return out
        if kind == "nd":
            return _from_npy(self.blob(value))
        if kind == "np":
            return _from_npy(self.blob(value))[()]
        if kind == "t":
            import torch

            tensor = torch.from_numpy(_from_npy(self.blob(value)).copy())
            if value.get("d") == "bfloat16":
                tensor = tensor.to(torch.bfloat16)
            if value.get("g") is True and (tensor.is_floating_point() or tensor.is_complex()):
                tensor.requires_grad_(True)
            return tensor
        if kind in self.markers:
            return self.markers[kind](value, self)
        raise WireError(f"an object of unknown kind {str(kind)[:40]!r}")


def _write_all(fd: int, data) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_exact(fd: int, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _send(fd: int, header: dict, blobs: list[bytes] = ()) -> None:
    head = json.dumps({**header, "blobs": [len(b) for b in blobs]}).encode()
    _write_all(fd, struct.pack(">IQ", len(head), sum(len(b) for b in blobs)) + head)
    for b in blobs:
        _write_all(fd, b)


def _receive(fd: int) -> tuple[dict, list[bytes]]:
    """One frame; raises EOFError at the end and WireError for anything malformed or too big."""
    head_len, body_len = struct.unpack(">IQ", _read_exact(fd, 12))
    if head_len > MAX_HEADER or body_len > MAX_FRAME:
        raise WireError(f"a message of {(head_len + body_len) / 2**20:.0f} MiB, over the limit of "
                        f"{MAX_FRAME / 2**20:.0f} MiB")
    try:
        header = json.loads(_read_exact(fd, head_len))
    except (ValueError, RecursionError):
        raise WireError("a message header that is not JSON") from None
    sizes = header.get("blobs") if isinstance(header, dict) else None
    if not (isinstance(sizes, list) and all(type(n) is int and n >= 0 for n in sizes) and sum(sizes) == body_len):
        raise WireError("a message whose parts do not add up")
    return header, [_read_exact(fd, n) for n in sizes]


def _describe(exc: BaseException) -> dict:
    return {"type": type(exc).__name__[:80], "message": str(exc)[:2000]}


def _rebuild_exception(error) -> BaseException:
    """An exception of the student's code, raised again in the judge: the builtin class of that
    name when there is one (so NotImplementedError still reads "not done yet"), else a new class."""
    if not isinstance(error, dict):
        return SandboxError("the sandbox reported an error it did not describe")
    import builtins

    name, message = str(error.get("type", "Exception"))[:80], str(error.get("message", ""))[:2000]
    cls = getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, Exception) and cls.__module__ == "builtins":
        try:
            return cls(message)
        except Exception:
            pass
    safe = name if name.isidentifier() else "Exception"
    return type(safe, (Exception,), {"__module__": "student"})(message)


# --------------------------------------------------------------------------- random-number state
def _rng_state(encode) -> dict:
    """The state of the generators this process has imported, encoded."""
    state = {}
    import random

    version, internal, gauss = random.getstate()
    state["random"] = [version, list(internal), gauss]
    np = sys.modules.get("numpy")
    if np is not None:
        name, keys, pos, has_gauss, cached = np.random.get_state()
        state["numpy"] = [name, encode(keys), pos, has_gauss, cached]
    torch = sys.modules.get("torch")
    if torch is not None:
        state["torch"] = encode(torch.get_rng_state().numpy())
    return state


def _set_rng_state(state, decode) -> None:
    if not isinstance(state, dict):
        raise WireError("a random-number state that is not a dict")
    try:
        if "random" in state:
            import random

            version, internal, gauss = state["random"]
            random.setstate((version, tuple(int(x) for x in internal), gauss))
        if "numpy" in state:
            import numpy as np

            name, keys, pos, has_gauss, cached = state["numpy"]
            np.random.set_state((name, np.asarray(decode(keys), dtype=np.uint32), int(pos), int(has_gauss),
                                 float(cached)))
        if "torch" in state:
            import numpy as np
            import torch

            torch.set_rng_state(torch.from_numpy(np.asarray(decode(state["torch"]), dtype=np.uint8).copy()))
    except WireError:
        raise
    except Exception as exc:
        raise WireError(f"a random-number state that does not load ({type(exc).__name__})") from None


# --------------------------------------------------------------------------- the sandbox side
class _Capture(io.TextIOBase):
    """A stdout that keeps the first ``limit`` characters and counts the rest."""

    def __init__(self, limit: int):
        self.parts: list[str] = []
        self.kept = self.total = 0
        self.limit = limit

    def writable(self):
        return True

    def write(self, text):
        text = str(text)
        self.total += len(text)
        if self.kept < self.limit:
            part = text[: self.limit - self.kept]
            self.parts.append(part)
            self.kept += len(part)
        return len(text)

    def text(self) -> str:
        out = "".join(self.parts)
        return out + (f"\n... ({self.total:,} characters, cut)" if self.total > self.kept else "")


class _Callback:
    """A function of the judge's, as the student's code sees it: calling it asks the judge."""

    def __init__(self, server, ident: int, name: str):
        self._server, self._id, self.__name__ = server, ident, name

    def __call__(self, *args, **kwargs):
        return self._server.callback(self._id, args, kwargs)

    def __repr__(self):
        return f"<function {self.__name__} of the grader>"


class _Server:
    """Runs inside the sandbox: runs cells, answers calls (``python -m dlcourse.grader student``)."""

    def __init__(self, rfd: int, wfd: int):
        from IPython.core.interactiveshell import InteractiveShell
        from traitlets.config import Config

        config = Config()
        config.HistoryManager.hist_file = ":memory:"
        config.InteractiveShell.colors = "NoColor"
        self.shell = InteractiveShell.instance(config=config)
        self.rfd, self.wfd = rfd, wfd
        self.objects: dict[int, object] = {}
        self.ids: dict[int, int] = {}

    # -- references
    def _handle(self, obj) -> dict:
        key = id(obj)
        if key not in self.ids:
            self.ids[key] = len(self.objects) + 1
            self.objects[self.ids[key]] = obj
        types = [f"{c.__module__}.{c.__qualname__}" for c in type(obj).__mro__]
        return {"$": "h", "id": self.ids[key], "types": types[:50]}

    def _resolve(self, ref):
        if isinstance(ref, dict) and "name" in ref:
            try:
                return self.shell.user_ns[ref["name"]]
            except KeyError:
                raise NameError(f"name {ref['name']!r} is not defined") from None
        if isinstance(ref, dict) and "h" in ref:
            return self.objects[ref["h"]]
        if isinstance(ref, dict) and "fn" in ref:    # a course function, "module:qualified.name"
            module, _, qualname = ref["fn"].partition(":")
            if not (module.split(".")[0] in ("dlcourse", "torch", "numpy") and all(
                    part.isidentifier() and not part.startswith("__") for part in qualname.split("."))):
                raise PermissionError(f"not a course function: {ref['fn']}")
            obj = importlib.import_module(module)
            for part in qualname.split("."):
                obj = getattr(obj, part)
            return obj
        if isinstance(ref, dict) and ref.get("builtin") in ("getattr", "list", "len", "getitem"):
            import operator

            return {"getattr": getattr, "list": list, "len": len, "getitem": operator.getitem}[ref["builtin"]]
        raise ValueError("the grader asked for something unknown")

    def _decoder(self, blobs):
        import pickle as _pickle

        def callback(v, dec):
            return _Callback(self, v["cb"], str(v.get("name", "callback")))

        return _Decoder(blobs, {"ref": lambda v, dec: self._resolve(v["ref"]),
                                "cb": callback,
                                "pk": lambda v, dec: _pickle.loads(dec.blob(v))})

    # -- the loop
    def serve(self) -> None:
        while True:
            try:
                header, blobs = _receive(self.rfd)
            except EOFError:
                return
            self._answer(header, blobs)

    def _answer(self, header, blobs) -> None:
        op = header.get("op")
        if op == "run":
            _send(self.wfd, self.run(header["source"], header["timeout"]))
        elif op == "call":
            reply, reply_blobs = self.call(header, blobs)
            _send(self.wfd, reply, reply_blobs)
        elif op == "bye":
            os._exit(0)
        else:
            _send(self.wfd, {"ok": False, "error": {"type": "ValueError", "message": f"unknown request {op!r}"}})

    @staticmethod
    def _alarm(seconds: float):
        def expired(signum, frame):
            raise TimeoutError(f"the cell ran longer than its time limit ({seconds:g} s) and was stopped")

        signal.signal(signal.SIGALRM, expired)
        signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))

    def run(self, source: str, timeout: float) -> dict:
        capture = _Capture(FEEDBACK_CHARS)
        saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = capture
        error = None
        try:
            self._alarm(timeout)
            result = self.shell.run_cell(source, store_history=True)
            signal.setitimer(signal.ITIMER_REAL, 0)
            error = result.error_before_exec or result.error_in_exec
        except BaseException as exc:   # the alarm can land outside the student's code
            signal.setitimer(signal.ITIMER_REAL, 0)
            error = exc
        finally:
            sys.stdout, sys.stderr = saved
        return {"ok": True, "output": capture.text(), "error": _describe(error) if error is not None else None}

    def call(self, header, blobs) -> tuple[dict, list[bytes]]:
        import hashlib
        import warnings

        decode = self._decoder(blobs)
        encode = _Encoder(self._handle)
        caught: list = []
        watched = []
        try:
            target = self._resolve(header.get("target"))
            args, kwargs = decode(header.get("args", [])), decode(header.get("kwargs", {}))
            if "rng" in header:
                _set_rng_state(header["rng"], decode)
            for key, value in [*enumerate(args), *kwargs.items()]:   # arrays changed in place go back
                inner = list(enumerate(value)) if isinstance(value, (list, tuple)) else []
                for sub, item in [(None, value), *inner]:
                    data = _array_bytes(item)
                    if data is not None:
                        watched.append(([key, sub], item, hashlib.blake2b(data).digest()))
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self._alarm(header.get("timeout", 300))
                try:
                    value = target(*args, **kwargs)
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            reply = {"ok": True, "value": encode(value)}
            reply["mutated"] = [[key, encode(v)] for key, v, digest in watched
                                if hashlib.blake2b(_array_bytes(v) or b"").digest() != digest]
        except BaseException as exc:
            signal.setitimer(signal.ITIMER_REAL, 0)
            encode = _Encoder(self._handle)
            reply = {"ok": False, "error": _describe(exc)}
        try:   # the generators the judge uses, now in the state the student's code left them
            reply["rng"] = {k: v for k, v in _rng_state(encode).items() if k in (header.get("rng") or {})}
        except Exception:
            pass
        reply["warnings"] = [[w.category.__name__[:80], str(w.message)[:500]] for w in caught[:20]]
        return reply, encode.blobs

    def callback(self, ident: int, args, kwargs):
        encode = _Encoder(self._handle)
        _send(self.wfd, {"op": "callback", "cb": ident, "args": encode(list(args)), "kwargs": encode(kwargs)},
              encode.blobs)
        while True:   # the judge may call us again before it answers
            header, blobs = _receive(self.rfd)
            if "op" in header:
                self._answer(header, blobs)
                continue
            if not header.get("ok"):
                raise _rebuild_exception(header.get("error"))
            return self._decoder(blobs)(header.get("value"))


def _array_bytes(value) -> bytes | None:
    np, torch = sys.modules.get("numpy"), sys.modules.get("torch")
    if np is not None and isinstance(value, np.ndarray) and value.dtype.kind in _NUMERIC:
        return value.tobytes()
    if torch is not None and isinstance(value, torch.Tensor) and value.layout == torch.strided:
        return value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes() \
            if value.numel() else b""
    return None


def _student_main(config: dict) -> None:
    """Entry point inside the sandbox: limit this process, then serve the judge."""
    import resource

    rfd, wfd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.set_inheritable(rfd, False)
    os.set_inheritable(wfd, False)
    uid = config.get("uid")
    if os.getuid() == 0 and not config.get("unsafe"):   # never run a student's code as root in a sandbox
        if not uid:
            raise SystemExit("a sandbox started as root needs a user id to switch to")
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        if 0 in os.getresuid() or 0 in os.getresgid():
            raise SystemExit("could not leave the root user")
    memory = int(config["memory_gb"] * 2**30)
    limits = {resource.RLIMIT_AS: memory, resource.RLIMIT_CPU: int(config["cpu_seconds"]),
              resource.RLIMIT_FSIZE: int(config["disk_gb"] * 2**30), resource.RLIMIT_CORE: 0}
    if config.get("processes"):
        limits[resource.RLIMIT_NPROC] = int(config["processes"])
    for which, value in limits.items():
        soft, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))
    try:
        os.chdir(config["work"])
    except OSError:
        pass
    server = _Server(rfd, wfd)
    _send(wfd, {"ok": True, "ready": True})
    server.serve()
    os._exit(0)


# --------------------------------------------------------------------------- the sandbox, seen from the judge
def _ancestors(path: str) -> list[str]:
    parts = Path(path).parts
    return [str(Path(*parts[:i])) for i in range(2, len(parts))]


def _course_binds() -> list[str]:
    """What a sandbox sees, read-only, besides the system: Python, the course code and data."""
    from dlcourse import data, models

    root = grading.COURSE_DIR
    paths = [sys.base_prefix, sys.prefix, *(str(root / name) for name in ("dlcourse", "scripts", "datasets"))]
    paths.append(str(models.artifacts_dir()))
    paths.append(str(data.cache_dir()))
    if os.environ.get("DLCOURSE_DATA"):
        paths.append(os.environ["DLCOURSE_DATA"])
    seen, out = set(), []
    for path in paths:
        real = os.path.realpath(path)
        if os.path.isdir(real) and real not in seen and not any(real.startswith(s + os.sep) for s in seen):
            seen.add(real)
            out.append(real)
    for hidden in (grading.SOLUTIONS_DIR, root / ".git"):   # a data folder set to the course root, say
        for path in out:
            if os.path.realpath(hidden).startswith(path + os.sep) or os.path.realpath(hidden) == path:
                raise grading.GradingError(f"the sandbox would show {hidden} through {path}: point "
                                           "DLCOURSE_DATA / DLCOURSE_CACHE / DLCOURSE_ARTIFACTS elsewhere")
    return out


_SYSTEM = ["/usr", "/etc/alternatives", "/etc/ssl/certs"]
_SYSTEM_FILES = ["/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/passwd", "/etc/group",
                 "/etc/nsswitch.conf", "/etc/localtime", "/etc/host.conf", "/etc/resolv.conf", "/etc/mime.types"]
HOSTNAME = "sandbox"
# The sandbox's own /etc/hosts: its host name must resolve (Horovod's Gloo rendezvous looks it up and
# crashes with SIGSEGV when it cannot), and only to the loopback of its empty network namespace.
_HOSTS = f"127.0.0.1\tlocalhost {HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n"


def sandbox_command(work: Path, argv: list[str], uid: int | None) -> tuple[list[str], list[int]]:
    """The bwrap command that runs ``argv`` in a sandbox around ``work``, and the fds to pass it."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxError("bubblewrap (bwrap) is not installed")
    root = os.geteuid() == 0
    args = [bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--hostname", HOSTNAME]
    if root:   # no user namespace: the sandbox switches to its own user id itself (see _student_main)
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        args += ["--unshare-user", "--disable-userns", "--cap-drop", "ALL"]
    fds: list[int] = []

    def bind(path: str, dest: str | None = None, writable: bool = False) -> None:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        fds.append(fd)
        args.extend(["--bind-fd" if writable else "--ro-bind-fd", str(fd), dest or path])

    # The sandbox's /tmp is its own folder; it is mounted first, so that a course that lives
    # under /tmp (a clone in /tmp/x, say) is mounted on top of it instead of being hidden by it.
    # bwrap, as root without capabilities, must pass through it to reach that course: 0711 lets
    # it enter the folder but not list it.
    os.chmod(work, 0o711)
    bind(str(work), "/tmp", writable=True)
    binds = []
    for path in [p for p in _SYSTEM if os.path.isdir(p)] + _course_binds():
        if not any(path == b or path.startswith(b + os.sep) for b in binds):
            binds.append(path)
    for directory in sorted({a for p in binds for a in _ancestors(p)}):
        if not any(directory == b or directory.startswith(b + os.sep) for b in binds):
            args += ["--perms", "0755", "--dir", directory]
    for path in binds:
        bind(path)
    for name in ("lib", "lib64", "bin", "sbin"):
        if os.path.islink(f"/{name}"):
            args += ["--symlink", os.readlink(f"/{name}"), f"/{name}"]
        elif os.path.isdir(f"/{name}"):
            bind(f"/{name}")
    for path in _SYSTEM_FILES:
        if os.path.isfile(path):
            bind(path)
    hosts_r, hosts_w = os.pipe()       # bwrap reads the file's bytes from this pipe
    os.write(hosts_w, _HOSTS.encode())
    os.close(hosts_w)
    fds.append(hosts_r)
    args += ["--perms", "0444", "--ro-bind-data", str(hosts_r), "/etc/hosts"]
    args += ["--dev", "/dev", "--proc", "/proc"]
    bind(str(work), "/sandbox", writable=True)
    bind(str(work), "/dev/shm", writable=True)
    args += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", "/", "--", *argv]   # the sandbox enters /sandbox as its own user
    return args, fds


def _claim_uids(count: int) -> tuple[list[int], list]:
    """As root: ``count`` sandbox user ids no other grader on this machine is using now, and the
    locks that hold them (abstract Unix sockets, released when closed or when this process ends)."""
    import socket

    uids, locks, uid = [], [], UID_BASE
    while len(uids) < count and uid < UID_BASE + 4096:
        lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            lock.bind(f"\0dlcourse-sandbox-uid-{uid}")
            uids.append(uid)
            locks.append(lock)
        except OSError:
            lock.close()
        uid += 1
    if len(uids) < count:
        raise SandboxError("no free sandbox user id")
    return uids, locks


@functools.lru_cache(maxsize=None)
def sandbox_status() -> tuple[bool, str]:
    """Can this machine run a graded sandbox? (True, how) or (False, why not)."""
    if not sys.platform.startswith("linux"):
        return False, "the sandbox needs Linux (bubblewrap)"
    if shutil.which("bwrap") is None:
        return False, "bubblewrap is not installed (Debian/Ubuntu: `sudo apt-get install bubblewrap`)"
    work = Path(tempfile.mkdtemp(prefix="dlcourse-probe-"))
    locks = []
    try:
        uid = None
        if os.geteuid() == 0:
            (uid,), locks = _claim_uids(1)
            os.chown(work, uid, uid)
        argv = [sys.executable, "-c", "import os, sys; os.getuid() == 0 and (os.setgroups([]), "
                f"os.setresgid({uid}, {uid}, {uid}), os.setresuid({uid}, {uid}, {uid})); "
                "import socket, numpy; open('/sandbox/ok', 'w').write('ok')"]
        cmd, fds = sandbox_command(work, argv, uid)
        try:
            run = subprocess.run(cmd, pass_fds=fds, capture_output=True, text=True, timeout=60)
        finally:
            for fd in fds:
                os.close(fd)
        if run.returncode != 0 or not (work / "ok").exists():
            return False, f"bubblewrap could not start a sandbox here: {(run.stderr.strip() or 'no message')[-300:]}"
        return True, f"bubblewrap ({'as root, with a user id per job' if uid else 'in a user namespace'})"
    except (OSError, SandboxError, subprocess.TimeoutExpired) as exc:
        return False, f"bubblewrap could not start a sandbox here: {exc}"
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for lock in locks:
            lock.close()


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as fh:
                    ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


def _resident_bytes(pids: list[int]) -> int:
    page, total = os.sysconf("SC_PAGE_SIZE"), 0
    for p in pids:
        try:
            with open(f"/proc/{p}/statm") as fh:
                total += int(fh.read().split()[1]) * page
        except (OSError, ValueError, IndexError):
            pass
    return total


def _folder_bytes(path: Path, max_entries: int = 20000) -> tuple[int, int]:
    total, count, todo = 0, 0, [str(path)]
    while todo and count <= max_entries:
        try:
            with os.scandir(todo.pop()) as entries:
                for entry in entries:
                    count += 1
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    total += st.st_blocks * 512
                    if stat.S_ISDIR(st.st_mode):
                        todo.append(entry.path)
        except OSError:
            pass
    return total, count


class Remote(grading.Foreign):
    """A student's function, or an object their code made, living in the sandbox (see the module doc)."""

    __slots__ = ("_sandbox", "_ref")

    def __init__(self, sandbox, ref: dict, types=()):
        super().__init__(types)
        self._sandbox, self._ref = sandbox, ref

    def __call__(self, *args, **kwargs):
        return self._sandbox.call(self._ref, args, kwargs)

    def __getattr__(self, name):
        if name.startswith("__") or name.startswith("_ipython") or name.startswith("_repr_"):
            raise AttributeError(name)
        return self._sandbox.call({"builtin": "getattr"}, (self, name), {})

    def __iter__(self):
        return iter(self._sandbox.call({"builtin": "list"}, (self,), {}))

    def __len__(self):
        return self._sandbox.call({"builtin": "len"}, (self,), {})

    def __getitem__(self, key):
        return self._sandbox.call({"builtin": "getitem"}, (self, key), {})

    def __bool__(self):
        return True

    def __repr__(self):
        name = self._ref.get("name") or (self._types[0].rsplit(".", 1)[-1] if self._types else "object")
        return f"<{name} in the submission's sandbox>"


class Sandbox:
    """The judge's end of one submission's sandbox: starts it, talks to it, enforces its limits."""

    def __init__(self, work: Path, *, uid: int | None, unsafe: bool, memory_gb: float, disk_gb: float,
                 total_timeout: float, env: dict):
        self.work = work
        self.memory = memory_gb * 2**30
        self.disk = disk_gb * 2**30
        self.deadline = time.monotonic() + total_timeout
        self.cell_deadline = self.deadline
        self.stopped: str | None = None   # why the sandbox was stopped before its end
        self._callback_errors: list[Exception] = []
        config = {"uid": uid, "unsafe": unsafe, "memory_gb": memory_gb, "disk_gb": disk_gb,
                  "cpu_seconds": total_timeout + 60, "processes": None if unsafe else PROCESSES,
                  "work": str(work) if unsafe else "/sandbox"}
        argv = [sys.executable, "-m", "dlcourse.grader", "student", json.dumps(config)]
        to_child, self._to_child = os.pipe()
        self._from_child, from_child = os.pipe()
        cmd, fds = (argv, []) if unsafe else sandbox_command(work, argv, uid)
        try:
            self.proc = subprocess.Popen(cmd, stdin=to_child, stdout=from_child, pass_fds=fds, env=env,
                                         cwd=str(work), start_new_session=True)
        finally:
            for fd in (to_child, from_child, *fds):
                os.close(fd)
        self._frames: list = []
        self._ready = threading.Condition()
        threading.Thread(target=self._reader, daemon=True).start()
        threading.Thread(target=self._watchdog, daemon=True).start()
        header, _ = self._wait(time.monotonic() + 120)
        if not header.get("ready"):
            raise SandboxError("the sandbox did not start")

    # -- the two threads
    def _reader(self) -> None:
        while True:
            try:
                frame = _receive(self._from_child)
            except EOFError:
                frame = ("eof", None)
            except (WireError, OSError) as exc:
                frame = ("bad", str(exc))
            with self._ready:
                self._frames.append(frame)
                self._ready.notify_all()
                while len(self._frames) > 2 and self.stopped is None:   # back-pressure
                    self._ready.wait(1)
            if frame[0] in ("eof", "bad"):
                return

    def _watchdog(self) -> None:
        """Twice a second: the total memory of the sandbox's processes (found anew every 2 s, since
        a scan of /proc costs a few milliseconds), its disk use and the total time."""
        tree, scanned = [], 0.0
        while self.stopped is None and self.proc.poll() is None:
            time.sleep(0.5)
            now = time.monotonic()
            if now > self.deadline + GRACE:
                self.kill("it ran past the submission's total time limit")
            if now - scanned > 2:
                tree, scanned = _process_tree(self.proc.pid), now
                size, count = _folder_bytes(self.work)
                if size > self.disk or count > 20000:
                    self.kill(f"it wrote more than {self.disk / 2**30:g} GB or 20,000 files into its folder")
            if _resident_bytes(tree) > self.memory:
                self.kill(f"its processes used more than {self.memory / 2**30:g} GB of memory")
        if self.stopped is None and self.proc.poll() is not None:
            with self._ready:
                self._ready.notify_all()

    def kill(self, reason: str | None) -> None:
        """Stop every process of the sandbox (they all die with its first process)."""
        if self.stopped is None and reason:
            self.stopped = reason
        pids = _process_tree(self.proc.pid)
        for p in reversed(pids):
            try:
                os.kill(p, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        with self._ready:
            self._ready.notify_all()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                _send(self._to_child, {"op": "bye"})
                self.proc.wait(3)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.closed = True
        self.kill(None)   # whatever is left: processes it started and did not wait for
        try:
            os.close(self._to_child)
        except OSError:
            pass

    # -- messages
    def _wait(self, until: float) -> tuple[dict, list[bytes]]:
        while True:
            with self._ready:
                if self._frames:
                    kind, payload = self._frames.pop(0)
                    self._ready.notify_all()
                    break
                expired = time.monotonic() > until
                if self.stopped is None and not expired:
                    self._ready.wait(0.2)
                    continue
            if self.stopped is None:
                self.kill("it did not stop at its time limit (did it ignore the interrupt?)")
            raise SandboxError(f"the sandbox was stopped: {self.stopped}")
        if kind == "eof":
            code = self.proc.poll()
            self.stopped = self.stopped or ("its process ended (os._exit, a crash, or out of memory)"
                                            + (f", exit code {code}" if code else ""))
            raise SandboxError(f"the sandbox was stopped: {self.stopped}")
        if kind == "bad":
            self.kill(f"it sent something that is not plain data ({payload})")
            raise SandboxError(f"the sandbox was stopped: {self.stopped}")
        return kind, payload

    def _budget(self) -> float:
        return max(0.05, min(self.cell_deadline, self.deadline) - time.monotonic())

    def _request(self, header: dict, blobs: list[bytes], callbacks: dict | None = None):
        if self.stopped is not None:
            raise SandboxError(f"the sandbox was stopped: {self.stopped}")
        try:
            _send(self._to_child, header, blobs)
        except OSError:
            self.kill("it stopped reading")
            raise SandboxError(f"the sandbox was stopped: {self.stopped}") from None
        while True:
            reply, reply_blobs = self._wait(time.monotonic() + self._budget() + GRACE)
            if reply.get("op") == "callback":
                self._answer_callback(reply, reply_blobs, callbacks or {})
                continue
            return reply, reply_blobs

    def run_cell(self, source: str) -> tuple[str, dict | None]:
        reply, _ = self._request({"op": "run", "source": source, "timeout": self._budget()}, [])
        output = str(reply.get("output", ""))
        if len(output) > FEEDBACK_CHARS + 100:
            output = output[:FEEDBACK_CHARS] + "\n... (cut)"
        error = reply.get("error")
        return output, error if isinstance(error, dict) else None

    # -- calls
    def _encoder(self, callbacks: dict) -> _Encoder:
        import functools
        import types

        def other(value):
            if isinstance(value, Remote):
                return {"$": "ref", "ref": value._ref}
            if isinstance(value, (types.FunctionType, types.MethodType, types.BuiltinFunctionType,
                                  functools.partial)):
                callbacks[len(callbacks) + 1] = value
                return {"$": "cb", "cb": len(callbacks), "name": getattr(value, "__name__", "callback")}
            try:
                return {"$": "pk", "b": encoder._blob(pickle.dumps(value))}
            except Exception as exc:
                raise TypeError(f"the grader cannot send a {type(value).__name__} to the sandbox: {exc}") from None

        encoder = _Encoder(other)
        return encoder

    def _decoder(self, blobs: list[bytes]) -> _Decoder:
        def handle(value, dec):
            ident, types = value.get("id"), value.get("types", [])
            if type(ident) is not int or not isinstance(types, list):
                raise WireError("a malformed reference")
            return Remote(self, {"h": ident}, [str(t)[:200] for t in types[:50]])

        return _Decoder(blobs, {"h": handle})

    def _answer_callback(self, request: dict, blobs: list[bytes], callbacks: dict) -> None:
        func = callbacks.get(request.get("cb"))
        try:
            decode = self._decoder(blobs)
            args, kwargs = decode(request.get("args", [])), decode(request.get("kwargs", {}))
            if func is None or not isinstance(args, list) or not isinstance(kwargs, dict) \
                    or not all(isinstance(k, str) for k in kwargs):
                raise WireError("a call of a function the grader did not send")
            value = func(*args, **kwargs)
            encoder = self._encoder(callbacks)
            reply = {"ok": True, "value": encoder(value)}
            blobs_out = encoder.blobs
        except WireError:
            raise
        except Exception as exc:
            self._callback_errors.append(exc)
            reply, blobs_out = {"ok": False, "error": _describe(exc)}, []
        _send(self._to_child, reply, blobs_out)

    def call(self, target: dict, args, kwargs):
        """Call a student's function or object (``target``) in the sandbox; returns plain data or Remotes."""
        import warnings

        callbacks: dict = {}
        encoder = self._encoder(callbacks)
        header = {"op": "call", "target": target, "args": encoder(list(args)), "kwargs": encoder(dict(kwargs)),
                  "timeout": self._budget()}
        header["rng"] = _rng_state(encoder)
        outer_errors, self._callback_errors = self._callback_errors, []
        try:
            reply, blobs = self._request(header, encoder.blobs, callbacks)
            errors = self._callback_errors
        finally:
            self._callback_errors = outer_errors
        decode = self._decoder(blobs)
        if "rng" in reply:
            _set_rng_state(reply["rng"], decode)
        for category, message in reply.get("warnings", [])[:20] if isinstance(reply.get("warnings"), list) else []:
            cls = getattr(__import__("builtins"), str(category), None)
            if not (isinstance(cls, type) and issubclass(cls, Warning)):
                cls = UserWarning
            warnings.warn_explicit(str(message), cls, "<the student's code>", 0)
        if errors:      # a check's own function failed inside the student's code: that verdict stands
            raise errors[0]
        if not reply.get("ok"):
            raise _rebuild_exception(reply.get("error"))
        value = decode(reply.get("value"))
        mutated = reply.get("mutated", [])
        for path, new in mutated if isinstance(mutated, list) else []:
            key, sub = path if isinstance(path, list) and len(path) == 2 else (None, None)
            original = args[key] if type(key) is int and 0 <= key < len(args) else \
                kwargs.get(key) if isinstance(key, str) else None
            if type(sub) is int and isinstance(original, (list, tuple)) and 0 <= sub < len(original):
                original = original[sub]
            _copy_into(original, decode(new))
        return value

    def call_course(self, func, *args, **kwargs):
        """Run a course function (``grading.student_side``) in the sandbox."""
        qualname = getattr(func, "__qualname__", "")
        module = getattr(func, "__module__", "") or ""
        if not qualname or "<" in qualname:
            raise TypeError(f"{func!r} is not a course function the sandbox can import")
        return self.call({"fn": f"{module}:{qualname}"}, args, kwargs)


def _copy_into(original, new) -> None:
    """Apply an in-place change the student's code made to an array or tensor the judge sent."""
    np, torch = sys.modules.get("numpy"), sys.modules.get("torch")
    if np is not None and isinstance(original, np.ndarray) and isinstance(new, np.ndarray) \
            and new.shape == original.shape and original.flags.writeable:
        np.copyto(original, new, casting="unsafe")
    elif torch is not None and isinstance(original, torch.Tensor) and isinstance(new, torch.Tensor) \
            and new.shape == original.shape:
        with torch.no_grad():
            original.copy_(new)


# --------------------------------------------------------------------------- the judge
def _job_env(work: Path, unsafe: bool) -> dict:
    """The environment of a sandbox: what the course needs from the grader's, not its secrets."""
    from dlcourse import data, models

    keep = ("DLCOURSE_", "LC_", "OMP_", "MKL_", "OPENBLAS_", "KMP_", "TF_", "KERAS_", "MALLOC_")
    env = {k: v for k, v in os.environ.items() if k.startswith(keep) or k in ("LANG", "LANGUAGE", "TZ")}
    home = str(work) if unsafe else "/sandbox"
    env.update({"PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
                "HOME": home, "TMPDIR": home, "MPLCONFIGDIR": home, "MPLBACKEND": "Agg", "USER": "student",
                "LOGNAME": "student", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1",
                "PYTHONPATH": str(grading.COURSE_DIR), "DLCOURSE_OFFLINE": "1",
                "DLCOURSE_CACHE": str(data.cache_dir()), "DLCOURSE_ARTIFACTS": str(models.artifacts_dir())})
    if sys.prefix != sys.base_prefix:
        env["VIRTUAL_ENV"] = sys.prefix
    return env


def _judge(job: dict) -> dict:
    """Grade one snapshot: run the official cells here and the student's in the sandbox."""
    import contextlib
    import warnings

    import nbformat

    solution = nbformat.read(job["solution"], as_version=4)
    expected = grading.expected_checks(solution)
    result = {"checks": {}, "errors": [], "lines": []}
    try:
        submitted = nbformat.reads(Path(job["snapshot"]).read_text(encoding="utf-8"), as_version=4)
        cells = submitted.cells
    except Exception as exc:
        result["errors"].append(f"not a readable notebook: {type(exc).__name__}: {str(exc)[:200]}")
        return result
    sources = {}
    for cell in cells:
        exercise = grading.cell_tag(cell, "exercise")
        if exercise and cell.get("cell_type") == "code" and exercise not in sources:
            sources[exercise] = cell.get("source", "") if isinstance(cell.get("source", ""), str) else ""
    stubs = grading.student_version(solution)
    work = Path(job["work"])
    sandbox = Sandbox(work, uid=job.get("uid"), unsafe=job["unsafe"], memory_gb=job["memory_gb"],
                      disk_gb=job["disk_gb"], total_timeout=job["total_timeout"],
                      env=_job_env(work, job["unsafe"]))
    reporter = grading.Reporter(raise_on_fail=False, all_hints=True)
    grading._default, grading._session = reporter, sandbox
    warnings.simplefilter("ignore")   # the course's own warnings name this machine's paths; checks set their own
    namespace: dict = {"__name__": "__main__"}
    try:
        for index, cell in enumerate(solution.cells):
            if cell.cell_type != "code":
                continue
            sandbox.cell_deadline = time.monotonic() + job["cell_timeout"]
            exercise, checked = grading.cell_tag(cell, "exercise"), grading.cell_tag(cell, "check")
            if exercise:
                source = sources.get(exercise)
                if source is None:
                    result["errors"].append(f"{exercise}: exercise cell missing from the submission "
                                            "(was its tag removed?)")
                    source = stubs.cells[index].source
                _run_in_sandbox(sandbox, source, f"{exercise}", result)
                for name in grading.defined_names(cell.source):
                    namespace[name] = Remote(sandbox, {"name": name})
            elif checked:
                capture = _Capture(FEEDBACK_CHARS * 4)
                with contextlib.redirect_stdout(capture), contextlib.redirect_stderr(capture):
                    try:
                        exec(compile(cell.source, f"<check cell {index}>", "exec"), namespace)
                    except Exception as exc:
                        print(f"the check cell stopped: {type(exc).__name__}: {exc}"[:500])
                result["lines"].append(capture.text().rstrip())
            else:
                _run_in_sandbox(sandbox, cell.source, f"course cell {index}", result)
                with contextlib.redirect_stdout(_Capture(0)), contextlib.redirect_stderr(_Capture(0)):
                    try:
                        exec(compile(cell.source, f"<course cell {index}>", "exec"), namespace)
                    except Exception as exc:
                        result["errors"].append(f"course cell {index} failed in the grader: "
                                                f"{type(exc).__name__}: {exc}"[:300])
    finally:
        grading._default, grading._session = grading.Reporter(), None
        sandbox.close()
    if sandbox.stopped:
        result["errors"].append(f"the sandbox was stopped: {sandbox.stopped}")
    for check in reporter.results:
        if check.id not in result["checks"]:
            result["checks"][check.id] = {"ok": check.ok, "message": check.message}
    for exercise, checks in expected.items():
        for cid in checks:
            if cid in result["checks"] and not result["checks"][cid]["ok"] \
                    and "NameError" in result["checks"][cid]["message"]:
                result["errors"].append(f"{exercise}: {result['checks'][cid]['message'][:200]} (only exercise "
                                        "cells are graded: define every helper inside an exercise cell)")
                break
    return result


def _run_in_sandbox(sandbox: Sandbox, source: str, where: str, result: dict) -> None:
    try:
        output, error = sandbox.run_cell(source)
    except SandboxError as exc:
        result["lines"].append(f"{where}: {exc}")
        return
    if output.strip():
        result["lines"].append(f"{where}:\n{output.rstrip()}")
    if error:
        message = f"{error.get('type')}: {error.get('message')}"[:300]
        if error.get("type") == "TimeoutError":
            message = f"TimeoutError: {error.get('message')}"[:300]
        result["errors"].append(f"{where}: {message}" if not where.startswith("course") else
                                f"{where} failed: {message}")
        result["lines"].append(f"{where}: {message}")


def _judge_main(job_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    try:
        result = _judge(job)
    except Exception as exc:   # e.g. the sandbox could not start
        result = {"checks": {}, "errors": [f"grading could not run: {type(exc).__name__}: {exc}"[:400]], "lines": []}
    atomic_write(job["result"], json.dumps(result))
    os._exit(0)   # the sandbox's threads are daemons; do not wait for them


# --------------------------------------------------------------------------- the batch
@dataclass
class Row:
    student: str
    scores: dict[str, int]
    total: int
    max: int
    errors: list[str]
    feedback: str


def find_submissions(folder: Path) -> list[tuple[str, Path]]:
    """(student, notebook) pairs: ``folder/<student>.ipynb`` or ``folder/<student>/<one>.ipynb``."""
    if not folder.is_dir():
        raise grading.GradingError(f"submissions folder {folder} does not exist")
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.suffix == ".ipynb" and (entry.is_file() or entry.is_symlink()):
            found.append((entry.stem, entry))
        elif entry.is_symlink() and entry.is_dir():
            found.append((entry.name, entry))   # not followed: scores 0 as a symbolic link
        elif entry.is_dir() and not entry.name.startswith("."):
            notebooks = sorted(p for p in entry.glob("*.ipynb") if not p.name.startswith("."))
            found.append((entry.name, notebooks[0] if notebooks else entry))
    return found


def _snapshot(path: Path, dest: Path) -> str | None:
    """Copy one submission into the grader's private folder; the reason it is unusable, or None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        return ("a symbolic link, not a notebook" if path.is_symlink() else
                f"not a readable notebook: {exc.strerror or exc}")
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            return "not a readable notebook: not a regular file"
        data = fh.read(MAX_NOTEBOOK_BYTES + 1)
    if len(data) > MAX_NOTEBOOK_BYTES:
        return f"not a readable notebook: larger than {MAX_NOTEBOOK_BYTES >> 20} MB"
    dest.write_bytes(data)
    return None


def _remove(path: Path) -> None:
    def fix(func, p, exc_info):
        try:
            os.chmod(os.path.dirname(p), 0o700)
            os.chmod(p, 0o700)
            func(p)
        except OSError:
            pass

    shutil.rmtree(path, onerror=fix)


def _score(expected: dict[str, dict[str, int]], result: dict) -> tuple[dict[str, int], list[str]]:
    scores = {exercise: 0 for exercise in expected}
    checks = result.get("checks", {})
    for exercise, points in expected.items():
        for cid, value in points.items():
            entry = checks.get(cid)
            if isinstance(entry, dict) and entry.get("ok") is True:
                scores[exercise] += value
    return scores, [str(e) for e in result.get("errors", [])]


def grade_one(student: str, snapshot: Path | None, reason: str | None, solution_path: Path, expected,
              run_dir: Path, uid: int | None, *, cell_timeout: float, total_timeout: float, unsafe: bool,
              memory_gb: float) -> Row:
    maximum = sum(sum(c.values()) for c in expected.values())
    if snapshot is None:
        return Row(student, {e: 0 for e in expected}, 0, maximum, [reason], f"{student}: 0/{maximum}\nerror: {reason}\n")
    private = run_dir / "private"
    work = Path(tempfile.mkdtemp(prefix="work-", dir=run_dir / "work"))
    if uid is not None:
        os.chown(work, uid, uid)
    job = {"solution": str(solution_path), "snapshot": str(snapshot), "work": str(work), "uid": uid,
           "unsafe": unsafe, "memory_gb": memory_gb, "disk_gb": DISK_GB, "cell_timeout": cell_timeout,
           "total_timeout": total_timeout, "result": str(private / f"{snapshot.stem}.result.json")}
    job_path = private / f"{snapshot.stem}.job.json"
    atomic_write(job_path, json.dumps(job))
    with open(private / f"{snapshot.stem}.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "dlcourse.grader", "judge", str(job_path)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        try:
            proc.wait(timeout=total_timeout + 2 * GRACE + 120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)   # the sandbox dies with its judge (--die-with-parent)
            proc.wait()
    try:
        result = json.loads(Path(job["result"]).read_text())
    except (OSError, ValueError):
        result = {"errors": [f"the judge stopped without a result (time limit {total_timeout:g} s?)"]}
    _remove(work)
    scores, errors = _score(expected, result)
    total = sum(scores.values())
    lines = [str(line) for line in result.get("lines", [])]
    feedback = "\n".join([f"{student}: {total}/{maximum}", *[f"error: {e}" for e in errors], "", *lines])
    return Row(student, scores, total, maximum, errors, feedback)


def grade(lab: str | Path, submissions: str | Path, out: str | Path, *, cell_timeout: float = 300,
          total_timeout: float = 900, jobs: int = 1, progress=True, unsafe_no_sandbox: bool = False,
          memory_gb: float = MEMORY_GB) -> list[Row]:
    """Grade every submission in ``submissions``; write ``out`` (CSV) and ``<out stem>-feedback/``."""
    import nbformat

    solution_path = grading.find_solution(lab)
    solution_nb = nbformat.read(solution_path, as_version=4)
    expected = grading.expected_checks(solution_nb)
    subs = find_submissions(Path(submissions))
    if not unsafe_no_sandbox:
        ok, why = sandbox_status()
        if not ok:
            raise grading.GradingError(
                f"cannot isolate the submissions: {why}. The grader runs students' code only in a sandbox; "
                "to grade code you trust without one, add --unsafe-no-sandbox.")
        for what, path in (("the submissions", Path(submissions)), ("the output", Path(out).parent)):
            seen = next((b for b in _course_binds() if path.resolve().is_relative_to(b)), None)
            if seen:
                raise grading.GradingError(f"{what} ({path}) would be readable by every sandbox, inside {seen}: "
                                           "keep submissions and grades outside the course's code and data folders")
    prepare = getattr(importlib.import_module(f"dlcourse.checks.{solution_path.name[:5]}"), "prepare", None)
    if prepare is not None:
        prepare()  # e.g. make sure a model the checks use exists on disk (sandboxes cannot write it)
    out = Path(out)
    run_dir = Path(tempfile.mkdtemp(prefix="dlcourse-grade-"))   # private to this user (0700)
    (run_dir / "private").mkdir()
    (run_dir / "work").mkdir()
    os.chmod(run_dir / "work", 0o711)   # sandbox users may enter their own folder, not list the others
    try:
        # Every submission is copied before any student code runs.
        snapshots = []
        for number, (student, path) in enumerate(subs):
            dest = run_dir / "private" / f"{number:04d}.ipynb"
            reason = _snapshot(path, dest)
            snapshots.append((student, None if reason else dest, reason))
        from tqdm.auto import tqdm

        if os.geteuid() == 0 and not unsafe_no_sandbox:   # one user id per sandbox running at a time
            free, uid_locks = _claim_uids(max(1, jobs))
        else:
            free, uid_locks = [None] * max(1, jobs), []
        lock = threading.Lock()

        def work(item):
            with lock:
                uid = free.pop()
            try:
                return grade_one(*item, solution_path, expected, run_dir, uid, cell_timeout=cell_timeout,
                                 total_timeout=total_timeout, unsafe=unsafe_no_sandbox, memory_gb=memory_gb)
            finally:
                with lock:
                    free.append(uid)

        try:
            with ThreadPoolExecutor(max(1, jobs)) as pool:
                futures = [pool.submit(work, item) for item in snapshots]
                rows = [f.result() for f in tqdm(futures, desc=f"grading {solution_path.stem}",
                                                 disable=not progress)]
        finally:
            for uid_lock in uid_locks:
                uid_lock.close()
    finally:
        _remove(run_dir)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["student", *expected, "total", "max", "errors"])
    for row in rows:
        writer.writerow([row.student, *[row.scores[e] for e in expected], row.total, row.max, "; ".join(row.errors)])
    atomic_write(out, buffer.getvalue())
    for row in rows:
        atomic_write(out.with_name(out.stem + "-feedback") / f"{row.student}.txt", row.feedback + "\n")
    return rows


if __name__ == "__main__":
    if sys.argv[1:2] == ["student"]:
        _student_main(json.loads(sys.argv[2]))
    elif sys.argv[1:2] == ["judge"]:
        _judge_main(sys.argv[2])
    else:
        sys.exit("usage: python -m dlcourse.grader {student CONFIG | judge JOB} (started by the grader)")
