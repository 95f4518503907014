"""Optimizers (SGD, Adam, AdamW, Muon) and, in fastconv.optim.lr_scheduler, learning-rate schedulers."""
from fastconv.optim import lr_scheduler
from fastconv.optim.optimizer import SGD, Adam, AdamW, Muon, Optimizer, orthogonalize

__all__ = ["Adam", "AdamW", "Muon", "Optimizer", "SGD", "lr_scheduler", "orthogonalize"]
