"""Traces: reading the native and Mooncake formats, tokenizing text, generating traces."""
