"""`orchestrate ideas`: the scripted sae run offline, the live path against the loopback model and a
loopback literature API (429 storms included), the ideas file `orchestrate run --all` reads, ranking."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import ROOT, TINY, events, run_cli
from fake_literature import FakeLiterature, work
from fake_openai import Canned

from orchestrator.citations import add_to_bib, idea_references
from orchestrator.fleet import expand_ideas
from orchestrator.ideation.ranking import bradley_terry, pairs
from orchestrator.ideation.run import IdeasOptions, run_ideas
from orchestrator.spec import load_idea

SAE = ROOT / "templates" / "sae"
AI_SCIENTIST = ("Name", "Title", "Experiment", "Interestingness", "Feasibility", "Novelty")


def _only(sandbox: Path) -> Path:
    (found,) = [p for p in sandbox.iterdir() if p.is_dir()]
    return found


def _idea(name: str, title: str, experiment: str = "Change the loss and compare with run_0.", done: bool = False) -> str:
    body = {"Name": name, "Title": title, "Experiment": experiment, "Interestingness": 6, "Feasibility": 7, "Novelty": 5}
    return f"THOUGHT: fine.{' I am done' if done else ''}\n\n```json\n{json.dumps(body)}\n```\n"


def _json(obj) -> str:
    return f"THOUGHT: judged.\n\n```json\n{json.dumps(obj)}\n```\n"


@pytest.fixture
def literature(monkeypatch):
    srv = FakeLiterature()
    monkeypatch.setenv("ORCHESTRATE_LITERATURE", "openalex")
    monkeypatch.setenv("ORCHESTRATE_LITERATURE_URL", srv.base_url)
    yield srv
    srv.close()


def test_sae_offline_scripted_run_writes_an_ideas_file_run_accepts(tmp_path, capsys):
    out = tmp_path / "ideas.json"
    assert run_cli("ideas", str(SAE), "-n", "3", "-o", str(out), "--sandbox", str(tmp_path / "sb")) == 0
    ideas = json.loads(out.read_text())
    assert [e["ranking"]["rank"] for e in ideas] == [1, 2, 3]
    for e in ideas:
        assert all(k in e for k in AI_SCIENTIST) and isinstance(e["novel"], bool) and e["template"] == "sae"
        assert e["novelty"]["checked"] and e["references"] and e["references"][0]["bibtex"].startswith("@article{")
    assert {e["Name"]: e["novel"] for e in ideas} == {"parent_child_decoder_orthogonality": True,
                                                       "annealed_topk_absorption": True, "matryoshka_absorption": False}
    not_novel = next(e for e in ideas if not e["novel"])
    assert "Learning Multi-Level Features with Matryoshka Sparse Autoencoders" in not_novel["novelty"]["relied_on"]
    # the strengths follow the games: 2 wins, 1 win, 0 wins
    assert [e["ranking"]["wins"] for e in ideas] == [2.0, 1.0, 0.0]
    assert ideas[0]["ranking"]["strength"] > ideas[1]["ranking"]["strength"] > ideas[2]["ranking"]["strength"]
    # orchestrate run IDEAS --all reads it: every entry, its template, AI Scientist's fields kept as extra
    names = [n for _, n in expand_ideas([out], all_=True, idea_name=None)]
    assert names == [e["Name"] for e in ideas]
    loaded = load_idea(out, idea_name=names[0])
    assert loaded.idea.template == "sae" and loaded.idea.extra["novel"] is True
    assert run_cli("check", str(out), "--idea", names[1]) == 0
    # every exchange journaled, scripted, in the run's own folder; the duplicate draft was sent back
    folder = _only(tmp_path / "sb")
    assert folder.name.endswith("_ideas_sae")
    ex = events(folder, "exchange")
    assert len(ex) == 16 and all(e["scripted"] and e["stage"] == "ideas" for e in ex)
    assert any("repeats the existing idea 'matryoshka_absorption'" in e["prompt"] for e in ex if e["step"] == "reflect")
    assert "experiment.py" in ex[0]["messages"][1]["content"] and "hsae" in ex[0]["messages"][1]["content"]  # code, seeds
    assert "Learning Multi-Level Features" in next(e for e in ex if e["step"] == "novelty" and e["attempt"] == 2)["prompt"]
    text = capsys.readouterr().out
    assert "offline" in text and "#1 parent_child_decoder_orthogonality" in text
    assert run_cli("show", str(folder)) == 0  # the folder's journal is one the readers take
    assert "16" in capsys.readouterr().out
    assert run_cli("resume", str(folder)) == 2  # not a workspace to resume: one line
    assert "read-only" in capsys.readouterr().err


def test_replay_of_a_recorded_ideas_run_gives_the_same_ideas(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert run_cli("ideas", "sae", "-o", str(a), "--sandbox", str(tmp_path / "sa")) == 0
    recorded = _only(tmp_path / "sa") / ".orchestrate" / "ideas.transcript.jsonl"
    shutil.rmtree(tmp_path / "orch_home", ignore_errors=True)  # no cache: the run folder's recorded literature answers
    assert run_cli("ideas", "sae", "-o", str(b), "--transcript", str(recorded), "--sandbox", str(tmp_path / "sb")) == 0

    def strip(p):
        return [{k: v for k, v in e.items() if k != "generated_by"} for e in json.loads(p.read_text())]

    assert strip(a) == strip(b)


def test_top_k_keeps_the_best(tmp_path):
    out = tmp_path / "ideas.json"
    assert run_cli("ideas", "sae", "--top", "1", "-o", str(out), "--sandbox", str(tmp_path / "sb")) == 0
    kept = json.loads(out.read_text())
    assert [e["Name"] for e in kept] == ["parent_child_decoder_orthogonality"]
    assert len(json.loads((_only(tmp_path / "sb") / "ideas.json").read_text())) == 3  # all of them stay in the folder


@pytest.mark.parametrize("args, problem", [
    (["no_such_template"], "unknown template"),
    ([str(TINY)], "no model configured and no transcript"),
    ([str(SAE), "-n", "0"], "-n: must be 1 or more"),
    ([str(SAE), "--transcript", str(ROOT / "ideas" / "hsae.transcript.jsonl")], "transcript is for template"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, args, problem):
    if "transcript is for" in problem:  # a transcript for another template
        bad = tmp_path / "other.transcript.jsonl"
        bad.write_text('{"transcript": 1, "template": "tiny", "note": "scripted"}\n')
        args = [args[0], "--transcript", str(bad)]
    assert run_cli("ideas", *args, "-o", str(tmp_path / "x.json"), "--sandbox", str(tmp_path / "sb")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and problem in err[0]
    assert not (tmp_path / "sb").exists() and not (tmp_path / "x.json").exists()


def _live_replies() -> list[Canned]:
    return [Canned(content=c) for c in (
        _idea("lr_warmup", "Learning-rate warmup for tiny models"),
        _idea("lr_warmup", "Learning-rate warmup for tiny models", "Warm up over 100 steps; compare with run_0.", done=True),
        _idea("lr_warmup", "Learning rate warmup for tiny models!"),  # a near-duplicate: sent back
        _idea("noise_injection", "Input noise injection as a regulariser"),
        _json({"decision": None, "query": "warmup schedules small networks", "relied_on": []}),
        _json({"decision": "not novel", "query": None, "relied_on": [4], "reason": "warmup is standard"}),
        _json({"decision": "novel", "relied_on": [1], "reason": "not in the papers found"}),
        _json({"winner": "B", "reason": "more novel"}),
    )]


def _models_json(tmp_path, monkeypatch):
    meta = tmp_path / "models.json"
    meta.write_text(json.dumps({"openai/test-model": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}}))
    monkeypatch.setenv("ORCHESTRATE_MODEL_METADATA", str(meta))


def test_live_path_against_loopback_model_and_literature(tmp_path, server, literature, monkeypatch):
    _models_json(tmp_path, monkeypatch)
    literature.answers["warmup schedules small networks"] = [
        work("Accurate, Large Minibatch SGD", 2017, "Linear scaling of the learning rate with a gradual warmup."),
        work("Learning-rate warmup for tiny models: a study 1", 2021, "We study warmup in setting 1.")]
    server.replies = _live_replies()
    out = tmp_path / "ideas.json"
    rc = run_cli("ideas", str(TINY), "-n", "2", "--reflections", "1", "--novelty-rounds", "2", "--model", "openai/test-model",
                 "-o", str(out), "--sandbox", str(tmp_path / "sb"))
    assert rc == 0
    ideas = {e["Name"]: e for e in json.loads(out.read_text())}
    assert set(ideas) == {"lr_warmup", "noise_injection"}
    warm = ideas["lr_warmup"]
    assert warm["novel"] is False and warm["novelty"]["queries"] == ["Learning-rate warmup for tiny models",
                                                                     "warmup schedules small networks"]
    assert warm["novelty"]["relied_on"] == ["Accurate, Large Minibatch SGD"] and warm["references"][0]["year"] == 2017
    assert ideas["noise_injection"]["ranking"]["rank"] == 1 and ideas["noise_injection"]["novel"] is True
    assert warm["template"] == str(TINY.resolve())
    # the abstracts (OpenAlex's inverted index) reached the model; the duplicate was named to it
    sent = [json.dumps(r["messages"]) for r in server.requests]
    assert any("Linear scaling of the learning rate with a gradual warmup." in s for s in sent)
    assert "repeats the existing idea 'lr_warmup'" in sent[3]
    assert literature.requests == ["Learning-rate warmup for tiny models", "warmup schedules small networks",
                                   "Input noise injection as a regulariser"]
    ex = events(_only(tmp_path / "sb"), "exchange")
    assert len(ex) == 8 and not any(e["scripted"] for e in ex)
    assert all(e["prompt_tokens"] > 0 and e["cost_usd"] > 0 for e in ex)
    # a second run asks the service nothing: every query and answer is in the cache
    server.replies = _live_replies()
    n = len(literature.requests)
    assert run_cli("ideas", str(TINY), "-n", "2", "--reflections", "1", "--novelty-rounds", "2", "--model",
                   "openai/test-model", "-o", str(tmp_path / "again.json"), "--sandbox", str(tmp_path / "sb2")) == 0
    assert len(literature.requests) == n
    assert len(list((tmp_path / "orch_home" / "literature" / "openalex").glob("*.json"))) == 3


def test_budget_stops_before_the_call_and_keeps_what_was_made(tmp_path, server, literature, monkeypatch, capsys):
    _models_json(tmp_path, monkeypatch)
    server.replies = _live_replies()
    out = tmp_path / "ideas.json"
    # enough for the first idea's two exchanges (about 600 prompt tokens each at $1/M), not for a third
    rc = run_cli("ideas", str(TINY), "-n", "2", "--reflections", "1", "--model", "openai/test-model", "--budget-usd", "0.0016",
                 "-o", str(out), "--sandbox", str(tmp_path / "sb"))
    assert rc == 4
    assert "budget" in capsys.readouterr().err
    made = json.loads(out.read_text())
    assert 1 <= len(made) < 2 and made[0]["novelty"]["decision"] == "not checked"
    ex = events(_only(tmp_path / "sb"), "exchange")
    assert sum(e["cost_usd"] for e in ex) <= 0.0016 and len(server.requests) == len(ex)


def test_budget_needs_a_price(tmp_path, server, capsys):
    assert run_cli("ideas", str(TINY), "--model", "openai/test-model", "--budget-usd", "1", "-o", str(tmp_path / "x.json"),
                   "--sandbox", str(tmp_path / "sb")) == 2
    assert "price" in capsys.readouterr().err and not server.requests


def test_offline_says_novelty_not_checked(tmp_path, server, capsys):
    server.replies = _live_replies()[:4] + [Canned(content=_json({"winner": "A"}))]
    out = tmp_path / "ideas.json"
    assert run_cli("ideas", str(TINY), "-n", "2", "--reflections", "1", "--offline", "--model", "openai/test-model",
                   "-o", str(out), "--sandbox", str(tmp_path / "sb")) == 0
    ideas = json.loads(out.read_text())
    assert all("novel" not in e and e["novelty"]["decision"] == "not checked" for e in ideas)
    assert all("novelty not checked" in e["novelty"]["reason"] for e in ideas)
    assert len(server.requests) == 5  # no novelty exchange without papers
    assert "not checked" in capsys.readouterr().out


def _storm_run(tmp_path, server, storm: int, retry_after: str, max_wait_s: float, literature):
    literature.storm, literature.retry_after = storm, retry_after
    server.replies = _live_replies()[:4] + [
        Canned(content=_json({"decision": "novel", "relied_on": [1]})),
        Canned(content=_json({"decision": "novel", "relied_on": [1]})), Canned(content=_json({"winner": "A"}))]
    out = tmp_path / "ideas.json"
    run_ideas(IdeasOptions(template=str(TINY), n=2, reflections=1, model="openai/test-model", output=out,
                           sandbox=tmp_path / "sb", max_wait_s=max_wait_s), log=lambda s: None)
    return json.loads(out.read_text())


def test_a_429_burst_is_waited_out(tmp_path, server, literature):
    ideas = _storm_run(tmp_path, server, storm=3, retry_after="0.05", max_wait_s=5, literature=literature)
    assert all(e["novelty"]["checked"] for e in ideas)
    assert len(literature.requests) == 3 + 2  # three refusals, then one answer per idea
    gaps = [b - a for a, b in zip(literature.arrivals, literature.arrivals[1:4])]
    assert all(g >= 0.04 for g in gaps)  # Retry-After was honoured


def test_a_429_storm_ends_in_not_checked_with_bounded_requests_and_delay(tmp_path, server, literature):
    ideas = _storm_run(tmp_path, server, storm=-1, retry_after="0.3", max_wait_s=0.7, literature=literature)
    assert all(not e["novelty"]["checked"] and "unavailable" in e["novelty"]["reason"] for e in ideas)
    assert len(literature.requests) == 3  # two waits of 0.3 s fit in 0.7 s; then the service is left alone
    assert literature.arrivals[-1] - literature.arrivals[0] < 0.7 + 0.5
    folder = _only(tmp_path / "sb")
    (done,) = events(folder, "stage_finished")
    assert done["stage"] == "ideas" and "novelty: 0 of 2 checked; 3 request(s), 0.6 s backing off" in done["summary"]


def test_bradley_terry_solves_its_likelihood_equations():
    games = [(0, 1, 1.0), (1, 2, 1.0), (0, 2, 1.0), (2, 0, 1.0), (1, 0, 0.5)]
    p = bradley_terry(3, games)
    assert p[0] > p[1] > p[2] or p[0] > p[2]
    wins = [0.5] * 3
    for i, j, s in games:
        wins[i] += s
        wins[j] += 1 - s
    for i in range(3):  # the MLE's score equations (with the prior's virtual game against strength 1)
        expected = p[i] / (p[i] + 1) + sum(p[i] / (p[i] + p[j if a == i else a]) for a, j, _ in games if i in (a, j))
        assert abs(expected - wins[i]) < 1e-6
    assert bradley_terry(2, [(0, 1, 0.5)]) == pytest.approx([1.0, 1.0])
    big = pairs(20)
    assert len({i for g in big for i in g}) == 20 and len(big) < 20 * 19 // 2


def test_references_are_offered_to_the_bibliography(tmp_path):
    out = tmp_path / "ideas.json"
    assert run_cli("ideas", "sae", "-o", str(out), "--sandbox", str(tmp_path / "sb")) == 0
    idea = load_idea(out, idea_name="matryoshka_absorption").idea
    bib = tmp_path / "references.bib"
    bib.write_text("@article{existing,\n  title = {Scaling and evaluating sparse autoencoders},\n}\n")
    keys = add_to_bib(bib, idea_references(idea.extra))
    text = bib.read_text()
    assert "bussmann2025learning" in keys and "Learning Multi-Level Features" in text
    assert text.count("Scaling and evaluating sparse autoencoders") == 1  # the bibliography's own entry kept, not doubled


def test_provider_errors_take_the_agents_retry_loop_and_are_journaled(tmp_path, server, capsys):
    server.replies = [Canned(status=429, retry_after="0.05"), Canned(status=500), *_live_replies()[:1],
                      Canned(status=401, error="bad key")]
    rc = run_cli("ideas", str(TINY), "-n", "1", "--reflections", "1", "--offline", "--model", "openai/test-model",
                 "-o", str(tmp_path / "x.json"), "--sandbox", str(tmp_path / "sb"))
    assert rc == 3 and "rejected the credentials" in capsys.readouterr().err
    folder = _only(tmp_path / "sb")
    (ok,) = events(folder, "exchange")
    assert ok["retries"] == 2 and ok["step"] == "generate"
    (failed,) = events(folder, "exchange_failed")
    assert failed["kind"] == "auth" and failed["step"] == "reflect" and failed["status"] == 401


def test_an_unreachable_service_makes_the_run_offline_at_once(tmp_path, server, monkeypatch):
    import socket

    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("ORCHESTRATE_LITERATURE", "openalex")
    monkeypatch.setenv("ORCHESTRATE_LITERATURE_URL", f"http://127.0.0.1:{port}")
    server.replies = _live_replies()[:4] + [Canned(content=_json({"winner": "A"}))]
    out = tmp_path / "ideas.json"
    assert run_cli("ideas", str(TINY), "-n", "2", "--reflections", "1", "--model", "openai/test-model",
                   "-o", str(out), "--sandbox", str(tmp_path / "sb")) == 0
    ideas = json.loads(out.read_text())
    assert all("no network" in e["novelty"]["reason"] and "novel" not in e for e in ideas)


def test_semantic_scholar_with_a_key(tmp_path, server, literature, monkeypatch):
    monkeypatch.setenv("ORCHESTRATE_LITERATURE", "semanticscholar")
    monkeypatch.setenv("S2_API_KEY", "s2-test-key")
    literature.answers["Input noise injection as a regulariser"] = [
        work("Training with Noise is Equivalent to Tikhonov Regularization", 1995, "Adding noise to the inputs.", "10.1/x")]
    server.replies = _live_replies()[:4] + [
        Canned(content=_json({"decision": "not novel", "relied_on": [1]})),
        Canned(content=_json({"decision": "not novel", "relied_on": [1], "reason": "Bishop did it"})),
        Canned(content=_json({"winner": "A"}))]
    out = tmp_path / "ideas.json"
    assert run_cli("ideas", str(TINY), "-n", "2", "--reflections", "1", "--model", "openai/test-model",
                   "-o", str(out), "--sandbox", str(tmp_path / "sb")) == 0
    noise = next(e for e in json.loads(out.read_text()) if e["Name"] == "noise_injection")
    assert noise["novelty"]["backend"] == "semanticscholar" and noise["novel"] is False
    ref = noise["references"][0]
    title = "Training with Noise is Equivalent to Tikhonov Regularization"
    assert (ref["title"], ref["year"], ref["doi"]) == (title, 1995, "10.1/x")
    assert any("Adding noise to the inputs." in json.dumps(r["messages"]) for r in server.requests)
    assert literature.api_keys == ["s2-test-key", "s2-test-key"]
