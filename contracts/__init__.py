"""The contracts every package shares: what a decision request, a decision, a signal set, a
decision-log entry and a provenance event are, and how a citizen is named (``citizen_ref``).

Field names are the contract: extend, don't rename. The domain packages (pdp, policy, provenance,
keymgmt, siem_rules) and the application around them import these; this package imports none of
them. Modules: :mod:`contracts.decision`, :mod:`contracts.signals`, :mod:`contracts.policy_input`,
:mod:`contracts.decision_log`, :mod:`contracts.provenance_event`, :mod:`contracts.key_event`,
:mod:`contracts.policy_event`, :mod:`contracts.national_id`, :mod:`contracts.bank_account`,
:mod:`contracts.intermediary`,
:mod:`contracts.screen`; :mod:`contracts.conformance` checks a value against a TypedDict contract.

The decide path's contracts (signals, policy input, decision-log entry) are ``typing.TypedDict``: the
PDP builds plain dicts and pays nothing per decision; the others are pydantic models.
"""

from contracts.bank_account import BANK_ACCOUNT_REF_PATTERN, bank_account_ref
from contracts.decision import Context, Decision, DecisionRequest, Device, Resource
from contracts.decision_log import DecisionLogEntry
from contracts.errors import ContractError, InvalidBankAccount, InvalidNationalId
from contracts.national_id import CITIZEN_REF_PATTERN, citizen_ref, national_id_check_digit, normalise_national_id
from contracts.policy_input import PolicyInput
from contracts.provenance_event import ProvenanceEvent, canonical_bytes
from contracts.screen import contains_national_id, screen_text
from contracts.signals import Signals

__all__ = [
    "BANK_ACCOUNT_REF_PATTERN",
    "CITIZEN_REF_PATTERN",
    "Context",
    "ContractError",
    "Decision",
    "DecisionLogEntry",
    "DecisionRequest",
    "Device",
    "InvalidBankAccount",
    "InvalidNationalId",
    "PolicyInput",
    "ProvenanceEvent",
    "Resource",
    "Signals",
    "bank_account_ref",
    "canonical_bytes",
    "citizen_ref",
    "contains_national_id",
    "national_id_check_digit",
    "normalise_national_id",
    "screen_text",
]
