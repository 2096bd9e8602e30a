"""Architecture rules that a reviewer would otherwise have to remember."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from appliance import errors

ROOT = Path(__file__).resolve().parent.parent
CORE_MODULES = [
    "appliance.engine",
    "appliance.catalog",
    "appliance.config",
    "appliance.fsutil",
    "appliance.seal",
    "appliance.audit",
    "appliance.audit.export",
    "appliance.policy",
    "appliance.identity",
    "appliance.session",
    "appliance.accounts",
    "appliance.conversations",
    "appliance.bundle.build",
    "appliance.bundle.host",
]


def test_core_modules_import_neither_textual_nor_rich() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {name}\n" for name in CORE_MODULES)
        + "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich'))\n"
        + "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_readme_lists_every_exit_code() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = dict(re.findall(r"^\| (\d+) \| `(\w+)` \|", readme, flags=re.MULTILINE))
    documented = {int(code): name for code, name in table.items()}
    expected = {cls.exit_code: cls.__name__ for cls in errors.ERROR_CLASSES}
    expected[errors.EXIT_INTERRUPTED] = "KeyboardInterrupt"
    assert documented == expected
