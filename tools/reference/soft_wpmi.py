#!/usr/bin/env python3
"""The reference soft_wpmi in PyTorch, for side-by-side benchmarks of `cm dissect`.

Written from ../shared/reference/method.md and vectorised the way CLIP-Dissect's similarity.py is:
softmax of a * P over concepts, torch.topk of Q over images, then one gather per neuron of its
top-k rows of the softmax and a weighted log-sum, and the logsumexp prior over the layer's neurons.
tools/reference/test_soft_wpmi.py checks it against ../shared/testvectors (produced by the
reference code).

Usage: /usr/bin/python3 tools/reference/soft_wpmi.py P.npy Q.npy OUT.npy [--threads N]
P: D x S (images x concepts), Q: D x N (images x neurons); OUT: N x S float32 similarity.
Prints one JSON line: seconds of each stage and the labels' checksum.
"""
import argparse
import json
import time

import numpy as np
import torch


def soft_wpmi(clip_feats, target_feats, top_k=100, a=10.0, lam=1.0, min_prob=1e-7, p_start=0.998, p_end=0.97):
    with torch.no_grad():
        clip_feats = torch.nn.functional.softmax(a * clip_feats, dim=1)
        inds = torch.topk(target_feats, dim=0, k=top_k)[1]
        p_in_examples = p_start - (torch.arange(start=0, end=top_k) / top_k * (p_start - p_end)).unsqueeze(1)
        prob_d_given_e = []
        for orig_id in range(target_feats.shape[1]):
            curr = clip_feats.gather(0, inds[:, orig_id : orig_id + 1].expand(-1, clip_feats.shape[1]))
            curr = 1 + p_in_examples * (curr - 1)
            prob_d_given_e.append(torch.sum(torch.log(curr + min_prob), dim=0, keepdim=True))
        prob_d_given_e = torch.cat(prob_d_given_e, dim=0)
        prob_d = torch.logsumexp(prob_d_given_e, dim=0, keepdim=True) - torch.log(
            prob_d_given_e.shape[0] * torch.ones([1])
        )
        return prob_d_given_e - lam * prob_d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("p")
    ap.add_argument("q")
    ap.add_argument("out")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    p = torch.from_numpy(np.load(args.p).astype(np.float32, copy=False))
    q = torch.from_numpy(np.load(args.q).astype(np.float32, copy=False))
    t1 = time.perf_counter()
    sim = soft_wpmi(p, q, top_k=min(100, q.shape[0]))
    t2 = time.perf_counter()
    out = sim.numpy()
    np.save(args.out, out)
    t3 = time.perf_counter()
    print(json.dumps({"read_s": t1 - t0, "similarity_s": t2 - t1, "write_s": t3 - t2, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
