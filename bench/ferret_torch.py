#!/usr/bin/python3
"""Ferret reference-method peer for bench/ferret_bench.cc (PyTorch 1.13, CPU, fp32).

The reference code (allen4747/Ferret) regenerates every random vector by reseeding torch and filling
a block-sized tensor with trunc_normal_(0, 1, -1/sqrt(d), 1/sqrt(d)); the client dots it with the
update, the server adds coefficient * vector (with the per-vector norm clip at 10). This script times
exactly that on a subset of seeds and reports seconds per (element * seed), so it can be extrapolated
to K = 200. Run with /usr/bin/python3 (Debian's torch 1.13).
"""
import argparse
import math
import os
import time

import torch


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--d", type=int, default=100_000_000, help="block size (elements)")
    parser.add_argument("--k", type=int, default=2, help="seeds to time (extrapolate to K per element*seed)")
    parser.add_argument("--K", type=int, default=200, help="seed budget used for the gamma scale")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count())
    d, k = args.d, args.k
    a = 1.0 / math.sqrt(d)
    gen = torch.Generator().manual_seed(0)
    delta = torch.randn(d, generator=gen) * 1e-3
    weights = torch.zeros(d)
    v = torch.empty(d)
    seeds = [int(s) for s in torch.randint(1, 10**11, (k,), generator=gen)]

    # Client: project (FerretFramework.project_update): reseed, fill, dot, scale by d / K_l.
    t0, c0 = time.perf_counter(), time.process_time()
    gammas = []
    for seed in seeds:
        torch.manual_seed(seed)
        torch.nn.init.trunc_normal_(v, mean=0.0, std=1.0, a=-a, b=a)
        gammas.append(float(torch.dot(delta, v)) * d / args.K)
    t_project, c_project = time.perf_counter() - t0, time.process_time() - c0

    # Server (update_global_model_by_seed_pool -> update): reseed, fill, u = gamma v, finite check,
    # clip to norm 10, w -= slr * s * u.
    slr = 1.0
    t0, c0 = time.perf_counter(), time.process_time()
    for seed, gamma in zip(seeds, gammas):
        torch.manual_seed(seed)
        torch.nn.init.trunc_normal_(v, mean=0.0, std=1.0, a=-a, b=a)
        u = v * gamma
        if bool(torch.isfinite(u).all()):
            scale = min(1.0, 10.0 / (float(u.norm()) + 1e-8))
            weights.sub_(u, alpha=slr * scale)
    t_apply, c_apply = time.perf_counter() - t0, time.process_time() - c0

    print(f"torch_threads {torch.get_num_threads()}")
    print(f"torch_project_ns_per_elem_seed {t_project / (d * k) * 1e9:.6f}")
    print(f"torch_apply_ns_per_elem_seed {t_apply / (d * k) * 1e9:.6f}")
    # CPU seconds of all threads: comparable across runs on a shared, loaded machine.
    print(f"torch_project_cpu_ns_per_elem_seed {c_project / (d * k) * 1e9:.6f}")
    print(f"torch_apply_cpu_ns_per_elem_seed {c_apply / (d * k) * 1e9:.6f}")


if __name__ == "__main__":
    main()
