"""Backups of an appliance home: one sealed file, consistent while the service runs.

Format: docs/formats/backup.md. Public API; other modules import only this.

Making one (`make_backup`, run by `appliance backup`, the service's `backup`
op and its schedule): SQLite's online backup API copies the audit log, the
accounts, every user's saved conversations and the encrypted documents store
(still encrypted under its own key) while writers go on; with `config.toml`,
the policy link, the officer keys, the store's sealed key and the draft copy
counter, they become an archive whose first member is `backup.json` (the
manifest), sealed to the recipients of the site's [backup] with content id
`appliance-backup` into `FOLDER/appliance-backup-YYYYMMDDTHHMMSSZ.sealed`
(0600, never over another file), and recorded as a `backup` event. Never in
a backup: the device key (`audit/device.key`), `keys/` (site identities),
`audit/anchor`, `service.lock`, models and adapters.

Opening one, the contract a restore builds on::

    with open_backup(path, identities) as backup:
        backup.root / "audit/log.db"        # the log copy (verified already)
        backup.root / "identity/users.db"   # and every other file, as in a home
        backup.manifest["log"]              # the log id (32 hex digits)
        backup.manifest["last_seq"]         # the copy's last event ...
        backup.manifest["chain"]            # ... and its chain hash (hex)
        backup.manifest["device_key"]       # aak1...: signed the manifest and the log
        backup.manifest["policy_link"]      # {"kind": "link", "target": ...} | file | absent
        backup.manifest["files"]            # {path: sha256} of every file under root

`open_backup` refuses, in one sentence naming the file, anything sealed to
someone else (CredentialError), altered, truncated, of another content id or
holding anything odd (IntegrityError; a file it cannot read: InputError). The
files are in a private (0700) temporary folder, removed when the block ends.
"""

from __future__ import annotations

from appliance.backup.logcopy import LogCopy, verify_log_copy
from appliance.backup.make import (
    BACKUP_CONTENT_ID,
    BACKUP_FORMAT,
    BackupResult,
    backup_name,
    last_backup,
    make_backup,
)
from appliance.backup.opening import Backup, open_backup
from appliance.backup.site import (
    DROPIN,
    PERMISSION,
    BackupSchedule,
    backup_site,
    not_configured,
    render_dropin,
    require_backup,
    site_recipients,
)
from appliance.config import BackupSite

__all__ = [
    "BACKUP_CONTENT_ID",
    "BACKUP_FORMAT",
    "DROPIN",
    "PERMISSION",
    "Backup",
    "BackupResult",
    "BackupSchedule",
    "BackupSite",
    "LogCopy",
    "backup_name",
    "backup_site",
    "last_backup",
    "make_backup",
    "not_configured",
    "open_backup",
    "render_dropin",
    "require_backup",
    "site_recipients",
    "verify_log_copy",
]
