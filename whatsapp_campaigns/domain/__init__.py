"""Pure domain code: statuses, transition rules, policies and models. No I/O here."""
