"""psl.ops.chunk_pool (native and reference) against a loop-by-loop float64 implementation."""

import pytest
import torch

from psl import ops
from psl.ops import reference
from references import chunk_pool_float64

IMPLEMENTATIONS = {"reference": reference.chunk_pool}
if ops.native_available():
    IMPLEMENTATIONS["native"] = lambda *args: torch.ops.psl.chunk_pool.default(*args)


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def pool(request):
    return IMPLEMENTATIONS[request.param]


def random_frames(rng, batch, n_frames, n_classes, dtype):
    return torch.rand(batch, n_frames, n_classes, generator=rng).to(dtype)


@pytest.mark.parametrize("mode", ["mean", "max"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_fractional_overlapping_and_gapped_chunks(rng, pool, mode, dtype):
    frames = random_frames(rng, 3, 50, 11, dtype)
    # Starts anywhere from before the clip to past its end; length not a whole number of frames.
    starts = torch.rand(3, 9, generator=rng) * 70 - 10
    length = float(torch.rand(1, generator=rng) * 12 + 0.25)
    out = pool(frames, starts, length, None, mode)
    assert out.dtype == torch.float32 and out.shape == (3, 9, 11)
    expected = torch.from_numpy(chunk_pool_float64(frames, starts, length, mode=mode))
    torch.testing.assert_close(out.double(), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode", ["mean", "max"])
def test_chunks_are_clipped_to_the_valid_frames(rng, pool, mode):
    frames = random_frames(rng, 4, 40, 5, torch.float16)
    starts = torch.tensor([[0.0, 10.5, 30.0], [35.5, 0.0, 19.25], [2.0, 3.0, 4.0], [-3.0, 38.9, 60.0]])
    valid = torch.tensor([40, 36, 0, 100])
    out = pool(frames, starts, 5.5, valid, mode)
    expected = torch.from_numpy(chunk_pool_float64(frames, starts, 5.5, valid, mode))
    torch.testing.assert_close(out.double(), expected, rtol=1e-6, atol=1e-6)
    assert (out[2] == 0).all(), "a clip with no valid frames gives zero targets"


def test_a_chunk_within_one_frame_is_that_frame(pool, rng):
    frames = random_frames(rng, 1, 8, 3, torch.float32)
    out = pool(frames, torch.tensor([[2.25]]), 0.5, None, "mean")
    torch.testing.assert_close(out[0, 0], frames[0, 2])


def test_grid_chunks_equal_the_mean_of_their_frames(pool, rng):
    frames = random_frames(rng, 2, 100, 7, torch.float32)
    starts = torch.arange(0, 100, 25, dtype=torch.float32).repeat(2, 1)
    out = pool(frames, starts, 25.0, None, "mean")
    expected = frames.double().reshape(2, 4, 25, 7).mean(dim=2)
    torch.testing.assert_close(out.double(), expected, rtol=1e-6, atol=1e-6)


def test_float64_starts_are_accepted(pool, rng):
    frames = random_frames(rng, 2, 30, 4, torch.bfloat16)
    starts = torch.rand(2, 3, generator=rng, dtype=torch.float64) * 30
    expected = torch.from_numpy(chunk_pool_float64(frames, starts, 3.3))
    torch.testing.assert_close(pool(frames, starts, 3.3, None, "mean").double(), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(not ops.native_available(), reason="psl._C is not built")
@pytest.mark.parametrize(
    "args, message",
    [
        ((torch.zeros(2, 10), torch.zeros(2, 1), 1.0, None, "mean"), r"frames must be \[batch, frames, classes\]"),
        ((torch.zeros(2, 10, 3, dtype=torch.int64), torch.zeros(2, 1), 1.0, None, "mean"), "frames must be float32"),
        ((torch.zeros(2, 10, 3), torch.zeros(3, 1), 1.0, None, "mean"), r"starts must be \[batch=2, chunks\]"),
        ((torch.zeros(2, 10, 3), torch.zeros(2, 1, dtype=torch.int64), 1.0, None, "mean"), "starts must be float32"),
        ((torch.zeros(2, 10, 3), torch.zeros(2, 1), 0.0, None, "mean"), "length must be a positive"),
        ((torch.zeros(2, 10, 3), torch.zeros(2, 1), 1.0, torch.tensor([10]), "mean"), r"valid must be \[batch=2\]"),
        ((torch.zeros(2, 10, 3), torch.zeros(2, 1), 1.0, torch.tensor([1.0, 2.0]), "mean"), "valid must be int64"),
    ],
)
def test_bad_arguments_are_refused_with_a_clear_message(args, message):
    """The op's one argument check, in C++, shared by the CPU and CUDA kernels."""
    with pytest.raises(RuntimeError, match=message):
        torch.ops.psl.chunk_pool.default(*args)


@pytest.mark.parametrize(
    "args, message",
    [
        ((torch.zeros(2, 10, 3), torch.zeros(2, 1), 1.0, None, "median"), "mode must be 'mean' or 'max', got 'median'"),
        ((torch.zeros(2, 10, 3), torch.tensor([[0.0], [float("nan")]]), 1.0, None, "mean"), r"starts\[1, 0\] is nan"),
        (
            (torch.zeros(2, 10, 3), torch.tensor([[0.0, -float("inf")]] * 2), 1.0, None, "max"),
            r"starts\[0, 1\] is -inf",
        ),
    ],
)
def test_values_that_would_give_a_wrong_answer_are_refused_by_every_implementation(pool, args, message):
    with pytest.raises(RuntimeError, match=message):
        pool(*args)
