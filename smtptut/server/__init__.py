"""The receiving side: bytes -> framing -> session -> delivery -> storage (console, Maildir)."""
