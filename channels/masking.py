"""Masking of phone numbers and email addresses for logs and screens."""

from __future__ import annotations


def mask_contact(value: str) -> str:
    """'+529611230101' -> '+52******0101'; 'ana@example.org' -> 'a***@example.org'."""
    value = value.strip()
    if "@" in value:
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    digits = value.lstrip("+")
    if len(digits) <= 6:
        return "*" * len(value)
    prefix = "+" if value.startswith("+") else ""
    return f"{prefix}{digits[:2]}{'*' * (len(digits) - 6)}{digits[-4:]}"
