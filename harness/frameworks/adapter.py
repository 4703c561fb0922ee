"""The contract between the harness and a framework: one :class:`Adapter` subclass per framework.

Everything the harness needs to know about a framework is a hook declared here, with its default
where one makes sense, so nothing is probed with ``hasattr``: a subclass that leaves a required hook
out cannot be instantiated (``TypeError`` naming it). The registry (``harness.frameworks.registry``)
finds each subclass through ``adapter:`` in ``conf/framework/NAME.yaml``.

Which process calls what: the parent (which never imports torch) reads the declarations (``packages``,
``distribution``, ``faults``, ``compare_rank``, ``multi_gpu_unsupported``) and calls nothing heavy;
the worker calls ``import_framework``, ``train`` and reads ``truncation``, ``checkpointing_kind``,
``evaluation_env``, ``native_loss`` and ``lora_input_cast``. Adapter modules therefore import only light
modules at their top; the framework itself is imported inside ``train`` / ``import_framework``. The
built-in adapters keep ``native_args`` and ``train`` as module functions too (the bare benchmark scripts
and the silent-defaults tests import them) and their class binds them (``train = staticmethod(train)``).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

Job = dict[str, Any]


class FrameworkUnavailable(RuntimeError):
    """The framework cannot run here (not installed, needs CUDA...): recorded as status 'unavailable'."""


@dataclass
class Trained:
    """What the worker needs after training: the live model and tokenizer for our evaluator.

    ``model``, ``tokenizer`` and ``framework_eval_loss`` may be None when the framework's entry point
    returns nothing (a ``run_exp``-style call that builds and trains its own Trainer): the worker then
    takes them from what that Trainer handed to our callbacks (``harness.worker.live_objects.LiveObjects``)."""
    model: Any = None
    tokenizer: Any = None
    framework_eval_loss: float | None = None
    # Wall time of the framework's own train call, where the adapter makes one (the harness-overhead
    # benchmark compares it with the same call in a bare script).
    train_call_s: float | None = None


class Adapter(ABC):
    """One framework, as the harness sees it. Subclass it in ``harness/frameworks/NAME.py``."""

    # ---- required declarations (class attributes) --------------------------------------------------
    #: Distributions whose installed versions are recorded with each result.
    packages: ClassVar[tuple[str, ...]]
    #: The distribution whose installed version is ``framework.version`` (preflight checks it against
    #: the pinned ``envs/NAME-VERSION.txt`` or the interpreter named); None: a test double, no versions.
    distribution: ClassVar[str | None]
    #: What to do when the framework cannot be imported (shown in the 'unavailable' reason).
    install_hint: ClassVar[str]
    #: How the framework shortens a record longer than ``train.max_length`` (a documented fact, by
    #: source reading), recorded as the audit's ``truncation_strategy``.
    truncation: ClassVar[str]

    # ---- optional declarations, with their defaults -------------------------------------------------
    #: Why this framework cannot run with more than one process (``launcher.nproc > 1``), or None when it
    #: can. The parent records such a run 'unavailable' before spawning anything.
    multi_gpu_unsupported: ClassVar[str | None] = None
    #: Faults this adapter can inject on request (``framework.fault=NAME``; tests only). Empty: none.
    faults: ClassVar[tuple[str, ...]] = ()
    #: Where a plain ``python -m harness run -m`` puts this framework (lower first; the first is the
    #: reports' reference). None keeps it out of a plain ``-m`` (test doubles, experimental adapters).
    compare_rank: ClassVar[int | None] = None
    #: Environment variables set while the harness's own evaluator runs the trained model (a framework
    #: whose patched forward returns no logits unless told to).
    evaluation_env: ClassVar[Mapping[str, str]] = {}
    #: The framework's own loss on the identical recipe, as the same-loss control (``profile.loss=
    #: transformers``) needs to know it (docs/explain.md): "transformers" when the model's forward already
    #: builds the full logits and transformers' ForCausalLMLoss computes the loss from them, so the control
    #: changes nothing in this framework; "own" when it computes the loss another way (a fused, chunked loss
    #: in its trainer or its patched forward), so the control puts the harness's common compute_loss in its
    #: trainer's place (harness/worker/common_loss.py). Either way the run reads back what ran.
    native_loss: ClassVar[str] = "own"
    #: How the framework's LoRA layers run on the identical recipe, as the LoRA input cast control
    #: (``profile.lora_input_cast=off``) needs to know it (docs/explain.md section 4): "peft" when peft's
    #: LoRA forward runs as written, so its ``_cast_input_dtype`` runs (and is counted) in each LoRA layer and
    #: the control switches it off; "own" when the framework runs LoRA its own way (fused kernels, compiled
    #: blocks), so the control switches nothing and says so.
    lora_input_cast: ClassVar[str] = "peft"

    _REQUIRED: ClassVar[tuple[str, ...]] = ("packages", "distribution", "install_hint", "truncation")

    def __init__(self) -> None:
        # ABC refuses a missing method; a missing declaration is refused here, as early and as plainly.
        missing = [name for name in self._REQUIRED if not hasattr(type(self), name)]
        if missing:
            raise TypeError(f"{type(self).__name__} does not declare {', '.join(missing)} (see harness/frameworks/adapter.py)")

    # ---- hooks ----------------------------------------------------------------------------------------
    @abstractmethod
    def native_args(self, job: Job) -> dict[str, Any]:
        """Pure: the framework's own arguments for ``job``, as plain data (no heavy imports). The
        silent-defaults tests read these, so every default the recipe must not inherit is pinned here."""

    @abstractmethod
    def train(self, job: Job, callbacks: list[Any]) -> Trained:
        """Real training through the framework's public API, passing ``callbacks`` to its
        ``transformers.Trainer`` (they measure and hold the live objects)."""

    def import_framework(self, job: Job) -> None:
        """Imports that must come first in the worker, before any callback is built (a framework that
        patches transformers). Raise :class:`FrameworkUnavailable` when it cannot run here; an
        ImportError is reported 'unavailable' with ``install_hint``. Default: nothing to import early."""

    def truncation_for(self, job: Job) -> str:
        """How the framework shortens a long record in ``job`` (the audit's ``truncation_strategy``): the
        declared ``truncation``, unless a recommended recipe's feature changes it (LLaMA-Factory's
        neat_packing drops long records). Default: ``truncation``."""
        return self.truncation

    def checkpointing_kind(self, function_names: Sequence[str]) -> str:
        """The audit's ``gradient_checkpointing_kind`` for the checkpoint function found on the live
        model (``function_names``: its qualified names). Default ``"hf"``: Hugging Face's own; a
        framework that installs its own algorithm names it here."""
        return "hf"
