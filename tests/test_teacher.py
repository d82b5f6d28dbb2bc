"""The teacher: parsing, the gold teacher, the call cache, spend caps, the openai backend
against a fault-injecting fake server (retries, no double payment, SIGKILL resume, no key
leaks) and the local hf backend on a tiny random model."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from clarify.cache import CallCache, cache_key
from clarify.errors import InputError
from clarify.judge import make_judge
from clarify.parsing import parse_teacher
from clarify.prompts import rationalization_prompt, teacher_prompt
from clarify.teacher import (BACKENDS, Completion, Request, SpendCapReached, Teacher, TeacherRequestsFailed,
                             backend_needs_api_key, backend_needs_gpu, gold_response, judge_backends,
                             make_teacher)
from fake_openai_server import FakeOpenAIServer
from harvest_child import make_requests, teacher_defaults

HERE = Path(__file__).resolve().parent
PRICE = {"input_per_mtok": 0.10, "output_per_mtok": 0.40}


def openai_settings(server: FakeOpenAIServer, **overrides) -> dict:
    settings = dict(teacher_defaults(), backend="openai", base_url=server.base_url, concurrency=8,
                    timeout_s=5.0, max_retries=2)
    settings.update(overrides)
    return settings


@pytest.fixture(scope="module")
def strategyqa_rows(shared_data):
    return json.loads(Path(shared_data).read_text())[:300]


# --- parse_teacher -------------------------------------------------------------------------

CANONICAL = """## Teaching Analysis
You asked the right question.

## Step-by-Step Reasoning
1. How many children did Julius Caesar have? Three.
2. How many did Genghis Khan have? Sixteen, and
   millions descend from him.
3. Is #2 greater than #1? Yes.

## Final Assessment
Based on this analysis, the answer is: **YES**"""


@pytest.mark.parametrize("text, final, steps", [
    (CANONICAL, True, ["How many children did Julius Caesar have? Three.",
                       "How many did Genghis Khan have? Sixteen, and millions descend from him.",
                       "Is #2 greater than #1? Yes."]),
    # no bold, lower case, other numbering and bullets, bold headings
    ("**Teaching Analysis**\nok\n\n**Step-by-step reasoning:**\n1) First fact\n2) Second fact\n"
     "- a bullet\n\n**Final Assessment**\nBased on this analysis, the answer is: no",
     False, ["First fact", "Second fact", "a bullet"]),
    # "Yes." on its own line; "Step 1:" items; a closing paragraph is not a step
    ("### Step by Step Reasoning\nStep 1: Sharks are fish.\nStep 2: Fish swim.\n\nSo they swim.\n"
     "### Final Assessment\nYes.", True, ["Sharks are fish.", "Fish swim."]),
    # the final answer counts only in its section; an echo of the template is not an answer
    ("## Step-by-Step Reasoning\n1. The answer is yes.\n\n## Final Assessment\n"
     "Based on this analysis, the answer is: **[YES/NO]**", None, ["The answer is yes."]),
    # no Final Assessment at all (markdown is stripped from steps: issue 18)
    ("## Step-by-Step Reasoning\n1. Something.\nThe answer is: **NO**", None, ["Something. The answer is: NO"]),
    # no steps
    ("## Final Assessment\nthe answer is **No**.", False, []),
    ("", None, []),
    ("I cannot help with that.", None, []),
])
def test_parse_teacher_formats(text, final, steps):
    assert parse_teacher(text) == (final, steps)


def test_parse_teacher_takes_the_last_stated_answer_of_the_final_section():
    text = CANONICAL.replace("Based on", "At first the answer is: NO, but\nBased on")
    assert parse_teacher(text)[0] is True


# --- gold teacher --------------------------------------------------------------------------

def test_gold_teacher_round_trips_on_real_rows(strategyqa_rows):
    teacher = make_teacher(dict(teacher_defaults(), backend="gold"), cache_path=False)
    draft = {"guess": True, "reason": "seems likely", "questions": ["Who?", "When?"]}
    requests = [Request(row, teacher_prompt(row["question"], draft), 0) for row in strategyqa_rows]
    requests += [Request(row, rationalization_prompt(row["question"], None, row["answer"]), 0,
                         kind="rationalize", hint=row["answer"]) for row in strategyqa_rows[:50]]
    completions = teacher.complete_many(requests, progress=False)
    assert len(completions) == len(requests)
    for request, completion in zip(requests, completions):
        row = request.record
        assert completion.parse_ok, completion.text
        assert completion.final == row["answer"]
        assert len(completion.steps) == len(row["decomposition"])
        assert "#1" not in " ".join(completion.steps)
        assert completion.text.rstrip().endswith(f"the answer is: **{'YES' if row['answer'] else 'NO'}**")
        assert "hint" not in completion.text.lower()
        assert completion.cost_usd == 0 and completion.backend == "gold" and not completion.cached
        # the draft guess is mentioned only when the prompt shows one
        assert ("first guess was Yes" in completion.text) == (request.kind == "teach")
    # every fact appears in the steps (attached to the sub-question it fits best)
    row = strategyqa_rows[0]
    text = completions[0].text
    assert all(" ".join(fact.split()) in text for fact in row["facts"])
    assert teacher.spend.cost_usd == 0 and teacher.spend.requests_made == len(requests)
    # deterministic
    again = make_teacher(dict(teacher_defaults(), backend="gold"), cache_path=False).complete_many(
        requests[:20], progress=False)
    assert [c.text for c in again] == [c.text for c in completions[:20]]


def test_gold_teacher_needs_a_decomposition(strategyqa_rows):
    row = dict(strategyqa_rows[1], decomposition=[])
    teacher = make_teacher(dict(teacher_defaults(), backend="gold"))
    with pytest.raises(InputError, match=rf"{row['qid']}.*'decomposition'.*gold teacher needs"):
        teacher.complete_many([Request(row, teacher_prompt(row["question"]), 0)], progress=False)
    no_field = {k: v for k, v in strategyqa_rows[1].items() if k != "decomposition"}
    with pytest.raises(InputError, match="decomposition"):
        gold_response(no_field)


def test_unknown_backend_is_an_input_error():
    with pytest.raises(InputError, match="teacher.backend"):
        make_teacher(dict(teacher_defaults(), backend="claude"))


# --- the cache -----------------------------------------------------------------------------

def test_call_cache_persists_across_instances(tmp_path):
    path = tmp_path / "deep" / "dir" / "calls.sqlite"
    key = cache_key("openai", "m", "prompt", {"temperature": 0.3, "max_tokens": 400}, 0)
    assert key == cache_key("openai", "m", "prompt", {"max_tokens": 400, "temperature": 0.3}, 0)
    others = {cache_key("openai", "m", "prompt", {"temperature": 0.3, "max_tokens": 400}, 1),
              cache_key("openai", "m", "prompt", {"temperature": 0.7, "max_tokens": 400}, 0),
              cache_key("openai", "m2", "prompt", {"temperature": 0.3, "max_tokens": 400}, 0),
              cache_key("hf", "m", "prompt", {"temperature": 0.3, "max_tokens": 400}, 0),
              cache_key("openai", "m", "prompt!", {"temperature": 0.3, "max_tokens": 400}, 0)}
    assert key not in others and len(others) == 5
    with CallCache(path) as cache:
        assert cache.get(key) is None and len(cache) == 0
        cache.put(key, {"text": "héllo", "n": 1})
        cache.put(key, {"text": "héllo", "n": 2})  # replaces
    assert path.exists()
    with CallCache(path) as cache:
        assert len(cache) == 1 and cache.get(key) == {"text": "héllo", "n": 2} and key in cache
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_openai_rerun_is_served_from_the_cache(api_key, tmp_path):
    cache = tmp_path / "cache" / "teacher.sqlite"
    requests = make_requests(20)
    requests.append(requests[0])  # a duplicate in one batch is sent once
    with FakeOpenAIServer(api_key=api_key) as server:
        first = make_teacher(openai_settings(server), cache_path=cache)
        done = first.complete_many(requests, progress=False)
        first.close()
        assert len(server.snapshot()) == 20 and first.spend.requests_made == 20
        assert first.spend.cache_hits == 1 and done[-1].cached and done[-1].text == done[0].text
        again = make_teacher(openai_settings(server), cache_path=cache)
        redone = again.complete_many(requests, progress=False)
        assert len(server.snapshot()) == 20  # zero new requests
    assert again.spend.requests_made == 0 and again.spend.cache_hits == 21 and again.spend.cost_usd == 0
    assert all(c.cached for c in redone)
    assert [c.text for c in redone] == [c.text for c in done]
    assert [(c.final, c.steps, c.prompt_tokens, c.completion_tokens) for c in redone] == \
        [(c.final, c.steps, c.prompt_tokens, c.completion_tokens) for c in done]


# --- spend caps ----------------------------------------------------------------------------

@pytest.mark.parametrize("cap_key", ["max_total_tokens", "max_cost_usd"])
def test_spend_cap_stops_keeps_the_work_and_a_rerun_resumes(api_key, tmp_path, cap_key):
    cache = tmp_path / "teacher.sqlite"
    requests = make_requests(30)
    with FakeOpenAIServer(api_key=api_key, delay_s=0.01) as server:
        probe = make_teacher(openai_settings(server), cache_path=False)
        one = probe.complete_many(requests[:1], progress=False)[0]
        per_call_tokens = one.prompt_tokens + one.completion_tokens
        cap = 8 * per_call_tokens if cap_key == "max_total_tokens" else 8 * one.cost_usd * 0.999
        assert cap > 0
        settings = openai_settings(server, concurrency=3, **{cap_key: cap})
        before = len(server.paid())
        teacher = make_teacher(settings, cache_path=cache)
        with pytest.raises(SpendCapReached) as info:
            teacher.complete_many(requests, progress=False)
        message = str(info.value)
        made = teacher.spend.requests_made
        assert "\n" not in message and f"teacher.{cap_key}" in message
        assert f"on {made} requests" in message and f"{made} of 30 requests are done, {30 - made} remaining" in message
        assert "rerun" in message and "cache" in message
        # at the cap, plus at most the requests already in flight
        assert 8 <= made <= 8 + 3 - 1
        assert len(server.paid()) - before == made
        teacher.close()
        with CallCache(cache) as stored:
            assert len(stored) == made
        # a rerun with a higher cap pays only for the rest
        paid_before = len(server.paid())
        rerun = make_teacher(dict(settings, **{cap_key: cap * 100}), cache_path=cache)
        completions = rerun.complete_many(requests, progress=False)
        assert rerun.spend.requests_made == 30 - made and rerun.spend.cache_hits == made
        assert len(server.paid()) - paid_before == 30 - made
        counts = server.paid_counts()
        assert counts[(requests[0].prompt, 0)] == 2  # the probe plus one real run
        assert all(counts[(r.prompt, r.sample_index)] == 1 for r in requests[1:])
    assert all(c.parse_ok for c in completions)


def test_unpriced_model_costs_nothing_but_tokens_still_cap(api_key):
    with FakeOpenAIServer(api_key=api_key) as server:
        teacher = make_teacher(openai_settings(server, model="local-llama", max_cost_usd=0.0, concurrency=1,
                                               max_total_tokens=1), cache_path=False)
        with pytest.raises(SpendCapReached, match="teacher.max_total_tokens"):
            teacher.complete_many(make_requests(4), progress=False)
    assert teacher.spend.requests_made == 1 and teacher.spend.cost_usd == 0


# --- the openai backend against faults -----------------------------------------------------

def test_openai_backend_survives_faults_and_pays_each_call_once(api_key, tmp_path):
    n = 40
    requests = make_requests(n)
    # sample 0 says YES and sample 1 says NO: a disagreement the harvest will have to handle
    with FakeOpenAIServer(api_key=api_key, seed=3, rate_429=0.15, rate_5xx=0.15, rate_slow=0.15,
                          rate_malformed=0.15, slow_s=0.8, answer_fn=lambda prompt, seed: seed == 0) as server:
        teacher = make_teacher(openai_settings(server, timeout_s=0.5, max_retries=8),
                               cache_path=tmp_path / "teacher.sqlite")
        completions = teacher.complete_many(requests, progress=False)
        seen = server.snapshot()
    outcomes = server.outcomes()
    assert all(outcomes[fault] > 0 for fault in ("429", "5xx", "slow", "malformed")), outcomes
    # every request completed, in order, with the server's answer
    assert len(completions) == n
    assert all(c.parse_ok and not c.cached and c.error is None for c in completions)
    assert [c.final for c in completions] == [r.sample_index == 0 for r in requests]
    # accounting equals what the server saw as paid, and nothing was paid twice
    paid = [r for r in seen if r["paid"]]
    counts = server.paid_counts()
    assert len(counts) == n and max(counts.values()) == 1
    spend = teacher.spend
    assert spend.requests_made == len(paid) == n
    assert (spend.prompt_tokens, spend.completion_tokens) == server.paid_tokens()
    expected_cost = (spend.prompt_tokens * PRICE["input_per_mtok"] + spend.completion_tokens * PRICE["output_per_mtok"]) / 1e6
    assert spend.cost_usd == pytest.approx(expected_cost)
    assert sum(c.cost_usd for c in completions) == pytest.approx(expected_cost)
    # every attempt beyond the first of each request is a counted retry
    assert spend.retries == len(seen) - n
    assert spend.malformed == outcomes["malformed"] and spend.failed == 0
    with CallCache(tmp_path / "teacher.sqlite") as stored:
        assert len(stored) == n


def test_persistently_malformed_bodies_give_invalid_uncached_completions(api_key, tmp_path):
    requests = make_requests(16)
    with FakeOpenAIServer(api_key=api_key, seed=1, rate_malformed=0.5) as server:
        teacher = make_teacher(openai_settings(server, max_retries=0), cache_path=tmp_path / "c.sqlite")
        completions = teacher.complete_many(requests, progress=False)
        invalid = [c for c in completions if c.error]
        assert 0 < len(invalid) < len(requests)
        assert all(c.text == "" and c.final is None and not c.parse_ok for c in invalid)
        assert teacher.spend.requests_made == len(server.paid()) == len(requests) - len(invalid)
        assert teacher.spend.malformed == len(invalid)
        teacher.close()
        # not cached: the rerun asks again for exactly those
        rerun = make_teacher(openai_settings(server, max_retries=8), cache_path=tmp_path / "c.sqlite")
        again = rerun.complete_many(requests, progress=False)
    assert rerun.spend.cache_hits == len(requests) - len(invalid)
    assert rerun.spend.requests_made == len(invalid)
    assert all(c.parse_ok for c in again) and max(server.paid_counts().values()) == 1


def test_exhausted_retries_fail_after_the_rest_is_cached(api_key, tmp_path):
    requests = make_requests(12)
    with FakeOpenAIServer(api_key=api_key, seed=5, rate_5xx=0.3) as server:
        teacher = make_teacher(openai_settings(server, max_retries=0, concurrency=2),
                               cache_path=tmp_path / "c.sqlite")
        with pytest.raises(TeacherRequestsFailed) as info:
            teacher.complete_many(requests, progress=False)
        paid = len(server.paid())
    message = str(info.value)
    assert "\n" not in message and "HTTP 5" in message and "rerun" in message
    assert teacher.spend.failed > 0 and teacher.spend.requests_made == paid
    teacher.close()
    with CallCache(tmp_path / "c.sqlite") as stored:
        assert len(stored) == paid


def test_a_rejected_key_stops_the_harvest(api_key, tmp_path, monkeypatch):
    with FakeOpenAIServer(api_key="sk-test-the-right-one") as server:
        teacher = make_teacher(openai_settings(server, concurrency=2), cache_path=False)
        with pytest.raises(TeacherRequestsFailed, match="rejected OPENAI_API_KEY .HTTP 401") as info:
            teacher.complete_many(make_requests(30), progress=False)
        assert len(server.snapshot()) <= 2  # no more requests once the key is rejected
    assert api_key not in str(info.value)


def test_missing_key_fails_before_any_request(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    with FakeOpenAIServer(api_key="sk-test-x") as server:
        with pytest.raises(InputError, match=r"^teacher.backend is openai but OPENAI_API_KEY is not set "
                                             r"\(environment or .env\)"):
            make_teacher(openai_settings(server), cache_path=tmp_path / "c.sqlite")
        assert server.snapshot() == []
    assert not (tmp_path / "c.sqlite").exists()


def test_key_from_dotenv_and_the_environment_wins(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("# secrets\nexport OPENAI_API_KEY='sk-test-from-dotenv'\n")
    with FakeOpenAIServer(api_key="sk-test-from-dotenv") as server:
        teacher = make_teacher(openai_settings(server), cache_path=False)
        assert teacher.complete_many(make_requests(2), progress=False)[0].parse_ok
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-wrong")  # the environment is not overridden
        teacher = make_teacher(openai_settings(server), cache_path=False)
        with pytest.raises(TeacherRequestsFailed, match="401"):
            teacher.complete_many(make_requests(2), progress=False)


def test_the_key_is_never_written_anywhere(api_key, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    handler = logging.FileHandler(out / "debug.log")
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        with FakeOpenAIServer(api_key=api_key, seed=2, rate_429=0.2, rate_5xx=0.1, rate_malformed=0.1,
                              rate_slow=0.1, slow_s=0.8) as server:
            teacher = make_teacher(openai_settings(server, timeout_s=0.5, max_retries=8),
                                   cache_path=out / "cache" / "teacher.sqlite")
            completions = teacher.complete_many(make_requests(12), progress=False)
            faults = {k: v for k, v in server.outcomes().items() if k != "ok"}
            assert sum(faults.values()) >= 3, faults  # the error and retry paths ran too
            (out / "completions.json").write_text(json.dumps([c.__dict__ for c in completions]))
            (out / "spend.json").write_text(json.dumps(teacher.spend.as_dict()))
            (out / "teacher.txt").write_text(repr(teacher) + str(teacher.__dict__.keys()))
            teacher.close()
            with FakeOpenAIServer(api_key="sk-test-another") as other:  # errors name no key either
                try:
                    make_teacher(openai_settings(other), cache_path=False).complete_many(make_requests(2),
                                                                                        progress=False)
                except InputError as exc:
                    (out / "error.txt").write_text(str(exc) + repr(exc))
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()
    assert (out / "error.txt").exists() and (out / "cache" / "teacher.sqlite").exists()
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) >= 5
    for path in files:
        assert api_key.encode() not in path.read_bytes(), path


# --- SIGKILL mid-harvest -------------------------------------------------------------------

def _cache_count(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path, timeout=1) as conn:
            return conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_sigkill_mid_harvest_loses_nothing_and_the_rerun_pays_only_the_rest(api_key, tmp_path):
    n = 40
    cache = tmp_path / "killed" / "teacher.sqlite"
    env = dict(os.environ, OPENAI_API_KEY=api_key)
    with FakeOpenAIServer(api_key=api_key, delay_s=0.1) as server:
        child = subprocess.Popen([sys.executable, str(HERE / "harvest_child.py"), server.base_url, str(cache),
                                  str(n), "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 30
        while _cache_count(cache) < 6 and time.time() < deadline and child.poll() is None:
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        _, stderr = child.communicate(timeout=10)
        assert child.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
        time.sleep(0.3)  # let the server finish the replies that were in flight
        paid_at_kill = len(server.paid())
        with CallCache(cache) as stored:  # opens and reads after the kill
            k = len(stored)
            cached_keys = set(stored.keys())
            assert all(stored.get(key)["text"] for key in cached_keys)
        assert 6 <= k < n and k <= paid_at_kill <= k + 2  # at most the 2 in flight were lost

        teacher = make_teacher(openai_settings(server, concurrency=2), cache_path=cache)
        requests = make_requests(n)
        resumed = teacher.complete_many(requests, progress=False)
        teacher.close()
        assert teacher.spend.cache_hits == k and teacher.spend.requests_made == n - k
        assert len(server.paid()) - paid_at_kill == n - k
        keys = [teacher.key(r) for r in requests]
        key_of = {(r.prompt, r.sample_index): key for r, key in zip(requests, keys)}
        new_keys = {key_of[p["key"]] for p in server.paid()[paid_at_kill:]}
        assert not new_keys & cached_keys and len(new_keys) == n - k  # no cached call was paid again

        # an uninterrupted run gives the same completions
        fresh = make_teacher(openai_settings(server), cache_path=tmp_path / "fresh.sqlite")
        uninterrupted = fresh.complete_many(requests, progress=False)
    assert [c.cached for c in resumed] == [key in cached_keys for key in keys]
    assert [(c.text, c.final, c.steps) for c in resumed] == [(c.text, c.final, c.steps) for c in uninterrupted]


# --- hf backend on the tiny random model ---------------------------------------------------

def test_hf_backend_is_batched_deterministic_and_cached(tiny_model_dir, tmp_path):
    settings = dict(teacher_defaults(), backend="hf", model=str(tiny_model_dir), max_tokens=16,
                    temperature=0.8, concurrency=4)
    requests = [Request({"qid": f"q{q}", "question": f"Is thing {q} real?"},
                        teacher_prompt(f"Is thing {q} real?"), s) for q in range(3) for s in range(2)]
    teacher = make_teacher(settings, cache_path=tmp_path / "hf.sqlite")
    completions = teacher.complete_many(requests, progress=False)
    assert len(completions) == 6
    for completion in completions:
        assert isinstance(completion, Completion) and completion.backend == "hf"
        assert completion.prompt_tokens > 50 and 1 <= completion.completion_tokens <= 16
        assert completion.cost_usd == 0 and not completion.cached
        assert completion.parse_ok is False  # a random model writes junk
    assert completions[0].text != completions[1].text  # samples differ
    spend = teacher.spend
    assert spend.requests_made == 6 and spend.cost_usd == 0
    assert spend.completion_tokens == sum(c.completion_tokens for c in completions)
    teacher.close()
    # a rerun is served from the cache without touching the model
    rerun = make_teacher(settings, cache_path=tmp_path / "hf.sqlite")
    again = rerun.complete_many(requests, progress=False)
    assert rerun._model is None and rerun.spend.requests_made == 0
    assert all(c.cached for c in again) and [c.text for c in again] == [c.text for c in completions]
    # deterministic per (qid, sample) whatever the batching: a fresh run, one at a time, reversed
    single = make_teacher(dict(settings, concurrency=1), cache_path=False)
    reversed_run = single.complete_many(requests[::-1], progress=False)[::-1]
    assert [c.text for c in reversed_run] == [c.text for c in completions]


# --- the registry ----------------------------------------------------------------------------

def test_schema_backend_enums_are_the_registry():
    schema = yaml.safe_load((HERE.parent / "workflow" / "schemas" / "config.schema.yaml").read_text())
    sections = schema["properties"]
    assert sections["teacher"]["properties"]["backend"]["enum"] == list(BACKENDS)
    assert sections["judge"]["properties"]["backend"]["enum"] == ["none", *judge_backends()]
    assert "gold" not in judge_backends()


def test_backends_declare_what_they_need():
    assert {name: backend_needs_gpu(name) for name in BACKENDS} == {"gold": False, "openai": False, "hf": True}
    assert {name: backend_needs_api_key(name) for name in BACKENDS} == {"gold": False, "openai": True,
                                                                        "hf": False}
    assert not backend_needs_gpu("none") and not backend_needs_api_key("none")


def test_a_new_backend_is_one_class_and_one_registry_line(monkeypatch, strategyqa_rows):
    class EchoTeacher(Teacher):  # what a new module would hold
        backend = "echo"
        uses_cache = False

        def _complete_uncached(self, items, record):
            for key, request in items:
                text = gold_response(request.record)
                record(key, self._completion(text, 1, len(text.split()), 0.0, 0.0, "stop"))

    monkeypatch.setitem(BACKENDS, "echo", EchoTeacher)  # the registry line
    teacher = make_teacher(dict(teacher_defaults(), backend="echo"))
    completion = teacher.complete_many([Request(strategyqa_rows[0], "p", 0)], progress=False)[0]
    assert completion.parse_ok and completion.backend == "echo"
    assert isinstance(make_judge(dict(teacher_defaults(), backend="echo")), EchoTeacher)
    assert "echo" in judge_backends() and not backend_needs_gpu("echo")


def test_hf_backend_loads_through_the_students_loader(tiny_model_dir, monkeypatch, tmp_path):
    from clarify import models

    calls = []
    original = models.load_model
    monkeypatch.setattr(models, "load_model", lambda *a, **k: calls.append((a, k)) or original(*a, **k))
    teacher = make_teacher(dict(teacher_defaults(), backend="hf", model=str(tiny_model_dir), max_tokens=4),
                           cache_path=False)
    teacher.complete_many([Request({"qid": "q"}, "Is it?", 0)], progress=False)
    assert len(calls) == 1 and calls[0][0][0] == {"path": str(tiny_model_dir)}
    missing = make_teacher(dict(teacher_defaults(), backend="hf", model=str(tmp_path / "no.gguf")), cache_path=False)
    with pytest.raises(InputError, match=r"^teacher.model: GGUF file not found"):
        missing.complete_many([Request({"qid": "q"}, "Is it?", 0)], progress=False)


# --- spend caps over the cache's life --------------------------------------------------------

def test_the_ledger_is_written_in_the_same_transaction_as_the_reply(tmp_path):
    path = tmp_path / "c.sqlite"
    with CallCache(path) as cache:
        cache.put("a", {"text": "x"}, scope="teacher", spend={"requests": 1, "tokens": 10, "cost_usd": 0.5})
        cache.put("b", {"text": "y"}, scope="teacher", spend={"requests": 1, "tokens": 5, "cost_usd": 0.25})
        cache.put("c", {"text": "z"}, scope="judge", spend={"requests": 1, "tokens": 7, "cost_usd": 0.0})
        with pytest.raises(ValueError):  # a failure inside the transaction stores neither
            cache.put("d", {"text": "w"}, scope="teacher", spend={"requests": 1, "tokens": "many"})
    with CallCache(path) as cache:
        assert "d" not in cache and len(cache) == 3
        assert cache.spent("teacher") == {"requests": 2, "tokens": 15, "cost_usd": 0.75}
        assert cache.spent("judge")["tokens"] == 7 and cache.spent("other")["tokens"] == 0


def test_a_token_cap_holds_over_five_reruns(api_key, tmp_path):
    cache = tmp_path / "teacher.sqlite"
    requests = make_requests(60)
    concurrency = 3
    with FakeOpenAIServer(api_key=api_key, delay_s=0.01) as server:
        per_call = max(u["usage"]["prompt_tokens"] + u["usage"]["completion_tokens"]
                       for u in [_probe(server, requests[0])])
        server.records.clear()
        cap = 6 * per_call
        messages = []
        for run in range(5):
            teacher = make_teacher(openai_settings(server, concurrency=concurrency, max_total_tokens=cap),
                                   cache_path=cache)
            with pytest.raises(SpendCapReached) as info:
                teacher.complete_many(requests, progress=False)
            messages.append(str(info.value))
            teacher.close()
        spent = sum(server.paid_tokens())
    # every run and retry counts: the total stays within the cap plus the requests in flight
    assert cap <= spent <= cap + concurrency * per_call * 1.2
    with CallCache(cache) as stored:
        assert stored.spent("teacher")["tokens"] == spent
        assert stored.spent("teacher")["requests"] == len(stored) == len(server.paid())
        done = len(stored)
    last = messages[-1]
    assert "\n" not in last and f"has spent {spent} of max_total_tokens {cap} tokens" in last
    assert f"raise teacher.max_total_tokens above {spent} in the config and rerun" in last
    assert f"{done} of 60 requests are done, {60 - done} remaining" in last


def _probe(server, request) -> dict:
    make_teacher(openai_settings(server), cache_path=False).complete_many([request], progress=False)
    return server.paid()[-1]


def test_failure_counts_equal_what_the_cache_holds(api_key, tmp_path):
    requests = make_requests(24)
    with FakeOpenAIServer(api_key=api_key, seed=7, rate_5xx=0.2, rate_malformed=0.3) as server:
        teacher = make_teacher(openai_settings(server, max_retries=0, concurrency=2),
                               cache_path=tmp_path / "c.sqlite")
        with pytest.raises(TeacherRequestsFailed) as info:
            teacher.complete_many(requests, progress=False)
        teacher.close()
    assert teacher.spend.malformed > 0  # replies that were recorded but not cached
    done, total = map(int, re.search(r"(\d+) of (\d+) requests are done", str(info.value)).groups())
    with CallCache(tmp_path / "c.sqlite") as stored:
        assert (done, total) == (len(stored), 24)


# --- the key's transport ---------------------------------------------------------------------

@pytest.mark.parametrize("url, allowed", [
    ("http://127.0.0.1:9/v1", True), ("http://127.8.0.3:9/v1", True), ("http://localhost:8000/v1", True),
    ("http://[::1]:8000/v1", True), ("https://api.example.com/v1", True),
    ("http://10.0.0.5:8000/v1", False), ("http://api.example.com/v1", False), ("HTTP://gpu-box:80/v1", False),
])
def test_the_key_never_travels_over_http_to_another_machine(api_key, monkeypatch, url, allowed):
    settings = dict(teacher_defaults(), backend="openai", base_url=url)
    if allowed:
        assert make_teacher(settings, cache_path=False).base_url == url
        return
    for role, make in (("teacher", make_teacher), ("judge", make_judge)):
        with pytest.raises(InputError, match=rf"^{role}.base_url: .*plain http to another machine.*"
                                             rf"{role}.allow_insecure_http: true") as info:
            make(settings, cache_path=False)
        assert api_key not in str(info.value)
        assert make(dict(settings, allow_insecure_http=True), cache_path=False).base_url == url
    monkeypatch.setenv("OPENAI_BASE_URL", url)  # the environment's endpoint is checked too
    with pytest.raises(InputError, match="plain http"):
        make_teacher(dict(settings, base_url=None), cache_path=False)


# --- a slow local server ---------------------------------------------------------------------

def test_a_slow_but_alive_server_succeeds_under_the_default_timeout(api_key):
    defaults = teacher_defaults()
    assert defaults["timeout_s"] >= 600  # a CPU llama.cpp server took 142 s for one request
    with FakeOpenAIServer(api_key=api_key, delay_s=2.5) as server:
        settings = dict(defaults, backend="openai", base_url=server.base_url, concurrency=2, max_retries=0)
        teacher = make_teacher(settings, cache_path=False)
        assert teacher.timeout_s == defaults["timeout_s"]
        completions = teacher.complete_many(make_requests(2), progress=False)
        assert len(server.snapshot()) == 2  # nothing timed out and was sent again
    assert all(c.parse_ok and c.latency_s >= 2.5 for c in completions)
    assert teacher.spend.retries == 0 and teacher.spend.requests_made == 2
