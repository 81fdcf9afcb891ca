"""A rendered post on its way to readers: each reader's message addressed, signed links,
retries, and the sending loop that settles every provider call in the ledger."""
