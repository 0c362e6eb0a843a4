#!/usr/bin/env python3
"""Independent reference of quant-formats.md §2.2 (NVFP4, both conventions), §2.7 (NVFP4
activations), §3 (MXFP4 exponent rules, IQ4_NL x16) and §5 (FP8 block scales), written from the
spec with numpy + ml_dtypes (not from the C++). Used by tests/quant/quant_reference_test.cc.

Usage:
  quant_reference.py selftest
  quant_reference.py jobs JOBFILE
JOBFILE holds one job per line: `MODE INPUT.f32 ROWS COLS OUTPREFIX [key=value ...]`; each job
writes OUTPREFIX.<name> raw little-endian arrays (see the functions below for the names).
"""

import sys

import ml_dtypes
import numpy as np

F32 = np.float32
E2M1_VALUES = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], F32)
IQ4NL_LEVELS = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113],
                        np.int32)


# ---- element formats (§1) ------------------------------------------------------------------

def bf16(x):
    return np.asarray(x, F32).astype(ml_dtypes.bfloat16).astype(F32)


def e4m3_torch_cast(x):
    """RNE, non-saturating (ml_dtypes' float8_e4m3fn cast behaves like torch's)."""
    return np.asarray(x, F32).astype(ml_dtypes.float8_e4m3fn).view(np.uint8)


def e4m3_satfinite(x):
    x = np.asarray(x, F32)
    return np.clip(x, F32(-448), F32(448)).astype(ml_dtypes.float8_e4m3fn).view(np.uint8)


def e4m3_value(codes):
    return np.asarray(codes, np.uint8).view(ml_dtypes.float8_e4m3fn).astype(F32)


def e2m1_rne(x):
    """§1.1: magnitude = [m>0.25]+[m>=0.75]+[m>1.25]+[m>=1.75]+[m>2.5]+[m>=3.5]+[m>5]; sign x<0."""
    x = np.asarray(x, F32)
    m = np.abs(x)
    mag = ((m > 0.25).astype(np.uint8) + (m >= 0.75) + (m > 1.25) + (m >= 1.75) + (m > 2.5) +
           (m >= 3.5) + (m > 5))
    return (mag + np.where(x < 0, 8, 0)).astype(np.uint8)


def e2m1_toward_zero_magnitude(x):
    m = np.abs(np.asarray(x, F32))
    return ((m > 0.25).astype(np.uint8) + (m > 0.75) + (m > 1.25) + (m > 1.75) + (m > 2.5) +
            (m > 3.5) + (m > 5)).astype(np.uint8)


def pack_even_low(codes):
    codes = np.asarray(codes, np.uint8)
    return (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)


def unpack_even_low(packed):
    out = np.empty(packed.shape[:-1] + (packed.shape[-1] * 2,), np.uint8)
    out[..., 0::2] = packed & 0xF
    out[..., 1::2] = packed >> 4
    return out


def floor_log2(x):
    """Exact floor(log2 x) for positive float32 x (frexp: x = m * 2^k, m in [0.5, 1))."""
    _, k = np.frexp(np.asarray(x, F32))
    return k.astype(np.int64) - 1


def ceil_log2(x):
    m, k = np.frexp(np.asarray(x, F32))
    return np.where(m == 0.5, k - 1, k).astype(np.int64)


def pow2_f32(e):
    return np.ldexp(F32(1), np.asarray(e, np.int64).astype(np.int32)).astype(F32)


# ---- NVFP4 weights (§2.2) ------------------------------------------------------------------

def nvfp4_modelopt(w, amax, clamp=True):
    rows, cols = w.shape
    blocks = w.reshape(rows, cols // 16, 16)
    amax = F32(amax)
    g = F32(amax / F32(2688))
    t = F32(F32(6) * g)
    block_amax = np.abs(blocks).max(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (block_amax / t).astype(F32)
    s = np.where(s == 0, F32(1), s)
    if clamp:
        s = np.clip(s, F32(2.0**-9), F32(448))
    scales = e4m3_torch_cast(s)
    d = (e4m3_value(scales) * g).astype(F32)
    with np.errstate(divide="ignore", invalid="ignore"):
        codes = e2m1_rne((blocks / d[..., None]).astype(F32))
    dequant = (E2M1_VALUES[codes] * d[..., None]).astype(F32)
    return {"packed": pack_even_low(codes.reshape(rows, cols)), "scales": scales,
            "global": np.array([g], F32), "dequant": dequant.reshape(rows, cols)}


def nvfp4_ct(w, amax, work="bf16"):
    rows, cols = w.shape
    blocks = w.reshape(rows, cols // 16, 16)
    tiny = np.finfo(F32).tiny
    with np.errstate(over="ignore"):
        G = F32(F32(2688) / max(F32(amax), tiny))
    if work == "bf16":
        G = F32(bf16(G))
    if not np.isfinite(G):
        G = F32(1)
    block_amax = np.abs(blocks).max(axis=-1)
    b = (block_amax / F32(6)).astype(F32)
    if work == "bf16":
        b = bf16(b)
    s = np.clip((G * b).astype(F32), F32(-448), F32(448))
    scales = e4m3_torch_cast(s)
    scales = np.where(e4m3_value(scales) == 0, np.uint8(0x20), scales).astype(np.uint8)
    eff = (e4m3_value(scales) / G).astype(F32)
    q = np.clip((blocks / eff[..., None]).astype(F32), F32(-6), F32(6))
    codes = e2m1_rne(q)
    dequant = (E2M1_VALUES[codes] * eff[..., None]).astype(F32)
    return {"packed": pack_even_low(codes.reshape(rows, cols)), "scales": scales,
            "global": np.array([G], F32), "dequant": dequant.reshape(rows, cols)}


def nvfp4_activation(x, G):
    """§2.7: S = e4m3_satfinite(G * (vmax * f32(1/6))); os = G / S; q = e2m1(x * os)."""
    rows, cols = x.shape
    G = F32(G)
    blocks = x.reshape(rows, cols // 16, 16)
    vmax = np.abs(blocks).max(axis=-1)
    sixth = F32(F32(1) / F32(6))
    scales = e4m3_satfinite((G * (vmax * sixth).astype(F32)).astype(F32))
    sval = e4m3_value(scales)
    with np.errstate(divide="ignore"):
        os_ = np.where(sval != 0, (G / sval).astype(F32), F32(0)).astype(F32)
    codes = e2m1_rne((blocks * os_[..., None]).astype(F32))
    return {"packed": pack_even_low(codes.reshape(rows, cols)), "scales": scales}


# ---- MXFP4 (§3.1) --------------------------------------------------------------------------

def mxfp4(w, rule):
    rows, cols = w.shape
    blocks = w.reshape(rows, cols // 32, 32)
    amax = np.abs(blocks).max(axis=-1)
    nonzero = amax > 0
    safe = np.where(nonzero, amax, F32(1))
    if rule in ("ocp", "llamacpp"):
        e = floor_log2(safe) - 2
        zero_byte = 0
    elif rule == "ct":
        # amax rounded to a power of two, up when its mantissa (in [1, 2)) is >= 1.75.
        m, k = np.frexp(safe)  # safe = m * 2^k, m in [0.5, 1): mantissa 2m
        e = np.where(2 * m >= 1.75, k, k - 1).astype(np.int64) - 2
        zero_byte = 127
    elif rule == "modelopt":
        descale = (safe / F32(6)).astype(F32)
        e = np.maximum(ceil_log2(np.where(descale > 0, descale, F32(1))), -127)
        e = np.where(descale > 0, e, -127)
        zero_byte = 0
    else:
        raise ValueError(rule)
    e = np.clip(e, -127, 127)
    scales = np.where(nonzero, e + 127, zero_byte).astype(np.uint8)
    X = pow2_f32(scales.astype(np.int64) - 127)
    v = (blocks / X[..., None]).astype(F32)
    if rule in ("ocp", "ct"):
        codes = e2m1_rne(v)
    elif rule == "llamacpp":
        mag = e2m1_toward_zero_magnitude(v)
        codes = mag + np.where((v < 0) & (mag != 0), 8, 0)
    else:  # modelopt: sign bit for x <= 0
        codes = e2m1_toward_zero_magnitude(v) + np.where(v <= 0, 8, 0)
    codes = codes.astype(np.uint8)
    return {"packed": pack_even_low(codes.reshape(rows, cols)), "scales": scales}


# ---- IQ4_NL x16 (§3.3, §3.4) ---------------------------------------------------------------

def iq4nl_nearest(v):
    """index i is chosen once 2v >= level[i-1] + level[i]."""
    twice = (np.asarray(v, F32) * F32(2)).astype(F32)
    mids = (IQ4NL_LEVELS[:-1] + IQ4NL_LEVELS[1:]).astype(F32)
    return (twice[..., None] >= mids).sum(axis=-1).astype(np.uint8)


def iq4nl_sums(x, w, codes):
    q = IQ4NL_LEVELS[codes].astype(F32)
    sumqx = np.zeros(x.shape[0], F32)
    sumq2 = np.zeros(x.shape[0], F32)
    for j in range(x.shape[1]):  # left to right, float32 after every operation
        wq = (w[:, j] * q[:, j]).astype(F32)
        sumqx = (sumqx + (wq * x[:, j]).astype(F32)).astype(F32)
        sumq2 = (sumq2 + (wq * q[:, j]).astype(F32)).astype(F32)
    return sumqx, sumq2


def iq4nl16(w, ntry=7, reciprocal=False, importance=None):
    rows, cols = w.shape
    x = w.reshape(-1, 16).astype(F32)
    nb = x.shape[0]
    if importance is None:
        weight = (x * x).astype(F32)
    else:
        imp = np.tile(importance.reshape(-1, 16), (rows, 1)).astype(F32)
        sigma2 = np.zeros(nb, F32)
        for j in range(16):
            sigma2 = (sigma2 + (x[:, j] * x[:, j]).astype(F32)).astype(F32)
        sigma2 = (sigma2 * F32(F32(2) / F32(16))).astype(F32)
        weight = (imp * np.sqrt((sigma2[:, None] + (x * x).astype(F32)).astype(F32))).astype(F32)
    ax = np.abs(x)
    amax = ax.max(axis=1)
    first = ax.argmax(axis=1)  # first element of largest magnitude
    mx = x[np.arange(nb), first]
    live = amax >= F32(1e-15)
    mx_safe = np.where(live, mx, F32(1)).astype(F32)

    def codes_for(d):
        with np.errstate(divide="ignore", invalid="ignore"):
            if reciprocal:
                v = ((F32(1) / d)[:, None] * x).astype(F32)
            else:
                v = (x / d[:, None]).astype(F32)
        return iq4nl_nearest(v)

    d = ((-mx_safe) / F32(-127)).astype(F32)  # max / 127
    sumqx, sumq2 = iq4nl_sums(x, weight, codes_for(d))
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(sumq2 > 0, (sumqx / sumq2).astype(F32), F32(0)).astype(F32)
    best = (d * sumqx).astype(F32)
    for t in range(-ntry, ntry + 1):
        inv = (F32(t - 127) / mx_safe).astype(F32)
        tq = iq4nl_nearest((inv[:, None] * x).astype(F32))
        tqx, tq2 = iq4nl_sums(x, weight, tq)
        accept = (tq2 > 0) & ((tqx * tqx).astype(F32) > (best * tq2).astype(F32))
        with np.errstate(divide="ignore", invalid="ignore"):
            new_d = (tqx / tq2).astype(F32)
        d = np.where(accept, new_d, d).astype(F32)
        best = np.where(accept, (d * tqx).astype(F32), best).astype(F32)
    d = np.where(live, d, F32(0)).astype(F32)
    codes = codes_for(np.where(d != 0, d, F32(1)).astype(F32))
    codes = np.where((d != 0)[:, None], codes, np.uint8(8)).astype(np.uint8)  # nearest(0) = 8
    scales = d.astype(np.float16).view(np.uint16)
    return {"packed": pack_even_low(codes.reshape(rows, cols)), "scales": scales.reshape(rows, -1)}


# ---- FP8 (§4-5) ----------------------------------------------------------------------------

def fp8(w, block_rows, block_cols):
    rows, cols = w.shape
    sr, sc = -(-rows // block_rows), -(-cols // block_cols)
    scales = np.zeros((sr, sc), F32)
    codes = np.zeros((rows, cols), np.uint8)
    for i in range(sr):
        for j in range(sc):
            sub = w[i * block_rows:(i + 1) * block_rows, j * block_cols:(j + 1) * block_cols]
            s = F32(np.abs(sub).max() / F32(448))
            if s == 0:
                s = F32(1)
            scales[i, j] = s
            codes[i * block_rows:(i + 1) * block_rows, j * block_cols:(j + 1) * block_cols] = (
                e4m3_torch_cast((sub / s).astype(F32)))
    rep = np.repeat(np.repeat(scales, block_rows, 0), block_cols, 1)[:rows, :cols]
    dequant = bf16((e4m3_value(codes) * rep).astype(F32)).view(np.uint32) >> 16
    return {"codes": codes, "scales": scales, "dequant_bf16": dequant.astype(np.uint16)}


# ---- driver --------------------------------------------------------------------------------

def f32_param(text):
    """A float32 given as its bit pattern (0x...) so that no decimal rounding intervenes."""
    return np.array([int(text, 16)], np.uint32).view(F32)[0]


def run_job(mode, w, params):
    if mode == "nvfp4-modelopt":
        return nvfp4_modelopt(w, f32_param(params["amax"]), clamp=params.get("clamp", "1") == "1")
    if mode == "nvfp4-ct":
        return nvfp4_ct(w, f32_param(params["amax"]), work=params.get("work", "bf16"))
    if mode == "nvfp4-act":
        return nvfp4_activation(w, f32_param(params["global"]))
    if mode.startswith("mxfp4-"):
        return mxfp4(w, mode[len("mxfp4-"):])
    if mode == "iq4nl16":
        importance = None
        if "importance" in params:
            importance = np.fromfile(params["importance"], dtype=F32)
        return iq4nl16(w, ntry=int(params.get("ntry", "7")),
                       reciprocal=params.get("reciprocal", "0") == "1", importance=importance)
    if mode == "fp8":
        return fp8(w, int(params["block_rows"]), int(params["block_cols"]))
    raise ValueError("unknown mode " + mode)


def run_jobs(path):
    with open(path) as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            mode, inp, rows, cols, out = parts[:5]
            params = dict(p.split("=", 1) for p in parts[5:])
            w = np.fromfile(inp, dtype=F32).reshape(int(rows), int(cols))
            for name, arr in run_job(mode, w, params).items():
                np.ascontiguousarray(arr).tofile(out + "." + name)


def selftest():
    # §2.8 worked block: amax forced to 2688 -> both globals 1.0.
    block = np.array([[0, .25, .75, 1.25, 1.75, 2.5, 3.5, 5, 6, 6, -.3, -.1, -1.75, -5.5, .5, 4]],
                     F32)
    want_packed = bytes.fromhex("0022446677 89FC61".replace(" ", ""))
    for r in (nvfp4_modelopt(block, 2688.0), nvfp4_ct(block, 2688.0)):
        assert r["global"][0] == 1.0, r["global"]
        assert r["scales"].tobytes() == b"\x38", r["scales"]
        assert r["packed"].tobytes() == want_packed, r["packed"].tobytes().hex()
    zero = np.zeros((1, 16), F32)
    assert nvfp4_modelopt(zero, 1.0)["scales"].tobytes() == b"\x38"
    assert nvfp4_ct(zero, 1.0)["scales"].tobytes() == b"\x20"
    assert nvfp4_modelopt(block, 3.0)["global"][0] == F32(3.0) / F32(2688)
    assert abs(float(F32(3.0) / F32(2688)) - 0.0011160715) < 1e-10
    assert nvfp4_ct(np.full((1, 16), 3.0, F32), 3.0)["global"][0] == 896.0
    print("selftest ok")


if __name__ == "__main__":
    if sys.argv[1] == "selftest":
        selftest()
    elif sys.argv[1] == "jobs":
        run_jobs(sys.argv[2])
    else:
        sys.exit("usage: quant_reference.py selftest | jobs JOBFILE")
