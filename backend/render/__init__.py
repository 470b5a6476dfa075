"""Rays, samples and NeuS volume rendering."""
