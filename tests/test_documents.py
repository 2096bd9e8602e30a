"""Local documents: the encrypted store, labels, collections, audit, and the service path.

The library tests run `Library` in-process on a staffed defense-kr home (kim:
operator cleared to 대외비; lee: officer; root1: admin); the service tests
run a real `appliance serve` and the `appliance docs` client.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from appliance.audit import Actor, AuditLog, audit_dir
from appliance.documents import sandbox
from appliance.documents.home import escrow_to_officers, open_documents
from appliance.documents.keys import KEY_CONTENT_ID, documents_dir
from appliance.documents.library import Library
from appliance.documents.store import DocumentStore
from appliance.errors import (
    BlockedError,
    CredentialError,
    DocumentError,
    IntegrityError,
    PermissionDeniedError,
    UsageError,
)
from appliance.identity import Principal
from appliance.policy import active_policy
from appliance.seal import Identity, open_bytes
from tests import docfiles
from tests.conftest import assert_one_line_error, run_cli
from tests.servicing import add_operator, serving
from tests.staff import as_user, events

# A word no file on the host holds unless a document leaked: new for every run, so that
# files earlier runs left in the temporary directory cannot match it.
CANARY = f"카나리아문서{secrets.token_hex(4)}"
KIM = Principal("kim", "operator", "restricted")
PARK = Principal("park", "operator", "secret-2")
LEE = Principal("lee", "officer", "secret-2")
ROOT = Principal("root1", "admin", "secret-2")


@dataclass
class Shelf:
    home: Path
    log: AuditLog
    store: DocumentStore


@pytest.fixture
def library(staffed: Path) -> Iterator[Shelf]:
    with AuditLog(audit_dir(staffed)) as log, open_documents(staffed, log) as store:
        yield Shelf(staffed, log, store)


def as_(shelf: Shelf, principal: Principal) -> Library:
    return Library(shelf.home, active_policy(shelf.home), shelf.log, principal, shelf.store)


def text_file(*lines: str) -> bytes:
    return "\n".join(lines).encode("utf-8")


def leaks(roots: list[Path], word: str = CANARY, since: float = 0.0) -> list[str]:
    """Files under `roots` holding `word` in UTF-8 or UTF-16 (either byte order), among
    those changed since `since` (a leak of a test's per-run canary is a file written
    during the test; older files cannot hold it). Other processes change these folders
    as they are walked: what vanishes meanwhile is skipped."""
    needles = [word.encode(codec) for codec in ("utf-8", "utf-16-le", "utf-16-be")]
    found = []
    for root in roots:
        walked = [(str(root.parent), [], [root.name])] if root.is_file() else os.walk(root)
        for folder, _, names in walked:
            for name in names:
                path = os.path.join(folder, name)
                try:
                    status = os.lstat(path)
                    if not stat.S_ISREG(status.st_mode) or status.st_mtime < since:
                        continue
                    data = Path(path).read_bytes()
                except OSError:
                    continue
                if any(needle in data for needle in needles):
                    found.append(path)
    return found


def outside(paths: list[str], folder: Path) -> list[str]:
    """The paths not under `folder` (where the test keeps the files it adds)."""
    return [path for path in paths if not Path(path).is_relative_to(folder)]


def test_a_document_is_labelled_chunked_and_listed_for_its_owner_only(library):
    kim = as_(library, KIM)
    data = text_file("2026년 예산 집행 지침", "대외비", "각 부대는 예산을 분기별로 보고한다.")
    added = kim.add("지침.txt", data)
    document = added["document"]
    assert document["label"] == "restricted"  # the marking in the text, not the default
    assert document["format"] == "text"
    assert document["collection"] == "~kim"
    assert added["chunks"]["added"] >= 1
    assert [d["id"] for d in kim.list()["documents"]] == [document["id"]]
    shown = kim.show(document["id"], text=True)
    assert "예산을 분기별로" in "".join(chunk["text"] for chunk in shown["chunks"])
    assert shown["markings"] == ["restricted"]
    # Another operator sees nothing of it, and hears it does not exist.
    park = as_(library, PARK)
    assert park.list()["documents"] == []
    with pytest.raises(UsageError, match="no document"):
        park.show(document["id"])
    with pytest.raises(UsageError, match="no collection"):
        park.list("~kim")


def test_a_marking_only_in_a_footer_raises_the_label(library):
    kim = as_(library, KIM)
    data = docfiles.docx_bytes(["평범한 본문입니다."], footer="대외비")
    added = kim.add("footer.docx", data)
    assert added["document"]["label"] == "restricted"
    # The same document marked Ⅱ급비밀 in its footer is above kim's clearance: refused.
    secret = docfiles.docx_bytes(["평범한 본문입니다."], footer="Ⅱ급비밀")
    with pytest.raises(BlockedError, match="secret-2") as refused:
        kim.add("secret.docx", secret)
    assert refused.value.code == "above_clearance"
    names = [d["name"] for d in kim.list()["documents"]]
    assert names == ["footer.docx"]


def test_declaring_a_level_above_ones_clearance_is_refused_before_reading(library):
    kim = as_(library, KIM)
    with pytest.raises(BlockedError, match="cleared to"):
        kim.add("plan.txt", text_file("계획"), level="secret-3")
    assert kim.list()["documents"] == []


def test_re_adding_an_unchanged_file_parses_nothing(library):
    kim = as_(library, KIM)
    data = text_file(*(f"{n}. 문단 {n}: 휴가 규정의 세부 사항." * 8 for n in range(30)))
    first = kim.add("휴가.txt", data)
    parsed = sandbox.children_started()
    again = kim.add("휴가.txt", data)
    assert again["unchanged"] is True
    assert sandbox.children_started() == parsed
    # A changed file is parsed again; its unchanged passages keep their rows.
    changed = kim.add("휴가.txt", data + text_file("", "31. 새 문단."))
    assert sandbox.children_started() == parsed + 1
    assert changed["document"]["id"] == first["document"]["id"]
    assert changed["chunks"]["kept"] >= first["chunks"]["added"] - 1
    assert changed["chunks"]["added"] >= 1


def test_collections_membership_and_roles(library):
    lee, kim, park, root = (as_(library, p) for p in (LEE, KIM, PARK, ROOT))
    lee.create_collection("감사")
    with pytest.raises(UsageError, match="no collection"):
        kim.add("a.txt", text_file("가"), collection="감사")  # not a member yet
    lee.set_member("감사", "kim", member=True)
    added = kim.add("a.txt", text_file("공유 문서 본문"), collection="감사")["document"]
    assert park.list()["documents"] == []  # not a member
    lee.set_member("감사", "park", member=True)
    assert [d["id"] for d in park.list("감사")["documents"]] == [added["id"]]
    # Each member names their own documents: the same name is another document.
    own = park.add("a.txt", text_file("다른 본문"), collection="감사")["document"]
    assert own["id"] != added["id"]
    park.remove(own["id"])
    with pytest.raises(PermissionDeniedError):  # only who added it, or an officer
        park.remove(added["id"])
    # Admins have no access to documents at all; operators cannot manage collections.
    with pytest.raises(PermissionDeniedError):
        root.list()
    with pytest.raises(PermissionDeniedError):
        kim.create_collection("mine2")
    # An officer removes a shared document without reading it.
    with pytest.raises(PermissionDeniedError):
        lee.show(added["id"])
    assert lee.remove(added["id"])["chunks"] >= 1
    assert kim.list("감사")["documents"] == []


def test_the_store_is_encrypted_and_removal_leaves_no_text(library, tmp_path):
    home, store = library.home, library.store
    kim = as_(library, KIM)
    added = kim.add("canary.txt", text_file(f"{CANARY} 본문", f"{CANARY} 두 번째 줄"))
    assert CANARY in "".join(
        c["text"] for c in kim.show(added["document"]["id"], text=True)["chunks"]
    )
    assert leaks([home]) == []
    kim.remove(added["document"]["id"])
    assert leaks([home]) == []
    # What the store holds decrypted: nothing of it either.
    assert all(CANARY not in chunk.text for d in store.all_documents() for _, chunk in
               store.chunks(d.id))  # fmt: skip


def test_another_key_or_an_altered_store_does_not_open(library, tmp_path, officer):
    home, store = library.home, library.store
    as_(library, KIM).add("a.txt", text_file("본문 " * 2000))
    key = open_bytes(
        (documents_dir(home) / "store.key").read_bytes(),
        [officer],
        "store.key",
        expect_content_id=KEY_CONTENT_ID,
    )
    with pytest.raises(IntegrityError):
        DocumentStore(store.path, os.urandom(32))
    # A copy with one byte flipped in a page of chunk text opens, but that page does not
    # authenticate: reading it is an IntegrityError, never altered text.
    store.checkpoint()
    altered = tmp_path / "altered.db"
    data = bytearray(store.path.read_bytes())
    data[len(data) - 2000] ^= 0x01
    altered.write_bytes(bytes(data))

    def read_all(copy: DocumentStore) -> None:
        for document in copy.all_documents():
            copy.chunks(document.id)

    with pytest.raises(IntegrityError):
        read_all(DocumentStore(altered, key))


def test_the_store_key_is_escrowed_to_the_officers(library, officer):
    home, log = library.home, library.log
    sealed = (documents_dir(home) / "store.key").read_bytes()
    key = open_bytes(sealed, [officer], "store.key", expect_content_id=KEY_CONTENT_ID)
    assert len(key) == 32
    # A new officer set: the key is sealed to it, the old officer can no longer open it.
    new_officer = Identity.generate()
    log.set_officers([new_officer.recipient], Actor("lee", "officer"))
    escrow_to_officers(home, log)
    resealed = (documents_dir(home) / "store.key").read_bytes()
    assert open_bytes(resealed, [new_officer], "k", expect_content_id=KEY_CONTENT_ID) == key
    with pytest.raises(CredentialError):
        open_bytes(resealed, [officer], "k", expect_content_id=KEY_CONTENT_ID)


def test_reindex_reads_stale_documents_again_under_the_current_policy(library):
    store = library.store
    kim = as_(library, KIM)
    document = kim.add("r.txt", text_file("보통 문서"))["document"]
    stored = store.document(document["id"])
    store.update(replace(stored, parser="0"))
    result = kim.reindex()
    assert result == {"reindexed": 1, "failed": 0, "current": 0}
    assert store.document(document["id"]).parser != "0"
    assert kim.reindex() == {"reindexed": 0, "failed": 0, "current": 1}


def test_refusals_are_one_line_and_audited(library):
    log = library.log
    kim = as_(library, KIM)
    with pytest.raises(DocumentError) as refused:
        kim.add("bomb.hwpx", docfiles.zip_bomb())
    assert refused.value.code in ("parser_failed", "malformed")
    with pytest.raises(DocumentError) as protected:
        kim.add("locked.pdf", docfiles.encrypted_pdf(docfiles.pdf_bytes([["본문"]])))
    assert protected.value.code == "protected"
    refusals = [
        json.loads(row["leaf"])
        for row in log.events(action="doc_add")
        if json.loads(row["leaf"])["outcome"] != "ok"
    ]
    codes = [leaf["details"]["code"] for leaf in refusals]
    assert codes[-2:] == [refused.value.code, "protected"]
    assert all("bomb" not in json.dumps(leaf) for leaf in refusals)  # names are sealed


# -- through the service ------------------------------------------------------------------


def test_documents_through_the_service_leave_no_text_on_disk(staffed, model_path, tmp_path):
    """Every format through `appliance docs` against a real service; the canary is
    nowhere under the home or the temporary directories, before and after removal."""
    add_operator(staffed, "park", "secret-2")
    files = {
        "보고서.hwpx": docfiles.hwpx_bytes([f"{CANARY} 보고 본문"], header="대외비"),
        "계획.hwp": docfiles.hwp5_bytes([f"{CANARY} 계획 본문"], footer="대외비"),
        "지침.pdf": docfiles.pdf_bytes([[f"{CANARY} 지침 본문"]]),
        "회의록.docx": docfiles.docx_bytes([f"{CANARY} 회의 본문"], table=[["안건", "결과"]]),
        "메모.md": f"# 메모\n{CANARY} 메모 본문\n".encode(),
    }
    sources = tmp_path / "sources"
    sources.mkdir()
    for name, data in files.items():
        (sources / name).write_bytes(data)
    temp = Path(tempfile.gettempdir())
    began = time.time() - 2  # filesystem timestamps are coarser than the clock
    with serving(staffed, model_path) as service:
        added = run_cli(
            "docs", "add", *map(str, sources.iterdir()), "--json", *as_user(tmp_path, "kim"),
            home=staffed,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        results = [json.loads(line) for line in added.stdout.splitlines()]
        assert {r["document"]["format"] for r in results} == {"hwpx", "hwp5", "pdf", "docx", "text"}
        assert {r["document"]["label"] for r in results} >= {"restricted"}
        # The service holds the text; neither the home nor a temporary folder does.
        scanned = [staffed, temp, Path("/dev/shm")]
        assert outside(leaks(scanned, since=began), sources) == []
        listed = run_cli("docs", "list", "--json", *as_user(tmp_path, "kim"), home=staffed)
        ids = [d["id"] for d in json.loads(listed.stdout)["documents"]]
        assert len(ids) == len(files)
        other = run_cli("docs", "list", "--json", *as_user(tmp_path, "park"), home=staffed)
        assert json.loads(other.stdout)["documents"] == []
        for document_id in ids:
            removed = run_cli("docs", "remove", document_id, *as_user(tmp_path, "kim"),
                              home=staffed)  # fmt: skip
            assert removed.returncode == 0, removed.stderr
        assert outside(leaks(scanned, since=began), sources) == []
        # A hostile file costs the parser child, not the service.
        (sources / "bomb.docx").write_bytes(docfiles.zip_bomb("docx"))
        bomb = run_cli("docs", "add", str(sources / "bomb.docx"), *as_user(tmp_path, "kim"),
                       home=staffed)  # fmt: skip
        assert_one_line_error(bomb, 20, "bomb.docx")
        still = run_cli("docs", "list", *as_user(tmp_path, "kim"), home=staffed)
        assert still.returncode == 0, still.stderr
        assert service.process.poll() is None
    recorded = events(staffed, tmp_path, "--action", "doc_add")
    assert sum(event["outcome"] == "ok" for event in recorded) == len(files)
    assert recorded[-1]["outcome"] == "failed"
    assert all(CANARY not in json.dumps(event) for event in recorded)
