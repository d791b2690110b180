#!/usr/bin/env python3
"""Opacus reference values for Kiln's DP-SGD privacy accountant (kiln_lora::train::privacy).

Writes crates/kiln-lora/tests/fixtures/dp_accounting.json:

  orders            Opacus RDPAccountant.DEFAULT_ALPHAS (151 orders)
  rdp[]             {q, sigma, rdp}: compute_rdp(q, sigma, steps=1, orders) over the grid
                    q in {0.001, 0.01, 0.05, 0.25, 1.0} x sigma in {0.5, 0.8, 1.0, 1.5, 4.0}
                    (steps multiply the vector exactly, so steps=1 is enough)
  eps[]             {q, sigma, steps, delta, eps, best_alpha}: get_privacy_spent over the grid
                    x steps in {1, 100, 1000, 10000}, delta 1e-5
  accountant        a mixed RDPAccountant history and its (eps, best_alpha)
  noise[]           {target_eps, delta, q, steps, sigma}: get_noise_multiplier (rdp, tol 0.01)

Floats are written with repr (shortest round-trip). CPU only, no network, ~1 min.

    python tools/make_dp_fixtures.py [--out PATH]
"""
import argparse
import json
import math
import warnings
from pathlib import Path

import opacus
import scipy
from opacus.accountants import RDPAccountant
from opacus.accountants.analysis import rdp as privacy_analysis
from opacus.accountants.utils import get_noise_multiplier

QS = [0.001, 0.01, 0.05, 0.25, 1.0]
SIGMAS = [0.5, 0.8, 1.0, 1.5, 4.0]
STEPS = [1, 100, 1000, 10000]
DELTA = 1e-5
NOISE = [
    (1.0, 1e-5, 0.01, 1000),
    (3.0, 1e-5, 0.01, 1000),
    (8.0, 1e-5, 0.004, 10000),
    (0.5, 1e-6, 0.001, 5000),
    (10.0, 1e-5, 0.1, 300),
]


def finite(x):
    x = float(x)
    assert math.isfinite(x), x
    return x


def main():
    ap = argparse.ArgumentParser()
    root = Path(__file__).resolve().parent.parent
    ap.add_argument("--out", default=root / "crates/kiln-lora/tests/fixtures/dp_accounting.json")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    orders = RDPAccountant.DEFAULT_ALPHAS
    out = {
        "note": "Opacus RDP accountant reference (tools/make_dp_fixtures.py)",
        "opacus_version": opacus.__version__,
        "scipy_version": scipy.__version__,
        "orders": [float(a) for a in orders],
        "rdp": [],
        "eps": [],
        "noise": [],
    }
    for q in QS:
        for sigma in SIGMAS:
            rdp = privacy_analysis.compute_rdp(q=q, noise_multiplier=sigma, steps=1, orders=orders)
            out["rdp"].append({"q": q, "sigma": sigma, "rdp": [finite(r) for r in rdp]})
            for steps in STEPS:
                acc = RDPAccountant()
                acc.history = [(sigma, q, steps)]
                eps, alpha = acc.get_privacy_spent(delta=DELTA)
                out["eps"].append({"q": q, "sigma": sigma, "steps": steps, "delta": DELTA,
                                   "eps": finite(eps), "best_alpha": finite(alpha)})
    acc = RDPAccountant()
    for _ in range(50):
        acc.step(noise_multiplier=1.1, sample_rate=0.01)
    for _ in range(30):
        acc.step(noise_multiplier=0.9, sample_rate=0.02)
    for _ in range(20):
        acc.step(noise_multiplier=1.1, sample_rate=0.01)
    eps, alpha = acc.get_privacy_spent(delta=DELTA)
    out["accountant"] = {"steps": [[s, q, n] for (s, q, n) in acc.history], "delta": DELTA,
                         "eps": finite(eps), "best_alpha": finite(alpha)}
    for target_eps, delta, q, steps in NOISE:
        sigma = get_noise_multiplier(target_epsilon=target_eps, target_delta=delta,
                                     sample_rate=q, steps=steps, accountant="rdp")
        out["noise"].append({"target_eps": target_eps, "delta": delta, "q": q, "steps": steps,
                             "sigma": finite(sigma)})
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
