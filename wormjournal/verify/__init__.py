"""The auditor's side: verification through a read-only store, with public keys only."""

from .report import Finding, StreamSummary, VerifyReport
from .verifier import WitnessPolicy, verify_store

__all__ = ["Finding", "StreamSummary", "VerifyReport", "WitnessPolicy", "verify_store"]
