"""Hyperparameter search over any variant's config with Ray Tune (Ax or random search).

    python -m search.tune --variant vae            # the CLI (search/tune.py)
    python -m search.report EXPERIMENT_DIR         # rewrite results.csv / best.* / search.png

Modules: space.py (the YAML search space, validated against the variant's config schema),
trainable.py (one trial = one ``ae_lightning.fit.fit`` call that reports to Tune every epoch),
searchers.py (Ax / random, ASHA), report.py (outputs and comparison figures), results.py (the names
in a trial's results, shared by the trainable and the driver without importing Lightning).
"""
