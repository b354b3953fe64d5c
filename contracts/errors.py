"""Errors of the shared contracts: a value that is not what the contract says (never echoed)."""

from __future__ import annotations


class ContractError(ValueError):
    """Base: the input does not meet a contract. ``exit_code`` 1 (input error) for the CLI."""

    exit_code = 1


class InvalidNationalId(ContractError):
    """A national ID that is not in the Taiwanese format or fails its checksum (the value is not echoed)."""


class InvalidBankAccount(ContractError):
    """A bank account that is not 6–20 digits (the value is not echoed)."""
