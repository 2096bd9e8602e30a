"""The questions of the evaluation set, each with where its answer is.

A question names its gold document by key and the answer's span: an exact
piece of that document's text (as parsed, whitespace aside), so a retrieved
passage can be checked by whether it holds the span. Questions are put the
way people ask (spoken forms, other words than the document's, English),
never copied from the text.

Versions: a question that names no year is about the rule in force now, so
its gold is the newer document; one that names the old rule's year has the
old one as gold. Questions no document answers have no gold and no span: the
appliance should decline them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    gold: str | None  # key of the document that answers it; None: no document does
    span: str | None  # the answer, exactly as the gold document has it
    lang: str = "ko"
    blind: bool = False  # written by someone who never saw the rules tuned on this set

    @property
    def answerable(self) -> bool:
        return self.gold is not None


def _ko(id: str, text: str, gold: str | None = None, span: str | None = None) -> Question:
    return Question(id, text, gold, span, "ko")


def _en(id: str, text: str, gold: str | None = None, span: str | None = None) -> Question:
    return Question(id, text, gold, span, "en")


def _blind(question: Question) -> Question:
    return Question(question.id, question.text, question.gold, question.span, question.lang, True)


# fmt: off
QUESTIONS: tuple[Question, ...] = (
    # Leave: the 2025 rule supersedes the 2023 one.
    _ko("leave-01", "휴가 신청은 출발 며칠 전까지 해야 돼?", "leave-rule-2025",
        "출발 예정일 5일 전까지 인사관리체계로 신청한다"),
    _ko("leave-02", "2023년 지침 기준으로는 휴가 신청 마감이 출발 며칠 전이었나요?",
        "leave-rule-2023", "출발 예정일 3일 전까지 휴가신청서(별지 제1호 서식)를"),
    _ko("leave-03", "아내가 아이를 낳으면 청원휴가를 며칠 받을 수 있나요?", "leave-rule-2025",
        "배우자 출산: 20일(2회로 나누어 사용 가능)"),
    _ko("leave-04", "휴가 끝나고 부대에는 몇 시까지 들어와야 하지?", "leave-rule-2025",
        "복귀 당일 21시까지 부대에 도착하여"),
    _ko("leave-05", "못 쓴 연가를 내년으로 넘겨서 쓸 수 있어?", "leave-rule-2025",
        "간부의 미사용 연가는 5일까지 다음 연도로 이월할 수 있으며"),
    _ko("leave-06", "2023년 시행 지침에서는 병사 포상휴가를 1년에 최대 며칠까지 받을 수 있었어?",
        "leave-rule-2023", "연간 누계는 병사 1인당 10일을 넘지 못한다"),
    _en("leave-07", "How many days of reward leave can an enlisted soldier receive in a year?",
        "leave-rule-2025", "연간 누계는 병사 1인당 15일을 넘지 못한다"),
    _ko("leave-08", "한 부대에서 동시에 휴가 나갈 수 있는 인원은 최대 몇 퍼센트야?",
        "leave-rule-2025", "가용 병력의 15퍼센트를 넘지 않도록 한다"),
    _ko("leave-09", "병사가 휴가 때 해외여행 가려면 누구한테 허락받아야 돼?", "leave-rule-2025",
        "병사는 대대장의 승인을 받아 휴가 중 국외여행을 할 수 있으며"),
    _en("leave-10", "Under the 2023 leave rule, by what time did a soldier have to be back "
        "from leave?", "leave-rule-2023", "복귀 당일 18시까지 부대에 도착하여"),
    _ko("leave-11", "간부는 1년에 연가를 며칠 쓸 수 있지?", "leave-rule-2025",
        "간부 및 군무원의 연가는 연 21일 이내로 한다"),
    _ko("leave-12", "휴가가 아파서 길어지면 한 번에 며칠까지 연장돼?", "leave-rule-2025",
        "연장은 1회 7일 이내로 한다"),
    # Passes: close to leave in words, a rule of its own.
    _ko("pass-01", "외박은 한 달에 몇 번까지 나갈 수 있어?", "outside-pass",
        "외박은 월 2회 이내로 하며, 1회에 1박 2일로 한다"),
    _ko("pass-02", "평일 외출은 몇 시부터 몇 시까지 가능한가요?", "outside-pass",
        "평일 외출은 일과 후 17시 30분부터 21시 30분까지로 한다"),
    _en("pass-03", "What happens to a soldier who drives drunk while out on a pass?",
        "outside-pass", "위반한 사람은 3개월간 외출, 외박을 제한한다"),
    # Security inspections: one plan, two years.
    _ko("sec-01", "2025년 보안점검은 언제부터 언제까지 했어?", "security-inspection-2025",
        "2025. 3. 10.(월) ~ 3. 21.(금), 10일간"),
    _ko("sec-02", "2026년 보안점검반은 몇 명으로 꾸려지나요?", "security-inspection-2026",
        "반장 정보보호과장 외 10명, 3개 조로 편성"),
    _ko("sec-03", "2026년 점검 때 챗봇 같은 AI에 업무자료 넣는 것도 보나요?",
        "security-inspection-2026",
        "생성형 인공지능 서비스에 업무 자료를 입력하지 않도록 한 통제의 준수 여부"),
    _ko("sec-04", "2025년 보안점검에서 미흡 나온 부대는 몇 주 안에 보완해야 했지?",
        "security-inspection-2025", "미흡 판정을 받은 부대는 4주 이내에 보완한 뒤 재점검을 받는다"),
    _en("sec-05", "By what date must the results of the 2026 security inspection be reported "
        "to the division commander?", "security-inspection-2026",
        "점검 결과는 2026. 5. 1.까지 사단장에게 보고한다"),
    _ko("sec-06", "2026년에는 예고 없이 나가는 점검이 얼마나 돼?", "security-inspection-2026",
        "전체 점검의 30퍼센트는 사전 통보 없이 불시 점검"),
    _ko("sec-07", "2025년 보안점검 때 점검반 출장비는 어느 돈으로 썼어?",
        "security-inspection-2025", "점검반의 출장 여비는 부대 운영비에서 집행한다"),
    # Budget execution: two quarters with different numbers, and the year's rule.
    _ko("budget-01", "1분기 운영비 집행률이 몇 퍼센트 나왔어?", "budget-execution-q1",
        "집행률: 27.0퍼센트"),
    _ko("budget-02", "상반기까지 누적으로 운영비를 얼마나 썼어?", "budget-execution-q2",
        "상반기 누계 집행액: 2억 3,870만 원"),
    _ko("budget-03", "1분기에 시설 쪽 예산 집행이 늦어진 이유가 뭐야?", "budget-execution-q1",
        "동절기 공사 중지 기간(12월 ~ 2월)으로 생활관 외벽 보수 공사의 발주가 늦어져"),
    _ko("budget-04", "2분기에 강사 섭외가 늦어서 못 쓴 돈이 얼마야?", "budget-execution-q2",
        "외부 강사료 430만 원을 집행하지 못하였으며"),
    _en("budget-05", "How much was spent on vehicle fuel in the second quarter of 2025?",
        "budget-execution-q2", "차량 유류비: 2,640만 원"),
    _ko("budget-06", "수의계약으로 살 수 있는 금액 상한이 얼마야?", "budget-guideline-2025",
        "추정가격 2천만 원 이하의 물품 구매와 용역은 수의계약으로 할 수 있다"),
    _ko("budget-07", "법인카드로 결제하고 나면 영수증은 며칠 안에 내야 돼?",
        "budget-guideline-2025", "사용일로부터 5일 이내에 영수증과 검수 확인서를 재정과에 제출"),
    _ko("budget-08", "연말에는 언제부터 새로 계약을 못 맺어?", "budget-guideline-2025",
        "12월 10일 이후에는 새로운 계약을 체결하지 않는 것을 원칙으로 하며"),
    _ko("budget-09", "외부 강사 부르면 시간당 얼마까지 줄 수 있어?", "budget-guideline-2025",
        "외부 강사료는 1시간당 20만 원을 넘지 못하며"),
    _en("budget-10", "How long must expenditure receipts and account books be kept?",
        "budget-guideline-2025", "회계연도 종료 후 5년간 보관한다"),
    _ko("budget-11", "간담회 하면 한 사람당 얼마까지 쓸 수 있나요?", "budget-guideline-2025",
        "참석자 1인당 3만 원 이하로 하며"),
    # Maintenance: the half-year plan and a quarter's report.
    _ko("maint-01", "하반기에 정비하는 전술차량이 몇 대야?", "maintenance-plan",
        "전술차량: 146대"),
    _ko("maint-02", "발전기 부하 시험은 얼마나 자주 해야 돼?", "maintenance-plan",
        "발전기는 분기 1회 부하 시험을 실시하고"),
    _ko("maint-03", "3분기 차량 가동률 어떻게 나왔어?", "vehicle-maintenance-report",
        "분기 평균 가동률: 91.4퍼센트(전 분기 89.7퍼센트)"),
    _ko("maint-04", "배터리 방전이 많아서 몇 개를 새로 바꾸기로 했지?",
        "vehicle-maintenance-report", "10월 중에 노후 축전지 40개를 일괄 교체한다"),
    # Supply.
    _ko("supply-01", "정기 보급 청구는 매달 며칠까지 올려야 해?", "supply-request",
        "정기 청구는 매월 20일까지 다음 달 소요를 청구한다"),
    _ko("supply-02", "급하게 청구하면 물건은 얼마 만에 나와?", "supply-request",
        "긴급 청구의 경우 48시간 이내에 보급품을 불출한다"),
    _ko("supply-03", "전투복은 1년에 몇 번, 언제 바꿔 줘?", "supply-request",
        "전투복과 전투화는 연 2회(4월, 10월) 정기적으로 교환한다"),
    _en("supply-04", "If supplies arrive defective, how many days do I have to send them back?",
        "supply-request", "수령일로부터 3일 이내에 반납하고 교환을 요청한다"),
    _ko("supply-05", "장부랑 실제 재고가 안 맞으면 며칠 안에 원인 밝혀야 돼?", "supply-request",
        "10일 이내에 원인을 규명하여 대대장에게 보고하고"),
    _ko("supply-06", "내일 밥 먹을 인원은 몇 시까지 보고하나요?", "supply-request",
        "다음 날 급식 인원을 매일 10시까지 대대 급양관에게 보고하며"),
    # Training.
    _ko("train-01", "개인화기 사격은 몇 발 맞혀야 합격이야?", "training-plan-2025h2",
        "20발 중 12발 이상 명중을 합격 기준으로 한다"),
    _ko("train-02", "2025년 하반기 체력검정은 언제 해?", "training-plan-2025h2",
        "2025. 9. 15. ~ 9. 26.에 3킬로미터 달리기"),
    _ko("train-03", "더운 날 야외훈련을 멈추는 기준이 몇 도야?", "training-plan-2025h2",
        "체감온도가 33도 이상이면 야외 훈련을 중지하고"),
    _en("train-04", "How long does the battalion field training exercise in October last?",
        "training-plan-2025h2", "10월 중 3박 4일 일정으로 실시하며"),
    _ko("train-05", "중대는 다음 주 훈련 계획을 무슨 요일까지 올려야 해?",
        "training-plan-2025h2", "다음 주 교육훈련 계획을 매주 금요일까지 대대에 제출한다"),
    _ko("cyber-01", "정보보호 교육은 1년에 몇 시간 들어야 돼?", "cyber-training",
        "연 4시간 이상(상반기 2시간, 하반기 2시간)"),
    _ko("cyber-02", "해킹 메일 모의훈련에서 링크 눌러 버리면 어떻게 돼?", "cyber-training",
        "1개월 안에 1시간의 추가 교육을 받는다"),
    _en("cyber-03", "How many characters must a password have?", "cyber-training",
        "9자리 이상으로 영문, 숫자, 특수문자를 섞어 만들고"),
    # Travel: the 2026 rule supersedes the 2024 one.
    _ko("travel-01", "출장 가면 하루 밥값 얼마 나와?", "travel-expense-2026",
        "식비는 출장 1일당 3만 원으로 한다"),
    _ko("travel-02", "2024년 기준으로 서울 숙박비 상한이 얼마였어?", "travel-expense-2024",
        "서울특별시 7만 원, 광역시 6만 원, 그 밖의 지역 5만 원"),
    _ko("travel-03", "출장 다녀와서 정산은 며칠 안에 끝내야 해?", "travel-expense-2026",
        "출장을 마친 날부터 7일 이내에 출장 결과를 보고하고 여비를 정산한다"),
    _en("travel-04", "What is the daily allowance for a business trip?", "travel-expense-2026",
        "일비는 출장 1일당 2만 5천 원으로 한다"),
    _ko("travel-05", "출장 가서 친척 집에서 자면 숙박비 대신 받는 게 있어?",
        "travel-expense-2026", "1박당 2만 원을 지급한다"),
    _ko("travel-06", "시내 출장이 4시간 넘으면 여비 얼마 받아?", "travel-expense-2026",
        "출장 시간이 4시간 이상이면 2만 5천 원"),
    # Duty: the rule and October's notice.
    _ko("duty-01", "평일 당직은 몇 시부터 몇 시까지 서?", "duty-guideline",
        "평일 당직 근무는 18시부터 다음 날 8시 30분까지로 한다"),
    _ko("duty-02", "당직 한 번 서면 수당이 얼마야?", "duty-guideline",
        "당직 근무비는 평일 1회 3만 원, 휴일 1회 5만 원으로 하며"),
    _ko("duty-03", "당직 날짜를 바꾸고 싶으면 언제까지 말해야 돼?", "duty-guideline",
        "근무일 3일 전까지 대리 근무자의 동의를 받아 인사과에 변경을 신청한다"),
    _ko("duty-04", "밤에 순찰은 몇 번 돌아야 해?", "duty-guideline",
        "야간에 2회 이상 순찰하되, 22시 이후에 1회, 2시 이후에 1회를 반드시 포함한다"),
    _en("duty-05", "If a soldier goes missing, how long is the search before the military "
        "police are told?", "duty-guideline", "1시간 안에 찾지 못하면 군사경찰에 알린다"),
    _ko("duty-06", "평일 밤 당직 서고 나면 다음 날 쉬는 시간이 있어?", "duty-guideline",
        "근무 다음 날 13시 이후의 오후 휴무를 보장한다"),
    _ko("duty-07", "추석 연휴 당직은 몇 교대로 돌아가?", "duty-roster-notice",
        "당직사관을 2교대(8시 30분 ~ 20시 30분, 20시 30분 ~ 다음 날 8시 30분)로 편성하여"),
    _ko("duty-08", "10월에 당직사령 맡는 사람이 몇 명이야?", "duty-roster-notice",
        "당직사령: 영관급 장교 9명"),
    # Civil complaints: the rule and the half-year's results.
    _ko("civil-01", "고충 민원은 며칠 안에 처리해 줘야 해?", "civil-complaint",
        "고충 민원: 접수일부터 14일"),
    _ko("civil-02", "사격장 소음 민원이 들어오면 현장은 언제까지 나가 봐야 돼?",
        "civil-complaint", "접수일부터 3일 이내에 담당 부서가 현장을 확인한다"),
    _ko("civil-03", "똑같은 민원을 계속 넣으면 어떻게 처리해?", "civil-complaint",
        "이미 답변한 경우에는 그 뒤의 민원을 종결 처리할 수 있다"),
    _en("civil-04", "How long is the complaint register retained?", "civil-complaint",
        "처리가 끝난 날부터 3년간 보존한다"),
    _ko("civil-05", "정보공개 청구하면 공개 여부는 며칠 안에 알려 줘?", "civil-complaint",
        "접수일부터 10일 이내에 공개 여부를 결정하여 알린다"),
    _ko("civil-06", "상반기에 들어온 민원이 모두 몇 건이야?", "civil-complaint-report",
        "총 184건이 접수되어 전년 같은 기간(209건)보다 12퍼센트 줄었습니다"),
    _ko("civil-07", "소음 민원 줄이려고 동네 주민들한테 뭘 해 주기로 했어?",
        "civil-complaint-report",
        "인근 7개 마을에 사격 일정을 일주일 전에 문자로 미리 알리는 제도를 확대하였습니다"),
    _ko("civil-08", "민원인 만족도는 몇 점 나왔어?", "civil-complaint-report",
        "100점 만점에 82.5점이었습니다"),
    # Facilities: the rule and a project.
    _ko("facility-01", "난방이 고장 나면 몇 시간 안에 고쳐 줘?", "facility-management",
        "긴급 보수는 요청을 받은 때부터 24시간 이내에 조치한다"),
    _ko("facility-02", "부대가 알아서 고칠 수 있는 공사비 한도가 얼마야?", "facility-management",
        "공사비가 200만 원 이하인 소규모 보수는 부대가 자체 예산으로 시행할 수 있으며"),
    _en("facility-03", "What indoor temperature must barracks be kept at in winter?",
        "facility-management", "생활관의 실내 온도는 동절기 18도 이상"),
    _ko("facility-04", "생활관 공사하는 동안 병사들은 어디서 자?", "barracks-renovation",
        "체육관에 마련한 임시 생활관(수용 인원 120명)을 사용한다"),
    _ko("facility-05", "3대대 생활관 고치는 데 돈이 얼마나 들어?", "barracks-renovation",
        "사업비: 7억 8천만 원(국방시설본부 시행)"),
    _ko("facility-06", "소방 점검 때 소화기는 몇 개나 새 걸로 바꿨어?", "fire-safety-inspection",
        "압력이 미달된 소화기 17개는 모두 새 소화기로 교체하였다"),
    _en("facility-07", "When will the faulty fire detectors be replaced?",
        "fire-safety-inspection", "11. 28.까지 교체를 마칠 예정이다"),
    # Meetings.
    _ko("meeting-01", "9월 안전회의에서 차 후진할 때 어떻게 하라고 정했어?",
        "meeting-safety-2025-09", "부대 안에서 차량을 후진할 때에는 유도 요원을 반드시 배치한다"),
    _ko("meeting-02", "다음 안전관리위원회는 언제 열려?", "meeting-safety-2025-09",
        "2025. 12. 17.(수) 14:00"),
    _ko("meeting-03", "연말에 문서 정리하는 기간이 언제야?", "meeting-admin-2025-11",
        "연말 문서 정리 기간을 12. 1. ~ 12. 19.로 정하고"),
    _ko("meeting-04", "연가 많이 남은 사람은 사용 계획을 언제까지 내야 돼?",
        "meeting-admin-2025-11", "11. 28.까지 사용 계획을 부서장에게 제출한다"),
    # Audits: two audits with different numbers.
    _ko("audit-01", "2025년 회계감사에서 지적된 게 다 해서 몇 건이야?", "audit-result-2025",
        "지적 사항은 모두 9건으로 시정 4건, 주의 3건, 개선 2건이며"),
    _ko("audit-02", "회계감사 결과 돌려받아야 할 돈이 얼마로 나왔어?", "audit-result-2025",
        "회수 대상 금액은 318만 원이다"),
    _ko("audit-03", "2024년 물자관리 감사에서 수량이 안 맞은 피복이 몇 점이었어?",
        "audit-supply-2024", "피복류 47점이 보급 대장과 실물 재고가 맞지 않았다"),
    _en("audit-04", "In the 2024 supply audit, how much had to be repaid for the lost item?",
        "audit-supply-2024", "분실이 확인된 물품 1건(42만 원)에 대하여 변상 조치를 한다"),
    # Classified documents.
    _ko("comms-01", "무전기 호출부호는 언제 바꿔?", "comms-security",
        "무전기 호출부호는 매월 1일 0시에 변경한다"),
    _ko("comms-02", "암호장비 키를 잃어버리면 언제까지 보고해야 해?", "comms-security",
        "1시간 이내에 통신참모처에 보고한다"),
    _ko("exercise-01", "을지 훈련 때 간부 비상소집 목표가 어떻게 돼?", "emergency-exercise",
        "간부는 소집 명령 후 2시간 이내에 90퍼센트 이상 도착하는 것을 목표로 한다"),
    _ko("exercise-02", "통합방위 협조회의는 언제 어디서 열려?", "emergency-exercise",
        "8. 19.(화) 14시 시청 상황실에서"),
    _ko("fuel-01", "경유 비축은 목표 대비 얼마나 확보됐어?", "fuel-reserve",
        "비축 목표 1,200드럼 중 1,130드럼 확보(확보율 94.2퍼센트)"),
    _en("fuel-02", "When does the division switch to winter-grade diesel?", "fuel-reserve",
        "11월부터 동절기용 경유로 바꾸어 보급합니다"),
    # Privacy, health, welfare, paperwork, overtime, visitors.
    _ko("privacy-01", "개인정보가 새 나가면 당사자한테는 언제까지 알려야 돼?",
        "privacy-protection", "72시간 이내에 해당 정보주체에게 유출 사실과"),
    _ko("privacy-02", "개인정보 찍힌 종이는 어떻게 버려야 해?", "privacy-protection",
        "보유 기간이 지난 개인정보 출력물은 세단기로 파기하고"),
    _ko("health-01", "건강검진 전날 몇 시부터 굶어야 돼?", "health-checkup",
        "검진 전날 21시 이후에는 물을 제외하고 금식한다"),
    _ko("health-02", "검진 받으러 가는 날 휴가 써야 해?", "health-checkup",
        "검진 당일은 공무로 처리하여 휴가 일수에서 빼지 않는다"),
    _en("health-03", "How often do officers under 40 get a health checkup?", "health-checkup",
        "40세 미만은 2년마다 1회"),
    _ko("welfare-01", "주말에 헬스장 몇 시까지 열어?", "welfare-facility",
        "토요일과 일요일 및 공휴일에는 9시부터 20시까지 운영한다"),
    _ko("welfare-02", "PX는 언제 쉬어?", "welfare-facility",
        "매월 마지막 주 월요일은 재고 조사를 위하여 문을 닫는다"),
    _ko("paper-01", "공문에 돈 액수는 어떻게 적어야 해?", "official-doc-handling",
        "금액은 아라비아 숫자로 쓰고 숫자 다음에 괄호를 하여 한글로 적는다"),
    _ko("paper-02", "문서 보존기간은 몇 가지로 나뉘어?", "official-doc-handling",
        "1년, 3년, 5년, 10년, 30년, 준영구, 영구의 7종으로 하며"),
    _ko("overtime-01", "초과근무는 한 달에 최대 몇 시간까지 돼?", "overtime-work",
        "하루 4시간, 한 달 57시간을 넘지 못한다"),
    _ko("overtime-02", "휴일에 8시간 일하면 대체휴무 얼마나 줘?", "overtime-work",
        "8시간 이상 근무한 사람에게는 하루의 대체 휴무를 주며"),
    _en("overtime-03", "What is the penalty for claiming overtime pay fraudulently?",
        "overtime-work", "받은 금액의 2배를 환수하고, 1개월간 시간외 근무를 제한한다"),
    _ko("visit-01", "면회는 며칠 전에 신청해야 하나요?", "visitor-access",
        "면회 2일 전까지 해당 중대 행정반에 신청하여야 하며"),
    _ko("visit-02", "면회 온 가족 차는 부대 어디까지 들어올 수 있어?", "visitor-access",
        "사전에 등록한 차량만 면회객 주차장까지 들어올 수 있으며"),
    # The year's report: figures found nowhere else.
    _ko("annual-01", "2025년에 간부들 연가 평균 며칠 썼어?", "annual-report-2025",
        "간부 1인당 연가 사용일수는 평균 16.4일로 전년의 13.9일보다 늘었다"),
    _ko("annual-02", "2025년 사격 합격률은 1년 평균 몇 퍼센트였어?", "annual-report-2025",
        "개인화기 사격 합격률은 연평균 88.2퍼센트로"),
    _ko("annual-03", "2026년에 생활관 공사 넓히려고 예산 얼마 달라고 해?", "annual-report-2025",
        "사업비 9억 2천만 원을 요구한다"),
    _en("annual-04", "After leave moved to the personnel system, what share of leave requests "
        "were handled electronically?", "annual-report-2025",
        "휴가 신청의 96퍼센트가 전자적으로 처리되었다"),
    # No document answers these: the appliance should say so.
    _ko("none-01", "군 관사 입주 신청 자격이 어떻게 돼?"),
    _ko("none-02", "예비군 훈련 연기 신청은 어디서 해?"),
    _ko("none-03", "육아휴직 기간에 봉급은 얼마나 나와?"),
    _ko("none-04", "2024년 보안점검에서 미흡 받은 부대가 몇 개였어?"),
    _ko("none-05", "전역하고 군인연금 받으려면 몇 년 복무해야 돼?"),
    _ko("none-06", "탄약고 출입할 때 절차가 어떻게 돼?"),
    _en("none-07", "What is the daily allowance for an overseas business trip?"),
    _en("none-08", "Are soldiers allowed to keep pets in the barracks?"),
    _en("none-09", "What are the selection criteria for long-term service?"),
    # Written apart, before the glossary and the decline by absent words were tuned on
    # the questions above; the glossary has since learnt words from none-16 and none-18.
    _en("later-01", "What hours are family visits allowed on weekends?", "visitor-access",
        "토요일, 일요일 및 공휴일 9시부터 17시까지"),
    _en("later-02", "Can visitors take photos inside the base?", "visitor-access",
        "사진과 동영상을 촬영할 수 없으며"),
    _en("later-03", "How often are radio call signs changed?", "comms-security",
        "무전기 호출부호는 매월 1일 0시에 변경한다"),
    _en("later-04", "Who must approve giving personal data to another agency?",
        "privacy-protection", "개인정보 보호책임자의 승인을 받고"),
    _en("later-05", "Within how many hours must a personal data leak be reported to the "
        "higher unit?", "privacy-protection", "24시간 이내에 상급 부대에 보고하고"),
    _en("later-06", "How should dates be written in official documents?",
        "official-doc-handling", "연, 월, 일 글자를 생략하고"),
    _ko("later-07", "폰으로 훈련 일정 얘기해도 돼?", "comms-security",
        "일반 전화와 휴대전화로는 부대 이동, 훈련 일정"),
    _ko("later-08", "개인정보 파일은 컴퓨터 아무 데나 저장해도 돼?", "privacy-protection",
        "지정된 폴더에만 저장한다"),
    _en("later-09", "How long is the communications security checklist kept?",
        "comms-security", "점검표를 1년간 보관한다"),
    _en("later-10", "When does the gym open on weekdays?", "welfare-facility",
        "체력단련장은 평일 6시부터 22시까지"),
    _en("later-11", "Is alcohol sold at the on-base store?", "welfare-facility",
        "영내 마트에서 주류는 판매하지 아니한다"),
    _ko("later-12", "면회 올 때 신분증 안 가져오면 어떻게 돼?", "visitor-access",
        "신분증이 없으면 출입할 수 없습니다"),
    _ko("none-10", "당직 근무를 서면 야간 수당은 얼마나 받아?"),
    _ko("none-11", "복지시설 세탁실 이용 요금은 얼마야?"),
    _ko("none-12", "개인정보를 유출하면 과태료가 얼마나 나와?"),
    _ko("none-13", "2022년 예산 집행률은 몇 퍼센트였어?"),
    _ko("none-14", "면회객 차량 주차 요금은 얼마예요?"),
    _ko("none-15", "다른 부대로 전출 가려면 어떻게 신청해?"),
    _en("none-16", "How is a soldier's annual performance bonus calculated?"),
    _en("none-17", "How far in advance can the welfare condominium be booked?"),
    _en("none-18", "What is the fine for leaking personal information?"),
    # Blind: written by a reviewer who read only the documents, after every rule above
    # was settled, and never tuned on: the benchmark reports them apart.
    _blind(_ko("blind-01", "보안점검 잘 받은 부대는 몇 군데나 사단장 상 줘?",
        "security-inspection-2026", "우수 부대는 3개 부대를 선정하여 사단장 표창을 수여한다")),
    _blind(_ko("blind-02", "당직비는 따로 들어와, 아니면 월급 들어올 때 같이 나와?",
        "duty-guideline", "매월 급여와 함께 지급한다")),
    _blind(_ko("blind-03", "부대 안 노래방 밤에 몇 시까지 돼?",
        "welfare-facility", "노래방은 21시 30분까지 이용할 수 있다")),
    _blind(_ko("blind-04", "건강검진 결과에 뭐 걸리는 거 나오면 다시 검사는 언제까지 받아야 해?",
        "health-checkup", "이상 소견이 있는 사람은 2주 안에 재검사를 받는다")),
    _blind(_ko("blind-05", "야근 수당 받으려면 미리 결재 받아 놔야 돼? "
        "그냥 남아서 일하면 안 쳐 줘?", "overtime-work",
        "승인받지 않은 근무는 시간외 근무로 인정하지 않는다")),
    _blind(_ko("blind-06", "사무실 문짝 부서져서 고쳐 달라고 할 건데 사진도 찍어서 내야 하나?",
        "facility-management", "보수 요청서에는 사진을 첨부한다")),
    _blind(_ko("blind-07", "회식 2차로 술집 가면 부대 카드로 긁어도 돼?",
        "budget-guideline-2025", "유흥업소 및 개인 간 거래에는 정부구매카드를 사용할 수 없다")),
    _blind(_en("blind-08", "I'm an officer and want to fly overseas during my vacation. "
        "How far ahead do I have to report the trip?", "leave-rule-2025",
        "출발 7일 전까지 인사관리체계로 국외여행을 신고한다")),
    _blind(_en("blind-09", "How many days before a work trip do I need to request it?",
        "travel-expense-2026", "출장 2일 전까지 전자결재로 출장을 신청하여")),
    _blind(_en("blind-10", "How far from base are soldiers allowed to go when they're out "
        "for the weekend?", "outside-pass",
        "부대에서 2시간 이내에 복귀할 수 있는 지역으로 제한한다")),
    _blind(_en("blind-11", "When will 3rd Battalion move back into their renovated living "
        "quarters?", "barracks-renovation", "하자 보수를 마친 뒤 2026년 1월 둘째 주에 한다")),
    _blind(_en("blind-12", "How many meals a day are served during the Ulchi drill?",
        "emergency-exercise", "야식을 포함하여 하루 4식을 제공한다")),
    _blind(_en("blind-13", "In 2025, what share of documents were signed off electronically "
        "rather than on paper?", "annual-report-2025", "전자결재 비율은 99.1퍼센트였으며")),
    _blind(_en("blind-14", "If a sick soldier has to be taken to a civilian hospital, does "
        "someone from the unit need to go along?", "duty-guideline",
        "민간 병원으로 후송하는 경우에는 간부 1명이 반드시 동행한다")),
    _blind(_ko("none-19", "체력검정 특급 받으려면 3킬로 달리기 몇 분 안에 들어와야 돼?")),
    _blind(_ko("none-20", "3분기 운영비 집행률 실제로 몇 퍼센트 나왔어?")),
    _blind(_ko("none-21", "출장 가서 렌터카 빌리면 그 비용도 여비로 정산해 줘?")),
    _blind(_ko("none-22", "외출 나갈 때 사복 입고 나가도 돼?")),
    _blind(_ko("none-23", "탄약 청구하면 보통 며칠 만에 불출돼?")),
    _blind(_ko("none-24", "1대대 생활관 공사는 언제 착공해?")),
    _blind(_ko("none-25", "못 쓴 연가는 돈으로 보상받을 수 있어? 하루에 얼마야?")),
    _blind(_en("none-26", "How much extra allowance do soldiers at remote outposts get "
        "each month?")),
    _blind(_en("none-27", "What was the diesel reserve rate at the end of the second quarter?")),
    _blind(_en("none-28", "What satisfaction score did complainants give the division in 2024?")),
    _blind(_en("none-29", "How many days a week can staff work remotely?")),
    _blind(_en("none-30", "What is the per-kilometre rate paid when I use my own car for a "
        "business trip?")),
    _blind(_en("none-31", "What blood-alcohol level counts as drunk driving for soldiers out "
        "on a pass?")),
    _blind(_en("none-32", "What was the pass rate for the chemical defence (CBRN) training "
        "in 2025?")),
)
# fmt: on


def questions() -> Iterator[Question]:
    """Every question, in a fixed order."""
    yield from QUESTIONS
