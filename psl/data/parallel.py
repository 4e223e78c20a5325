"""Work spread over processes whose results are consumed in input order."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator

from tqdm import tqdm


def ordered_results(
    job: Callable,
    inputs: Iterable,
    *,
    workers: int,
    chunksize: int = 1,
    initializer: Callable | None = None,
    desc: str,
    total: int,
    initial: int = 0,
    progress: bool = True,
) -> Iterator:
    """`job(x)` for each input, computed by a process pool but yielded in input order (so that
    what is written from them does not depend on the worker count), with a progress bar over
    `total` items of which `initial` were done before."""
    bar = tqdm(total=total, initial=initial, desc=desc, unit="clip", disable=not progress)
    try:
        with multiprocessing.get_context("fork").Pool(workers, initializer=initializer) as pool:
            for result in pool.imap(job, inputs, chunksize=chunksize):
                yield result
                bar.update()
    finally:
        bar.close()
