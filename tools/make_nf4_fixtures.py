"""Reference fixtures for kiln_backend::nf4: bitsandbytes' NF4 quantization on the CPU.

Writes crates/kiln-backend/tests/fixtures/nf4/<case>.safetensors, one file per case, holding
  input            the tensor quantized (f32, or bf16 for the bf16 case), or, for the large case,
                   input_q (int8) and input_scale (f32 per 64 elements): input = f32(q) * scale
  w.weight, w.weight.absmax, w.weight.quant_map, [w.weight.nested_absmax,
  w.weight.nested_quant_map], w.weight.quant_state.bitsandbytes__nf4
                   QuantState.as_dict(packed=True) exactly as transformers saves a 4-bit Linear
  absmax_f32       the per-block absmax as dequantize_4bit uses it (after double-quant expansion)
  offset           (double quant only) the mean subtracted before the 8-bit quantization, f32[1]
  dequant          F.dequantize_4bit's output (f32), or a slice of it (dequant_start.. in metadata)
and metadata {blocksize, double_quant, shape, dtype, dequant_start, note}.

Deterministic (fixed seeds, CPU). Requires bitsandbytes==0.50.2, torch, safetensors.
"""

import json
import os
import sys

import torch
import bitsandbytes
import bitsandbytes.functional as F
from bitsandbytes.backends.default.ops import _dequantize_4bit_compute
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "kiln-backend", "tests", "fixtures", "nf4")
CODE = F.get_4bit_type("nf4", device="cpu")


def ties_input():
    """Exact code values, midpoints (as bnb computes them), their f32 neighbours, signed zeros."""
    mids = (CODE[:-1] + CODE[1:]) / 2
    up = torch.nextafter(mids, torch.full_like(mids, 2.0))
    down = torch.nextafter(mids, torch.full_like(mids, -2.0))
    block = torch.cat([CODE, mids, up, down, torch.tensor([0.0, -0.0, 1.0])])
    block = torch.cat([block, torch.zeros(64 - block.numel())])
    # absmax 1 in the first block; the same pattern scaled by 0.37 (so ties are inexact); a zero block;
    # a block whose absmax comes from a negative value; a tiny (subnormal-scale) block.
    scaled = block * 0.37
    neg = block.clone()
    neg[15] = 0.5
    neg[0] = -1.0
    tiny = torch.randn(64, generator=torch.Generator().manual_seed(7)) * 1e-39
    return torch.cat([block, scaled, torch.zeros(64), neg, tiny])


def large_input():
    g = torch.Generator().manual_seed(3)
    n = 64 * 300  # 300 absmax blocks: two nested blocks of 256
    q = torch.randint(-128, 128, (n,), generator=g, dtype=torch.int8)
    scale = torch.exp(torch.randn(n // 64, generator=g)).float()
    x = q.float() * scale.repeat_interleave(64)
    return x, q, scale


def write(name, x, blocksize, dq, extra=None, dequant_slice=None, note=""):
    packed, st = F.quantize_4bit(x, quant_type="nf4", blocksize=blocksize, compress_statistics=dq)
    deq = F.dequantize_4bit(packed, st).float().reshape(-1)
    if st.nested:
        absmax = F.dequantize_blockwise(st.absmax, st.state2) + st.offset
    else:
        absmax = st.absmax
    if x.dim() >= 2 and x.shape[-1] % 16 == 0 and x.shape[-1] % blocksize != 0:
        # bnb 0.50.2's AVX-512 dequantize kernel indexes absmax per row (row * (cols / blocksize)),
        # which is wrong when blocks straddle rows; the format (and bnb's default/CUDA kernels) is
        # flat. Store the flat reference from bnb's default implementation, and say so.
        flat = _dequantize_4bit_compute(packed.reshape(-1), absmax.float(), CODE, blocksize, x.shape, torch.float32)
        note += " bnb-cpu-avx512-dequant-differs" if not torch.equal(flat.reshape(-1), deq) else ""
        deq = flat.reshape(-1)
    t = {f"w.weight.{k}" if k != "weight" else "w.weight": v.contiguous().clone() for k, v in st.as_dict(packed=True).items()}
    t["w.weight"] = packed.contiguous()
    t["absmax_f32"] = absmax.float().clone()
    start = 0
    if dequant_slice is not None:
        start, end = dequant_slice
        deq = deq[start:end]
    t["dequant"] = deq.contiguous()
    if st.nested:
        t["offset"] = st.offset.reshape(1).float()
    if extra is None:
        t["input"] = x.contiguous()
    else:
        t.update(extra)
    meta = {
        "blocksize": str(blocksize),
        "double_quant": str(dq).lower(),
        "shape": json.dumps(list(x.shape)),
        "dtype": str(x.dtype).replace("torch.", ""),
        "dequant_start": str(start),
        "note": note.strip(),
    }
    save_file(t, os.path.join(OUT, f"{name}.safetensors"), metadata=meta)
    print(name, {k: tuple(v.shape) for k, v in t.items()}, meta["note"])


def main():
    assert bitsandbytes.__version__ == "0.50.2", bitsandbytes.__version__
    os.makedirs(OUT, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    normal = torch.randn(8, 64, generator=g)
    write("normal_bs64", normal, 64, False)
    write("normal_bs64_dq", normal, 64, True)
    odd = torch.randn(201, generator=g) * 3.0
    write("odd201_bs64", odd, 64, False)
    write("odd201_bs64_dq", odd, 64, True)
    ties = ties_input()
    write("ties_bs64", ties, 64, False)
    write("ties_bs64_dq", ties, 64, True)
    wide = torch.randn(4, 256, generator=g) * 0.02
    write("wide_bs128", wide, 128, False)
    write("wide_bs128_dq", wide, 128, True)
    write("straddle_3x96_bs64", torch.randn(3, 96, generator=g), 64, False)
    bf = (torch.randn(2, 64, generator=g) * 0.5).to(torch.bfloat16)
    write("bf16_bs64_dq", bf, 64, True)
    x, q, scale = large_input()
    write(
        "large300_bs64_dq",
        x,
        64,
        True,
        extra={"input_q": q, "input_scale": scale},
        dequant_slice=(64 * 250, 64 * 262),
    )


if __name__ == "__main__":
    sys.exit(main())
