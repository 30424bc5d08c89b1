"""Training: one `fit()` loop (epochs, progress, checkpoints, resume, metrics, early stop) and the pretrain task."""
