#!/usr/bin/python3
"""Writes tests/oracle/fixtures/optimizer_oracle.json: parameters after each of 5 steps of
torch.optim.AdamW and torch.optim.SGD(momentum=0.9, nesterov=True, weight_decay=0.01) in float32.

Run from the repository root with Debian's interpreter (the only one that imports torch):
    /usr/bin/python3 tests/oracle/make_optimizer_oracle.py
The C++ test (tests/engine/optimizer_test.cc) replays the same inputs and compares to 1e-6 relative.
"""
import json
import os

import torch

STEPS = 5
# Two tensors so the arena has padding between them (12 and 5 elements, 16-element alignment).
SHAPES = {"w": [3, 4], "b": [5]}
# A different learning rate per step also checks that Step() uses the rate it is given.
LRS = [1e-2, 2e-2, 1.5e-2, 5e-3, 1e-2]


def initial_params(gen):
    # Magnitudes in [0.5, 2] keep every value away from zero, so a relative tolerance is meaningful.
    out = {}
    for name, shape in SHAPES.items():
        mag = 0.5 + 1.5 * torch.rand(shape, generator=gen, dtype=torch.float32)
        sign = torch.where(torch.rand(shape, generator=gen) < 0.5, -1.0, 1.0).to(torch.float32)
        out[name] = mag * sign
    return out


def grad_sequence(gen):
    return [{name: torch.randn(shape, generator=gen, dtype=torch.float32) for name, shape in SHAPES.items()}
            for _ in range(STEPS)]


def run(make_optimizer, init, grads):
    params = [torch.nn.Parameter(init[name].clone()) for name in SHAPES]
    opt = make_optimizer(params)
    history = []
    for step in range(STEPS):
        for group in opt.param_groups:
            group["lr"] = LRS[step]
        for p, name in zip(params, SHAPES):
            p.grad = grads[step][name].clone()
        opt.step()
        history.append({name: [float(x) for x in p.detach().flatten()] for p, name in zip(params, SHAPES)})
    return history


def main():
    gen = torch.Generator().manual_seed(20240611)
    init = initial_params(gen)
    grads = grad_sequence(gen)
    adamw_cfg = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.1}
    sgd_cfg = {"momentum": 0.9, "dampening": 0.0, "nesterov": True, "weight_decay": 0.01}
    adamw = run(lambda ps: torch.optim.AdamW(ps, lr=LRS[0], betas=(adamw_cfg["beta1"], adamw_cfg["beta2"]),
                                             eps=adamw_cfg["eps"], weight_decay=adamw_cfg["weight_decay"]),
                init, grads)
    sgd = run(lambda ps: torch.optim.SGD(ps, lr=LRS[0], momentum=sgd_cfg["momentum"],
                                         dampening=sgd_cfg["dampening"], nesterov=sgd_cfg["nesterov"],
                                         weight_decay=sgd_cfg["weight_decay"]),
              init, grads)
    fixture = {
        "generated_by": "tests/oracle/make_optimizer_oracle.py, torch " + torch.__version__ + ", float32",
        "tensors": [{"name": name, "shape": shape} for name, shape in SHAPES.items()],
        "lrs": LRS,
        "initial": {name: [float(x) for x in init[name].flatten()] for name in SHAPES},
        "grads": [{name: [float(x) for x in g[name].flatten()] for name in SHAPES} for g in grads],
        "adamw": {"options": adamw_cfg, "params_after_step": adamw},
        "sgd": {"options": sgd_cfg, "params_after_step": sgd},
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "optimizer_oracle.json")
    with open(path, "w") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
