#!/usr/bin/python3
"""PyTorch peer of bench/train_step_bench.cc: one full LLaMA training step (forward + backward + AdamW)
of the same architecture, fp32 on CPU with all cores. Launched by train_step_bench (run it with
Debian's /usr/bin/python3, which has torch 1.13). Prints one line:
    RESULT tokens_per_s=<median> step_ms=<median> tokens_per_cpu_s=<median> loss=<last> threads=<n>
"""
import argparse
import math
import os
import statistics
import time

import torch
import torch.nn.functional as F


class RMSNorm(torch.nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        var = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Layer(torch.nn.Module):
    def __init__(self, a):
        super().__init__()
        self.nh, self.nkv, self.d = a.heads, a.kv_heads, a.hidden // a.heads
        self.q_proj = torch.nn.Linear(a.hidden, self.nh * self.d, bias=False)
        self.k_proj = torch.nn.Linear(a.hidden, self.nkv * self.d, bias=False)
        self.v_proj = torch.nn.Linear(a.hidden, self.nkv * self.d, bias=False)
        self.o_proj = torch.nn.Linear(self.nh * self.d, a.hidden, bias=False)
        self.gate_proj = torch.nn.Linear(a.hidden, a.inter, bias=False)
        self.up_proj = torch.nn.Linear(a.hidden, a.inter, bias=False)
        self.down_proj = torch.nn.Linear(a.inter, a.hidden, bias=False)
        self.input_layernorm = RMSNorm(a.hidden, 1e-5)
        self.post_attention_layernorm = RMSNorm(a.hidden, 1e-5)

    def forward(self, h, cos, sin, mask):
        b, t, _ = h.shape
        x = self.input_layernorm(h)
        q = self.q_proj(x).view(b, t, self.nh, self.d).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.nkv, self.d).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.nkv, self.d).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if self.nkv != self.nh:
            rep = self.nh // self.nkv
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        w = torch.softmax(q @ k.transpose(2, 3) / math.sqrt(self.d) + mask, dim=-1, dtype=torch.float32)
        o = (w @ v).transpose(1, 2).reshape(b, t, self.nh * self.d)
        h = h + self.o_proj(o)
        x = self.post_attention_layernorm(h)
        return h + self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Llama(torch.nn.Module):
    def __init__(self, a):
        super().__init__()
        self.embed_tokens = torch.nn.Embedding(a.vocab, a.hidden)
        self.layers = torch.nn.ModuleList([Layer(a) for _ in range(a.layers)])
        self.norm = RMSNorm(a.hidden, 1e-5)
        self.lm_head = torch.nn.Linear(a.hidden, a.vocab, bias=False)
        d = a.hidden // a.heads
        inv = 1.0 / (10000.0 ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
        freqs = torch.outer(torch.arange(a.seq, dtype=torch.float64), inv)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.cos, self.sin = emb.cos().float(), emb.sin().float()
        self.mask = torch.full((a.seq, a.seq), torch.finfo(torch.float32).min).triu(1)

    def forward(self, tokens):
        h = self.embed_tokens(tokens)
        for layer in self.layers:
            h = layer(h, self.cos, self.sin, self.mask)
        return self.lm_head(self.norm(h))


def main():
    p = argparse.ArgumentParser()
    for name in ("hidden", "layers", "heads", "kv_heads", "inter", "vocab", "seq", "batch", "warmup", "steps"):
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=int, required=True)
    a = p.parse_args()
    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    model = Llama(a)
    for prm in model.parameters():
        if prm.dim() == 2:
            torch.nn.init.normal_(prm, std=0.02)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    tokens = torch.randint(0, a.vocab, (a.batch, a.seq))
    targets = torch.randint(0, a.vocab, (a.batch, a.seq))
    times, cpu_times, loss = [], [], None
    for step in range(a.warmup + a.steps):
        start = time.perf_counter()
        cpu_start = time.process_time()
        opt.zero_grad(set_to_none=True)
        logits = model(tokens)
        loss = F.cross_entropy(logits.view(-1, a.vocab), targets.view(-1))
        loss.backward()
        opt.step()
        if step >= a.warmup:
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    med = statistics.median(times)
    tokens = a.batch * a.seq
    print(f"RESULT tokens_per_s={tokens / med:.1f} step_ms={med * 1e3:.1f} "
          f"tokens_per_cpu_s={tokens / statistics.median(cpu_times):.1f} loss={loss.item():.4f} "
          f"threads={torch.get_num_threads()}", flush=True)


if __name__ == "__main__":
    main()
