"""Our own eval loss, identical for every framework.

Frameworks compute eval loss differently (mean of batch means vs token mean, with or without prompt
tokens, different padding and truncation), so their numbers cannot be compared with each other. This
evaluator tokenises the held-out records the same way for everyone (chat template, response-only labels,
right truncation), batches them in a fixed order with right padding, and reports the token-mean
cross-entropy over all supervised tokens of the set: ``sum(token CE) / count(supervised tokens)``, the
same figure whatever the batch size. Cross-entropy is computed in float32 from the logits and summed in
float64.

Unsloth returns no logits from training-patched models unless ``UNSLOTH_RETURN_LOGITS=1`` is set in the
environment before it is imported; without logits we raise, naming that variable."""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

from harness.data.tokenize import IGNORE_INDEX, tokenize_record


def _pad_id(tokenizer) -> int:
    for attr in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            return int(value)
    return 0


def evaluate_loss(model, tokenizer, records: Sequence[dict[str, Any]], *, max_length: int, batch_size: int,
                  pad_to_multiple_of: int = 1, device=None, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Token-mean cross-entropy over the supervised (shifted) tokens of ``records``.

    Each batch is right-padded to its longest row, rounded up to ``pad_to_multiple_of``. The final
    evaluation runs at the frameworks' own eval shapes (batch 1, padded to the collators' multiple of 8),
    so that our loss and the framework's are computed on the same tensors in the same precision (bf16
    rounds differently for differently shaped matmuls) and the run's memory peak is never set by a
    wide evaluation batch (16 x 1024 rows of 152k-vocabulary logits are ~5 GiB in bf16).

    Returns ``{loss, tokens, records, batches, truncated, record_mean_loss, record_losses, logits_dtype,
    logits_rms, batch_size, pad_to_multiple_of}`` where tokens counts the
    supervised tokens that entered the mean (``labels[1:] != -100`` per record) and ``record_losses`` holds each
    record's ``[summed cross-entropy, supervised tokens]`` (what a framework's own averaging is rebuilt from). The model is put in eval mode under
    no_grad and its previous train/eval mode is restored afterwards. ``env``: environment variables set
    for the evaluation only (the adapter's ``evaluation_env``: a patched forward that returns no logits
    unless told to), restored afterwards.
    """
    import torch  # noqa: PLC0415  (child-side only)
    import torch.nn.functional as F  # noqa: PLC0415

    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if device is None:
        device = next(model.parameters()).device
    items = [tokenize_record(tokenizer, r, max_length) for r in records]
    pad = _pad_id(tokenizer)
    was_training = model.training
    total = torch.zeros((), dtype=torch.float64)
    n_tokens = 0
    batches = 0
    record_losses: list[list[float]] = []
    logits_dtype: str | None = None
    square_sum = torch.zeros((), dtype=torch.float64)  # of the supervised positions' logits: rounding scale
    n_logits = 0
    model.eval()
    previous_env = {name: os.environ.get(name) for name in (env or {})}
    os.environ.update(env or {})
    try:
        with torch.no_grad():
            for start in range(0, len(items), batch_size):
                chunk = items[start:start + batch_size]
                width = max(len(it["input_ids"]) for it in chunk)
                width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
                ids = torch.full((len(chunk), width), pad, dtype=torch.long)
                labels = torch.full((len(chunk), width), IGNORE_INDEX, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for row, it in enumerate(chunk):
                    n = len(it["input_ids"])
                    ids[row, :n] = torch.tensor(it["input_ids"], dtype=torch.long)
                    labels[row, :n] = torch.tensor(it["labels"], dtype=torch.long)
                    mask[row, :n] = 1
                batches += 1
                targets = labels[:, 1:].to(device)
                keep = targets != IGNORE_INDEX
                if not bool(keep.any()):
                    continue
                out = model(input_ids=ids.to(device), attention_mask=mask.to(device))
                logits = out.logits if hasattr(out, "logits") else out[0]
                if logits is None or not torch.is_tensor(logits) or logits.shape[:2] != ids.shape:
                    raise RuntimeError("model returned no full logits (a framework whose forward needs telling "
                                       "declares that in its adapter's evaluation_env)")
                logits_dtype = str(logits.dtype).removeprefix("torch.")
                # Only supervised positions are upcast: a float32 copy of every logit would not fit at
                # large vocab x long sequences.
                selected = logits[:, :-1][keep].float()
                token_ce = F.cross_entropy(selected, targets[keep], reduction="none").double()
                square_sum += torch.linalg.vector_norm(selected, dtype=torch.float64).cpu() ** 2
                n_logits += selected.numel()
                total += token_ce.sum().cpu()
                n_tokens += int(keep.sum())
                # Per-record means too: HF Trainer's own eval loss (eval batch 1) averages those.
                rows = keep.nonzero()[:, 0]
                row_sums = torch.zeros(len(chunk), dtype=torch.float64, device=token_ce.device).index_add_(0, rows, token_ce)
                row_counts = keep.sum(dim=1).double()
                record_losses.extend([float(total_ce), int(count)] for total_ce, count
                                     in zip(row_sums.tolist(), row_counts.tolist()) if count > 0)
    finally:
        model.train(was_training)
        for name, value in previous_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    loss = float(total / n_tokens) if n_tokens else None
    return {"loss": loss, "tokens": n_tokens, "records": len(items), "batches": batches,
            "record_mean_loss": (sum(total_ce / count for total_ce, count in record_losses) / len(record_losses)
                                 if record_losses else None),
            "record_losses": record_losses, "logits_dtype": logits_dtype,
            "logits_rms": float((square_sum / n_logits).sqrt()) if n_logits else None,
            "batch_size": batch_size, "pad_to_multiple_of": pad_to_multiple_of,
            "truncated": sum(1 for it in items if it["truncated"])}
