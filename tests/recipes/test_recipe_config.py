"""The recipe group and the feature blocks: bad input is one line and exit 2 before anything runs (real CLI),
and every framework's ``recommended:`` block is well formed, sourced and read back by a probe."""
from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from harness.frameworks import recipes, registry
from harness.worker.live_fields.recipe_probes import PROBES
from tests.test_bad_input import FAST, refused


@pytest.mark.parametrize("args, culprit", [
    (("recipe=fastest",), ("recipe=fastest", "identical", "recommended")),
    (("recipe.name=fastest",), ("recipe.name", "fastest")),
    (("recipe=recommended", "recipe.packing=maybe"), ("recipe.packing", "maybe")),
    (("recipe.packing=on",), ("recipe.packing=on", "recipe=recommended")),
    (("recipe=recommended", "train.packing=true"), ("train.packing=true", "recipe.packing=on")),
    # a feature block given on the command line is checked like the yaml's
    (("recipe=recommended", "framework.recommended=[{id:x,use:maybe}]"), ("recommended[0] (x)", "use")),
    (("recipe=recommended", "framework.recommended=[{id:x,use:false,changes:impl,source:'https://x'}]"),
     ("recommended[0] (x)", "reason")),
])
def test_bad_recipe_is_refused_in_one_line(tmp_path, args, culprit):
    refused(tmp_path, *FAST, *args, culprit=culprit)


def test_a_bad_value_in_the_recommended_job_of_a_sweep_refuses_the_identical_one_too(tmp_path):
    refused(tmp_path, *FAST, "recipe=identical,recommended", "recipe.packing=sometimes", "-m",
            culprit=("recipe.packing", "sometimes"))


GOOD = {"id": "f", "use": True, "changes": "impl", "source": "https://example.org/doc"}


@pytest.mark.parametrize("entry, message", [
    ({**GOOD, "changes": "speed"}, "changes must be one of data|math|impl, got 'speed'"),
    ({**GOOD, "source": "trl docs"}, "source must be the URL that recommends it"),
    ({**GOOD, "use": False}, "use: false needs a reason"),
    ({**GOOD, "modes": ["lora", "full"]}, "'full' is not one of lora|qlora"),
    ({**GOOD, "devices": ["tpu"]}, "'tpu' is not one of cpu|cuda"),
    ({**GOOD, "colour": "red"}, "unknown key 'colour'"),
    ({**GOOD, "id": "two words"}, "id must be a name"),
    ({**GOOD, "args": {"sft_config": 3}}, "args must map a section name to its arguments"),
    ({**GOOD, "requires": "liger_kernel"}, "requires: expected a list of strings"),
])
def test_feature_entry_errors_name_file_feature_and_field(entry, message):
    with pytest.raises(recipes.RecipeError) as err:
        recipes.parse_features([entry], "conf/framework/x.yaml")
    text = str(err.value)
    assert text.startswith("conf/framework/x.yaml: recommended[0]") and message in text and "\n" not in text


def test_a_feature_id_appears_once():
    with pytest.raises(recipes.RecipeError, match=r"recommended\[1\] \(f\): id 'f' appears twice"):
        recipes.parse_features([GOOD, GOOD], "conf/framework/x.yaml")


@pytest.mark.parametrize("name", registry.names())
def test_every_framework_block_is_sourced_and_probed(name):
    conf = OmegaConf.to_container(OmegaConf.load(registry.entry(name).config_file))
    # the yaml's interpolations (${train.max_length}) resolve in the composed config, not in the file alone
    features = recipes.parse_features(_literal(conf.get("recommended")), f"conf/framework/{name}.yaml")
    recipes.parse_always_on(conf.get("always_on"), f"conf/framework/{name}.yaml")
    for f in features:
        assert f.what, f"{name}: {f.id} says nothing about what it does"
        if f.use or f.packing:  # can be applied: its activity must be read back, never assumed
            assert f.id in PROBES, f"{name}: feature {f.id} has no probe in recipe_probes.PROBES"
        for section in f.args or {}:
            assert section in SECTIONS[name], f"{name}: {f.id} writes to unknown section {section!r}"


# The native_args sections of each adapter (+ "adapter": flags for adapter code).
SECTIONS = {"trl": {"model_kwargs", "sft_config", "lora_config", "adapter"},
            "unsloth": {"from_pretrained", "get_peft_model", "sft_config", "adapter"},
            "llamafactory": {"llamafactory", "adapter"}, "swift": {"swift", "adapter"},
            "axolotl": {"axolotl", "adapter"}, "fake": {"adapter"}}


def _literal(entries):
    """The block with interpolation strings replaced by a placeholder (their values come from the config)."""
    def fix(value):
        if isinstance(value, str) and value.startswith("${"):
            return 0
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fix(v) for v in value]
        return value
    return fix(entries or [])


def test_frameworks_with_features_declare_the_ones_issue_17_names():
    ids = {name: {f["id"] for f in OmegaConf.to_container(OmegaConf.load(registry.entry(name).config_file)).get(
        "recommended") or []} for name in ("trl", "unsloth", "llamafactory", "axolotl")}
    assert {"padding_free", "liger", "packing"} <= ids["trl"]
    assert {"padding_free", "offloaded_gc", "packing"} <= ids["unsloth"]
    assert {"liger", "neat_packing", "expandable_segments"} <= ids["llamafactory"]
    assert {"multipack", "lora_kernels", "liger", "flash_attention_2", "cut_cross_entropy"} <= ids["axolotl"]
