"""The agent tests need smolagents (the isolated home and test key come from the top conftest)."""

from __future__ import annotations

import pytest

pytest.importorskip("smolagents")
