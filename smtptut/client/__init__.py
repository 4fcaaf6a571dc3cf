"""The sending side: settings, lookup, delivery and the report."""
