"""The UI's words in English and Korean: the home's config picks, else the policy.

Keys name the place a text appears; binding descriptions are keyed by the
binding's id, so the footer, help and command palette speak the same language.
Errors and refusals are worded by `appliance.tui.messages`, from their code and
parameters: in English as the core (and the audit log) words them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from textual.binding import BindingsMap
from textual.dom import DOMNode

TEXT: dict[str, tuple[str, str]] = {
    # sign-in
    "login.title": ("Sovereign AI appliance", "소버린 AI 어플라이언스"),
    "login.user": ("user name", "사용자 이름"),
    "login.password": ("password", "비밀번호"),
    "login.dev": (
        "No accounts exist: leave both fields empty and press Enter to continue in "
        "DEVELOPMENT MODE.",
        "계정이 없습니다. 두 칸을 비운 채 Enter를 누르면 개발 모드로 계속합니다.",
    ),
    "login.need_user": ("Enter your user name.", "사용자 이름을 입력하십시오."),
    "login.failed": ("Sign-in failed", "로그인 실패"),
    "login.idle": (
        "You were signed out after the policy's idle time; sign in again.",
        "정책의 유휴 시간이 지나 로그아웃되었습니다. 다시 로그인하십시오.",
    ),
    "login.demo": ("DEMO HOME: not for real data", "데모 환경: 실제 자료 사용 금지"),
    "login.changed": (
        "Your account was changed or locked; sign in again.",
        "계정이 변경되었거나 잠겼습니다. 다시 로그인하십시오.",
    ),
    "login.must_change": (
        "Your password was set by someone else: choose a new one.",
        "다른 사람이 설정한 비밀번호입니다. 새 비밀번호를 정하십시오.",
    ),
    # chat
    "chat.withdrawn": (
        "The answer was withdrawn: its label rose above your clearance.",
        "답변이 철회되었습니다. 등급이 귀하의 비밀취급인가보다 높아졌습니다.",
    ),
    "chat.placeholder": (
        "Ask… (Enter sends, Ctrl+J new line, Esc cancels)",
        "질문… (Enter 전송, Ctrl+J 줄바꿈, Esc 취소)",
    ),
    "chat.airgapped": ("air-gapped", "망분리됨"),
    "chat.network": ("NETWORK PRESENT", "네트워크 연결됨"),
    "chat.dev": ("DEVELOPMENT MODE", "개발 모드"),
    "chat.refused": ("Refused", "거부됨"),
    "chat.audit_denied": ("may not open the audit log", "감사 로그를 열 수 없습니다"),
    "chat.not_saved": (
        "Conversations are not saved in development mode.",
        "개발 모드에서는 대화가 저장되지 않습니다.",
    ),
    "chat.you": ("You", "사용자"),
    # answers from documents
    "sources.title": ("Sources given to this answer:", "이 답변에 주어진 자료:"),
    "sources.effective": ("in force {date}", "{date} 시행"),
    "sources.superseded": ("superseded", "폐지됨"),
    "sources.pick": ("Open a source at its passage", "자료를 해당 부분에서 열기"),
    "sources.none": (
        "This conversation's last answer was given no sources.",
        "이 대화의 마지막 답변에는 주어진 자료가 없습니다.",
    ),
    "sources.gone": (
        "This passage is no longer in the document: it was changed or reindexed since.",
        "이 부분은 더 이상 문서에 없습니다. 그 뒤 문서가 바뀌었거나 다시 색인되었습니다.",
    ),
    "grounded.on": (
        "Answers now come from your documents, with their sources (F2 turns it off).",
        "이제 답변은 귀하의 문서에서 나오며 출처가 함께 표시됩니다 (F2로 끕니다).",
    ),
    "grounded.off": (
        "Answers no longer come from your documents.",
        "이제 답변에 문서를 쓰지 않습니다.",
    ),
    "grounded.status": ("from documents", "문서 기반"),
    # drafts and task presets
    "draft.title": ("Save as a draft", "초안으로 저장"),
    "draft.folder": ("Folder: {folder}", "저장 위치: {folder}"),
    "draft.default_name": ("draft", "초안"),
    "draft.whole": (
        "The whole conversation (not only the last answer)",
        "대화 전체 (마지막 답변만이 아니라)",
    ),
    "draft.hint": (
        "Enter saves, Esc cancels. The file carries this conversation's classification.",
        "Enter 저장, Esc 취소. 파일에는 이 대화의 비밀 등급이 표시됩니다.",
    ),
    "draft.bad_name": (
        "Give a file name without a folder, at most 120 characters.",
        "폴더 없이 120자 이내의 파일 이름을 입력하십시오.",
    ),
    "draft.nothing": ("There is no answer to save yet.", "저장할 답변이 아직 없습니다."),
    "draft.exists": (
        "{path} already exists; choose another name.",
        "{path} 파일이 이미 있습니다. 다른 이름을 입력하십시오.",
    ),
    "draft.saved": ("Draft saved: {path} ({label})", "초안 저장됨: {path} ({label})"),
    "draft.saved_copy": (
        "Draft saved: {path} ({label}, copy No. {copy})",
        "초안 저장됨: {path} ({label}, 사본 제{copy}호)",
    ),
    "task.title": ("Task preset", "작업 유형"),
    "task.none": ("No preset (free question)", "작업 유형 없음 (자유 질문)"),
    "task.picked": (
        "Task preset: {task}. It applies from the next question in a new conversation.",
        "작업 유형: {task}. 새 대화의 다음 질문부터 적용됩니다.",
    ),
    "chat.still_answering": (
        "The answer is still being written: wait for it, or press Esc to cancel it.",
        "답변을 작성하는 중입니다. 끝날 때까지 기다리거나 Esc를 눌러 취소하십시오.",
    ),
    # conversations
    "conversations.title": ("Conversations", "대화 목록"),
    "conversations.empty": ("No saved conversations.", "저장된 대화가 없습니다."),
    "conversations.hint": (
        "Enter opens, Delete removes, Esc closes",
        "Enter 열기, Delete 삭제, Esc 닫기",
    ),
    # audit
    "audit.filter": (
        "filter: user, action, label or outcome (Enter)",
        "필터: 사용자, 동작, 등급 또는 결과 (Enter)",
    ),
    "audit.verified": ("Verified", "검증됨"),
    "audit.failed": ("FAILED", "검증 실패"),
    "audit.events": (
        "{events} events (seq {first}-{last}), {checkpoints} signed checkpoints",
        "이벤트 {events}건 (seq {first}-{last}), 서명된 체크포인트 {checkpoints}개",
    ),
    "audit.exported": ("Exported {events} events to {path}", "이벤트 {events}건을 {path}에 내보냄"),
    "audit.export_failed": ("Export failed", "내보내기 실패"),
    "audit.shown": (
        "{shown} newest of the matching events",
        "조건에 맞는 최근 이벤트 {shown}건",
    ),
    # users
    "users.added": (
        "Created {name} ({role}, cleared to {clearance}).",
        "{name} 생성 ({role}, 인가 {clearance}).",
    ),
    "users.requested": (
        "Requested the officer account {name}; an officer approves it within {hours} hours "
        "('appliance users approve {name}') and sets its first password.",
        "보안담당관 계정 {name}을(를) 요청했습니다. 보안담당관이 {hours}시간 안에 승인하고 "
        "('appliance users approve {name}') 첫 비밀번호를 정합니다.",
    ),
    "users.locked": ("Locked {name}.", "{name} 잠금."),
    "users.unlocked": ("Unlocked {name}.", "{name} 잠금 해제."),
    "users.password_set": ("Password changed for {name}.", "{name}의 비밀번호를 변경했습니다."),
    "users.form_title": ("New account", "새 계정"),
    "users.password_title": ("New password for {name}", "{name}의 새 비밀번호"),
    "users.name": ("user name", "사용자 이름"),
    "users.role": ("role", "역할"),
    "users.clearance": ("clearance", "비밀취급인가"),
    "users.repeat": ("password again", "비밀번호 확인"),
    "users.mismatch": ("The passwords differ.", "비밀번호가 서로 다릅니다."),
    "users.state_locked": ("locked", "잠김"),
    "users.state_active": ("active", "활성"),
    # documents
    "documents.label": ("label", "등급"),
    "documents.name": ("name", "파일명"),
    "documents.collection": ("collection", "문서함"),
    "documents.format": ("format", "형식"),
    "documents.pages": ("pages", "쪽수"),
    "documents.date": ("added", "등록일"),
    "documents.empty": (
        "No documents you may read yet: A adds a file.",
        "열람할 수 있는 문서가 없습니다. A로 파일을 추가합니다.",
    ),
    "documents.form_title": ("Add a document", "문서 추가"),
    "documents.path": (
        "path of the file (HWP/HWPX, PDF, DOCX, text)",
        "파일 경로 (HWP/HWPX, PDF, DOCX, 텍스트)",
    ),
    "documents.level": ("level (blank: the policy's default)", "등급 (비우면 정책 기본값)"),
    "documents.target": (
        "shared collection (blank: your own)",
        "공유 문서함 (비우면 내 문서함)",
    ),
    "documents.form_hint": (
        "Enter adds, Tab moves between fields, Esc closes",
        "Enter 추가, Tab 칸 이동, Esc 닫기",
    ),
    "documents.need_path": ("Enter the path of a file.", "파일 경로를 입력하십시오."),
    "documents.not_file": ("{path} is not a file.", "{path}은(는) 파일이 아닙니다."),
    "documents.too_large": (
        "{path} is larger than {mib} MiB.",
        "{path}은(는) {mib} MiB보다 큽니다.",
    ),
    "documents.unreadable": (
        "Cannot read {path}: {reason}",
        "{path}을(를) 읽을 수 없습니다: {reason}",
    ),
    "documents.added": (
        "Added {name} to {collection} as {label} ({chunks} chunks).",
        "{name}을(를) {collection}에 {label}(으)로 추가했습니다 (청크 {chunks}개).",
    ),
    "documents.unchanged": (
        "{name} is already in {collection}, unchanged.",
        "{name}은(는) 이미 {collection}에 있으며 변경되지 않았습니다.",
    ),
    "documents.removed": ("Removed {name}.", "{name}을(를) 삭제했습니다."),
    "documents.refused": ("Refused", "거부됨"),
    "documents.busy": (
        "A file is being added; wait until it is done.",
        "파일을 추가하는 중입니다. 끝날 때까지 기다리십시오.",
    ),
    "documents.confirm": (
        "Remove {name} ({label}) and its text from the store?",
        "{name}({label})과(와) 그 본문을 저장소에서 삭제하시겠습니까?",
    ),
    "documents.confirm_hint": ("Enter removes, Esc keeps it", "Enter 삭제, Esc 취소"),
    "documents.details": ("Document", "문서 정보"),
    "documents.declared": (
        "declared {declared}, found in the text {found}",
        "선언 {declared}, 본문에서 발견 {found}",
    ),
    "documents.markings": ("markings", "표시"),
    "documents.findings": ("findings", "탐지"),
    "documents.chunks": ("chunks", "청크"),
    "documents.bytes": ("{count} bytes", "{count}바이트"),
    "documents.none": ("none", "없음"),
    "documents.stage.upload": ("sending", "전송"),
    "documents.stage.parse": ("reading", "분석"),
    "documents.stage.label": ("labelling", "등급 판정"),
    "documents.stage.terms": ("indexing words", "색인"),
    "documents.stage.embed": ("indexing meaning", "의미 색인"),
    "documents.stage.store": ("storing", "저장"),
    "documents.stage.done": ("done", "완료"),
    "chat.documents_denied": ("may not use documents", "문서를 사용할 수 없습니다"),
    # panels
    "panel.keys": ("Keys", "단축키"),
    "panel.status": ("Status", "상태"),
    "panel.esc": ("(Esc closes)", "(Esc 닫기)"),
    "panel.palette": ("command palette", "명령 팔레트"),
    # bindings, by id
    "quit": ("Quit", "종료"),
    "sign_out": ("Sign out", "로그아웃"),
    "help": ("Help", "도움말"),
    "status": ("Status", "상태"),
    "cancel": ("Cancel answer", "답변 취소"),
    "reset": ("New conversation", "새 대화"),
    "conversations": ("Conversations", "대화 목록"),
    "audit": ("Audit log", "감사 로그"),
    "users": ("Users", "사용자 관리"),
    "newline": ("New line", "줄바꿈"),
    "history.previous": ("Previous prompt", "이전 질문"),
    "history.next": ("Next prompt", "다음 질문"),
    "audit.verify": ("Verify", "검증"),
    "audit.export": ("Export", "내보내기"),
    "back": ("Back", "뒤로"),
    "users.add": ("Add", "추가"),
    "users.lock": ("Lock", "잠금"),
    "users.unlock": ("Unlock", "잠금 해제"),
    "users.passwd": ("Set password", "비밀번호 설정"),
    "panel.close": ("Close", "닫기"),
    "documents": ("Documents", "문서"),
    "task": ("Task preset", "작업 유형"),
    "grounded": ("Answer from documents", "문서로 답변"),
    "draft": ("Save draft", "초안 저장"),
    "sources": ("Open source", "자료 열기"),
    "documents.add": ("Add file", "파일 추가"),
    "documents.remove": ("Remove", "삭제"),
    "documents.show": ("Details", "상세 정보"),
    "documents.confirm_yes": ("Remove", "삭제"),
    "conversations.delete": ("Delete", "삭제"),
    "palette": ("palette", "명령"),
    "palette.search": ("Search for commands…", "명령 검색…"),
    "password": ("Password", "비밀번호 변경"),
    # one's own password (F8)
    "password.title": ("Change the password of {name}", "{name}의 비밀번호 변경"),
    "password.current": ("current password", "현재 비밀번호"),
    "password.new": ("new password", "새 비밀번호"),
    "password.hint": (
        "Your saved conversations stay locked with the current password: at your next "
        "sign-in they are set aside (kept, not deleted) and new ones are saved.",
        "저장된 대화는 현재 비밀번호로 잠겨 있어, 다음 로그인 때 삭제되지 않고 따로 "
        "보관되며 새 대화부터 다시 저장됩니다.",
    ),
    "password.wrong_current": ("The current password is wrong.", "현재 비밀번호가 틀렸습니다."),
    "password.changed": (
        "Your password was changed: sign in with the new one.",
        "비밀번호를 변경했습니다. 새 비밀번호로 로그인하십시오.",
    ),
    "password.dev": (
        "Development mode has no passwords to change.",
        "개발 모드에는 변경할 비밀번호가 없습니다.",
    ),
    # roles, as tables and forms show them
    "role.operator": ("operator", "운영자"),
    "role.officer": ("officer", "보안담당관"),
    "role.admin": ("admin", "관리자"),
    # table headers
    "audit.column.seq": ("seq", "순번"),
    "audit.column.time": ("time (UTC)", "시각 (UTC)"),
    "audit.column.user": ("user", "사용자"),
    "audit.column.role": ("role", "역할"),
    "audit.column.action": ("action", "동작"),
    "audit.column.label": ("label", "등급"),
    "audit.column.outcome": ("outcome", "결과"),
    "users.column.user": ("user", "사용자"),
    "users.column.role": ("role", "역할"),
    "users.column.clearance": ("clearance", "비밀취급인가"),
    "users.column.state": ("state", "상태"),
    "users.column.failures": ("failures", "실패 횟수"),
    # the status panel (F4); Korean labels are padded to the same 10 cells
    "status.service": (
        "service   appliance {version}, {socket}",
        "서비스    어플라이언스 {version}, {socket}",
    ),
    "status.policy": (
        "policy    {policy} (sha256 {sha256}...)",
        "정책      {policy} (sha256 {sha256}...)",
    ),
    "status.model": ("model     {model}", "모델      {model}"),
    "status.airgapped": (
        "network   air-gapped (as the service sees it)",
        "네트워크  망분리됨 (서비스가 확인한 상태)",
    ),
    "status.not_airgapped": (
        "network   NOT air-gapped (as the service sees it)",
        "네트워크  망분리되지 않음 (서비스가 확인한 상태)",
    ),
    "status.network_unknown": ("network   unknown: {reason}", "네트워크  알 수 없음: {reason}"),
    "status.audit_verified": (
        "audit     verified, {events} events, {checkpoints} signed checkpoints",
        "감사 로그 검증됨, 이벤트 {events}건, 서명된 체크포인트 {checkpoints}개",
    ),
    "status.audit_failed": ("audit     FAILED: {reason}", "감사 로그 검증 실패: {reason}"),
}


def words(language: str, key: str, **fields: Any) -> str:
    english, korean = TEXT[key]
    text = korean if language == "ko" else english
    return text.format(**fields) if fields else text


def localize_bindings(node: DOMNode, language: str) -> None:
    """Give a screen's bindings their descriptions in `language`, by binding id.

    Textual shares one bindings map between instances of a class, so the
    screen gets a new map rather than an edited one.
    """
    if language == "en":
        return
    node._bindings = BindingsMap.from_keys(  # no public setter exists
        {
            key: [
                replace(b, description=words(language, b.id)) if b.id in TEXT else b
                for b in bindings
            ]
            for key, bindings in node._bindings.key_to_bindings.items()
        }
    )
