"""Policy lifecycle: the Rego packs officers edit, their checks, revisions, approval and bundles.

The PDP uses: :func:`verify_bundle` (never activate an unverified bundle), :class:`RevisionStore`
(``state()`` to poll cheaply, ``active()`` / ``shadow()`` for the signed bundles) and
:func:`ensure_initial_revision` on first start. The API router lives in ``policy.api``
(``create_router(store, auth)``); it imports FastAPI, so it is not imported here.
"""

from policy.bundle import (
    BundleSigner,
    VerifiedBundle,
    build_bundle,
    key_id,
    verify_bundle,
    verify_bundle_full,
)
from policy.diff import changed_files, diff_packs
from policy.engine import Problem
from policy.errors import (
    BundleRejected,
    LifecycleRefused,
    PackError,
    PolicyError,
    RevisionNotFound,
    SimulationError,
    StoreIntegrityError,
    ValidationFailed,
)
from policy.pack import DEFAULT_PACK_DIR, GOVERNED_REGISTERS, PolicyPack, load_pack, pack_from_files, with_registers
from policy.revisions import (
    Approval,
    PublishedBundle,
    Revision,
    RevisionStore,
    SlotState,
    ensure_initial_revision,
)
from policy.simulate import SimulationReport, is_fail_closed, replay_input, simulate
from policy.testing import TestReport, TestResult, run_tests
from policy.validate import validate_dir, validate_files, validate_pack

__all__ = [
    "DEFAULT_PACK_DIR",
    "GOVERNED_REGISTERS",
    "Approval",
    "BundleRejected",
    "BundleSigner",
    "LifecycleRefused",
    "PackError",
    "PolicyError",
    "PolicyPack",
    "Problem",
    "PublishedBundle",
    "Revision",
    "RevisionNotFound",
    "RevisionStore",
    "SimulationError",
    "SimulationReport",
    "SlotState",
    "StoreIntegrityError",
    "TestReport",
    "TestResult",
    "ValidationFailed",
    "VerifiedBundle",
    "build_bundle",
    "changed_files",
    "diff_packs",
    "ensure_initial_revision",
    "is_fail_closed",
    "key_id",
    "load_pack",
    "pack_from_files",
    "with_registers",
    "replay_input",
    "run_tests",
    "simulate",
    "validate_dir",
    "validate_files",
    "validate_pack",
    "verify_bundle",
    "verify_bundle_full",
]
