"""Training: presets, losses, schedules, checkpoints and the loop."""
