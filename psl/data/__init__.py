"""Audio data: the packed clip store, ingest of AudioSet and the Freesound datasets, the
synthetic benchmark, and the PyTorch datasets and samplers that read them."""
