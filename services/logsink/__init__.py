"""The log sink: the only writer of ClickHouse."""
