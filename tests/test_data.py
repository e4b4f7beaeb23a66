"""dlcourse.data: the real loaders on the real files, and every fault a user can hit.

Faults are injected into copies of the data in a temporary folder; each test asserts
the message names the problem and the fix, and that nothing is lost or left behind.
"""

from __future__ import annotations

import gzip
import os
import http.server
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from dlcourse import data

MNIST = data.files("mnist")
LABELS = next(f for f in MNIST if f.path.endswith("t10k-labels-idx1-ubyte.gz"))


# Read once, before any test points DLCOURSE_DATA somewhere else.
REAL_DATA = data.data_dir() or data.cache_dir()


def real_data_dir() -> Path:
    """The real data files. CI sets DLCOURSE_DATA, so there a missing file fails the test."""
    if not (REAL_DATA / LABELS.path).exists():
        if os.environ.get("DLCOURSE_DATA"):
            pytest.fail(f"DLCOURSE_DATA is set but {REAL_DATA / LABELS.path} is missing")
        pytest.skip("needs the course data: set DLCOURSE_DATA (CI sets it to ../shared/data)")
    return REAL_DATA


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """An empty DLCOURSE_DATA and cache; downloads off."""
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("DLCOURSE_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("DLCOURSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DLCOURSE_OFFLINE", "1")
    return tmp_path


def copy_dataset(src: Path, dst: Path, name: str) -> None:
    for spec in data.files(name):
        (dst / spec.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / spec.path, dst / spec.path)


# --------------------------------------------------------------------------- real data
def test_load_mnist_real_files():
    real_data_dir()
    (X_train, y_train), (X_test, y_test) = data.load_mnist("mnist")
    assert X_train.shape == (60000, 28, 28) and X_train.dtype == np.uint8
    assert X_test.shape == (10000, 28, 28) and y_test.shape == (10000,)
    assert y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # the famous first labels
    assert np.bincount(y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert 0 < X_train.mean() < 255


def test_load_fashion_real_files():
    real_data_dir()
    (X_train, y_train), (X_test, y_test) = data.load_mnist("fashion")
    assert X_train.shape == (60000, 28, 28)
    assert np.bincount(y_train).tolist() == [6000] * 10
    assert len(data.FASHION_CLASSES) == 10


def test_imagenet_and_photos_real_files():
    real_data_dir()
    classes = data.imagenet_classes()
    assert len(classes) == 1000 and classes[0] == "tench" and classes[368] == "gibbon"
    assert data.load_photo("coffee").shape == (400, 600, 3)
    assert data.weights_path("efficientnet-lite0").stat().st_size == 18826032


def test_every_manifest_file_verifies():
    folder = real_data_dir()
    for name in data.manifest():
        for spec, state, where in data.status(name):
            assert state == "ok", (spec.path, state, where)
            assert where.startswith(str(folder))


# --------------------------------------------------------------------------- faults
def test_missing_file_names_dataset_places_and_fix(isolated):
    with pytest.raises(data.DataError) as err:
        data.load_mnist("mnist")
    msg = str(err.value)
    assert "mnist" in msg and "train-images-idx3-ubyte.gz" in msg
    assert str(isolated / "data") in msg and str(isolated / "cache") in msg  # where it looked
    assert "DLCOURSE_DATA" in msg and "dlcourse data fetch mnist" in msg  # how to fix


def test_truncated_gzip(isolated):
    src = real_data_dir()
    copy_dataset(src, isolated / "data", "mnist")
    target = isolated / "data" / LABELS.path
    original = target.read_bytes()
    target.write_bytes(original[: len(original) // 2])
    with pytest.raises(data.DataError, match=r"truncated") as err:
        data.load_mnist("mnist")
    assert "2,271 bytes but mnist expects 4,542" in str(err.value)
    assert target.read_bytes() == original[: len(original) // 2]  # the user's file is left as it was


def test_truncated_gzip_reader_message(tmp_path):
    src = real_data_dir()
    path = tmp_path / "labels.gz"
    path.write_bytes((src / LABELS.path).read_bytes()[:1000])
    with pytest.raises(data.DataError, match="truncated or not a gzip file"):
        data.read_idx(path)


def test_flipped_byte_fails_checksum(isolated):
    src = real_data_dir()
    copy_dataset(src, isolated / "data", "mnist")
    target = isolated / "data" / LABELS.path
    raw = bytearray(target.read_bytes())
    raw[100] ^= 0x01
    target.write_bytes(bytes(raw))
    with pytest.raises(data.DataError, match=r"SHA-256 .* damaged or was modified") as err:
        data.load_mnist("mnist")
    assert "dlcourse data fetch mnist" in str(err.value)


def test_wrong_idx_magic(tmp_path):
    path = tmp_path / "bad-idx1-ubyte.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(bytes([0, 0, 0x0D, 1]) + (3).to_bytes(4, "big") + b"\x01\x02\x03")
    with pytest.raises(data.DataError, match=r"not an IDX file: its magic number is 0x00000d01"):
        data.read_idx(path)


def test_idx_header_disagrees_with_payload(tmp_path):
    path = tmp_path / "short-idx1-ubyte"
    path.write_bytes(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + b"\x01\x02")
    with pytest.raises(data.DataError, match=r"shape \(10,\).*truncated or damaged"):
        data.read_idx(path)


def test_idx_roundtrip(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "x-idx3-ubyte.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in images.shape) + images.tobytes())
    np.testing.assert_array_equal(data.read_idx(path, expect_dims=3), images)


def test_unknown_names():
    with pytest.raises(data.DataError, match=r"Unknown MNIST variant 'kmnist': use 'mnist' or 'fashion'"):
        data.load_mnist("kmnist")
    with pytest.raises(data.DataError, match=r"Unknown dataset 'cifar10'\. Known datasets: .*mnist"):
        data.files("cifar10")
    with pytest.raises(data.DataError, match="Unknown weights"):
        data.weights_path("resnet50")


def test_data_dir_pointing_nowhere(tmp_path, monkeypatch):
    monkeypatch.setenv("DLCOURSE_DATA", str(tmp_path / "nope"))
    with pytest.raises(data.DataError, match=r"DLCOURSE_DATA points at .*nope, which is not a folder.*unset it"):
        data.load_mnist()


def test_cache_is_used_when_data_dir_unset(tmp_path, monkeypatch):
    src = real_data_dir()
    copy_dataset(src, tmp_path, "mnist")
    monkeypatch.delenv("DLCOURSE_DATA")
    monkeypatch.setenv("DLCOURSE_CACHE", str(tmp_path))
    (_, _), (_, y_test) = data.load_mnist()
    assert len(y_test) == 10000


# --------------------------------------------------------------------------- downloads
class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


def serve(payloads: dict[str, tuple[bytes, int]]):
    """A loopback HTTP server: path -> (body, bytes to send before hanging up)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path not in payloads:
                self.send_error(404)
                return
            body, cut = payloads[self.path]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[:cut])
            self.wfile.flush()
            if cut < len(body):
                self.connection.shutdown(socket.SHUT_RDWR)  # the connection drops half-way

        def log_message(self, *args):
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def test_download_interrupted_half_way_leaves_nothing_valid(isolated, monkeypatch):
    body = (real_data_dir() / LABELS.path).read_bytes()
    server, base = serve({"/cut/labels.gz": (body, len(body) // 2), "/good/labels.gz": (body, len(body))})
    monkeypatch.setenv("DLCOURSE_OFFLINE", "0")
    monkeypatch.delenv("DLCOURSE_DATA")
    try:
        spec = data.DataFile("mnist", LABELS.path, LABELS.size, LABELS.sha256, (f"{base}/cut/labels.gz",))
        with pytest.raises(data.DataError, match=r"could not download .* from any mirror") as err:
            data.fetch_file(spec, progress=False)
        assert "Nothing was saved" in str(err.value)
        folder = isolated / "cache" / "mnist"
        assert not (folder / "t10k-labels-idx1-ubyte.gz").exists()
        assert [p for p in folder.iterdir()] == []  # no temporary file left behind either
        # The next mirror works: first the cut one, then the good one.
        spec = data.DataFile("mnist", LABELS.path, LABELS.size, LABELS.sha256,
                             (f"{base}/cut/labels.gz", f"{base}/good/labels.gz"))
        path = data.fetch_file(spec, progress=False)
        assert path.read_bytes() == body
    finally:
        server.shutdown()


def test_download_with_wrong_content_is_rejected(isolated, monkeypatch):
    server, base = serve({"/labels.gz": (b"<html>moved</html>", 18)})
    monkeypatch.setenv("DLCOURSE_OFFLINE", "0")
    monkeypatch.delenv("DLCOURSE_DATA")
    try:
        spec = data.DataFile("mnist", LABELS.path, LABELS.size, LABELS.sha256, (f"{base}/labels.gz",))
        with pytest.raises(data.DataError, match="hash"):
            data.fetch_file(spec, progress=False)
        assert not (isolated / "cache" / LABELS.path).exists()
    finally:
        server.shutdown()


@pytest.mark.filterwarnings("ignore:A test tried to use socket")
def test_tests_cannot_reach_the_network():
    with pytest.raises(Exception, match="(?i)host|socket"):
        socket.create_connection(("192.0.2.1", 80), timeout=1)


# --------------------------------------------------------------------------- synthetic
def test_synthetic_sets_are_seeded_and_shaped():
    x, y = data.make_linear(50, a=3.0, b=-1.0, noise=0.0)
    np.testing.assert_allclose(y, 3 * x - 1)
    X, y = data.make_blobs(100, seed=1)
    assert X.shape == (100, 2) and set(y) == {0, 1}
    np.testing.assert_array_equal(X, data.make_blobs(100, seed=1)[0])
    X4, y4 = data.make_xor()
    assert y4.tolist() == [0, 1, 1, 0]
    X, y = data.make_xor(40)
    assert X.shape == (40, 2) and y.sum() == 20
    X, y = data.make_spirals(90, classes=3)
    assert X.shape == (90, 2) and np.bincount(y).tolist() == [30, 30, 30]
    with pytest.raises(ValueError, match="at least 2 points"):
        data.make_linear(1)


def test_digit_pairs_put_the_right_digits_side_by_side():
    y = np.arange(50) % 10
    X = np.zeros((50, 28, 28), np.uint8)
    X[:, 0, 0] = y * 10                       # each image carries its digit in one pixel
    images, labels = data.make_digit_pairs(X, y, [7, 42, 99], per_number=4, seed=1)
    assert images.shape == (12, 28, 56) and images.dtype == np.uint8
    assert labels.tolist() == [7] * 4 + [42] * 4 + [99] * 4
    np.testing.assert_array_equal(images[:, 0, 0], (labels // 10) * 10)     # tens digit on the left
    np.testing.assert_array_equal(images[:, 0, 28], (labels % 10) * 10)     # units digit on the right
    np.testing.assert_array_equal(images, data.make_digit_pairs(X, y, [7, 42, 99], 4, seed=1)[0])
    with pytest.raises(ValueError, match="0..99"):
        data.make_digit_pairs(X, y, [100], 2)
    with pytest.raises(ValueError, match="digit"):
        data.make_digit_pairs(X[y < 5], y[y < 5], [17], 2)


def test_digit_canvases_box_every_digit_tightly_with_its_label():
    y = np.arange(40) % 10
    X = np.zeros((40, 28, 28), np.uint8)
    X[:, 4:24, 9:19] = (20 * (y + 1))[:, None, None]   # solid "digits" whose brightness says their label
    images, boxes, labels = data.make_digit_canvases(X, y, 300, size=48, max_digits=3, digit_size=(10, 20), seed=4)
    assert images.shape == (300, 48, 48) and images.dtype == np.uint8
    assert len(boxes) == len(labels) == 300
    counts = [len(b) for b in boxes]
    assert min(counts) >= 1 and max(counts) == 3 and sum(counts) > 450
    heights = []
    for image, b, lab in zip(images, boxes, labels):
        assert b.dtype == np.int64 and b.shape == (len(lab), 4) and lab.dtype == np.int64
        assert (b[:, :2] >= 0).all() and (b[:, 2:] <= 48).all() and (b[:, 2:] > b[:, :2]).all()
        rest = image.copy()
        for (x0, y0, x1, y1), digit in zip(b, lab):
            # tight: the box holds only its own digit, ink reaching every edge
            np.testing.assert_array_equal(image[y0:y1, x0:x1], 20 * (digit + 1))
            rest[y0:y1, x0:x1] = 0
            heights.append(y1 - y0)
        assert not rest.any()                           # no ink outside the boxes
        for i in range(len(b)):                         # max_iou=0: no two boxes share any area
            for j in range(i):
                assert min(b[i, 2], b[j, 2]) <= max(b[i, 0], b[j, 0]) or min(b[i, 3], b[j, 3]) <= max(b[i, 1], b[j, 1])
    assert min(heights) >= 9 and max(heights) == 20
    again = data.make_digit_canvases(X, y, 300, size=48, max_digits=3, digit_size=(10, 20), seed=4)
    np.testing.assert_array_equal(images, again[0])
    assert all((p == q).all() for p, q in zip(boxes, again[1])) and all((p == q).all() for p, q in zip(labels, again[2]))
    assert not np.array_equal(images, data.make_digit_canvases(X, y, 300, size=48, max_digits=3,
                                                               digit_size=(10, 20), seed=5)[0])
    blank = data.make_digit_canvases(np.zeros_like(X), y, 5, seed=4)          # no ink, nothing to box
    assert not blank[0].any() and all(len(b) == 0 for b in blank[1])


def test_digit_canvases_on_real_digits_are_tight_and_may_overlap_when_allowed():
    real_data_dir()
    _, (X, y) = data.load_mnist("mnist")
    images, boxes, labels = data.make_digit_canvases(X[:500], y[:500], 200, max_iou=0.2, seed=0)
    assert images.shape == (200, 64, 64)
    overlapping = 0
    for image, b in zip(images, boxes):
        for x0, y0, x1, y1 in b:
            crop = image[y0:y1, x0:x1]
            assert crop[0].any() and crop[-1].any() and crop[:, 0].any() and crop[:, -1].any()
            assert 13 <= y1 - y0 <= 28
        if len(b) == 1:
            x0, y0, x1, y1 = b[0]
            assert image.sum() == image[y0:y1, x0:x1].sum()
        iw = np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0])
        ih = np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1])
        inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        iou = inter / (area[:, None] + area[None, :] - inter)
        np.fill_diagonal(iou, 0)
        assert iou.max() <= 0.2
        overlapping += int(iou.max() > 0)
    assert overlapping > 0


def test_digit_canvases_refuse_bad_arguments():
    X, y = np.ones((10, 28, 28), np.uint8), np.arange(10)
    with pytest.raises(ValueError, match="one label each"):
        data.make_digit_canvases(X, y[:5], 3)
    with pytest.raises(ValueError, match="digit_size"):
        data.make_digit_canvases(X, y, 3, size=32, digit_size=(14, 40))
    with pytest.raises(ValueError, match="digit_size"):
        data.make_digit_canvases(X, y, 3, digit_size=(20, 14))
    with pytest.raises(ValueError, match="at least 1"):
        data.make_digit_canvases(X, y, 0)
    with pytest.raises(ValueError, match="at least 1"):
        data.make_digit_canvases(X, y, 3, max_digits=0)
    with pytest.raises(ValueError, match="max_iou"):
        data.make_digit_canvases(X, y, 3, max_iou=1.0)


def test_make_dates_are_readable_once_and_held_out_by_date():
    import datetime as dt
    sources, targets = data.make_dates(2000, seed=0)
    assert len(sources) == len(targets) == 2000
    assert data.make_dates(2000, seed=0) == (sources, targets)
    assert data.make_dates(2000, seed=1) != (sources, targets)
    for s, t in zip(sources, targets):
        day = dt.date.fromisoformat(t)
        assert day.toordinal() % 5 != 0                       # test days never appear in train
        assert str(day.day) in s and str(day.year % 100).zfill(2) in s
    test_sources, test_targets = data.make_dates(500, split="test", seed=0)
    assert not set(test_targets) & set(targets)
    formats = {data.write_date(dt.date(1997, 3, 4), *f) for f in data.DATE_FORMATS}
    assert len(formats) == len(data.DATE_FORMATS)             # every format writes differently
    assert "le mardi 4 mars 1997" in formats and "04.03.1997" in formats
    with pytest.raises(ValueError, match="split"):
        data.make_dates(10, split="validation")
    with pytest.raises(ValueError, match="positive"):
        data.make_dates(0)


def test_date_alphabets_and_lengths_cover_every_date_and_format():
    import datetime as dt
    first = dt.date.fromisoformat(data.DATE_FIRST).toordinal()
    last = dt.date.fromisoformat(data.DATE_LAST).toordinal()
    longest = {f: 0 for f in data.DATE_FORMATS}
    chars = set()
    for o in range(first, last + 1, 3):                     # every weekday, month and year
        day = dt.date.fromordinal(o)
        for f in data.DATE_FORMATS:
            s = data.write_date(day, *f)
            longest[f] = max(longest[f], len(s))
            chars |= set(s)
    assert chars == set(data.DATE_SOURCE_CHARS)
    assert max(longest.values()) == data.DATE_SOURCE_LENGTH
    assert set("".join(data.make_dates(100)[1])) <= set(data.DATE_TARGET_CHARS)


def test_encode_and_decode_chars_round_trip_and_refuse_bad_strings():
    codes = data.encode_chars(["ab", "b", ""], "ab", 3)
    assert codes.tolist() == [[1, 2, 0], [2, 0, 0], [0, 0, 0]]
    assert data.decode_chars(codes, "ab") == ["ab", "b", ""]
    with pytest.raises(ValueError, match="more than length"):
        data.encode_chars(["abab"], "ab", 3)
    with pytest.raises(ValueError, match=r"\['c'\]"):
        data.encode_chars(["abc"], "ab", 3)
