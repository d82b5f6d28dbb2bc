"""A tiny randomly initialised Llama with a small BPE tokenizer, built offline for tests.

The tokenizer is trained with ``tokenizers`` on StrategyQA-like text so prompts tokenise into
a few dozen ids; the model (~300K parameters) is saved like any transformers folder and loaded
through the project's real loading code.
"""

from __future__ import annotations

import json
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "strategyqa" / "strategyqa_train.json"

FALLBACK_TEXT = [
    "Question: Is the sky blue?\nAnswer: Yes",
    "Question: Can a fish climb a tree?\nAnswer: No",
    "Answer: Yes - brief reasoning\nQuestions: What is it? Why?",
]


def training_text() -> list[str]:
    lines = list(FALLBACK_TEXT)
    if SHARED_DATA.exists():
        for row in json.loads(SHARED_DATA.read_text())[:1500]:
            lines.append(f"Question: {row['question']}\nAnswer: {'Yes' if row['answer'] else 'No'}")
            lines.extend(row.get("facts", []))
            lines.extend(row.get("decomposition", []))
    return lines


def build_tiny_model(out_dir: str | Path, vocab_size: int = 1024, seed: int = 0) -> Path:
    """Write a tiny Llama + BPE tokenizer to ``out_dir`` and return it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(training_text(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                        pad_token="<pad>")
    tokenizer.save_pretrained(out)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    return out
