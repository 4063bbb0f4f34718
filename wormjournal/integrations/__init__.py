"""Integrations with agent runtimes. Each is an optional extra; the core never imports them."""
