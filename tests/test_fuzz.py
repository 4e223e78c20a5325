"""Fuzzing the data entry points: AudioSet segment lists, the FSD metadata tables, class lists,
a clip store's own files and the audio decoder.

The property is the same for each: the input is either accepted, and then what comes out holds
the invariants the rest of psl relies on, or refused with the module's own error whose message
names the file (and line); never an unrelated exception from deep inside csv, json, numpy or a
resampler. Each crash the fuzzer found is kept as an explicit `@example`.

The default profile (`psl`) runs 150 examples per target (45 for the two that run an ingest),
under a minute in all on two cores; `HYPOTHESIS_PROFILE=soak pytest tests/test_fuzz.py` runs 40
times as many (about a quarter of an hour). Inputs follow the suite's seed (PSL_TEST_SEED, shown in the
header), so a failing run can be repeated; `--hypothesis-show-statistics` shows how many inputs
each target accepted and refused.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile
from hypothesis import HealthCheck, event, example, given, seed, settings
from hypothesis import strategies as st

from conftest import SEED
from layouts import tone
from psl.data.audio import AudioError, decode
from psl.data.audioset import read_segments, source_clips
from psl.data.classes import ClassList
from psl.data.fsd import fsd50k_classes, ingest_fsd50k, ingest_fsdkaggle2018
from psl.data.ingest import IngestError
from psl.data.store import ClipStore, StoreWriter, manifest_sha256

settings.register_profile(
    "psl", max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("soak", settings.get_profile("psl"), max_examples=6000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "psl"))


def share(fraction: float) -> settings:
    """The loaded profile with `fraction` of its examples, for targets that cost a process pool."""
    return settings(max_examples=max(5, int(settings.default.max_examples * fraction)))


# Values that trip naive parsers: separators, quotes, NUL, a BOM, numbers that are not finite or
# do not fit, paths that leave the folder, a name too long for the file system, a field over
# csv's size limit.
TRICKY = [
    "",
    " ",
    ",",
    '"',
    "#",
    ";",
    "\x00",
    "\n",
    "\ufeff",
    "nan",
    "inf",
    "-inf",
    "1e400",
    "-1",
    "9" * 30,
    "../outside",
    "/etc/passwd",
    "a" * 300,
    "x" * 140_000,
]
FIELD = st.one_of(
    st.sampled_from(TRICKY),
    st.text(max_size=8),
    st.integers(-3, 30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


def mutate(data: bytes, how: str, where: float, junk: bytes) -> bytes:
    """`data` cut at, or spliced with `junk` at, the fraction `where`; or re-encoded."""
    at = int(where * len(data))
    if how == "cut":
        return data[:at]
    if how == "splice":
        return data[:at] + junk + data[at:]
    if how == "latin-1":
        return data.decode("utf-8", "replace").replace("a", "\xe9").encode("latin-1", "replace")
    if how == "bom":
        return b"\xef\xbb\xbf" + data
    return data


BYTE_DAMAGE = st.tuples(
    st.sampled_from(["keep"] * 5 + ["cut", "splice", "latin-1", "bom"]),
    st.floats(0, 1),
    st.binary(min_size=1, max_size=8),
)


def mutated(data: bytes) -> st.SearchStrategy:
    return BYTE_DAMAGE.map(lambda damage: mutate(data, *damage))


@st.composite
def csv_bytes(draw, header: list[str] | None, rows: st.SearchStrategy, damaged: bool = True) -> bytes:
    """A CSV file of the drawn `rows` under `header`: quoted properly or naively joined, then, if
    `damaged`, maybe cut, spliced with random bytes or re-encoded."""
    rows = ([header] if header is not None else []) + draw(rows)
    if draw(st.integers(0, 3)):
        out = io.StringIO()
        csv.writer(out).writerows(rows)
        text = out.getvalue()
    else:
        text = "\n".join(",".join(r) for r in rows) + draw(st.sampled_from(["", "\n", "\r\n"]))
    return draw(mutated(text.encode())) if damaged else text.encode()


def mostly(values: list[str]) -> st.SearchStrategy:
    """One of `values` eight times in nine, else a fuzzed field."""
    return st.integers(0, 8).flatmap(lambda k: st.sampled_from(values) if k else FIELD)


def any_row(columns: int) -> st.SearchStrategy:
    """Rows of about `columns` fuzzed fields."""
    return st.integers(max(0, columns - 1), columns + 1).flatmap(lambda n: st.lists(FIELD, min_size=n, max_size=n))


def rows_of(good: st.SearchStrategy, columns: int) -> st.SearchStrategy:
    """1 to 6 rows, most of them `good`."""
    return st.lists(st.integers(0, 9).flatmap(lambda k: good if k else any_row(columns)), min_size=1, max_size=6)


def table(header: list[str], columns: list[list[str]]) -> st.SearchStrategy:
    """A metadata table (undamaged bytes) whose rows take each field from `columns`: half the
    time only such rows, else with fuzzed fields and rows among them. One bad row refuses a whole
    file, so the clean half is what reaches the invariants of a finished ingest."""
    clean = st.lists(st.tuples(*map(st.sampled_from, columns)).map(list), min_size=1, max_size=6)
    noisy = rows_of(st.tuples(*map(mostly, columns)).map(list), len(columns))
    return st.one_of(clean, noisy).flatmap(lambda rows: csv_bytes(header, st.just(rows), damaged=False))


def edit(rows: list[list[str]], edits: list[tuple[str, int, int, str]]) -> list[list[str]]:
    """`rows` with fields replaced, rows dropped or repeated, or cells cut or added; the indices
    wrap around."""
    rows = [list(r) for r in rows]
    for how, r, c, value in edits:
        if not rows:
            break
        r %= len(rows)
        if how == "field" and rows[r]:
            rows[r][c % len(rows[r])] = value
        elif how == "drop":
            del rows[r]
        elif how == "repeat":
            rows.insert(r, list(rows[r]))
        elif how == "cut-cell":
            rows[r] = rows[r][:-1]
        elif how == "add-cell":
            rows[r].append(value)
    return rows


EDIT = st.tuples(
    st.sampled_from(["field", "field", "drop", "repeat", "cut-cell", "add-cell"]),
    st.integers(0, 10),
    st.integers(0, 10),
    st.sampled_from(["-1", "0", "3", "200", "2;1", "1;;2", "9" * 25, "c0", ""]) | FIELD,
)


def edited(rows: list[list[str]]) -> st.SearchStrategy:
    return st.lists(EDIT, max_size=3).map(lambda edits: edit(rows, edits))


def check_refusal(error: Exception, *paths: Path, line: bool = False) -> None:
    """The message names one of `paths` (as `path:line:` when `line`)."""
    message = str(error)
    event(f"refused: {type(error).__name__}")
    assert any(str(p) in message for p in paths), message
    if line:
        assert re.search("|".join(rf"{re.escape(str(p))}:\d+: \S" for p in paths), message), message


def fuzz(test):
    """`@given` tests follow the suite's seed."""
    return seed(SEED)(test)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """Per-example folders go below this one (hypothesis runs one fixture for many examples)."""
    return tmp_path_factory.mktemp("fuzz")


def fresh(scratch: Path) -> Path:
    """An empty folder for one example. The previous example's goes (a soak makes thousands); the
    last one stays, for a look after a failure."""
    for old in scratch.glob("example-*"):
        shutil.rmtree(old)
    return Path(tempfile.mkdtemp(prefix="example-", dir=scratch))


# --- AudioSet segment lists --------------------------------------------------------------------

NUMBER = mostly(["30.000", "0", "10.5", "1e3"])
SEGMENT = st.tuples(mostly(["abc", "Y-x_1", "", " q "]), NUMBER, NUMBER, mostly(["/m/a", "/m/a,/m/b", "/m/c"])).map(
    list
)


@fuzz
@given(data=csv_bytes(None, rows_of(SEGMENT, 4)))
@example(data=b"\x80")  # UnicodeDecodeError
@example(data=b'abc, nan, 1, "/m/a"')  # ValueError from int(nan) while naming the files
@example(data=b'abc, inf, 1, "/m/a"')  # OverflowError, the same
@example(data=b', 0, 1, "/m/a"')  # an empty YTID became a clip id
@example(data=b'abc, 0, 1, "' + b"x" * 140_000 + b'"')  # csv.Error: field larger than field limit
def test_segment_lists_parse_or_name_the_line(scratch, data):
    path = fresh(scratch) / "balanced_train_segments.csv"
    path.write_bytes(data)
    try:
        segments = read_segments(path)
    except IngestError as error:
        check_refusal(error, path, line=True)
        return
    event("accepted")
    classes = ClassList(("/m/a", "/m/b"), ("A", "B"))
    clips = source_clips(segments, classes, {"abc": path})
    for segment, clip in zip(segments, clips):
        assert segment.ytid and segment.ytid == segment.ytid.strip()
        assert 0 <= float(segment.start) <= float(segment.end) < np.inf
        assert all(m and m == m.strip() and "," not in m for m in segment.mids)
        usable = segment.ytid == "abc" and bool(segment.mids) and set(segment.mids) <= {"/m/a", "/m/b"}
        assert (clip.problem is None) == usable


# --- class lists -------------------------------------------------------------------------------


@st.composite
def class_list_csv(draw) -> bytes:
    header = draw(st.sampled_from([["index", "id", "name"], ["index", "mid", "display_name"], ["idx", "id"]]))
    ids = draw(st.lists(mostly(["/m/a", "/m/b", "c"]), max_size=5))
    return draw(csv_bytes(header, edited([[str(i), cid, draw(FIELD)] for i, cid in enumerate(ids)])))


def check_class_list(classes: ClassList) -> None:
    event("accepted")
    assert len(classes.ids) == len(classes.names) == len(set(classes.ids))
    assert all(classes.ids)


@fuzz
@given(data=class_list_csv())
@example(data=b"index,id,n\xe9me\r\n")  # UnicodeDecodeError
@example(data=b"index,id,name\r\n0,/m/a,\r\n1,/m/a,\r\n")  # duplicate ids: a ValueError without the file
@example(data=b"index,id,name\n0,,A\n")  # an empty class id was accepted
def test_class_lists_parse_or_name_the_file(scratch, data):
    path = fresh(scratch) / "classes.csv"
    path.write_bytes(data)
    try:
        classes = ClassList.read_csv(path)
    except ValueError as error:
        check_refusal(error, path)
        return
    check_class_list(classes)
    path.write_text(classes.csv_text())
    assert ClassList.read_csv(path) == classes


# --- FSD50K and FSDKaggle2018 metadata ---------------------------------------------------------

ROOT = "{root}"  # stands for the example's folder in file names of the metadata
VOCABULARY = [["0", "Bark", "/m/a"], ["1", "Music", "/m/b"]]
GOOD_VOCABULARY = b"0,Bark,/m/a\n1,Music,/m/b\n"


def write_audio(path: Path, seconds: float = 0.3) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, tone(seconds, 16000), 16000)


def write_tables(folder: Path, root: Path, tables: dict[str, bytes], broken=None) -> dict[str, list[str]]:
    """Writes the metadata files, the one `broken` names damaged, and returns, per file, the first
    field of each row after the header, as a plain CSV reader sees it (nothing when it cannot)."""
    folder.mkdir(parents=True)
    listed = {}
    for name, data in tables.items():
        data = data.replace(ROOT.encode(), str(root).encode())
        if broken and broken[0] == name:
            data = mutate(data, *broken[1])
        (folder / name).write_bytes(data)
        try:
            listed[name] = [r[0] for r in csv.reader(io.StringIO(data.decode("utf-8-sig"))) if r][1:]
        except (UnicodeDecodeError, csv.Error):
            listed[name] = []
    return listed


def escapes(name: str) -> bool:
    """Whether a file name from the metadata points outside the folder it is relative to."""
    return os.path.isabs(name) or ".." in Path(name).parts


def check_fsd_results(results: dict, listed: dict[str, list[str]]) -> None:
    """Stored clips are listed for their split, were named by files inside the audio folders, are
    in one split only, and read back."""
    event("stored")
    seen: set[str] = set()
    for split, result in results.items():
        store = result.store
        assert not seen & set(store.ids)
        seen |= set(store.ids)
        assert set(store.ids) <= set(listed[split])
        assert not any(escapes(source) for source in store.sources)
        for i in range(len(store)):
            assert len(store.read(i)) == store.num_samples[i] > 0
        check_class_list(store.classes)


# One name in six escapes; such a row is skipped, but a split with nothing else in it fails the
# ingest, so usable rows must be common for the invariants to be reached. The dev and eval folders
# hold different clips: a clip id in two splits is skipped too.
ESCAPES = ["../outside", f"{ROOT}/outside", "x/../../outside"]
DEV_NAMES, EVAL_NAMES = ["1", "2", "3", "4"], ["5", "6", "7", "8"]
MIDS = ["/m/a", "/m/b", "/m/a,/m/b", "/m/a", "/m/b", ""]
DEV_TABLE = table(
    ["fname", "labels", "mids", "split"],
    [DEV_NAMES * 3 + ESCAPES, ["Bark", "Bark,Music"], MIDS, ["train"] * 3 + ["val"]],
)
EVAL_TABLE = table(["fname", "labels", "mids"], [EVAL_NAMES * 3 + ESCAPES, ["Bark", "Bark,Music"], MIDS])
DEV_HEADER, EVAL_HEADER = b"fname,labels,mids,split\n", b"fname,labels,mids\n"


def fsd50k_case(dev: bytes = b"", evaluation: bytes = b"", vocabulary: bytes = GOOD_VOCABULARY):
    """An explicit example: rows of dev.csv and eval.csv below their headers."""
    return example(vocabulary=vocabulary, dev=DEV_HEADER + dev, evaluation=EVAL_HEADER + evaluation, broken=None)


@fuzz
@share(0.3)
@given(
    vocabulary=st.integers(0, 3).flatmap(
        lambda k: csv_bytes(None, edited(VOCABULARY), damaged=False) if k == 0 else st.just(GOOD_VOCABULARY)
    ),
    dev=DEV_TABLE,
    evaluation=EVAL_TABLE,
    broken=st.none() | st.tuples(st.sampled_from(["vocabulary.csv", "dev.csv", "eval.csv"]), BYTE_DAMAGE),
)
@fsd50k_case(vocabulary=b"0,B\xe9rk,/m/a\n")  # UnicodeDecodeError
@fsd50k_case(b"1,Music,/m/b,train\n", vocabulary=b"0,Bark,\n1,Music,/m/b\n")  # '' became a class id
@fsd50k_case(evaluation=b"11,Bark\n")  # AttributeError on a short row
@fsd50k_case(b"x" * 300 + b",Bark,/m/a,train\n1,Bark,/m/a,train\n")  # OSError: file name too long
@fsd50k_case(b"1,Bark,/m/a,train\n1,Bark,/m/a,val\n2,Bark,/m/a,val\n")  # a clip in train and in val
@fsd50k_case(b"../outside,Bark,/m/a,train\n1,Bark,/m/a,train\n", b"{root}/outside,Bark,/m/a\n11,Bark,/m/a\n")  # read
def test_fsd50k_metadata_ingests_or_names_the_file(scratch, vocabulary, dev, evaluation, broken):
    root = fresh(scratch)
    truth = root / "FSD50K.ground_truth"
    write_audio(root / "outside.wav")
    for folder, names in (("FSD50K.dev_audio", DEV_NAMES), ("FSD50K.eval_audio", EVAL_NAMES)):
        for name in names:
            write_audio(root / folder / f"{name}.wav")
    tables = {"vocabulary.csv": vocabulary, "dev.csv": dev, "eval.csv": evaluation}
    listed = write_tables(truth, root, tables, broken)
    try:
        results = ingest_fsd50k(root, root / "out", workers=1, progress=False)
    except (IngestError, ValueError) as error:
        check_refusal(error, truth / "vocabulary.csv", truth / "dev.csv", truth / "eval.csv", root / "out")
        return
    check_fsd_results(results, {"train": listed["dev.csv"], "val": listed["dev.csv"], "eval": listed["eval.csv"]})


@fuzz
@given(data=csv_bytes(None, edited(VOCABULARY)))
def test_fsd50k_vocabulary_parses_or_names_the_file(scratch, data):
    root = fresh(scratch)
    write_tables(root / "FSD50K.ground_truth", root, {"vocabulary.csv": data})
    try:
        classes = fsd50k_classes(root)
    except (IngestError, ValueError) as error:
        check_refusal(error, root / "FSD50K.ground_truth" / "vocabulary.csv")
        return
    check_class_list(classes)


TRAIN_NAMES, TEST_NAMES = [f"{c}.wav" for c in "abcdefgh"], [f"{c}.wav" for c in "stuvwxyz"]
LABELS = ["Bark", "Cello", "Bark", "Cello", ""]
TRAIN_TABLE = table(
    ["fname", "label", "manually_verified"], [TRAIN_NAMES * 2 + [f"{e}.wav" for e in ESCAPES], LABELS, ["0", "1"]]
)
TEST_TABLE = table(
    ["fname", "label", "usage"], [TEST_NAMES * 2 + [f"{e}.wav" for e in ESCAPES], LABELS, ["Public", "Private"]]
)
TRAIN_HEADER, TEST_HEADER = b"fname,label,manually_verified\n", b"fname,label,usage\n"
KAGGLE_TABLES = ["train_post_competition.csv", "test_post_competition_scoring_clips.csv"]


def kaggle_case(train: bytes, test: bytes = b""):
    """An explicit example: rows of the train and test tables below their headers."""
    return example(train=TRAIN_HEADER + train, test=TEST_HEADER + test, broken=None)


@fuzz
@share(0.3)
@given(
    train=TRAIN_TABLE,
    test=TEST_TABLE,
    broken=st.none() | st.tuples(st.sampled_from(KAGGLE_TABLES), BYTE_DAMAGE),
)
@kaggle_case(b"a.wav,B\xe9rk,1\n")  # UnicodeDecodeError
@kaggle_case(b"a.wav\nb.wav,Bark,1\n")  # TypeError: the label None sorted with the others
@kaggle_case(b"a.wav,,1\nb.wav,Bark,1\n")  # '' became a class
@kaggle_case(b"b.wav,Bark,1\n", b"../outside.wav,Bark,x\ns.wav,Bark,x\n")  # read a file outside the dataset
def test_fsdkaggle2018_metadata_ingests_or_names_the_file(scratch, train, test, broken):
    root = fresh(scratch)
    meta = root / "FSDKaggle2018.meta"
    write_audio(root / "outside.wav")
    for folder, names in (("FSDKaggle2018.audio_train", TRAIN_NAMES), ("FSDKaggle2018.audio_test", TEST_NAMES)):
        for name in names:
            write_audio(root / folder / name)
    tables = dict(zip(KAGGLE_TABLES, (train, test)))
    listed = write_tables(meta, root, tables, broken)
    try:
        results = ingest_fsdkaggle2018(root, root / "out", val_fraction=0.5, workers=1, progress=False)
    except (IngestError, ValueError) as error:
        check_refusal(error, *(meta / name for name in tables), root / "out")
        return
    train_stems, test_stems = ([Path(f).stem for f in listed[name]] for name in KAGGLE_TABLES)
    check_fsd_results(results, {"train": train_stems, "val": train_stems, "eval": test_stems})


# --- a clip store's own files ------------------------------------------------------------------

CLASSES = ClassList(("/m/a", "/m/b", "/m/c"), ("A", "B", "C"))
STORE_FILES = ["manifest.csv", "classes.csv", "store.json", "audio.i16"]


@pytest.fixture(scope="module")
def base_store(scratch) -> Path:
    writer = StoreWriter(scratch / "base", CLASSES, extra_fields=("manually_verified",))
    rng = np.random.default_rng(0)
    for i in range(4):
        samples = rng.integers(-32768, 32767, 200 + 50 * i, dtype=np.int16)
        writer.append(f"c{i}", samples, [i % 3], f"c{i}.wav", {"manually_verified": str(i % 2)})
    return writer.finish({"dataset": "fuzz"}).path


def read_csv_rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def rehash(store: Path) -> None:
    """Makes store.json's hash agree with an edited manifest and class list, where both still parse
    as a store writes them, so that the checks behind the hash get fuzzed too."""
    try:
        rows = read_csv_rows(store / "manifest.csv")[1:]
        classes = read_csv_rows(store / "classes.csv")[1:]
        digest = manifest_sha256(
            [r[0] for r in rows],
            [int(r[2]) for r in rows],
            [[int(v) for v in r[3].split(";") if v] for r in rows],
            ClassList(tuple(r[1] for r in classes), tuple(r[2] for r in classes)),
        )
    except (ValueError, IndexError, csv.Error):
        return
    meta = json.loads((store / "store.json").read_text())
    meta["manifest_sha256"] = digest
    (store / "store.json").write_text(json.dumps(meta))


def damage(store: Path, how: tuple) -> None:
    """Applies one drawn damage: ("bytes", file, byte damage), ("rows", file, edits, rehash),
    ("meta", key, value) or ("meta-text", text)."""
    kind, *args = how
    if kind == "bytes":
        path = store / args[0]
        path.write_bytes(mutate(path.read_bytes(), *args[1]))
    elif kind == "rows":
        path = store / args[0]
        rows = read_csv_rows(path)
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows(rows[:1] + edit(rows[1:], args[1]))
        if args[2]:
            rehash(store)
    elif kind == "meta":
        meta = json.loads((store / "store.json").read_text())
        meta[args[0]] = args[1]
        (store / "store.json").write_text(json.dumps(meta))
    else:
        (store / "store.json").write_text(args[0])


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
META_KEYS = ["format", "version", "sample_rate", "num_clips", "num_samples", "manifest_sha256", "other"]
DAMAGE = st.one_of(
    st.tuples(st.just("bytes"), st.sampled_from(STORE_FILES), BYTE_DAMAGE),
    st.tuples(
        st.just("rows"),
        st.sampled_from(["manifest.csv", "classes.csv"]),
        st.lists(EDIT, min_size=1, max_size=3),
        st.booleans(),
    ),
    st.tuples(st.just("meta"), st.sampled_from(META_KEYS), JSON),
    st.tuples(
        st.just("meta-text"),
        st.sampled_from(["{", "", "[]", "null", "1"]) | st.integers(1, 5000).map(lambda n: "[" * n),
    ),
)


@fuzz
@given(how=DAMAGE)
@example(how=("rows", "manifest.csv", [("field", 0, 3, "c0")], False))  # bare ValueError from int()
@example(how=("rows", "manifest.csv", [("field", 0, 1, "9" * 25)], True))  # OverflowError in numpy
@example(how=("rows", "manifest.csv", [("field", 0, 1, "-1")], True))  # a negative offset: reads failed with EINVAL
@example(how=("rows", "manifest.csv", [("field", 3, 2, "-1")], True))  # a negative length: reads IndexError
@example(how=("rows", "manifest.csv", [("field", 0, 3, "7")], True))  # opened; label_matrix IndexError
@example(how=("rows", "manifest.csv", [("field", 1, 1, "0")], True))  # overlapping clips were accepted
@example(how=("rows", "classes.csv", [("field", 0, 1, "/m/b")], True))  # duplicate class ids, file not named
@example(how=("bytes", "audio.i16", ("cut", 0.5, b"x")))  # opened; reads failed with a short read later
@example(how=("bytes", "manifest.csv", ("latin-1", 0.0, b"x")))  # UnicodeDecodeError
@example(how=("meta-text", "[" * 5000))  # RecursionError
@example(how=("meta-text", "[]"))  # AttributeError: 'list' object has no attribute 'get'
@example(how=("meta-text", "{"))  # JSONDecodeError without the file
@example(how=("meta", "sample_rate", "16000"))  # opened; duration() raised TypeError
def test_a_damaged_store_opens_sound_or_names_the_file(scratch, base_store, how):
    store = fresh(scratch) / "train"
    shutil.copytree(base_store, store)
    damage(store, how)
    try:
        opened = ClipStore(store)
    except (ValueError, FileNotFoundError) as error:
        check_refusal(error, *(store / name for name in STORE_FILES))
        return
    event("opened")
    n = len(opened)
    assert len(opened.offsets) == len(opened.num_samples) == len(opened.labels) == len(opened.sources) == n
    assert len(set(opened.ids)) == n
    assert opened.offsets.tolist() == np.cumsum([0, *opened.num_samples[:-1]]).tolist()  # back to back
    assert opened.label_matrix().shape == (n, len(opened.classes))
    for i in range(n):
        assert len(opened.read(i)) == opened.num_samples[i]
        assert opened.duration(i) >= 0


# --- the audio decoder -------------------------------------------------------------------------


def encoded(fmt: str, subtype: str, seconds: float = 0.25, rate: int = 16000, channels: int = 1) -> bytes:
    out = io.BytesIO()
    soundfile.write(out, tone(seconds, rate, channels), rate, format=fmt, subtype=subtype)
    return out.getvalue()


VALID = {
    "wav16": encoded("WAV", "PCM_16"),
    "wav-float": encoded("WAV", "FLOAT", channels=2),
    "flac": encoded("FLAC", "PCM_16", rate=44100),
    "ogg": encoded("OGG", "VORBIS", rate=22050),
}


def wav_header(fmt_tag: int, channels: int, rate: int, bits: int, data_size: int, payload: bytes) -> bytes:
    """A canonical 44-byte RIFF/WAVE header with whatever values it is given, then `payload`."""
    block = (channels * bits // 8) & 0xFFFF
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, (rate * block) & 0xFFFFFFFF, block, bits)
    riff = struct.pack("<I", (36 + len(payload)) & 0xFFFFFFFF)
    return b"RIFF" + riff + b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", data_size) + payload


def plausible(values: list[int], bits: int) -> st.SearchStrategy:
    """One of `values` eight times in nine, else any unsigned `bits`-bit integer."""
    return st.integers(0, 8).flatmap(lambda k: st.sampled_from(values) if k else st.integers(0, 2**bits - 1))


ABSURD_WAV = st.builds(
    wav_header,
    plausible([1, 3, 6, 7, 0xFFFE], 16),  # PCM, float, A-law, mu-law, extensible
    plausible([1, 2, 6, 1024, 0xFFFF], 16),
    plausible([7350, 11127, 16000, 96000, 1, 0xFFFFFFFF], 32),
    plausible([8, 16, 24, 32, 64, 0], 16),
    plausible([0, 1, 100, 3000, 0xFFFFFFFF], 32),
    st.binary(max_size=3000),
)
AUDIO_BYTES = st.one_of(
    st.binary(max_size=2000),
    st.tuples(st.sampled_from([b"RIFF", b"fLaC", b"OggS", b"ID3\x03", b"FORM"]), st.binary(max_size=500)).map(b"".join),
    st.sampled_from(sorted(VALID)).flatmap(lambda name: mutated(VALID[name])),
    ABSURD_WAV,
)
# Two float channels at the largest float32: their sum overflowed to Inf in the downmix.
HUGE_FLOATS = wav_header(3, 2, 16000, 32, 800, np.full(200, 3.4e38, "<f4").tobytes())


@fuzz
@given(data=AUDIO_BYTES)
@example(data=HUGE_FLOATS)  # Inf samples came out of a file of finite ones
@example(data=wav_header(1, 1, 11127, 16, 3000, bytes(3000)))  # a 3.4-GB resampling kernel
@example(data=wav_header(1, 1, 0xFFFFFFFF, 16, 3000, bytes(3000)))  # an absurd rate
def test_decoding_fuzzed_bytes_gives_sane_samples_or_an_audio_error(scratch, data):
    path = fresh(scratch) / "clip.wav"
    path.write_bytes(data)
    try:
        samples = decode(path)
    except AudioError as error:
        event(f"refused: {str(error).split(':')[0]}")
        assert str(error)
        return
    event("decoded")
    assert samples.dtype == np.float32 and samples.ndim == 1 and len(samples) > 0
    assert np.isfinite(samples).all()
