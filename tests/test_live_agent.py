"""The live aider backend against a loopback OpenAI-compatible server (tests/fake_openai.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from conftest import DONE, ROOT, blk, events, exp, make_idea, only_workspace, run_cli
from fake_openai import Canned

MODEL = "openai/test-model"
R1 = "Plan: raise the rate, then more steps.\n\n" + blk("LR = 0.05", "LR = 0.1")
R2 = blk("STEPS = 20", "STEPS = 40")


def live_idea(tmp_path, max_runs=3, limits=None):
    path = make_idea(tmp_path, [], max_runs=max_runs, limits=limits)
    data = json.loads(path.read_text())
    data.pop("transcript")
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("stream", [False, True])
def test_live_multi_run_idea_completes_and_is_recorded(tmp_path, server, monkeypatch, stream):
    if stream:
        monkeypatch.setenv("ORCHESTRATE_STREAM", "1")
    server.replies = [Canned(R1), Canned(R2), Canned(DONE)]
    assert run_cli("run", live_idea(tmp_path), "--model", MODEL, "--sandbox", tmp_path / "sb") == 0
    ws = only_workspace(tmp_path / "sb")
    assert [r["status"] for r in events(ws, "run_recorded")] == ["ok", "ok"]
    ex = events(ws, "exchange")
    assert len(ex) == 3 and all(e["model"] == MODEL and not e["scripted"] for e in ex)
    assert all(e["prompt_tokens"] > 0 and e["completion_tokens"] > 0 and e["latency_s"] >= 0 for e in ex)
    assert ex[0]["messages"][0]["role"] == "system" and ex[0]["response"].strip() == R1.strip()
    assert any(ex[0]["prompt"] in m["content"] for m in ex[0]["messages"] if m["role"] == "user")
    # one coder per stage: the second request carries the first exchange
    second = server.requests[1]["messages"]
    assert any(m["role"] == "assistant" and "raise the rate" in str(m["content"]) for m in second)
    assert bool(server.requests[0].get("stream")) is stream


def test_non_matching_search_block_is_fed_back_and_fixed(tmp_path, server):
    server.replies = [Canned(blk("LR = 0.5", "LR = 0.1")), Canned(R1), Canned(DONE)]
    assert run_cli("run", live_idea(tmp_path, max_runs=2), "--model", MODEL, "--sandbox", tmp_path / "sb") == 0
    ws = only_workspace(tmp_path / "sb")
    assert "failed to match" in events(ws, "edit_applied")[0]["failed"]
    assert "failed to match" in str(server.requests[1]["messages"][-1]["content"])
    assert events(ws, "run_recorded")[0]["status"] == "ok"


def test_rate_limit_then_success_is_retried(tmp_path, server):
    server.replies = [Canned(status=429), Canned(status=503), Canned(R1), Canned(DONE)]
    assert run_cli("run", live_idea(tmp_path, max_runs=2), "--model", MODEL, "--sandbox", tmp_path / "sb") == 0
    ws = only_workspace(tmp_path / "sb")
    assert events(ws, "exchange")[0]["retries"] == 2
    assert len(server.requests) == 4


def test_authentication_error_stops_at_once(tmp_path, server, capsys):
    server.replies = [Canned(status=401, error="Incorrect API key provided")]
    rc = run_cli("run", live_idea(tmp_path), "--model", MODEL, "--sandbox", tmp_path / "sb")
    err = capsys.readouterr().err
    assert rc == 3 and len(server.requests) == 1
    errors = [line for line in err.splitlines() if line.startswith("orchestrate:")]
    assert len(errors) == 1 and "rejected the credentials" in errors[0] and "Traceback" not in err


def test_budget_stops_before_the_call_and_resume_continues(tmp_path, server, monkeypatch, capsys):
    meta = tmp_path / "models.json"
    meta.write_text(json.dumps({MODEL: {"input_cost_per_token": 1e-5, "output_cost_per_token": 2e-5,
                                        "max_input_tokens": 100000, "litellm_provider": "openai", "mode": "chat"}}))
    monkeypatch.setenv("ORCHESTRATE_MODEL_METADATA", str(meta))
    server.replies = [Canned(R1), Canned(R2), Canned(DONE)]
    rc = run_cli("run", live_idea(tmp_path), "--model", MODEL, "--sandbox", tmp_path / "sb", "--budget-usd", "0.06")
    assert rc == 4 and "budget" in capsys.readouterr().err
    ws = only_workspace(tmp_path / "sb")
    spent = sum(e["cost_usd"] for e in events(ws, "exchange"))
    assert 0 < spent <= 0.06 and len(server.requests) == len(events(ws, "exchange")) < 3
    assert run_cli("resume", ws, "--budget-usd", "5") == 0
    assert [r["status"] for r in events(ws, "run_recorded")] == ["ok", "ok"]
    assert len(server.requests) == 3  # nothing asked twice


def test_live_workspace_replays_with_identical_edits_and_metrics(tmp_path, server, capsys):
    server.replies = [Canned(R1), Canned(R2), Canned(DONE)]
    assert run_cli("run", live_idea(tmp_path), "--model", MODEL, "--sandbox", tmp_path / "sb") == 0
    ws = only_workspace(tmp_path / "sb")
    assert run_cli("replay", ws, "--sandbox", tmp_path / "replayed") == 0
    out = capsys.readouterr().out
    assert "replay reproduced every run within tolerance" in out
    rws = only_workspace(tmp_path / "replayed")
    assert [e["diff"] for e in events(rws, "edit_applied")] == [e["diff"] for e in events(ws, "edit_applied")]
    assert len(server.requests) == 3  # the replay asked the model nothing
    # export gives the same transcript the replay used
    assert run_cli("export", ws, "-o", tmp_path / "t.jsonl") == 0
    lines = (tmp_path / "t.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["transcript"] == 1 and len(lines) == 4


def test_replay_names_a_response_that_no_longer_applies(tmp_path, capsys):
    idea = make_idea(tmp_path, [exp(1, 1, R1), exp(2, 1, R2), exp(3, 1, DONE)])
    assert run_cli("run", idea, "--sandbox", tmp_path / "sb") == 0
    ws = only_workspace(tmp_path / "sb")
    tpl = json.loads((tmp_path / "tiny.json").read_text())["template"]
    # the template changed since the recording: the first SEARCH block no longer matches
    import shutil
    changed = tmp_path / "changed"
    shutil.copytree(tpl, changed)
    (changed / "experiment.py").write_text((changed / "experiment.py").read_text().replace("LR = 0.05", "LR = 0.06"))
    head = events(ws, "workspace_created")[0]
    journal = ws / ".orchestrate/journal.jsonl"
    lines = journal.read_text().splitlines()
    head["template_root"] = str(changed)
    lines[0] = json.dumps(head)
    journal.write_text("\n".join(lines) + "\n")
    assert run_cli("replay", ws, "--sandbox", tmp_path / "replayed") == 1
    out = capsys.readouterr().out
    assert "divergence" in out and "run 1" in out


HOOK = textwrap.dedent("""
    import ipaddress, json, os, sys
    bad = []
    def hook(event, args):
        if event == "socket.connect":
            addr = args[1]
            host = addr[0] if isinstance(addr, tuple) else addr
            try:
                if isinstance(host, str) and not ipaddress.ip_address(host).is_loopback:
                    bad.append(f"connect {host}")
            except ValueError:
                bad.append(f"connect {host}")
        elif event == "socket.getaddrinfo":
            host = args[0]
            if host not in (None, "localhost", "127.0.0.1", "::1", b"localhost", b"127.0.0.1"):
                bad.append(f"resolve {host}")
    sys.addaudithook(hook)
    from orchestrator.cli import main
    rc = main(sys.argv[1:])
    open(os.environ["AUDIT_OUT"], "w").write(json.dumps({"rc": rc, "bad": bad}))
""")


def test_whole_live_idea_makes_no_non_loopback_network_attempt(tmp_path, server, monkeypatch):
    server.replies = [Canned(R1), Canned(R2), Canned(DONE)]
    home = tmp_path / "userhome"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("ORCHESTRATE_HOME")  # the default cache under HOME, to check nothing else is written there
    out = tmp_path / "audit.json"
    idea = live_idea(tmp_path)
    proc = subprocess.run([sys.executable, "-c", HOOK, "run", str(idea), "--model", MODEL, "--sandbox", str(tmp_path / "sb"),
                           "--stages", "experiments"],
                          capture_output=True, text=True, timeout=180, cwd=ROOT,
                          env={**__import__("os").environ, "AUDIT_OUT": str(out)})
    result = json.loads(out.read_text())
    assert result["rc"] == 0, proc.stderr[-2000:]
    assert result["bad"] == []
    written = sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file())
    # the experiments' HOME is the workspace's own (.orchestrate/home), never a folder of the shared cache
    assert not any("/home/" in f"/{p}/" for p in written), written
    assert list((tmp_path / "sb").glob("*/.orchestrate/home"))
    assert all(p.startswith(".cache/orchestrator/") for p in written), written


def test_model_and_endpoint_from_the_users_config_file(tmp_path, server, monkeypatch):
    """No --model and no provider variables in the environment: the config file names both."""
    base, key = server.base_url, "sk-from-config"
    monkeypatch.delenv("OPENAI_API_BASE")
    monkeypatch.delenv("OPENAI_API_KEY")
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'model = "{MODEL}"\n[env]\nOPENAI_API_BASE = "{base}"\nOPENAI_API_KEY = "{key}"\n')
    monkeypatch.setenv("ORCHESTRATE_CONFIG", str(cfg))
    server.replies = [Canned(R1), Canned(DONE)]
    assert run_cli("run", live_idea(tmp_path, max_runs=2), "--sandbox", tmp_path / "sb") == 0
    ws = only_workspace(tmp_path / "sb")
    assert events(ws, "workspace_created")[0]["agent"] == f"aider:{MODEL}"
    assert len(server.requests) == 2


def test_bad_config_file_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    cfg = tmp_path / "config.toml"
    cfg.write_text('model = "x"\napi_key = "nope"\n')
    monkeypatch.setenv("ORCHESTRATE_CONFIG", str(cfg))
    assert run_cli("run", live_idea(tmp_path), "--sandbox", tmp_path / "sb") == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and str(cfg) in err[0] and "api_key" in err[0]
