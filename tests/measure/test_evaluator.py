from pathlib import Path

import pytest
import torch

from harness.worker.evaluator import evaluate_loss
from harness.data.tokenize import messages_for, tokenize_record

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "harness" / "assets" / "tiny"
HUB = Path("/work/shared/hub/Qwen/Qwen2.5-0.5B-Instruct")

RECORDS = [
    {"instruction": "头痛怎么办？", "input": "", "output": "多休息，必要时就医。"},
    {"instruction": "What helps a sore throat?", "input": "Adult, no fever.", "output": "Warm fluids and rest."},
    {"instruction": "失眠", "input": "三天", "output": "规律作息，睡前不看手机，持续不缓解请就诊。"},
    {"instruction": "Is a cough after a cold normal?", "input": "", "output": "Often, for up to three weeks."},
    {"instruction": "腹泻", "input": "", "output": "补液。"},
]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    source = TINY if (TINY / "tokenizer_config.json").exists() else HUB
    return AutoTokenizer.from_pretrained(str(source))


@pytest.fixture(scope="module")
def model(tokenizer):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True)
    m = Qwen2ForCausalLM(cfg).float()
    m.train()  # the evaluator must restore this
    return m


def test_messages_for():
    assert messages_for(RECORDS[1]) == [
        {"role": "user", "content": "What helps a sore throat?\nAdult, no fever."},
        {"role": "assistant", "content": "Warm fluids and rest."}]
    assert messages_for(RECORDS[0])[0]["content"] == "头痛怎么办？"


def test_prompt_tokens_are_masked(tokenizer):
    for record in RECORDS:
        item = tokenize_record(tokenizer, record, max_length=512)
        prompt = tokenizer.apply_chat_template(messages_for(record)[:-1], tokenize=False, add_generation_prompt=True)
        n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        assert item["labels"][:n_prompt] == [-100] * n_prompt
        assert item["labels"][n_prompt:] == item["input_ids"][n_prompt:]
        answer = tokenizer.decode(item["input_ids"][n_prompt:])
        assert answer.startswith(record["output"]) and not item["truncated"]
    short = tokenize_record(tokenizer, RECORDS[1], max_length=10)
    assert len(short["input_ids"]) == 10 and short["truncated"]


def _hand_loss(model, tokenizer, records, max_length):
    total, count = 0.0, 0
    with torch.no_grad():
        for record in records:
            item = tokenize_record(tokenizer, record, max_length)
            ids = torch.tensor([item["input_ids"]])
            logits = model(input_ids=ids).logits[0].double()
            logp = torch.log_softmax(logits, dim=-1)
            for t in range(1, len(item["labels"])):
                target = item["labels"][t]
                if target != -100:
                    total -= float(logp[t - 1, target])
                    count += 1
    return total / count, count


def test_loss_matches_hand_computation_and_is_batch_size_independent(model, tokenizer):
    expected, count = _hand_loss(model, tokenizer, RECORDS, 48)
    one = evaluate_loss(model, tokenizer, RECORDS, max_length=48, batch_size=1)
    four = evaluate_loss(model, tokenizer, RECORDS, max_length=48, batch_size=4)
    assert model.training  # train mode restored
    assert one["tokens"] == four["tokens"] == count
    assert one["records"] == 5 and one["batches"] == 5 and four["batches"] == 2
    assert one["loss"] == pytest.approx(expected, abs=1e-5)
    assert abs(one["loss"] - four["loss"]) < 1e-6
    again = evaluate_loss(model, tokenizer, RECORDS, max_length=48, batch_size=4)
    assert again["loss"] == four["loss"]  # deterministic


def test_token_mean_not_mean_of_batch_means(model, tokenizer):
    # Records of very different answer lengths: a mean of batch means would differ from the token mean.
    recs = [RECORDS[4], RECORDS[2]]
    both = evaluate_loss(model, tokenizer, recs, max_length=256, batch_size=1)
    a = evaluate_loss(model, tokenizer, recs[:1], max_length=256, batch_size=1)
    b = evaluate_loss(model, tokenizer, recs[1:], max_length=256, batch_size=1)
    assert a["tokens"] != b["tokens"]
    token_mean = (a["loss"] * a["tokens"] + b["loss"] * b["tokens"]) / (a["tokens"] + b["tokens"])
    assert both["loss"] == pytest.approx(token_mean, abs=1e-9)


def test_padding_to_a_multiple_changes_shapes_not_the_loss(model, tokenizer):
    plain = evaluate_loss(model, tokenizer, RECORDS, max_length=48, batch_size=1)
    padded = evaluate_loss(model, tokenizer, RECORDS, max_length=48, batch_size=1, pad_to_multiple_of=8)
    assert padded["tokens"] == plain["tokens"] and padded["pad_to_multiple_of"] == 8
    assert padded["loss"] == pytest.approx(plain["loss"], abs=1e-6)
    assert padded["logits_dtype"] == "float32" and padded["logits_rms"] == pytest.approx(plain["logits_rms"], rel=1e-6)
