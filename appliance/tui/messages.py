"""The UI's words for errors and refusals, in English and Korean, by the error's code.

The core raises every error with a stable code and its parameters (names,
levels, counts), and the service sends both along with its English sentence.
English keeps that sentence: it is what the CLI prints and the audit log
records. Korean is built here from the code and the parameters alone, never
from the English sentence, so the two languages say the same facts. A code
without an entry of its own, or one whose parameters did not all arrive, is
said with its error class's sentence.

Templates are `str.format` strings over the error's parameters. A code may
list several, most precise first: the first whose parameters all arrived is
used. Some parameter values are ids that have words of their own (a DLP
detector, a role, a level); the rest are inserted as given.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

from appliance.errors import (
    ApplianceError,
    AuditError,
    AuthenticationError,
    BlockedError,
    BundleError,
    BusyError,
    CheckFailedError,
    ConfigError,
    ContextOverflowError,
    CredentialError,
    DocumentError,
    EngineError,
    HostSecurityError,
    IncompleteLogError,
    InputError,
    IntegrityError,
    ModelFormatError,
    PermissionDeniedError,
    PolicyError,
    ServiceError,
    UsageError,
)
from appliance.tui.text import TEXT

Template = tuple[str, str]  # (English, Korean)

MESSAGES: dict[str, Template | list[Template]] = {
    # -- signing in ------------------------------------------------------------------------
    "wrong_password": [
        (
            "wrong user name or password; the next attempt with this name must wait until "
            "{wait_until_us}",
            "사용자 이름 또는 비밀번호가 틀렸습니다. 이 이름으로 다시 시도하려면 "
            "{wait_until_us}까지 기다려야 합니다.",
        ),
        ("wrong user name or password", "사용자 이름 또는 비밀번호가 틀렸습니다."),
    ],
    "throttled": [
        (
            "too many wrong passwords for this user name; try again after {wait_until_us}",
            "이 사용자 이름으로 비밀번호가 여러 번 틀렸습니다. {wait_until_us} 이후에 다시 "
            "시도하십시오.",
        ),
        (
            "too many wrong passwords for this user name; try again later",
            "이 사용자 이름으로 비밀번호가 여러 번 틀렸습니다. 잠시 후 다시 시도하십시오.",
        ),
    ],
    "locked": (
        "the account {user} is locked",
        "{user} 계정은 잠겨 있습니다. 관리자에게 문의하십시오.",
    ),
    "no_users": (
        "there are no users yet; an admin and an officer create the first accounts",
        "아직 계정이 없습니다. 관리자와 보안담당관이 첫 계정을 만들어야 합니다.",
    ),
    "no_dev_mode": (
        "no users exist and policy {policy} forbids development mode",
        "계정이 없으며 정책 {policy}은(는) 개발 모드를 허용하지 않습니다. 관리자와 "
        "보안담당관이 첫 계정을 만들어야 합니다.",
    ),
    "needed": (
        "sign in with a user name and password",
        "사용자 이름과 비밀번호로 로그인하십시오.",
    ),
    "os_user": (
        "{user} may sign in only from the OS account bound to it",
        "{user} 계정은 연결된 OS 계정에서만 로그인할 수 있습니다. 관리자에게 문의하십시오.",
    ),
    "level_above_clearance": (
        "{user} is cleared to {clearance}, not {level}",
        "{user}의 비밀취급인가는 {clearance}(으)로, {level} 등급으로 작업할 수 없습니다.",
    ),
    "must_change": (
        "the password of {user} was set by someone else; set your own first",
        "{user}의 비밀번호는 다른 사람이 설정했습니다. 먼저 본인의 비밀번호를 정하십시오.",
    ),
    # -- sessions ----------------------------------------------------------------------------
    "no_session": (
        "this connection is not signed in; sign in first",
        "로그인된 세션이 없습니다. 먼저 로그인하십시오.",
    ),
    "signed_in": ("this connection is already signed in", "이미 로그인되어 있습니다."),
    "idle": [
        (
            "the session was idle for more than {minutes} minutes; sign in again",
            "{minutes}분 넘게 사용하지 않아 세션이 종료되었습니다. 다시 로그인하십시오.",
        ),
        (
            "the session was idle too long; sign in again",
            "오랫동안 사용하지 않아 세션이 종료되었습니다. 다시 로그인하십시오.",
        ),
    ],
    "no_sign_in": (
        "no sign-in came in time; connect again",
        "제시간에 로그인하지 않아 연결이 끊겼습니다. 다시 연결하십시오.",
    ),
    "account_changed": [
        (
            "the account {user} was changed or locked since it signed in; sign in again",
            "{user} 계정이 로그인 후 변경되었거나 잠겼습니다. 다시 로그인하십시오.",
        ),
        (
            "the account was changed or locked since it signed in; sign in again",
            "계정이 로그인 후 변경되었거나 잠겼습니다. 다시 로그인하십시오.",
        ),
    ],
    # -- accounts ----------------------------------------------------------------------------
    "role_denied": (
        "{user} ({role}) may not do this; it needs the {roles} role",
        "{user}({role})은(는) 이 작업을 할 수 없습니다. {roles} 역할이 필요합니다.",
    ),
    "user_exists": ("the user {user} already exists", "{user} 사용자가 이미 있습니다."),
    "accounts_exist": (
        "accounts exist already; admins add more with 'appliance users add'",
        "계정이 이미 있습니다. 계정 추가는 관리자가 합니다.",
    ),
    "setup_denied": (
        "only root or the service's own user sets up the home",
        "홈 설정은 root 또는 서비스 자신의 사용자만 할 수 있습니다.",
    ),
    "no_user": ("there is no user {user}", "{user} 사용자가 없습니다."),
    "no_request": (
        "there is no pending request for {user} (or it expired)",
        "{user}에 대한 요청이 없거나 만료되었습니다.",
    ),
    "unknown_role": ("unknown role '{role}'", "알 수 없는 역할입니다: {role}"),
    "bad_user_name": (
        "that is not a valid user name (a-z, 0-9, . _ -; 2-32, a letter first)",
        "올바른 사용자 이름이 아닙니다. 영문 소문자로 시작하는 2~32자이며 영문 소문자, "
        "숫자, '.', '_', '-'만 쓸 수 있습니다.",
    ),
    "password_short": (
        "the password must have at least {min_length} characters",
        "비밀번호는 {min_length}자 이상이어야 합니다.",
    ),
    "bad_uid": ("an OS uid is from 0 to {most}", "OS 사용자 번호(UID)는 0부터 {most}까지입니다."),
    "no_proof": (
        "the officer keys were not proved; they stay as they were",
        "보안담당관 키를 증명하지 못했습니다. 키는 변경되지 않았습니다.",
    ),
    # -- asking ------------------------------------------------------------------------------
    "dlp_blocked": (
        "{what} was refused by policy: it contains {kind}",
        "{what}에 포함된 {kind} 때문에 보안 정책에 따라 거부되었습니다.",
    ),
    "answer_blocked": (
        "the answer was stopped by policy: it contained {kind}",
        "답변에 포함된 {kind} 때문에 보안 정책에 따라 답변이 중단되었습니다.",
    ),
    "label_above_clearance": (
        "the {what} is labelled {label}, above the clearance of {user} ({clearance})",
        "{what}의 등급이 {label}(으)로, {user}의 비밀취급인가({clearance})보다 높습니다.",
    ),
    "remote_above": (
        "the policy sends no turn labelled {label} to the GPU servers, and answers none here",
        "정책상 {label} 등급의 질문은 GPU 서버로 보내지 않으며 이 호스트에서도 답하지 않습니다.",
    ),
    "no_airgap": (
        "policy {policy} requires an air gap, but this host is not air-gapped",
        "정책 {policy}은(는) 망분리를 요구하지만 이 호스트는 망분리되어 있지 않습니다. "
        "네트워크를 분리하거나 어플라이언스를 systemd 유닛으로 실행하십시오.",
    ),
    "contextoverflow": (
        "the prompt needs {needed} tokens but the context window leaves room for {room}",
        "질문에 토큰 {needed}개가 필요하지만 모델의 문맥 창에는 {room}개만 남아 있습니다. "
        "질문을 줄이거나 새 대화를 시작하십시오.",
    ),
    "one_at_a_time": (
        "one request at a time on a connection: wait for the answer or cancel it",
        "요청은 한 번에 하나씩 처리됩니다. 답변이 끝날 때까지 기다리거나 취소하십시오.",
    ),
    "too_many_conversations": (
        "a connection keeps at most {most} conversations; reset one",
        "대화는 최대 {most}개까지 유지됩니다. 하나를 새 대화로 시작하십시오.",
    ),
    "system_changed": (
        "a conversation keeps the system prompt it started with; reset it to change it",
        "대화는 처음의 시스템 프롬프트를 유지합니다. 바꾸려면 새 대화를 시작하십시오.",
    ),
    "task_and_system": (
        "a task preset brings its own system prompt: give one or the other, not both",
        "작업 유형에는 자체 시스템 프롬프트가 있습니다. 둘 중 하나만 지정하십시오.",
    ),
    "no_task": ("the policy has no task '{task}'", "정책에 '{task}' 작업 유형이 없습니다."),
    # -- the service's load ------------------------------------------------------------------
    "busy": (
        "the appliance is busy: {ahead} requests ahead; try again shortly",
        "어플라이언스가 사용 중입니다 (앞선 요청 {ahead}건). 잠시 후 다시 시도하십시오.",
    ),
    "user_limit": (
        "you already have {count} answers waiting or running, the most the policy allows",
        "이미 답변 {count}건이 대기 중이거나 진행 중이며 정책이 허용하는 최대치입니다. "
        "하나가 끝나거나 취소한 뒤 다시 시도하십시오.",
    ),
    "sessions_full": (
        "the appliance has {most} sessions open, the most its policy allows; try again shortly",
        "열린 세션이 정책의 최대치({most}개)에 이르렀습니다. 잠시 후 다시 시도하십시오.",
    ),
    "shutting_down": (
        "the appliance service is shutting down",
        "어플라이언스 서비스가 종료되는 중입니다.",
    ),
    "stopped": ("the appliance service stopped", "어플라이언스 서비스가 중지되었습니다."),
    # -- the connection to the service -------------------------------------------------------
    "no_service": (
        "no appliance service answers for {home}; 'appliance doctor' without --user "
        "checks the home in this process",
        "{home}에 응답하는 어플라이언스 서비스가 없습니다. 로그인 없이 점검하면 "
        "이 프로세스에서 홈을 점검합니다.",
    ),
    "service_gone": (
        "the appliance service went away",
        "어플라이언스 서비스와의 연결이 끊겼습니다.",
    ),
    "service_timeout": (
        "the appliance service did not answer in time",
        "어플라이언스 서비스가 제시간에 응답하지 않았습니다.",
    ),
    "service_closed": (
        "the appliance service closed the connection",
        "어플라이언스 서비스가 연결을 닫았습니다.",
    ),
    "protocol_broken": (
        "the appliance service broke the protocol",
        "어플라이언스 서비스의 응답이 프로토콜에 맞지 않습니다.",
    ),
    "protocol": (
        "the peer broke the protocol",
        "주고받은 메시지가 프로토콜에 맞지 않아 연결을 끊었습니다.",
    ),
    "unknown_op": (
        "the service does not know this request",
        "서비스가 알지 못하는 요청입니다. 클라이언트와 서비스의 버전을 확인하십시오.",
    ),
    "bad_field": ("a field of the request is not valid", "요청의 항목이 올바르지 않습니다."),
    "gone": (
        "the client stopped reading the export",
        "클라이언트가 내보내기를 끝까지 받지 않았습니다.",
    ),
    # -- saved conversations and drafts ------------------------------------------------------
    "not_saved": (
        "conversations are saved only for a user signed in with a password",
        "저장된 대화를 사용할 수 없습니다. 대화는 비밀번호로 로그인한 세션에서만 저장됩니다.",
    ),
    "no_conversation": (
        "there is no such saved conversation",
        "저장된 대화를 찾을 수 없습니다.",
    ),
    "draft_format": ("no draft format {format}", "초안 형식 {format}은(는) 지원하지 않습니다."),
    "draft_empty": ("there is no answer to save yet", "저장할 답변이 아직 없습니다."),
    "draft_clearance": (
        "the conversation is labelled {level}, above your clearance",
        "대화의 등급({level})이 비밀취급인가보다 높아 초안으로 저장할 수 없습니다.",
    ),
    "draft_level": (
        "the policy lets no draft above {allowed} leave the appliance; this conversation "
        "is {level}",
        "정책상 {allowed}보다 높은 등급의 초안은 어플라이언스 밖으로 내보낼 수 없습니다. "
        "이 대화는 {level}입니다.",
    ),
    "draft_copies": (
        "the file of copy numbers is damaged",
        "사본 번호 파일이 손상되었습니다. 관리자에게 문의하십시오.",
    ),
    "draft_invalid": (
        "the draft cannot be made: it is too large or incomplete",
        "초안을 만들 수 없습니다. 내용이 너무 크거나 필요한 항목이 빠져 있습니다.",
    ),
    "draft_failed": (
        "the draft could not be rendered",
        "초안 파일을 만들지 못했습니다.",
    ),
    "draft_title": (
        "a draft's title is printable characters, not too long",
        "초안 제목이 비어 있거나 너무 길거나 쓸 수 없는 문자가 들어 있습니다.",
    ),
    # -- documents ---------------------------------------------------------------------------
    "above_clearance": [
        (
            "{file} is {label}, above the clearance of {user}; it was not read",
            "{file}의 등급은 {label}(으)로 {user}의 비밀취급인가({clearance})보다 높아 "
            "읽지 않았습니다.",
        ),
        (
            "{name} is {label}, above the clearance of {user}; it was not added",
            "{name}의 등급은 {label}(으)로 {user}의 비밀취급인가({clearance})보다 높아 "
            "추가하지 않았습니다.",
        ),
        (
            "{user} is cleared to {clearance} and cannot add a document at {label}",
            "{user}의 비밀취급인가는 {clearance}(으)로, {label} 등급 문서를 추가할 수 없습니다.",
        ),
    ],
    "too_large": [
        (
            "{name} is larger than the policy's {most_mib} MiB for a document",
            "{name}은(는) 정책의 문서 크기 한도({most_mib} MiB)보다 큽니다.",
        ),
        (
            "the file is larger than the policy's {most_mib} MiB for a document",
            "파일이 정책의 문서 크기 한도({most_mib} MiB)보다 큽니다.",
        ),
    ],
    "upload_mismatch": [
        (
            "the uploaded bytes are not {file}, the file the client named; it was not read",
            "전송된 내용이 지정한 파일 {file}과(와) 다릅니다. 파일을 읽지 않았습니다.",
        ),
        (
            "the uploaded bytes are not the file the client named; nothing was added",
            "전송된 내용이 지정한 파일과 다릅니다. 아무것도 추가하지 않았습니다.",
        ),
    ],
    "malformed": [
        (
            "{name}: the document is damaged or malformed",
            "{name}: 문서가 손상되었거나 형식이 올바르지 않아 읽을 수 없습니다.",
        ),
        (
            "the document is damaged or malformed",
            "문서가 손상되었거나 형식이 올바르지 않아 읽을 수 없습니다.",
        ),
    ],
    "protected": [
        (
            "{name}: the document is protected; remove the password and try again",
            "{name}: 암호로 보호된 문서입니다. 암호를 해제한 뒤 다시 시도하십시오.",
        ),
        (
            "the document is protected; remove the password and try again",
            "암호로 보호된 문서입니다. 암호를 해제한 뒤 다시 시도하십시오.",
        ),
    ],
    "unsupported_format": [
        (
            "{name}: not a supported document",
            "{name}: 지원하지 않는 형식입니다. 한글(HWP·HWPX), PDF, 워드(DOCX), 텍스트 "
            "파일을 추가할 수 있습니다.",
        ),
        (
            "not a supported document",
            "지원하지 않는 형식입니다. 한글(HWP·HWPX), PDF, 워드(DOCX), 텍스트 파일을 "
            "추가할 수 있습니다.",
        ),
    ],
    "parser_failed": [
        ("{name}: the document could not be parsed", "{name}: 문서를 분석하지 못했습니다."),
        ("the document could not be parsed", "문서를 분석하지 못했습니다."),
    ],
    "bad_collection_name": (
        "a collection's name is 1 to 64 letters, digits, '.', '_' or '-'",
        "문서함 이름은 영문자나 숫자로 시작하는 1~64자의 영문자, 숫자, '.', '_', '-'입니다.",
    ),
    "collection_exists": (
        "a collection named {name} exists already",
        "{name} 문서함이 이미 있습니다.",
    ),
    "no_collection": (
        "no collection {name} that {user} may use",
        "{user}이(가) 사용할 수 있는 {name} 문서함이 없습니다.",
    ),
    "no_document": (
        "no such document that {user} may read",
        "{user}이(가) 열람할 수 있는 해당 문서가 없습니다.",
    ),
    "not_your_document": (
        "the document was added by {added_by}; they or an officer remove it",
        "{added_by}이(가) 추가한 문서입니다. 추가한 사람이나 보안담당관만 삭제할 수 있습니다.",
    ),
    "bad_file_name": (
        "{name} is not a file name a document can be listed under",
        "{name}은(는) 문서 이름으로 쓸 수 없는 파일 이름입니다.",
    ),
    # -- the audit log -----------------------------------------------------------------------
    "tampered": (
        "audit log fails verification at seq {seq}",
        "감사 로그 검증이 seq {seq}에서 실패했습니다. 기록이 변조되었거나 손상되었습니다.",
    ),
    # -- backups -----------------------------------------------------------------------------
    "backup_unconfigured": (
        "no backups are configured for this home ([backup] in config.toml)",
        "이 어플라이언스에는 백업이 설정되어 있지 않습니다. 관리자가 사이트 설정에 백업 폴더와 "
        "수신자를 추가하고 보안 담당관이 승인해야 합니다.",
    ),
}

# Each error class's sentence: for codes without an entry, or without their parameters.
FALLBACKS: dict[type[ApplianceError], Template] = {
    ApplianceError: (
        "The appliance failed; its log says why.",
        "어플라이언스에서 오류가 발생했습니다. 관리자에게 서비스 로그 확인을 요청하십시오.",
    ),
    UsageError: ("The request is not valid.", "요청이 올바르지 않습니다."),
    InputError: ("The file is missing or unreadable.", "파일이 없거나 읽을 수 없습니다."),
    ModelFormatError: (
        "The model file is not a valid GGUF.",
        "모델 파일이 올바른 GGUF 형식이 아닙니다.",
    ),
    EngineError: (
        "The inference engine failed.",
        "추론 엔진에 오류가 발생했습니다. 관리자에게 문의하십시오.",
    ),
    IntegrityError: (
        "An integrity check failed: a file is not what it must be.",
        "무결성 검사에 실패했습니다. 파일이 변조되었거나 손상되었을 수 있습니다.",
    ),
    ConfigError: (
        "The appliance's configuration is unusable.",
        "어플라이언스 설정을 사용할 수 없습니다. 관리자에게 문의하십시오.",
    ),
    ContextOverflowError: (
        "The prompt is too long for the model.",
        "질문이 너무 길어 모델이 처리할 수 없습니다. 질문을 줄이거나 새 대화를 시작하십시오.",
    ),
    CredentialError: (
        "Wrong identity or passphrase.",
        "식별 정보 또는 암호 문구가 맞지 않습니다.",
    ),
    HostSecurityError: (
        "This host cannot provide a protection the appliance requires.",
        "이 호스트는 어플라이언스에 필요한 보호 기능을 제공하지 못합니다.",
    ),
    AuditError: (
        "The audit log cannot record this, so it was not done.",
        "감사 로그에 기록할 수 없어 요청을 처리하지 않았습니다.",
    ),
    PolicyError: ("The policy is not valid.", "보안 정책 파일이 올바르지 않습니다."),
    BlockedError: ("Refused by policy.", "보안 정책에 따라 거부되었습니다."),
    AuthenticationError: (
        "Authentication failed; sign in again.",
        "인증에 실패했습니다. 다시 로그인하십시오.",
    ),
    PermissionDeniedError: (
        "Your role may not do this.",
        "현재 역할로는 이 작업을 할 수 없습니다.",
    ),
    BundleError: ("The bundle was refused.", "번들이 거부되었습니다."),
    CheckFailedError: ("A health check failed.", "상태 점검에서 실패한 항목이 있습니다."),
    BusyError: (
        "The appliance is busy; try again shortly.",
        "어플라이언스가 사용 중입니다. 잠시 후 다시 시도하십시오.",
    ),
    ServiceError: (
        "The appliance service is unavailable.",
        "어플라이언스 서비스를 사용할 수 없습니다.",
    ),
    DocumentError: ("The document cannot be read.", "문서를 읽을 수 없습니다."),
    IncompleteLogError: (
        "The audit log was restored from a backup and is not complete.",
        "감사 기록이 백업에서 복원되어 완전하지 않습니다.",
    ),
}

# -- words for parameter values that are ids ---------------------------------------------------

KINDS: dict[str, Template] = {  # DLP detectors
    "rrn": ("a resident registration number", "주민등록번호"),
    "foreigner_rn": ("a foreigner registration number", "외국인등록번호"),
    "passport": ("a passport number", "여권번호"),
    "driver_license": ("a driver's licence number", "운전면허번호"),
    "phone": ("a phone number", "전화번호"),
    "business_rn": ("a business registration number", "사업자등록번호"),
    "corporate_rn": ("a corporate registration number", "법인등록번호"),
    "bank_account": ("a bank account number", "계좌번호"),
    "service_number": ("a military service number", "군번"),
    "mgrs": ("a grid reference", "군사 좌표(MGRS)"),
    "marking": ("a classification marking", "비밀 표시"),
}
KIND_RULE: Template = ("a match for the rule '{}'", "'{}' 규칙에 해당하는 내용")  # custom rules

PARTS: dict[str, Template] = {  # what a refusal is about
    "the prompt": ("the prompt", "질문"),
    "prompt": ("prompt", "질문"),
    "an earlier message": ("an earlier message", "이전 메시지"),
    "the system prompt": ("the system prompt", "시스템 프롬프트"),
    "answer": ("answer", "답변"),
    "conversation": ("conversation", "대화"),
    "saved conversation": ("saved conversation", "저장된 대화"),
}

ROLES: dict[str, Template] = {
    role: TEXT[f"role.{role}"] for role in ("operator", "officer", "admin")
}
OR: Template = (" or ", " 또는 ")

LEVEL_PARAMS = frozenset({"level", "clearance", "label", "allowed"})  # level ids or names

# The notices the service sends at sign-in as English sentences, with no code.
_NOTICES: tuple[tuple[re.Pattern[str], Template], ...] = (
    (
        re.compile(
            r"your saved conversations were locked with a previous password; "
            r"they were set aside as (?P<aside>\S+)"
        ),
        (
            "Your saved conversations were locked with a previous password; they were set "
            "aside as {aside}.",
            "저장된 대화가 이전 비밀번호로 잠겨 있어 {aside}(으)로 따로 보관했습니다. "
            "새 대화부터 다시 저장됩니다.",
        ),
    ),
    (
        re.compile(r"your saved conversations could not be opened: .*"),
        (
            "Your saved conversations could not be opened; this session saves none.",
            "저장된 대화를 열 수 없어 이번 세션에서는 대화가 저장되지 않습니다.",
        ),
    ),
)


def say(error: ApplianceError, language: str, levels: Mapping[str, str] | None = None) -> str:
    """What the UI shows for `error` in `language` ("ko", else English).

    English is the core's own sentence; Korean the code's template filled with
    the error's parameters, else the class's sentence: never the English one.
    `levels` names level ids in `language`, for the parameters that hold levels.
    """
    if language != "ko" and error.message:
        return error.message
    index = 1 if language == "ko" else 0
    fields = _fields(error.params, index, levels or {})
    entry = MESSAGES.get(error.code, [])
    for template in entry if isinstance(entry, list) else [entry]:
        try:
            return template[index].format(**fields)
        except (KeyError, IndexError, ValueError, AttributeError):
            continue  # a parameter did not come: a less precise template, or the class's
    return fallback(type(error))[index]


def fallback(cls: type[ApplianceError]) -> Template:
    """The sentence of `cls`, or of the nearest class above it that has one."""
    for base in cls.__mro__:
        if base in FALLBACKS:
            return FALLBACKS[base]
    return FALLBACKS[ApplianceError]


def notice(text: str, language: str) -> str:
    """A notice the service sent at sign-in, in `language`; one it never sends as given."""
    if language != "ko":
        return text
    for pattern, template in _NOTICES:
        found = pattern.fullmatch(text)
        if found:
            return template[1].format(**found.groupdict())
    return text


def _fields(params: Mapping[str, Any], index: int, levels: Mapping[str, str]) -> dict[str, Any]:
    """The parameters as a template shows them: ids in words, times as clocks. A value
    that is None (or a zero time) is left out, as if it had not come."""
    fields: dict[str, Any] = {}
    for name, value in params.items():
        if name in LEVEL_PARAMS and isinstance(value, str):
            value = levels.get(value, value)
        elif name == "wait_until_us":
            value = _clock(value)
        elif name in _WORDS:
            table, other = _WORDS[name]
            items = value if isinstance(value, list) else [value]
            value = OR[index].join(_word(table, item, index, other) for item in items)
        if value is not None:
            fields[name] = value
    return fields


_WORDS: dict[str, tuple[Mapping[str, Template], Template | None]] = {
    "kind": (KINDS, KIND_RULE),
    "what": (PARTS, None),
    "role": (ROLES, None),
    "roles": (ROLES, None),
}


def _word(table: Mapping[str, Template], value: Any, index: int, other: Template | None) -> str:
    if isinstance(value, str) and value in table:
        return table[value][index]
    return other[index].format(value) if other is not None else str(value)


def _clock(value: Any) -> str | None:
    """A time in microseconds as the core words it (UTC); a zero one is no time."""
    try:
        micros = int(value)
    except (TypeError, ValueError):
        return str(value)
    return time.strftime("%H:%M:%S UTC", time.gmtime(micros / 1e6)) if micros > 0 else None
