#!/usr/bin/env python3
"""Write a BF16 GGUF of an m2fp4 / Hugging Face MiniMax-M2 checkpoint, for llama.cpp.

    hf_to_gguf.py CHECKPOINT_DIR OUT.gguf

Only numpy and the `gguf` package (PyPI): no torch, no transformers. Safetensors are read through
their JSON header and numpy memory maps, BF16 stays BF16 bit for bit (as uint16), F32 stays F32.

The names, metadata and tensor layout follow llama.cpp's convert_hf_to_gguf.py for
MiniMaxM2ForCausalLM (conversion/minimax.py and TextModel.set_gguf_parameters in the vendored
tree): architecture "minimax-m2", the per-expert w1/w2/w3 stacked into ffn_gate_exps /
ffn_down_exps / ffn_up_exps of shape (experts, rows, cols), e_score_correction_bias as
exp_probs_b.bias, the router as ffn_gate_inp, sigmoid gating, rope.dimension_count = rotary_dim.
The vocabulary is a byte-level BPE ("gpt2" tokenizer model) whose pre-tokenizer name llama.cpp
picks from the Split regex in tokenizer.json (MiniMax-M2's own, or the Qwen2 regex make-tiny's
tokenizers use). Vectors (norms) become F32 as convert_hf_to_gguf.py writes them; matrices stay
BF16. Weights are written one tensor at a time, so memory stays at one stacked tensor.
"""
from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np
import gguf

ARCH = "minimax-m2"

# Pre-tokenizer regexes as they appear in tokenizer.json, and llama.cpp's name for each.
PRE_TOKENIZERS = {
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+": "qwen2",
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+"
    r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+"
    r"[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+": "minimax-m2",
}

ST_DTYPES = {"BF16": (np.uint16, gguf.GGMLQuantizationType.BF16),
             "F32": (np.float32, gguf.GGMLQuantizationType.F32)}


class Safetensors:
    """All tensors of a checkpoint folder (one file or shards with an index), memory-mapped."""

    def __init__(self, folder: Path):
        index = folder / "model.safetensors.index.json"
        if index.exists():
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        else:
            files = ["model.safetensors"]
        self.entries: dict[str, tuple[Path, str, list[int], int, int]] = {}
        for name in files:
            path = folder / name
            with open(path, "rb") as f:
                (header_len,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(header_len))
            base = 8 + header_len
            for key, info in header.items():
                if key == "__metadata__":
                    continue
                begin, end = info["data_offsets"]
                self.entries[key] = (path, info["dtype"], info["shape"], base + begin, end - begin)

    def has(self, name: str) -> bool:
        return name in self.entries

    def get(self, name: str) -> tuple[np.ndarray, gguf.GGMLQuantizationType]:
        if name not in self.entries:
            raise SystemExit(f"hf_to_gguf: tensor {name} missing from the checkpoint")
        path, dtype, shape, offset, nbytes = self.entries[name]
        if dtype not in ST_DTYPES:
            raise SystemExit(f"hf_to_gguf: {name} is {dtype}; only BF16/F32 checkpoints convert "
                             "(quantized checkpoints are made from the GGUF with llama-quantize)")
        np_dtype, ggml_type = ST_DTYPES[dtype]
        count = int(np.prod(shape)) if shape else 1
        assert count * np.dtype(np_dtype).itemsize == nbytes, name
        data = np.memmap(path, dtype=np_dtype, mode="r", offset=offset, shape=(count,))
        return data.reshape(shape), ggml_type


def add_vocab(writer: gguf.GGUFWriter, folder: Path, vocab_size: int) -> None:
    tok = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    model = tok["model"]
    if model.get("type") != "BPE":
        raise SystemExit("hf_to_gguf: only byte-level BPE tokenizers are supported")
    pre = None
    pretok = tok.get("pre_tokenizer") or {}
    steps = pretok.get("pretokenizers", [pretok])
    for step in steps:
        if step.get("type") == "Split":
            regex = step["pattern"].get("Regex")
            pre = PRE_TOKENIZERS.get(regex)
            if pre is None:
                raise SystemExit(f"hf_to_gguf: unknown pre-tokenizer regex {regex!r}")
    if pre is None:
        raise SystemExit("hf_to_gguf: tokenizer.json has no Split pre-tokenizer")

    id_to_token: dict[int, str] = {i: t for t, i in model["vocab"].items()}
    special: dict[int, bool] = {}
    for added in tok.get("added_tokens", []):
        id_to_token[added["id"]] = added["content"]
        special[added["id"]] = bool(added.get("special", False))
    if max(id_to_token) >= vocab_size:
        raise SystemExit(f"hf_to_gguf: token id {max(id_to_token)} >= vocab_size {vocab_size}")

    tokens: list[str] = []
    types: list[int] = []
    for i in range(vocab_size):
        if i not in id_to_token:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in special:
            tokens.append(id_to_token[i])
            types.append(gguf.TokenType.CONTROL if special[i] else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(id_to_token[i])
            types.append(gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    # Merges, bos/eos ids and add_bos from tokenizer.json / tokenizer_config.json / config.json.
    gguf.SpecialVocab(folder, load_merges=True, n_vocab=vocab_size).add_to_gguf(writer)


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    folder, out = Path(sys.argv[1]), Path(sys.argv[2])
    cfg = json.loads((folder / "config.json").read_text())
    if cfg.get("architectures", [cfg.get("architecture")])[0] != "MiniMaxM2ForCausalLM":
        raise SystemExit("hf_to_gguf: not a MiniMaxM2ForCausalLM checkpoint")
    if cfg.get("scoring_func", "sigmoid") != "sigmoid":
        raise SystemExit("hf_to_gguf: only sigmoid routing is supported")
    st = Safetensors(folder)
    layers = int(cfg["num_hidden_layers"])
    experts = int(cfg["num_local_experts"])

    writer = gguf.GGUFWriter(out, ARCH)
    writer.add_name(folder.name)
    writer.add_block_count(layers)
    writer.add_context_length(int(cfg["max_position_embeddings"]))
    writer.add_embedding_length(int(cfg["hidden_size"]))
    writer.add_feed_forward_length(int(cfg["intermediate_size"]))
    writer.add_expert_feed_forward_length(int(cfg["intermediate_size"]))
    writer.add_head_count(int(cfg["num_attention_heads"]))
    writer.add_head_count_kv(int(cfg["num_key_value_heads"]))
    writer.add_key_length(int(cfg["head_dim"]))
    writer.add_value_length(int(cfg["head_dim"]))
    writer.add_rope_dimension_count(int(cfg["rotary_dim"]))
    writer.add_rope_freq_base(float(cfg.get("rope_theta", 5000000.0)))
    writer.add_layer_norm_rms_eps(float(cfg.get("rms_norm_eps", 1e-6)))
    writer.add_expert_count(experts)
    writer.add_expert_used_count(int(cfg["num_experts_per_tok"]))
    writer.add_expert_gating_func(gguf.ExpertGatingFuncType.SIGMOID)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_BF16)
    add_vocab(writer, folder, int(cfg["vocab_size"]))

    # (gguf name, producer of the numpy array and its ggml type), in llama.cpp's order.
    plan: list[tuple[str, object]] = []

    def plain(name: str):
        def make():
            arr, ggml_type = st.get(name)
            # llama.cpp keeps vectors (norm weights, biases) in F32: its CPU add/mul ops have no
            # BF16 second operand. BF16 -> F32 is exact (the bits shifted up by 16).
            if arr.ndim == 1 and ggml_type == gguf.GGMLQuantizationType.BF16:
                return (arr.astype(np.uint32) << 16).view(np.float32), gguf.GGMLQuantizationType.F32
            return arr, ggml_type
        return make

    def stacked(layer: int, w: str):
        def make():
            parts = [st.get(f"model.layers.{layer}.block_sparse_moe.experts.{e}.{w}.weight")
                     for e in range(experts)]
            if len({p[1] for p in parts}) != 1:
                raise SystemExit(f"hf_to_gguf: layer {layer} {w}: experts of mixed dtypes")
            return np.stack([p[0] for p in parts]), parts[0][1]
        return make

    plan.append(("token_embd.weight", plain("model.embed_tokens.weight")))
    for layer in range(layers):
        p, b = f"model.layers.{layer}.", f"blk.{layer}."
        plan += [
            (b + "attn_norm.weight", plain(p + "input_layernorm.weight")),
            (b + "attn_q.weight", plain(p + "self_attn.q_proj.weight")),
            (b + "attn_k.weight", plain(p + "self_attn.k_proj.weight")),
            (b + "attn_v.weight", plain(p + "self_attn.v_proj.weight")),
            (b + "attn_output.weight", plain(p + "self_attn.o_proj.weight")),
            (b + "attn_q_norm.weight", plain(p + "self_attn.q_norm.weight")),
            (b + "attn_k_norm.weight", plain(p + "self_attn.k_norm.weight")),
            (b + "ffn_norm.weight", plain(p + "post_attention_layernorm.weight")),
            (b + "ffn_gate_inp.weight", plain(p + "block_sparse_moe.gate.weight")),
            (b + "exp_probs_b.bias", plain(p + "block_sparse_moe.e_score_correction_bias")),
            (b + "ffn_gate_exps.weight", stacked(layer, "w1")),
            (b + "ffn_down_exps.weight", stacked(layer, "w2")),
            (b + "ffn_up_exps.weight", stacked(layer, "w3")),
        ]
    plan.append(("output_norm.weight", plain("model.norm.weight")))
    lm_head = "lm_head.weight" if st.has("lm_head.weight") else "model.embed_tokens.weight"
    plan.append(("output.weight", plain(lm_head)))

    # Shapes and types first (the header), then the data one tensor at a time.
    for name, make in plan:
        if name.endswith("_exps.weight"):
            layer, w = int(name.split(".")[1]), {"gate": "w1", "down": "w2", "up": "w3"}[
                name.split(".")[2].split("_")[1]]
            first, ggml_type = st.get(f"model.layers.{layer}.block_sparse_moe.experts.0.{w}.weight")
            shape = (experts, *first.shape)
            nbytes = first.nbytes * experts
            dtype = first.dtype
        else:
            arr, ggml_type = make()
            shape, nbytes, dtype = arr.shape, arr.nbytes, arr.dtype
        writer.add_tensor_info(name, shape, dtype, nbytes, raw_dtype=ggml_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for name, make in plan:
        arr, _ = make()
        writer.write_tensor_data(np.ascontiguousarray(arr))
    writer.close()
    print(f"hf_to_gguf: wrote {out} ({len(plan)} tensors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
