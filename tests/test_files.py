"""psl.files.write_atomic: whole files or none, also with several writers of one file at once."""

import errno
import threading

import pytest

from psl import files


def test_writers_of_one_file_at_once_never_tear_it_or_fail(tmp_path):
    target = tmp_path / "dataset_card.json"
    payloads = [bytes([65 + k]) * 200_000 for k in range(4)]
    errors = []

    def write(payload):
        try:
            for _ in range(20):
                files.write_atomic(target, payload)
        except Exception as error:  # collected: an exception in a thread would pass unseen
            errors.append(error)

    threads = [threading.Thread(target=write, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert target.read_bytes() in payloads
    assert list(tmp_path.iterdir()) == [target]  # no file left beside it


def test_a_failed_write_leaves_the_old_file_and_names_the_target(tmp_path, monkeypatch):
    target = tmp_path / "report.csv"
    files.write_atomic(target, "old\n")

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left on device") as caught:
        files.write_atomic(target, "new\n")
    assert caught.value.filename == str(target)
    assert target.read_text() == "old\n" and list(tmp_path.iterdir()) == [target]
