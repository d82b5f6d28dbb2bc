"""The local backend: a transformers causal LM, loaded through :mod:`clarify.models` (the
student's loader: hub names, folders, ``.gguf`` files, ``pypi:`` packages), batched generation
seeded per (qid, sample)."""

from __future__ import annotations

import hashlib
import time

from ..errors import InputError
from .core import Teacher

def generation_seed(qid: str, sample_index: int) -> int:
    digest = hashlib.sha256(f"{qid}\x00{int(sample_index)}".encode("utf-8")).hexdigest()
    return int(digest[:15], 16)


class HFTeacher(Teacher):
    """A local causal LM. Batches of ``teacher.concurrency`` prompts (sorted by length, left
    padded); sampling at ``temperature`` (greedy at 0) is seeded per (qid, sample_index) with
    per-row generators (Gumbel-max), so a request's text does not depend on which requests
    share its batch. Tokens are counted; cost is 0 and spend caps do not apply."""

    backend = "hf"
    needs_gpu = True

    def __init__(self, settings: dict, cache_path=None, role: str = "teacher", **options):
        super().__init__(settings, cache_path, role, **options)
        self.batch_size = max(1, int(settings.get("concurrency", 8)))
        self._model = None
        self._tokenizer = None

    def _load(self):
        if self._model is not None:
            return
        from .. import models  # torch is imported only when a local model is actually used

        try:
            source, gguf_file = models.locate(self.model)
            tokenizer = models.load_tokenizer(source, gguf_file=gguf_file)
            model = models.load_model({"path": source}, {"dtype": "auto"}, gguf_file=gguf_file)
        except InputError as exc:  # the student's loader names student.model
            raise InputError(str(exc).replace("student.model", f"{self.role}.model", 1)) from None
        except ValueError as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise InputError(f"{self.role}.model: cannot load {self.model!r} as a transformers causal LM: {first}") from None
        self._model, self._tokenizer = model, tokenizer

    def _format(self, prompt: str) -> str:
        tokenizer = self._tokenizer
        if getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                 add_generation_prompt=True)
        return prompt

    def _complete_uncached(self, items, record) -> None:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        self._load()
        model, tokenizer = self._model, self._tokenizer
        templated = bool(getattr(tokenizer, "chat_template", None))
        texts = [self._format(request.prompt) for _, request in items]
        lengths = [len(tokenizer(text, add_special_tokens=not templated)["input_ids"]) for text in texts]
        order = sorted(range(len(items)), key=lambda i: -lengths[i])
        eos = model.generation_config.eos_token_id
        if eos is None:
            eos = tokenizer.eos_token_id
        eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos])
        config = GenerationConfig(max_new_tokens=self.sampling["max_tokens"], do_sample=False,
                                  pad_token_id=tokenizer.pad_token_id, eos_token_id=list(eos_ids))
        temperature = self.sampling["temperature"]
        for begin in range(0, len(order), self.batch_size):
            batch = order[begin:begin + self.batch_size]
            start = time.perf_counter()
            encoded = tokenizer([texts[i] for i in batch], return_tensors="pt", padding=True,
                                add_special_tokens=not templated).to(model.device)
            processors = LogitsProcessorList()
            if temperature > 0:
                seeds = [generation_seed(items[i][1].record.get("qid", ""), items[i][1].sample_index)
                         for i in batch]
                processors.append(_GumbelSampler(seeds, temperature))
            with torch.inference_mode():
                output = model.generate(**encoded, generation_config=config, logits_processor=processors)
            generated = output[:, encoded["input_ids"].shape[1]:].tolist()
            prompt_counts = encoded["attention_mask"].sum(dim=1).tolist()
            elapsed = (time.perf_counter() - start) / len(batch)
            for row, i in enumerate(batch):
                ids = generated[row]
                end = next((pos + 1 for pos, token in enumerate(ids) if token in eos_ids), len(ids))
                finish = "stop" if end < len(ids) or (ids and ids[end - 1] in eos_ids) else "length"
                text = tokenizer.decode(ids[:end], skip_special_tokens=True)
                record(items[i][0], self._completion(text, int(prompt_counts[row]), end, 0.0, elapsed, finish))


class _GumbelSampler:
    """Sampling as argmax(logits / T + Gumbel noise), the noise drawn from one generator per
    row: greedy decoding with this processor samples from softmax(logits / T), and each row's
    draws depend only on its own seed."""

    def __init__(self, seeds: list[int], temperature: float):
        import torch

        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        self.temperature = float(temperature)

    def __call__(self, input_ids, scores):
        import torch

        vocab = scores.shape[-1]
        uniform = torch.stack([torch.rand(vocab, generator=g) for g in self.generators]).to(scores.device)
        gumbel = -torch.log(-torch.log(uniform.clamp(1e-10, 1 - 1e-7)))
        return scores.float() / self.temperature + gumbel
