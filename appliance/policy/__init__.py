"""Sovereign-data policy: classification levels, DLP, egress guard, air-gap attestation.

A policy file (policies/*.toml, docs/formats/policy.md) says who may work in
development mode, how accounts lock, whether the audit log must keep content,
whether the host must be air-gapped, the ordered classification levels, and
what each DLP detector does on the way in and out. Public API; other modules
import only this.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from appliance.policy.dlp import (
    Checked,
    Finding,
    OutputGuard,
    check_added,
    check_input,
    mask,
    scan,
)
from appliance.policy.schema import Level, Policy, load_policy

__all__ = [
    "Checked",
    "Finding",
    "Level",
    "OutputGuard",
    "Policy",
    "active_policy",
    "active_policy_path",
    "check_added",
    "check_input",
    "load_policy",
    "mask",
    "scan",
    "shipped_policy",
]

HOME_POLICY = "policy.toml"


def shipped_policy(name: str) -> Path:
    """A policy shipped with the appliance (default, defense-kr)."""
    packaged = resources.files("appliance").joinpath("policies", f"{name}.toml")
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "policies" / f"{name}.toml"


def active_policy_path(home: Path) -> Path:
    """The home's policy (installed by IT staff), else the shipped default."""
    installed = home / HOME_POLICY
    return installed if installed.exists() else shipped_policy("default")


def active_policy(home: Path) -> Policy:
    return load_policy(active_policy_path(home))
