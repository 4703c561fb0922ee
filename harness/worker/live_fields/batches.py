"""The first micro-batches as they entered the model (the StepMeter's forward pre-hook keeps them, built
with :func:`batch_record`): loss-mask share and hashes of the batches, comparable across padded and
padding-free batching."""
from __future__ import annotations

from typing import Any

from harness.worker.live_fields.values import sha256_json


FIRST_BATCHES = 8
IGNORE_INDEX = -100


def block_mask_segments(mask: Any, *, to_cpu: bool = True) -> tuple[Any, Any] | None:
    """``(keep, starts)`` of a 4-D block-diagonal attention mask ``[rows, 1, L, L]`` (packing that keeps each
    sequence to itself: LLaMA-Factory's neat_packing on SDPA): a token is kept when it may attend to itself
    (padding attends nothing), and starts a sequence when it may not attend to the token before it. The
    mask is additive (0 allowed, a large negative blocked) or boolean (True allowed). None for other masks.
    ``to_cpu=False`` keeps the work on the mask's device (the StepMeter counts samples without a sync)."""
    import torch

    if not torch.is_tensor(mask) or mask.dim() != 4 or mask.shape[-1] != mask.shape[-2]:
        return None
    square = mask[:, 0].detach()
    square = square.to("cpu") if to_cpu else square
    allowed = square.bool() if square.dtype == torch.bool else square == 0
    keep = torch.diagonal(allowed, dim1=-2, dim2=-1)
    before = torch.diagonal(allowed, offset=-1, dim1=-2, dim2=-1)  # [rows, L-1]: token i+1 may see token i
    starts = keep.clone()
    starts[:, 1:] = keep[:, 1:] & ~before
    return keep, starts


def padding_segments(input_ids: Any, position_ids: Any, pad_token_id: int) -> Any:
    """Where a packed row (restarting ``position_ids``, no attention mask) is padding: the positions of every
    segment that holds pad ids only. axolotl pads its packed rows this way (utils/collators/batching.py
    DataCollatorForSeq2Seq: the tail gets pad ids, labels -100 and position_ids ``range(remainder)``, a segment of
    its own), and a padding-free collator that pads position ids with 0 makes each pad a segment of one. A bool
    tensor shaped like ``input_ids``, on its device (no host sync: the StepMeter calls it every micro-batch)."""
    import torch

    segment = (position_ids == 0).long().cumsum(dim=-1)  # 0 before a row's first start, then 1, 2, ...
    real = (input_ids != pad_token_id).long()
    per_segment = torch.zeros((segment.shape[0], segment.shape[-1] + 1), dtype=torch.long, device=segment.device)
    per_segment.scatter_add_(-1, segment, real)
    return per_segment.gather(-1, segment) == 0


def batch_record(kwargs: dict[str, Any], args: tuple = (), pad_token_id: int | None = None) -> dict[str, Any] | None:
    """What the audit needs from one micro-batch, built from the model call's kwargs (forward pre-hook).

    Returns ``{input_ids, tokens, labels_supervised, rows, seq_len, sequences, has_position_ids}`` where
    ``input_ids`` is one token list per *sequence* with padding removed: padded rows are cut by the
    attention mask (or the pad id), padding-free / packed rows are split where ``position_ids`` restart
    at 0 (or where a segment-id attention mask changes), so a padded batch and a padding-free batch of
    the same records give the same lists. ``labels_supervised`` counts ``labels[..., 1:] != -100``
    (the shifted labels the loss uses, as the StepMeter counts). Costs one device-to-host copy of the
    batch, so the meter should call it for the first few micro-batches only.
    """
    import torch

    input_ids = kwargs.get("input_ids")
    if input_ids is None and args and torch.is_tensor(args[0]):
        input_ids = args[0]
    if not torch.is_tensor(input_ids) or input_ids.dim() not in (1, 2):
        return None
    ids = input_ids.detach().to("cpu")
    if ids.dim() == 1:
        ids = ids.unsqueeze(0)
    rows, seq_len = int(ids.shape[0]), int(ids.shape[1])
    raw_mask = kwargs.get("attention_mask")
    mask = raw_mask.detach().to("cpu") if torch.is_tensor(raw_mask) and raw_mask.dim() == 2 else None
    pos = kwargs.get("position_ids")
    pos = pos.detach().to("cpu") if torch.is_tensor(pos) and pos.dim() == 2 and pos.shape == ids.shape else None
    blocks = block_mask_segments(raw_mask)
    if mask is None and pos is not None and pad_token_id is not None and not torch.is_tensor(raw_mask):
        # A packed row padded with a segment of its own (axolotl): that segment is padding, not a sequence.
        mask = (~padding_segments(ids, pos, pad_token_id)).long()
    elif blocks is not None and mask is None and blocks[0].shape == ids.shape:
        # Segment ids from the block-diagonal mask: the splitter below cuts where the id changes.
        keep_4d, starts_4d = blocks
        mask = (starts_4d.long().cumsum(dim=1) * keep_4d.long())
    sequences: list[list[int]] = []
    tokens = 0
    for b in range(rows):
        row = ids[b].tolist()
        if mask is not None:
            keep = mask[b].tolist()
        elif pos is None and pad_token_id is not None:
            keep = [int(t != pad_token_id) for t in row]
        else:
            keep = [1] * seq_len
        cuts: list[list[int]] = []
        current: list[int] = []
        prev_seg = None
        prow = pos[b].tolist() if pos is not None else None
        for i, tok in enumerate(row):
            seg = keep[i]
            if not seg:
                continue
            starts = (prow is not None and prow[i] == 0 and current) or (prev_seg is not None and seg != prev_seg
                                                                         and current)
            if starts:
                cuts.append(current)
                current = []
            current.append(int(tok))
            prev_seg = seg
        if current:
            cuts.append(current)
        tokens += sum(len(c) for c in cuts)
        sequences.extend(cuts)
    labels = kwargs.get("shift_labels")
    supervised = None
    if torch.is_tensor(labels):
        supervised = int((labels != IGNORE_INDEX).sum().item())
    elif torch.is_tensor(kwargs.get("labels")):
        supervised = int((kwargs["labels"][..., 1:] != IGNORE_INDEX).sum().item())
    return {"input_ids": sequences, "tokens": tokens, "labels_supervised": supervised, "rows": rows,
            "seq_len": seq_len, "sequences": len(sequences), "has_position_ids": pos is not None}


def read_batches(meter: Any, live: Any, out: dict[str, Any], notes: list[str]) -> None:
    batches = [b for b in list(getattr(meter, "first_batches", None) or [])[:FIRST_BATCHES] if isinstance(b, dict)]
    out["first_batches_seen"] = len(batches)
    if not batches:
        notes.append("meter.first_batches empty: batch hashes, loss_mask_share and batch-derived packing unknown")
        out.update(first_batch_hash=None, first_batches_multiset_hash=None, first_batch_rows=None,
                   loss_mask_share=None, first_batches_tokens=None, first_batches_supervised=None,
                   batch_padding_free=None, batch_packed=None, padded_lengths=None)
        return
    first_rows = [list(map(int, r)) for r in (batches[0].get("input_ids") or [])]
    out["first_batch_hash"] = sha256_json(first_rows) if first_rows else None
    out["first_batch_rows"] = len(first_rows)
    # The padded width of each micro-batch: the shapes the GPU computes on (padding costs time, not loss).
    out["padded_lengths"] = [b.get("seq_len") for b in batches]
    all_rows = sorted([list(map(int, r)) for b in batches for r in (b.get("input_ids") or [])])
    out["first_batches_multiset_hash"] = sha256_json(all_rows) if all_rows else None
    tokens = [b.get("tokens") for b in batches]
    supervised = [b.get("labels_supervised") for b in batches]
    if all(isinstance(t, int) for t in tokens) and all(isinstance(s, int) for s in supervised) and sum(tokens):
        out["loss_mask_share"] = sum(supervised) / sum(tokens)
        out["first_batches_tokens"], out["first_batches_supervised"] = sum(tokens), sum(supervised)
    else:
        out["loss_mask_share"] = out["first_batches_tokens"] = out["first_batches_supervised"] = None
        notes.append("first batches lack token / supervised counts: loss_mask_share unknown")
    # Evidence from the batches themselves: several sequences in one row (padding-free or packed).
    rows = [b.get("rows") for b in batches]
    seqs = [b.get("sequences") for b in batches]
    if all(isinstance(v, int) for v in rows + seqs):
        multi = any(s > r for s, r in zip(seqs, rows))
        out["batch_padding_free"] = multi and all(r == 1 for r in rows)
        # Packing that keeps no sequence boundary (LLaMA-Factory packing without neat_packing) looks like
        # long records here: full rows are no evidence (truncated records fill rows too), so it reads False.
        out["batch_packed"] = multi
    else:
        out["batch_padding_free"] = out["batch_packed"] = None
