#!/usr/bin/env python3
"""Independent checker of `m2fp4 quantize` exports against their source checkpoint.

Written from /work/shared/specs/quant-formats.md (§2.2-2.6, §3, §4.2, §5, §6, §7), with numpy,
ml_dtypes and the spec-derived quantizers of quant_reference.py, never from m2fp4's C++. It checks
tensor by tensor: names, dtypes and shapes for the layout; NVFP4 global scales from the fused
group's weight amax; block scales and codes bit-exact against the reference quantization of the
source weights (FP8 sources dequantized to bf16 first); unquantized modules identical to the
source (or exactly converted to the model dtype); input and KV scales present, positive, shared
where the spec says and - given the calibration tokens - equal to the amaxes of an independent
float64 forward pass; config.json / hf_quant_config.json fields; copied tokenizer files.

Usage: export_checker.py SRC OUT --recipe R --format F [--ignore P ...] [--all-experts]
       [--tokens FILE.json]   (a JSON list of token-id lists: the calibration samples)
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import sys

import ml_dtypes
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "model"))
import minimax_m2_reference as mref  # noqa: E402
import quant_reference as qr  # noqa: E402

F32 = np.float32

# quant-formats.md §6 / the recipe table of the issue: what each recipe quantizes.
RECIPES = {
    "nvfp4": {"attention": "nvfp4", "experts": "nvfp4", "input_scales": True, "kv": False},
    "nvfp4-experts-fp8kv": {"attention": None, "experts": "nvfp4", "input_scales": True, "kv": True},
    "mxfp4": {"attention": "mxfp4", "experts": "mxfp4", "input_scales": False, "kv": False},
    "mxfp4-16": {"attention": "iq4nl16", "experts": "iq4nl16", "input_scales": False, "kv": True},
}
BLOCK = {"nvfp4": 16, "mxfp4": 32, "iq4nl16": 16}
NP_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
             "F8_E4M3": ml_dtypes.float8_e4m3fn, "U8": np.uint8, "I32": np.int32,
             "I64": np.int64, "F64": np.float64}


class CheckError(AssertionError):
    pass


def expect(cond, *msg):
    if not cond:
        raise CheckError(" ".join(str(m) for m in msg))


# ---- safetensors folders (read by hand: header JSON + raw little-endian data) --------------

class Folder:
    def __init__(self, path):
        self.path = path
        index = os.path.join(path, "model.safetensors.index.json")
        if os.path.exists(index):
            with open(index) as f:
                self.index = json.load(f)
            files = sorted(set(self.index["weight_map"].values()))
        else:
            self.index = None
            files = ["model.safetensors"]
        self.tensors = {}  # name -> (dtype, shape, raw bytes, file)
        for name in files:
            with open(os.path.join(path, name), "rb") as f:
                blob = f.read()
            n = int.from_bytes(blob[:8], "little")
            header = json.loads(blob[8:8 + n])
            data = blob[8 + n:]
            for key, info in header.items():
                if key == "__metadata__":
                    continue
                b, e = info["data_offsets"]
                self.tensors[key] = (info["dtype"], list(info["shape"]), data[b:e], name)
        with open(os.path.join(path, "config.json")) as f:
            self.config = json.load(f)

    def array(self, name):
        dtype, shape, raw, _ = self.tensors[name]
        return np.frombuffer(raw, dtype=NP_DTYPES[dtype]).reshape(shape)

    def f32(self, name):
        return self.array(name).astype(F32)


def source_weight(src: Folder, name: str) -> np.ndarray:
    """The source weight as the quantizers see it (§5: FP8 -> bf16(f32(e4m3 * scale_inv)))."""
    dtype = src.tensors[name][0]
    if dtype != "F8_E4M3":
        return src.f32(name)
    codes = src.array(name).astype(F32)
    scales = src.f32(name + "_scale_inv")
    rep = np.repeat(np.repeat(scales, 128, 0), 128, 1)[: codes.shape[0], : codes.shape[1]]
    return qr.bf16((codes * rep).astype(F32))


# ---- model structure and matching rules ------------------------------------------------------

def linear_modules(cfg):
    """(name, kind, layer, expert, rows, cols, fused group) in model (named_modules) order."""
    h, q, kv = cfg["hidden_size"], cfg["num_attention_heads"] * cfg["head_dim"], \
        cfg["num_key_value_heads"] * cfg["head_dim"]
    inter, n_exp = cfg["intermediate_size"], cfg["num_local_experts"]
    out = []
    for l in range(cfg["num_hidden_layers"]):
        a = f"model.layers.{l}.self_attn."
        for proj, rows in (("q_proj", q), ("k_proj", kv), ("v_proj", kv)):
            out.append((a + proj, "attention", l, -1, rows, h, f"{l}.qkv"))
        out.append((a + "o_proj", "attention", l, -1, h, q, None))
        m = f"model.layers.{l}.block_sparse_moe."
        out.append((m + "gate", "router", l, -1, n_exp, h, None))
        for e in range(n_exp):
            x = f"{m}experts.{e}."
            out.append((x + "w1", "w13", l, e, inter, h, f"{l}.{e}.w13"))
            out.append((x + "w2", "w2", l, e, h, inter, None))
            out.append((x + "w3", "w13", l, e, inter, h, f"{l}.{e}.w13"))
    out.append(("lm_head", "lm_head", -1, -1, cfg["vocab_size"], h, None))
    return out


def m2fp4_ignore_match(pattern, name):
    """--ignore rules: re: = anchored regex (re.match); wildcard = fnmatch; else exact."""
    if pattern.startswith("re:"):
        return re.match(pattern[3:], name) is not None
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(name, pattern)
    return pattern == name


def ct_ignore_match(entry, name):
    """§6.2: compressed-tensors `ignore`: re: = re.match on the module name, else equality."""
    if entry.startswith("re:"):
        return re.match(entry[3:], name) is not None
    return entry == name


def modelopt_exclude_match(entry, name):
    """§6.1: exact names and fnmatch wildcards (`prefix*` also stands for prefix and prefix.*)."""
    if entry == name or fnmatch.fnmatchcase(name, entry):
        return True
    if entry.endswith("*"):
        stem = entry[:-1].rstrip(".")
        return name == stem or name.startswith(stem + ".")
    return False


# ---- independent calibration: float64 forward with observation hooks (§7.1) -----------------

def reference_calibration(src_dir, samples, all_experts):
    """Per layer: amaxes of every quantized input and of the cached k/v, per-expert input amaxes,
    and the experts whose routing is ambiguous (top-k boundary within 1e-6), to be skipped."""
    cfg, w = mref.load_checkpoint(src_dir)
    eps, theta = float(cfg["rms_norm_eps"]), float(cfg["rope_theta"])
    nh, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    rot, k_top, n_exp = cfg.get("rotary_dim", hd // 2), cfg["num_experts_per_tok"], \
        cfg["num_local_experts"]
    layers = []
    for l in range(cfg["num_hidden_layers"]):
        layers.append({"qkv": 0.0, "o": 0.0, "router": 0.0, "k": 0.0, "v": 0.0,
                       "w13": np.zeros(n_exp), "w2": np.zeros(n_exp),
                       "rows": np.zeros(n_exp, np.int64), "ambiguous": set()})
    for tokens in samples:
        x = w["model.embed_tokens.weight"][np.asarray(tokens)]
        t = len(tokens)
        for l, rec in enumerate(layers):
            p = f"model.layers.{l}."
            a = p + "self_attn."
            h = mref.rms_norm(x, w[p + "input_layernorm.weight"], eps)
            rec["qkv"] = max(rec["qkv"], np.abs(h).max())
            q = mref.rms_norm(h @ w[a + "q_proj.weight"].T, w[a + "q_norm.weight"], eps)
            k = mref.rms_norm(h @ w[a + "k_proj.weight"].T, w[a + "k_norm.weight"], eps)
            v = h @ w[a + "v_proj.weight"].T
            pos = np.arange(t)
            q = mref.rope_rotate_half(q.reshape(t, nh, hd), pos, rot, theta)
            k = mref.rope_rotate_half(k.reshape(t, nkv, hd), pos, rot, theta)
            v = v.reshape(t, nkv, hd)
            rec["k"], rec["v"] = max(rec["k"], np.abs(k).max()), max(rec["v"], np.abs(v).max())
            att = np.empty((t, nh, hd))
            causal = np.tril(np.ones((t, t), bool))
            for head in range(nh):
                kv = head // (nh // nkv)
                s = np.where(causal, (q[:, head] @ k[:, kv].T) / np.sqrt(hd), -np.inf)
                pr = np.exp(s - s.max(axis=-1, keepdims=True))
                att[:, head] = (pr / pr.sum(axis=-1, keepdims=True)) @ v[:, kv]
            att = att.reshape(t, nh * hd)
            rec["o"] = max(rec["o"], np.abs(att).max())
            x = x + att @ w[a + "o_proj.weight"].T
            m = p + "block_sparse_moe."
            h = mref.rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
            rec["router"] = max(rec["router"], np.abs(h).max())
            scores = 1.0 / (1.0 + np.exp(-(h @ w[m + "gate.weight"].T)))
            choice = scores + w[m + "e_score_correction_bias"][None, :]
            order = np.argsort(-choice, axis=-1, kind="stable")
            chosen = order[:, :k_top]
            for i in range(t):  # near-ties at the top-k boundary may route differently in f32
                if k_top < n_exp and choice[i, order[i, k_top - 1]] - choice[i, order[i, k_top]] < 1e-6:
                    rec["ambiguous"].update(int(e) for e in order[i, k_top - 1:k_top + 1])
            picked = np.take_along_axis(scores, chosen, axis=-1)
            mix = picked / picked.sum(axis=-1, keepdims=True)
            out = np.zeros_like(h)
            for e in range(n_exp):
                rows = np.arange(t) if all_experts else np.nonzero((chosen == e).any(axis=1))[0]
                if len(rows) == 0:
                    continue
                xe = h[rows]
                x_ = f"{m}experts.{e}."
                mid = mref.silu(xe @ w[x_ + "w1.weight"].T) * (xe @ w[x_ + "w3.weight"].T)
                rec["rows"][e] += len(rows)
                rec["w13"][e] = max(rec["w13"][e], np.abs(xe).max())
                rec["w2"][e] = max(rec["w2"][e], np.abs(mid).max())
                y = mid @ w[x_ + "w2.weight"].T
                for r_i, r in enumerate(rows):
                    hit = np.nonzero(chosen[r] == e)[0]
                    if len(hit):
                        out[r] += mix[r, hit[0]] * y[r_i]
            x = x + out
    for rec in layers:  # §7.2: experts without a calibration row get the layer max
        seen = rec["rows"] > 0
        for key in ("w13", "w2"):
            rec[key] = np.where(seen, rec[key], rec[key][seen].max() if seen.any() else 0.0)
    return layers


def synthetic_tokens(index, length, vocab):
    """quantize_calibration.h: splitmix64 seeded with index ^ 0x6D326670342D6361, id = r % V."""
    mask = (1 << 64) - 1
    state = (0x6D326670342D6361 ^ index) & mask
    out = []
    for _ in range(length):
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        out.append((z ^ (z >> 31)) % vocab)
    return out


# ---- the checker -------------------------------------------------------------------------------

class Checker:
    def __init__(self, src_dir, out_dir, recipe, layout, ignore=(), samples=None,
                 all_experts=False):
        self.src, self.out = Folder(src_dir), Folder(out_dir)
        self.src_dir, self.out_dir = src_dir, out_dir
        self.recipe, self.layout, self.rules = recipe, layout, RECIPES[recipe]
        self.ignore, self.samples, self.all_experts = list(ignore), samples, all_experts
        self.cfg = self.src.config
        self.model_dtype = "F32" if self.cfg.get("torch_dtype") == "float32" else "BF16"
        self.summary = {"quantized": 0, "kept": 0, "nvfp4_rule": set(), "checked_inputs": 0}
        self.expected = {}  # output name -> (dtype, shape)

    # -- plan, independently: which module gets which scheme
    def scheme(self, name, kind):
        if kind in ("router", "lm_head"):
            return None
        s = self.rules["attention"] if kind == "attention" else self.rules["experts"]
        if s and any(m2fp4_ignore_match(p, name) for p in self.ignore):
            return None
        return s

    def run(self):
        mods = linear_modules(self.cfg)
        schemes = {m[0]: self.scheme(m[0], m[1]) for m in mods}
        calib = (reference_calibration(self.src_dir, self.samples, self.all_experts)
                 if self.samples is not None else None)
        self.check_copies()
        group_amax = {}
        for name, kind, layer, expert, rows, cols, group in mods:
            if group and schemes[name] == "nvfp4" and group not in group_amax:
                members = [m[0] for m in mods if m[6] == group]
                group_amax[group] = max(np.abs(source_weight(self.src, m + ".weight")).max()
                                        for m in members)
        for name, kind, layer, expert, rows, cols, group in mods:
            if name == "lm_head" and "lm_head.weight" not in self.src.tensors:
                continue
            s = schemes[name]
            if s is None:
                self.check_kept(name)
            else:
                amax = (group_amax[group] if group and s == "nvfp4" else
                        np.abs(source_weight(self.src, name + ".weight")).max())
                self.check_quantized(name, kind, layer, expert, s, amax, calib)
        self.check_fused_input_scales(mods, schemes)
        if self.rules["kv"]:
            self.check_kv(calib)
        expect(set(self.out.tensors) == set(self.expected),
               "unexpected tensors:", sorted(set(self.out.tensors) - set(self.expected))[:5],
               "missing tensors:", sorted(set(self.expected) - set(self.out.tensors))[:5])
        for name, (dtype, shape) in self.expected.items():
            got = self.out.tensors[name]
            expect(got[0] == dtype and got[1] == list(shape), name, "is", got[0], got[1],
                   "expected", dtype, list(shape))
        self.check_index()
        self.check_configs(mods, schemes)
        self.check_companions()
        self.summary["nvfp4_rule"] = sorted(self.summary["nvfp4_rule"])
        return self.summary

    def want(self, name, dtype, shape):
        self.expected[name] = (dtype, tuple(shape))

    def check_copies(self):
        names = ["model.embed_tokens.weight", "model.norm.weight"]
        for l in range(self.cfg["num_hidden_layers"]):
            p = f"model.layers.{l}."
            names += [p + "input_layernorm.weight", p + "post_attention_layernorm.weight",
                      p + "self_attn.q_norm.weight", p + "self_attn.k_norm.weight",
                      p + "block_sparse_moe.e_score_correction_bias"]
        for n in names:
            dtype, shape, raw, _ = self.src.tensors[n]
            self.want(n, dtype, shape)
            expect(self.out.tensors[n][2] == raw, n, "differs from the source")

    def check_kept(self, name):
        """Unquantized Linear: the model dtype; bytes identical when the source has it (§2.5)."""
        n = name + ".weight"
        dtype, shape, raw, _ = self.src.tensors[n]
        self.want(n, self.model_dtype, shape)
        self.summary["kept"] += 1
        if dtype == self.model_dtype:
            expect(self.out.tensors[n][2] == raw, n, "is not byte-identical to the source")
            return
        value = source_weight(self.src, n)
        want = qr.bf16(value) if self.model_dtype == "BF16" else value
        expect(np.array_equal(self.out.f32(n), want), n, "is not the source converted to",
               self.model_dtype)

    def check_quantized(self, name, kind, layer, expert, scheme, group_amax, calib):
        self.summary["quantized"] += 1
        w = source_weight(self.src, name + ".weight")
        rows, cols = w.shape
        expect(cols % BLOCK[scheme] == 0, name, "in width", cols, "is not a multiple of the block")
        mo = self.layout == "modelopt"
        packed_name = name + (".weight" if mo else ".weight_packed")
        self.want(packed_name, "U8", (rows, cols // 2))
        packed = self.out.array(packed_name)
        if scheme == "nvfp4":
            self.want(name + ".weight_scale", "F8_E4M3", (rows, cols // 16))
            scales = self.out.array(name + ".weight_scale").view(np.uint8)
            gname = name + (".weight_scale_2" if mo else ".weight_global_scale")
            self.want(gname, "F32", () if mo else (1,))
            g = F32(self.out.f32(gname).reshape(-1)[0])
            if mo:  # §2.2 modelopt: weight_scale_2 = amax / 2688, clamp of >= 0.45 or not
                expect(g == F32(F32(group_amax) / F32(2688)), gname, g, "!= group amax / 2688")
                candidates = [("modelopt", qr.nvfp4_modelopt(w, group_amax, True)),
                              ("modelopt-unclamped", qr.nvfp4_modelopt(w, group_amax, False))]
            else:
                candidates = [("ct-bf16", qr.nvfp4_ct(w, group_amax, "bf16")),
                              ("ct-f32", qr.nvfp4_ct(w, group_amax, "f32"))]
            matched = [rule for rule, ref in candidates
                       if ref["global"][0] == g and np.array_equal(ref["scales"], scales)
                       and np.array_equal(ref["packed"], packed)]
            expect(matched, name, "NVFP4 global/block scales/codes match no reference rule",
                   [(r, int((ref["scales"] != scales).sum()), int((ref["packed"] != packed).sum()))
                    for r, ref in candidates])
            self.summary["nvfp4_rule"].add(matched[0])
            if self.rules["input_scales"]:
                iname = name + (".input_scale" if mo else ".input_global_scale")
                self.want(iname, "F32", () if mo else (1,))
                value = F32(self.out.f32(iname).reshape(-1)[0])
                expect(np.isfinite(value) and value > 0, iname, "is not finite and positive")
                if calib is not None:
                    self.check_input_amax(iname, value, kind, layer, expert, calib)
        elif scheme == "mxfp4":
            self.want(name + ".weight_scale", "U8", (rows, cols // 32))
            ref = qr.mxfp4(w, "modelopt" if mo else "ct")
            expect(np.array_equal(ref["scales"], self.out.array(name + ".weight_scale")),
                   name, "E8M0 scales differ from the reference")
            expect(np.array_equal(ref["packed"], packed), name, "MXFP4 codes differ")
        else:
            self.want(name + ".weight_scale", "F16", (rows, cols // 16))
            ref = qr.iq4nl16(w)
            got = self.out.array(name + ".weight_scale").view(np.uint16)
            expect(np.array_equal(ref["scales"], got), name, "fp16 scales differ from the reference")
            expect(np.array_equal(ref["packed"], packed), name, "IQ4_NL codes differ")

    def check_input_amax(self, iname, value, kind, layer, expert, calib):
        rec = calib[layer]
        if kind in ("w13", "w2") and expert in rec["ambiguous"]:
            return
        ref = {"attention": rec["qkv"] if iname.split(".")[-2] in ("q_proj", "k_proj", "v_proj")
               else rec["o"], "w13": rec["w13"][max(expert, 0)],
               "w2": rec["w2"][max(expert, 0)]}[kind]
        implied = value * 2688.0 if self.layout == "modelopt" else 2688.0 / value
        # float32 forward vs float64 reference; compressed-tensors may round 2688/amax to bf16
        rtol = 1e-4 if self.layout == "modelopt" else 4e-3
        expect(abs(implied - ref) <= rtol * ref, iname, "implies input amax", implied,
               "but the reference forward gives", ref)
        self.summary["checked_inputs"] += 1

    def check_fused_input_scales(self, mods, schemes):
        """§2.3/§7.1: q/k/v and w1/w3 share one input scale."""
        if not self.rules["input_scales"]:
            return
        suffix = ".input_scale" if self.layout == "modelopt" else ".input_global_scale"
        groups = {}
        for m in mods:
            if m[6] and schemes[m[0]] == "nvfp4":
                groups.setdefault(m[6], []).append(self.out.tensors[m[0] + suffix][2])
        for g, values in groups.items():
            expect(len(set(values)) == 1, "fused group", g, "has different input scales")

    def check_kv(self, calib):
        mo = self.layout == "modelopt"
        for l in range(self.cfg["num_hidden_layers"]):
            for which in "kv":
                a = f"model.layers.{l}.self_attn."
                name = a + (f"{which}_proj.{which}_scale" if mo else f"{which}_scale")
                dtype = "F32" if mo else self.model_dtype
                self.want(name, dtype, () if mo else (1,))
                value = float(self.out.f32(name).reshape(-1)[0])
                expect(np.isfinite(value) and value > 0, name, "is not finite and positive")
                if calib is not None:
                    ref = calib[l][which] / 448.0
                    rtol = 1e-4 if dtype == "F32" else 2.0**-8
                    expect(abs(value - ref) <= rtol * ref, name, value, "!= amax/448 =", ref)

    def check_index(self):
        if self.out.index is None:
            expect(len({t[3] for t in self.out.tensors.values()}) == 1, "several files, no index")
            return
        wm = self.out.index["weight_map"]
        expect(set(wm) == set(self.out.tensors), "index weight_map does not list every tensor")
        for n, (_, _, raw, file) in self.out.tensors.items():
            expect(wm[n] == file, n, "is in", file, "but the index says", wm[n])
        total = sum(len(t[2]) for t in self.out.tensors.values())
        expect(self.out.index["metadata"]["total_size"] == total, "index total_size is wrong")

    def check_configs(self, mods, schemes):
        out_cfg = dict(self.out.config)
        qc = out_cfg.pop("quantization_config")
        src_cfg = {k: v for k, v in self.src.config.items() if k != "quantization_config"}
        expect(out_cfg == src_cfg, "config.json fields other than quantization_config changed")
        linear = [m[0] for m in mods if m[0] != "lm_head" or "lm_head.weight" in self.src.tensors]
        kept = {n for n in linear if schemes[n] is None}
        quantized = [n for n in linear if schemes[n] is not None]
        nv = self.rules["experts"] == "nvfp4"
        if self.layout == "modelopt":
            with open(os.path.join(self.out_dir, "hf_quant_config.json")) as f:
                hf = json.load(f)
            q = hf["quantization"]
            iq = self.rules["experts"] == "iq4nl16"
            want_algo = "NVFP4" if nv else ("MXFP4_16" if iq else "mxfp4")
            expect(q["quant_algo"] == want_algo, "quant_algo", q["quant_algo"])
            expect(q["kv_cache_quant_algo"] == ("FP8" if self.rules["kv"] else None),
                   "kv_cache_quant_algo", q["kv_cache_quant_algo"])
            expect(not (nv or iq) or q["group_size"] == 16, "group_size must be 16")
            excl = q["exclude_modules"]
            expect(excl == sorted(excl), "exclude_modules not sorted")
            matched = {n for n in linear if any(modelopt_exclude_match(e, n) for e in excl)}
            expect(matched == kept, "exclude_modules select", sorted(matched ^ kept)[:4],
                   "wrongly")
            if not self.ignore and self.recipe == "nvfp4-experts-fp8kv":  # §6.1 literally
                want = ["lm_head"] + [f"model.layers.{l}.{s}"
                                      for l in range(self.cfg["num_hidden_layers"])
                                      for s in ("block_sparse_moe.gate", "self_attn*")]
                expect(excl == sorted(want), "exclude_modules", excl, "!= §6.1", sorted(want))
            expect(qc["quant_method"] == "modelopt" and qc["quant_algo"] == q["quant_algo"],
                   "config.json quant_method/quant_algo")
            expect(qc["ignore"] == excl, "config.json ignore != exclude_modules")
            if nv:
                grp = qc["config_groups"]["group_0"]
                spec = {"dynamic": False, "num_bits": 4, "type": "float", "group_size": 16}
                expect(grp["weights"] == spec and grp["input_activations"] == spec
                       and grp["targets"] == ["Linear"], "config_groups differ from §6.1")
            elif iq:  # weight-only, fp16 scale per 16
                grp = qc["config_groups"]["group_0"]
                spec = {"dynamic": False, "num_bits": 4, "type": "float", "group_size": 16}
                expect(grp["weights"] == spec and "input_activations" not in grp
                       and grp["targets"] == ["Linear"], "config_groups", grp)
            kv = {"dynamic": False, "num_bits": 8, "type": "float"} if self.rules["kv"] else None
            expect(qc.get("kv_cache_scheme") == kv, "kv_cache_scheme", qc.get("kv_cache_scheme"))
        else:
            expect(not os.path.exists(os.path.join(self.out_dir, "hf_quant_config.json")),
                   "hf_quant_config.json in a compressed-tensors export")
            fmt = {"nvfp4": "nvfp4-pack-quantized", "mxfp4": "mxfp4-pack-quantized",
                   "iq4nl16": "mxfp4_16"}[self.rules["experts"]]
            expect(qc["quant_method"] == "compressed-tensors" and qc["format"] == fmt
                   and qc["quantization_status"] == "compressed", "CT header fields", qc)
            grp = qc["config_groups"]["group_0"]
            wts = grp["weights"]
            expect(grp["targets"] == ["Linear"], "targets")
            want_w = {"nvfp4": ("tensor_group", 16, "torch.float8_e4m3fn"),
                      "mxfp4": ("group", 32, "torch.uint8"),
                      "iq4nl16": ("group", 16, "torch.float16")}[self.rules["experts"]]
            expect((wts["strategy"], wts["group_size"], wts["scale_dtype"]) == want_w
                   and wts["num_bits"] == 4 and wts["type"] == "float" and wts["symmetric"]
                   and wts["dynamic"] is False, "weights args", wts)
            ia = grp["input_activations"]
            if nv:
                expect(ia["num_bits"] == 4 and ia["type"] == "float" and ia["group_size"] == 16
                       and ia["strategy"] == "tensor_group" and ia["dynamic"] == "local",
                       "input_activations", ia)
            else:
                expect(ia is None, "input_activations must be null for weight-only", ia)
            kv = qc["kv_cache_scheme"]
            if self.rules["kv"]:
                expect(kv["num_bits"] == 8 and kv["type"] == "float" and
                       kv["strategy"] == "tensor" and kv["dynamic"] is False, "kv_cache_scheme", kv)
            else:
                expect(kv is None, "kv_cache_scheme must be null")
            matched = {n for n in linear if any(ct_ignore_match(e, n) for e in qc["ignore"])}
            expect(matched == kept, "ignore selects", sorted(matched ^ kept)[:4], "wrongly")
        expect(len(quantized) == self.summary["quantized"], "quantized module count")

    def check_companions(self):
        for name in os.listdir(self.src_dir):
            if name.endswith(".safetensors") or name in (
                    "config.json", "model.safetensors.index.json") or name.startswith("."):
                continue
            path = os.path.join(self.src_dir, name)
            if not os.path.isfile(path):
                continue
            out = os.path.join(self.out_dir, name)
            expect(os.path.exists(out), name, "was not copied")
            with open(path, "rb") as a, open(out, "rb") as b:
                expect(a.read() == b.read(), name, "differs from the source")


def check_export(src_dir, out_dir, recipe, layout, ignore=(), samples=None, all_experts=False):
    return Checker(src_dir, out_dir, recipe, layout, ignore, samples, all_experts).run()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--recipe", required=True, choices=sorted(RECIPES))
    ap.add_argument("--format", required=True, choices=["compressed-tensors", "modelopt"])
    ap.add_argument("--ignore", action="append", default=[])
    ap.add_argument("--all-experts", action="store_true")
    ap.add_argument("--tokens", help="JSON list of calibration token-id lists")
    a = ap.parse_args()
    samples = None
    if a.tokens:
        with open(a.tokens) as f:
            samples = json.load(f)
    try:
        summary = check_export(a.src, a.out, a.recipe, a.format, a.ignore, samples, a.all_experts)
    except CheckError as e:
        print("FAIL:", e)
        return 1
    print("OK", json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
