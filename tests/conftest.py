import os
import random
import zlib

import pytest
import torch

# Fresh random inputs on every run; the header shows the seed to reproduce a failure.
SEED = int(os.environ.get("PSL_TEST_SEED", random.randrange(2**31)))


def pytest_report_header(config):
    return f"psl test seed: {SEED} (PSL_TEST_SEED={SEED} reproduces this run)"


@pytest.fixture
def rng(request) -> torch.Generator:
    """A generator seeded from the run's seed and the test's id."""
    return torch.Generator().manual_seed(SEED ^ zlib.crc32(request.node.nodeid.encode()))
