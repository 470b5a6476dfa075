"""Fields: the hash-grid encoding, the SDF and colour networks, the background model."""
