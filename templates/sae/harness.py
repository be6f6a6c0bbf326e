"""Protected harness of the `sae` template: configuration, data and evaluation.

The agent edits experiment.py (the SAE and its training); this file is hashed by
the orchestrator and must not change, so that every run is scored the same way.

Three entry points:

    python harness.py prepare --cache_dir=DIR      the tiny LM + activation caches (safetensors/JSON)
    python experiment.py --out_dir=RUN             (agent code) imports this module, see below
    python harness.py evaluate --run_dir=RUN --out=FILE
                                                   the sealed evaluator: loads RUN/saes/* as data,
                                                   scores them on held-out data, writes FILE

What experiment.py gets from here:

    cfg = load_config()                    config.json (+ gpu profile, + smoke shrink)
    device = pick_device(cfg)
    task = SyntheticTask(cfg)              activations with a planted hierarchy
    task.batches(batch_size, device)       endless iterator of training batches
    evaluate_synthetic(sae, task, device)  exact scores against the planted features (own check)
    lm = load_lm_activations(cfg, device)  a small HookedTransformer + cached activations (read-only)
    lm.batches(batch_size, device)         endless iterator over shuffled activations
    evaluate_core(sae, lm)                 SAEBench-style core metrics (own check)
    save_sae(out_dir, name, tensors, spec) the trained SAE as data: RUN/saes/NAME.{safetensors,json}
    write_final_info(out_dir, ...)         final_info.json, plain numbers only

The numbers experiment.py writes are its own report (`reported.*` in the
orchestrator); the evaluator recomputes every core.* and synthetic.* metric from
the saved SAEs alone: it never imports experiment.py and never unpickles.

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
from safetensors.torch import load_file, save_file

HERE = Path(__file__).resolve().parent
HARNESS_VERSION = 2  # bump when data generation or the cache format changes: invalidates caches
EVAL_SEED_FALLBACK = 20261201  # used only when ORCHESTRATE_EVAL_SEED is unset (by hand)

# --------------------------------------------------------------------------- #
# configuration


def is_smoke() -> bool:
    return os.environ.get("ORCHESTRATE_SMOKE", "") not in ("", "0", "false", "False")


def run_seed(default: int = 0) -> int:
    """This run's seed: $ORCHESTRATE_SEED (the orchestrator's [seeds], one per
    seed of a full run), else `default` (config.json's seed)."""
    raw = os.environ.get("ORCHESTRATE_SEED", "").strip()
    if not raw:
        return int(default)
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"ORCHESTRATE_SEED must be an integer, not {raw!r}") from None


def load_config(path: str | os.PathLike | None = None) -> dict:
    """Read config.json; apply `gpu_profile` when profile == "gpu", then
    `smoke_profile` when ORCHESTRATE_SMOKE=1. Returns one flat dict (no profile
    sub-dicts) with `smoke` set, and `run_seed`: the seed of this run's SAE
    training (run_seed()); `seed` stays config.json's, the seed of the data, the
    tiny LM and its cache, which every seed of a run shares."""
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
    cfg["run_seed"] = run_seed(int(cfg.get("seed", 0)))
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
    """The data cache ($ORCHESTRATE_CACHE_DIR). Only `harness.py prepare` writes it;
    experiments and the evaluator read it (it is read-only to them under the
    orchestrator)."""
    d = os.environ.get("ORCHESTRATE_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "orchestrator", "sae")
    return Path(d)


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _save_tensors(tensors: dict, meta: dict, path: Path) -> None:
    """path (.safetensors) + its .json sidecar, each written atomically; the JSON
    last, so a reader that finds it finds the tensors complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    side = path.with_suffix(".json")
    tmp = side.with_name(side.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
    os.replace(tmp, side)


def _load_tensors(path: Path) -> tuple[dict, dict] | None:
    """(tensors, meta) from a cache entry, or None when it is not there."""
    side = path.with_suffix(".json")
    if not (path.is_file() and side.is_file()):
        return None
    return load_file(str(path)), json.loads(side.read_text())


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
def evaluate_synthetic(sae, task: SyntheticTask, device, n_eval: int = 16384,
                       data: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:
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
    * for an SAE with nested `levels`: level{i}_l0, level{i}_prefix_explained_variance,
      the mean level of the latent matched to each parent / child / independent
      feature (1 = coarsest) and parents_in_level1.
    `data` = (x, feature activations) replaces task.eval_set(n_eval): the
    evaluator passes samples drawn from its own seed.
    """
    sae.eval()
    x, acts = data if data is not None else task.eval_set(n_eval)
    n_eval = x.shape[0]
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
    levels = _levels_of(sae)
    if levels:
        lvl = _LevelSums(levels)
        lvl.add(sae, x.to(f.device), f)
        res.update(lvl.result(x.shape[0], tss.sum().item()))
        level = torch.bucketize(best, torch.tensor(levels), right=True) + 1
        res["parents_mean_level"] = level[par].float().mean().item()
        res["children_mean_level"] = level[ch].float().mean().item()
        res["independent_mean_level"] = level[ind].float().mean().item() if len(ind) else None
        res["parents_in_level1"] = (level[par] == 1).float().mean().item()
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


class TinyLM:
    """The tiny char-level HookedTransformer's forward pass in plain torch, read
    from its state dict (TransformerLens parameter names and maths: LN with eps
    1e-5, causal attention scaled by sqrt(d_head), exact GELU). The evaluator
    uses it so that it starts in about a second (transformer_lens takes ~5 s to
    import); tests check it against HookedTransformer's logits."""

    def __init__(self, state: dict, cfg: dict, device="cpu"):
        self.p = {k: v.to(device) for k, v in state.items() if v.is_floating_point()}
        self.n_layers, self.n_heads = int(cfg["lm_n_layers"]), int(cfg["lm_n_heads"])
        self.d_head = int(cfg["lm_d_model"]) // self.n_heads
        self.device = device

    def _ln(self, x, name):
        x = x - x.mean(-1, keepdim=True)
        x = x / (x.pow(2).mean(-1, keepdim=True) + 1e-5).sqrt()
        return x * self.p[f"{name}.w"] + self.p[f"{name}.b"]

    def _block(self, i, resid):
        p, b = self.p, f"blocks.{i}"
        x = self._ln(resid, f"{b}.ln1")
        q, k, v = (torch.einsum("bpd,hde->bphe", x, p[f"{b}.attn.W_{n}"]) + p[f"{b}.attn.b_{n}"]
                   for n in "QKV")
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / math.sqrt(self.d_head)
        n = resid.shape[1]
        causal = torch.ones(n, n, dtype=torch.bool, device=resid.device).tril()
        scores = scores.masked_fill(~causal, -100000.0)
        z = torch.einsum("bhqk,bkhe->bqhe", scores.softmax(-1), v)
        resid = resid + torch.einsum("bqhe,hed->bqd", z, p[f"{b}.attn.W_O"]) + p[f"{b}.attn.b_O"]
        x = self._ln(resid, f"{b}.ln2")
        h = F.gelu(x @ p[f"{b}.mlp.W_in"] + p[f"{b}.mlp.b_in"])
        return resid + h @ p[f"{b}.mlp.W_out"] + p[f"{b}.mlp.b_out"]

    def logits(self, tokens, hook: str | None = None, replace=None):
        """Logits for `tokens`; `replace(act)` substitutes the activation at
        `hook` (blocks.L.hook_resid_post only)."""
        layer = None
        if hook is not None:
            parts = hook.split(".")
            if len(parts) != 3 or parts[0] != "blocks" or parts[2] != "hook_resid_post":
                raise SystemExit(f"harness: TinyLM supports only blocks.L.hook_resid_post, not {hook!r}")
            layer = int(parts[1])
        tokens = tokens.to(self.device)
        resid = self.p["embed.W_E"][tokens] + self.p["pos_embed.W_pos"][: tokens.shape[1]]
        for i in range(self.n_layers):
            resid = self._block(i, resid)
            if i == layer and replace is not None:
                resid = replace(resid)
        return self._ln(resid, "ln_final") @ self.p["unembed.W_U"] + self.p["unembed.b_U"]


class _HookedLM:
    """The same `logits` call for a pretrained HookedTransformer (gpu profile)."""

    def __init__(self, model):
        self.model = model

    def logits(self, tokens, hook: str | None = None, replace=None):
        tokens = tokens.to(next(self.model.parameters()).device)
        if replace is None:
            return self.model(tokens)
        return self.model.run_with_hooks(tokens, fwd_hooks=[(hook, lambda act, hook=None: replace(act))])


class LMActivations:
    """A language model (`forward.logits`; `model` is the HookedTransformer for
    experiment code, None in the evaluator), the hook whose activations the SAE
    reconstructs, a shuffled buffer of training activations (scaled so that
    E||x||^2 = d_in), and held-out token windows for evaluation."""

    def __init__(self, model, forward, hook_name, acts, scale, eval_tokens, lm_info, d_in):
        self.model = model
        self.forward = forward
        self.hook_name = hook_name
        self.acts = acts  # (n_tokens, d_in), float32, cpu, already scaled (None in the evaluator)
        self.scale = scale  # multiply raw activations by this to get SAE inputs
        self.eval_tokens = eval_tokens
        self.d_in = int(d_in)
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


def _lm_paths(cfg: dict, cdir: Path) -> tuple[str, Path | None, Path]:
    """(model key, tiny-LM cache file or None for a pretrained model, activations file)."""
    if cfg["model"] == "tiny-char":
        key = _hash(_lm_key(cfg))
        mpath = cdir / f"tiny_lm_{key}.safetensors"
    else:
        key = _hash({"harness": HARNESS_VERSION, "model": cfg["model"], "n_ctx": cfg["lm_n_ctx"]})
        mpath = None
    apath = cdir / f"acts_{key}_{_hash([cfg['hook_name'], int(cfg['n_train_tokens']), cfg.get('seed', 0)])}.safetensors"
    return key, mpath, apath


def _hooked_tiny(cfg: dict, device, state: dict):
    from transformer_lens import HookedTransformer
    model = HookedTransformer(_tiny_cfg(cfg, device))
    model.load_state_dict(state)
    return model


def _collect_acts(model, train_ids, cfg: dict, device) -> torch.Tensor:
    hook, n_tokens, n_ctx = cfg["hook_name"], int(cfg["n_train_tokens"]), int(cfg["lm_n_ctx"])
    t0 = time.time()
    g = torch.Generator().manual_seed(int(cfg.get("seed", 0)) + 11)
    n_seq = math.ceil(n_tokens / n_ctx)
    tokens = _windows(train_ids, n_seq, n_ctx, g)
    chunks = []
    bs = int(cfg.get("lm_act_batch_size", 64))
    with torch.no_grad():
        for i in range(0, n_seq, bs):
            _, cache = model.run_with_cache(tokens[i:i + bs].to(device), names_filter=hook, stop_at_layer=None)
            chunks.append(cache[hook].reshape(-1, cache[hook].shape[-1]).float().cpu())
    acts = torch.cat(chunks)[:n_tokens].contiguous()
    _log(f"activations collected in {time.time() - t0:.1f}s {tuple(acts.shape)}")
    return acts


def _act_scale(acts: torch.Tensor) -> float:
    return math.sqrt(acts.shape[1] / acts.pow(2).sum(dim=1).mean().item())


def _build(cfg: dict, device, cdir: Path, write: bool):
    """(hooked model, state dict or None, lm meta, acts, acts meta): from the cache
    when it is there, else built in-process (and written only when `write`: the
    `prepare` step). The global torch RNG is left as it was, so results do not
    depend on whether the cache was warm."""
    with torch.random.fork_rng(devices=[]):
        key, mpath, apath = _lm_paths(cfg, cdir)
        state, lm_meta, model = None, {"key": key, "final_loss": None}, None
        if mpath is not None:
            entry = _load_tensors(mpath)
            if entry is not None:
                state, lm_meta = entry
                _log(f"tiny LM loaded from cache {mpath.name}")
            else:
                if not write:
                    _log(f"tiny LM not in the cache {cdir}: training it in-process (NOT sealed; "
                         f"`python harness.py prepare` builds the cache)")
                model, loss = _train_tiny_lm(cfg, device)
                state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
                lm_meta = {"key": key, "final_loss": loss, "config": _lm_key(cfg)}
                if write:
                    _save_tensors(state, lm_meta, mpath)
        entry = _load_tensors(apath)
        if entry is not None:
            acts, acts_meta = entry[0]["acts"], entry[1]
            _log(f"activations loaded from cache {apath.name} {tuple(acts.shape)}")
            return model, state, lm_meta, acts, acts_meta
        if model is None:
            model = _hooked_tiny(cfg, device, state) if state is not None else _load_pretrained(cfg, device)
        model.eval()
        if cfg["hook_name"] not in model.hook_dict:
            raise SystemExit(f"harness: hook {cfg['hook_name']!r} is not a hook point of {cfg['model']!r}")
        train_ids, _ = _corpus() if state is not None else _tokenize_for(model, cfg)
        if not write:
            _log(f"activations not in the cache {cdir}: collecting them in-process (NOT sealed)")
        acts = _collect_acts(model, train_ids, cfg, device)
        acts_meta = {"key": key, "hook_name": cfg["hook_name"], "shape": list(acts.shape),
                     "scale": _act_scale(acts)}
        if write:
            _save_tensors({"acts": acts}, acts_meta, apath)
        return model, state, lm_meta, acts, acts_meta


def prepare(cache: str | os.PathLike) -> None:
    """The only step that writes the data cache: the LM and activations of the
    full configuration and of the smoke configuration (config.json as it is in
    the cwd), as safetensors + JSON."""
    cdir = Path(cache)
    cdir.mkdir(parents=True, exist_ok=True)
    saved = os.environ.get("ORCHESTRATE_SMOKE")
    try:
        for smoke in ("0", "1"):
            os.environ["ORCHESTRATE_SMOKE"] = smoke
            cfg = load_config()
            device = pick_device(cfg)
            _, _, lm_meta, acts, _ = _build(cfg, device, cdir, write=True)
            _log(f"prepared {'smoke' if smoke == '1' else 'full'}: LM {lm_meta['key']}, "
                 f"activations {tuple(acts.shape)} in {cdir}")
    finally:
        if saved is None:
            os.environ.pop("ORCHESTRATE_SMOKE", None)
        else:
            os.environ["ORCHESTRATE_SMOKE"] = saved


def _lm_for_eval(cfg: dict, device, model, state, hook):
    if state is not None:
        return TinyLM(state, cfg, device)
    return _HookedLM(model if model is not None else _load_pretrained(cfg, device))


def load_lm_activations(cfg: dict, device) -> LMActivations:
    """The model and its training activations at hook_name, read from the cache
    (never written here), plus the held-out windows for the experiment's own
    check. With no cache (a run by hand before `prepare`) they are built
    in-process. The global torch RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        model, state, lm_meta, acts, acts_meta = _build(cfg, device, cache_dir(), write=False)
        if model is None:
            model = _hooked_tiny(cfg, device, state) if state is not None else _load_pretrained(cfg, device)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    hook = cfg["hook_name"]
    if hook not in model.hook_dict:
        raise SystemExit(f"harness: hook {hook!r} is not a hook point of {cfg['model']!r}")
    _, eval_ids = _corpus() if state is not None else _tokenize_for(model, cfg)
    g = torch.Generator().manual_seed(int(cfg.get("seed", 0)) + 13)
    eval_tokens = _windows(eval_ids, int(cfg["n_eval_seqs"]), int(cfg["lm_n_ctx"]), g)
    scale = float(acts_meta["scale"])
    info = {"seed": int(cfg.get("seed", 0)), "lm_final_train_loss": lm_meta.get("final_loss"),
            "lm_cache_key": lm_meta["key"]}
    forward = _lm_for_eval(cfg, device, model, state, hook)
    return LMActivations(model, forward, hook, acts * scale, scale, eval_tokens, info, acts.shape[1])


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
    """SAEBench core metrics on held-out token windows (lm.eval_tokens).

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
    * for an SAE with nested `levels` (Matryoshka / HSAE prefixes, see
      SavedSAE): level{i}_l0 and level{i}_prefix_explained_variance.
    """
    sae.eval()
    hook = lm.hook_name
    sums = {k: 0.0 for k in ("ce_clean", "ce_sae", "ce_abl", "kl_sae", "kl_abl", "l0", "l1",
                             "sq_err", "cos", "l2_ratio", "x_dot_xhat", "x_sq", "n_tok", "n_pred")}
    lvl = _LevelSums(_levels_of(sae))
    xs_sum = None
    xs_sq = 0.0
    captured = {}

    def splice(act):
        x = act.float() * lm.scale
        flat = x.reshape(-1, x.shape[-1])
        f = sae.encode(flat)
        x_hat = sae.decode(f)
        captured["x"], captured["x_hat"], captured["f"] = flat, x_hat, f
        return (x_hat / lm.scale).reshape(act.shape).to(act.dtype)

    def ablate(act):
        return torch.zeros_like(act)

    for i in range(0, lm.eval_tokens.shape[0], batch_size):
        tokens = lm.eval_tokens[i:i + batch_size]
        logits_clean = lm.forward.logits(tokens).float()
        logits_sae = lm.forward.logits(tokens, hook, splice).float()
        logits_abl = lm.forward.logits(tokens, hook, ablate).float()
        target = tokens[:, 1:].to(logits_clean.device)
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
        lvl.add(sae, x, f)

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
        **lvl.result(ntok, tss),
    }


def _levels_of(sae) -> list[int]:
    """Nested prefix ends of an SAE: SavedSAE.levels, or the `levels` of an
    experiment SAE's spec() (what it will declare when saved)."""
    levels = getattr(sae, "levels", None)
    if levels is None and callable(getattr(sae, "spec", None)):
        levels = sae.spec().get("levels")
    return list(levels or [])


class _LevelSums:
    """Per nested level (prefix ends `levels`): active latents of the level, and
    the squared error of the reconstruction from the prefix ending there."""

    def __init__(self, levels):
        self.levels = levels
        self.l0 = [0.0] * len(levels)
        self.sq = [0.0] * len(levels)

    def add(self, sae, x, f):
        start = 0
        for i, end in enumerate(self.levels):
            self.l0[i] += (f[:, start:end] > 0).float().sum().item()
            x_hat = f[:, :end] @ sae.W_dec[:end].float().to(f.device) + sae.b_dec.float().to(f.device)
            self.sq[i] += (x - x_hat).pow(2).sum().item()
            start = end

    def result(self, n, tss) -> dict:
        out = {}
        for i in range(len(self.levels)):
            out[f"level{i + 1}_l0"] = self.l0[i] / n
            out[f"level{i + 1}_prefix_explained_variance"] = 1.0 - self.sq[i] / tss
        return out


# --------------------------------------------------------------------------- #
# a trained SAE as data (RUN/saes/NAME.safetensors + RUN/saes/NAME.json)

ARCHITECTURES = {
    # architecture: encoder tensors besides W_dec (d_sae, d_in) and b_dec (d_in,)
    "relu": ("W_enc", "b_enc"),
    "topk": ("W_enc", "b_enc"),
    "jumprelu": ("W_enc", "b_enc", "threshold"),
    "gated": ("W_gate", "b_gate", "r_mag", "b_mag"),
}
SPEC_KEYS = {"format", "architecture", "d_in", "d_sae", "k", "subtract_decoder_bias", "levels", "notes"}
MAX_ARTIFACT_BYTES = 2 << 30


class ArtifactError(Exception):
    """A saved SAE that does not follow the contract (README: "Saving an SAE")."""


def _check_sae(tensors: dict, spec: dict, where: str) -> dict:
    """Validate a saved SAE (spec + tensors); returns the spec with defaults."""
    if not isinstance(spec, dict):
        raise ArtifactError(f"{where}.json: not a JSON object")
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise ArtifactError(f"{where}.json: unknown key(s) {sorted(unknown)}; allowed: {sorted(SPEC_KEYS)}")
    arch = spec.get("architecture")
    if arch not in ARCHITECTURES:
        raise ArtifactError(f"{where}.json: architecture must be one of {sorted(ARCHITECTURES)}, not {arch!r}")
    d_in, d_sae = spec.get("d_in"), spec.get("d_sae")
    if not (isinstance(d_in, int) and isinstance(d_sae, int) and d_in > 0 and d_sae > 0):
        raise ArtifactError(f"{where}.json: d_in and d_sae must be positive integers")
    need = {"W_dec": (d_sae, d_in), "b_dec": (d_in,)}
    shapes = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "threshold": (d_sae,), "W_gate": (d_in, d_sae),
              "b_gate": (d_sae,), "r_mag": (d_sae,), "b_mag": (d_sae,)}
    need.update({name: shapes[name] for name in ARCHITECTURES[arch]})
    if set(tensors) != set(need):
        raise ArtifactError(f"{where}.safetensors: a {arch} SAE holds exactly {sorted(need)}, "
                            f"found {sorted(tensors)}")
    for name, shape in need.items():
        t = tensors[name]
        if tuple(t.shape) != shape or not t.is_floating_point():
            raise ArtifactError(f"{where}.safetensors: {name} must be a float tensor of shape {shape}, "
                                f"is {t.dtype} {tuple(t.shape)}")
    if arch == "topk":
        k = spec.get("k")
        if not (isinstance(k, int) and 1 <= k <= d_sae):
            raise ArtifactError(f"{where}.json: a topk SAE needs an integer k in [1, d_sae]")
    elif "k" in spec:
        raise ArtifactError(f"{where}.json: k is only for architecture topk")
    levels = spec.get("levels")
    if levels is not None and (
            not isinstance(levels, list) or not levels or not all(isinstance(e, int) for e in levels)
            or levels != sorted(set(levels)) or levels[0] < 1 or levels[-1] != d_sae):
        raise ArtifactError(f"{where}.json: levels must be increasing prefix ends ending at d_sae "
                            f"(e.g. [64, 256, {d_sae}])")
    sub = spec.get("subtract_decoder_bias", True)
    if not isinstance(sub, bool):
        raise ArtifactError(f"{where}.json: subtract_decoder_bias must be true or false")
    return {**spec, "format": 1, "subtract_decoder_bias": sub}


def save_sae(out_dir, name: str, tensors: dict, spec: dict) -> Path:
    """Write a trained SAE as data for the evaluator: out_dir/saes/NAME.safetensors
    (W_dec, b_dec and the architecture's encoder tensors) and NAME.json (the
    declared architecture). Checked here too, so a malformed SAE fails its own run."""
    if not name.isidentifier():
        raise ArtifactError(f"save_sae: name must be an identifier, not {name!r}")
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}
    spec = _check_sae(tensors, dict(spec), f"saes/{name}")
    path = Path(out_dir) / "saes" / f"{name}.safetensors"
    _save_tensors(tensors, spec, path)
    return path


class SavedSAE(torch.nn.Module):
    """An SAE rebuilt from its saved data, with the evaluations' protocol.

    encode (x' = x - b_dec, or x when subtract_decoder_bias is false):
      relu:     f = ReLU(x' W_enc + b_enc)
      topk:     the k largest of ReLU(x' W_enc + b_enc), the rest 0
      jumprelu: f = z * (z > threshold), z = ReLU(x' W_enc + b_enc)
      gated:    f = 1[x' W_gate + b_gate > 0] * ReLU(x' (W_gate * exp(r_mag)) + b_mag)
    decode: x_hat = f W_dec + b_dec, always (the evaluator's own reconstruction).
    `levels`: nested prefix ends (Matryoshka / HSAE), for the per-level metrics."""

    def __init__(self, tensors: dict, spec: dict, device="cpu"):
        super().__init__()
        self.spec = spec
        self.arch = spec["architecture"]
        self.k = spec.get("k")
        self.levels = spec.get("levels")
        self.subtract = spec["subtract_decoder_bias"]
        for name, t in tensors.items():
            self.register_buffer(name, t.float().to(device))

    def encode(self, x):
        x = x - self.b_dec if self.subtract else x
        if self.arch == "gated":
            gate = x @ self.W_gate + self.b_gate
            mag = torch.relu(x @ (self.W_gate * self.r_mag.exp()) + self.b_mag)
            return (gate > 0).float() * mag
        z = torch.relu(x @ self.W_enc + self.b_enc)
        if self.arch == "topk":
            vals, idx = z.topk(self.k, dim=-1)
            return torch.zeros_like(z).scatter_(-1, idx, vals)
        if self.arch == "jumprelu":
            return z * (z > self.threshold)
        return z

    def decode(self, f):
        return f @ self.W_dec + self.b_dec


def load_sae(run_dir, name: str, d_in: int, device="cpu") -> SavedSAE:
    """Read RUN/saes/NAME.{json,safetensors} as data (never a pickle, never a
    symlink) and check it against the contract and the expected input size."""
    base = Path(run_dir) / "saes" / name
    files = {ext: base.with_name(f"{name}.{ext}") for ext in ("json", "safetensors")}
    for ext, path in files.items():
        if path.is_symlink() or not path.is_file():
            raise ArtifactError(f"saes/{name}.{ext} is missing from the run (or not a regular file): "
                                f"experiment.py must save each trained SAE with harness.save_sae")
        if path.stat().st_size > MAX_ARTIFACT_BYTES:
            raise ArtifactError(f"saes/{name}.{ext} is larger than {MAX_ARTIFACT_BYTES >> 30} GiB")
    try:
        spec = json.loads(files["json"].read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ArtifactError(f"saes/{name}.json: not valid JSON ({e})") from None
    try:
        tensors = load_file(str(files["safetensors"]))
    except Exception as e:  # safetensors raises its own error types on bad headers
        raise ArtifactError(f"saes/{name}.safetensors: not a safetensors file ({type(e).__name__}: {e})") from None
    spec = _check_sae(tensors, spec, f"saes/{name}")
    if spec["d_in"] != d_in:
        raise ArtifactError(f"saes/{name}.json: d_in is {spec['d_in']}, the activations have {d_in}")
    return SavedSAE(tensors, spec, device)


# --------------------------------------------------------------------------- #
# the sealed evaluator


def eval_seed() -> tuple[int, str]:
    """(seed, where it came from). The orchestrator passes a per-workspace secret;
    by hand a fixed fallback is used."""
    raw = os.environ.get("ORCHESTRATE_EVAL_SEED", "").strip()
    if not raw:
        return EVAL_SEED_FALLBACK, "fallback"
    try:
        return int(raw) % (2**62), "ORCHESTRATE_EVAL_SEED"
    except ValueError:
        raise SystemExit(f"harness: ORCHESTRATE_EVAL_SEED must be an integer, not {raw!r}") from None


def evaluate_run(run_dir, out) -> dict:
    """Score the SAEs a run saved, on data the run never saw; write `out`.

    synthetic: fresh samples of the planted hierarchy drawn from the eval seed.
    core: LM windows of the held-out 10% of the corpus, drawn from the eval seed,
    through the LM of the (read-only) cache; every reconstruction is
    f W_dec + b_dec computed here. Nothing of the run is imported or unpickled."""
    t0 = time.time()
    cfg = load_config()
    device = pick_device(cfg)
    seed, source = eval_seed()
    run_dir = Path(run_dir)
    with torch.random.fork_rng(devices=[]):
        task = SyntheticTask(cfg)
        g = torch.Generator().manual_seed(seed)
        data = task.sample(int(cfg["syn_n_eval"]), g)
        syn = load_sae(run_dir, "synthetic", task.d_in, device)
        synthetic = evaluate_synthetic(syn, task, device, data=data)
        _, mpath, apath = _lm_paths(cfg, cache_dir())
        entry = _load_tensors(mpath) if mpath is not None else None
        side = apath.with_suffix(".json")
        if (mpath is None or entry is not None) and side.is_file() and apath.is_file():
            model, state, acts_meta = None, entry[0] if entry else None, json.loads(side.read_text())
        else:  # no cache (by hand, before `prepare`): built in-process, not sealed
            model, state, _, _, acts_meta = _build(cfg, device, cache_dir(), write=False)
        d_in = int(acts_meta["shape"][1])
        lm_sae = load_sae(run_dir, "lm", d_in, device)
        forward = _lm_for_eval(cfg, device, model, state, cfg["hook_name"])
        if state is not None:
            _, eval_ids = _corpus()
        else:
            _, eval_ids = _tokenize_for(forward.model, cfg)
        g = torch.Generator().manual_seed(seed + 1)
        eval_tokens = _windows(eval_ids, int(cfg["n_eval_seqs"]), int(cfg["lm_n_ctx"]), g)
        lm = LMActivations(None, forward, cfg["hook_name"], None, float(acts_meta["scale"]), eval_tokens,
                           {"seed": int(cfg.get("seed", 0))}, d_in)
        core = evaluate_core(lm_sae, lm)
    core["d_sae"] = int(lm_sae.spec["d_sae"])
    core["architecture"] = lm_sae.arch
    synthetic["architecture"] = syn.arch
    result = {"core": core, "synthetic": synthetic,
              "evaluator": {"seed_source": source, "smoke": cfg["smoke"], "wall_time_s": time.time() - t0}}
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(_plain(result), fh, indent=2, allow_nan=True)
    os.replace(tmp, out)
    return result


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


# --------------------------------------------------------------------------- #
# command line: `prepare` and `evaluate` (the orchestrator's protected steps)


def main(argv: list[str] | None = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="harness.py")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="build the tiny LM and the activation caches")
    p.add_argument("--cache_dir", required=True)
    e = sub.add_parser("evaluate", help="score a run's saved SAEs on held-out data")
    e.add_argument("--run_dir", required=True)
    e.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "prepare":
            prepare(args.cache_dir)
        else:
            res = evaluate_run(args.run_dir, args.out)
            _log(f"evaluated {args.run_dir}: core.l0 {res['core']['l0']:.3f}, core.explained_variance "
                 f"{res['core']['explained_variance']:.4f}, synthetic.fraction_recovered "
                 f"{res['synthetic']['fraction_recovered']:.3f} in {res['evaluator']['wall_time_s']:.2f}s "
                 f"-> {args.out}")
    except ArtifactError as err:
        print(f"harness: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
