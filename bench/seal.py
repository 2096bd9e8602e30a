"""Sealed weights: unseal throughput against `age`, and load time against plaintext.

1. Throughput: the default model (about 253 MB) sealed by the appliance and
   encrypted by the `age` CLI to an X25519 key; each side decrypts its file
   to /dev/null, rounds alternating. The appliance side runs in-process; age
   pays its (millisecond) process start. A second figure decrypts into sealed
   memory (memfd), as `appliance ask` does.
2. Cold load to first token: a fresh Engine per round, through the paths the
   CLI takes: plaintext = re-verify the catalog sha256, validate, load;
   sealed = decrypt into sealed memory (hashing as it goes), check the
   catalog pin, validate, load. Both then produce one greedy token. The files
   are in the page cache for both sides.

Last line: sealed load time over plaintext load time (medians).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from appliance import catalog, seal
from appliance.config import EngineSettings, GenerationParams, appliance_home
from appliance.engine import Engine, Message
from appliance.seal.stream import open_segments, read_header, unlock

PARAMS = GenerationParams(max_tokens=1, temperature=0.0, seed=1)
SETTINGS = EngineSettings(context_length=2048)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if shutil.which("age") is None or shutil.which("age-keygen") is None:
        sys.exit("bench/seal.py needs the age CLI (Debian package 'age'); make bench installs it")

    entry = catalog.load_catalog().default_entry
    plain = catalog.prepare(entry, appliance_home())
    size = plain.stat().st_size
    identity = seal.Identity.generate()
    with tempfile.TemporaryDirectory(prefix="bench-seal-") as scratch:
        work = Path(scratch)
        sealed = work / "model.sealed"
        seal.seal_file(plain, sealed, [identity.recipient], entry.content_id)
        age_key = work / "age.key"
        subprocess.run(["age-keygen", "-o", str(age_key)], check=True, capture_output=True)
        age_recipient = subprocess.run(
            ["age-keygen", "-y", str(age_key)], check=True, capture_output=True, text=True
        ).stdout.strip()
        age_file = work / "model.age"
        subprocess.run(["age", "-r", age_recipient, "-o", str(age_file), str(plain)], check=True)

        ours, theirs, memory = [], [], []
        for _ in range(args.rounds):
            ours.append(_time(lambda: _unseal_to_nowhere(sealed, identity)))
            theirs.append(
                _time(
                    lambda: subprocess.run(
                        ["age", "-d", "-i", str(age_key), "-o", "/dev/null", str(age_file)],
                        check=True,
                    )
                )
            )
            memory.append(_time(lambda: seal.load_sealed(sealed, [identity]).close()))
        gbps = {
            name: size / statistics.median(times) / 1e9
            for name, times in (("appliance", ours), ("age", theirs), ("memfd", memory))
        }
        print(f"model: {entry.id}, {size:,} bytes; {args.rounds} alternating rounds, medians")
        print(f"unseal to /dev/null, appliance (AES-256-GCM): {gbps['appliance']:.2f} GB/s")
        print(f"decrypt to /dev/null, {_age_version()} (ChaCha20-Poly1305): {gbps['age']:.2f} GB/s")
        print(f"unseal into sealed memory (+ sha256, seal, mlock): {gbps['memfd']:.2f} GB/s")
        print(f"unseal_vs_age_throughput: {gbps['appliance'] / gbps['age']:.2f}")

        plain_loads, sealed_loads = [], []
        for _ in range(args.rounds):
            plain_loads.append(_time(lambda: _first_token_plain(entry)))
            sealed_loads.append(_time(lambda: _first_token_sealed(sealed, identity, entry)))
        plain_s, sealed_s = statistics.median(plain_loads), statistics.median(sealed_loads)
        print(f"cold load to first token, plaintext GGUF: {plain_s * 1000:.0f} ms")
        print(f"cold load to first token, sealed:         {sealed_s * 1000:.0f} ms")
        print(f"sealed_vs_plain_load: {sealed_s / plain_s:.3f}")


def _time(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _unseal_to_nowhere(path: Path, identity: seal.Identity) -> None:
    with open(path, "rb") as handle, open("/dev/null", "wb") as sink:
        parsed = read_header(handle, str(path))
        key = unlock(parsed, [identity], str(path))
        for segment in open_segments(handle, parsed, key, str(path)):
            sink.write(segment)


def _first_token_plain(entry: catalog.CatalogEntry) -> None:
    path = catalog.verified_path(entry, appliance_home())
    with Engine(path, SETTINGS, verified=True) as engine:
        "".join(engine.chat([Message("user", "Hello")], PARAMS))


def _first_token_sealed(path: Path, identity: seal.Identity, entry) -> None:
    loaded = seal.load_sealed(path, [identity], expect_content_id=entry.content_id)
    try:
        if loaded.sha256 != entry.sha256:
            raise SystemExit("sealed model does not match the catalog")
        with Engine(loaded.path, SETTINGS, verified=True) as engine:
            "".join(engine.chat([Message("user", "Hello")], PARAMS))
    finally:
        loaded.close()


def _age_version() -> str:
    version = subprocess.run(["age", "--version"], capture_output=True, text=True).stdout
    return f"age {version.strip()}"


if __name__ == "__main__":
    main()
