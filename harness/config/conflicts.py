"""Overrides that contradict each other on the command line, refused before anything is composed.

Hydra applies overrides in order, so ``train.lr=1e-4 train.lr=2e-4`` silently trains with the last one, and
``dataset.path`` silently wins over ``dataset.hub_id``, ``dataset.train_file`` and ``dataset.eval_file``
(it must win over the dataset group's own files, which every group sets; but a user who types both meant
both, and would train or evaluate on data they did not choose). Each is one ConfigError line naming both.
"""
from __future__ import annotations

from harness.config.schema import ConfigError

# What dataset.path replaces: given explicitly beside it (and not null), one of them would be ignored.
_PATH_REPLACES = ("dataset.hub_id", "dataset.train_file", "dataset.eval_file")


def check_conflicting_overrides(overrides: list[str]) -> None:
    """A key given twice (in any form: ``k=``, ``+k=``, ``++k=``, ``~k``), or dataset.path beside a
    non-null dataset.hub_id/train_file/eval_file. Raises ConfigError naming both overrides."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    given: dict[str, tuple[str, object]] = {}
    for text, override in zip(overrides, parsed):
        key = override.get_key_element().lstrip("+~")
        if key in given:
            raise ConfigError(f"{key} is given twice ({given[key][0]!r} and {text!r}): keep one "
                              f"(a sweep over both values is {key}=A,B with -m)")
        value = None if override.is_delete() else override.value()
        given[key] = (text, value)
    path = given.get("dataset.path")
    if path is None or path[1] is None:
        return
    for key in _PATH_REPLACES:
        if key in given and given[key][1] is not None:
            both = f"({given[key][0]!r} and {path[0]!r})"
            if key == "dataset.hub_id":
                raise ConfigError(f"dataset.hub_id conflicts with dataset.path {both}: one is a Hub dataset, the "
                                  "other a local file, and dataset.path would win silently: keep one")
            raise ConfigError(f"{key} conflicts with dataset.path {both}: dataset.path is a whole dataset on its "
                              "own (its last dataset.num_eval records are held out) and would ignore it; for a "
                              "separate eval file use dataset.train_file=TRAIN dataset.eval_file=EVAL instead")
