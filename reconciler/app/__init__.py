"""The composition root: the only code that turns settings into concrete adapters (store, DTMA client,
journal, clock, key, git) and hands them, as ports, to the runtime. The CLI, the daemon and the demo get
their ports here."""
