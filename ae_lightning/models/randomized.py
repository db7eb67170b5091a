"""The layer-wise randomized deep autoencoder (``randomized``), trained in stages inside one run.

Sizes n_0 = 784, n_1, ..., n_L = k (``layers`` + ``latent_dim``; default 784-500-200-100-10). n_0 is
the input's size C*H*W (784 for 28x28), taken from the module's ``input_shape``: ``layers[0]`` stands for it.
Stage i (i = 0 .. L-1) trains a shallow autoencoder on h_i, the output of the deep encoder so far
(h_0 = x):

    h_{i+1} = act(R_i h_i + c_i)      R_i random and FROZEN (``random_encoders.i``, never trained)
    h_i_hat = act(W_d h_{i+1} + b_d)  W_d trained (stage 0: the output activation and ``loss``;
                                      later stages: the hidden activation and MSE against h_i)

W_d *is* layer i of the deep decoder (``decoders.i``: n_{i+1} -> n_i), and after every optimizer step
of the stage its transpose W_d^T is copied into layer i of the deep encoder (``encoders.i``, bias 0),
so the next stage reads h_{i+1} = act(W_d^T h_i) from the deep encoder, as in the multilayer
ELM autoencoder. After the last stage, the deep autoencoder 784 -> ... -> k -> ... -> 784 is complete;
``finetune_epochs`` > 0 then trains all of it end to end.

Schedule (one ``fit``): the last ``finetune_epochs`` epochs fine-tune; the epochs before are split
evenly among the L stages (stage i runs epochs [floor(i E / L), floor((i+1) E / L))). Each epoch logs
``train/stage`` (L = fine-tuning) and ``train/stage<i>_loss``; validation and test always measure
the deep autoencoder as it stands. That ``val/loss`` does not fall stage by stage: decoder i was
trained on the random codes act(R_i h_i) but reads act(W_d^T h_i) in the deep model, so on MNIST it
is lowest after stage 0 and rises with every stage. The run's best checkpoint is therefore chosen
from the last layer stage on (``selectable_epoch``), where every layer is trained.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import EarlyStopping
from torch import nn

from ae_lightning.configs.randomized import RandomizedConfig
from ae_lightning.errors import UserError
from ae_lightning.models import register
from ae_lightning.models.base import AutoencoderModule, LossOutput
from ae_lightning.models.layers import activation


@register(RandomizedConfig)
class RandomizedAutoencoder(AutoencoderModule):
    # each layer-wise stage trains one decoder: DDP must not wait for the other parameters' gradients
    ddp_find_unused_parameters = True

    def __init__(self, **options: Any):
        super().__init__(**options)
        hp = self.hparams
        sizes = [self.input_size, *hp.layers[1:], hp.latent_dim]
        pairs = list(zip(sizes[:-1], sizes[1:]))
        self.random_encoders = nn.ModuleList(nn.Linear(a, b) for a, b in pairs)
        for lin in self.random_encoders:
            # N(0, gain^2 / n_in), bias 0: PyTorch's default init (std ~ 0.6 / sqrt(n_in)) leaves every
            # sigmoid feature near 0.5 for all images, and the decoder learns next to nothing from them
            nn.init.normal_(lin.weight, 0.0, hp.random_gain / lin.in_features ** 0.5)
            nn.init.zeros_(lin.bias)
        self.random_encoders.requires_grad_(False)  # frozen: saved in checkpoints, never optimized
        self.encoders = nn.ModuleList(nn.Linear(a, b) for a, b in pairs)  # layer i: n_i -> n_{i+1}
        self.decoders = nn.ModuleList(nn.Linear(b, a) for a, b in pairs)  # layer i: n_{i+1} -> n_i
        self.act = activation(hp.hidden_act, hp.leaky_slope)
        self.n_stages = len(pairs)
        self.stage = 0  # set from the epoch at each training epoch start; n_stages = fine-tuning

    # -- the deep autoencoder --------------------------------------------------------------------
    def encode_to(self, x: torch.Tensor, depth: int) -> torch.Tensor:
        """h_depth: x (B,C,H,W) through the first ``depth`` deep encoder layers -> (B, n_depth)."""
        h = x.flatten(1)
        for lin in self.encoders[:depth]:
            h = self.act(lin(h))
        return h

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_to(x, self.n_stages)  # (B,k)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = z
        for i in reversed(range(self.n_stages)):
            h = self.decoders[i](h)
            if i > 0:
                h = self.act(h)
        return h.view(-1, *self.input_shape)  # logits

    # -- stages ----------------------------------------------------------------------------------
    def stage_of_epoch(self, epoch: int, max_epochs: int) -> int:
        layerwise = max_epochs - self.hparams.finetune_epochs
        if layerwise < self.n_stages:
            raise UserError(f"randomized: trainer.max_epochs {max_epochs} minus finetune_epochs "
                            f"{self.hparams.finetune_epochs} leaves {layerwise} epochs for {self.n_stages} layer "
                            f"stages; raise trainer.max_epochs to at least {self.n_stages + self.hparams.finetune_epochs}")
        if epoch >= layerwise:
            return self.n_stages
        return max(i for i in range(self.n_stages) if (i * layerwise) // self.n_stages <= epoch)

    def selectable_epoch(self, epoch: int) -> bool:
        """The best checkpoint is chosen from the last layer stage on: before it, the deep model's
        deeper layers are untrained (and its validation loss, lowest after stage 0, says nothing of
        the finished model). Called by the checkpoint callback, during training."""
        return self.stage_of_epoch(epoch, self.trainer.max_epochs) >= self.n_stages - 1

    def on_fit_start(self) -> None:
        self.stage_of_epoch(0, self.trainer.max_epochs)  # a too short schedule fails before any work
        if any(isinstance(cb, EarlyStopping) for cb in self.trainer.callbacks):
            # val/loss rises from stage to stage (see the module docstring): it would stop mid-build
            raise UserError("randomized: an early stop (trainer.early_stopping_patience, trainer.plateau_epochs) would "
                            "stop the layer-wise stages before the model is complete; set it to 0")

    def on_train_epoch_start(self) -> None:
        self.stage = self.stage_of_epoch(self.current_epoch, self.trainer.max_epochs)

    def stage_loss(self, x: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage i's shallow autoencoder: (loss, x_hat of the deep model for the metrics)."""
        with torch.no_grad():
            h = self.encode_to(x, i)  # (B, n_i), the deep encoder so far (holding W_d^T)
            code = self.act(self.random_encoders[i](h))  # (B, n_{i+1}), frozen random encoder
        out = self.decoders[i](code)
        if i == 0:
            x_hat, loss = self.reconstruction(out.view(-1, *self.input_shape), x)
            return loss, x_hat
        return F.mse_loss(self.act(out), h), None

    def loss(self, x: torch.Tensor, stage: str) -> tuple[torch.Tensor, LossOutput]:
        if stage == "train" and self.stage < self.n_stages:
            loss, x_hat = self.stage_loss(x, self.stage)
            log = {"stage": torch.tensor(float(self.stage)), f"stage{self.stage}_loss": loss.detach()}
            return loss, LossOutput(x_hat, None, log)
        loss, out = super().loss(x, stage)  # the deep autoencoder end to end
        if stage == "train":
            out.log["stage"] = torch.tensor(float(self.n_stages))
        return loss, out

    @torch.no_grad()
    def tie_encoder(self, i: int) -> None:
        """Deep encoder layer i <- W_d^T of stage i's decoder, bias 0."""
        self.encoders[i].weight.copy_(self.decoders[i].weight.T)
        self.encoders[i].bias.zero_()

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.stage < self.n_stages:
            self.tie_encoder(self.stage)
