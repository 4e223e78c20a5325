"""Models: MobileNetV2 with a decision-mean head, and the tagger around it."""
