"""Running things: the single-run lifecycle, torchrun launcher and worker, matrices, signals, environment
collection, the doctor and the UI server."""
