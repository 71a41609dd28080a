#!/usr/bin/python3
"""Checks a LoRA adapter directory written by tributary (peft/lora.h) against the HF PEFT conventions.

Usage: /usr/bin/python3 tests/oracle/peft_roundtrip_check.py ADAPTER_DIR BASE_MODEL_DIR MERGED_MODEL_DIR

1. Always (numpy only): parses adapter_config.json and adapter_model.safetensors independently of
   tributary; every key must be base_model.model.model.layers.{i}.{self_attn|mlp}.{x}_proj.lora_{A|B}.weight
   with A [r, in] and B [out, r] where (out, in) is the base weight's shape, each A paired with its B,
   the modules seen equal to target_modules and every layer covered. Then the merged model's
   weights (written by tributary's MergeInto) must equal W + (lora_alpha / r) * B @ A computed here in
   float64, to 1e-5, and every other tensor must equal the base exactly.
2. When `peft` and `transformers` are importable: PeftModel.from_pretrained on the base model with this
   adapter, merge_and_unload(), and compare its state_dict with the merged directory to 1e-5.
   Otherwise that part prints "SKIP: ..." (Debian's torch 1.13 ships without them).

Exit status 0 when every executed check passed (skips included), 1 on a failed check, 2 on bad usage.
"""
import json
import os
import re
import struct
import sys

import numpy as np

KEY = re.compile(r"^base_model\.model\.model\.layers\.(\d+)\.(self_attn|mlp)\."
                 r"(q|k|v|o|gate|up|down)_proj\.lora_(A|B)\.weight$")
ATTENTION = {"q", "k", "v", "o"}


def read_f32_safetensors(path):
    """name -> float32 array; only F32 tensors (what tributary writes for adapters and F32 models)."""
    with open(path, "rb") as f:
        raw = f.read()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + header_len])
    header.pop("__metadata__", None)
    data = raw[8 + header_len:]
    out = {}
    for name, info in header.items():
        assert info["dtype"] == "F32", f"{os.path.basename(path)}: {name}: dtype {info['dtype']}, expected F32"
        begin, end = info["data_offsets"]
        count = int(np.prod(info["shape"], dtype=np.int64)) if info["shape"] else 1
        assert end - begin == 4 * count, f"{os.path.basename(path)}: {name}: byte size does not match shape"
        out[name] = np.frombuffer(data[begin:end], dtype="<f4").reshape(info["shape"])
    return out


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    adapter_dir, base_dir, merged_dir = sys.argv[1:]
    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        cfg = json.load(f)
    assert cfg["peft_type"] == "LORA", cfg["peft_type"]
    assert cfg["task_type"] == "CAUSAL_LM", cfg["task_type"]
    assert cfg["bias"] == "none" and cfg["fan_in_fan_out"] is False, cfg
    r, alpha = cfg["r"], cfg["lora_alpha"]
    assert isinstance(r, int) and r >= 1, r
    targets = set(cfg["target_modules"])
    with open(os.path.join(base_dir, "config.json")) as f:
        model_cfg = json.load(f)
    layers = model_cfg["num_hidden_layers"]

    adapter = read_f32_safetensors(os.path.join(adapter_dir, "adapter_model.safetensors"))
    base = read_f32_safetensors(os.path.join(base_dir, "model.safetensors"))
    merged = read_f32_safetensors(os.path.join(merged_dir, "model.safetensors"))
    assert set(base) == set(merged), "base and merged models hold different tensor names"

    pairs = {}
    for name, arr in adapter.items():
        m = KEY.match(name)
        assert m, f"{name}: not a PEFT LoRA key for a LLaMA projection"
        layer, group, proj, which = int(m.group(1)), m.group(2), m.group(3), m.group(4)
        assert (group == "self_attn") == (proj in ATTENTION), f"{name}: {proj}_proj under {group}"
        assert f"{proj}_proj" in targets, f"{name}: module not in target_modules {sorted(targets)}"
        assert 0 <= layer < layers, f"{name}: layer out of range for {layers} layers"
        pairs.setdefault((layer, group, proj), {})[which] = arr
    assert len(pairs) == layers * len(targets), f"{len(pairs)} adapted modules, expected {layers * len(targets)}"

    scaling = float(alpha) / float(r)
    touched = set()
    for (layer, group, proj), ab in sorted(pairs.items()):
        assert set(ab) == {"A", "B"}, f"layer {layer} {proj}_proj: lora_A / lora_B not paired"
        wname = f"model.layers.{layer}.{group}.{proj}_proj.weight"
        w = base[wname].astype(np.float64)
        a, b = ab["A"].astype(np.float64), ab["B"].astype(np.float64)
        assert a.shape == (r, w.shape[1]), f"{wname}: lora_A shape {a.shape}, expected {(r, w.shape[1])}"
        assert b.shape == (w.shape[0], r), f"{wname}: lora_B shape {b.shape}, expected {(w.shape[0], r)}"
        want = w + scaling * (b @ a)
        err = float(np.max(np.abs(merged[wname].astype(np.float64) - want)))
        assert err <= 1e-5, f"{wname}: merged weight differs from W + (alpha/r) B A by {err}"
        touched.add(wname)
    for name in base:
        if name not in touched:
            assert np.array_equal(base[name], merged[name]), f"{name}: changed by the merge but not adapted"
    print(f"OK: numpy check of {len(adapter)} adapter tensors and {len(touched)} merged weights")

    try:
        import torch  # noqa: F401
        import peft
        import transformers
    except ImportError as e:
        print(f"SKIP: peft check ({e})")
        return 0
    model = transformers.AutoModelForCausalLM.from_pretrained(base_dir, torch_dtype=torch.float32)
    model = peft.PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    state = model.state_dict()
    for name, arr in merged.items():
        got = state[name].detach().cpu().numpy().astype(np.float64)
        err = float(np.max(np.abs(got - arr.astype(np.float64))))
        assert err <= 1e-5, f"{name}: PEFT's merged weight differs from tributary's by {err}"
    print("OK: PEFT loaded the adapter and its merge equals tributary's")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (AssertionError, KeyError) as e:
        print(f"FAIL: {e!r}")
        sys.exit(1)
