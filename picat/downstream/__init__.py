"""Downstream protocols: linear SVM on frozen features, fine-tuning, and their result records."""
