"""The project's benchmark: its server and client against their peers (issue 6)."""
