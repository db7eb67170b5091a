"""activations: leaky ReLU, sigmoid and ReLU in every hidden and code layer of the fcAE model.

The output stays a sigmoid; latent 8, Adam, MSE, everything else held. The leaky ReLU keeps the
variant's slope (0.5 for ``fc``).
"""
from __future__ import annotations

from ae_lightning.studies import one_variable
from ae_lightning.studies.common import Context
from ae_lightning.text import plural

# fcAE study: test NRMSE at latent 8 after 1000 epochs
REFERENCE = {"leaky_relu": 0.1139, "sigmoid": 0.1197, "relu": 0.1221}


def measure(ctx: Context) -> dict:
    return one_variable.measure(ctx, "activation", [(a, {"model__hidden_act": a, "model__code_act": a})
                                                    for a in REFERENCE], REFERENCE)


def render(ctx: Context, r: dict) -> None:
    """Test NRMSE by hidden activation, everything else held."""
    ctx.report.text(f"`{ctx.variant}` at latent 8; the activation replaces every hidden and code activation "
                    f"(the output stays `{ctx.base_model(r).get('output_act')}`); {plural(ctx.opts.epochs, 'epoch')}. "
                    "Reference: the fcAE study after 1000 epochs.")
    one_variable.render(ctx, "activation", r)
