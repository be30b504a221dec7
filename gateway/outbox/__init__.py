"""The outbox: the one durable queue between the pipeline and the uplink (SQLite, WAL).

Owns: the database file and its rows (`database`), the queue with its bounds, leases and
acknowledgements (`store`), and read-only inspection for `gateway status`.
May import: `gateway.model`, `gateway.errors` and aiosqlite/sqlite3. Nothing else: it knows no
config, MQTT, driver or alert.
"""
