from tests.audit.factories import factory  # noqa: F401 - fixture
