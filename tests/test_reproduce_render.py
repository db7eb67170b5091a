"""``reproduce --render-only``: the committed reports rendered again from their results, without training."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

COMMITTED = Path(__file__).parent.parent / "docs" / "studies" / "reproduce"
RENDERED = re.compile(r" \(re-rendered from its results on [^)]*\)")  # the preset report's dated note


def undated(text: str) -> str:
    return RENDERED.sub("", text)


def reports(folder: Path) -> dict[str, str]:
    """Every report.md under ``folder`` (the preset's and each entry's), the re-render's dated note left out."""
    return {str(p.relative_to(folder)): undated(p.read_text()) for p in sorted(folder.rglob("report.md"))}


def render_only(name: str, out: Path, capsys, *extra) -> tuple[int, str]:
    from ae_lightning.studies.__main__ import main
    code = main(["reproduce", name, "--render-only", "--out", str(out), *map(str, extra)])
    return code, capsys.readouterr().err


def no_training(monkeypatch) -> None:
    """Training, data and checkpoints fail loudly: a re-render reads results.json alone."""
    import ae_lightning.studies.common as common

    def refuse(*args, **kwargs):
        raise AssertionError("a re-render trained, read data or loaded a checkpoint")

    for name in ("fit", "load_checkpoint", "MNISTDataModule"):
        monkeypatch.setattr(common, name, refuse)


@pytest.mark.parametrize("name", sorted(p.name for p in COMMITTED.iterdir() if (p / "results.json").is_file()))
def test_committed_reports_render_again_from_their_results(name, tmp_path, capsys, monkeypatch):
    no_training(monkeypatch)
    out = tmp_path / "out"
    shutil.copytree(COMMITTED / name, out / name, ignore=shutil.ignore_patterns("tensorboard"))
    code, err = render_only(name, out, capsys)
    assert code == 0, err
    assert reports(out / name) == reports(COMMITTED / name)
    assert RENDERED.search((out / name / "report.md").read_text())  # the header says it was re-rendered


def test_render_only_refuses_an_entry_without_results(tmp_path, capsys):
    code, err = render_only("keras", tmp_path / "out", capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0] == (f"error: --render-only: {tmp_path / 'out' / 'keras' / 'curves_fashion'} holds no results.json "
                        f"(measure it: `python -m ae_lightning.studies reproduce keras --out {tmp_path / 'out'} --resume`)")
