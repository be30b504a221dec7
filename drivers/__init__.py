"""Transport drivers, one package per protocol family, found by convention (gateway.contract)."""
