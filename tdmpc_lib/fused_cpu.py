"""Fused CPU kernels for the planner: (bias add) -> LayerNorm -> Mish (or SimNorm) in one pass
over each row; and Mish's forward and backward for training (`mish`), one exp per element.

Why: on a 2-core CPU, planning a 1024-row group spends most of its time in elementwise passes,
not in matmuls. Eager LayerNorm + the one-exp Mish is ~8 passes over a (1024, 384) activation
(~1 ms on one core) while the bf16 matmul that produced it takes ~0.2 ms; torch.compile's
fused kernel was measured at ~0.6-0.8 ms (its vectorised exp is the accurate, slower one).
This kernel reads each row once, keeps it in L1, and writes it once (~0.3 ms on one core).

The source below is compiled on first use with the system C++ compiler (GCC/Clang vector
extensions, -O3 -march=native, about a second) into a per-machine cache and loaded with ctypes;
it needs no PyTorch headers. If there is no compiler, the build fails, or the built kernel
disagrees with the eager formula on a self-test, `available()` is False and the planner keeps
its eager ops. TDMPC_FUSED_CPU=0 switches it off.

Numerics: LayerNorm statistics in fp32 (two passes over the row, biased variance, eps 1e-5),
Mish as x * n / (n + 2), n = e^x (e^x + 2), e^x from a degree-6 polynomial on the reduced
argument (relative error ~2e-7, capped at x = 20 like math.mish_inference); bf16 inputs are
widened exactly and outputs rounded to nearest even, the same as a .to(torch.bfloat16).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch

SOURCE = r"""
#include <stdint.h>
#include <string.h>
#include <math.h>
#include <thread>

typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));
typedef uint32_t v16u __attribute__((vector_size(64)));
typedef uint16_t v16h __attribute__((vector_size(32)));
static const int VL = 16;

static inline v16f vexp(v16f x) {  // e^x on [-87, 20] (clamped to it)
    const v16f lo = (v16f){} - 87.0f, hi = (v16f){} + 20.0f;
    x = x < lo ? lo : x;
    x = x > hi ? hi : x;
    v16f y = x * 1.44269504088896341f;
    v16f kf = y + 0.5f;
    v16i ki = __builtin_convertvector(kf, v16i);                 // truncation toward 0
    ki -= (v16i)(__builtin_convertvector(ki, v16f) > kf) & 1;    // -> floor (compare gives -1)
    kf = __builtin_convertvector(ki, v16f);
    v16f f = (y - kf) * 0.693147180559945309f;                  // |f| <= ln2 / 2
    v16f p = 1.0f + f * (1.0f + f * (0.5f + f * (0.166666672f + f * (0.0416666679f
             + f * (0.00833333377f + f * 0.00138888892f)))));
    v16i bits = (ki + 127) << 23;
    v16f s;
    memcpy(&s, &bits, sizeof s);
    return p * s;
}

static inline v16f load(const float* p) { v16f v; memcpy(&v, p, sizeof v); return v; }
static inline v16f load(const uint16_t* p) {
    v16h h; memcpy(&h, p, sizeof h);
    v16u u = __builtin_convertvector(h, v16u) << 16;
    v16f v; memcpy(&v, &u, sizeof v); return v;
}
static inline void store(float* p, v16f v) { memcpy(p, &v, sizeof v); }
static inline void store(uint16_t* p, v16f v) {  // round to nearest even; NaN stays NaN
    v16u u; memcpy(&u, &v, sizeof u);
    v16u r = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
    r = (v16u)(v != v) ? (v16u){} + 0x7FC0u : r;
    v16h h = __builtin_convertvector(r, v16h);
    memcpy(p, &h, sizeof h);
}
static inline float load1(const float* p) { return *p; }
static inline float load1(const uint16_t* p) { uint32_t u = (uint32_t)(*p) << 16; float f; memcpy(&f, &u, 4); return f; }
static inline void store1(float* p, float f) { *p = f; }
static inline void store1(uint16_t* p, float f) {
    uint32_t u; memcpy(&u, &f, 4);
    *p = (f != f) ? 0x7FC0u : (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

// rows [r0, r1) of y = mish(layer_norm(x + bias) * gamma + beta); bias may be null
template <typename TI, typename TO>
static void rows_ln_mish(const TI* in, int64_t in_stride, TO* out, int64_t out_stride, int64_t r0, int64_t r1,
                         int64_t M, const float* bias, const float* gamma, const float* beta, float eps) {
    float buf[M + VL];  // the row, widened (+ bias), in L1
    const int64_t MV = M - M % VL;
    for (int64_t r = r0; r < r1; ++r) {
        const TI* x = in + r * in_stride;
        TO* o = out + r * out_stride;
        v16f acc = {};
        for (int64_t i = 0; i < MV; i += VL) {
            v16f v = load(x + i);
            if (bias) v += load(bias + i);
            store(buf + i, v);
            acc += v;
        }
        float s = 0.f;
        for (int j = 0; j < VL; ++j) s += acc[j];
        for (int64_t i = MV; i < M; ++i) { buf[i] = load1(x + i) + (bias ? bias[i] : 0.f); s += buf[i]; }
        const float mean = s / (float)M;
        acc = (v16f){};
        for (int64_t i = 0; i < MV; i += VL) { v16f d = load(buf + i) - mean; acc += d * d; }
        float var = 0.f;
        for (int j = 0; j < VL; ++j) var += acc[j];
        for (int64_t i = MV; i < M; ++i) { float d = buf[i] - mean; var += d * d; }
        const float rstd = 1.0f / sqrtf(var / (float)M + eps);
        for (int64_t i = 0; i < MV; i += VL) {
            v16f h = (load(buf + i) - mean) * rstd * load(gamma + i) + load(beta + i);
            v16f e = vexp(h);
            v16f n = e * (e + 2.0f);
            store(o + i, h * (n / (n + 2.0f)));
        }
        for (int64_t i = MV; i < M; ++i) {
            float h = (buf[i] - mean) * rstd * gamma[i] + beta[i];
            float e = vexp((v16f){} + h)[0];
            float n = e * (e + 2.0f);
            store1(o + i, h * (n / (n + 2.0f)));
        }
    }
}

// run(r0, r1) over rows [0, rows), split into contiguous chunks on up to 16 threads
template <typename F>
static void split_rows(int64_t rows, int threads, F run) {
    if (threads < 2 || rows < 64) { run((int64_t)0, rows); return; }
    if (threads > 16) threads = 16;
    std::thread pool[16];
    const int64_t chunk = (rows + threads - 1) / threads;
    for (int t = 1; t < threads; ++t) {
        int64_t a = t * chunk, b = a + chunk < rows ? a + chunk : rows;
        if (a < b) pool[t] = std::thread(run, a, b);
    }
    run((int64_t)0, chunk < rows ? chunk : rows);
    for (int t = 1; t < threads; ++t) if (pool[t].joinable()) pool[t].join();
}

template <typename TI, typename TO>
static void ln_mish(const void* in, int64_t in_stride, void* out, int64_t out_stride, int64_t rows, int64_t M,
                    const float* bias, const float* gamma, const float* beta, float eps, int threads) {
    const TI* x = (const TI*)in;
    TO* o = (TO*)out;
    split_rows(rows, threads, [=](int64_t r0, int64_t r1) {
        rows_ln_mish<TI, TO>(x, in_stride, o, out_stride, r0, r1, M, bias, gamma, beta, eps);
    });
}

// rows [r0, r1) of y = simnorm(layer_norm(x + bias) * gamma + beta): softmax within consecutive groups
template <typename TI, typename TO>
static void rows_ln_simnorm(const TI* in, int64_t in_stride, TO* out, int64_t out_stride, int64_t r0, int64_t r1,
                            int64_t M, const float* bias, const float* gamma, const float* beta, float eps,
                            int64_t group) {
    float buf[M + VL];
    const int64_t MV = M - M % VL;
    for (int64_t r = r0; r < r1; ++r) {
        const TI* x = in + r * in_stride;
        TO* o = out + r * out_stride;
        float s = 0.f;
        for (int64_t i = 0; i < M; ++i) { buf[i] = load1(x + i) + (bias ? bias[i] : 0.f); s += buf[i]; }
        const float mean = s / (float)M;
        float var = 0.f;
        for (int64_t i = 0; i < M; ++i) { float d = buf[i] - mean; var += d * d; }
        const float rstd = 1.0f / sqrtf(var / (float)M + eps);
        for (int64_t i = 0; i < M; ++i) buf[i] = (buf[i] - mean) * rstd * gamma[i] + beta[i];
        for (int64_t g = 0; g < M; g += group) {  // shift each group by its max
            float mx = buf[g];
            for (int64_t i = g + 1; i < g + group; ++i) mx = buf[i] > mx ? buf[i] : mx;
            for (int64_t i = g; i < g + group; ++i) buf[i] -= mx;
        }
        for (int64_t i = 0; i < MV; i += VL) store(buf + i, vexp(load(buf + i)));
        for (int64_t i = MV; i < M; ++i) buf[i] = vexp((v16f){} + buf[i])[0];
        for (int64_t g = 0; g < M; g += group) {
            float sum = 0.f;
            for (int64_t i = g; i < g + group; ++i) sum += buf[i];
            for (int64_t i = g; i < g + group; ++i) store1(o + i, buf[i] / sum);
        }
    }
}

template <typename TI, typename TO>
static void ln_simnorm(const void* in, int64_t in_stride, void* out, int64_t out_stride, int64_t rows, int64_t M,
                       const float* bias, const float* gamma, const float* beta, float eps, int64_t group, int threads) {
    const TI* x = (const TI*)in;
    TO* o = (TO*)out;
    split_rows(rows, threads, [=](int64_t r0, int64_t r1) {
        rows_ln_simnorm<TI, TO>(x, in_stride, o, out_stride, r0, r1, M, bias, gamma, beta, eps, group);
    });
}

extern "C" int tdmpc_ln_simnorm(int in_bf16, int out_bf16, const void* in, int64_t in_stride, void* out,
                                int64_t out_stride, int64_t rows, int64_t M, const float* bias,
                                const float* gamma, const float* beta, float eps, int64_t group, int threads) {
    if (M > 16384 || group < 1 || M % group) return 1;
    if (in_bf16 && out_bf16) ln_simnorm<uint16_t, uint16_t>(in, in_stride, out, out_stride, rows, M, bias, gamma, beta, eps, group, threads);
    else if (in_bf16) ln_simnorm<uint16_t, float>(in, in_stride, out, out_stride, rows, M, bias, gamma, beta, eps, group, threads);
    else if (out_bf16) ln_simnorm<float, uint16_t>(in, in_stride, out, out_stride, rows, M, bias, gamma, beta, eps, group, threads);
    else ln_simnorm<float, float>(in, in_stride, out, out_stride, rows, M, bias, gamma, beta, eps, group, threads);
    return 0;
}

// elements [a, b) of y = mish(x) = x tanh(softplus(x)), tanh(softplus(x)) = n / (n + 2), n = e^x (e^x + 2)
static void mish_fwd_range(const float* x, float* y, int64_t a, int64_t b) {
    int64_t i = a;
    for (; i + VL <= b; i += VL) {
        v16f v = load(x + i), e = vexp(v), n = e * (e + 2.0f);
        store(y + i, v * (n / (n + 2.0f)));
    }
    for (; i < b; ++i) {
        float v = x[i], e = vexp((v16f){} + v)[0], n = e * (e + 2.0f);
        y[i] = v * (n / (n + 2.0f));
    }
}

// elements [a, b) of dx = g * mish'(x), mish'(x) = t + x sech^2(softplus(x)) sigmoid(x) with
// t = n / (n + 2), sech^2 = 4 (n + 1) / (n + 2)^2 (no 1 - t^2 cancellation); 1 above x = 20
static inline v16f mish_grad(v16f v) {
    v16f e = vexp(v), n = e * (e + 2.0f), d = n + 2.0f;
    v16f grad = n / d + v * (4.0f * (n + 1.0f) / (d * d)) * (e / (e + 1.0f));
    return v > 20.0f ? (v16f){} + 1.0f : grad;
}
static void mish_bwd_range(const float* x, const float* g, float* dx, int64_t a, int64_t b) {
    int64_t i = a;
    for (; i + VL <= b; i += VL) store(dx + i, load(g + i) * mish_grad(load(x + i)));
    for (; i < b; ++i) dx[i] = g[i] * mish_grad((v16f){} + x[i])[0];
}

// run(a, b) over [0, n) in chunks of whole vectors, on up to `threads` threads
template <typename F>
static void split_elements(int64_t n, int threads, F run) {
    const int64_t vectors = (n + VL - 1) / VL;
    split_rows(vectors, threads, [=](int64_t v0, int64_t v1) {
        run(v0 * VL, v1 * VL < n ? v1 * VL : n);
    });
}

extern "C" int tdmpc_mish_fwd(const float* x, float* y, int64_t n, int threads) {
    split_elements(n, threads, [=](int64_t a, int64_t b) { mish_fwd_range(x, y, a, b); });
    return 0;
}

extern "C" int tdmpc_mish_bwd(const float* x, const float* g, float* dx, int64_t n, int threads) {
    split_elements(n, threads, [=](int64_t a, int64_t b) { mish_bwd_range(x, g, dx, a, b); });
    return 0;
}

extern "C" int tdmpc_ln_mish(int in_bf16, int out_bf16, const void* in, int64_t in_stride, void* out,
                             int64_t out_stride, int64_t rows, int64_t M, const float* bias,
                             const float* gamma, const float* beta, float eps, int threads) {
    if (M > 16384) return 1;
    if (in_bf16 && out_bf16) ln_mish<uint16_t, uint16_t>(in, in_stride, out, out_stride, rows, M, bias, gamma, beta, eps, threads);
    else if (in_bf16) ln_mish<uint16_t, float>(in, in_stride, out, out_stride, rows, M, bias, gamma, beta, eps, threads);
    else if (out_bf16) ln_mish<float, uint16_t>(in, in_stride, out, out_stride, rows, M, bias, gamma, beta, eps, threads);
    else ln_mish<float, float>(in, in_stride, out, out_stride, rows, M, bias, gamma, beta, eps, threads);
    return 0;
}
"""

FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-shared", "-fPIC", "-pthread",
         "-std=c++17"]
_DTYPES = (torch.float32, torch.bfloat16)
_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False
_reason = ""


def _cache_dir() -> Path:
    root = os.environ.get("TDMPC_KERNEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "tdmpc_lib", "kernels")
    return Path(root)


def _machine_key(compiler: str) -> str:
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        pass
    text = "\n".join([SOURCE, " ".join(FLAGS), compiler, platform.machine(), flags])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _build() -> ctypes.CDLL:
    if platform.machine() not in ("x86_64", "AMD64", "aarch64", "arm64"):
        raise RuntimeError(f"not built for {platform.machine()}")
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++") or shutil.which("c++")
    if not compiler:
        raise RuntimeError("no C++ compiler")
    lib_path = _cache_dir() / f"fused_cpu_{_machine_key(compiler)}.so"
    if not lib_path.exists():
        lib_path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=lib_path.parent) as tmp:
            src, tmp_lib = Path(tmp) / "fused_cpu.cpp", Path(tmp) / "fused_cpu.so"
            src.write_text(SOURCE)
            done = subprocess.run([compiler, *FLAGS, str(src), "-o", str(tmp_lib)], capture_output=True,
                                  text=True, timeout=120)
            if done.returncode != 0:
                raise RuntimeError(f"compile failed: {done.stderr.strip()[-300:]}")
            os.replace(tmp_lib, lib_path)  # atomic: concurrent builders each install a whole file
    lib = ctypes.CDLL(str(lib_path))
    common = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64,
              ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_float]
    lib.tdmpc_ln_mish.restype = lib.tdmpc_ln_simnorm.restype = ctypes.c_int
    lib.tdmpc_ln_mish.argtypes = common + [ctypes.c_int]
    lib.tdmpc_ln_simnorm.argtypes = common + [ctypes.c_int64, ctypes.c_int]
    lib.tdmpc_mish_fwd.restype = lib.tdmpc_mish_bwd.restype = ctypes.c_int
    lib.tdmpc_mish_fwd.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int]
    lib.tdmpc_mish_bwd.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int]
    return lib


def _self_test() -> None:
    """The built kernels against the eager formulas, every dtype pair, odd widths, with bias."""
    from .math import mish_inference
    F = torch.nn.functional
    g = torch.Generator().manual_seed(0)
    for M, group in ((45, None), (40, 8)):
        x = torch.randn(67, M, generator=g) * 4
        bias, gamma, beta = (torch.randn(M, generator=g) for _ in range(3))
        for di in _DTYPES:
            for do in _DTYPES:
                xi = x.to(di)
                h = F.layer_norm(xi.float() + bias, (M,), gamma, beta)
                if group is None:
                    ref = mish_inference(h)
                else:
                    ref = F.softmax(h.view(67, -1, group), -1).view(67, M)
                out = torch.empty(67, M, dtype=do)
                _call(xi, out, bias, gamma, beta, 1e-5, threads=2, group=group)
                tol = 1e-5 if do == torch.float32 else 1e-2
                if not torch.allclose(out.float(), ref.to(do).float(), atol=tol, rtol=tol):
                    raise RuntimeError(f"self-test mismatch {di}->{do} (group {group}): "
                                       f"{(out.float() - ref.float()).abs().max():.3g}")
    # the training Mish, forward and backward, against torch's, over its whole range
    x = torch.cat([torch.randn(1001, generator=g) * 6, torch.tensor([-100.0, -20.0, 0.0, 19.9, 20.1, 100.0, 1e30])])
    grad_out = torch.randn(x.shape, generator=g)
    with torch.enable_grad():  # the first call may come from inside a no_grad block
        x.requires_grad_()
        ref = F.mish(x)
        (ref_grad,) = torch.autograd.grad(ref, x, grad_out)
    x = x.detach()
    got, got_grad = torch.empty_like(x), torch.empty_like(x)
    _lib.tdmpc_mish_fwd(x.data_ptr(), got.data_ptr(), x.numel(), 2)
    _lib.tdmpc_mish_bwd(x.data_ptr(), grad_out.data_ptr(), got_grad.data_ptr(), x.numel(), 2)
    for name, a, b in (("mish", got, ref.detach()), ("mish backward", got_grad, ref_grad)):
        if not torch.allclose(a, b, rtol=1e-5, atol=1e-6):
            raise RuntimeError(f"self-test mismatch {name}: {(a - b).abs().max():.3g}")


def available() -> bool:
    """Whether the fused kernel is built, loaded and passed its self-test (builds on first call)."""
    global _lib, _tried, _reason
    if _tried:
        return _lib is not None
    with _lock:
        if not _tried:
            if os.environ.get("TDMPC_FUSED_CPU", "1") == "0":
                _reason = "switched off by TDMPC_FUSED_CPU=0"
            else:
                try:
                    _lib = _build()
                    _self_test()
                except Exception as e:  # noqa: BLE001 - any failure means: use the eager ops
                    _lib, _reason = None, f"{type(e).__name__}: {e}"
            _tried = True
    return _lib is not None


def unavailable_reason() -> str:
    return _reason


def _call(x, out, bias, gamma, beta, eps, threads, group=None):
    args = (int(x.dtype == torch.bfloat16), int(out.dtype == torch.bfloat16), x.data_ptr(), x.stride(0),
            out.data_ptr(), out.stride(0), x.shape[0], x.shape[-1], None if bias is None else bias.data_ptr(),
            gamma.data_ptr(), beta.data_ptr(), float(eps))
    if group is None:
        rc = _lib.tdmpc_ln_mish(*args, int(threads))
    else:
        rc = _lib.tdmpc_ln_simnorm(*args, int(group), int(threads))
    if rc != 0:
        raise RuntimeError(f"fused_cpu kernel failed ({rc})")


def _check(x, out, bias, gamma, beta):
    ok = (x.ndim == 2 and out.shape == x.shape and x.stride(1) == 1 and out.stride(1) == 1
          and x.dtype in _DTYPES and out.dtype in _DTYPES and x.device.type == "cpu" and out.device.type == "cpu"
          and all(t is None or (t.dtype == torch.float32 and t.is_contiguous() and t.shape == x.shape[-1:])
                  for t in (bias, gamma, beta)))
    if not ok:
        raise ValueError("fused_cpu: needs 2-D CPU fp32/bf16 x and out with unit last stride and fp32 (M,) params")


def ln_mish(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, bias: torch.Tensor | None = None,
            out: torch.Tensor | None = None, out_dtype: torch.dtype | None = None, eps: float = 1e-5,
            threads: int | None = None) -> torch.Tensor:
    """mish(layer_norm(x + bias) * gamma + beta) over the last dim of a 2-D CPU tensor x (N, M)
    whose rows may be strided (e.g. a column block of a wider matmul output); fp32 or bf16 in
    and out; bias/gamma/beta fp32 contiguous (M,). `threads`: split the rows over that many
    threads (default 1: between torch's parallel ops its OpenMP workers spin-wait on the other
    cores, and threads of ours started there compete with them; the output does not depend on
    it). Call only when `available()`."""
    if out is None:
        out = torch.empty(x.shape, dtype=out_dtype or x.dtype)
    _check(x, out, bias, gamma, beta)
    _call(x, out, bias, gamma, beta, eps, 1 if threads is None else threads)
    return out


class _Mish(torch.autograd.Function):
    """Mish with the kernels' forward and backward (one exp per element each), on the calling
    thread only: between torch's parallel ops its OpenMP workers spin-wait on the other cores
    (OMP_WAIT_POLICY's default), and a thread of ours started there would compete with them."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        y = torch.empty_like(x)
        _lib.tdmpc_mish_fwd(x.data_ptr(), y.data_ptr(), x.numel(), 1)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        grad = grad.contiguous()
        dx = torch.empty_like(x)
        _lib.tdmpc_mish_bwd(x.data_ptr(), grad.data_ptr(), dx.data_ptr(), x.numel(), 1)
        return dx


def mish(x: torch.Tensor) -> torch.Tensor:
    """F.mish for training: the kernels' forward and backward for a contiguous fp32 CPU tensor
    when they are available (values within ~1e-6 relative of torch's), else F.mish itself."""
    if x.dtype == torch.float32 and x.device.type == "cpu" and x.is_contiguous() and available():
        return _Mish.apply(x)
    return torch.nn.functional.mish(x)


def ln_simnorm(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, group: int,
               bias: torch.Tensor | None = None, out: torch.Tensor | None = None,
               out_dtype: torch.dtype | None = None, eps: float = 1e-5, threads: int | None = None) -> torch.Tensor:
    """softmax within consecutive groups of `group` of layer_norm(x + bias) * gamma + beta (SimNorm
    after a NormedLinear), same layout rules as ln_mish. ATen's softmax over a dim of 8 is ~6x
    slower than the whole fused pass. Call only when `available()`."""
    if out is None:
        out = torch.empty(x.shape, dtype=out_dtype or x.dtype)
    _check(x, out, bias, gamma, beta)
    if x.shape[-1] % group:
        raise ValueError(f"fused_cpu: width {x.shape[-1]} is not a multiple of the SimNorm group {group}")
    _call(x, out, bias, gamma, beta, eps, 1 if threads is None else threads, group=group)
    return out
