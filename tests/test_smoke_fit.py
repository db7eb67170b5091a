import json

import pytest
from conftest import fixed_val_loss


def test_fit_writes_run_folder(cfg_for):
    from ae_lightning.fit import fit

    cfg = cfg_for("fc", model__latent_dim=8)
    res = fit(cfg)
    m = json.loads((res.run_dir / "metrics.json").read_text())
    assert {"test_mse", "test_nrmse", "test_rel_error"} <= m.keys()
    assert (res.run_dir / "checkpoints" / "last.ckpt").is_file()


def test_lr_factor_holds_then_decays():
    from ae_lightning.models.base import lr_factor

    hp = {"lr_scheduler": "exponential", "lr_gamma": 0.5, "lr_step_size": 2, "lr_decay_start": 2}
    assert [lr_factor(hp, 10, e) for e in range(5)] == [1, 1, 1, 0.5, 0.25]
    hp.update(lr_scheduler="step")
    assert [lr_factor(hp, 10, e) for e in range(7)] == [1, 1, 1, 1, 0.5, 0.5, 0.25]
    hp.update(lr_scheduler="cosine", lr_decay_start=0)
    assert lr_factor(hp, 10, 0) == 1 and abs(lr_factor(hp, 10, 5) - 0.5) < 1e-12 and lr_factor(hp, 10, 10) == 0


def test_lr_schedule_in_training_and_across_resume(cfg_for, tmp_path):
    """The lr each epoch trains with: held for lr_decay_start epochs, then x gamma per epoch; a run
    resumed from last.ckpt continues the schedule where it stopped."""
    import lightning as L

    from ae_lightning.fit import fit

    class LrLog(L.Callback):
        def __init__(self):
            self.lrs = []

        def on_train_epoch_start(self, trainer, pl_module):
            self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    over = dict(model__lr=0.01, model__lr_scheduler="exponential", model__lr_gamma=0.5, model__lr_decay_start=2,
                data__subset=300)
    log = LrLog()
    fit(cfg_for("fc", trainer__max_epochs=5, **over), callbacks=[log])
    assert log.lrs == [0.01, 0.01, 0.01, 0.005, 0.0025]

    first, rest = LrLog(), LrLog()
    res = fit(cfg_for("fc", trainer__max_epochs=3, **over), callbacks=[first])
    fit(cfg_for("fc", trainer__max_epochs=5, **over), run_dir=res.run_dir,
        ckpt_path=res.run_dir / "checkpoints" / "last.ckpt", callbacks=[rest])
    assert first.lrs + rest.lrs == log.lrs


def test_last_ckpt_is_every_epoch_even_without_improvement(cfg_for):
    """last.ckpt holds the epoch just finished even when val/loss did not improve (a resume must
    not lose the epochs of a plateau); best-*.ckpt stays at the best epoch."""
    import lightning as L
    import torch

    from ae_lightning.fit import fit

    class LastCkptEpoch(L.Callback):
        def __init__(self):
            self.seen = []

        def on_train_epoch_start(self, trainer, pl_module):  # the previous epoch's checkpoint is written
            if trainer.current_epoch:
                path = trainer.default_root_dir + "/checkpoints/last.ckpt"
                self.seen.append(torch.load(path, map_location="cpu", weights_only=False)["epoch"])

    seen = LastCkptEpoch()
    res = fit(cfg_for("fc", trainer__max_epochs=3, data__subset=300), callbacks=[fixed_val_loss([0.0, 1.0, 2.0]), seen])
    last = torch.load(res.run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert seen.seen + [last["epoch"]] == [0, 1, 2]
    assert sorted(p.name for p in (res.run_dir / "checkpoints").iterdir()) == ["best-000.ckpt", "last.ckpt"]
    assert res.metrics["best_checkpoint"].endswith("best-000.ckpt")


def test_resume_removes_a_best_checkpoint_its_state_does_not_know(cfg_for):
    """A kill -9 between an epoch's best and last checkpoints leaves a best-*.ckpt that the resumed
    run's checkpoint state does not hold: after the resumed run, only the best one and last.ckpt stay."""
    import shutil

    from ae_lightning.fit import fit

    first = fit(cfg_for("fc", trainer__max_epochs=1, data__subset=300), verbose=False)
    ckpts = first.run_dir / "checkpoints"
    shutil.copy(ckpts / "last.ckpt", ckpts / "best-001.ckpt")  # written just before the kill
    res = fit(cfg_for("fc", trainer__max_epochs=3, data__subset=300), run_dir=first.run_dir,
              ckpt_path=ckpts / "last.ckpt", verbose=False)
    names = sorted(p.name for p in ckpts.iterdir())
    assert len(names) == 2 and "last.ckpt" in names and res.metrics["best_checkpoint"].endswith(names[0]), names


def test_plateau_rule_stops_on_the_first_epoch_that_improves_less_than_the_threshold():
    """Plateau(N, r): stop after the first epoch whose last N validations improved on the best before them by
    less than r (relative); its state is the loss list (a resumed run keeps counting)."""
    from types import SimpleNamespace

    import torch

    from ae_lightning.callbacks import Plateau

    def stops(losses, n, r):
        rule, trainer = Plateau(n, r), SimpleNamespace(sanity_checking=False, should_stop=False, callback_metrics={})
        for epoch, value in enumerate(losses):
            trainer.current_epoch, trainer.callback_metrics["val/loss"] = epoch, torch.tensor(value)
            rule.on_validation_end(trainer, None)
            if trainer.should_stop:
                return epoch, rule.state_dict()
        return None, rule.state_dict()

    losses = [1.0, 0.5, 0.499, 0.498, 0.4]  # epochs 2-3 improve on 0.5 by 0.4 %
    assert stops(losses, 2, 0.01)[0] == 3
    assert stops(losses, 2, 0.001)[0] is None  # 0.4 % is enough at 0.1 %
    assert stops([1.0, 0.9, 0.95, 0.96], 2, 0.0)[0] == 3  # no improvement at all
    assert stops([2.0, 1.0, 1.5], 1, 0.01)[0] == 2 and stops(losses, 1, 0.01)[1]["losses"] == pytest.approx([1.0, 0.5, 0.499])
    rule = Plateau(2, 0.01)
    rule.load_state_dict({"losses": [1.0, 0.5, 0.499]})
    trainer = SimpleNamespace(sanity_checking=False, should_stop=False, current_epoch=3,
                              callback_metrics={"val/loss": torch.tensor(0.498)})
    rule.on_validation_end(trainer, None)
    assert trainer.should_stop


def test_plateau_in_a_run_and_across_resume(cfg_for):
    """trainer.plateau_epochs in fit: with plateau_min_improvement 1 every epoch after the first N is a plateau;
    a run resumed from last.ckpt remembers the validations before the kill."""
    import json

    from ae_lightning.fit import fit

    def epochs(res):
        return len(json.loads((res.run_dir / "metrics.json").read_text())["history"]["val_loss"])

    over = dict(trainer__plateau_epochs=1, trainer__plateau_min_improvement=1.0, data__subset=300)
    assert epochs(fit(cfg_for("fc", trainer__max_epochs=5, **over))) == 2
    res = fit(cfg_for("fc", trainer__max_epochs=1, **over))
    fit(cfg_for("fc", trainer__max_epochs=5, **over), run_dir=res.run_dir, ckpt_path=res.run_dir / "checkpoints" / "last.ckpt")
    assert epochs(res) == 2  # without the first epoch's loss it would have trained 3
    assert epochs(fit(cfg_for("fc", trainer__max_epochs=3, data__subset=300))) == 3  # off by default


def test_randomized_refuses_the_plateau_rule(cfg_for):
    import pytest

    from ae_lightning.errors import UserError
    from ae_lightning.fit import fit

    with pytest.raises(UserError, match="would stop the layer-wise stages"):
        fit(cfg_for("randomized", model__layers=[784, 48], model__latent_dim=12, trainer__max_epochs=4,
                    trainer__plateau_epochs=1), verbose=False)


def test_callbacks_loggers_and_lightning_keywords_come_from_the_config(cfg_for, tmp_path):
    from ae_lightning.fit import fit

    counter = {"class_path": "conftest.BatchCounter", "init_args": {"out": str(tmp_path / "batches")}}
    csv = {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(tmp_path / "csv")}}
    cfg = cfg_for("fc", model__latent_dim=4, trainer__max_epochs=2, trainer__limit_train_batches=3,
                  trainer__callbacks=[counter], trainer__loggers=[csv])
    assert cfg["trainer"]["limit_train_batches"] == 3  # passed through to Lightning's Trainer as given
    res = fit(cfg)
    assert (tmp_path / "batches").read_text() == "6"  # the callback ran: 3 batches (not 9) in each of 2 epochs
    assert list((tmp_path / "csv").rglob("metrics.csv")) and res.metrics["epochs"] == 2  # the second logger wrote


@pytest.mark.parametrize("over, message", [
    ({"trainer__limit_train_bathes": 3}, "unknown config key trainer.limit_train_bathes (did you mean 'limit_train_batches'?)"),
    ({"trainer__logger": False}, "trainer.logger is set by the project: use trainer.loggers"),
    ({"trainer__callbacks": [{"class_path": "os.system"}]}, "trainer.callbacks: os.system is not a Lightning Callback"),
    ({"trainer__callbacks": [{"class_path": "nowhere.Callback"}]}, "trainer.callbacks: cannot import nowhere.Callback"),
    ({"trainer__callbacks": [{"clas_path": "x"}]}, "unknown key trainer.callbacks.0.clas_path (did you mean 'class_path'?)"),
    ({"trainer__limit_train_batches": "many"}, "trainer: "),
    ({"trainer__precision": "8"}, "trainer: Precision '8' is invalid"),  # Lightning's names, checked by Lightning
])
def test_a_bad_trainer_key_callback_or_value_is_one_line(cfg_for, over, message, tmp_path):
    from ae_lightning.errors import UserError
    from ae_lightning.fit import fit

    with pytest.raises(UserError) as e:
        fit(cfg_for("fc", model__latent_dim=4, **over))
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert not list((tmp_path / "runs").rglob("config.yaml"))  # no run folder left behind
