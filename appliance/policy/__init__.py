"""Sovereign-data policy: classification levels, DLP, egress guard, air-gap attestation.

A policy file (policies/*.toml, docs/formats/policy.md) says who may work in
development mode, how accounts lock, whether the audit log must keep content,
whether the host must be air-gapped, the ordered classification levels, and
what each DLP detector does on the way in and out. Public API; other modules
import only this.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from appliance.config import load_home_config
from appliance.errors import ConfigError
from appliance.identity import has_users
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
    """The home's policy (installed by IT staff), else the shipped default.

    The default stands in only for a development home: a link that leads
    nowhere, or no policy at all in a home with accounts or an installed
    release, is refused (ConfigError) rather than silently relaxed.
    """
    installed = home / HOME_POLICY
    if installed.exists():
        return installed
    if installed.is_symlink():
        raise ConfigError(
            f"the home's policy link {installed} leads to {os.readlink(installed)}, which does "
            "not exist; reinstall or roll back the release (the default policy is not used)"
        )
    why = _installed_home(home)
    if why:
        raise ConfigError(
            f"the home {home} has {why} but no policy ({installed} is missing); restore it "
            "or reinstall (the default policy is not used)"
        )
    return shipped_policy("default")


def _installed_home(home: Path) -> str | None:
    """Why `home` is not a development home (accounts, an installed release), or None."""
    if load_home_config(home).manifest is not None:  # a damaged config says so (fails closed)
        return "an installed release"
    if has_users(home):
        return "accounts"
    return None


def active_policy(home: Path) -> Policy:
    return load_policy(active_policy_path(home))
