"""Optimisation: the SDS loop, regularisers, presets, checkpoints and run directories."""
