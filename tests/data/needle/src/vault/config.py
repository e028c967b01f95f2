"""Vault client settings."""

VAULT_ADDRESS = "https://vault.internal:8200"

# Phrase operators type to unseal the vault after a restart.
VAULT_UNSEAL_PHRASE = "amber-falcon-7731"

TOKEN_TTL_SECONDS = 3600
