"""The CUDA kernels without a GPU: the switch, NVRTC compilation, and the kernels' arithmetic.

The arithmetic is checked by compiling kernels.cu for the CPU with
``kernel_emulator.h`` (one thread per CUDA thread, one block at a time) and
driving it through kernels.py with NumPy arrays standing in for CuPy's. That
checks indexing and results against the NumPy layers; speed, and races
between blocks, need the GPU (tests/test_cupy.py).
"""

import ctypes
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from scratchcnn import kernels
from scratchcnn import layers as L
from scratchcnn import training as tr

KERNEL_NAMES = re.findall(r'extern "C" __global__ void (\w+)\(', kernels.SOURCE.read_text())


class CupyLike:
    """An array as kernels.use sees it: a type from a cupy module, and a dtype."""

    __module__ = "cupy._core.core"

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)


def test_kernels_only_take_float32_cupy_arrays_and_obey_the_switch(monkeypatch):
    assert not kernels.use(np.zeros(3, np.float32))  # NumPy: the reference code runs
    monkeypatch.delenv("SCRATCHCNN_KERNELS", raising=False)
    assert kernels.enabled()
    assert kernels.use(CupyLike(np.float32))
    for other in (np.float64, np.float16, np.int64):  # the kernels are float32 only
        assert not kernels.use(CupyLike(other)), other
    monkeypatch.setenv("SCRATCHCNN_KERNELS", "0")
    assert not kernels.enabled() and not kernels.use(CupyLike(np.float32))
    monkeypatch.setenv("SCRATCHCNN_KERNELS", "1")
    assert kernels.enabled() and kernels.use(CupyLike(np.float32))


def test_a_kernel_that_will_not_build_says_which_and_how_to_run_without(monkeypatch):
    """A GPU where kernels.cu does not compile or load: one clear error, not CuPy's traceback,
    and the next lookup tries again (no half-built module kept)."""
    tried = []

    class FailingModule:
        def __init__(self, code, options):
            tried.append(options)

        def get_function(self, name):
            raise RuntimeError("CUDA_ERROR_UNSUPPORTED_PTX_VERSION")

    fake = types.ModuleType("cupy")
    fake.RawModule = FailingModule
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDevice=lambda: 3))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(kernels, "_modules", {})
    monkeypatch.setattr(kernels, "_functions", {})
    for _ in range(2):
        with pytest.raises(kernels.KernelBuildError) as err:
            kernels._function("softmax_xent")
        msg = str(err.value)
        assert "softmax_xent" in msg and str(kernels.SOURCE) in msg and "GPU 3" in msg, msg
        assert "CUDA_ERROR_UNSUPPORTED_PTX_VERSION" in msg and "SCRATCHCNN_KERNELS=0" in msg, msg
    assert len(tried) == 2 and kernels._modules == {} and kernels._functions == {}


def assert_every_kernel_built_without_spills(ptxas_log: str) -> None:
    """ptxas's -v report: every kernel of kernels.cu built for sm_90, and its registers sufficed."""
    entries = re.findall(r"Compiling entry function '(\w+)' for 'sm_90'", ptxas_log)
    assert sorted(entries) == sorted(KERNEL_NAMES), ptxas_log
    assert ptxas_log.count("0 bytes spill stores, 0 bytes spill loads") == len(KERNEL_NAMES), ptxas_log


def test_kernel_source_compiles_with_nvrtc():
    nvrtc = pytest.importorskip("cuda.bindings.nvrtc", reason="NVRTC bindings not installed (cuda-bindings)")
    src = kernels.SOURCE.read_bytes()
    err, prog = nvrtc.nvrtcCreateProgram(src, b"kernels.cu", 0, [], [])
    assert err == nvrtc.nvrtcResult.NVRTC_SUCCESS
    # as CuPy's RawModule compiles it (it adds -ftz=true), down to H100 machine code (sm_90) so
    # that ptxas runs too and reports each kernel's registers and spills
    opts = [b"--gpu-architecture=sm_90", b"--std=c++17", f"-DBLOCK={kernels.BLOCK}".encode(), b"-ftz=true",
            b"--ptxas-options=-v"]  # fmt: skip
    (err,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
    _, size = nvrtc.nvrtcGetProgramLogSize(prog)
    log = b" " * size
    nvrtc.nvrtcGetProgramLog(prog, log)
    nvrtc.nvrtcDestroyProgram(prog)
    text = log.decode(errors="replace")
    assert err == nvrtc.nvrtcResult.NVRTC_SUCCESS, text
    assert_every_kernel_built_without_spills(text)
    assert set(KERNEL_NAMES) >= {"sgd_sumsq", "sgd_apply", "softmax_xent", "im2col_pad", "col2im_gather"}


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="no CUDA toolkit (nvcc) here")
def test_kernel_source_compiles_with_the_toolkits_nvcc(tmp_path):
    """The machine's own CUDA (13.0 here, as with the GPU machine's CuPy 14), besides NVRTC 12 above."""
    done = subprocess.run(["nvcc", "-arch=sm_90", "-std=c++17", f"-DBLOCK={kernels.BLOCK}", "-ftz=true",
                           "-Xptxas", "-v", "-c", str(kernels.SOURCE), "-o", str(tmp_path / "kernels.o")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    text = done.stdout + done.stderr
    assert done.returncode == 0, text
    assert_every_kernel_built_without_spills(text)


# --------------------------------------------------------------------------- #
# The kernels run on the CPU

EMU_BLOCK = 64  # small blocks keep the thread count low (the source takes a power of two, at least 32)


@pytest.fixture(scope="module")
def emulator_library(tmp_path_factory):
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.skip("no g++ to build the kernel emulator")
    d = tmp_path_factory.mktemp("kernel_emulator")
    src = d / "emulated.cpp"
    header = Path(__file__).with_name("kernel_emulator.h")
    src.write_text(f'#include "{header}"\n#include "{kernels.SOURCE}"\n'
                   + "".join(f"EMU_EXPORT({name})\n" for name in KERNEL_NAMES))  # fmt: skip
    lib = d / "emulated.so"
    cmd = [cxx, "-std=c++20", "-O1", "-ffp-contract=off", "-shared", "-fPIC", "-pthread",
           f"-DBLOCK={EMU_BLOCK}", str(src), "-o", str(lib)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return ctypes.CDLL(str(lib))


def kernel_parameters(source: str) -> dict:
    """Each kernel's parameter kinds from its CUDA signature: "int", "long long", "float",
    "double", or a pointer to one of these or to "unsigned char" ("float*")."""
    out = {}
    for name, params in re.findall(r'extern "C" __global__ void (\w+)\(([^)]*)\)', source):
        kinds = []
        for p in params.split(","):
            p = p.replace("__restrict__", "").replace("const", "").replace("*", " * ").split()
            kinds.append(" ".join(p[:-2]) + "*" if p[-2] == "*" else " ".join(p[:-1]))
        out[name] = kinds
    return out


PARAMETERS = kernel_parameters(kernels.SOURCE.read_text())
SCALAR_KINDS = {np.int32: "int", np.int64: "long long", np.float32: "float", np.float64: "double"}
POINTER_KINDS = {np.dtype(t): k + "*" for t, k in SCALAR_KINDS.items()} | {np.dtype(np.uint8): "unsigned char*"}


class EmulatedKernel:
    """Called like a cupy.RawKernel: ``(grid, block, args)``, args NumPy arrays and NumPy scalars.

    Each argument must have the type of its kernel parameter: CuPy packs a
    scalar at its own size, so an int64 passed for an ``int`` would shift every
    later argument on the GPU, and an array's elements must be what the pointer
    reads (float64 sums behind a ``float*`` would be read as garbage).
    """

    def __init__(self, lib, name):
        self.name, self.fn = name, getattr(lib, f"emu_{name}")

    def __call__(self, grid, block, args):
        assert block == (EMU_BLOCK,)
        kinds = PARAMETERS[self.name]
        assert len(args) == len(kinds), f"{self.name}: {len(args)} arguments for {len(kinds)} parameters"
        held, ptrs = [], (ctypes.c_void_p * len(args))()
        for i, (a, kind) in enumerate(zip(args, kinds)):
            if isinstance(a, np.ndarray):
                got = POINTER_KINDS.get(a.dtype, str(a.dtype))
                assert got == kind, f"{self.name} argument {i}: a {got} array for a {kind} parameter"
                assert a.flags.c_contiguous, f"{self.name} argument {i} is not contiguous"
                h = ctypes.c_void_p(a.ctypes.data)
            else:
                got = SCALAR_KINDS.get(type(a), type(a).__name__)
                assert got == kind, f"{self.name} argument {i}: a {got} for a {kind} parameter"
                h = np.ctypeslib.as_ctypes_type(a.dtype)(a.item())
            held.append(h)
            ptrs[i] = ctypes.cast(ctypes.pointer(h), ctypes.c_void_p)
        gx, gy = (tuple(grid) + (1,))[:2]
        self.fn(ctypes.c_uint(gx), ctypes.c_uint(gy), ctypes.c_uint(block[0]), ptrs)


@pytest.fixture
def emulated(emulator_library, monkeypatch):
    """kernels.py with NumPy in CuPy's place and the kernels running on the CPU."""
    fake = types.ModuleType("cupy")
    for name in ("ascontiguousarray", "asarray", "empty", "empty_like"):
        setattr(fake, name, getattr(np, name))
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDevice=lambda: 0))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(kernels, "_function", lambda name: EmulatedKernel(emulator_library, name))
    monkeypatch.setattr(kernels, "BLOCK", EMU_BLOCK)
    monkeypatch.setattr(kernels, "MAX_BLOCKS", 8)  # grid-stride loops go round several times
    monkeypatch.setattr(kernels, "MAX_GRID_Y", 2)  # and the loops over images too
    return kernels


CONV_CASES = [  # n, h, w, c, k, stride, pad
    (1, 5, 5, 3, 3, 1, 1),
    (2, 7, 5, 1, 3, 2, 1),
    (2, 4, 6, 5, 3, 1, 2),
    (2, 6, 6, 7, 2, 2, 0),
    (1, 9, 9, 2, 3, 3, 0),
    (5, 4, 3, 2, 3, 1, 1),  # more images than grid rows: the loop over images goes round
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "n{}-{}x{}x{}-k{}-s{}-p{}".format(*c))
def test_emulated_im2col_and_col2im(case, emulated):
    n, h, w, c, k, stride, pad = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    oh, ow = L.conv_output_size(h, k, stride, pad), L.conv_output_size(w, k, stride, pad)
    want = L.im2col(x, k, k, stride, pad, oh, ow)
    got = emulated.im2col(x, k, k, stride, pad, oh, ow)
    np.testing.assert_array_equal(got, want)
    d = rng.standard_normal(want.shape).astype(np.float32)
    # the same additions in the same order as the reference: equal to the bit
    np.testing.assert_array_equal(emulated.col2im(d, x.shape, stride, pad), L.col2im(d, x.shape, stride, pad))


@pytest.mark.parametrize("need_grad", [True, False], ids=["grad", "no-grad"])
@pytest.mark.parametrize("n,k", [(1, 10), (7, 3), (70, 10), (5, 1)], ids=["rows1-classes10", "rows7-classes3",
                                                                          "rows70-classes10", "rows5-classes1"])
def test_emulated_softmax_cross_entropy(n, k, need_grad, emulated):
    rng = np.random.default_rng(n * 31 + k)
    logits = (rng.standard_normal((n, k)) * 5).astype(np.float32)
    logits[0, :] = 1e4 * (np.arange(k) % 2)  # huge logits, and a tie at the maximum when k > 2
    y = rng.integers(0, k, n)
    if n > 3:
        y[3] = k  # a label out of range: no target, as one_hot gives
    correct_ref = np.zeros((), np.int64)
    loss_ref, d_ref = L.softmax_cross_entropy(logits, y, need_grad=need_grad, correct=correct_ref)
    correct = np.full((), 5, np.int64)  # counts are added to what is there
    loss, d = emulated.softmax_cross_entropy(logits, y, need_grad=need_grad, correct=correct)
    assert float(loss) == pytest.approx(float(loss_ref), rel=1e-5, abs=1e-6)
    assert int(correct) == 5 + int(correct_ref)
    if need_grad:
        np.testing.assert_allclose(d, d_ref, rtol=1e-5, atol=1e-7)
    else:
        assert d is None
    with pytest.raises(ValueError, match="0-d int64"):
        emulated.softmax_cross_entropy(logits, y, correct=np.zeros(1, np.int64))


@pytest.mark.parametrize("sums", [False, True], ids=["no-sums", "sums"])
@pytest.mark.parametrize("clip", [None, 5.0, 0.01], ids=["no-clip", "clip5", "clip0.01"])
@pytest.mark.parametrize("reg", [0.0, 0.3], ids=["reg0", "reg0.3"])
def test_emulated_fused_sgd(clip, reg, sums, emulated):
    """Segments of awkward sizes (1 element, odd, many blocks' worth), some decayed; with the
    epoch's sums, kept as FlatSGD.step keeps them on NumPy."""
    rng = np.random.default_rng(7)
    shapes = {"a": (1,), "W": (7, 3, 3, 5), "b": (3001,), "c": (33,), "V": (100, 10)}
    params = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    grads = {k: (rng.standard_normal(s) * 3).astype(np.float32) for k, s in shapes.items()}
    decayed = ("W", "V")
    data_loss = np.array(2.25, np.float32)
    ref, want = tr.FlatSGD(params, decayed), tr.EpochSums.zeros(np)
    for k, g in grads.items():
        ref.grads[k][...] = g
    want.ce += 10.0
    want.l2 += 0.125
    ref.step(0.1, clip, reg, want if sums else None, data_loss, 37)
    p_flat, views = tr.flatten(params)
    g_flat, _ = tr.flatten(grads)
    plan = emulated.SgdPlan([a.size for a in params.values()], [k in decayed for k in params])
    assert plan.parts > 1
    got = tr.EpochSums.zeros(np)
    got.ce += 10.0
    got.l2 += 0.125
    if sums:
        emulated.sgd_update(plan, p_flat, g_flat, 0.1, clip, reg, got, data_loss, 37)
    else:
        emulated.sgd_update(plan, p_flat, g_flat, 0.1, clip, reg)
    for k in params:
        np.testing.assert_allclose(views[k], ref.params[k], rtol=1e-6, atol=1e-7, err_msg=k)
    assert float(got.l2) == pytest.approx(float(want.l2), rel=1e-6)
    assert float(got.ce) == float(want.ce)
    if sums:  # each part on top of what was there: 37 * 2.25 and 37 * reg / 2 * ||W, V||^2
        l2 = 0.5 * reg * sum(float((params[k].astype(np.float64) ** 2).sum()) for k in decayed)
        assert float(got.l2) == pytest.approx(0.125 + 37 * l2, rel=1e-6) and float(got.ce) == 10 + 37 * 2.25
    else:
        assert float(got.ce) == 10.0 and float(got.l2) == 0.125
    with pytest.raises(ValueError, match="data_loss must be a 0-d float32"):
        emulated.sgd_update(plan, p_flat, g_flat, 0.1, clip, reg, got, np.zeros(1, np.float32), 37)
    single = tr.EpochSums(np.zeros((), np.float64), np.zeros((), np.float32), np.zeros((), np.int64))
    with pytest.raises(ValueError, match="sums.l2 must be a 0-d float64 array, not float32"):
        emulated.sgd_update(plan, p_flat, g_flat, 0.1, clip, reg, single, data_loss, 37)


@pytest.mark.parametrize("m,c", [(1, 1), (7, 33), (255, 3), (257, 40), (5000, 10)])
def test_emulated_column_sum(m, c, emulated):
    """One chunk of rows, a chunk boundary, more columns than a tile, many chunks."""
    x = np.random.default_rng(m + c).standard_normal((m, c)).astype(np.float32)
    want = x.sum(axis=0, dtype=np.float64)
    got = emulated.column_sum(x)
    assert got.dtype == np.float32 and got.shape == (c,)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * np.abs(x).sum(axis=0).max())
    out = np.full(c, np.nan, np.float32)
    assert emulated.column_sum(x, out) is out
    np.testing.assert_array_equal(out, got)
    with pytest.raises(ValueError, match=f"contiguous float32 array of {c} values"):
        emulated.column_sum(x, np.zeros(c + 1, np.float32))


FUSED_CASES = [  # n, h, w, c, size, stride
    (1, 4, 4, 3, 2, 2),  # batch of 1, odd channel count
    (2, 5, 7, 33, 2, 2),  # a border no window covers; more channels than one tile
    (2, 6, 6, 5, 3, 2),  # overlapping windows
    (3, 4, 4, 1, 2, 1),  # overlapping windows, one channel
    (2, 4, 6, 3, 2, 2, "ties"),  # few distinct values: equal maxima in a window, the first one takes it
]


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("case", FUSED_CASES, ids=lambda c: "n{}-{}x{}x{}-pool{}-s{}".format(*c) + "-ties" * (len(c) > 6))
def test_emulated_bn_relu_pool(case, train, emulated):
    n, h, w, c, size, stride = case[:6]
    rng = np.random.default_rng(3)
    if len(case) > 6:
        x = rng.integers(-1, 3, (n, h, w, c)).astype(np.float32)
    else:
        x = (rng.standard_normal((n, h, w, c)) * 2 + 1).astype(np.float32)
    gamma = (0.5 + rng.random(c)).astype(np.float32)
    beta = rng.normal(0, 0.3, c).astype(np.float32)
    rm = rng.normal(0, 0.5, c).astype(np.float32)
    rv = (0.5 + rng.random(c)).astype(np.float32)
    kw = dict(train=train, momentum=0.8, eps=1e-5, size=size, stride=stride)
    f64 = [a.astype(np.float64) for a in (x, gamma, beta, rm, rv)]
    want, cache, (want_rm, want_rv) = L.bn_relu_pool_forward(*f64, **kw)
    got, kcache, (got_rm, got_rv) = emulated.bn_relu_pool_forward(x, gamma, beta, rm, rv, need_cache=True, **kw)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_rm, want_rm, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_rv, want_rv, rtol=1e-5, atol=1e-6)
    dout = rng.standard_normal(want.shape).astype(np.float32)
    want_dx, want_dg, want_db = L.bn_relu_pool_backward(dout.astype(np.float64), cache)
    dg, db = np.full(c, np.nan, np.float32), np.full(c, np.nan, np.float32)
    got_dx, got_dg, got_db = emulated.bn_relu_pool_backward(dout, kcache, dgamma=dg, dbeta=db)
    assert got_dg is dg and got_db is db
    for name, a, b in (("dx", got_dx, want_dx), ("dgamma", dg, want_dg), ("dbeta", db, want_db)):
        err = np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12)
        assert err < 1e-5, f"{name}: {err:.2e}"
    eval_out, none, _ = emulated.bn_relu_pool_forward(x, gamma, beta, rm, rv, need_cache=False, **kw)
    assert none is None
    np.testing.assert_array_equal(eval_out, got)


@pytest.mark.parametrize("where", ["x", "gamma"])
def test_emulated_bn_relu_pool_passes_nan_as_the_reference_does(where, emulated):
    """A NaN (a run gone wrong) must reach the loss, which training reads to stop a diverged run:
    ReLU's `y > 0 ? y : 0` and the window's `y > best` had read it as 0 and dropped it."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 4, 3)).astype(np.float32)
    gamma, beta = np.ones(3, np.float32), np.zeros(3, np.float32)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    if where == "x":
        x[0, 0, 1, 1] = np.nan  # one pixel, second in its window (training: all of channel 1's statistics)
    else:
        gamma[1] = np.nan
    for train in (True, False):
        kw = dict(train=train, momentum=0.8, eps=1e-5, size=2, stride=2)
        want = L.bn_relu_pool_forward(x, gamma, beta, rm, rv, **kw)[0]
        got = emulated.bn_relu_pool_forward(x, gamma, beta, rm, rv, need_cache=False, **kw)[0]
        assert np.isnan(want).any()
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"train={train}")
        np.testing.assert_allclose(got[~np.isnan(got)], want[~np.isnan(want)], rtol=1e-5, atol=1e-6)


def test_no_kernel_result_depends_on_the_order_its_blocks_run_in(emulated, emulator_library):
    """On a GPU blocks run in any order and side by side; the emulator runs them one at a time.
    Every kernel, on shapes that take several blocks (grid-stride loops going round, several
    row chunks and channel tiles, several SGD parts), must give the same bits with its blocks
    in reverse order: no block may read or overwrite another's output in the same launch."""

    def outputs():
        rng = np.random.default_rng(0)
        out = {}
        x = rng.standard_normal((8, 16, 16, 40)).astype(np.float32)
        out["im2col"] = cols = emulated.im2col(x, 3, 3, 1, 1, 16, 16)
        out["col2im"] = emulated.col2im(rng.standard_normal(cols.shape).astype(np.float32), x.shape, 1, 1)
        logits = (rng.standard_normal((300, 10)) * 5).astype(np.float32)
        correct = np.zeros((), np.int64)
        out["xent_loss"], out["xent_grad"] = emulated.softmax_cross_entropy(logits, rng.integers(0, 10, 300),
                                                                            correct=correct)  # fmt: skip
        out["xent_correct"] = correct
        for train in (True, False):
            gamma, beta = (0.5 + rng.random(40)).astype(np.float32), rng.normal(0, 0.3, 40).astype(np.float32)
            mean, var = rng.normal(0, 0.5, 40).astype(np.float32), (0.5 + rng.random(40)).astype(np.float32)
            y, cache, stats = emulated.bn_relu_pool_forward(x, gamma, beta, mean, var, train=train, momentum=0.8,
                                                            eps=1e-5, size=2, stride=2, need_cache=True)  # fmt: skip
            dx, dgamma, dbeta = emulated.bn_relu_pool_backward(rng.standard_normal(y.shape).astype(np.float32), cache)
            got = dict(y=y, mean=stats[0], var=stats[1], dx=dx, dgamma=dgamma, dbeta=dbeta)
            if train:  # evaluation writes no argmax
                got["arg"] = cache.arg
            out.update({f"bn_{'train' if train else 'eval'}_{k}": v for k, v in got.items()})
        sizes = [1, 315, 3001, 33, 1000]
        params = rng.standard_normal(sum(sizes)).astype(np.float32)
        grads = (rng.standard_normal(sum(sizes)) * 3).astype(np.float32)
        plan = emulated.SgdPlan(sizes, [0, 1, 0, 0, 1])
        for clip in (None, 5.0, 0.01):
            out[f"sgd_clip{clip}"] = p = params.copy()
            emulated.sgd_update(plan, p, grads, 0.1, clip, 0.3)
        out["sgd_sums_params"] = p = params.copy()
        sums = tr.EpochSums.zeros(np)
        emulated.sgd_update(plan, p, grads, 0.1, 5.0, 0.3, sums, np.array(1.5, np.float32), 64)
        out["sgd_sums_ce"], out["sgd_sums_l2"] = sums.ce, sums.l2
        out["column_sum"] = emulated.column_sum(rng.standard_normal((3000, 40)).astype(np.float32))
        return out

    emulator_library.emu_set_reverse_blocks(0)
    in_order = outputs()
    emulator_library.emu_set_reverse_blocks(1)
    try:
        reversed_ = outputs()
    finally:
        emulator_library.emu_set_reverse_blocks(0)
    assert in_order.keys() == reversed_.keys() and len(in_order) == 25
    for name, value in in_order.items():
        assert np.asarray(value).tobytes() == np.asarray(reversed_[name]).tobytes(), name


def test_the_per_pixel_kernels_grid_has_a_row_per_image_and_refuses_images_too_large_to_index():
    big = types.SimpleNamespace(shape=(70000, 8, 8, 4), size=70000 * 256)
    assert kernels._per_image_grid(big) == (1, kernels.MAX_GRID_Y)  # more images loop round the rows
    assert kernels._per_image_grid(types.SimpleNamespace(shape=(3, 64, 64, 64), size=3 * 64**3)) == (1024, 3)
    huge = types.SimpleNamespace(shape=(2, 2**16, 2**15, 1), size=2**32)
    with pytest.raises(ValueError, match="2147483648 elements; the CUDA kernels take under 2\\*\\*31"):
        kernels._per_image_grid(huge)
