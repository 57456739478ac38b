"""All I/O: transports, store, audit log, importers. Never imports textual."""
