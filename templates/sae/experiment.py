"""Train a vanilla ReLU sparse autoencoder (SAE) and score it.

Read top to bottom: configuration, the SAE, its loss, the trainer, then the two
experiments:
  1. synthetic activations with a planted feature hierarchy (scored exactly
     against the true features: recovery, absorption, hierarchy);
  2. activations of a small language model (SAEBench core metrics: sparsity,
     reconstruction, CE-loss and KL-div with the SAE spliced into the model).
Data and evaluation live in harness.py, which is protected: change the SAE and
its training here, not the way it is scored. Each trained SAE is saved as data
(harness.save_sae: its tensors and a declared encoder architecture); after the
run the harness's evaluator scores those files on held-out data, and its numbers
are the run's results. The numbers this script writes are its own report.

    python experiment.py --out_dir=run_1
    ORCHESTRATE_SMOKE=1 python experiment.py --out_dir=smoke   # seconds
"""

import argparse
import math
import time

import torch
import torch.nn as nn

import harness

# ----------------------------------------------------------------------------
# configuration (config.json; the smoke run shrinks every size)

parser = argparse.ArgumentParser()
parser.add_argument("--out_dir", required=True)
args = parser.parse_args()

cfg = harness.load_config()
device = harness.pick_device(cfg)
torch.manual_seed(cfg["run_seed"])  # $ORCHESTRATE_SEED: one per seed of a full run
print(f"profile={cfg['profile']} smoke={cfg['smoke']} device={device}", flush=True)


# ----------------------------------------------------------------------------
# the sparse autoencoder


class SAE(nn.Module):
    """f = ReLU((x - b_dec) W_enc + b_enc),  x_hat = f W_dec + b_dec.

    W_dec has one row per latent; rows are kept at unit norm, so the L1 penalty
    on f cannot be dodged by shrinking f and growing the decoder.
    """

    def __init__(self, d_in, d_sae):
        super().__init__()
        self.d_in, self.d_sae = d_in, d_sae
        W = torch.empty(d_sae, d_in)
        nn.init.kaiming_uniform_(W, a=math.sqrt(5))  # never zeros: zeros cannot train
        W = W / W.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(W.clone())
        self.W_enc = nn.Parameter(W.T.clone())  # tied at init, free afterwards
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.b_dec = nn.Parameter(torch.zeros(d_in))

    def encode(self, x):
        return torch.relu((x - self.b_dec) @ self.W_enc + self.b_enc)

    def decode(self, f):
        return f @ self.W_dec + self.b_dec

    def forward(self, x):
        f = self.encode(x)
        return self.decode(f), f

    def spec(self):
        """How the evaluator rebuilds the encoder from the saved tensors (see
        harness.SavedSAE: relu, topk + k, jumprelu, gated; nested levels)."""
        return {"architecture": "relu", "d_in": self.d_in, "d_sae": self.d_sae}

    @torch.no_grad()
    def normalize_decoder(self):
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8)


def sae_loss(sae, x, l1_coeff):
    """Squared error summed over dimensions + l1_coeff * L1 of the latents."""
    x_hat, f = sae(x)
    mse = (x - x_hat).pow(2).sum(dim=-1).mean()
    l1 = f.abs().sum(dim=-1).mean()
    loss = mse + l1_coeff * l1
    return loss, {"mse": mse.item(), "l1": l1.item(), "l0": (f > 0).float().sum(-1).mean().item()}


# ----------------------------------------------------------------------------
# the trainer: counts the steps it actually executed


def train(sae, batches, steps, lr, l1_coeff, warmup_frac, name):
    opt = torch.optim.Adam(sae.parameters(), lr=lr, betas=(0.9, 0.999))
    first = next(batches)
    with torch.no_grad():
        sae.b_dec.copy_(first.mean(dim=0))  # start the decoder bias at the data mean
    warmup = max(1, int(warmup_frac * steps))
    executed, tokens, recent = 0, 0, []
    t0 = time.time()
    for step in range(steps):
        x = first if step == 0 else next(batches)
        coeff = l1_coeff * min(1.0, (step + 1) / warmup)  # L1 warm-up
        loss, parts = sae_loss(sae, x, coeff)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sae.normalize_decoder()
        executed += 1
        tokens += x.shape[0]
        recent = (recent + [loss.item()])[-50:]
        if not math.isfinite(recent[-1]):
            print(f"[{name}] step {step + 1}: loss is {recent[-1]}, stopping", flush=True)
            break
        if step % 500 == 0 or step == steps - 1:
            print(f"[{name}] step {step + 1}/{steps} loss {recent[-1]:.4f} "
                  f"mse {parts['mse']:.4f} l0 {parts['l0']:.1f}", flush=True)
    return {
        "steps_planned": steps,
        "steps_executed": executed,
        "tokens_seen": tokens,
        "final_loss": sum(recent) / len(recent) if recent else None,  # mean of last 50 steps
        "wall_time_s": time.time() - t0,
    }


# ----------------------------------------------------------------------------
# data: synthetic activations with a planted hierarchy, and the activations of a
# small language model (trained once by the harness, then cached)

t_start = time.time()
task = harness.SyntheticTask(cfg)
lm = harness.load_lm_activations(cfg, device)

# ----------------------------------------------------------------------------
# 1. an SAE on the synthetic activations, scored against the planted features

syn_sae = SAE(task.d_in, cfg["syn_d_sae"]).to(device)
syn_train = train(syn_sae, task.batches(cfg["syn_batch_size"], device), cfg["syn_steps"],
                  cfg["sae_lr"], cfg["syn_l1_coeff"], cfg["l1_warmup_frac"], "synthetic")
harness.save_sae(args.out_dir, "synthetic", syn_sae.state_dict(), syn_sae.spec())
synthetic = harness.evaluate_synthetic(syn_sae, task, device, cfg["syn_n_eval"])
synthetic.update({f"train_{k}": v for k, v in syn_train.items()})
print("synthetic:", {k: round(v, 4) for k, v in synthetic.items() if isinstance(v, float)},
      flush=True)

# ----------------------------------------------------------------------------
# 2. an SAE on the language model's activations, scored with SAEBench core metrics

sae = SAE(lm.d_in, cfg["d_sae"]).to(device)
training = train(sae, lm.batches(cfg["sae_batch_size"], device), cfg["sae_steps"],
                 cfg["sae_lr"], cfg["l1_coeff"], cfg["l1_warmup_frac"], "lm")
harness.save_sae(args.out_dir, "lm", sae.state_dict(), sae.spec())
core = harness.evaluate_core(sae, lm)
print("core:", {k: round(v, 4) for k, v in core.items() if isinstance(v, float)}, flush=True)

# ----------------------------------------------------------------------------
# results

training["total_wall_time_s"] = time.time() - t_start
path = harness.write_final_info(args.out_dir, training=training, synthetic=synthetic,
                                core=core, cfg={**cfg, **lm.lm_info})
print(f"wrote {path}", flush=True)
