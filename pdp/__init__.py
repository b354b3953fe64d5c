"""Policy decision point: scores every access and answers permit / deny / step_up."""

from pdp.errors import (
    CallerTokenError,
    ConfigurationError,
    DecisionLogError,
    DecisionTokenError,
    EngineError,
    EngineTimeout,
    NoPolicy,
    PdpError,
    SubjectTokenError,
    TokenError,
)
from pdp.tokens import (
    DecisionClaims,
    DecisionTokenSigner,
    DecisionTokenVerifier,
    verify_decision_token,
)

__all__ = [
    "CallerTokenError",
    "ConfigurationError",
    "DecisionClaims",
    "DecisionLogError",
    "DecisionTokenError",
    "DecisionTokenSigner",
    "DecisionTokenVerifier",
    "EngineError",
    "EngineTimeout",
    "NoPolicy",
    "PdpError",
    "SubjectTokenError",
    "TokenError",
    "verify_decision_token",
]
