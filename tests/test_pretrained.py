"""Shipped pretrained models: their files, their cards, and the scores on the cards re-measured."""

import hashlib
import json

import anndata
import numpy as np
import pytest
import torch

import models.build
import pretrained
import pretrained.__main__ as pretrained_cli
import run
import utils
from analysis.scores import model_scores
from configs.schema import load_config
from data import generate_o2mnist
from data.io import file_sha256

SHIPPED = sorted(pretrained.RECIPES)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_recipe_ships_a_small_checkpoint_with_checksum_json_and_card(name):
    path = pretrained.HERE / f"{name}.pt"
    assert path.stat().st_size < 5e6
    digest, file_name = (pretrained.HERE / f"{name}.pt.sha256").read_text().split()
    assert (digest, file_name) == (hashlib.sha256(path.read_bytes()).hexdigest(), path.name)
    info = pretrained.card(name)
    assert info["train_command"] == pretrained.recipe(name).train_command()
    assert (pretrained.HERE / f"{name}.md").read_text() == pretrained.render_card(name, info)
    saved = torch.load(path, weights_only=True)  # plain tensors and data only
    assert "optimizer" not in saved and saved["state_dict"] is saved["model"]
    assert run.load_model(name).checkpoint_sha256 == digest  # what profiles record as provenance


def test_the_readme_quotes_the_cards():
    assert pretrained.table() in (pretrained.ROOT / "README.md").read_text()


@pytest.mark.parametrize("name", SHIPPED)
def test_the_presets_still_describe_the_shipped_models(name):
    """Editing a preset a shipped model came from means retraining it and updating its card."""
    r = pretrained.recipe(name)
    shipped = run.load_model(f"pretrained/{name}").config
    assert pretrained.config_differences(load_config(r.config, list(r.overrides)), shipped) == {}


def test_the_original_repositorys_loading_code_works_on_a_shipped_model():
    from configs.config_o2mnist_full import config

    model = run.build_model_from_config(config)
    saved_model = torch.load(pretrained.HERE / "o2mnist.pt")
    model.load_state_dict(saved_model["state_dict"])
    x = torch.rand(4, 1, 32, 32)
    expected = run.load_model("o2mnist")
    np.testing.assert_allclose(
        utils.get_model_embeddings_from_tensors(model, x, progress=False),
        utils.get_model_embeddings_from_tensors(expected, x, progress=False),
        atol=1e-5,
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_the_cards_scores_are_re_measured_on_held_out_data(name):
    card = pretrained.card(name)["scores"]
    scores = pretrained.measure(name)
    assert (scores["n_reference"], scores["n_test"]) == (card["n_reference"], card["n_test"])
    assert pretrained.drift(card, scores) == {}


@pytest.mark.slow
def test_the_analysis_cli_profiles_a_dataset_with_a_shipped_model(tmp_path):
    from analysis.__main__ import main as analysis_main

    data = tmp_path / "o2_mnist"
    generate_o2mnist.main(["--n", "300", "--n-test", "200", "--out", str(data)])
    analysis_main(["pretrained/o2mnist", "--data", str(data), "--out", str(tmp_path / "out")])
    assert "Model: `pretrained/o2mnist`" in (tmp_path / "out" / "report.md").read_text()
    profiles = anndata.read_h5ad(tmp_path / "out" / "profiles.h5ad")
    assert profiles.n_obs == 200
    provenance = json.loads(profiles.uns["o2vae"])
    assert provenance["checkpoint_sha256"] == file_sha256(pretrained.HERE / "o2mnist.pt")


@pytest.fixture
def tiny_recipe(tmp_path, monkeypatch):
    """A 'tiny' recipe (configs.config_tiny on tiny shapes) published into a temporary pretrained folder."""
    data = tmp_path / "data"
    build = ("data/generate_shapes.py", "--n", "96", "--n-test", "48", "--size", "16")
    pretrained.build_data(build, data)
    recipe = pretrained.Recipe(
        config="configs.config_tiny",
        overrides=(f"data.data_dir={data}",),
        data=build,
        held_out=build,
        labels="y",
        label_meaning="shape class",
        summary="A test model.",
    )
    monkeypatch.setitem(pretrained.RECIPES, "tiny", recipe)
    monkeypatch.setattr(pretrained, "HERE", tmp_path / "shipped")
    monkeypatch.setattr(models.build, "PRETRAINED_DIR", tmp_path / "shipped")
    (tmp_path / "shipped").mkdir()
    monkeypatch.delenv("WANDB_MODE", raising=False)
    config = load_config(
        recipe.config, [*recipe.overrides, f"logging.out_dir={tmp_path}", "logging.wandb_mode=disabled"]
    )
    return run.train(config), data


def test_publish_writes_a_slim_checkpoint_that_embeds_like_the_run(tiny_recipe):
    run_dir, data = tiny_recipe
    info = pretrained.publish(run_dir, "tiny", commit="abc1234", train_minutes=0.1, data_dir=data)
    shipped = pretrained.HERE / "tiny.pt"
    assert shipped.stat().st_size < 0.6 * (run_dir / "model.pt").stat().st_size  # no optimizer state
    x = torch.rand(8, 1, 16, 16)
    np.testing.assert_array_equal(
        utils.get_model_embeddings_from_tensors(run.load_model("tiny"), x, progress=False),
        utils.get_model_embeddings_from_tensors(run.load_model(run_dir), x, progress=False),
    )
    assert json.loads((pretrained.HERE / "tiny.json").read_text()) == info
    assert info["scores"]["n_test"] == 48 and "abc1234" in (pretrained.HERE / "tiny.md").read_text()
    # the scores are those of the model on the held-out data, and re-measuring finds no drift
    direct = model_scores(run.load_model(run_dir), data)
    assert info["scores"]["knn"] == pytest.approx(direct["knn"], abs=1e-4)
    assert pretrained_cli.main(["measure", "tiny"]) == 0


def test_measure_reports_drift(tiny_recipe, monkeypatch, capsys):
    run_dir, data = tiny_recipe
    info = pretrained.publish(run_dir, "tiny", commit="abc1234", train_minutes=0.1, data_dir=data)
    card = info["scores"]
    # 48 test images: one and a half images' worth of accuracy (0.031) is not drift, 0.05 is
    assert pretrained.tolerance(48) == pytest.approx(1.5 / 48) and pretrained.tolerance(10_000) == 0.01
    assert pretrained.drift(card, dict(card, knn=card["knn"] - 0.03)) == {}
    moved = dict(card, purity=card["purity"] - 0.05)
    monkeypatch.setattr(pretrained, "card", lambda name: {"scores": moved})
    assert pretrained_cli.main(["measure", "tiny", "--data", str(data)]) == 1
    assert "drift beyond 0.031: ['purity']" in capsys.readouterr().out
    assert pretrained.drift(card, dict(card, n_test=47)) == {"n_test": (48, 47)}


def test_publish_refuses_a_run_of_another_config(tiny_recipe):
    run_dir, _ = tiny_recipe
    with pytest.raises(ValueError, match="was not trained by `python run.py configs.config_o2mnist_full`"):
        pretrained.publish(run_dir, "o2mnist", commit="abc1234", train_minutes=0.1)


def test_scores_name_what_a_dataset_lacks(tiny_recipe, tmp_path):
    run_dir, data = tiny_recipe
    model = run.load_model(run_dir)
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    for split in ("train", "test"):
        (unlabelled / f"X_{split}.sav").write_bytes((data / f"X_{split}.sav").read_bytes())
    with pytest.raises(ValueError, match="unlabelled: no y_train labels"):
        model_scores(model, unlabelled)
    with pytest.raises(ValueError, match="no metadata column 'source' for the train split"):
        model_scores(model, unlabelled, labels="source")
    (unlabelled / "X_test.sav").unlink()
    with pytest.raises(ValueError, match="unlabelled: no test split"):
        model_scores(model, unlabelled)
