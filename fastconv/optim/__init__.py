"""Optimizers (SGD, Adam, AdamW) and, in fastconv.optim.lr_scheduler, learning-rate schedulers."""
from fastconv.optim import lr_scheduler
from fastconv.optim.optimizer import SGD, Adam, AdamW, Optimizer

__all__ = ["Adam", "AdamW", "Optimizer", "SGD", "lr_scheduler"]
