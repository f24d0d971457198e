"""Training: config, build, the trainer and its loop, checkpoints, distributed helpers, the run folder (lock, log, lineage)."""
