"""The sink's inbox: a Mailpit-compatible HTTP API over the Maildir."""
