"""The stages of the method, each runnable alone: teacher and baseline (weak), label, student,
evaluate, transfer; analyse (the missing-label analysis); the pipeline composes them."""
