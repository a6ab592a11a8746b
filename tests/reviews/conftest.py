"""Fixtures of the review-loop tests (defined in fixtures.py, shared with tests/e2e)."""

from .fixtures import make_crew, make_round, sandbox_round  # noqa: F401 - pytest fixtures
