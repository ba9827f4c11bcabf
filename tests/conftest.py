"""Shared fixtures: small configurations and data the tests make themselves (no Fashion-MNIST)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from edge3u.config import load_config  # noqa: E402
from tests_paths import DIGITS_CONFIG, FASHION_CONFIG  # noqa: E402


@pytest.fixture(scope="session")
def digits_config():
    return load_config(DIGITS_CONFIG)


@pytest.fixture(scope="session")
def fashion_config():
    return load_config(FASHION_CONFIG)


@pytest.fixture(scope="session")
def digits():
    from edge3u.data import load_digits

    return load_digits()
