"""rlft's tokenizer and chat template: round trip, EOS and pad, assistant-only masks."""

from __future__ import annotations

from transformers import AutoTokenizer


def test_round_trip_and_special_tokens(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = "Where is order #48213? It's been 3-5 business days!"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids).strip() == text
    assert tok.eos_token == "<|end|>" and tok.pad_token == "<|pad|>" and tok.eos_token_id != tok.pad_token_id


def test_assistant_mask_covers_exactly_the_reply(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    chat = [{"role": "user", "content": "Cancel order 12345."},
            {"role": "assistant", "content": "Thanks! Use Account > Orders > Cancel."},
            {"role": "user", "content": "thanks"}, {"role": "assistant", "content": "Happy to help."}]
    out = tok.apply_chat_template(chat, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    masked = [i for i, m in zip(ids, mask) if m]
    replies = []
    for m in chat:
        if m["role"] == "assistant":
            replies += tok(m["content"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert masked == replies
    assert tok.decode([i for i, m in zip(ids, mask) if not m]).count("Cancel order 12345.") == 1


def test_generation_prompt_ends_with_the_assistant_tag(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|assistant|>")
