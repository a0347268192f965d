"""Composing alerts: templates from `config/templates/`, bodies per language, reply codes."""
