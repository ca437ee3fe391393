"""Nothing left behind when hepgen is killed: no orphan simulate workers, no temporaries that
pile up, SIGTERM cleaned up like Ctrl-C, long output names and bad option values as one line.

The subprocess tests signal the parent only, as the OOM killer, a batch system or ``timeout``
would, and always kill the whole process group at the end.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hepgen.cards import card_from_dict
from hepgen.errors import OutputError
from hepgen.io.root import read_events, write_events
from hepgen.outputs import atomic_directory, atomic_output, stale_temporaries
from hepgen.train import train
from tests.zjets_like import zjets_like

ROOT = Path(__file__).resolve().parents[1]
CARD = ROOT / "cards" / "zjets.yaml"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
HOST = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())  # as it appears in temporary names


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(p) for p in path.read_text().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its new parent to reap it counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _start(args, **kw):
    return subprocess.Popen([sys.executable, "-m", "hepgen", *map(str, args)], cwd=ROOT, env=ENV,
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _kill_group(proc, pids=()) -> str:
    """Never leave a run behind, whatever the test saw; returns the run's stderr."""
    for pid in (proc.pid, *pids):
        try:
            os.killpg(proc.pid, signal.SIGKILL) if pid == proc.pid else os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return proc.communicate()[1]


# --------------------------------------------------------------------------------------------
# simulate: the workers die with their parent


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="counts children through /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_simulate_workers_die_with_their_parent(tmp_path, sig):
    out = tmp_path / "big.root"
    proc = _start(["simulate", CARD, "-n", "1000000", "-o", out, "--jobs", "2"])
    workers: list[int] = []
    try:
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None:  # resource tracker + 2 workers
            workers = [p for p in _children(proc.pid)
                       if b"resource_tracker" not in Path(f"/proc/{p}/cmdline").read_bytes()]
            if len(workers) >= 2:
                break
            time.sleep(0.2)
        assert len(workers) >= 2, "the workers never started"
        time.sleep(2)  # the workers are generating
        everyone = _children(proc.pid)
        os.kill(proc.pid, sig)  # the parent only
        proc.wait(timeout=60)  # (not communicate: orphans would hold its pipes open)
        time.sleep(5)
        survivors = [p for p in everyone if _alive(p)]
    finally:
        err = _kill_group(proc, workers)
    assert survivors == []
    if sig == signal.SIGTERM:  # shut down like Ctrl-C: one line, the SIGTERM status
        assert proc.returncode == 128 + signal.SIGTERM, err
        assert err == "hepgen: terminated (SIGTERM)\n"
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# temporaries of dead processes


def test_temporaries_of_dead_processes_are_removed_by_the_next_write(tmp_path):
    dead = _dead_pid()
    target = tmp_path / "out.root"
    host = HOST
    litter = [tmp_path / f".out.root.partial-{host}-{dead}.root", tmp_path / f".out.root.partial-{dead}.root"]
    keep = [
        tmp_path / f".out.root.partial-{host}-{os.getppid()}.root",  # a live process's
        tmp_path / f".out.root.partial-otherhost-{dead}.root",  # another host's (shared file system)
        tmp_path / f".other.root.partial-{host}-{dead}.root",  # another output's
        tmp_path / f".out.root.partial-{host}-{dead}.root.bak",  # not a temporary name
        tmp_path / f"out.root.partial-{host}-{dead}.root",
    ]
    for p in litter + keep:
        p.write_bytes(b"half")
    assert stale_temporaries(target) == sorted(litter)
    with atomic_output(target) as tmp:
        tmp.write_bytes(b"new")
        assert not any(p.exists() for p in litter)
    assert target.read_bytes() == b"new"
    assert sorted(tmp_path.iterdir()) == sorted([target, *keep])


def test_folders_of_dead_processes_are_removed_by_the_next_write(tmp_path):
    dead = _dead_pid()
    host = HOST
    old = tmp_path / f".export.partial-{host}-{dead}"
    (old / "sub").mkdir(parents=True)
    (old / "sub" / "w.bin").write_bytes(b"half")
    live = tmp_path / f".export.partial-{host}-{os.getppid()}"
    live.mkdir()
    with atomic_directory(tmp_path / "export") as tmp:
        (tmp / "a").write_text("1")
    assert sorted(tmp_path.iterdir()) == sorted([tmp_path / "export", live])


def test_a_name_too_long_for_the_temporary_suffix_still_writes(tmp_path):
    name = "x" * 250 + ".root"  # 255 bytes: the limit itself; the temporary name would not fit
    with atomic_output(tmp_path / name) as tmp:
        assert len(tmp.name) <= 255 and tmp.suffix == ".root"
        tmp.write_bytes(b"done")
    assert [p.name for p in tmp_path.iterdir()] == [name]
    # a dead process's hashed temporary is recognised as this output's
    dead = _dead_pid()
    hashed = tmp.with_name(tmp.name.replace(f"-{os.getpid()}.root", f"-{dead}.root"))
    hashed.write_bytes(b"half")
    assert stale_temporaries(tmp_path / name) == [hashed]
    with atomic_output(tmp_path / name, force=True) as tmp:
        tmp.write_bytes(b"again")
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_a_name_longer_than_the_file_system_allows_is_one_line(tmp_path):
    with pytest.raises(OutputError, match=r"is 261 bytes long; the file system allows 255"):
        with atomic_output(tmp_path / ("y" * 256 + ".root")):
            pass
    with pytest.raises(OutputError, match=r"bytes long"):
        with atomic_directory(tmp_path / ("z" * 300)):
            pass
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# hepgen generate, killed mid-write; one-line messages


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny trained Z+jets-like run (seconds), as in test_generate."""
    tmp = tmp_path_factory.mktemp("litter")
    write_events(tmp / "ref.root", zjets_like(1000, seed=5))
    card = card_from_dict({
        "name": "zj", "seed": 3,
        "data": {"path": str(tmp / "ref.root"), "split": [0.8, 0.1, 0.1]},
        "model": {"family": "cfm", "network": {"hidden": 8, "layers": 1}, "cfm": {"solver": "euler", "steps": 1}},
        "train": {"epochs": 1, "batch_size": 256, "threads": 1, "validate": False, "runs_dir": str(tmp / "runs")},
        "generate": {"events": 100, "chunk": 1000},
    })
    return train(card, progress=False, run_dir=tmp / "run", after=False)


def _generate_until_a_temporary_exists(run, out):
    """Start a long generation into ``out``; return it once its temporary file is written."""
    proc = _start(["generate", run, "-n", "50000000", "-o", out, "--no-progress"])
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if any(p.name.startswith(f".{out.name}.partial-") and p.stat().st_size > 0 for p in out.parent.iterdir()):
            return proc
        time.sleep(0.1)
    _kill_group(proc)
    pytest.fail(f"no temporary appeared (exit {proc.returncode})")


def test_sigterm_of_generate_cleans_up_like_ctrl_c(run, tmp_path):
    out = tmp_path / "gen.root"
    proc = _generate_until_a_temporary_exists(run, out)
    try:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        _kill_group(proc)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err.strip().splitlines()[-1] == "hepgen: terminated (SIGTERM)"
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_the_next_generate_removes_what_a_sigkill_left(run, tmp_path):
    out = tmp_path / "gen.root"
    proc = _generate_until_a_temporary_exists(run, out)
    proc.kill()
    proc.communicate()
    left = list(tmp_path.iterdir())
    assert len(left) == 1 and left[0].name.startswith(".gen.root.partial-")  # what SIGKILL leaves
    r = subprocess.run([sys.executable, "-m", "hepgen", "generate", str(run), "-n", "200", "-o", str(out),
                        "--no-progress"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["gen.root"]
    assert 0 < len(read_events(out)) <= 200  # the drawn events that pass the cuts


def test_long_output_names_through_the_cli(run, tmp_path):
    fits = tmp_path / ("g" * 250 + ".root")
    r = subprocess.run([sys.executable, "-m", "hepgen", "generate", str(run), "-n", "50", "-o", str(fits),
                        "--no-progress"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert [p.name for p in tmp_path.iterdir()] == [fits.name]
    for command in (["generate", run, "-n", "50"], ["simulate", CARD, "-n", "10"]):
        r = subprocess.run([sys.executable, "-m", "hepgen", *map(str, command), "-o", str(tmp_path / ("g" * 300 + ".root"))],
                           cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
        assert r.returncode == 2, r.stderr
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("hepgen: error: output name ggg"), r.stderr
        assert "305 bytes long" in r.stderr
    assert [p.name for p in tmp_path.iterdir()] == [fits.name]


@pytest.mark.parametrize("args, says", [
    (["simulate", CARD, "-n", "0"], "Invalid value for '-n' / '--events': 0 is not in the range x>=1"),
    (["generate", "somewhere", "-n", "0"], "Invalid value for '-n' / '--events': 0 is not in the range x>=1"),
    (["generate", "somewhere", "--steps", "x"], "'x' is not a valid integer"),
    (["simulate"], "Missing argument 'CARD'"),
    (["simulat", CARD], "No such command 'simulat'"),
    (["convert", "a.root", "b.lhe", "--sqrt-s", "abc"], "Invalid value for '--sqrt-s'"),
])
def test_bad_option_values_are_one_line(args, says, tmp_path):
    r = subprocess.run([sys.executable, "-m", "hepgen", *map(str, args)], cwd=tmp_path, env=ENV,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("hepgen: error: "), r.stderr
    assert says in r.stderr and "--help'" in r.stderr
    assert list(tmp_path.iterdir()) == []
