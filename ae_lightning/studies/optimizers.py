"""optimizers: Adam, SGD, Adagrad, Adadelta and RMSprop on the fcAE model, one variable at a time.

Everything but the optimizer is held: the architecture, latent 8, MSE, the learning rate 1e-3, the
batch size, the seed and the epoch budget. Momentum is 0 for SGD and RMSprop, as in the Keras
defaults the original study ran with (the project's default momentum is 0.9).
"""
from __future__ import annotations

from ae_lightning.studies import one_variable
from ae_lightning.studies.common import Context
from ae_lightning.text import plural

# fcAE study: test NRMSE at latent 8 after 1000 epochs
REFERENCE = {"adam": 0.1139, "rmsprop": 0.1167, "adagrad": 0.1460, "adadelta": 0.1909, "sgd": 0.3954}
CHOICES = [("adam", {"model__optimizer": "adam"}), ("sgd", {"model__optimizer": "sgd", "model__momentum": 0.0}),
           ("adagrad", {"model__optimizer": "adagrad"}), ("adadelta", {"model__optimizer": "adadelta"}),
           ("rmsprop", {"model__optimizer": "rmsprop", "model__momentum": 0.0})]


def measure(ctx: Context) -> dict:
    return one_variable.measure(ctx, "optimizer", CHOICES, REFERENCE)


def render(ctx: Context, r: dict) -> None:
    """Test NRMSE by optimizer, everything else held."""
    if ctx.params.choices is not None:
        ctx.report.text(f"`{ctx.variant}` at latent 8, {plural(ctx.opts.epochs, 'epoch')}, the preset's optimizers: " +
                        "; ".join(f"{lb}: {over}" for lb, over in ctx.params.choices.items()) +
                        ". Reference: the fcAE study after 1000 epochs.")
    else:
        ctx.report.text(f"`{ctx.variant}` at latent 8, learning rate 1e-3 for every optimizer, momentum 0 for SGD "
                        "and RMSprop, "
                        f"{plural(ctx.opts.epochs, 'epoch')}. Reference: the fcAE study after 1000 epochs.")
    one_variable.render(ctx, "optimizer", r)
