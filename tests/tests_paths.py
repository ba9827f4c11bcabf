"""Paths of the repository's files the tests read."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
DIGITS_CONFIG = CONFIGS / "digits.toml"
FASHION_CONFIG = CONFIGS / "fashion_mnist.toml"
