"""The hashes of recorded run folders and the data cache: remembered by the files' stat, never trusted past a change."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from orchestrator import paths
from orchestrator.paths import changed_files, file_digest, tree_hashes


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """The files actually read (hashed) by file_digest."""
    seen: list[str] = []
    real = hashlib.file_digest

    def counted(fh, name):
        seen.append(fh.name)
        return real(fh, name)

    monkeypatch.setattr(paths.hashlib, "file_digest", counted)
    paths._DIGESTS.clear()
    return seen


def test_a_remembered_hash_is_given_again_only_while_the_file_is_unchanged(tmp_path, monkeypatch, reads):
    monkeypatch.setattr(paths, "_settle_ns", lambda dev: 0)  # every file counts as settled
    f = tmp_path / "final_info.json"
    f.write_text('{"loss": 0.5}')
    first = file_digest(f)
    assert first == hashlib.sha256(f.read_bytes()).hexdigest()
    assert file_digest(f) == first and len(reads) == 1  # unchanged: not read again
    st = f.stat()
    time.sleep(0.05)  # past the clock tick of the first write (file times are coarse), as a run's later write is
    f.write_text('{"loss": 0.1}')  # the same size, its times put back: the ctime still moves
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert f.stat().st_size == st.st_size and f.stat().st_mtime_ns == st.st_mtime_ns
    assert file_digest(f) == hashlib.sha256(b'{"loss": 0.1}').hexdigest() and len(reads) == 2
    other = tmp_path / "other.json"
    other.write_text('{"loss": 0.5}')
    os.replace(other, f)  # replaced by another file with the first content
    assert file_digest(f) == first and len(reads) == 3


def test_a_recent_file_is_hashed_every_time(tmp_path, reads):
    f = tmp_path / "fresh.npy"
    f.write_bytes(b"\0" * 100)
    assert file_digest(f) == file_digest(f) and len(reads) == 2  # written just now: never remembered


def test_tmpfs_hashes_are_never_remembered():
    shm = Path("/dev/shm")
    if not shm.is_dir() or "tmpfs" not in Path("/proc/self/mountinfo").read_text():
        pytest.skip("no tmpfs here")
    assert paths._settle_ns(os.stat(shm).st_dev) is None
    assert paths._settle_ns(os.makedev(4095, 4095)) is None  # a device no mount names


def test_tree_hashes_names_links_and_special_files_and_sees_a_change(tmp_path, monkeypatch, reads):
    monkeypatch.setattr(paths, "_settle_ns", lambda dev: 0)
    run = tmp_path / "run_1"
    (run / "saes").mkdir(parents=True)
    (run / "saes" / "sae.safetensors").write_bytes(b"weights")
    (run / "final_info.json").write_text("{}")
    os.mkfifo(run / "pipe")  # hashed as special, never opened to block on
    (run / "link").symlink_to("/etc/hostname")
    recorded = tree_hashes(run)
    assert recorded["pipe"] == "special" and recorded["link"] == "link:/etc/hostname"
    assert recorded["saes/sae.safetensors"] == hashlib.sha256(b"weights").hexdigest()
    assert changed_files(run, recorded) == []
    (run / "saes" / "sae.safetensors").write_bytes(b"WEIGHTS")
    assert changed_files(run, recorded) == ["saes/sae.safetensors"]
