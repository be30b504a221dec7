"""The outbox: the one durable queue between the pipeline and the uplink (SQLite, WAL).

Owns: the database file (`database`) and its rows (`rows`), the queue with its bounds, leases
and acknowledgements (`store`, the facade: `Outbox`, built from `writer` and its one
`transaction`, the drop policy `bounds`, the persisted `meta` counters, the row `counts`, the
lease bookkeeping and tail cache `leases`, the disk-full memory buffer `spill`, the space
`reserve` that lets a full disk drain, drop logging `losses`), the one-process lock and seq
ceiling beside the file (`claim`), opening with quarantine of a damaged file only
(`quarantine`), read-only inspection for `gateway status` (`inspect`),
reading a quarantined file back (`salvage`), rows that can never be sent (`deadletter`), and
the backlog by hand: reading rows out read-only in chunks (`export`), queuing another
gateway's export once (`intake`), deleting a lane's old rows as counted drops (`purge`).
May import: `gateway.model`, `gateway.errors` and aiosqlite/sqlite3 (structlog only for the
default logger of `Outbox.open`). Nothing else: it knows no config, MQTT, driver or alert.
"""
