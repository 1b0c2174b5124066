#!/usr/bin/python3
"""The training step of bench/train_bench.c in PyTorch: the same Gemma 1 model (tools/ref/train_ref.py's
batched module, imported), f32, the same config, batch and sequence length, torch.optim.AdamW (β 0.9/0.95,
ε 1e-8, weight decay 0.1 on the 2-D projections only, as gm_adamw_params_default) after
clip_grad_norm_(1.0), on random tokens; tokens/s is B·T over the median step after the warm-up steps.

    /usr/bin/python3 bench/train_torch.py -d 256 -l 8 --heads 4 --kv-heads 1 --ffn 1024 --vocab 8192 \
        -s 128 -b 4 -t 1 -n 5 -w 1 [--json]
    /usr/bin/python3 bench/train_torch.py --check DIR     # DIR from train_bench --dump DIR

--check replays train_bench's steps from its initial weights and tokens (DIR/params.f32, tokens.i32) and
compares every step's loss and pre-clip gradient norm with the ones it recorded (meta.json): the first
step's loss must agree within 1e-5 relative (exit 1 otherwise). The GeLU is train_ref's tanh formula
written out; --gelu fused uses F.gelu(approximate="tanh") (the same function, one kernel).
"""
import argparse, json, os, resource, statistics, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-d", "--dim", type=int, default=256)
    ap.add_argument("-l", "--layers", type=int, default=8)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=1)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--ffn", type=int, default=1024)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("-s", "--seq", type=int, default=128)
    ap.add_argument("-b", "--batch", type=int, default=4)
    ap.add_argument("-t", "--threads", type=int, default=1)
    ap.add_argument("-n", "--steps", type=int, default=5)
    ap.add_argument("-w", "--warmup", type=int, default=1)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--gelu", choices=["ref", "fused"], default="ref")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--check", metavar="DIR", help="replay train_bench --dump DIR and compare losses")
    return ap.parse_args()


args = parse()
# Before torch loads: OpenBLAS (if it is the BLAS torch gets) reads these at load time; torch itself
# follows set_num_threads below. OpenMP threads that sleep when idle (PASSIVE) instead of spinning: with
# libopenblas0-pthread the BLAS has its own threads, and torch's spinning OpenMP workers then took their
# cores (2 threads on the 2-vCPU VM: 1.5-3x slower steps, measured); OMP_WAIT_POLICY=ACTIVE overrides.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "tools", "ref"))
import train_ref  # noqa: E402  (sets 1 thread on import; overridden next)

torch.set_num_threads(args.threads)
if args.gelu == "fused":
    train_ref.gelu_tanh = lambda x: F.gelu(x, approximate="tanh")


def blas_library():
    """(kind, path) of the BLAS this process mapped: Debian's torch links libblas.so.3, which
    update-alternatives (or LD_LIBRARY_PATH) points at netlib's reference BLAS, OpenBLAS, BLIS or ATLAS."""
    try:
        with open("/proc/self/maps") as f:
            libs = sorted({os.path.realpath(line.split()[-1]) for line in f
                           if "/" in line and ("blas" in line.lower() or "mkl" in line.lower())})
    except OSError:
        return "unknown", ""
    for kind, key in (("OpenBLAS", "openblas"), ("BLIS", "blis"), ("ATLAS", "atlas"), ("MKL", "mkl"),
                      ("netlib", "/blas/libblas")):
        hit = [p for p in libs if key in p.lower()]
        if hit:
            return kind, hit[0]
    return ("other", libs[0]) if libs else ("none", "")


def config(a):
    return dict(hidden_size=a["hidden_size"], num_hidden_layers=a["num_hidden_layers"],
                num_attention_heads=a["num_attention_heads"], num_key_value_heads=a["num_key_value_heads"],
                head_dim=a["head_dim"], intermediate_size=a["intermediate_size"], vocab_size=a["vocab_size"])


def make_opt(W, lr, wd, betas=(0.9, 0.95), eps=1e-8):
    """gm_adamw_params_default's groups: decay on 2-D projections, not on norms or the tied embedding."""
    no_decay = [n for n in W if W[n].dim() == 1 or "embed_tokens" in n]
    return torch.optim.AdamW([{"params": [W[n] for n in W if n not in no_decay], "weight_decay": wd},
                              {"params": [W[n] for n in no_decay], "weight_decay": 0.0}],
                             lr=lr, betas=betas, eps=eps)


def step(W, opt, c, tok, clip, exact_norm=None):
    """One training step as train_bench times it: zero grads, forward + backward, clip, AdamW.
    exact_norm (a list) receives the gradient's L2 norm summed in float64 (not timed: --check only)."""
    opt.zero_grad(set_to_none=True)
    loss, _ = train_ref.loss_fn(W, c, tok[:, :-1], tok[:, 1:])
    loss.backward()
    if exact_norm is not None:
        exact_norm.append(sum(w.grad.double().pow(2).sum() for w in W.values()).sqrt().item())
    norm = torch.nn.utils.clip_grad_norm_(list(W.values()), clip)
    opt.step()
    return loss.item(), norm.item()


def check(d):
    with open(os.path.join(d, "meta.json")) as f:
        meta = json.load(f)
    c = config(meta)
    with open(os.path.join(d, "params.f32"), "rb") as f:
        flat = torch.frombuffer(bytearray(f.read()), dtype=torch.float32)
    with open(os.path.join(d, "tokens.i32"), "rb") as f:
        toks = torch.frombuffer(bytearray(f.read()), dtype=torch.int32).long()
    assert flat.numel() == meta["n_params"], "params.f32 does not match meta.json"
    shapes = train_ref.shapes(c)
    assert [t["name"] for t in meta["tensors"]] == train_ref.names(c), "tensor order differs from train_ref"
    W = {}
    for t in meta["tensors"]:
        assert tuple(t["shape"]) == shapes[t["name"]], t["name"]
        W[t["name"]] = flat[t["offset"]:t["offset"] + t["numel"]].clone().view(*t["shape"]).requires_grad_(True)
    B, T, n = meta["B"], meta["T"], meta["steps"]
    toks = toks.view(n, B, T + 1)
    opt = make_opt(W, meta["lr"], meta["weight_decay"], (meta["beta1"], meta["beta2"]), meta["eps"])
    print(f"check: {meta['n_params']} params, B {B} x T {T}, {n} steps from train_bench's init and tokens "
          f"(torch {torch.__version__}, BLAS %s %s)" % blas_library())
    # |g| exact: torch's float32 gradients, norm summed in float64 (gemma.c sums its norm in double too);
    # clip_grad_norm_ reduces in float32 and is off by up to ~1e-4 on millions of parameters.
    print(f"{'step':>4} {'gemma.c loss':>13} {'torch loss':>13} {'rel diff':>8} {'gemma.c |g|':>12} "
          f"{'torch |g| exact':>15} {'rel diff':>8} {'clip_grad_norm_':>15}")
    worst0 = None
    for s in range(n):
        exact = []
        loss, norm = step(W, opt, c, toks[s], meta["clip"], exact)
        cl, cn = meta["losses"][s], meta["grad_norms"][s]
        rl, rn = abs(cl - loss) / abs(loss), abs(cn - exact[0]) / abs(exact[0])
        if s == 0:
            worst0 = rl
        print(f"{s:>4} {cl:>13.7f} {loss:>13.7f} {rl:>8.1e} {cn:>12.7f} {exact[0]:>15.7f} {rn:>8.1e} "
              f"{norm:>15.7f}")
    ok = worst0 <= 1e-5
    print(f"first-step loss {'agrees' if ok else 'DISAGREES'}: relative difference {worst0:.1e} (limit 1e-5)")
    return 0 if ok else 1


def bench(a):
    c = dict(hidden_size=a.dim, num_hidden_layers=a.layers, num_attention_heads=a.heads,
             num_key_value_heads=a.kv_heads, head_dim=a.head_dim, intermediate_size=a.ffn, vocab_size=a.vocab)
    W = {n: t.requires_grad_(True) for n, t in train_ref.gemma_init(c, a.seed, 0.02).items()}
    n_params = sum(t.numel() for t in W.values())
    opt = make_opt(W, a.lr, 0.1)
    g = torch.Generator().manual_seed(a.seed)
    times, losses = [], []
    for s in range(a.warmup + a.steps):
        tok = torch.randint(3, a.vocab, (a.batch, a.seq + 1), generator=g)
        tok[:, 0] = 2                                          # <bos>, as train_bench
        t0 = time.perf_counter()
        loss, norm = step(W, opt, c, tok, 1.0)
        times.append(time.perf_counter() - t0)
        losses.append(loss)
        if not a.json:
            print(f"step {s}{' (warm-up)' if s < a.warmup else ''}: loss {loss:.6f}, grad norm {norm:.4f}, "
                  f"{times[-1]:.3f} s", file=sys.stderr)
    timed = sorted(times[a.warmup:])
    med = statistics.median(timed)
    tok_s = a.batch * a.seq / med
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    blas, blas_path = blas_library()
    res = {"impl": "torch", "torch": torch.__version__, "blas": blas, "blas_path": blas_path, "gelu": a.gelu,
           "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
           "d": a.dim,
           "layers": a.layers, "heads": a.heads, "kv_heads": a.kv_heads, "head_dim": a.head_dim, "ffn": a.ffn,
           "vocab": a.vocab, "seq": a.seq, "batch": a.batch, "threads": a.threads, "params": n_params,
           "steps": a.steps, "warmup": a.warmup, "step_s_median": round(med, 6), "step_s_min": round(timed[0], 6),
           "step_s_max": round(timed[-1], 6), "tok_s": round(tok_s, 2), "first_loss": losses[0],
           "peak_rss_mib": round(rss, 1)}
    if a.json:
        print(json.dumps(res))
    else:
        print(f"torch {torch.__version__} train step: {n_params / 1e6:.2f}M params, B {a.batch} x T {a.seq}, "
              f"{a.threads} thread(s): {tok_s:.1f} tok/s (median of {a.steps} steps, {med:.3f} s; min "
              f"{timed[0]:.3f} max {timed[-1]:.3f}), first loss {losses[0]:.6f}, peak RSS {rss:.0f} MiB, "
              f"BLAS {blas} ({blas_path})")
    return 0


if __name__ == "__main__":
    sys.exit(check(args.check) if args.check else bench(args))
