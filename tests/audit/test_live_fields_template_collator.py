"""read_live_fields where the Trainer's arguments carry no max length (ms-swift's): it is read from the
template the train dataloader's collator holds, through the ``functools.partial`` ms-swift's Trainer wraps
its collator in; and the collator's ``pad_to_multiple_of`` is read through that partial too."""
from __future__ import annotations

import functools
from types import SimpleNamespace

from harness.worker.live_fields.read import read_live_fields
from harness.frameworks.swift import PadToMultiple


class Template:
    """What PadToMultiple and the audit use of an ms-swift Template: its max_length and its collator."""

    max_length = 96
    padding_free = False

    def data_collator(self, batch, *, padding_to=None):
        return {"padding_to": padding_to}


def _live(collate_fn, args):
    return SimpleNamespace(model=None, tokenizer=None, optimizer=None, lr_scheduler=None, state=None, args=args,
                           train_dataloader=SimpleNamespace(collate_fn=collate_fn, batch_size=2))


def test_max_length_and_padding_multiple_from_the_collators_template():
    # ms-swift's Trainer: data_collator = partial(template.data_collator, padding_to=None)
    collate = functools.partial(PadToMultiple(Template()), padding_to=None)
    audit = read_live_fields(_live(collate, SimpleNamespace(max_length=None, generation_max_length=None)), None, {})
    assert (audit["max_length"], audit["max_length_source"]) == (96, "collator.template.max_length")
    assert (audit["collator"], audit["pad_to_multiple_of"]) == ("PadToMultiple", 8)
    assert collate([{"input_ids": [1] * 9}]) == {"padding_to": 16}


def test_the_trainers_arguments_win_over_the_template():
    collate = functools.partial(PadToMultiple(Template()), padding_to=None)
    audit = read_live_fields(_live(collate, SimpleNamespace(max_length=64)), None, {})
    assert (audit["max_length"], audit["max_length_source"]) == (64, "args.max_length")


def test_no_template_no_max_length():
    audit = read_live_fields(_live(functools.partial(lambda batch: batch), SimpleNamespace()), None, {})
    assert audit["max_length"] is None and audit["max_length_source"] is None
