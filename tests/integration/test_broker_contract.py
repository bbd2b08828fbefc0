"""The broker contract against the embedded broker, through aiokafka (the double's reference)."""

import pytest

from tests.broker_contract import BrokerContract
from tests.brokers import Broker, KafkaBroker


class TestEmbeddedBroker(BrokerContract):
    @pytest.fixture
    def backend(self, broker: str) -> Broker:
        return KafkaBroker(broker)
