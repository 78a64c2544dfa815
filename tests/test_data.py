"""Tests of the data stage (scratchcnn.data and the download/prepare/demo scripts). No internet."""

from __future__ import annotations

import errno
import gzip
import http.server
import io
import json
import logging
import os
import pickle
import socket
import ssl
import subprocess
import sys
import tarfile
import threading
import urllib.error
import urllib.request
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from scratchcnn import data as cifar_data
from scratchcnn.data import download as download_module
from scratchcnn.io import save_npz_atomic
from scratchcnn.data import DataError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cifar_fixtures as fx  # noqa: E402
from step_scripts import load_script  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "workflow" / "scripts"


# ------------------------------------------------------------------------------------------
# fixtures
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    return fx.write_known_archive(tmp_path_factory.mktemp("arch") / "cifar-10-python.tar.gz")


@pytest.fixture(scope="module")
def prepared(archive):
    return cifar_data.prepare_dataset(archive, n_val=15, split_seed=0, standardize=False,
                                      expected_train=fx.N_TRAIN, expected_test=fx.N_TEST)


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        srv = self.server
        srv.requests.append(self.path)
        mode = srv.plan.pop(0) if srv.plan else "ok"
        body = srv.payload
        if mode in ("404", "500"):
            self.send_error(int(mode))
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "cut":  # promise everything, send half, hang up
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.requests, srv.plan = [], []
    srv.payload = os.urandom(300_000)
    srv.md5 = __import__("hashlib").md5(srv.payload).hexdigest()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/cifar-10-python.tar.gz"
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def fetch(source, dest, md5, **kw):
    kw.setdefault("backoff", 0.01)
    kw.setdefault("timeout", 5)
    kw.setdefault("progress", False)
    return cifar_data.fetch_archive(source, dest, md5, **kw)


def leftovers(d: Path):
    return sorted(p.name for p in d.iterdir())


# ------------------------------------------------------------------------------------------
# the fixture archive itself: official format
# ------------------------------------------------------------------------------------------


def test_fixture_archive_is_official_format(archive):
    with tarfile.open(archive, "r:gz") as tf:
        names = tf.getnames()
        raw = tf.extractfile("cifar-10-batches-py/data_batch_2").read()
        meta = tf.extractfile("cifar-10-batches-py/batches.meta").read()
    assert {f"cifar-10-batches-py/{m}" for m in
            ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
             "test_batch", "batches.meta", "readme.html"]} == set(names)
    b = pickle.loads(raw, encoding="bytes")
    assert set(b) == {b"data", b"labels", b"batch_label", b"filenames"}
    assert b[b"data"].dtype == np.uint8 and b[b"data"].shape == (fx.N_PER_BATCH, 3072)
    np.testing.assert_array_equal(b[b"data"], fx.known_rows(fx.N_PER_BATCH, fx.N_PER_BATCH))
    assert b[b"batch_label"] == b"training batch 2 of 5"
    s = pickle.loads(raw, encoding="latin1")
    assert set(s) == {"data", "labels", "batch_label", "filenames"}
    np.testing.assert_array_equal(s["data"], b[b"data"])
    assert s["labels"] == list(fx.train_labels()[fx.N_PER_BATCH: 2 * fx.N_PER_BATCH])
    assert pickle.loads(meta, encoding="latin1")["label_names"] == list(cifar_data.CLASS_NAMES)
    assert pickle.loads(meta, encoding="bytes")[b"label_names"][0] == b"airplane"
    assert b"numpy.core.multiarray\n_reconstruct" in raw  # like the Python-2 era originals


def test_write_archive_is_deterministic(tmp_path, archive):
    again = fx.write_known_archive(tmp_path / "again.tar.gz")
    assert cifar_data.md5sum(again) == cifar_data.md5sum(archive)
    assert leftovers(tmp_path) == ["again.tar.gz"]


# ------------------------------------------------------------------------------------------
# reading and reshaping
# ------------------------------------------------------------------------------------------


def test_to_images_layout():
    rows = fx.known_rows(0, 3)
    x = cifar_data.to_images(rows)
    assert x.shape == (3, 32, 32, 3) and x.dtype == np.uint8 and x.flags.c_contiguous
    for i, r, k, c in [(0, 0, 0, 0), (1, 0, 1, 0), (2, 1, 0, 2), (1, 31, 30, 1), (2, 17, 5, 2)]:
        assert x[i, r, k, c] == fx.known_pixel(i, c, r, k) == rows[i, c * 1024 + r * 32 + k]
    np.testing.assert_array_equal(cifar_data.to_rows(x), rows)
    with pytest.raises(ValueError):
        cifar_data.to_images(np.zeros((2, 3000), np.uint8))


def test_read_archive_known_values(archive):
    d = cifar_data.read_archive(archive, expected_train=fx.N_TRAIN, expected_test=fx.N_TEST)
    assert d["x_train_all"].shape == (fx.N_TRAIN, 32, 32, 3) and d["x_train_all"].dtype == np.uint8
    assert d["x_test"].shape == (fx.N_TEST, 32, 32, 3)
    i, r, k, c = np.meshgrid(np.arange(fx.N_TRAIN), np.arange(32), np.arange(32), np.arange(3),
                             indexing="ij")
    np.testing.assert_array_equal(d["x_train_all"], fx.known_pixel(i, c, r, k))
    assert d["x_test"][7, 3, 4, 2] == fx.known_pixel(fx.TEST_OFFSET + 7, 2, 3, 4)
    np.testing.assert_array_equal(d["y_train_all"], fx.train_labels())
    np.testing.assert_array_equal(d["y_test"], fx.test_labels())
    assert d["class_names"] == list(cifar_data.CLASS_NAMES)


def test_read_archive_str_keys_plain_pickles(tmp_path):
    """Archives pickled under Python 3 with str keys load the same."""
    members = fx.official_members()
    members = {m: ({k.decode(): v for k, v in o.items()}) for m, o in members.items()}
    p = fx.write_tar(tmp_path / "a.tar.gz", members)
    d = cifar_data.read_archive(p, fx.N_TRAIN, fx.N_TEST)
    assert d["x_train_all"][13, 2, 9, 1] == fx.known_pixel(13, 1, 2, 9)
    assert d["class_names"][-1] == "truck"


def test_read_archive_members_named_with_a_leading_dot_slash(tmp_path, archive):
    """tar run as `tar czf a.tar.gz ./cifar-10-batches-py` names the members ./cifar-10-batches-py/...:
    the same archive, read the same."""
    dotted = io.BytesIO()
    with tarfile.open(archive, "r:gz") as src, tarfile.open(fileobj=dotted, mode="w") as dst:
        for info in src:
            data = src.extractfile(info).read()
            info.name = "./" + info.name
            dst.addfile(info, io.BytesIO(data))
    p = tmp_path / "dotted.tar.gz"
    p.write_bytes(gzip.compress(dotted.getvalue()))
    with tarfile.open(p, "r:gz") as tf:
        assert "./cifar-10-batches-py/test_batch" in tf.getnames()
    d = cifar_data.read_archive(p, fx.N_TRAIN, fx.N_TEST)
    plain = cifar_data.read_archive(archive, fx.N_TRAIN, fx.N_TEST)
    for key in ("x_train_all", "y_train_all", "x_test", "y_test"):
        np.testing.assert_array_equal(d[key], plain[key])
    assert d["x_test"][7, 3, 4, 2] == fx.known_pixel(fx.TEST_OFFSET + 7, 2, 3, 4)
    assert d["class_names"] == list(cifar_data.CLASS_NAMES)


def test_read_archive_refuses_a_numpy_function_in_a_pickle(tmp_path):
    """Only the few NumPy globals an array needs are resolved, not every name in numpy: a batch
    calling numpy.save would write a file wherever it liked while being read."""
    target = tmp_path / "planted.npy"

    class Planter:
        def __reduce__(self):
            return (np.save, (str(target), [1, 2]))

    members = fx.official_members()
    members["data_batch_1"] = pickle.dumps(Planter(), protocol=2)
    assert b"cnumpy\nsave\n" in members["data_batch_1"]  # the GLOBAL opcode naming numpy.save
    path = fx.write_tar(tmp_path / "bad.tar.gz", members)
    with pytest.raises(DataError, match=r"data_batch_1 is not a readable pickle: .*disallowed global numpy\.save"):
        cifar_data.read_archive(path, fx.N_TRAIN, fx.N_TEST)
    assert not target.exists()


def _damaged(members_edit):
    def build(tmp_path):
        members = fx.official_members()
        members_edit(members)
        return fx.write_tar(tmp_path / "bad.tar.gz", members)
    return build


def _set(member, key, value):
    def edit(m):
        m[member][key] = value
    return edit


def _raw(data: bytes):
    def build(tmp_path):
        p = tmp_path / "bad.tar.gz"
        p.write_bytes(data)
        return p
    return build


def _truncated(tmp_path):
    good = fx.write_known_archive(tmp_path / "good.tar.gz").read_bytes()
    p = tmp_path / "bad.tar.gz"
    p.write_bytes(good[: len(good) // 2])
    return p


DAMAGED = {
    "missing member": (_damaged(lambda m: m.pop("data_batch_3")), r"data_batch_3.*missing"),
    "missing meta": (_damaged(lambda m: m.pop("batches.meta")), r"batches\.meta.*missing"),
    "wrong shape": (_damaged(_set("data_batch_2", b"data", np.zeros((12, 3000), np.uint8))),
                    r"data_batch_2.*shape \(12, 3000\)"),
    "wrong dtype": (_damaged(_set("test_batch", b"data", np.zeros((20, 3072), np.float32))),
                    r"test_batch.*dtype float32"),
    "labels out of range": (_damaged(_set("data_batch_4", b"labels", [10] * 12)),
                            r"data_batch_4.*labels out of range"),
    "negative labels": (_damaged(_set("data_batch_1", b"labels", [-1] * 12)),
                        r"data_batch_1.*labels out of range"),
    "labels length": (_damaged(_set("data_batch_5", b"labels", [1] * 11)),
                      r"data_batch_5.*'labels' has shape \(11,\)"),
    "missing data key": (_damaged(lambda m: m["data_batch_1"].pop(b"data")),
                         r"data_batch_1.*'data' missing"),
    "nine class names": (_damaged(_set("batches.meta", b"label_names", [b"x"] * 9)),
                         r"batches\.meta.*9 label names"),
    "label_names a number": (_damaged(_set("batches.meta", b"label_names", 10)),
                             r"batches\.meta: 'label_names' is a int, expected a list of 10 strings"),
    "label_names with a number": (_damaged(_set("batches.meta", b"label_names", [b"x"] * 9 + [3])),
                                  r"batches\.meta: 'label_names' holds a int \(3\), expected a list of 10"),
    "corrupt pickle": (_damaged(lambda m: m.__setitem__("test_batch", b"not a pickle")),
                       r"test_batch.*not a readable pickle"),
    "foreign global": (_damaged(lambda m: m.__setitem__("data_batch_1", OrderedDict(a=1))),
                       r"data_batch_1.*disallowed global collections\.OrderedDict"),
    "truncated gzip": (_truncated, r"truncated or corrupt archive"),
    "not an archive": (_raw(b"<html>404 Not Found</html>\n" * 20),
                       r"not a CIFAR-10 \.tar\.gz archive: neither gzip nor tar"),
    "gzip of text": (_raw(gzip.compress(b"hello world\n" * 100)),
                     r"not a CIFAR-10 \.tar\.gz archive: gzip data that does not hold a tar"),
    "empty file": (_raw(b""), r"not a CIFAR-10 \.tar\.gz archive: the file is empty"),
}


@pytest.mark.parametrize("case", list(DAMAGED))
def test_damaged_archives_raise_dataerror(tmp_path, case):
    build, pattern = DAMAGED[case]
    path = build(tmp_path)
    with pytest.raises(DataError, match=pattern) as ei:
        cifar_data.read_archive(path, fx.N_TRAIN, fx.N_TEST)
    assert str(path) in str(ei.value)


def _tar_contents(data: bytes):
    """Every member's bytes as tarfile alone reads them from a .tar.gz, or None if it cannot."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tf:
            return {m.name: tf.extractfile(m).read() for m in tf if m.isfile()}
    except Exception:
        return None


def test_read_archive_checks_the_gzip_crc_and_length(tmp_path, archive):
    good = archive.read_bytes()
    intact = _tar_contents(good)
    # the first bit flip that tarfile reads without complaint, yielding other bytes: only the
    # gzip trailer's CRC can tell
    for n in range(10, len(good) - 8):
        flipped = good[:n] + bytes([good[n] ^ 1]) + good[n + 1 :]
        contents = _tar_contents(flipped)
        if contents is not None and contents != intact:
            break
    else:
        pytest.fail("no bit flip that tarfile reads silently")
    bad = tmp_path / "flipped.tar.gz"
    bad.write_bytes(flipped)
    with pytest.raises(DataError, match=r"corrupt archive while reading member \(end of archive, after "
                                        r".*BadGzipFile: CRC check failed") as ei:  # fmt: skip
        cifar_data.read_archive(bad, fx.N_TRAIN, fx.N_TEST)
    assert str(bad) in str(ei.value)
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(good[:-8])  # the trailer (CRC32 and length) gone
    assert _tar_contents(good[:-8]) == intact
    with pytest.raises(DataError, match=r"truncated or corrupt archive while reading member \(end of archive") as ei:
        cifar_data.read_archive(cut, fx.N_TRAIN, fx.N_TEST)
    assert str(cut) in str(ei.value)
    d = cifar_data.read_archive(archive, fx.N_TRAIN, fx.N_TEST)
    assert d["x_test"][7, 3, 4, 2] == fx.known_pixel(fx.TEST_OFFSET + 7, 2, 3, 4)


def test_wrong_totals(archive):
    with pytest.raises(DataError, match=r"data_batch_1\.\.5 hold 60 training images, expected 5"):
        cifar_data.read_archive(archive, 50000, fx.N_TEST)
    with pytest.raises(DataError, match=r"test_batch holds 20 test images, expected 21"):
        cifar_data.read_archive(archive, fx.N_TRAIN, 21)


def test_missing_archive(tmp_path):
    with pytest.raises(DataError, match="not found"):
        cifar_data.read_archive(tmp_path / "nope.tar.gz", fx.N_TRAIN, fx.N_TEST)


# ------------------------------------------------------------------------------------------
# prepare
# ------------------------------------------------------------------------------------------


def test_prepare_contract_and_exact_values(prepared, archive):
    d = prepared
    assert set(d) == {"x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "class_names",
                      "train_idx", "val_idx", "meta_json"}
    assert d["x_train"].shape == (45, 32, 32, 3) and d["x_val"].shape == (15, 32, 32, 3)
    assert d["x_test"].shape == (fx.N_TEST, 32, 32, 3)
    for k in ("x_train", "x_val", "x_test"):
        assert d[k].dtype == np.float32
        assert d[k].min() >= 0.0 and d[k].max() <= 1.0
    for k in ("y_train", "y_val", "y_test", "train_idx", "val_idx"):
        assert d[k].dtype == np.int64
    assert d["class_names"].dtype.kind == "U" and list(d["class_names"]) == list(cifar_data.CLASS_NAMES)
    # the split: exactly default_rng(seed).permutation, permutation order kept
    perm = np.random.default_rng(0).permutation(fx.N_TRAIN)
    np.testing.assert_array_equal(d["val_idx"], perm[:15])
    np.testing.assert_array_equal(d["train_idx"], perm[15:])
    # exact values at known positions: x_train[j] is archive image train_idx[j]
    for j, r, k, c in [(0, 0, 0, 0), (3, 31, 0, 2), (44, 5, 31, 1), (20, 16, 16, 0)]:
        i = d["train_idx"][j]
        assert d["x_train"][j, r, k, c] == np.float32(fx.known_pixel(i, c, r, k)) / np.float32(255)
    i, r, k, c = np.meshgrid(d["val_idx"], np.arange(32), np.arange(32), np.arange(3),
                             indexing="ij")
    np.testing.assert_array_equal(
        d["x_val"], fx.known_pixel(i, c, r, k).astype(np.float32) / np.float32(255))
    expected = np.float32(fx.known_pixel(fx.TEST_OFFSET + 19, 1, 2, 3)) / np.float32(255)
    assert d["x_test"][19, 2, 3, 1] == expected
    np.testing.assert_array_equal(d["y_train"], fx.train_labels()[d["train_idx"]])
    np.testing.assert_array_equal(d["y_val"], fx.train_labels()[d["val_idx"]])
    np.testing.assert_array_equal(d["y_test"], fx.test_labels())  # archive order
    meta = json.loads(str(d["meta_json"]))
    assert d["meta_json"].shape == () and d["meta_json"].dtype.kind == "U"
    assert meta["split_seed"] == 0 and meta["n_train"] == 45 and meta["n_val"] == 15
    assert meta["n_test"] == fx.N_TEST and meta["standardize"] is None
    assert meta["archive_md5"] == cifar_data.md5sum(archive)


def test_split_disjoint_covering_and_seeded(archive, prepared):
    tr, va = prepared["train_idx"], prepared["val_idx"]
    assert len(np.intersect1d(tr, va)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, va])), np.arange(fx.N_TRAIN))
    kw = dict(expected_train=fx.N_TRAIN, expected_test=fx.N_TEST, n_val=15, standardize=False)
    same = cifar_data.prepare_dataset(archive, split_seed=0, **kw)
    other = cifar_data.prepare_dataset(archive, split_seed=1, **kw)
    np.testing.assert_array_equal(same["val_idx"], va)
    np.testing.assert_array_equal(same["x_train"], prepared["x_train"])
    assert not np.array_equal(other["val_idx"], va)
    with pytest.raises(DataError, match="n_val"):
        cifar_data.prepare_dataset(archive, split_seed=0, **{**kw, "n_val": fx.N_TRAIN})


def test_standardize_uses_training_split_only(archive, prepared):
    s = cifar_data.prepare_dataset(archive, n_val=15, split_seed=0, standardize=True,
                                   expected_train=fx.N_TRAIN, expected_test=fx.N_TEST)
    meta = json.loads(str(s["meta_json"]))["standardize"]
    raw_train = prepared["x_train"].astype(np.float64)
    exp_mean = raw_train.mean(axis=(0, 1, 2))
    exp_std = raw_train.std(axis=(0, 1, 2))
    np.testing.assert_allclose(meta["mean"], exp_mean, rtol=1e-6)
    np.testing.assert_allclose(meta["std"], exp_std, rtol=1e-6)
    # not the stats of all 60 images or of the validation split
    all_mean = np.concatenate([prepared["x_train"], prepared["x_val"]]).mean(axis=(0, 1, 2))
    assert not np.allclose(meta["mean"], all_mean, rtol=1e-6, atol=0)
    np.testing.assert_allclose(s["x_train"].mean(axis=(0, 1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(s["x_train"].std(axis=(0, 1, 2)), 1, atol=1e-4)
    for k in ("x_val", "x_test"):  # same transform applied everywhere
        assert s[k].dtype == np.float32
        np.testing.assert_allclose(s[k] * np.float32(meta["std"]) + np.float32(meta["mean"]),
                                   prepared[k], atol=1e-5)


def test_save_npz_atomic_roundtrip(tmp_path, prepared):
    out = tmp_path / "sub" / "cifar10.npz"
    save_npz_atomic(out, prepared)
    assert leftovers(out.parent) == ["cifar10.npz"]
    with np.load(out, allow_pickle=False) as z:
        assert set(z.files) == set(prepared)
        np.testing.assert_array_equal(z["x_train"], prepared["x_train"])
        assert json.loads(str(z["meta_json"]))["n_val"] == 15
        assert z["class_names"][3] == "cat"


# ------------------------------------------------------------------------------------------
# reading cifar10.npz back
# ------------------------------------------------------------------------------------------


def test_load_prepared_reads_what_prepare_wrote(tmp_path, prepared):
    path = tmp_path / "cifar10.npz"
    save_npz_atomic(path, prepared)
    whole = cifar_data.load_prepared(path)
    assert set(whole.arrays) == set(cifar_data.PREPARED_KEYS)
    for k, v in prepared.items():
        np.testing.assert_array_equal(whole.arrays[k], v)
    assert whole.class_names == list(cifar_data.CLASS_NAMES)
    assert whole.meta == json.loads(str(prepared["meta_json"]))
    assert whole.shapes["x_train"] == (45, 32, 32, 3) and whole.shapes["meta_json"] == ()
    some = cifar_data.load_prepared(path, arrays=("x_test", "y_test"))
    assert set(some.arrays) == {"x_test", "y_test"}
    np.testing.assert_array_equal(some.arrays["y_test"], prepared["y_test"])
    headers_only = cifar_data.load_prepared(path, arrays=())
    assert headers_only.arrays == {} and headers_only.shapes == whole.shapes
    assert headers_only.meta["n_val"] == 15
    with pytest.raises(ValueError, match="x_everything"):
        cifar_data.load_prepared(path, arrays=("x_everything",))


def _damaged_prepared(prepared, change: dict) -> dict:
    arrays = {**prepared, **change}
    return {k: v for k, v in arrays.items() if v is not None}


@pytest.mark.parametrize("change, message", [
    ({"y_val": None}, r"lacks y_val"),
    ({"meta_json": None, "class_names": None}, r"lacks class_names, meta_json"),
    ({"x_train": np.zeros((45, 32, 32), np.float32)}, r"x_train has shape \(45, 32, 32\), expected \(n, 32, 32, 3\)"),
    ({"y_test": np.zeros(3, np.int64)}, r"y_test has shape \(3,\), expected \(20,\) to match x_test"),
    ({"y_train": np.zeros(45, np.float32)}, r"y_train has dtype float32, expected integers"),
    ({"val_idx": np.arange(4)}, r"val_idx has shape \(4,\), expected \(15,\) to match x_val"),
    ({"meta_json": np.array("{not json")}, r"meta_json is not valid JSON"),
    ({"meta_json": np.array('{"n_val": 15}', dtype=object)}, r"meta_json has dtype object, expected text"),
    ({"meta_json": np.array(5)}, r"meta_json has dtype int64, expected text"),
    ({"meta_json": np.array("[1, 2]")}, r"meta_json holds '\[1, 2\]', expected a JSON object"),
    ({"class_names": np.array([b"cat"] * 10)}, r"class_names has dtype \|S3, expected text"),
    ({"y_val": np.full(15, 10)}, r"y_val has labels 10\.\.10, expected 0\.\.9 \(one per class name\)"),
    ({"y_test": np.arange(20) - 1}, r"y_test has labels -1\.\.18, expected 0\.\.9"),
])  # fmt: skip
def test_load_prepared_names_the_file_and_the_problem(tmp_path, prepared, change, message):
    path = tmp_path / "cifar10.npz"
    np.savez(path, **_damaged_prepared(prepared, change))
    with pytest.raises(DataError, match=message) as ei:
        cifar_data.load_prepared(path)
    assert str(path) in str(ei.value)


def test_load_prepared_missing_or_foreign_file(tmp_path):
    with pytest.raises(DataError, match="does not exist.*prepare step"):
        cifar_data.load_prepared(tmp_path / "absent.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip archive")
    with pytest.raises(DataError, match=r"junk\.npz is not a readable \.npz"):
        cifar_data.load_prepared(tmp_path / "junk.npz")


def test_load_prepared_names_a_damaged_array_instead_of_a_traceback(tmp_path):
    """Sound headers, damaged bytes inside an array (a bad CRC): train and evaluate show this line."""
    x = np.full((4, 32, 32, 3), 0.5, dtype=np.float32)
    path = fx.write_prepared(tmp_path / "cifar10.npz", x_train=x, y_train=np.zeros(4, dtype=np.int64))
    cifar_data.load_prepared(path)  # sound before
    raw = bytearray(path.read_bytes())
    at = raw.find(x.tobytes()[:64]) + 1000  # inside x_train's pixels
    raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))
    assert cifar_data.load_prepared(path, arrays=()).class_names  # the headers still read
    with pytest.raises(DataError, match=r"cifar10\.npz: an array cannot be read \(BadZipFile: .*damaged: delete it"):
        cifar_data.load_prepared(path)


# ------------------------------------------------------------------------------------------
# fetching
# ------------------------------------------------------------------------------------------


def test_fetch_http_success(server, tmp_path):
    dest = tmp_path / "a.tar.gz"
    assert fetch(server.url, dest, server.md5) == dest
    assert dest.read_bytes() == server.payload
    assert leftovers(tmp_path) == ["a.tar.gz"]
    assert len(server.requests) == 1


def test_fetch_wrong_md5_leaves_nothing(server, tmp_path):
    dest = tmp_path / "a.tar.gz"
    with pytest.raises(DataError) as ei:
        fetch(server.url, dest, "0" * 32)
    msg = str(ei.value)
    assert "expected " + "0" * 32 in msg and "found " + server.md5 in msg and server.url in msg
    assert leftovers(tmp_path) == []


def test_fetch_names_a_destination_it_cannot_use(server, tmp_path):
    (tmp_path / "folder.tar.gz").mkdir()
    with pytest.raises(DataError, match=r"folder\.tar\.gz is a folder; remove it or set data\.archive"):
        fetch(server.url, tmp_path / "folder.tar.gz", server.md5)
    (tmp_path / "file").write_text("")
    with pytest.raises(DataError, match=r"cannot create the folder of .*file/a\.tar\.gz"):
        fetch(server.url, tmp_path / "file" / "a.tar.gz", server.md5)
    assert server.requests == []  # refused before fetching anything


def test_fetch_404_fails_at_once(server, tmp_path):
    server.plan = ["404"] * 5
    with pytest.raises(DataError, match=r"HTTP 404.*by other means"):
        fetch(server.url, tmp_path / "a.tar.gz", server.md5, retries=4, backoff=5)
    assert len(server.requests) == 1
    assert leftovers(tmp_path) == []


def test_fetch_retries_5xx(server, tmp_path):
    server.plan = ["500", "500"]
    fetch(server.url, tmp_path / "a.tar.gz", server.md5, retries=2)
    assert len(server.requests) == 3


def test_fetch_cut_transfer_retried(server, tmp_path):
    server.plan = ["cut", "cut"]
    dest = tmp_path / "a.tar.gz"
    fetch(server.url, dest, server.md5, retries=3)
    assert dest.read_bytes() == server.payload and len(server.requests) == 3
    assert leftovers(tmp_path) == ["a.tar.gz"]


def test_fetch_all_attempts_cut(server, tmp_path):
    server.plan = ["cut"] * 3
    with pytest.raises(DataError, match=r"after 3 attempt\(s\).*cut short.*by other means"):
        fetch(server.url, tmp_path / "a.tar.gz", server.md5, retries=2)
    assert len(server.requests) == 3
    assert leftovers(tmp_path) == []


def test_fetch_waits_twice_as_long_before_each_retry(server, tmp_path, monkeypatch):
    """Backoff 1 s and four failures: waits of 1, 2, 4 and 8 s, then the fifth attempt succeeds."""
    waits = []
    monkeypatch.setattr(download_module.time, "sleep", waits.append)
    server.plan = ["500"] * 4
    fetch(server.url, tmp_path / "a.tar.gz", server.md5, retries=4, backoff=1.0)
    assert waits == [1.0, 2.0, 4.0, 8.0]
    assert len(server.requests) == 5 and (tmp_path / "a.tar.gz").read_bytes() == server.payload


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a disk that is always full)")
@pytest.mark.parametrize("size", [300_000, 100])  # the write fails / only the final flush does
@pytest.mark.parametrize("kind", ["http", "file"])
def test_fetch_full_disk_fails_at_once_naming_the_part_file(server, tmp_path, monkeypatch, size, kind):
    server.payload = os.urandom(size)
    server.md5 = cifar_data.md5sum(_write(tmp_path / "src" / "a.tar.gz", server.payload))
    source = server.url if kind == "http" else str(tmp_path / "src" / "a.tar.gz")
    dest = tmp_path / "out" / "a.tar.gz"
    part = dest.with_name("a.tar.gz.part")

    def full_disk_open(path, mode="r", *args, **kwargs):  # .part is made; its bytes go to /dev/full
        if Path(path) == part:
            part.touch()
            return open("/dev/full", mode, *args, **kwargs)
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(download_module, "open", full_disk_open, raising=False)
    with pytest.raises(DataError) as ei:
        fetch(source, dest, server.md5, retries=3, backoff=5)
    assert str(ei.value) == f"cannot write {part}: [Errno {errno.ENOSPC}] {os.strerror(errno.ENOSPC)}"
    assert len(server.requests) == (1 if kind == "http" else 0)
    assert leftovers(dest.parent) == []


@pytest.mark.parametrize("wrapped", [True, False])  # as urlopen raises it / as a read might
def test_fetch_unverifiable_certificate_fails_at_once(tmp_path, monkeypatch, wrapped):
    url = "https://example.invalid/cifar-10-python.tar.gz"
    calls = []

    def urlopen(request, timeout):
        calls.append(request.full_url)
        err = ssl.SSLCertVerificationError(1, "certificate verify failed: self-signed certificate")
        raise urllib.error.URLError(err) if wrapped else err

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    with pytest.raises(DataError, match=r"the TLS certificate of https://example\.invalid/cifar-10-python\.tar\.gz "
                                        r"could not be verified: .*self-signed certificate\. .*by other means"):  # fmt: skip
        fetch(url, tmp_path / "a.tar.gz", "0" * 32, retries=4, backoff=5)
    assert calls == [url]
    assert leftovers(tmp_path) == []


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_fetch_already_present_makes_no_request(server, tmp_path):
    dest = tmp_path / "a.tar.gz"
    dest.write_bytes(server.payload)
    fetch(server.url, dest, server.md5)
    assert server.requests == []


def test_fetch_replaces_stale_file(server, tmp_path):
    dest = tmp_path / "a.tar.gz"
    dest.write_bytes(b"stale")
    fetch(server.url, dest, server.md5)
    assert dest.read_bytes() == server.payload and len(server.requests) == 1


def test_fetch_file_url_and_plain_path(tmp_path, archive):
    md5 = cifar_data.md5sum(archive)
    a, b = tmp_path / "x" / "a.tar.gz", tmp_path / "b.tar.gz"
    fetch(archive.as_uri(), a, md5)
    fetch(str(archive), b, md5.upper())
    assert a.read_bytes() == b.read_bytes() == archive.read_bytes()
    with pytest.raises(DataError, match="md5 mismatch"):
        fetch(str(archive), tmp_path / "c.tar.gz", "1" * 32)
    assert not (tmp_path / "c.tar.gz").exists() and not (tmp_path / "c.tar.gz.part").exists()
    with pytest.raises(DataError, match=r"not an existing file.*by other means.*config/config\.yaml"):
        fetch(str(tmp_path / "missing.tar.gz"), tmp_path / "d.tar.gz", md5)


def test_fetch_unreachable_host(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dest = tmp_path / "a.tar.gz"
    with pytest.raises(DataError) as ei:
        fetch(f"http://127.0.0.1:{port}/c.tar.gz", dest, "0" * 32, retries=1)
    msg = str(ei.value)
    assert "by other means" in msg and "data.url" in msg and str(dest) in msg
    assert leftovers(tmp_path) == []


def test_fetch_progress_bar(server, tmp_path, capsys):
    fetch(server.url, tmp_path / "a.tar.gz", server.md5, progress=True)
    err = capsys.readouterr().err
    assert "100.0%" in err and "/s" in err and "KiB" in err


# ------------------------------------------------------------------------------------------
# synthetic data
# ------------------------------------------------------------------------------------------


def test_synthetic_images_shapes_and_balance():
    x, y, xt, yt, names = cifar_data.make_synthetic_images(8, 3, seed=5)
    assert x.shape == (80, 32, 32, 3) and xt.shape == (30, 32, 32, 3)
    assert x.dtype == xt.dtype == np.uint8 and y.dtype == yt.dtype == np.int64
    assert np.bincount(y, minlength=10).tolist() == [8] * 10
    assert np.bincount(yt, minlength=10).tolist() == [3] * 10
    assert names == list(cifar_data.CLASS_NAMES) and len(names) == 10
    x2, y2, *_ = cifar_data.make_synthetic_images(8, 3, seed=5)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(cifar_data.make_synthetic_images(8, 3, seed=6)[0], x)


def test_synthetic_images_are_learnable():
    x, y, xt, yt, _ = cifar_data.make_synthetic_images(30, 20, seed=0)
    X = x.reshape(len(x), -1).astype(np.float32)
    Xt = xt.reshape(len(xt), -1).astype(np.float32)
    means = np.stack([X[y == k].mean(0) for k in range(10)])
    d = (Xt**2).sum(1)[:, None] - 2 * Xt @ means.T + (means**2).sum(1)[None]
    acc = (d.argmin(1) == yt).mean()
    assert acc > 0.6, acc  # chance is 0.1


def test_synthetic_archive_roundtrip(tmp_path):
    x, y, xt, yt, names = cifar_data.make_synthetic_images(5, 2, seed=1)
    p = cifar_data.write_archive(tmp_path / "demo.tar.gz", x, y, xt, yt, names)
    d = cifar_data.read_archive(p, expected_train=50, expected_test=20)
    np.testing.assert_array_equal(d["x_train_all"], x)
    np.testing.assert_array_equal(d["y_test"], yt)


def test_demo_images_saturate_instead_of_wrapping():
    """The truck's red (170) plus its shape (50..90) often passes 255: such a pixel must stay
    bright (255), not wrap round to near black. The demo's archive, seed 0."""
    x, y, *_ = cifar_data.make_synthetic_images(40, 20, seed=0)
    red = x[y == 9][..., 0]
    assert (red == 255).mean() > 0.02  # saturated: about 8.6 %
    assert (red < 50).mean() < 0.001  # wrapped round, 7.9 % of them would be this dark


# ------------------------------------------------------------------------------------------
# the step scripts (as a user or Snakemake's shell: would run them)
# ------------------------------------------------------------------------------------------


def run_script(name, *args):
    return subprocess.run([sys.executable, str(SCRIPTS / name), *map(str, args)],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def keep_root_logging():
    """The scripts reconfigure the root logger (force=True); undo that after the test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for h in root.handlers[:]:
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    for h in handlers:
        if h not in root.handlers:
            root.addHandler(h)
    root.setLevel(level)


def test_scripts_demo_download_prepare(tmp_path, capsys, keep_root_logging):
    arch = tmp_path / "demo.tar.gz"
    argv = ["--out", arch, "--n-train-per-class", 3, "--n-test-per-class", 1, "--seed", 0]
    assert load_script("make_demo_archive").main(list(map(str, argv))) == 0
    md5 = capsys.readouterr().out.strip()
    assert md5 == cifar_data.md5sum(arch)
    assert leftovers(tmp_path) == ["demo.tar.gz"]

    download = load_script("download")
    dest = tmp_path / "data" / "cifar-10-python.tar.gz"
    log = tmp_path / "logs" / "download.log"
    assert download.main(["--source", str(arch), "--md5", md5, "--out", str(dest),
                          "--log", str(log)]) == 0
    assert dest.read_bytes() == arch.read_bytes() and "md5" in log.read_text()
    assert download.main(["--source", str(arch), "--md5", "f" * 32,
                          "--out", str(tmp_path / "o.tar.gz")]) == 1
    assert "md5 mismatch" in capsys.readouterr().err

    prepare = load_script("prepare")
    out = tmp_path / "data" / "cifar10.npz"
    assert prepare.main(["--archive", str(dest), "--out", str(out), "--n-val", "6",
                         "--split-seed", "3", "--standardize", "--expected-train", "30",
                         "--expected-test", "10"]) == 0
    err = capsys.readouterr().err
    assert "per-channel mean" in err and "x_train" in err and "(24, 32, 32, 3)" in err
    with np.load(out) as z:
        assert z["x_train"].shape == (24, 32, 32, 3) and z["x_val"].shape == (6, 32, 32, 3)
        meta = json.loads(str(z["meta_json"]))
        assert meta["standardize"] is not None and meta["split_seed"] == 3
    assert prepare.main(["--archive", str(dest), "--out", str(tmp_path / "x.npz"), "--n-val", "6",
                         "--split-seed", "0", "--expected-train", "50000", "--expected-test", "10"]) == 1
    err = capsys.readouterr().err
    assert "expected 50000" in err and f"If {dest} was put there by hand, not by the download step" in err
    assert not (tmp_path / "x.npz").exists()
    assert prepare.main(["--archive", str(dest), "--out", str(tmp_path / "x.npz"), "--n-val", "40",
                         "--split-seed", "0", "--expected-train", "30", "--expected-test", "10"]) == 1
    err = capsys.readouterr().err
    assert "n_val=40 must be in [0, 29]" in err and "by hand" not in err  # a setting's problem: no advice on the file


def test_script_error_exit_without_traceback(tmp_path):
    """Run as a separate process, the way Snakemake's shell: does."""
    r = run_script("download.py", "--source", tmp_path / "absent.tar.gz", "--md5", "f" * 32,
                   "--out", tmp_path / "out.tar.gz")
    assert r.returncode == 1
    assert "not an existing file" in r.stderr and "by other means" in r.stderr
    assert "Traceback" not in r.stderr


def test_download_script_passes_its_retry_settings_on(monkeypatch, keep_root_logging):
    """The download rule gives no --retries, --backoff or --timeout: the script's defaults (4
    retries, waits from 1 s, a 60 s socket timeout) are what the fetch gets; given ones go through."""
    download = load_script("download")
    calls = []
    monkeypatch.setattr(download, "fetch_archive", lambda *a, **kw: calls.append((a, kw)))
    argv = ["--source", "http://example.invalid/c.tar.gz", "--md5", "f" * 32, "--out", "o.tar.gz"]
    assert download.main(argv) == 0
    assert calls[0] == (("http://example.invalid/c.tar.gz", Path("o.tar.gz"), "f" * 32),
                        {"retries": 4, "backoff": 1.0, "timeout": 60})  # fmt: skip
    assert download.main([*argv, "--retries", "2", "--backoff", "0.5", "--timeout", "9"]) == 0
    assert calls[1][1] == {"retries": 2, "backoff": 0.5, "timeout": 9.0}


def test_a_malformed_md5_or_count_is_a_usage_error_before_any_work(tmp_path):
    r = run_script("download.py", "--source", tmp_path / "absent.tar.gz", "--md5", "xyz", "--out", tmp_path / "o.tar.gz")
    assert r.returncode == 2 and "argument --md5: 'xyz' is not an md5 (32 hexadecimal digits)" in r.stderr
    r = run_script("make_demo_archive.py", "--out", tmp_path / "d.tar.gz", "--n-train-per-class", "-1",
                   "--n-test-per-class", "1", "--seed", "0")  # fmt: skip
    assert r.returncode == 2 and "argument --n-train-per-class: -1 is below 1" in r.stderr
    assert "Traceback" not in r.stderr and list(tmp_path.iterdir()) == []


def test_make_demo_archive_names_an_output_it_cannot_write(tmp_path):
    (tmp_path / "taken").write_text("a file where the archive's folder should be")
    out = tmp_path / "taken" / "d.tar.gz"
    r = run_script("make_demo_archive.py", "--out", out, "--n-train-per-class", "1", "--n-test-per-class", "1",
                   "--seed", "0")  # fmt: skip
    assert r.returncode == 1 and f"cannot write the archive {out}" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert r.stdout == ""


def test_prepare_names_an_output_it_cannot_write(tmp_path, archive):
    (tmp_path / "taken").write_text("a file where the output's folder should be")
    out = tmp_path / "taken" / "cifar10.npz"
    r = run_script("prepare.py", "--archive", archive, "--out", out, "--n-val", "6", "--split-seed", "0",
                   "--expected-train", "60", "--expected-test", "20")  # fmt: skip
    assert r.returncode == 1 and f"cannot write {out}" in r.stderr and "Traceback" not in r.stderr, r.stderr
