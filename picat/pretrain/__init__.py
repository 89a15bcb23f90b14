"""Pic@Point pre-training: correspondence, losses and the training loop."""
