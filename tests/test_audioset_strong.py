"""AudioSet's strong labels (`psl data audioset --strong FILE.tsv`): attached to the clips they name
as the strong.csv the missing-label analysis reads, with unknown segments and labels counted and
listed, and malformed rows named by file and line."""

import csv
import math

import pytest
from typer.testing import CliRunner

from layouts import audioset_layout, write_good
from psl.analysis import strong_events
from psl.cli import app
from psl.data.audioset import ingest_audioset
from psl.data.classes import audioset_classes
from psl.data.ingest import IngestError

runner = CliRunner()
HEADER = "segment_id\tstart_time_seconds\tend_time_seconds\tlabel\n"
SPEECH, MUSIC, ANIMAL = "/m/09x0r", "/m/04rlf", "/m/0jbk"


def tsv(path, *rows):
    path.write_text(HEADER + "".join("\t".join(row) + "\n" for row in rows))
    return path


def with_strong_labels(tmp_path):
    """The test layout (eval: yta... labelled Animal, ytb... Speech and Music) plus an eval clip whose
    YTID holds underscores, and the two strong-label files in the published format."""
    layout = audioset_layout(tmp_path / "as")
    write_good(layout["audio"] / "yt_u_1-x_30.000_40.000.wav", 2.0, 16000, 1)
    with open(layout["eval"], "a") as f:
        f.write('yt_u_1-x, 30.000, 40.000, "/m/09x0r"\n')
    evaluation = tsv(
        tmp_path / "audioset_eval_strong.tsv",
        ("yta0000000_30000", "0.000", "1.500", ANIMAL),
        ("yta0000000_30000", "0.200", "0.900", SPEECH),  # a class the weak label lacks
        ("yta0000000_30000", "1.000", "2.000", "/m/notaclass"),
        ("yt_u_1-x_30000", "0.5", "1.25", SPEECH),
        ("ytb0000001_0", "0.0", "1.0", SPEECH),  # another segment of a listed video
        ("ytnowhere_10000", "0.0", "1.0", SPEECH),
    )
    train = tsv(
        tmp_path / "audioset_train_strong.tsv",
        ("ytc0000002_30000", "0.100", "0.600", ANIMAL),
        ("ytmissing_30000", "0.0", "1.0", SPEECH),  # listed, but its audio is missing
    )
    return layout, [evaluation, train]


def test_strong_labels_become_the_strong_truth_of_their_clips(tmp_path):
    layout, strong = with_strong_labels(tmp_path)
    command = ["data", "audioset", "--segments", str(layout["balanced"]), "--segments", str(layout["eval"])]
    command += ["--labels", str(layout["classes"]), "--audio", str(layout["audio"]), "--out", str(tmp_path / "out")]
    command += ["--strong", str(strong[0]), "--strong", str(strong[1]), "--val-fraction", "0", "--workers", "1"]
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    assert (
        "strong labels: 8 rows, 4 events attached to 3 clips (balanced 1, eval 3); not attached: "
        "2 rows of 2 segments no list names, 1 rows of 1 labels not in the class list, 1 rows of skipped clips"
    ) in result.output

    from psl.data.store import ClipStore

    index = audioset_classes().index()
    store = ClipStore(tmp_path / "out" / "eval")
    events = strong_events(store)
    got = [(store.ids[e.clip], e.onset, e.offset, e.label, e.in_weak_label) for e in events]
    assert got == [
        ("yta0000000", 0.0, 1.5, index[ANIMAL], True),
        ("yta0000000", 0.2, 0.9, index[SPEECH], False),
        ("yt_u_1-x", 0.5, 1.25, index[SPEECH], True),
    ]
    assert all(math.isnan(e.snr_db) for e in events)  # unknown for a recording
    assert (store.meta["strong_clips"], store.meta["strong_events"]) == (2, 3)
    balanced = ClipStore(tmp_path / "out" / "balanced")
    assert [(balanced.ids[e.clip], e.label) for e in strong_events(balanced)] == [("ytc0000002", index[ANIMAL])]

    with open(tmp_path / "out" / "strong.skipped.csv", newline="") as f:
        left = [(r["file"], r["line"], r["segment_id"], r["reason"]) for r in csv.DictReader(f)]
    assert left == [
        ("audioset_eval_strong.tsv", "4", "yta0000000_30000", "label not in the class list"),
        ("audioset_eval_strong.tsv", "6", "ytb0000001_0", "no segment list names this segment"),
        ("audioset_eval_strong.tsv", "7", "ytnowhere_10000", "no segment list names this segment"),
        ("audioset_train_strong.tsv", "3", "ytmissing_30000", "its clip was skipped (see the split's report)"),
    ]


def test_changed_strong_labels_make_the_store_stale(tmp_path):
    layout, strong = with_strong_labels(tmp_path)

    def ingest(**options):
        segments, out = [layout["balanced"], layout["eval"]], tmp_path / "out"
        return ingest_audioset(
            segments, layout["classes"], layout["audio"], out, val_fraction=0, progress=False, **options
        )

    first = ingest(strong=strong)
    assert first["eval"].strong.events == {"balanced": 1, "eval": 3}
    assert ingest(strong=strong)["eval"].decoded == 0
    tsv(strong[0], ("yta0000000_30000", "0.000", "1.500", ANIMAL))
    with pytest.raises(IngestError, match=r"out/eval was built from other inputs \(audioset_eval_strong.tsv changed"):
        ingest(strong=strong)
    assert ingest(strong=strong, force=True)["eval"].store.meta["strong_events"] == 1


@pytest.mark.parametrize(
    "text, message",
    [
        ("segment_id\tstart\tend\tlabel\n", r"strong.tsv:1: expected the header segment_id start_time_seconds"),
        (HEADER + "yta0000000_30000\t0.0\t1.0\n", r"strong.tsv:2: expected 4 tab-separated fields"),
        (HEADER + "yta0000000\t0.0\t1.0\t/m/09x0r\n", r"strong.tsv:2: segment_id must be \{YTID\}_\{start_ms\}"),
        (HEADER + "a_1\t0.0\t1.0\t/m/09x0r\na_1\t2.0\t1.0\t/m/09x0r\n", r"strong.tsv:3: start/end must be numbers"),
        (HEADER + "a_1\tnan\t1.0\t/m/09x0r\n", r"strong.tsv:2: start/end must be numbers with 0 <= start <= end"),
        (HEADER + "a_1\t0.0\t1.0\t\n", r"strong.tsv:2: the label is empty"),
        (HEADER + "a_1,0.0,1.0,/m/09x0r\n", r"strong.tsv:2: expected 4 tab-separated fields"),
    ],
)
def test_a_malformed_strong_label_file_names_the_file_and_line(tmp_path, text, message):
    layout = audioset_layout(tmp_path / "as")
    (tmp_path / "strong.tsv").write_text(text)
    with pytest.raises(IngestError, match=message):
        ingest_audioset(
            [layout["eval"]], layout["classes"], layout["audio"], tmp_path / "out", strong=[tmp_path / "strong.tsv"]
        )
    assert not (tmp_path / "out").exists()  # refused before anything is decoded
