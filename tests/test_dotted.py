"""ae_lightning.dotted: the one converter between nested mappings and dotted keys, and ``--set``."""
import pytest

from ae_lightning import dotted
from ae_lightning.errors import UserError


def test_flatten_and_nest_round_trip():
    nested = {"seed": 3, "model": {"lr": 0.01, "hidden": [64, 32]}, "data": {"normalize": "none"}}
    flat = dotted.flatten(nested)
    assert flat == {"seed": 3, "model.lr": 0.01, "model.hidden": [64, 32], "data.normalize": "none"}
    assert dotted.nest(flat) == nested


def test_flatten_levels_keep_a_mapping_valued_key_whole():
    nested = {"model": {"spec": {"a": 1}}, "seed": 0}
    assert dotted.flatten(nested) == {"model.spec.a": 1, "seed": 0}
    assert dotted.flatten(nested, levels=1) == {"model.spec": {"a": 1}, "seed": 0}
    assert dotted.flatten(None) == {} and dotted.flatten({"model": {}}) == {}


def test_set_in_makes_the_mappings_on_the_way():
    tree = {"model": {"lr": 1}}
    dotted.set_in(tree, "model.beta", 4)
    dotted.set_in(tree, ["trainer", "max_epochs"], 2)
    assert tree == {"model": {"lr": 1, "beta": 4}, "trainer": {"max_epochs": 2}}
    assert dotted.split("a.b.c") == ["a", "b", "c"] and dotted.join("a", "b") == "a.b"


def test_parse_set_splits_at_the_first_equals_sign():
    assert dotted.parse_set(" model.lr =1e-3") == ("model.lr", "1e-3")
    assert dotted.parse_set("data.path=a=b") == ("data.path", "a=b")


@pytest.mark.parametrize("kwargs, message", [
    ({}, "--set model.lr: expected KEY=VALUE"),
    ({"usage": "PATH=VALUE, e.g. config.model.lr=0.01", "quoted": True},
     "--set 'model.lr': expected PATH=VALUE, e.g. config.model.lr=0.01"),
])
def test_parse_set_without_a_value_is_one_line(kwargs, message):
    with pytest.raises(UserError) as e:
        dotted.parse_set("model.lr", **kwargs)
    assert str(e.value) == message


def test_search_space_keys_nest_seed_under_top():
    from search.space import flatten, nest
    flat = {"model.lr": 0.1, "seed": 2}
    assert nest(flat) == {"model": {"lr": 0.1}, "top": {"seed": 2}}
    assert flatten(nest(flat)) == flat
