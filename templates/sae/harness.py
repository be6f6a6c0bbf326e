"""Protected harness of the `sae` template: configuration, data and evaluation.

The agent edits experiment.py (the SAE and its training); this file is hashed by
the orchestrator and must not change, so that every run is scored the same way.

What experiment.py gets from here:

    cfg = load_config()                    config.json (+ gpu profile, + smoke shrink)
    device = pick_device(cfg)
    task = SyntheticTask(cfg)              activations with a planted hierarchy
    task.batches(batch_size, device)       endless iterator of training batches
    evaluate_synthetic(sae, task, device)  exact scores against the planted features
    lm = load_lm_activations(cfg, device)  a small HookedTransformer + cached activations
    lm.batches(batch_size, device)         endless iterator over shuffled activations
    evaluate_core(sae, lm)                 SAEBench-style core metrics (CE / KL splice)
    write_final_info(out_dir, ...)         final_info.json, plain numbers only

The SAE protocol used by the evaluations (duck-typed, any nn.Module will do):
    sae.encode(x)  -> latents f, shape (n, d_sae), "active" means f > 0
    sae.decode(f)  -> reconstruction, shape (n, d_in)
    sae.W_dec      -> decoder, shape (d_sae, d_in), one row per latent
An SAE made of several levels or dictionaries concatenates them into one latent
vector (and one W_dec) for these calls.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
HARNESS_VERSION = 1  # bump when data generation changes: invalidates caches

# --------------------------------------------------------------------------- #
# configuration


def is_smoke() -> bool:
    return os.environ.get("ORCHESTRATE_SMOKE", "") not in ("", "0", "false", "False")


def load_config(path: str | os.PathLike | None = None) -> dict:
    """Read config.json; apply `gpu_profile` when profile == "gpu", then
    `smoke_profile` when ORCHESTRATE_SMOKE=1. Returns one flat dict (no profile
    sub-dicts) with `smoke` set."""
    path = Path(path) if path else Path("config.json")
    if not path.exists():
        path = HERE / "config.json"
    with open(path) as fh:
        raw = json.load(fh)
    cfg = {k: v for k, v in raw.items() if k not in ("gpu_profile", "smoke_profile")}
    profile = cfg.get("profile", "cpu")
    if profile not in ("cpu", "gpu"):
        raise SystemExit(f"config.json: profile must be 'cpu' or 'gpu', not {profile!r}")
    if profile == "gpu":
        cfg.update(raw.get("gpu_profile", {}))
    cfg["smoke"] = is_smoke()
    if cfg["smoke"]:
        cfg.update(raw.get("smoke_profile", {}))
    return cfg


def pick_device(cfg: dict) -> torch.device:
    """CUDA for the gpu profile when present, else CPU. Also applies
    `torch_threads` (0 = torch's default): these matrices are small, and on a
    busy 2-core machine one thread is several times faster than two fighting
    for the cores."""
    threads = int(cfg.get("torch_threads", 0))
    if threads > 0:
        torch.set_num_threads(threads)
    if cfg.get("profile") == "gpu" and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def cache_dir() -> Path:
    d = os.environ.get("ORCHESTRATE_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "orchestrator", "sae")
    p = Path(d)
    p.mkdir(parents=True, exist_ok=True)
    return p


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- #
# (1) synthetic activations with a planted hierarchy


class SyntheticTask:
    """Known feature directions in R^d_in (orthonormal when they fit):

    * `n_parents` parent features, each firing with probability p_parent;
    * each parent has `children_per_parent` children, mutually exclusive: when a
      parent fires, one of its children fires with probability p_child (chosen
      uniformly), else none. A child never fires without its parent.
    * `n_independent` features firing independently with probability p_independent.

    x = sum_i m_i * d_i + noise, with magnitudes m_i ~ 1 + 0.15 N(0,1) (clamped >= 0.1).
    This is the setting in which flat L1 SAEs show feature absorption (Chanin et
    al. 2024): a child latent learns parent+child and the parent latent stops
    firing whenever a child is present.
    """

    def __init__(self, cfg: dict):
        self.d_in = int(cfg["syn_d_in"])
        self.n_parents = int(cfg["syn_n_parents"])
        self.k = int(cfg["syn_children_per_parent"])
        self.n_independent = int(cfg["syn_n_independent"])
        self.p_parent = float(cfg["syn_p_parent"])
        self.p_child = float(cfg["syn_p_child"])
        self.p_independent = float(cfg["syn_p_independent"])
        self.noise = float(cfg["syn_noise"])
        self.n_children = self.n_parents * self.k
        self.n_features = self.n_parents + self.n_children + self.n_independent
        g = torch.Generator().manual_seed(1234 + int(cfg.get("seed", 0)))
        if self.n_features <= self.d_in:
            q, _ = torch.linalg.qr(torch.randn(self.d_in, self.d_in, generator=g))
            dirs = q[:, : self.n_features].T.contiguous()
        else:
            dirs = torch.randn(self.n_features, self.d_in, generator=g)
            dirs = dirs / dirs.norm(dim=1, keepdim=True)
        self.directions = dirs  # (n_features, d_in), unit rows
        # index ranges: parents [0, P), children [P, P+C), independent [P+C, F)
        self.parent_idx = torch.arange(self.n_parents)
        self.child_idx = torch.arange(self.n_parents, self.n_parents + self.n_children)
        self.indep_idx = torch.arange(self.n_parents + self.n_children, self.n_features)
        self.parent_of_child = torch.arange(self.n_children) // self.k  # child j -> parent
        self.seed = int(cfg.get("seed", 0))

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (x, feature_acts) of shapes (n, d_in), (n, n_features)."""
        P, k = self.n_parents, self.k
        parent_on = torch.rand(n, P, generator=generator) < self.p_parent
        child_on_any = (torch.rand(n, P, generator=generator) < self.p_child) & parent_on
        which = torch.randint(0, k, (n, P), generator=generator)
        child_on = torch.zeros(n, P, k, dtype=torch.bool)
        child_on.scatter_(2, which.unsqueeze(-1), child_on_any.unsqueeze(-1))
        indep_on = torch.rand(n, self.n_independent, generator=generator) < self.p_independent
        on = torch.cat([parent_on, child_on.reshape(n, P * k), indep_on], dim=1)
        mags = (1.0 + 0.15 * torch.randn(n, self.n_features, generator=generator)).clamp_min(0.1)
        acts = on.float() * mags
        x = acts @ self.directions
        if self.noise > 0:
            x = x + self.noise * torch.randn(n, self.d_in, generator=generator)
        return x, acts

    def batches(self, batch_size: int, device):
        """Endless iterator of fresh training batches (x only)."""
        g = torch.Generator().manual_seed(self.seed + 1)
        while True:
            x, _ = self.sample(batch_size, g)
            yield x.to(device)

    def eval_set(self, n: int):
        g = torch.Generator().manual_seed(self.seed + 999_983)  # never the training stream
        return self.sample(n, g)


@torch.no_grad()
def _encode_in_chunks(sae, x: torch.Tensor, device, chunk: int = 8192):
    fs, xh = [], []
    for i in range(0, x.shape[0], chunk):
        xb = x[i:i + chunk].to(device)
        f = sae.encode(xb)
        fs.append(f.float().cpu())
        xh.append(sae.decode(f).float().cpu())
    return torch.cat(fs), torch.cat(xh)


@torch.no_grad()
def evaluate_synthetic(sae, task: SyntheticTask, device, n_eval: int = 16384) -> dict:
    """Exact scores against the planted features (all plain floats).

    Matching: each true feature i is matched to the latent j*(i) whose decoder row
    has the highest cosine with its direction.
    * mean_max_cos_{parents,children,independent}: mean of that best cosine.
    * fraction_recovered: share of all true features with best cosine > 0.9.
    * parent_recall: P(latent j*(p) > 0 | parent p active), mean over parents.
    * parent_precision: P(parent p active | latent j*(p) > 0), mean over parents.
    * absorption_rate: how much the parent latent's activation drops when a
      child is present: clip(1 - E[f_j*(p) | p and a child active] /
      E[f_j*(p) | p active, no child], 0, 1), mean over parents (1 when the
      parent latent never fires alone). A child latent that absorbed the parent's
      direction takes over the parent's share, fully or partly.
    * absorption_full_rate: P(latent j*(p) == 0 | p and one of its children
      active), mean over parents: complete absorption only.
    * child_parent_leak: mean cosine between the decoder row of j*(c) and the
      direction of c's parent (absorbed child latents point partly at the parent).
    * hierarchy_accuracy: share of children c for which, among samples where
      latent j*(c) fires, the parent latent that co-fires most often is j*(parent(c))
      and co-fires in more than half of them: the latents reproduce the tree.
    * mse / explained_variance (centred) / l0 on the synthetic eval set.
    """
    sae.eval()
    x, acts = task.eval_set(n_eval)
    W = sae.W_dec.detach().float().cpu()
    W = W / W.norm(dim=1, keepdim=True).clamp_min(1e-8)
    cos = task.directions @ W.T  # (n_features, d_sae)
    best_cos, best = cos.max(dim=1)
    f, x_hat = _encode_in_chunks(sae, x, device)
    fired = f > 0
    on = acts > 0

    P = task.n_parents
    par, ch, ind = task.parent_idx, task.child_idx, task.indep_idx
    recall, precision, absorption, absorption_full = [], [], [], []
    for p in range(P):
        lat = fired[:, best[p]]
        act = f[:, best[p]]
        p_on = on[:, p]
        kids = ch[task.parent_of_child == p]
        kid_on = on[:, kids].any(dim=1) & p_on
        alone = p_on & ~kid_on
        recall.append(lat[p_on].float().mean().item() if p_on.any() else float("nan"))
        precision.append(p_on[lat].float().mean().item() if lat.any() else 0.0)
        absorption_full.append((~lat[kid_on]).float().mean().item()
                               if kid_on.any() else float("nan"))
        if kid_on.any() and alone.any() and act[alone].mean() > 0:
            ratio = (act[kid_on].mean() / act[alone].mean()).item()
            absorption.append(min(1.0, max(0.0, 1.0 - ratio)))
        else:
            absorption.append(float("nan") if not kid_on.any() else 1.0)

    parent_lat = best[par]
    leak, hier_ok = [], []
    for ci in range(task.n_children):
        c = ch[ci]
        p = task.parent_of_child[ci].item()
        leak.append((W[best[c]] @ task.directions[p]).item())
        lc = fired[:, best[c]]
        if lc.sum() == 0:
            hier_ok.append(0.0)
            continue
        co = fired[lc][:, parent_lat].float().mean(dim=0)  # (P,)
        # ties (several parents matched to one latent) count for the true parent
        ok = co[p] >= co.max() and co[p].item() > 0.5
        hier_ok.append(float(ok))

    err = (x - x_hat).pow(2).sum(dim=1)
    tss = (x - x.mean(dim=0)).pow(2).sum(dim=1)
    res = {
        "n_true_features": task.n_features,
        "n_eval": int(n_eval),
        "mean_max_cos_parents": best_cos[par].mean().item(),
        "mean_max_cos_children": best_cos[ch].mean().item(),
        "mean_max_cos_independent": best_cos[ind].mean().item() if len(ind) else None,
        "fraction_recovered": (best_cos > 0.9).float().mean().item(),
        "absorption_rate": _nanmean(absorption),
        "absorption_full_rate": _nanmean(absorption_full),
        "parent_recall": _nanmean(recall),
        "parent_precision": _nanmean(precision),
        "child_parent_leak": sum(leak) / len(leak),
        "hierarchy_accuracy": sum(hier_ok) / len(hier_ok),
        "mse": (x - x_hat).pow(2).mean().item(),
        "explained_variance": 1.0 - (err.sum() / tss.sum()).item(),
        "l0": fired.float().sum(dim=1).mean().item(),
        "dead_fraction": (~fired.any(dim=0)).float().mean().item(),
    }
    sae.train()
    return res


def _nanmean(xs):
    xs = [v for v in xs if not math.isnan(v)]
    return sum(xs) / len(xs) if xs else float("nan")


# --------------------------------------------------------------------------- #
# (2) a small language model and its activations

VOCAB = "\n" + "".join(chr(i) for i in range(32, 127))  # + one id for anything else
UNK = len(VOCAB)


def _corpus() -> tuple[torch.Tensor, torch.Tensor]:
    """pydoc_data.topics (ships with CPython): char-level ids, 90/10 split."""
    import pydoc_data.topics as topics
    text = "\n\n".join(topics.topics[k] for k in sorted(topics.topics))
    lut = {c: i for i, c in enumerate(VOCAB)}
    ids = torch.tensor([lut.get(c, UNK) for c in text], dtype=torch.long)
    cut = int(0.9 * len(ids))
    return ids[:cut], ids[cut:]


def _windows(ids: torch.Tensor, n: int, n_ctx: int, g: torch.Generator) -> torch.Tensor:
    starts = torch.randint(0, len(ids) - n_ctx - 1, (n,), generator=g)
    return torch.stack([ids[s:s + n_ctx] for s in starts.tolist()])


def _tiny_cfg(cfg: dict, device):
    from transformer_lens import HookedTransformerConfig
    return HookedTransformerConfig(
        n_layers=int(cfg["lm_n_layers"]), d_model=int(cfg["lm_d_model"]),
        n_heads=int(cfg["lm_n_heads"]), d_head=int(cfg["lm_d_model"]) // int(cfg["lm_n_heads"]),
        d_mlp=int(cfg["lm_d_mlp"]), n_ctx=int(cfg["lm_n_ctx"]), d_vocab=UNK + 1,
        act_fn="gelu", normalization_type="LN", seed=int(cfg.get("seed", 0)),
        device=str(device))


def _lm_key(cfg: dict) -> dict:
    keys = ["model", "seed", "lm_n_layers", "lm_d_model", "lm_n_heads", "lm_d_mlp",
            "lm_n_ctx", "lm_train_steps", "lm_batch_size", "lm_lr"]
    return {"harness": HARNESS_VERSION, **{k: cfg.get(k) for k in keys}}


def _log(msg: str) -> None:
    print(f"[harness] {msg}", flush=True)


def _train_tiny_lm(cfg: dict, device):
    from transformer_lens import HookedTransformer
    torch.manual_seed(int(cfg.get("seed", 0)))
    model = HookedTransformer(_tiny_cfg(cfg, device))
    train_ids, _ = _corpus()
    g = torch.Generator().manual_seed(int(cfg.get("seed", 0)) + 7)
    steps, bs, n_ctx = int(cfg["lm_train_steps"]), int(cfg["lm_batch_size"]), int(cfg["lm_n_ctx"])
    opt = torch.optim.AdamW(model.parameters(), lr=float(cfg["lm_lr"]), weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=float(cfg["lm_lr"]),
                                                total_steps=max(steps, 1), pct_start=0.1)
    t0 = time.time()
    loss = torch.tensor(float("nan"))
    for step in range(steps):
        tokens = _windows(train_ids, bs, n_ctx, g).to(device)
        loss = model(tokens, return_type="loss")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 200 == 0 or step == steps - 1:
            _log(f"tiny LM step {step + 1}/{steps} loss {loss.item():.3f}")
    _log(f"tiny LM trained in {time.time() - t0:.1f}s, final loss {loss.item():.3f}")
    return model, float(loss.item())


def _load_pretrained(cfg: dict, device):
    name = cfg["model"]
    try:
        from transformer_lens import HookedTransformer
        model = HookedTransformer.from_pretrained_no_processing(
            name, device=str(device), dtype=cfg.get("lm_dtype", "float32"))
    except Exception as e:
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise SystemExit(
            f"harness: cannot load pretrained model {name!r}: {type(e).__name__}: {msg} "
            f"(the gpu profile needs its weights in the local Hugging Face cache; "
            f"use profile \"cpu\" offline)") from None
    model.eval()
    return model


def _tokenize_for(model, cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of the corpus for a pretrained model (its own tokenizer)."""
    import pydoc_data.topics as topics
    text = "\n\n".join(topics.topics[k] for k in sorted(topics.topics))
    ids = model.to_tokens(text, prepend_bos=False, truncate=False)[0].cpu()
    cut = int(0.9 * len(ids))
    return ids[:cut], ids[cut:]


class LMActivations:
    """A HookedTransformer, the hook whose activations the SAE reconstructs, a
    shuffled buffer of training activations (scaled so that E||x||^2 = d_in),
    and held-out token windows for evaluation."""

    def __init__(self, model, hook_name, acts, scale, eval_tokens, lm_info):
        self.model = model
        self.hook_name = hook_name
        self.acts = acts  # (n_tokens, d_in), float32, cpu, already scaled
        self.scale = scale  # multiply raw activations by this to get SAE inputs
        self.eval_tokens = eval_tokens
        self.d_in = acts.shape[1]
        self.lm_info = lm_info
        self.seed = lm_info.get("seed", 0)

    def batches(self, batch_size: int, device):
        """Endless iterator over shuffled activations, reshuffled each epoch."""
        g = torch.Generator().manual_seed(self.seed + 3)
        n = self.acts.shape[0]
        while True:
            perm = torch.randperm(n, generator=g)
            for i in range(0, n - batch_size + 1, batch_size):
                yield self.acts[perm[i:i + batch_size]].to(device)


def load_lm_activations(cfg: dict, device) -> LMActivations:
    """Build (or load from the cache) the model and its activations at hook_name.
    The global torch RNG is left as it was, so a run's results do not depend on
    whether the cache was warm."""
    with torch.random.fork_rng(devices=[]):
        return _load_lm_activations(cfg, device)


def _load_lm_activations(cfg: dict, device) -> LMActivations:
    hook = cfg["hook_name"]
    n_tokens = int(cfg["n_train_tokens"])
    cdir = cache_dir()
    if cfg["model"] == "tiny-char":
        key = _hash(_lm_key(cfg))
        mpath = cdir / f"tiny_lm_{key}.pt"
        from transformer_lens import HookedTransformer
        if mpath.exists():
            blob = torch.load(mpath, map_location="cpu", weights_only=False)
            model = HookedTransformer(_tiny_cfg(cfg, device))
            model.load_state_dict(blob["state_dict"])
            lm_loss = blob["final_loss"]
            _log(f"tiny LM loaded from cache {mpath.name}")
        else:
            model, lm_loss = _train_tiny_lm(cfg, device)
            _atomic_save({"state_dict": model.state_dict(), "final_loss": lm_loss,
                          "key": _lm_key(cfg)}, mpath)
        train_ids, eval_ids = _corpus()
        n_ctx = int(cfg["lm_n_ctx"])
    else:
        key = _hash({"harness": HARNESS_VERSION, "model": cfg["model"], "n_ctx": cfg["lm_n_ctx"]})
        model = _load_pretrained(cfg, device)
        lm_loss = None  # not trained here (a NaN would read as a broken run)
        train_ids, eval_ids = _tokenize_for(model, cfg)
        n_ctx = int(cfg["lm_n_ctx"])
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if hook not in model.hook_dict:
        raise SystemExit(f"harness: hook {hook!r} is not a hook point of {cfg['model']!r}")

    apath = cdir / f"acts_{key}_{_hash([hook, n_tokens, cfg.get('seed', 0)])}.pt"
    if apath.exists():
        acts = torch.load(apath, map_location="cpu")
        _log(f"activations loaded from cache {apath.name} {tuple(acts.shape)}")
    else:
        t0 = time.time()
        g = torch.Generator().manual_seed(int(cfg.get("seed", 0)) + 11)
        n_seq = math.ceil(n_tokens / n_ctx)
        tokens = _windows(train_ids, n_seq, n_ctx, g)
        chunks = []
        bs = int(cfg.get("lm_act_batch_size", 64))
        with torch.no_grad():
            for i in range(0, n_seq, bs):
                _, cache = model.run_with_cache(tokens[i:i + bs].to(device),
                                                names_filter=hook, stop_at_layer=None)
                chunks.append(cache[hook].reshape(-1, cache[hook].shape[-1]).float().cpu())
        acts = torch.cat(chunks)[:n_tokens].contiguous()
        _atomic_save(acts, apath)
        _log(f"activations collected in {time.time() - t0:.1f}s {tuple(acts.shape)}")
    scale = math.sqrt(acts.shape[1] / acts.pow(2).sum(dim=1).mean().item())
    g = torch.Generator().manual_seed(int(cfg.get("seed", 0)) + 13)
    eval_tokens = _windows(eval_ids, int(cfg["n_eval_seqs"]), n_ctx, g)
    info = {"seed": int(cfg.get("seed", 0)), "lm_final_train_loss": lm_loss,
            "lm_cache_key": key}
    return LMActivations(model, hook, acts * scale, scale, eval_tokens, info)


# --------------------------------------------------------------------------- #
# core metrics (SAEBench "core" eval)


def _ce_sum(logits, target) -> float:
    """Next-token cross-entropy, summed over the prediction positions."""
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                           target.reshape(-1), reduction="sum").item()


def _kl_sum(logp_clean, logits) -> float:
    """KL(p_clean || p_patched), summed over the prediction positions."""
    logp = logits[:, :-1].log_softmax(-1)
    return (logp_clean.exp() * (logp_clean - logp)).sum(-1).sum().item()


@torch.no_grad()
def evaluate_core(sae, lm: LMActivations, batch_size: int = 32) -> dict:
    """SAEBench core metrics on held-out token windows.

    The SAE sees activations scaled by lm.scale (E||x||^2 = d_in); its output is
    scaled back before it replaces the model's activation.
    * ce_loss_score = (CE_zero_ablation - CE_sae) / (CE_zero_ablation - CE_clean)
    * kl_div_score  = (KL_zero_ablation - KL_sae) / KL_zero_ablation, with
      KL = KL(p_clean || p_patched) per token, averaged.
    * mse: mean over tokens and dimensions of (x - x_hat)^2, in the scaled space.
    * explained_variance (centred): 1 - sum||x - x_hat||^2 / sum||x - mean(x)||^2.
    * cossim: mean cosine(x, x_hat); l2_ratio: mean ||x_hat|| / ||x||;
      relative_reconstruction_bias: E<x_hat, x> / E||x||^2 (SAEBench).
    * l0: mean number of latents > 0 per token; l1: mean sum of latents per token.
    """
    sae.eval()
    model, hook = lm.model, lm.hook_name
    device = next(model.parameters()).device
    sums = {k: 0.0 for k in ("ce_clean", "ce_sae", "ce_abl", "kl_sae", "kl_abl", "l0", "l1",
                             "sq_err", "cos", "l2_ratio", "x_dot_xhat", "x_sq", "n_tok", "n_pred")}
    xs_sum = None
    xs_sq = 0.0
    captured = {}

    def splice(act, hook=None):
        x = act.float() * lm.scale
        flat = x.reshape(-1, x.shape[-1])
        f = sae.encode(flat)
        x_hat = sae.decode(f)
        captured["x"], captured["x_hat"], captured["f"] = flat, x_hat, f
        return (x_hat / lm.scale).reshape(act.shape).to(act.dtype)

    def ablate(act, hook=None):
        return torch.zeros_like(act)

    for i in range(0, lm.eval_tokens.shape[0], batch_size):
        tokens = lm.eval_tokens[i:i + batch_size].to(device)
        logits_clean = model(tokens).float()
        logits_sae = model.run_with_hooks(tokens, fwd_hooks=[(hook, splice)]).float()
        logits_abl = model.run_with_hooks(tokens, fwd_hooks=[(hook, ablate)]).float()
        target = tokens[:, 1:]
        n = target.numel()
        logp_clean = logits_clean[:, :-1].log_softmax(-1)
        sums["ce_clean"] += _ce_sum(logits_clean, target)
        sums["ce_sae"] += _ce_sum(logits_sae, target)
        sums["ce_abl"] += _ce_sum(logits_abl, target)
        sums["kl_sae"] += _kl_sum(logp_clean, logits_sae)
        sums["kl_abl"] += _kl_sum(logp_clean, logits_abl)
        x, x_hat, f = captured["x"].float(), captured["x_hat"].float(), captured["f"].float()
        m = x.shape[0]
        sums["n_tok"] += m
        sums["l0"] += (f > 0).float().sum().item()
        sums["l1"] += f.abs().sum().item()
        sums["sq_err"] += (x - x_hat).pow(2).sum().item()
        sums["cos"] += F.cosine_similarity(x, x_hat, dim=-1).sum().item()
        sums["l2_ratio"] += (x_hat.norm(dim=-1) / x.norm(dim=-1).clamp_min(1e-8)).sum().item()
        sums["x_dot_xhat"] += (x * x_hat).sum().item()
        sums["x_sq"] += x.pow(2).sum().item()
        xs_sum = x.sum(0) if xs_sum is None else xs_sum + x.sum(0)
        xs_sq += x.pow(2).sum().item()
        sums["n_pred"] += n

    ntok, npred, d = sums["n_tok"], sums["n_pred"], lm.d_in
    tss = xs_sq - (xs_sum.pow(2).sum().item() / ntok)  # sum ||x - mean||^2
    ce_clean, ce_sae, ce_abl = (sums[k] / npred for k in ("ce_clean", "ce_sae", "ce_abl"))
    kl_sae, kl_abl = sums["kl_sae"] / npred, sums["kl_abl"] / npred
    sae.train()
    return {
        "l0": sums["l0"] / ntok,
        "l1": sums["l1"] / ntok,
        "mse": sums["sq_err"] / (ntok * d),
        "cossim": sums["cos"] / ntok,
        "l2_ratio": sums["l2_ratio"] / ntok,
        "relative_reconstruction_bias": sums["x_dot_xhat"] / sums["x_sq"],
        "explained_variance": 1.0 - sums["sq_err"] / tss,
        "explained_variance_definition":
            "centred: 1 - sum||x - x_hat||^2 / sum||x - mean(x)||^2 over eval tokens",
        "ce_loss_score": (ce_abl - ce_sae) / (ce_abl - ce_clean),
        "ce_loss_without_sae": ce_clean,
        "ce_loss_with_sae": ce_sae,
        "ce_loss_with_ablation": ce_abl,
        "kl_div_score": (kl_abl - kl_sae) / kl_abl,
        "kl_div_with_sae": kl_sae,
        "kl_div_with_ablation": kl_abl,
        "n_eval_tokens": int(ntok),
        "d_in": int(d),
        "activation_scale": float(lm.scale),
    }


# --------------------------------------------------------------------------- #
# results


def env_info() -> dict:
    import transformer_lens
    try:
        from importlib.metadata import version
        tl = version("transformer_lens")
    except Exception:
        tl = getattr(transformer_lens, "__version__", "unknown")
    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformer_lens": tl, "platform": sys.platform,
            "cuda": torch.cuda.is_available(), "threads": torch.get_num_threads()}


def _plain(v):
    """Tensors / numpy scalars -> plain python numbers; dicts and lists recursed."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, torch.Tensor):
        return _plain(v.item() if v.numel() == 1 else v.tolist())
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return float(v)
    if hasattr(v, "item"):
        return _plain(v.item())
    return v


def write_final_info(out_dir, *, training: dict, synthetic: dict, core: dict, cfg: dict,
                     extra: dict | None = None) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = {"training": training, "synthetic": synthetic, "core": core,
            "env": env_info(), "config": copy.deepcopy(cfg)}
    if extra:
        for k, v in extra.items():
            if k in info:
                raise ValueError(f"write_final_info: extra key {k!r} would overwrite a section")
            info[k] = v
    path = out / "final_info.json"
    tmp = path.with_suffix(".json.tmp")
    with open(tmp, "w") as fh:
        json.dump(_plain(info), fh, indent=2, allow_nan=True)
    os.replace(tmp, path)
    return path
