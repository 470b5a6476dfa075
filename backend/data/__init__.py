"""Datasets: posed photos and their bounding sphere, loaded, normalised and batched for training."""
