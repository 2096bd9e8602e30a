"""The UI's words in English and Korean: the home's config picks, else the policy.

Keys name the place a text appears; binding descriptions are keyed by the
binding's id, so the footer, help and command palette speak the same language.
Messages from the core (errors, refusals) stay as the core words them, after
a translated lead-in, so that what an operator reads matches the audit log.
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
