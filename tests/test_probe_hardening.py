"""No other process of the user can read decrypted weights or prompts.

Each scenario runs in its own process tree with the real engine, the real
embedded model and a real sealed file, and an attacker process of the same
user tries /proc/PID/fd/N and /proc/PID/mem of the process that holds them.
When the tests run as root, the scenario first drops CAP_SYS_PTRACE from its
bounding set and re-executes itself, so that it, its probe child and the
attacker are all the same user with the same capabilities and no ptrace
privilege: what any ordinary user is.

This file is also the scenario's program: `python -m tests.test_probe_hardening`.
"""

from __future__ import annotations

import collections
import ctypes
import errno
import hashlib
import json
import os
import platform
import resource
import stat
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
REPORT = "REPORT "  # prefix of the scenario's result line
PROBE_MARK = b"appliance.engine.probe"  # in the probe child's command line
UNLISTED = "unlisted-270m@1"  # a content id the catalog does not know: it is probed

pytestmark = pytest.mark.model


def run_scenario(*args: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "tests.test_probe_hardening", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith(REPORT))
    report: dict[str, Any] = json.loads(line.removeprefix(REPORT))
    return report


def denied(outcomes: dict[str, int]) -> int:
    return outcomes.get("EACCES", 0) + outcomes.get("EPERM", 0)


def test_the_probe_child_holding_plaintext_cannot_be_read(model_path: Path) -> None:
    """A sealed model from outside the catalog is probed in a child: while the child
    holds the decrypted weights, a same-user process cannot open /proc/CHILD/fd/N or
    /proc/CHILD/mem, and so copies nothing."""
    report = run_scenario("sealed", str(model_path))
    assert report["probes"] >= 1, report  # the probe ran and the attacker saw it
    assert report["copied"] == [], report  # no plaintext left the child
    assert denied(report["fd"]) > 0, report
    assert denied(report["mem"]) > 0, report


def test_a_serving_process_is_hardened_whatever_the_model(model_path: Path) -> None:
    """A plain, catalogued GGUF (never sealed, never probed): the process that serves
    it, and will hold prompts, is non-dumpable with no core file all the same."""
    report = run_scenario("plain", str(model_path))
    assert report["before"]["dumpable"] == 1
    assert report["after"] == {"dumpable": 0, "core_zero": True}
    assert report["probes"] == 0  # verified: no child
    assert denied(report["self_mem"]) == 1, report
    assert report["self_copied"] == [], report


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the seccomp filter is x86_64's")
def test_a_process_that_cannot_harden_itself_gets_nothing(model_path: Path) -> None:
    """Where the kernel refuses PR_SET_DUMPABLE (a seccomp filter here), the probe
    child exits without being given the file, and the engine loads nothing."""
    report = run_scenario("refused", str(model_path))
    assert report["probe"][0] == "HostSecurityError", report
    assert "non-dumpable" in report["probe"][1]
    assert report["engine"][0] == "HostSecurityError", report
    cli = report["cli"]
    assert cli["code"] == 10, cli
    lines = cli["stderr"].strip().splitlines()
    assert len(lines) == 1, cli
    assert lines[0].startswith("appliance: ")
    assert "non-dumpable" in lines[0]


# -- the scenarios, each in a process of its own ----------------------------------------------

PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
CAP_SYS_PTRACE = 19


def _as_an_ordinary_user() -> None:
    """Root: drop CAP_SYS_PTRACE from the bounding set and re-execute, once."""
    libc = ctypes.CDLL(None, use_errno=True)
    if os.geteuid() != 0 or libc.prctl(PR_CAPBSET_READ, CAP_SYS_PTRACE, 0, 0, 0) != 1:
        return
    if libc.prctl(PR_CAPBSET_DROP, CAP_SYS_PTRACE, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "cannot drop CAP_SYS_PTRACE")
    os.execv(sys.executable, [sys.executable, "-m", "tests.test_probe_hardening", *sys.argv[1:]])


def _state() -> dict[str, Any]:
    libc = ctypes.CDLL(None)
    return {
        "dumpable": libc.prctl(3, 0, 0, 0, 0),  # PR_GET_DUMPABLE
        "core_zero": resource.getrlimit(resource.RLIMIT_CORE) == (0, 0),
    }


class Attacker:
    """Another process of this user, watching this process and its probe children."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.test_probe_hardening", "attack", str(os.getpid())],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdin is not None
        assert self.process.stdout.readline().strip() == "watching"

    def attack_parent(self) -> None:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write("parent\n")
        self.process.stdin.flush()
        assert self.process.stdout.readline().strip() == "done"

    def report(self) -> dict[str, Any]:
        out, _ = self.process.communicate(timeout=60)
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result


def scenario_sealed(model: Path) -> dict[str, Any]:
    from appliance import seal
    from appliance.engine import Engine
    from tests.conftest import TEST_SETTINGS

    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"probe-attack-{os.getpid()}"
    work.mkdir(mode=0o700)
    try:
        identity = seal.Identity.generate()
        sealed = work / "unlisted.sealed"
        seal.seal_file(model, sealed, [identity.recipient], UNLISTED)
        attacker = Attacker()
        loaded = seal.load_sealed(sealed, [identity])
        try:
            with Engine(loaded.path, TEST_SETTINGS) as engine:  # not verified: probed
                assert engine.info.architecture == "gemma3"
        finally:
            loaded.close()
        report = attacker.report()
        report["model_sha256"] = loaded.sha256
        return report
    finally:
        for item in work.iterdir():
            item.unlink()
        work.rmdir()


def scenario_plain(model: Path) -> dict[str, Any]:
    from appliance.engine import Engine, GenerationParams, Message
    from tests.conftest import TEST_SETTINGS

    before = _state()
    attacker = Attacker()
    with Engine(model, TEST_SETTINGS, verified=True) as engine:
        prompt = [Message("user", "a prompt that stays in this process")]
        engine.chat(prompt, GenerationParams(max_tokens=4, temperature=0)).text()
        after = _state()
        attacker.attack_parent()
    report = attacker.report()
    return {"before": before, "after": after, **report}


def scenario_refused(model: Path) -> dict[str, Any]:
    from appliance.engine import Engine
    from appliance.engine.probe import probe
    from appliance.errors import ApplianceError
    from tests.conftest import TEST_SETTINGS

    _deny_set_dumpable()
    results: dict[str, Any] = {}
    for name, action in (
        ("probe", lambda: probe(model)),
        ("engine", lambda: Engine(model, TEST_SETTINGS, verified=True).close()),
    ):
        try:
            action()
            results[name] = ["loaded", ""]
        except ApplianceError as exc:
            results[name] = [type(exc).__name__, str(exc)]
    env = {**os.environ, "APPLIANCE_HOME": str(model.parent.parent)}
    env.pop("APPLIANCE_DEBUG", None)
    cli = subprocess.run(
        [sys.executable, "-m", "appliance", "ask", "--max-tokens", "2", "Hello"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
        start_new_session=True,
    )
    results["cli"] = {"code": cli.returncode, "stderr": cli.stderr}
    return results


def _deny_set_dumpable() -> None:
    """A seccomp filter (inherited by every child) that fails prctl(PR_SET_DUMPABLE)."""
    ld, jeq, ret = 0x20, 0x15, 0x06  # BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, BPF_RET|BPF_K
    allow, refuse = 0x7FFF0000, 0x00050000 | errno.EPERM  # SECCOMP_RET_ALLOW, _RET_ERRNO
    program = [
        (ld, 0, 0, 4),  # seccomp_data.arch
        (jeq, 0, 5, 0xC000003E),  # AUDIT_ARCH_X86_64, else allow
        (ld, 0, 0, 0),  # seccomp_data.nr
        (jeq, 0, 3, 157),  # __NR_prctl, else allow
        (ld, 0, 0, 16),  # seccomp_data.args[0], low half
        (jeq, 0, 1, 4),  # PR_SET_DUMPABLE, else allow
        (ret, 0, 0, refuse),
        (ret, 0, 0, allow),
    ]
    filters = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *op) for op in program))
    fprog = struct.pack("HxxxxxxP", len(program), ctypes.addressof(filters))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_ulong]
    libc.prctl.argtypes += [ctypes.c_ulong]
    if libc.prctl(38, 1, None, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    if libc.prctl(22, 2, fprog, 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")
    _deny_set_dumpable.keep = filters  # type: ignore[attr-defined]


# -- the attacker -----------------------------------------------------------------------------


def attack(target: int) -> None:
    """Until stdin closes: find `target`'s probe children and try to read them; on
    'parent', try `target` itself. Prints what it got, as JSON."""
    report: dict[str, Any] = {
        "probes": 0,
        "copied": [],
        "fd": collections.Counter(),
        "mem": collections.Counter(),
        "self_mem": collections.Counter(),
        "self_copied": [],
    }
    commands: list[str] = []
    seen: set[int] = set()

    def read_commands() -> None:
        commands.extend(line.strip() for line in sys.stdin)
        commands.append("eof")

    threading.Thread(target=read_commands, daemon=True).start()
    print("watching", flush=True)
    while True:
        while commands:
            command = commands.pop(0)
            if command == "eof":
                report["probes"] = len(seen)
                print(json.dumps(report), flush=True)
                return
            fd, mem = _try(target, report["self_copied"])
            report["self_mem"][mem] += 1
            print("done", flush=True)
        for pid in probe_children(target):
            seen.add(pid)
            fd, mem = _try(pid, report["copied"])
            if _alive(pid):  # a zombie has no memory left to guard: not counted
                report["fd"].update(fd)
                report["mem"][mem] += 1
        time.sleep(0.001)


def _try(pid: int, copied: list[str]) -> tuple[collections.Counter[str], str]:
    """Open every /proc/PID/fd/N (and copy what is a memfd) and /proc/PID/mem."""
    fd_outcomes: collections.Counter[str] = collections.Counter()
    try:
        numbers = [int(n) for n in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        numbers = list(range(64))  # cannot list them: try every likely one
    for number in numbers:
        try:
            fd = os.open(f"/proc/{pid}/fd/{number}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                fd_outcomes[errno.errorcode.get(exc.errno or 0, "error")] += 1
            continue
        try:
            fd_outcomes["opened"] += 1
            link = os.readlink(f"/proc/self/fd/{fd}")
            if stat.S_ISREG(os.fstat(fd).st_mode) and link.startswith("/memfd:"):
                digest = hashlib.sha256()
                while chunk := os.read(fd, 1 << 20):
                    digest.update(chunk)
                copied.append(digest.hexdigest())
        finally:
            os.close(fd)
    try:
        with open(f"/proc/{pid}/mem", "rb"):
            mem = "opened"
    except OSError as exc:
        mem = errno.errorcode.get(exc.errno or 0, "error")
    return fd_outcomes, mem


def probe_children(parent: int) -> list[int]:
    """The probe children of `parent` now alive, found as any user could: in /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
            if int(fields[1]) != parent:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                if PROBE_MARK in handle.read():
                    found.append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            state = handle.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def main() -> None:
    kind = sys.argv[1]
    if kind == "attack":
        attack(int(sys.argv[2]))
        return
    _as_an_ordinary_user()
    scenario = {"sealed": scenario_sealed, "plain": scenario_plain, "refused": scenario_refused}
    report = scenario[kind](Path(sys.argv[2]))
    print(REPORT + json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
