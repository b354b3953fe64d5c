"""Government data exchange (issue #14): signed, time-stamped, receipted transfers to other agencies,
the batch path for whole registers, receipts, inbound data, and offline verification.

Application level, like ``gateway``: it composes the domain packages (the PDP decides each batch,
keymgmt's batch gate decrypts only after provenance records each citizen, provenance keeps the
events and trusted time) and is composed by ``server``. Modules: :mod:`exchange.service` (the
flows), :mod:`exchange.crypto` (JWS, the sealed payload), :mod:`exchange.inputs` (the batch's
input file), :mod:`exchange.agreements` (the signed register), :mod:`exchange.store` (the transfer
register), :mod:`exchange.verify` (offline verification), :mod:`exchange.api` (HTTP).
"""

from exchange.errors import ExchangeError, ExchangeInputError, ExchangeIntegrityError, ExchangeRefused
from exchange.service import ExchangeConfig, ExchangeService, Operator, inbound_statement, receipt_for
from exchange.store import ExchangeStore

__all__ = [
    "ExchangeConfig",
    "ExchangeError",
    "ExchangeInputError",
    "ExchangeIntegrityError",
    "ExchangeRefused",
    "ExchangeService",
    "ExchangeStore",
    "Operator",
    "inbound_statement",
    "receipt_for",
]
