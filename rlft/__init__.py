"""rlft: reinforcement-learning and preference tuning of language models."""

__version__ = "0.1.0"
