"""The broker contract against the in-memory double."""

import pytest

from tests.broker_contract import BrokerContract
from tests.brokers import Broker, MemoryBroker


class TestMemoryBroker(BrokerContract):
    @pytest.fixture
    def backend(self) -> Broker:
        return MemoryBroker()
