"""Model providers as a careful user meets them: real aider against the loopback OpenAI-compatible server
(tests/fake_openai.py) answering with errors, hangs, broken replies and prompts too long for the model."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import pytest
from conftest import DONE, ROOT, _stages, events, only_workspace, run_cli
from fake_openai import Canned
from test_live_agent import MODEL, R1, R2, live_idea


def orchestrate_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("orchestrate:")]


def metadata(tmp_path, monkeypatch, **info) -> None:
    path = tmp_path / "models.json"
    path.write_text(json.dumps({MODEL: {"litellm_provider": "openai", "mode": "chat", **info}}))
    monkeypatch.setenv("ORCHESTRATE_MODEL_METADATA", str(path))


def failures(ws) -> list[dict]:
    return events(ws, "exchange_failed")


def shown(ws, capsys) -> str:
    capsys.readouterr()
    assert run_cli("show", ws, "--width", "400") == 0
    return " ".join(capsys.readouterr().out.split())


# -- 1. a prompt over the context limit -------------------------------------------------------------------

def test_a_prompt_over_the_context_limit_is_a_journaled_failure_not_a_fake_exchange(tmp_path, server, monkeypatch, capsys):
    metadata(tmp_path, monkeypatch, max_input_tokens=300)  # the tiny template's first prompt is ~2,400 tokens
    server.replies = [Canned(R1), Canned(DONE)]
    rc = run_cli("run", live_idea(tmp_path), "--model", MODEL, "--sandbox", tmp_path / "sb")
    err = capsys.readouterr().err
    assert rc == 5 and server.requests == []  # aider's own check refused it: nothing was sent
    lines = orchestrate_lines(err)
    assert len(lines) == 1 and "context" in lines[0] and "nothing was sent" in lines[0] and "Traceback" not in err
    ws = only_workspace(tmp_path / "sb")
    assert events(ws, "exchange") == [] and events(ws, "edit_applied") == []
    (f,) = failures(ws)
    assert f["kind"] == "context_overflow" and f["attempts"] == 0 and f["run"] == 1 and "300 token limit" in f["message"]
    text = shown(ws, capsys)
    assert "model call failed (context overflow" in text
    assert "stopped in stage experiments: model call failed (context overflow" in text  # the state line says why


def test_a_context_overflow_the_provider_reports_stops_after_one_request(tmp_path, server, capsys):
    server.replies = [Canned(status=400, error="This model's maximum context length is 1024 tokens. However, your "
                                               "messages resulted in 2400 tokens.", code="context_length_exceeded")]
    rc = run_cli("run", live_idea(tmp_path), "--model", MODEL, "--sandbox", tmp_path / "sb")
    err = capsys.readouterr().err
    assert rc == 5 and len(server.requests) == 1 and len(orchestrate_lines(err)) == 1 and "Traceback" not in err
    (f,) = failures(only_workspace(tmp_path / "sb"))
    assert f["kind"] == "context_overflow" and f["status"] == 400 and "maximum context length" in f["message"]


# -- 2. Ctrl-C or SIGTERM while waiting on the model -----------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_while_waiting_on_the_model_exits_130_journaled_and_resumable(tmp_path, server, capsys, sig):
    server.replies = [Canned(hang=True)]
    idea = live_idea(tmp_path, max_runs=2)
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli",
                             *_stages(("run", idea, "--model", MODEL, "--sandbox", tmp_path / "sb"))],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.received.wait(120), "the orchestrator never called the model"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err and "orchestrate resume" in err and "Traceback" not in err and "^C" not in err
    ws = only_workspace(tmp_path / "sb")
    (f,) = failures(ws)
    assert f["kind"] == "interrupted" and f["run"] == 1 and events(ws, "exchange") == []
    # resumable: the interrupted exchange is asked again, nothing else twice
    server.replies = [Canned(R1), Canned(DONE)]
    assert run_cli("resume", ws) == 0
    assert [r["status"] for r in events(ws, "run_recorded")] == ["ok"] and len(server.requests) == 3


# -- 3. one classified retry loop, a per-request timeout ------------------------------------------------

def test_a_forbidden_key_stops_at_once_with_exit_3(tmp_path, server, capsys):
    server.default = Canned(status=403, error="Project does not have access to model test-model")
    rc = run_cli("run", live_idea(tmp_path), "--model", MODEL, "--sandbox", tmp_path / "sb")
    err = capsys.readouterr().err
    assert rc == 3 and len(server.requests) == 1
    lines = orchestrate_lines(err)
    assert len(lines) == 1 and "rejected the credentials" in lines[0] and "403" in lines[0] and "Traceback" not in err
    (f,) = failures(only_workspace(tmp_path / "sb"))
    assert f["kind"] == "auth" and f["status"] == 403 and f["attempts"] == 1


def test_a_bad_request_is_one_clear_line_without_aiders_traceback(tmp_path, server, capsys):
    server.default = Canned(status=422, error="messages.0.content: field required")
    rc = run_cli("run", live_idea(tmp_path), "--model", MODEL, "--sandbox", tmp_path / "sb")
    err = capsys.readouterr().err
    assert rc == 1 and len(server.requests) == 1
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("stage ")]
    assert len(lines) == 1 and lines[0].startswith("orchestrate:") and "HTTP 422" in lines[0]
    assert "messages.0.content: field required" in lines[0] and "Traceback" not in err and "File \"" not in err
    (f,) = failures(only_workspace(tmp_path / "sb"))
    assert f["kind"] == "bad_request" and f["status"] == 422


def test_a_rate_limit_waits_as_long_as_retry_after_says(tmp_path, server):
    # our own backoff is 0.01 s in tests (ORCHESTRATE_RETRY_BASE_S): only Retry-After makes the second wait
    server.replies = [Canned(status=429, retry_after="2"), Canned(R1), Canned(DONE)]
    assert run_cli("run", live_idea(tmp_path, max_runs=2), "--model", MODEL, "--sandbox", tmp_path / "sb") == 0
    assert len(server.requests) == 3 and server.arrivals[1] - server.arrivals[0] >= 1.9
    assert events(only_workspace(tmp_path / "sb"), "exchange")[0]["retries"] == 1


def test_a_hung_server_holds_each_try_only_for_request_timeout_s(tmp_path, server, capsys):
    server.default = Canned(hang=True)
    idea = live_idea(tmp_path, limits={"request_timeout_s": 1})
    rc = run_cli("run", idea, "--model", MODEL, "--sandbox", tmp_path / "sb")
    err = capsys.readouterr().err
    assert rc == 1 and len(server.requests) == 6  # RetryPolicy's 6 tries, each ended by the 1 s timeout
    gaps = [b - a for a, b in zip(server.arrivals, server.arrivals[1:])]
    assert all(0.9 <= g < 10 for g in gaps), gaps
    lines = orchestrate_lines(err)
    assert len(lines) == 1 and "gave up after 6 tries: timeout" in lines[0]
    (f,) = failures(only_workspace(tmp_path / "sb"))
    assert f["kind"] == "timeout" and f["attempts"] == 6 and f["latency_s"] >= 5


def test_request_timeout_is_validated(tmp_path, capsys):
    rc = run_cli("check", live_idea(tmp_path, limits={"request_timeout_s": 0}))
    err = capsys.readouterr().err
    assert rc == 2 and "request_timeout_s" in err and "Traceback" not in err


# -- 4. broken replies: the same with and without streaming; every failure journaled -------------------

@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("shape", ["empty", "null", "no_choices", "invalid_json"])
def test_a_broken_reply_is_retried_then_the_next_one_used(tmp_path, server, monkeypatch, shape, stream):
    if stream:
        monkeypatch.setenv("ORCHESTRATE_STREAM", "1")
    server.replies = [Canned(shape=shape), Canned(R1), Canned(DONE)]
    assert run_cli("run", live_idea(tmp_path, max_runs=2), "--model", MODEL, "--sandbox", tmp_path / "sb") == 0
    ws = only_workspace(tmp_path / "sb")
    ex = events(ws, "exchange")
    assert len(server.requests) == 3 and len(ex) == 2 and ex[0]["retries"] == 1 and ex[0]["response"].strip() == R1.strip()
    assert bool(server.requests[0].get("stream")) is stream
    assert [r["status"] for r in events(ws, "run_recorded")] == ["ok"]


@pytest.mark.parametrize("stream", [False, True])
def test_replies_that_stay_empty_end_in_a_journaled_failure_that_show_and_report_explain(tmp_path, server, monkeypatch,
                                                                                         capsys, stream):
    if stream:
        monkeypatch.setenv("ORCHESTRATE_STREAM", "1")
    server.default = Canned(shape="empty")
    rc = run_cli("run", live_idea(tmp_path), "--model", MODEL, "--sandbox", tmp_path / "sb")
    err = capsys.readouterr().err
    assert rc == 1 and len(server.requests) == 6
    lines = orchestrate_lines(err)
    assert len(lines) == 1 and "gave up after 6 tries: empty reply" in lines[0]
    ws = only_workspace(tmp_path / "sb")
    assert events(ws, "exchange") == []
    (f,) = failures(ws)
    assert f["kind"] == "empty_reply" and f["attempts"] == 6 and f["stage"] == "experiments"
    text = shown(ws, capsys)
    assert "model call failed (empty reply; experiments run 1 attempt 1, edit; after 6 tries" in text
    assert run_cli("report", ws, "-o", tmp_path / "r.html") == 0
    assert "model call failed (empty reply" in (tmp_path / "r.html").read_text()


# -- 5. the budget --------------------------------------------------------------------------------------

def test_a_budget_with_a_model_of_unknown_price_is_refused_before_anything_is_made(tmp_path, server, capsys):
    rc = run_cli("run", live_idea(tmp_path), "--model", MODEL, "--sandbox", tmp_path / "sb", "--budget-usd", "1")
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and "price of openai/test-model is unknown" in lines[0] and "price_per_mtok_in" in lines[0]
    assert server.requests == [] and not any((tmp_path / "sb").glob("*")) if (tmp_path / "sb").exists() else True


def test_a_price_in_the_settings_makes_the_budget_count(tmp_path, server, capsys):
    # $3 / $15 per million tokens; one ~2,400-token exchange costs about $0.0077
    idea = live_idea(tmp_path, limits={"price_per_mtok_in": 3, "price_per_mtok_out": 15})
    server.replies = [Canned(R1), Canned(R2), Canned(DONE)]
    rc = run_cli("run", idea, "--model", MODEL, "--sandbox", tmp_path / "sb", "--budget-usd", "0.02")
    err = capsys.readouterr().err
    assert rc == 4
    ws = only_workspace(tmp_path / "sb")
    costs = [e["cost_usd"] for e in events(ws, "exchange")]
    assert costs and all(c > 0 for c in costs) and sum(costs) <= 0.02
    # the estimate uses the prompt's real token count and the replies seen: not a tenfold overshoot
    m = re.search(r"budget: \$(\d+\.\d{4}) spent of \$0\.0200; the next call \(about \$(\d+\.\d{4})\)", err)
    assert m, err
    estimate = float(m.group(2))
    assert run_cli("resume", ws, "--budget-usd", "5") == 0
    real = events(ws, "exchange")[len(costs)]["cost_usd"]  # the call that was estimated, made now
    assert real / 3 <= estimate <= real * 3, (estimate, real)
    assert len(server.requests) == 3


def test_the_budget_message_has_its_precision_and_appears_once(tmp_path, server, capsys):
    idea = live_idea(tmp_path, limits={"price_per_mtok_in": 3, "price_per_mtok_out": 15})
    rc = run_cli("run", idea, "--model", MODEL, "--sandbox", tmp_path / "sb", "--budget-usd", "0.005")
    out, err = capsys.readouterr()
    assert rc == 4 and server.requests == []
    assert (out + err).count("budget:") == 1 and "spent of $0.0050;" in err
    ws = only_workspace(tmp_path / "sb")
    assert failures(ws) == [] and any("budget:" in m["text"] for m in events(ws, "message"))


def test_a_price_only_for_output_is_still_counted(tmp_path, server):
    # aider prices a reply only when the input price is not 0; the orchestrator counts it from the tokens then
    idea = live_idea(tmp_path, max_runs=2, limits={"price_per_mtok_in": 0, "price_per_mtok_out": 1000})
    server.replies = [Canned(R1), Canned(DONE)]
    assert run_cli("run", idea, "--model", MODEL, "--sandbox", tmp_path / "sb", "--budget-usd", "5") == 0
    ex = events(only_workspace(tmp_path / "sb"), "exchange")
    assert all(e["cost_usd"] == pytest.approx(e["completion_tokens"] * 1e-3) and e["cost_usd"] > 0 for e in ex)
