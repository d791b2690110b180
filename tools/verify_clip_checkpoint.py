#!/usr/bin/env python3
"""Checks that a CLIP directory written by Kiln (`kiln clip train`, `Clip::save`) loads in
transformers and gives Kiln's numbers: transformers' CLIPModel + CLIPProcessor (use_fast=False, the
PIL path) read the directory, and their image-text logits are compared with those of
`kiln clip embed --json` (Kiln's L2-normalised embeddings times exp(logit_scale)).

    python3 tools/verify_clip_checkpoint.py --kiln target/release/kiln --model DIR \
        --image a.png --image b.png --text "a photo of a cat." --text "a photo of a dog."

Prints the largest absolute logit difference and exits non-zero above --tol (default 1e-4).
"""
import argparse
import json
import subprocess
import sys

import torch
from PIL import Image
from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--image", action="append", required=True)
    ap.add_argument("--text", action="append", required=True)
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()

    model = CLIPModel.from_pretrained(a.model).eval()
    proc = CLIPImageProcessor.from_pretrained(a.model, use_fast=False)
    tok = CLIPTokenizer.from_pretrained(a.model)
    images = [Image.open(p) for p in a.image]
    pixels = proc(images=images, return_tensors="pt")["pixel_values"]
    text = tok(a.text, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(pixel_values=pixels, **text)
    hf = out.logits_per_image.numpy()

    cmd = [a.kiln, "clip", "embed", "--model", a.model, "--json"]
    for p in a.image:
        cmd += ["--image", p]
    for t in a.text:
        cmd += ["--text", t]
    rows = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    img = torch.tensor([r["embedding"] for r in rows if r["kind"] == "image"])
    txt = torch.tensor([r["embedding"] for r in rows if r["kind"] == "text"])
    kiln = (model.logit_scale.exp() * img @ txt.T).detach().numpy()
    diff = float(abs(hf - kiln).max())
    print(json.dumps({"max_abs_logit_diff": diff, "transformers": hf.tolist(), "kiln": kiln.tolist()}, indent=1))
    sys.exit(0 if diff <= a.tol else 1)


if __name__ == "__main__":
    main()
