"""Resumable state carries the fingerprint of what made it; incomplete checkpoints are skipped."""

import json
import logging

import pytest

from clarify.resume import (FINGERPRINT_FILE, changed_keys, content_digest, fingerprint, last_complete_checkpoint,
                            open_work_dir)

REQUIRED = ["trainer_state.json", "optimizer.pt", ("adapter_model.safetensors", "adapter_model.bin")]


def checkpoint(work, step, files=("trainer_state.json", "optimizer.pt", "adapter_model.safetensors")):
    path = work / f"checkpoint-{step}"
    path.mkdir(parents=True)
    for name in files:
        (path / name).write_text(name)
    return path


def test_fingerprint_follows_params_and_input_contents_not_their_order_of_keys_or_mtime(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"q": 1}\n')
    base = fingerprint({"lr": 0.01, "lora": {"r": 16}}, [corpus])
    assert fingerprint({"lora": {"r": 16}, "lr": 0.01}, [corpus]) == base
    assert fingerprint({"lr": 0.05, "lora": {"r": 16}}, [corpus]) != base
    assert fingerprint({"lr": 0.01, "lora": {"r": 4}}, [corpus]) != base
    corpus.touch()
    assert fingerprint({"lr": 0.01, "lora": {"r": 16}}, [corpus]) == base
    corpus.write_text('{"q": 2}\n')
    assert fingerprint({"lr": 0.01, "lora": {"r": 16}}, [corpus]) != base


def test_a_directory_digest_covers_names_and_contents(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "a.bin").write_bytes(b"1")
    first = content_digest(adapter)
    (adapter / "a.bin").write_bytes(b"2")
    assert content_digest(adapter) != first
    (adapter / "a.bin").rename(adapter / "b.bin")
    assert content_digest(adapter) not in {first, content_digest(adapter / "b.bin")}
    with pytest.raises(FileNotFoundError, match="does not exist"):
        content_digest(tmp_path / "missing")


def test_open_work_dir_keeps_matching_state_and_clears_other_settings_with_one_line(tmp_path, caplog):
    work = tmp_path / "ckpt"
    old = {"settings": {"learning_rate": 0.02, "epochs": 3}}
    open_work_dir(work, fingerprint(old), old)
    checkpoint(work, 3)
    assert (open_work_dir(work, fingerprint(old), old) / "checkpoint-3").is_dir()
    new = {"settings": {"learning_rate": 0.05, "epochs": 6}}
    with caplog.at_level(logging.WARNING, logger="clarify.resume"):
        open_work_dir(work, fingerprint(new), new)
    assert [p.name for p in work.iterdir()] == [FINGERPRINT_FILE]
    assert json.loads((work / FINGERPRINT_FILE).read_text())["fingerprint"] == fingerprint(new)
    [line] = caplog.messages
    assert "starting fresh" in line and "settings.epochs, settings.learning_rate" in line


def test_state_without_a_fingerprint_is_not_trusted(tmp_path, caplog):
    work = tmp_path / "ckpt"
    checkpoint(work, 3)
    with caplog.at_level(logging.WARNING, logger="clarify.resume"):
        open_work_dir(work, "abc")
    assert not (work / "checkpoint-3").exists() and "no settings fingerprint" in caplog.text
    caplog.clear()
    open_work_dir(tmp_path / "new", "abc")  # nothing to clear: nothing said
    assert not caplog.messages


def test_last_complete_checkpoint_skips_and_removes_half_written_ones(tmp_path, caplog):
    assert last_complete_checkpoint(tmp_path / "none", REQUIRED) is None
    checkpoint(tmp_path, 3)
    checkpoint(tmp_path, 6, files=("adapter_model.bin", "trainer_state.json", "optimizer.pt"))
    checkpoint(tmp_path, 9, files=("adapter_model.safetensors",))          # killed during the save
    checkpoint(tmp_path, 12, files=("optimizer.pt", "trainer_state.json"))  # no weights
    with caplog.at_level(logging.WARNING, logger="clarify.resume"):
        assert last_complete_checkpoint(tmp_path, REQUIRED) == tmp_path / "checkpoint-6"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-3", "checkpoint-6"]
    assert "checkpoint-9: incomplete (no trainer_state.json, optimizer.pt)" in caplog.text
    assert "checkpoint-12: incomplete (no adapter_model.safetensors or adapter_model.bin)" in caplog.text


def test_changed_keys_names_nested_differences():
    assert changed_keys({"a": 1, "b": {"c": 2, "d": 3}}, {"a": 1, "b": {"c": 5}, "e": 0}) == ["b.c", "b.d", "e"]


def test_restore_callback_states_sets_saved_attributes_on_the_existing_callbacks(tmp_path):
    """What a Trainer checkpoint saved of its ExportableState callbacks comes back onto the same objects."""
    from types import SimpleNamespace

    from transformers import TrainerCallback, TrainerState
    from transformers.trainer_callback import ExportableState

    from clarify.numerics import nonfinite_guard
    from clarify.resume import restore_callback_states

    class History(TrainerCallback, ExportableState):
        def __init__(self, tokenizer):  # a constructor argument no checkpoint could hold
            self.tokenizer, self.history = tokenizer, []

        def state(self):
            return {"args": {}, "attributes": {"history": self.history}}

    saved_history, saved_guard = History(object()), nonfinite_guard("phase_c")
    saved_history.history, saved_guard.skipped = [{"epoch": 0}, {"epoch": 1}], [3]
    TrainerState(stateful_callbacks=[saved_history, saved_guard]).save_to_json(str(tmp_path / "trainer_state.json"))

    tokenizer = object()
    history, guard, plain = History(tokenizer), nonfinite_guard("phase_c"), TrainerCallback()
    trainer = SimpleNamespace(callback_handler=SimpleNamespace(callbacks=[plain, history, guard]))
    assert sorted(restore_callback_states(trainer, tmp_path)) == ["History", "NonFiniteGuard"]
    assert history.history == [{"epoch": 0}, {"epoch": 1}] and history.tokenizer is tokenizer
    assert guard.skipped == [3]
