#!/usr/bin/python3
"""Checks a model directory written by tributary's SaveModelDir / WriteRandomModelDir against HF.

Usage: /usr/bin/python3 tests/oracle/hf_roundtrip_check.py MODEL_DIR

1. Always (numpy only): re-reads config.json and every safetensors file with an independent parser
   (header layout, 8-byte header padding, offsets contiguous and in range, dtype x shape sizes,
   __metadata__ format "pt") and checks the tensor names against the HF LLaMA / Qwen2 layout.
2. When `transformers` and `torch` are importable: AutoModelForCausalLM.from_pretrained(MODEL_DIR)
   must load without missing / unexpected keys, its state_dict must equal the file contents exactly,
   and, when tokenizer.json is present, AutoTokenizer must load it and round-trip a sample text.
   Otherwise that part is reported as SKIP (Debian's torch 1.13 ships without transformers).

Exit status 0 when every executed check passed (skips included), 1 otherwise.
"""
import json
import os
import struct
import sys

import numpy as np

DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32,
          "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0, f"{path}: header length {n} is not padded to 8 bytes"
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    meta = header.pop("__metadata__", {})
    assert meta.get("format") == "pt", f"{path}: __metadata__.format is {meta.get('format')!r}, HF needs 'pt'"
    tensors, spans = {}, []
    for name, info in header.items():
        begin, end = info["data_offsets"]
        count = int(np.prod(info["shape"])) if info["shape"] else 1
        if info["dtype"] == "BF16":
            assert end - begin == 2 * count, f"{path}: {name}: size mismatch"
            bits = np.frombuffer(data[begin:end], dtype="<u2").astype(np.uint32) << 16
            arr = bits.view(np.float32)
        else:
            dt = np.dtype(DTYPES[info["dtype"]]).newbyteorder("<")
            assert end - begin == dt.itemsize * count, f"{path}: {name}: size mismatch"
            arr = np.frombuffer(data[begin:end], dtype=dt)
        tensors[name] = arr.reshape(info["shape"]).astype(np.float32)
        spans.append((begin, end))
    spans.sort()
    pos = 0
    for begin, end in spans:
        assert begin == pos, f"{path}: data is not contiguous at offset {pos}"
        pos = end
    assert pos == len(data), f"{path}: {len(data) - pos} trailing bytes"
    return tensors


def expected_names(cfg):
    names = ["model.embed_tokens.weight", "model.norm.weight"]
    bias = cfg.get("attention_bias", False) or cfg["model_type"] == "qwen2"
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        names += [p + f"self_attn.{x}_proj.weight" for x in "qkvo"]
        if bias:
            names += [p + f"self_attn.{x}_proj.bias" for x in "qkv"]
        names += [p + f"mlp.{x}_proj.weight" for x in ("gate", "up", "down")]
        names += [p + "input_layernorm.weight", p + "post_attention_layernorm.weight"]
    if not cfg.get("tie_word_embeddings", False):
        names.append("lm_head.weight")
    return set(names)


def load_weights(model_dir):
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(os.path.join(model_dir, "model.safetensors")):
        return read_safetensors(os.path.join(model_dir, "model.safetensors"))
    with open(index) as f:
        weight_map = json.load(f)["weight_map"]
    tensors = {}
    for shard in sorted(set(weight_map.values())):
        part = read_safetensors(os.path.join(model_dir, shard))
        for name in part:
            assert weight_map.get(name) == shard, f"{shard}: {name} is not mapped to this shard in the index"
        tensors.update(part)
    assert set(weight_map) == set(tensors), "index weight_map and shard contents differ"
    return tensors


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    model_dir = sys.argv[1]
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    assert cfg["architectures"][0] in ("LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM"), cfg["architectures"]
    assert cfg["torch_dtype"] in ("float32", "bfloat16", "float16"), cfg["torch_dtype"]
    tensors = load_weights(model_dir)
    want = expected_names(cfg)
    assert set(tensors) == want, f"tensor names differ: extra {set(tensors) - want}, missing {want - set(tensors)}"
    h, v = cfg["hidden_size"], cfg["vocab_size"]
    assert tensors["model.embed_tokens.weight"].shape == (v, h)
    print(f"OK: numpy check of {len(tensors)} tensors in {model_dir}")

    try:
        import torch  # noqa: F401
        import transformers
    except ImportError as e:
        print(f"SKIP: transformers check ({e})")
        return 0
    model, info = transformers.AutoModelForCausalLM.from_pretrained(model_dir, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    state = model.state_dict()
    for name, arr in tensors.items():
        got = state[name].detach().cpu().numpy()
        assert np.array_equal(got, arr), f"{name}: transformers' weights differ from the file"
    print("OK: transformers loaded the model with identical weights")
    if os.path.exists(os.path.join(model_dir, "tokenizer.json")):
        tok = transformers.AutoTokenizer.from_pretrained(model_dir)
        text = "Hello, world! 123 héllo"
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text, (ids, tok.decode(ids))
        print(f"OK: tokenizer round trip, ids {ids}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except AssertionError as e:
        print(f"FAIL: {e}")
        sys.exit(1)
