"""Where the time of the per-chunk write directions (_fwd_alpha) goes: the kernel timed alone at T = 16k (B = 4,
H = 16, K = 64, bf16, A at every chunk start from a real forward) as built, and with one part taken out at a time
(a timing experiment only: those builds compute wrong directions). The variants are copies of the chunk module
with one text substitution each, written to a temporary folder and imported from there. Run on the GPU:

    python benchmarks/chunk_triton_alpha_probe.py OUT_DIR       (writes OUT_DIR/chunk_triton_alpha_probe.json)
"""
import importlib.util
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))
import chunk_triton_dev as dev  # noqa: E402
from vla.ops.vla.triton import chunk as tri  # noqa: E402

SRC = open(tri.__file__).read().replace("from ...utils import", "from vla.ops.utils import")
ELIM = "    for j in range(C):\n        col = tl.sum(tl.where(r[None, :] == j, M, 0.0), axis=1)  # column j of the trailing block"
VARIANTS = {
    "as_built": [],
    "no_elimination": [(ELIM, ELIM.replace("range(C)", "range(0)"))],
    "no_write_dirs": [("        KZ, al, na = _write_dirs(A, Kh, Zt, SUB, eps, PREC)\n", "        al = Zt + 0.0 * Kh\n")],
    "no_A_update": [("        A = A - tl.dot(tl.trans(Zt), Zt, input_precision=PREC)\n\n\n@triton.jit\ndef _fwd_factor",
                     "\n\n@triton.jit\ndef _fwd_factor")],
}


def load(name, subs):
    src = SRC
    for old, new in subs:
        assert src.count(old) >= 1, (name, old)
        src = src.replace(old, new)
    d = tempfile.mkdtemp()
    path = os.path.join(d, f"probe_{name}.py")
    with open(path, "w") as f:
        f.write(src)
    spec = importlib.util.spec_from_file_location(f"probe_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(out):
    from triton.testing import do_bench
    B, T, H, K = 4, 16384, 16, 64
    q, k, v, u = dev.inputs(B, T, H, seed=3)
    lay = tri._layout(B, T, torch.zeros(B, dtype=torch.int64), None, 64, 1e-3, "cuda")
    with torch.no_grad():
        _, _, _, A_chunks, *_ = tri._forward(q, k, v, u, None, None, lay, scale=K ** -0.5, lambda0=0.1,
                                                  period=64, nudge_eps=1e-3, delta_min=1e-4, eps=1e-6,
                                                  want_final=False, save=True, solver="newton")
    res = {"T": T, "B": B, "H": H, "K": K, "ms": {}}
    NC = lay.total_chunks
    for name, subs in VARIANTS.items():
        mod = load(name, subs)
        SUB = 16
        alpha = torch.empty_like(k)
        rinv = torch.empty(NC, H, 64 // SUB, SUB, SUB, device="cuda")

        def run():
            mod._fwd_alpha[(NC, H)](u, k, alpha, A_chunks, rinv, lay.cu, lay.shift, lay.chunk_seq, lay.chunk_idx,
                                    T, H, 1e-6, 1e-4, K=K, BK=K, C=64, SUB=SUB, IS_VARLEN=False, PREC="tf32",
                                    SAVE_RINV=True, num_warps=4)
        run()
        torch.cuda.synchronize()
        res["ms"][name] = do_bench(run, warmup=5, rep=40)
        res.setdefault("registers", {})[name] = dev.kernel_regs(mod._fwd_alpha)
        print(name, round(res["ms"][name], 4), res["registers"][name], flush=True)
    # the input check's witness of u: PyTorch's reduction and the Triton pass
    from vla.ops.common.row_norm import row_norm2_max
    res["u_norm_ms"] = {"torch": do_bench(lambda: torch.linalg.vector_norm(u, dim=-1, dtype=torch.float32).amax(),
                                          warmup=5, rep=40),
                        "triton": do_bench(lambda: row_norm2_max(u), warmup=5, rep=40)}
    print(res["u_norm_ms"], flush=True)
    dev.write_json(os.path.join(out, "chunk_triton_alpha_probe.json"), res)


if __name__ == "__main__":
    main(sys.argv[1])
