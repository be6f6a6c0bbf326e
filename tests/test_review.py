"""The review form (parsed, retried on malformed replies), the integrity check's number reading, the
citation clients against a loopback stub (never the internet), and `orchestrate review PDF`."""

from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import run_cli

from orchestrator import citations
from orchestrator.paper import integrity
from orchestrator.paper.integrity import PaperInputs, extract_numbers
from orchestrator.paper.results_tex import RunData
from orchestrator.review_form import Review, ask_review, parse_review

FORM = {"summary": "s", "strengths": ["a"], "weaknesses": ["b"], "questions": [], "limitations": ["c"],
        "soundness": 2, "presentation": 3, "contribution": 2, "overall": 4, "confidence": 3, "decision": "Reject"}


# -- the form ------------------------------------------------------------------------------------

def test_review_is_read_from_a_fenced_or_bare_json_object():
    r, err = parse_review("Here is my review.\n```json\n" + json.dumps(FORM) + "\n```\nThanks.")
    assert err == "" and isinstance(r, Review) and r.overall == 4
    r, err = parse_review("preamble " + json.dumps(dict(FORM, decision="accept", strengths="one paragraph")))
    assert r.decision == "Accept" and r.strengths == ["one paragraph"]


@pytest.mark.parametrize(("reply", "error"), [
    ("I think the paper is fine.", "no JSON object"),
    ("{\"summary\": \"s\", ", "no JSON object"),
    ("```json\n{\"summary\": 's'}\n```", "not valid JSON"),
    (json.dumps(dict(FORM, overall=11)), "field overall"),
    (json.dumps(dict(FORM, soundness=0)), "field soundness"),
    (json.dumps({k: v for k, v in FORM.items() if k != "decision"}), "field decision"),
    (json.dumps(dict(FORM, decision="Maybe")), "field decision"),
])
def test_malformed_reviews_say_what_is_wrong(reply, error):
    r, err = parse_review(reply)
    assert r is None and error in err


def test_malformed_reply_is_retried_with_the_problem_then_given_up():
    asked = []
    replies = iter(["not json", json.dumps(dict(FORM, overall=0)), json.dumps(FORM)])

    def ask(prompt, step):
        asked.append((step, prompt))
        return next(replies)

    review, attempts = ask_review(ask, "review this")
    assert review is not None and [s for s, _ in asked] == ["review", "review-retry-1", "review-retry-2"]
    assert "no JSON object" in asked[1][1] and "field overall" in asked[2][1]
    assert [a.ok for a in attempts] == [False, False, True]
    review, attempts = ask_review(lambda p, s: "nope", "review this", tries=2)
    assert review is None and len(attempts) == 2


# -- numbers -------------------------------------------------------------------------------------

def _nums(text):
    return [n.text for n in extract_numbers(text)]


def test_what_counts_as_a_reported_number():
    text = ("1 Introduction\nIn 2023 we trained GPT-2 and Gemma-2-2b with an L1 penalty on 3 levels (Smith et al., 2021) [12].\n"
            "The error fell to 0.0346 and the loss to 1.59 × 10−7, or 3.5%; see Figure 2 and Table 1, Section 4.2.\n"
            "3.2 Experimental Setup\nWe used 4096 latents and a learning rate of 3e-4 over 40 steps.\n"
            "7\n"
            "References\nH. Cunningham. Sparse autoencoders. 2024. 0.55 pages 11-19.\n")
    assert _nums(text) == ["0.0346", "1.59 × 10−7", "3.5%", "4096", "3e-4", "40"]


def test_numbers_match_at_their_printed_precision_or_as_percentages():
    runs = [RunData(run=1, status="ok", values={"eval.error": 0.034591, "core.l0": 41.73, "frac": 0.8123})]
    bad = [RunData(run=2, status="degenerate", values={"eval.error": 0.5123})]
    text = ("Run 1 reaches 0.0346 (also 0.03459 and 0.035), an L0 of 41.7, 81.2% and 0.81.\n"
            "Run 2 reached 0.5123 as well, and a typo 0.0347 appears.\n")
    rep = integrity.check(PaperInputs(text=text, runs=runs, failed=bad))
    assert rep.numbers_checked == 8 and rep.numbers_matched == 6
    kinds = sorted((f.kind, f.message.split()[0]) for f in rep.findings)
    assert kinds == [("failed-run-number", "0.5123"), ("failed-run-presented", "run"), ("unmatched-number", "0.0347")]


def test_a_failed_run_mentioned_as_failed_is_not_a_finding():
    bad = [RunData(run=2, status="failed", values={})]
    rep = integrity.check(PaperInputs(text="Run 2 failed: it crashed before training.\n", runs=[], failed=bad))
    assert rep.findings == []


def test_a_failed_run_in_a_table_read_column_by_column_is_not_a_finding():
    # pdftotext gives the paper's \\searchpathtable column by column: the failed step's "Run 2" and its
    # "not a result (failed)" are far apart, with "core.explained_variance", "vs." and decimals between them;
    # none of those full stops ends the sentence. A real sentence that presents run 2 is still found.
    bad = [RunData(run=2, status="failed", values={})]
    table = ("the experiment reported itself.\nStep\n\nNode\n\nKind\n\n1\n2\n\nRun 2\nRun 3\n\n"
             "draft from the template\ndebug from step 1\n\ncore.explained_variance\n\n\u2206 vs. previous\n\n"
             "not a result (failed)\n0.9148 \u00b1 0.0018\n\n\u2013\n\u2013\n\nLevel-wise sparsity. Run 3 has more.\n")
    runs = [RunData(run=3, status="ok", values={"core.explained_variance": 0.9148, "pm": 0.0018})]

    def presented(text):
        rep = integrity.check(PaperInputs(text=text, runs=runs, failed=bad))
        return [f.message.split(": ", 1)[1] for f in rep.findings if f.kind == "failed-run-presented"]

    assert presented(table) == []
    assert presented(table + "Our best variant is run 2. It reaches 0.9148 on the features.\n") == [
        "'Our best variant is run 2'"]


def test_bare_pdf_text_skips_run_checks_with_a_note():
    rep = integrity.check(PaperInputs(text="An error of 0.1234 and Figure ?? and (?).\n"))
    assert rep.numbers_checked == 0
    assert any("bare PDF" in n for n in rep.notes) and any("no LaTeX source" in n for n in rep.notes)
    assert [f.kind for f in rep.findings] == ["unresolved-reference", "unresolved-reference"]


def test_empty_sections_and_undefined_result_macros_are_found():
    tex = ("\\begin{abstract}\nShort.\n\\end{abstract}\n\\section{Method}\nWe " + "do things " * 10 + "\\result{run1}{x}.\n"
           "\\section{Results}\n% SECTION: results (to be written)\n\\section{Related}\n\\result{run2}{x}" + " words" * 20 + "\n")
    rep = integrity.check(PaperInputs(tex=tex, results_tex="\\setresult{run1}{x}{0.5}\n", bib="",
                                      failed=[RunData(run=2, status="degenerate")]))
    found = {(f.kind, f.where) for f in rep.findings}
    assert ("empty-section", "paper.tex:1") in found and ("empty-section", "paper.tex:6") in found
    assert ("failed-run-presented", "paper.tex:9") in found
    assert ("placeholder", "paper.tex:7") in found
    assert not any(f.kind == "undefined-result" for f in rep.findings)


# -- citations -----------------------------------------------------------------------------------

class _Stub:
    """A loopback HTTP server: the first `fail` requests get 429, then canned JSON."""

    def __init__(self, body: dict, fail: int = 0) -> None:
        self.requests: list[str] = []
        stub = self
        stub.fail = fail

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                stub.requests.append(self.path)
                if stub.fail > 0:
                    stub.fail -= 1
                    self.send_response(429)
                    self.send_header("Retry-After", "0")
                    self.end_headers()
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


OPENALEX = {"results": [{"title": "Toy Models of Superposition", "publication_year": 2022, "doi": "https://doi.org/10.1/x",
                         "authorships": [{"author": {"display_name": "Nelson Elhage"}}],
                         "primary_location": {"source": {"display_name": "arXiv"}}, "id": "https://openalex.org/W1"},
                        {"title": "Hierarchical Sparse Coding", "publication_year": 2011,
                         "authorships": [{"author": {"display_name": "Rodolphe Jenatton"}}]}]}
S2 = {"data": [{"title": "Sparse Autoencoders Find Highly Interpretable Features", "year": 2023, "venue": "ICLR",
                "authors": [{"name": "Hoagy Cunningham"}], "externalIds": {"DOI": "10.2/y"}}]}


def test_openalex_backs_off_on_429_then_adds_new_entries_to_the_bib(tmp_path):
    stub = _Stub(OPENALEX, fail=2)
    slept: list[float] = []
    try:
        backend = citations.OpenAlexBackend(stub.url, sleep=slept.append)
        bib = tmp_path / "references.bib"
        bib.write_text("@article{elhage2022superposition,\n  title = {Toy Models of Superposition},\n  year = {2022}\n}\n")
        added, line = citations.search_into_bib(backend, ["hierarchical sparse autoencoders"], bib)
    finally:
        stub.close()
    assert len(stub.requests) == 3 and "search=hierarchical" in stub.requests[-1]
    assert slept == [0.0, 0.0]  # Retry-After honoured
    assert added == ["jenatton2011hierarchical"] and "1 added" in line
    text = bib.read_text()
    assert "@article{jenatton2011hierarchical," in text and text.count("Toy Models") == 1


def test_semantic_scholar_client_and_a_service_that_stays_down(tmp_path):
    stub = _Stub(S2)
    try:
        papers = citations.SemanticScholarBackend(stub.url, sleep=lambda s: None).search("sparse autoencoders", limit=3)
    finally:
        stub.close()
    assert papers[0].doi == "10.2/y" and papers[0].key() == "cunningham2023sparse"
    assert "/paper/search?query=sparse+autoencoders" in stub.requests[0]
    down = _Stub({}, fail=100)
    try:
        bib = tmp_path / "r.bib"
        bib.write_text("")
        added, line = citations.search_into_bib(citations.OpenAlexBackend(down.url, tries=2, sleep=lambda s: None), ["x"], bib)
    finally:
        down.close()
    assert added == [] and "failed, continuing with latex/references.bib" in line


def test_offline_is_the_default_and_says_so(tmp_path):
    backend = citations.backend_from_env({})
    assert not backend.online
    bib = tmp_path / "references.bib"
    bib.write_text("@misc{a,\n title={A}\n}\n@misc{b,\n title={B}\n}\n")
    added, line = citations.search_into_bib(backend, ["anything"], bib)
    assert added == [] and line == "citation search: offline; the paper cites only latex/references.bib (2 entries)"
    assert isinstance(citations.backend_from_env({"ORCHESTRATE_CITATIONS": "openalex"}), citations.OpenAlexBackend)


# -- the command ---------------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="pdftotext (poppler-utils) not installed")
def test_review_command_on_a_bare_pdf_runs_the_checks_it_can(tmp_path, capsys):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matplotlib.rcParams["pdf.fonttype"] = 42  # real text in the PDF, so pdftotext can read it
    fig = plt.figure(figsize=(4, 2))
    fig.text(0.1, 0.5, "Results: see Figure ?? for the error of 0.1234.")
    fig.savefig(tmp_path / "paper.pdf")
    plt.close(fig)
    assert run_cli("review", tmp_path / "paper.pdf") == 0
    out = capsys.readouterr().out
    assert "LLM review skipped: no model" in out and "bare PDF" in out
    data = json.loads((tmp_path / "paper.review.json").read_text())
    assert data["review"] is None and data["integrity"]["findings"][0]["kind"] == "unresolved-reference"
    assert run_cli("review", tmp_path / "nothing.txt") == 2


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="pdftotext (poppler-utils) not installed")
def test_review_command_with_a_live_model_retries_a_malformed_reply(tmp_path, monkeypatch, capsys):
    """Real aider against the loopback OpenAI-compatible server: a malformed form, then a valid one."""
    import matplotlib
    from fake_openai import Canned, FakeOpenAI

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matplotlib.rcParams["pdf.fonttype"] = 42
    fig = plt.figure(figsize=(4, 2))
    fig.text(0.1, 0.5, "Sparse autoencoders recover planted features.")
    fig.savefig(tmp_path / "p.pdf")
    plt.close(fig)
    srv = FakeOpenAI()
    monkeypatch.setenv("OPENAI_API_BASE", srv.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    srv.replies = [Canned("Overall it is fine, 6/10."), Canned("```json\n" + json.dumps(dict(FORM, overall=6)) + "\n```")]
    try:
        assert run_cli("review", tmp_path / "p.pdf", "--model", "openai/test-model", "-o", tmp_path / "r.json") == 0
    finally:
        srv.close()
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["review"]["overall"] == 6 and data["model"] == "openai/test-model"
    assert [a["step"] for a in data["attempts"]] == ["review", "review-retry-1"]
    assert "Sparse autoencoders recover planted features" in str(srv.requests[0]["messages"])
    assert "no JSON object found" in str(srv.requests[1]["messages"][-1]["content"])
    assert "overall 6/10" in capsys.readouterr().out
