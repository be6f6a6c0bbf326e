"""Every fault of the catalogue (benchmarks/faults) with its expected verdict, run through the
orchestrator as the benchmark runs it. A fault that only a sandbox can contain is skipped, with the
reason, where bwrap does not work; the skip shows in `pytest -ra`."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

from orchestrator import cgroup, runner, sandbox

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("fault_catalogue", ROOT / "benchmarks" / "faults" / "catalogue.py")
catalogue = importlib.util.module_from_spec(_spec)
sys.modules["fault_catalogue"] = catalogue
_spec.loader.exec_module(catalogue)

LEVEL = sandbox.resolve("auto")
BWRAP = sandbox.bwrap_problem()


@pytest.fixture(scope="module")
def listener():
    lis = catalogue.Listener()
    yield lis
    lis.close()


def _check(out) -> None:
    detail = f"{out.fault.name}: verdict {out.verdict}, reasons {out.reasons}, problems {out.problems}"
    assert out.verdict == out.expected, detail
    assert out.machine_clean and out.workspace_clean and not out.problems, detail
    assert not out.mismatches, detail


@pytest.mark.parametrize("fault", catalogue.FAULTS, ids=[f.file for f in catalogue.FAULTS])
def test_fault_is_contained_with_its_verdict(fault, tmp_path, listener):
    if LEVEL not in fault.expect:
        pytest.skip(f"{fault.name}: only bwrap contains it, and here {BWRAP}")
    out = catalogue.run_fault(fault, tmp_path, isolation=LEVEL, listener=listener)
    _check(out)
    if fault.needs_smoke_only:
        assert out.seconds < 30


@pytest.mark.parametrize("file", ["edit_harness", "edit_time_limit"])
def test_yardstick_edit_without_a_sandbox_is_tampered_and_restored(file, tmp_path):
    out = catalogue.run_fault(catalogue.by_file(file), tmp_path, isolation="none")
    _check(out)
    assert out.verdict == "tampered" and "restored" in out.reasons[0]


@pytest.mark.parametrize("file", ["fork_bomb", "memory_hog", "grandchild_timeout"])
def test_without_a_sandbox_the_cgroup_contains_it(file, tmp_path):
    probe = cgroup.make("probe" + os.urandom(4).hex(), memory_mb=64, max_tasks=16)
    if probe is None:
        pytest.skip("needs a writable cgroup")
    probe.remove()
    _check(catalogue.run_fault(catalogue.by_file(file), tmp_path, isolation="none"))


@pytest.mark.parametrize("file", ["fork_bomb", "memory_hog", "grandchild_timeout"])
def test_without_sandbox_or_cgroup_the_watchdog_and_subreaper_contain_it_and_the_test_runner_is_untouched(
        file, tmp_path, monkeypatch):
    monkeypatch.setenv(cgroup.SWITCH, "0")
    _check(catalogue.run_fault(catalogue.by_file(file), tmp_path, isolation="none"))
    assert runner.tool(["true"]).exit_code == 0  # we can still start processes
    with open(f"/proc/{os.getpid()}/status") as fh:
        rss_mb = int(next(line for line in fh if line.startswith("VmRSS")).split()[1]) / 1024
    assert rss_mb < 1024  # the hog's memory was never ours


@pytest.mark.parametrize("file", ["network", "write_outside"])
def test_without_a_sandbox_network_and_outside_writes_are_not_contained(file, tmp_path, listener):
    """The table's honesty: at isolation none these two escape, and the benchmark says so."""
    out = catalogue.run_fault(catalogue.by_file(file), tmp_path, isolation="none", listener=listener)
    assert out.expected is None and not out.contained and not out.machine_clean
