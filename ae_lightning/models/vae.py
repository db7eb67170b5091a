"""The variational autoencoder (``vae``; ``vae_fc`` is its fully connected literature setting).

    encoder conv (default)  Conv(1->8,s2,p1) ReLU Conv(8->16,s2,p1) ReLU Conv(16->32,s2) ReLU
                            Flatten(288) Linear(288->128) ReLU Linear(128->64) ReLU, heads mu, log var (k)
                            (``heads_act: none``: no ReLU before the heads, the tuned study's appendix)
    encoder fc              784 -> hidden... (e.g. 200-200) -> heads mu, log var (k)
    decoder                 the mirror image: k -> 64 -> 128 -> 288, ConvTranspose back to 1x28x28
(sizes for MNIST's 1x28x28: the module's ``input_shape`` (C, H, W) sets the first and last layers)

Objective, in **nats per image** (summed over the 784 pixels, averaged over images; see
``ae_lightning.metrics``):  loss = -log p(x|z) + beta_t * KL(q(z|x) || N(0, I)),  z ~ q(z|x), where
beta_t ramps linearly from 0 to ``beta`` over ``kl_warmup_epochs`` during training (validation and
test always use ``beta``). ``val/elbo`` = -(recon + KL) is the true ELBO whatever beta is.

``test/nll`` (``test_nll`` in metrics.json) is -log p(x) per image, estimated by importance sampling
with the posterior as proposal:  log p(x) ~ logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K.
It is a stochastic upper bound on the true NLL and, on average, never above the negative ELBO (the
K-sample IWAE bound is at least as tight as the one-sample ELBO). With Bernoulli likelihood on
binarized data (``data.binarize: dynamic``) it is the figure published VAE papers report.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ae_lightning.configs.vae import VAEConfig
from ae_lightning.metrics import ExactMean
from ae_lightning.models import register
from ae_lightning.models.base import AutoencoderModule, LossOutput
from ae_lightning.models.blocks import conv_decoder, conv_encoder
from ae_lightning.models.layers import mlp

LOG_2PI = math.log(2 * math.pi)
# importance-sampling decodes per chunk: K * images (memory ~ chunk * C*H*W floats). Most of the NLL's time is
# the decoder's convolutions, whose per-image cost grows with the batch once it leaves the cache, so the
# chunk is small (docs/benchmarks.md, "VAE test NLL chunk"). The estimator is the same for any chunk.
IS_CHUNK = 4_096


@register(VAEConfig)
class VAE(AutoencoderModule):
    # the test NLL costs nll_samples decoder passes per test image: 10 where no one reads it (the studies)
    cheap_evaluation = {"nll_samples": 10, "fid_cls": False}
    hparam_options_unused = ("model.loss",)  # the objective is -ELBO, set by model.likelihood
    prior_std = 1.0  # p(z) = N(0, I), which ``sample`` draws from

    def __init__(self, **options: Any):
        super().__init__(**options)
        hp = self.hparams
        act, slope, k, hidden = hp.hidden_act, hp.leaky_slope, hp.latent_dim, hp.hidden
        last = act if hp.heads_act == "hidden" else "none"  # none: the tuned study's appendix (Linear(128, 64) -> heads)
        if hp.encoder == "conv":
            convs, flat = conv_encoder(hp.channels, hp.layout, act, self.input_shape, slope)
            self.body = nn.Sequential(convs, mlp([flat, *hidden], act, last, slope))  # (B,C,H,W) -> (B,h)
            self.decoder = nn.Sequential(mlp([k, *reversed(hidden), flat], act, act, slope),
                                         conv_decoder(hp.channels, hp.layout, act, self.input_shape, slope))
        else:
            n = self.input_size
            self.body = nn.Sequential(nn.Flatten(), mlp([n, *hidden], act, last, slope))
            self.decoder = nn.Sequential(mlp([k, *reversed(hidden), n], act, "none", slope),
                                         nn.Unflatten(1, self.input_shape))
        self.mu = nn.Linear(hidden[-1], k)
        self.logvar = nn.Linear(hidden[-1], k)
        # test: importance-sampled -log p(x), nats per image (in a dict, as the base's metrics: not a submodule)
        self.nll = {"test": ExactMean()}

    # -- the model -------------------------------------------------------------------------------
    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x): mean and log variance, each (B,k)."""
        h = self.body(x)
        return self.mu(h), self.logvar(h).clamp(-30, 20)  # clamp: exp() stays finite early on

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0]  # the posterior mean is the deterministic code

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)  # (B,k) -> (B,C,H,W) logits

    def log_px_given_z(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x|z) per image, summed over pixels: logits (..., C, H, W), x broadcastable -> (...)."""
        if self.hparams.likelihood == "bernoulli":
            x = x.expand_as(logits)
            return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(-3).sum(-1)
        s = self.hparams.obs_std
        return -0.5 * (((x - self.output(logits)) / s).square() + LOG_2PI + 2 * math.log(s)).flatten(-3).sum(-1)

    @staticmethod
    def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(N(mu, diag exp(logvar)) || N(0, I)) per image, closed form: (B,k) -> (B,)."""
        return 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(-1)

    def kl_weight(self, stage: str) -> float:
        """beta, ramped linearly over the first ``kl_warmup_epochs`` training epochs (per step)."""
        hp = self.hparams
        if stage != "train" or not hp.kl_warmup_epochs or self._trainer is None:
            return hp.beta
        steps = max(1, hp.kl_warmup_epochs * max(1, int(self.trainer.num_training_batches)))
        return hp.beta * min(1.0, (self.global_step + 1) / steps)

    def loss(self, x: torch.Tensor, stage: str) -> tuple[torch.Tensor, LossOutput]:
        mu, logvar = self.posterior(x)
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)  # reparameterized sample (B,k)
        logits = self.decode(z)
        recon = -self.log_px_given_z(logits, x)  # (B,) nats
        kl = self.kl_divergence(mu, logvar)  # (B,) nats
        beta = self.kl_weight(stage)
        loss = (recon + beta * kl).mean()
        # metrics (mse, nrmse) are on the mean reconstruction decode(mu) outside training
        x_hat = self.output(logits) if stage == "train" else self.output(self.decode(mu))
        log = {"recon": recon.mean(), "kl": kl.mean(), "elbo": -(recon + kl).mean()}
        if stage == "train" and self.hparams.kl_warmup_epochs:  # else a flat line, and the first card
            log["beta"] = torch.tensor(beta)
        return loss, LossOutput(x_hat, mu, log)

    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor, k: int | None = None) -> torch.Tensor:
        """Importance-sampled log p(x) per image (B,), K samples from q(z|x), batched in chunks."""
        k = k or self.hparams.nll_samples
        out = []
        step = max(1, IS_CHUNK // k)
        for i in range(0, len(x), step):
            xb = x[i:i + step]  # (b,C,H,W)
            mu, logvar = self.posterior(xb)  # (b,k_lat)
            std = (0.5 * logvar).exp()
            eps = torch.randn((k, *mu.shape), device=x.device, dtype=mu.dtype)  # (K,b,k_lat)
            z = mu + std * eps
            logits = self.decode(z.flatten(0, 1)).view(k, len(xb), *self.input_shape)
            log_pxz = self.log_px_given_z(logits, xb.unsqueeze(0))  # (K,b)
            log_pz = -0.5 * (z.square() + LOG_2PI).sum(-1)
            log_qz = -0.5 * (eps.square() + LOG_2PI + logvar).sum(-1)
            out.append(torch.logsumexp(log_pxz + log_pz - log_qz, 0) - math.log(k))
        return torch.cat(out)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images (n,C,H,W) decoded from z ~ N(0, I): the mean of p(x|z) in pixel scale."""
        device = self.device if generator is None else generator.device
        z = torch.randn(n, self.hparams.latent_dim, generator=generator, device=device)
        return self.output(self.decode(z.to(self.device)))

    # -- the test NLL ------------------------------------------------------------------------------
    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self.nll["test"].reset()

    def test_step(self, batch, batch_idx):
        super().test_step(batch, batch_idx)
        x, _ = batch
        self.nll["test"].update(-self.log_likelihood(x))

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        nll = self.nll["test"].compute()  # the mean over every DDP rank's images
        if nll is not None:
            self.log_reduced("test/nll", nll)
        self.nll["test"].reset()
