"""Which config differences stop a run from resuming."""

from vitssl.config import load_config
from vitssl.config.loading import to_dict
from vitssl.engine.resume import config_differences


def test_a_changed_recipe_key_is_a_difference_and_a_harmless_one_is_not():
    saved = to_dict(load_config(None, ["method=dino"]))
    current = to_dict(load_config(None, ["method=dino", "optim.lr=0.5", "train.threads=1"]))
    assert config_differences(saved, current) == ["optim.lr"]


def test_sections_of_other_methods_are_ignored_even_when_unknown_to_this_process():
    saved = to_dict(load_config(None, ["method=dino"]))
    current = to_dict(load_config(None, ["method=dino", "sit.grayscale_p=0.3"]))
    saved["plugin_method_section"] = {"width": 8}  # saved by a method not registered here
    assert config_differences(saved, current) == []
    current["dino"] = {**current["dino"], "out_dim": current["dino"]["out_dim"] + 1}
    assert config_differences(saved, current) == ["dino.out_dim"]
