"""The synthetic weakly labelled benchmark with strong truth (`psl data synth`)."""

# The `eval` split's labels are complete (the truth); this file beside them holds the weak
# labels the missing-label model gives the same clips, as AudioSet's eval labels are weak.
# Named here so that readers need not import the generator (and scipy with it).
WEAK_LABELS_FILE = "weak_labels.csv"
