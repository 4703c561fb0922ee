"""QLoRA adapters start from the same weights in trl, LLaMA-Factory and axolotl (the strict audit's
``lora_init_hash``), though they reach them by different routes.

peft draws the same numbers after the same seed; over a 4-bit layer it then moves the new adapter to the layer's
dtype and ``autocast_adapter_dtype`` brings it back to float32, so what the adapter holds depends on which dtype
peft reads: peft >= 0.20 (trl's and axolotl's environments, also unsloth's and ms-swift's) takes the layer's
bf16 compute dtype (peft/tuners/tuners_utils.py ``_get_base_layer_device_and_dtype``); peft 0.18.1 (LLaMA-Factory
0.9.5's pin) the dtype of the packed weight, which LLaMA-Factory stores in bf16 (``bnb_4bit_quant_storage`` =
compute dtype, model/model_utils/quantization.py; trl's and axolotl's pack into uint8). Either way every lora_A is
rounded to bf16 once, and trl's own cast of the adapters to bf16 (undone by its adapter) loses nothing more. Checked
where each framework builds its model, under its own environment, on the tiny model loaded in 4 bits through
bitsandbytes' CPU backend with a bf16 compute dtype as on a GPU (a 4-bit *run* needs CUDA; building the model does
not), as probes of each environment (tests/helpers/framework_env.py). With float32 packing LLaMA-Factory would keep
the unrounded draw, and the audit would refuse the comparison.
"""
from __future__ import annotations

import json

from tests.audit.test_silent_defaults_axolotl import QLORA as AXOLOTL_QLORA  # its 4-bit model, LoRA applied
from tests.helpers.framework_env import LLAMAFACTORY, PROBES, TRL
from tests.helpers.jobs import make_job

_MODEL = """
from pathlib import Path

import torch

from harness.worker.live_fields.lora_init import lora_init_snapshot
from harness.worker.model_cache import random_weights_model

job["model"]["path"] = str(random_weights_model(Path(job["model"]["path"]), job["model"]["init_seed"]))


def described(model):
    return {**lora_init_snapshot(model),
            "trainable_dtypes": sorted({str(p.dtype) for p in model.parameters() if p.requires_grad}),
            "linear4bit": sum(type(m).__name__ == "Linear4bit" for m in model.modules()),
            "compute_dtypes": sorted({str(m.compute_dtype) for m in model.modules() if hasattr(m, "compute_dtype")})}
"""

# trl: the adapter's own trainer (SFTTrainer seeds, peft makes the adapters, trl casts them to bf16, the adapter
# casts them back); the peft version of the environment is reported beside it.
_TRL = _MODEL + """
import peft

from harness.frameworks import trl as adapter

trainer, _ = adapter.build_trainer(job, [])
result = {"peft": peft.__version__, "built": described(trainer.model)}
"""

# LLaMA-Factory: its own argument parsing (which seeds) and model loader (4-bit load, init_adapter), as run_exp
# reaches them.
_LLAMAFACTORY = _MODEL + """
import peft
from llamafactory.hparams import get_train_args
from llamafactory.model import load_model, load_tokenizer

from harness.frameworks import llamafactory as adapter

model_args, _, _, finetuning_args, _ = get_train_args(adapter.native_args(job))
model = load_model(load_tokenizer(model_args)["tokenizer"], model_args, finetuning_args, is_trainable=True)
storage = sorted({str(m.weight.dtype) for m in model.modules() if type(m).__name__ == "Linear4bit"})
result = {"peft": peft.__version__, "built": {**described(model), "storage": storage}}
"""


def _job(tmp, framework: str) -> dict:
    data = tmp / "data"
    data.mkdir(parents=True, exist_ok=True)
    records = [{"instruction": "Sore throat?", "input": "", "output": "Warm fluids."},
               {"instruction": "Translate", "input": "bonjour", "output": "hello"}]
    for split in ("train", "eval"):
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    if framework == "llamafactory":
        from harness.frameworks.llamafactory import write_dataset_info

        write_dataset_info(data)
    return make_job(framework=framework, train__quantization="4bit", train__precision="bf16",
                    runtime={"run_dir": str(tmp / "run"), "data_dir": str(data)})


TRL_QLORA = PROBES[TRL].add("qlora_lora_init", _TRL, lambda tmp: _job(tmp, "trl"))
LF_QLORA = PROBES[LLAMAFACTORY].add("qlora_lora_init", _LLAMAFACTORY, lambda tmp: _job(tmp, "llamafactory"))


def test_qlora_adapters_start_from_the_same_weights(trl_probes, lf_probes, axolotl_probes):
    trl, lf = trl_probes[TRL_QLORA], lf_probes[LF_QLORA]
    axolotl = axolotl_probes[AXOLOTL_QLORA]["lora_init"]
    assert (trl["peft"], lf["peft"]) == ("0.21.0", "0.18.1")  # the versions this explanation is about
    assert lf["built"]["storage"] == ["torch.bfloat16"]  # why peft 0.18.1 rounds too
    for built in (trl["built"], lf["built"]):
        assert built["linear4bit"] > 0 and built["compute_dtypes"] == ["torch.bfloat16"]
        assert built["trainable_dtypes"] == ["torch.float32"] and built["lora_init_B_nonzero"] is False
    assert lf["built"]["lora_init_hash"] == trl["built"]["lora_init_hash"] == axolotl["lora_init_hash"]
    assert axolotl["lora_init_tensors"] == trl["built"]["lora_init_tensors"] > 0
