"""Frozen dataclass configs, one module per stage, and the override machinery in ``base``."""
