"""Fuzzing the LHE reader: seeded mutations of real files (truncations, byte flips, field
swaps, deleted and duplicated lines, bad numbers, broken tags, damaged gzip streams).

Every mutation read through :func:`load_lhe`, :func:`read_lhe` and :func:`iterate_lhe` ends in
exactly one of two outcomes: events that are finite and consistent, or one
:class:`InputError` whose message is one line naming the file. Anything else (another
exception, a warning, a multi-line message, a hang) fails and names the mutation;
``mutated(BASE, KIND, SEED)`` rebuilds it for replay. The bases are the three LHE fixtures in
``../shared/fixtures`` cut to their first events, and a small file hepgen writes; each text
kind also runs through gzip.
"""

from __future__ import annotations

import gzip
import os
import random
import re
import signal
import traceback
from collections import Counter
from pathlib import Path

import awkward as ak
import numpy as np
import pytest

from hepgen.errors import InputError
from hepgen.events import EventSample, make_collection
from hepgen.io.lhe import iterate_lhe, load_lhe, read_lhe, write_lhe

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared/fixtures"
FIXTURE_FILES = {
    "powheg": "pylhe-testfile-powheg-box-v2-Zj.lhe",
    "madgraph": "pylhe-testfile-madgraph-2.0.0-wbj.lhe",
    "lhef3": "pylhe-testlhef3.lhe",
}
N_EVENTS = 4  # events kept from each fixture: small files, so thousands of mutations run in-process
# 2 500 mutations in the test suite (~50 s, each of the 16 kinds about 150 times); HEPGEN_FUZZ_MUTATIONS=10000 for a deeper
# search (~200 s; it found the regressions below)
N_MUTATIONS = int(os.environ.get("HEPGEN_FUZZ_MUTATIONS", "2500"))
MASTER_SEED = 12
SECONDS_PER_MUTATION = 10  # a read that takes longer is a hang
ENTRIES = ("load_lhe", "read_lhe", "iterate_lhe")
CROSS_CHECK_EVERY = 20  # one mutation in 20 is read through every entry point and compared; the
# others through one, in turn (a read costs ~10 ms, mostly awkward's per-call overhead)

TEXT_KINDS = ("truncate", "flip", "swap_fields", "delete_line", "duplicate_line", "bad_number", "break_tag")
GZIP_KINDS = ("gz_truncate", "gz_flip")
KINDS = TEXT_KINDS + tuple(f"{k}+gz" for k in TEXT_KINDS) + GZIP_KINDS

_NUMBER = re.compile(rb"(?<![\w.+-])[+-]?(?:\d+\.?\d*|\.\d+)(?:[eEdD][+-]?\d+)?(?![\w.])")
_BAD_NUMBERS = (b"nan", b"NaN", b"inf", b"-inf", b"1e400", b"-1e400", b"", b"9" * 30, b"1e308", b"-1",
                b"0", b"2147483648", b"9223372036854775808", b"1.5", b"0x10", b"1,5", b"--1", b"1e")
_FLIP_BYTES = (b"\x00", b"\xff", b"\xc3", b"\x80", b"<", b">", b" ", b"\n", b"\r", b".", b"-", b"e", b"9",
               b"\t", b"\x0b", b"\x1c", b"/", b'"')
_TAG_BREAKS = ("drop_close_event", "nest_event", "drop_close_init", "drop_close_file", "event_attr",
               "init_attr", "file_attr", "event_in_init", "self_closing", "misspell_close", "comment",
               "empty_event", "drop_open_event", "cdata", "rwgt_junk")


# ---------------------------------------------------------------------------- the bases


def _cut(text: bytes, n_events: int) -> bytes:
    """The file's preamble, header and init, its first ``n_events`` events and the closing tag."""
    end = 0
    for _ in range(n_events):
        end = text.index(b"</event>", end) + len(b"</event>")
    return text[:end] + b"\n</LesHouchesEvents>\n"


def _hepgen_written(tmp: Path) -> bytes:
    rng = np.random.default_rng(0)
    counts = np.array([2, 2, 2, 2])
    t = int(counts.sum())
    muons = make_collection(
        ak.unflatten(np.sort(30 + rng.exponential(20, t))[::-1].copy(), counts),
        ak.unflatten(rng.normal(0, 1, t), counts), ak.unflatten(rng.uniform(-3, 3, t), counts),
        ak.unflatten(np.full(t, 0.105658), counts), charge=ak.unflatten(np.tile([1, -1], 4).astype(np.int32), counts),
    )
    jets = make_collection(
        ak.unflatten(np.array([50.0, 40.0, 30.0, 60.0]), [1, 0, 2, 1]), ak.unflatten(np.zeros(4), [1, 0, 2, 1]),
        ak.unflatten(np.ones(4), [1, 0, 2, 1]), ak.unflatten(np.full(4, 5.0), [1, 0, 2, 1]),
    )
    sample = EventSample.build({"Muon": muons, "Jet": jets}, weight=np.array([1.0, 0.5, -0.25, 2.0]),
                               info={"seed": "1", "cross_section_pb": "12.5"})
    path = write_lhe(tmp / "hepgen.lhe", sample, weights={"bnn_0": np.array([1.0, 0.4, -0.2, 2.1])})
    return path.read_bytes()


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> dict[str, bytes]:
    """Name -> bytes of every base file there is (the hepgen-written one always)."""
    out = {"hepgen": _hepgen_written(tmp_path_factory.mktemp("base"))}
    for name, fname in FIXTURE_FILES.items():
        if (FIXTURES / fname).exists():
            out[name] = _cut((FIXTURES / fname).read_bytes(), N_EVENTS)
    return out


# ---------------------------------------------------------------------------- the mutations


def _body_start(data: bytes) -> int:
    i = data.find(b"<init")
    return max(i, 0)


def _position(rng: random.Random, data: bytes) -> int:
    """A byte offset, three times in four in the init and event blocks (the header is long)."""
    lo = _body_start(data) if rng.random() < 0.75 else 0
    return rng.randrange(lo, len(data))


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


def _line_index(rng: random.Random, lines: list[bytes], data: bytes) -> int:
    first = len(_lines(data[:_body_start(data)])) if rng.random() < 0.8 else 0
    return rng.randrange(min(first, len(lines) - 1), len(lines))


def _flip(rng, data):
    b = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        new = rng.choice(_FLIP_BYTES) if rng.random() < 0.6 else bytes([rng.randrange(256)])
        b[_position(rng, data)] = new[0]
    return bytes(b)


def _swap_fields(rng, data):
    lines = _lines(data)
    for _ in range(20):
        i = _line_index(rng, lines, data)
        fields = lines[i].split()
        if len(fields) >= 2:
            a, b = rng.sample(range(len(fields)), 2)
            fields[a], fields[b] = fields[b], fields[a]
            lines[i] = b" ".join(fields) + b"\n"
            break
    return b"".join(lines)


def _bad_number(rng, data):
    lines = _lines(data)
    for _ in range(20):
        i = _line_index(rng, lines, data)
        nums = list(_NUMBER.finditer(lines[i]))
        if nums:
            m = rng.choice(nums)
            lines[i] = lines[i][:m.start()] + rng.choice(_BAD_NUMBERS) + lines[i][m.end():]
            break
    return b"".join(lines)


def _break_tag(rng, data):
    how = rng.choice(_TAG_BREAKS)
    lines = _lines(data)
    events = [i for i, s in enumerate(lines) if s.lstrip().startswith(b"<event")]
    closes = [i for i, s in enumerate(lines) if b"</event>" in s]
    i, j = rng.choice(events), rng.choice(closes)
    init = next(k for k, s in enumerate(lines) if s.lstrip().startswith(b"<init"))
    if how == "drop_close_event":
        lines[j] = lines[j].replace(b"</event>", b"")
    elif how == "nest_event":
        lines.insert(i + rng.randrange(1, 4), b"<event>\n")
    elif how == "drop_close_init":
        lines = [s.replace(b"</init>", b"") for s in lines]
    elif how == "drop_close_file":
        lines = [s for s in lines if b"</LesHouchesEvents" not in s]
    elif how == "event_attr":
        lines[i] = lines[i].replace(b"<event", b'<event bogus="1" x=\'<\'', 1)
    elif how == "init_attr":
        lines[init] = lines[init].replace(b"<init", b'<init unknown="2"', 1)
    elif how == "file_attr":
        lines[0] = lines[0].replace(b"<LesHouchesEvents", b'<LesHouchesEvents foo="bar"', 1)
    elif how == "event_in_init":
        lines.insert(init + 1, b"<event>\n")
    elif how == "self_closing":
        lines[i] = b"<event/>\n"
    elif how == "misspell_close":
        lines[j] = lines[j].replace(b"</event>", b"</evnet>")
    elif how == "comment":
        lines.insert(rng.randrange(init, len(lines)), b"<!-- a comment </event> <event> -->\n")
    elif how == "empty_event":
        lines.insert(j + 1, b"<event>\n</event>\n")
    elif how == "drop_open_event":
        del lines[i]
    elif how == "cdata":
        lines.insert(j, b"<![CDATA[ 1 2 3 ]]>\n")
    elif how == "rwgt_junk":
        lines.insert(j, b"<rwgt>\n<wgt id='a'>nan</wgt>\n<wgt id=\"b\">1e999</wgt>\n<wgt id='c'></wgt>\n</rwgt>\n")
    return b"".join(lines)


def _mutate_text(kind: str, rng: random.Random, data: bytes) -> bytes:
    if kind == "truncate":
        return data[:_position(rng, data)]
    if kind == "flip":
        return _flip(rng, data)
    if kind == "swap_fields":
        return _swap_fields(rng, data)
    if kind in ("delete_line", "duplicate_line"):
        lines = _lines(data)
        i = _line_index(rng, lines, data)
        if kind == "delete_line":
            del lines[i]
        else:
            lines.insert(i, lines[i])
        return b"".join(lines)
    if kind == "bad_number":
        return _bad_number(rng, data)
    if kind == "break_tag":
        return _break_tag(rng, data)
    raise ValueError(kind)


def mutated(base: bytes, kind: str, seed: int) -> tuple[bytes, str]:
    """(bytes, suffix) of mutation ``kind`` of ``base`` drawn with ``seed``: replays exactly."""
    rng = random.Random(seed)
    if kind in GZIP_KINDS:
        packed = gzip.compress(base, mtime=0)
        if kind == "gz_truncate":
            return packed[:rng.randrange(2, len(packed))], ".lhe.gz"
        b = bytearray(packed)
        for _ in range(rng.choice((1, 1, 2))):
            b[rng.randrange(2, len(b))] = rng.randrange(256)  # the magic stays: read as gzip
        return bytes(b), ".lhe.gz"
    if kind.endswith("+gz"):
        return gzip.compress(_mutate_text(kind[:-3], rng, base), mtime=0), ".lhe.gz"
    return _mutate_text(kind, rng, base), ".lhe"


# ---------------------------------------------------------------------------- the outcomes


class _Hang(BaseException):
    """Raised by the alarm: not an Exception, so no handler in the reader can swallow it."""


def _alarm(signum, frame):
    raise _Hang()


def _check_error(err: InputError, path: Path, where: str) -> None:
    msg = str(err)
    assert msg and "\n" not in msg and "\r" not in msg, f"{where}: error message is not one line: {msg!r}"
    assert path.name in msg, f"{where}: error does not name the file: {msg!r}"


def _check_content(content, data: bytes, where: str) -> int:
    """The read events are finite and consistent with each other and the file; returns N."""
    sample = content.sample
    assert isinstance(sample, EventSample), where
    n = len(sample)
    assert n <= data.count(b"<event"), f"{where}: {n} events from {data.count(b'<event')} <event> tags"
    assert sample.weight.shape == (n,) and np.isfinite(sample.weight).all(), f"{where}: weights"
    assert len(content.particles) == n, f"{where}: particles for {len(content.particles)} of {n} events"
    n_final = 0
    for name, coll in sample.collections.items():
        assert len(coll) == n, f"{where}: {name} has {len(coll)} events of {n}"
        flat = ak.to_numpy(ak.flatten(coll[["pt", "eta", "phi", "mass"]], axis=1))
        values = np.stack([flat[f] for f in ("pt", "eta", "phi", "mass")])
        assert np.isfinite(values).all(), f"{where}: non-finite {name} momenta read without an error"
        assert (values[0] >= 0).all(), f"{where}: negative pT in {name}"
        n_final += len(flat)
    rows = ak.to_numpy(ak.flatten(content.particles, axis=1))
    status = rows["status"]
    for f in ("px", "py", "pz", "e", "m", "vtimup", "spinup"):
        assert np.isfinite(rows[f]).all(), f"{where}: non-finite {f} in a particle line read without an error"
    assert n_final == int((status == 1).sum()), f"{where}: {n_final} objects from {(status == 1).sum()} final-state lines"
    for key in ("cross_section_pb", "cross_section_error_pb"):
        assert np.isfinite(float(sample.info.get(key, 0.0))), f"{where}: {key} = {sample.info[key]}"
    for k, v in content.weights.items():
        assert v.shape == (n,) and np.isfinite(v[~np.isnan(v)]).all(), f"{where}: weight variation {k!r}"
    return n


def _read(entry: str, path: Path, data: bytes, where: str) -> tuple[str, int | None, str | None]:
    """Read ``path`` through one public entry point: ('ok', N, None) or ('error', None, message)."""
    where = f"{where} {entry}"
    try:
        if entry == "load_lhe":
            n = _check_content(load_lhe(path), data, where)
        elif entry == "read_lhe":
            sample = read_lhe(path)
            n = len(sample)
            assert np.isfinite(sample.weight).all(), f"{where}: weights"
            sample.check_finite(str(path))  # an InputError here: read_lhe returned non-finite momenta
        else:
            n = sum(_check_content(chunk, data, where) for chunk in iterate_lhe(path, step_size=3))
    except InputError as err:
        _check_error(err, path, where)
        return "error", None, str(err)
    return "ok", n, None


def check_mutation(path: Path, data: bytes, where: str, entries=ENTRIES) -> str:
    """Read ``path`` through ``entries``: all end alike in 'ok' (same N) or 'error' (one line,
    naming the file), else an AssertionError naming ``where``."""
    results = {entry: _read(entry, path, data, where) for entry in entries}
    outcomes = {(o, n) for o, n, _ in results.values()}
    assert len(outcomes) == 1, f"{where}: the entry points disagree: {results}"
    return outcomes.pop()[0]


def run_mutation(tmp: Path, bases: dict[str, bytes], base: str, kind: str, seed: int, entries=ENTRIES) -> str:
    """Write and read one mutation; any failure is an AssertionError carrying its replay."""
    data, suffix = mutated(bases[base], kind, seed)
    path = tmp / f"mutant{suffix}"
    path.write_bytes(data)
    where = f"mutation (base={base!r}, kind={kind!r}, seed={seed})"
    text = bases[base] if kind in GZIP_KINDS else gzip.decompress(data) if kind.endswith("+gz") else data
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, SECONDS_PER_MUTATION)
    try:
        return check_mutation(path, text, where, entries)
    except AssertionError:
        raise
    except _Hang:
        raise AssertionError(f"{where}: no result after {SECONDS_PER_MUTATION} s (a hang)") from None
    except BaseException as err:  # a traceback from inside the reader or a library under it
        frame = traceback.extract_tb(err.__traceback__)[-1]
        raise AssertionError(
            f"{where}: {type(err).__name__}: {str(err)[:200]} (at {Path(frame.filename).name}:{frame.lineno})"
        ) from err
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ---------------------------------------------------------------------------- the tests


def test_bases_read_cleanly(bases, tmp_path):
    """Unmutated, every base (plain and gzip) reads its events: the fuzz starts from good files."""
    for name, data in bases.items():
        for suffix, raw in ((".lhe", data), (".lhe.gz", gzip.compress(data, mtime=0))):
            path = tmp_path / f"{name}{suffix}"
            path.write_bytes(raw)
            assert check_mutation(path, data, name) == "ok"
            assert len(read_lhe(path)) == N_EVENTS


@pytest.mark.slow
def test_fuzz_lhe_reader(bases, tmp_path):
    """N_MUTATIONS seeded mutations: each a clean read or one clear InputError (see module docstring)."""
    rng = random.Random(MASTER_SEED)
    names = sorted(bases)
    tally: Counter = Counter()
    failures: dict[str, str] = {}
    for i in range(N_MUTATIONS):
        base, kind = names[i % len(names)], KINDS[rng.randrange(len(KINDS))]
        seed = MASTER_SEED * 1_000_000 + i
        try:
            entries = ENTRIES if i % CROSS_CHECK_EVERY == 0 else (ENTRIES[i % len(ENTRIES)],)
            outcome = run_mutation(tmp_path, bases, base, kind, seed, entries)
        except AssertionError as err:
            key = re.sub(r"\d+", "N", str(err).split(": ", 1)[-1])[:120]  # one report per kind of hole
            failures.setdefault(key, str(err))
            outcome = "FAILED"
        tally[kind, outcome] += 1
    assert not failures, f"{len(failures)} distinct holes:\n" + "\n".join(failures.values())
    assert sum(tally.values()) == N_MUTATIONS
    for kind in KINDS:  # every kind ran and reached the reader's error paths
        assert sum(c for (k, o), c in tally.items() if k == kind) > 0, kind
    assert sum(c for (k, o), c in tally.items() if o == "ok") > 0.05 * N_MUTATIONS


# Mutations that found distinct holes in the reader; each failed before it was fixed.
REGRESSIONS = [
    pytest.param("hepgen", "gz_flip", 12000332, id="corrupt-gzip-zlib-error"),
    pytest.param("powheg", "gz_flip", 12000007, id="corrupt-gzip-distance-too-far"),
    pytest.param("hepgen", "bad_number", 12000088, id="nan-pdgid-cast-warning"),
    pytest.param("powheg", "bad_number", 5000043, id="huge-momentum-overflow-warning"),
    pytest.param("hepgen", "bad_number", 5000500, id="nan-pz-of-an-intermediate-particle"),
    pytest.param("hepgen", "bad_number", 12000804, id="nan-spinup"),
    pytest.param("powheg", "bad_number", 952, id="nan-cross-section-in-init"),
]


@pytest.mark.parametrize("base,kind,seed", REGRESSIONS)
def test_fuzz_regression(bases, tmp_path, base, kind, seed):
    if base not in bases:
        pytest.skip(f"fixture {FIXTURE_FILES[base]} absent (needs ../shared/fixtures beside the checkout)")
    run_mutation(tmp_path, bases, base, kind, seed)


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_damaged_gzip_is_one_line(bases, tmp_path, damage):
    packed = gzip.compress(bases["hepgen"], mtime=0)
    if damage == "truncated":
        packed = packed[: len(packed) // 2]
    else:  # zlib.error inside the deflate stream
        packed = packed[:10] + bytes(b ^ 0x5A for b in packed[10:40]) + packed[40:]
    path = tmp_path / "damaged.lhe.gz"
    path.write_bytes(packed)
    for read in (load_lhe, read_lhe, lambda p: list(iterate_lhe(p))):
        with pytest.raises(InputError) as err:
            read(path)
        assert "\n" not in str(err.value) and str(err.value).startswith(str(path))
        assert "cannot read" in str(err.value) or "truncated" in str(err.value)
