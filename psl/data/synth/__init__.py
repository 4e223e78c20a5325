"""The synthetic weakly labelled benchmark with strong truth (`psl data synth`)."""
