"""losses: MSE, binary cross-entropy, KL divergence and L1 as the training objective of the fcAE model.

Every model is judged by the same metric, test NRMSE on pixels; the loss column is each model's own
objective (per element, ``ae_lightning.metrics``) and is not comparable across rows.
"""
from __future__ import annotations

from ae_lightning.studies import one_variable
from ae_lightning.studies.common import Context
from ae_lightning.text import plural

# fcAE study: test NRMSE at latent 8 after 1000 epochs (BCE was "far worse", no figure given)
REFERENCE = {"mse": 0.1139, "kl": 0.2433}
LOSSES = ["mse", "bce", "kl", "l1"]


def measure(ctx: Context) -> dict:
    return one_variable.measure(ctx, "loss", [(name, {"model__loss": name}) for name in LOSSES], REFERENCE)


def render(ctx: Context, r: dict) -> None:
    """Test NRMSE by training loss, everything else held."""
    ctx.report.text(f"`{ctx.variant}` at latent 8, Adam, {plural(ctx.opts.epochs, 'epoch')}; only the training loss "
                    "changes. Reference: the fcAE study after 1000 epochs: MSE 0.1139, KL 0.2433, "
                    "BCE far worse (no figure given).")
    one_variable.render(ctx, "loss", r)
