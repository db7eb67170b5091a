"""Every study's declaration and typed parameters, without torch: the command line, the presets and
their ``--set studies.ENTRY.KEY`` are checked against these before any study module loads.

A study is declared with :func:`ae_lightning.studies.declare`: its name, title, report order, the
original's dataset and variant, a one-line summary, the frozen dataclass of the parameters a preset
entry may set (read by the study as ``ctx.params.<name>``), and the module whose ``run(ctx)`` runs
it. A new study is its module and its declaration here.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Literal

from ae_lightning.hints import NonNegFloat, NonNegInt, PosFloat, PosInt
from ae_lightning.studies import NoParams, declare

TSNE_POINTS = 2000  # test codes in a t-SNE map (a study's ``map_points`` parameter may change it)
CLASSIFIER_LATENT = 32  # the classifier study's code size
NEIGHBOUR_KS = (5, 10, 20, 50)
# what the combined report of ``all`` says of the references' epoch budget
FCAE_BUDGET = "the fcAE study trained 1000 epochs"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One model of a study's ``models`` parameter (read as a mapping: ``spec.get("variant")``)."""

    variant: str | None = None  # None: the entry's variant
    config: dict | None = None  # nested config overrides of this model


@dataclasses.dataclass(frozen=True)
class CompressionParams:
    latents: list[PosInt] | None = None  # the sizes to train (None: both families)
    family: str = "preset"  # the label of ``latents`` in the report
    falls_slack: NonNegFloat = 0.0  # the largest step up that still counts as "the loss falls"


@dataclasses.dataclass(frozen=True)
class OneVariableParams:
    """An optimizers, activations or losses entry (``one_variable``)."""

    choices: dict[str, dict] | None = None  # label -> nested config overrides (None: the study's own)
    reference: dict[str, float] = dataclasses.field(default_factory=dict)  # added to the study's references
    latent: PosInt | None = None  # the code size (None: 8)


@dataclasses.dataclass(frozen=True)
class InversionParams:
    latents: list[PosInt] | None = None  # the sizes (``--latents`` first; None: the compression study's)


@dataclasses.dataclass(frozen=True)
class NeighborsParams:
    """The neighbors module's docstring says what each does."""

    models: dict[str, ModelSpec] | None = None  # label -> {variant, config} (None: the study's four)
    neighbour_set: Literal["test", "train"] = "test"
    pixel_k: PosInt | None = None  # neighbours kept per image (None: the largest k)
    ks: list[PosInt] = dataclasses.field(default_factory=lambda: list(NEIGHBOUR_KS))
    code_maps: bool = False
    description: str | None = None
    reference: dict[str, Any] | None = None  # the original's tables by name (and a note)


@dataclasses.dataclass(frozen=True)
class LatentParams:
    models: dict[str, ModelSpec] | None = None  # {"ae": {variant, config}, "vae": {...}} (None: the variant's and vae)
    map_points: PosInt = TSNE_POINTS  # test codes in each map
    judge_epochs: PosInt | None = None  # the pixel CNN's epochs (None: its config's)
    reconstructions: list[str] = dataclasses.field(default_factory=list)  # models whose reconstructions are shown
    reference: dict[str, int | float] | None = None  # "<model>/<scheme>" -> the original's count
    generation_order: list[str] | None = None  # [key, "<" or "<=", key, ...] (None: strict by the reference)


@dataclasses.dataclass(frozen=True)
class DenoisingParams:
    factors: list[PosFloat] | None = None  # noise factors (None: 0.2, 0.3, 0.6)
    reference: dict[float, float] | None = None  # noise factor -> the original's test loss


@dataclasses.dataclass(frozen=True)
class ClassifierParams:
    latent: PosInt | None = CLASSIFIER_LATENT  # every autoencoder's code size (None: each model's own)
    models: dict[str, ModelSpec] | None = None  # label -> {variant, config} (None: the variants of this checkout)
    heads: dict[str, dict] | None = None  # label -> nested config overrides of the classifier head
    maps: bool = False  # a t-SNE map of each model's test codes
    map_points: PosInt | None = None  # test codes in each map (None: 2,000)
    baselines: bool = True  # the pixel and PCA probes beside the codes'
    description: str | None = None  # the report's first paragraph
    reference: dict[str, float] | None = None  # model or head label -> the original's test accuracy
    # the "linear probe acc" (linear_acc): logistic regression on standardized codes, fitted to convergence
    # (probes.linear_probe), or as scikit-learn's LogisticRegression() runs it on the raw codes (probes.sklearn_probe);
    # both are measured, this picks the one that the column, the rows and the plot read
    linear_probe: Literal["standardized", "sklearn"] = "standardized"


@dataclasses.dataclass(frozen=True)
class CurveModel(ModelSpec):
    """One model of the curves study: a variant and config, its own epochs, the first-layer units
    shown and the original's loss by epoch."""

    epochs: PosInt | None = None
    units: list[NonNegInt] | None = None
    reference: list[float] | None = None


@dataclasses.dataclass(frozen=True)
class CurvesParams:
    models: dict[str, CurveModel] | None = None  # None: the study's own two models


declare("compression", "Compression: NRMSE against latent size", order=1, dataset="fashion_mnist", variant="fc",
        summary="Train and test NRMSE against latent size and compression ratio.", params=CompressionParams)
declare("optimizers", "Optimizers", order=2, dataset="fashion_mnist", variant="fc",
        summary="Test NRMSE by optimizer, everything else held.", params=OneVariableParams,
        reference_budget=FCAE_BUDGET)
declare("activations", "Activations", order=3, dataset="fashion_mnist", variant="fc",
        summary="Test NRMSE by hidden activation, everything else held.", params=OneVariableParams,
        reference_budget=FCAE_BUDGET)
declare("losses", "Losses", order=4, dataset="fashion_mnist", variant="fc",
        summary="Test NRMSE by training loss, everything else held.", params=OneVariableParams,
        reference_budget=FCAE_BUDGET)
declare("inversion", "Inversion of the decoder", order=5, dataset="fashion_mnist", variant="fc",
        summary="Least-squares inversion of the decoder at each latent size.", params=InversionParams)
declare("neighbors", "Neighbourhood preservation", order=6, dataset="mnist", variant=None,
        summary="Neighbourhood preservation (score@k) and same-label rates, pixel vs code space.",
        params=NeighborsParams)
declare("latent", "Latent space: maps and generation", order=7, dataset="mnist", variant="fc",
        summary="2-D maps of the codes and decoded random codes, scored by a pixel classifier.", params=LatentParams)
declare("denoising", "Denoising", order=8, dataset="mnist", variant="denoising",
        summary="Train/test loss by noise factor, and original / noisy / denoised images.", params=DenoisingParams)
declare("weights", "First-layer weights", order=9, dataset="mnist", variant="shallow",
        summary="First-layer encoder weights (and last-layer decoder weights) as images.", params=NoParams)
declare("classifier", "Classifier and probes per variant", order=10, dataset="mnist", variant="",
        summary="Latent classifier and probe accuracy per variant, beside pixel and PCA baselines.",
        params=ClassifierParams)
declare("curves", "Training curves, reconstructions and weights", order=11, dataset="fashion_mnist", variant=None,
        summary="Epoch-by-epoch training loss, reconstructions and first-layer weights of each model.",
        params=CurvesParams)
