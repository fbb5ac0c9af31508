"""Fixtures of the rooms tests: the brokers of the chat contract tests, both implementations."""

from tests.chat.conftest import broker, make_broker  # noqa: F401 - fixtures
