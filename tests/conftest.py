"""Shared fixtures: small configurations and data the tests make themselves (no Fashion-MNIST)."""

from pathlib import Path

import pytest

from edge3u.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="session")
def digits_config():
    return load_config(CONFIGS / "digits.toml")


@pytest.fixture(scope="session")
def fashion_config():
    return load_config(CONFIGS / "fashion_mnist.toml")


@pytest.fixture(scope="session")
def digits():
    from edge3u.data import load_digits

    return load_digits()
