"""The demo data set behind ``manage.py seed_demo``: the five 2020
"return-to-work" livestream forums and a good-audit case-review event.

Dates are relative to the day it runs, in the event's zone, so a fresh
install always has one forum ended, one live now and three coming up.
Loading is idempotent: events match on slug, sessions on title within
their event, speakers on name, registrants on e-mail; a re-run updates
those rows in place. The people and organisations are fictional.

Rows are written with the models directly rather than through the
services, so loading the demo never sends an e-mail.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import models, transaction
from django.dispatch import Signal
from django.utils import timezone

from events.models import Event, EventRole, Registrant, Registration, Session, Speaker
from events.services import INVITE_FIELDS

DEMO_USERNAME = "demo"
# Published in the README on purpose, which is why it is only ever set
# while DEBUG is on.
DEMO_PASSWORD = "tongxin-demo"  # noqa: S105

ORGANISER_NAME = "全国认证认可行业协会"
ORGANISER_EMAIL = "events@ccaa-demo.example.org"
TIME_ZONE = "Asia/Shanghai"

#: How long ago the live forum started, so that the room has a past.
LIVE_FOR = timedelta(minutes=30)
LIVE_LENGTH = timedelta(hours=2)

KINDS = (
    "events",
    "sessions",
    "speakers",
    "registrants",
    "registrations",
    "roles",
    "users",
    "watch intervals",
    "certificates",
)

#: Sent at the end of :func:`load_demo`, inside its transaction, with
#: ``events`` and ``summary``: apps above this one add their part of the
#: demo (attendance adds who watched the forum that has ended).
demo_loaded = Signal()


@dataclass(frozen=True)
class SpeakerData:
    name: str
    affiliation: str
    bio: str


@dataclass(frozen=True)
class SessionData:
    title: str
    description: str
    speakers: tuple[str, ...]
    #: Days after today in the event's zone; ignored for the live session.
    day: int = 0
    start: time = time(14, 30)
    end: time = time(16, 30)
    #: Started ``LIVE_FOR`` ago and runs ``LIVE_LENGTH``: the demo's live room.
    live: bool = False
    capacity: int | None = None
    location: str = ""
    #: The demo ships no video; organisers set a real stream address under /manage/.
    stream: bool = False


@dataclass(frozen=True)
class EventData:
    slug: str
    title: str
    description: str
    speakers: tuple[SpeakerData, ...]
    sessions: tuple[SessionData, ...]
    approval_required: bool = False


RETURN_TO_WORK = EventData(
    slug="return-to-work-2020",
    title="同心协力，主动作为——认证行业抗击疫情复工复产在行动",
    description=(
        "新冠肺炎疫情给认证认可检验检测行业带来了前所未有的挑战。"
        "为服务行业抗击疫情、推动复工复产，协会组织开展五场系列直播论坛，"
        "邀请认证机构、检验检测机构和专家委员会的同仁分享一线经验与应对做法。"
        "论坛围绕行业挑战、远程审核、人员能力和抗疫坚守等主题展开，欢迎在线参加并参与互动问答。"
    ),
    speakers=(
        SpeakerData(
            "王立新",
            "专家委员会主任委员，全国认证认可行业协会",
            "长期从事认证认可政策研究与行业自律工作，参与多项认证领域国家标准的起草。"
            "近年来重点关注认证行业高质量发展与风险防控。",
        ),
        SpeakerData(
            "陈雅琴",
            "总经理，嘉禾认证中心",
            "拥有二十余年管理体系认证经验，带领机构在疫情期间制定业务连续性方案。"
            "致力于提升认证服务的有效性和客户满意度。",
        ),
        SpeakerData(
            "刘志强",
            "技术总监，启明标准认证有限公司",
            "负责机构审核技术与信息化建设，主持开发远程审核工作指引和配套工具。"
            "在信息安全管理体系审核方面有丰富实践。",
        ),
        SpeakerData(
            "赵敏",
            "高级审核员，远航质量认证有限公司",
            "质量、环境和职业健康安全管理体系高级审核员，累计完成审核逾千人日。"
            "疫情期间参与了多个行业的远程审核试点项目。",
        ),
        SpeakerData(
            "孙文博",
            "人力资源部主任，嘉禾认证中心",
            "负责审核员队伍建设与职业发展体系设计。"
            "关注认证人员的持续专业发展、心理健康与组织关怀。",
        ),
        SpeakerData(
            "周慧玲",
            "培训讲师，认证人员能力建设专家组",
            "从事审核员培训与能力评价工作十余年，主讲多门注册审核员继续教育课程。"
            "擅长线上教学设计与学习效果评估。",
        ),
        SpeakerData(
            "李卫东",
            "主任，楚江检验检测研究院",
            "带领团队在武汉坚守检验检测一线，保障防疫物资质量检测需求。"
            "长期从事医疗器械和防护用品检测技术研究。",
        ),
        SpeakerData(
            "黄晓燕",
            "审核组长，江汉认证服务有限公司",
            "疫情期间坚持为湖北地区防疫物资生产企业提供认证服务。"
            "熟悉医疗器械质量管理体系和产品认证要求。",
        ),
        SpeakerData(
            "郑国平",
            "秘书长，全国认证认可行业协会",
            "负责协会日常工作和行业服务项目的组织实施。牵头推动行业复工复产指引与诚信自律建设。",
        ),
        SpeakerData(
            "吴海峰",
            "总经理，长风检测认证集团",
            "主管集团检测认证业务的综合运营，推动实验室与认证业务协同发展。"
            "疫情期间组织开通防疫物资检测认证绿色通道。",
        ),
    ),
    sessions=(
        SessionData(
            "认证行业当前面临的挑战和应对措施",
            "疫情对认证机构的现场审核、市场拓展和人员管理造成了较大冲击。"
            "本场论坛分析行业当前面临的主要挑战，分享认证机构在保障服务连续性、"
            "控制认证风险方面的应对措施。",
            ("王立新", "陈雅琴"),
            day=-3,
        ),
        SessionData(
            "远程审核的推进、实践与挑战",
            "远程审核成为疫情期间保持认证活动有效开展的重要手段。"
            "本场论坛介绍远程审核的适用条件、技术手段和实施要点，"
            "并结合实际案例探讨其有效性保障与风险控制。",
            ("刘志强", "赵敏"),
            live=True,
            capacity=300,
        ),
        SessionData(
            "防疫期间认证人员的能力提升、发展和人文关怀",
            "审核员是认证行业最重要的资源。本场论坛围绕疫情期间认证人员的线上学习、"
            "能力提升与职业发展展开交流，并探讨机构如何给予审核员更多的人文关怀。",
            ("孙文博", "周慧玲"),
            day=1,
        ),
        SessionData(
            "决战武汉，认证质检人在坚守",
            "在抗击疫情的关键时期，武汉及湖北地区的认证检测人员坚守岗位。"
            "本场论坛邀请一线代表讲述保障防疫物资检测认证的经历，"
            "展现认证质检人的责任与担当。",
            ("李卫东", "黄晓燕"),
            day=2,
        ),
        SessionData(
            "认证检测抗击疫情复工复产在行动——多措并举主动作为保质保量服务社会",
            "认证检测机构积极发挥技术优势，多措并举服务企业复工复产。"
            "本场论坛总结系列活动成果，交流行业在开辟绿色通道、"
            "提升服务质量方面的经验做法。",
            ("郑国平", "吴海峰"),
            day=3,
        ),
    ),
)

CASE_REVIEW = EventData(
    slug="good-audit-case-review-12",
    title="第十二届良好认证审核案例评议交流活动",
    description=(
        "良好认证审核案例评议交流活动旨在总结推广优秀审核实践，提升认证审核的有效性和增值作用。"
        "本届活动面向认证机构和注册审核员征集案例，经专家委员会初评后，入围案例在活动中展示并接受现场评议。"
        "参加活动需经主办方审核确认，欢迎行业同仁报名交流。"
    ),
    approval_required=True,
    speakers=(
        SpeakerData(
            "高振华",
            "副主任委员，良好审核案例专家委员会",
            "长期从事管理体系认证审核与审核质量评价工作。"
            "多次担任良好审核案例评议组组长，关注审核发现对组织改进的实际价值。",
        ),
        SpeakerData(
            "马俊杰",
            "评审专家，良好审核案例专家委员会",
            "资深能源管理体系和环境管理体系审核员。"
            "参与编写多部审核实务培训教材，擅长从案例中提炼可推广的审核方法。",
        ),
        SpeakerData(
            "林静怡",
            "审核组长，启明标准认证有限公司",
            "本届入围案例主讲人，案例聚焦制造企业供应链风险的审核发现与跟踪验证。"
            "具有十余年质量管理体系审核经验。",
        ),
        SpeakerData(
            "何雪梅",
            "高级审核员，安信认证服务有限公司",
            "本届入围案例主讲人，案例围绕食品安全管理体系中过程控制的有效性审核。"
            "注重审核证据的充分性与审核报告的增值性。",
        ),
    ),
    sessions=(
        SessionData(
            "案例展示",
            "入围的良好认证审核案例依次进行展示，介绍审核背景、关键审核发现和为受审核方带来的改进成效。"
            "每个案例展示时间约二十分钟。",
            ("林静怡", "何雪梅"),
            day=10,
            start=time(9, 0),
            end=time(11, 30),
        ),
        SessionData(
            "专家评议",
            "专家委员会成员对入围案例逐一点评，从审核策划、证据收集、发现描述和增值效果等方面给出评议意见。"
            "参会人员可通过问答区向专家提问。",
            ("高振华", "马俊杰"),
            day=10,
            start=time(13, 30),
            end=time(15, 30),
        ),
        SessionData(
            "交流与颁奖",
            "与会代表围绕提升审核有效性开展互动交流，会议最后宣布本届评议结果并为优秀案例颁奖。"
            "现场席位有限，线上同步直播。",
            ("高振华",),
            day=10,
            start=time(15, 45),
            end=time(17, 0),
            capacity=80,
            location="北京 · 协会多功能报告厅（线上同步直播）",
        ),
    ),
)

EVENTS = (RETURN_TO_WORK, CASE_REVIEW)

#: Confirmed on the live forum, so its organiser pages have people in them.
LIVE_REGISTRANTS = (
    ("张伟", "zhang.wei@example.org", "嘉禾认证中心"),
    ("李娜", "li.na@example.org", "楚江检验检测研究院"),
    ("王磊", "wang.lei@example.org", "远航质量认证有限公司"),
    ("刘洋", "liu.yang@example.org", "安信认证服务有限公司"),
    ("陈静", "chen.jing@example.org", "长风检测认证集团"),
)

#: Awaiting approval for the first case-review session, so the organiser
#: can try approving and rejecting.
CASE_REVIEW_APPLICANTS = (
    ("赵敏", "zhao.min@example.org", "嘉禾认证中心"),
    ("孙浩", "sun.hao@example.org", "楚江检验检测研究院"),
    ("周婷", "zhou.ting@example.org", "安信认证服务有限公司"),
)


@dataclass
class DemoSummary:
    created: Counter[str] = field(default_factory=Counter)
    updated: Counter[str] = field(default_factory=Counter)
    unchanged: Counter[str] = field(default_factory=Counter)
    demo_login: bool = False
    #: DEBUG is off but a ``demo`` user still accepts the published password.
    stale_demo_login: bool = False
    live_session: Session | None = None

    def count(self, kind: str, changed: list[str] | None) -> None:
        if changed is None:
            self.created[kind] += 1
        elif changed:
            self.updated[kind] += 1
        else:
            self.unchanged[kind] += 1

    def lines(self) -> list[str]:
        return [
            f"{kind}: {self.created[kind]} created, {self.updated[kind]} updated, "
            f"{self.unchanged[kind]} unchanged"
            for kind in KINDS
            if self.created[kind] + self.updated[kind] + self.unchanged[kind]
        ]


def load_demo(*, now: datetime | None = None, debug: bool | None = None) -> DemoSummary:
    """Create or refresh the demo events, sessions, speakers, five
    confirmed registrations on the live forum and three awaiting approval
    for the case review; with ``debug`` (default
    ``settings.DEBUG``) also the ``demo`` organiser login with its known
    password, organiser of the demo events and allowed to create events. Sends no e-mail and no broadcast.
    """
    now = now or timezone.now()
    debug = settings.DEBUG if debug is None else debug
    summary = DemoSummary()
    with transaction.atomic():
        events = [_load_event(data, now=now, summary=summary) for data in EVENTS]
        live = summary.live_session
        assert live is not None  # RETURN_TO_WORK always has one
        for name, email, organisation in LIVE_REGISTRANTS:
            registrant, changed = _upsert(
                Registrant,
                {"event": live.event, "email": email},
                {"name": name, "organisation": organisation},
            )
            summary.count("registrants", changed)
            _load_registration(registrant=registrant, session=live, summary=summary)
        review = events[1].sessions.order_by("starts_at", "pk").first()
        assert review is not None  # CASE_REVIEW always has sessions
        for name, email, organisation in CASE_REVIEW_APPLICANTS:
            registrant, changed = _upsert(
                Registrant,
                {"event": review.event, "email": email},
                {"name": name, "organisation": organisation},
            )
            summary.count("registrants", changed)
            _load_registration(
                registrant=registrant,
                session=review,
                summary=summary,
                status=Registration.Status.PENDING,
            )
        demo_loaded.send(sender=load_demo, events=events, summary=summary)
        if debug:
            _load_demo_user(events, summary=summary)
            summary.demo_login = True
        else:
            summary.stale_demo_login = _demo_user_has_known_password()
    return summary


def _load_event(data: EventData, *, now: datetime, summary: DemoSummary) -> Event:
    event, changed = _upsert(
        Event,
        {"slug": data.slug},
        {
            "title": data.title,
            "description": data.description,
            "time_zone": TIME_ZONE,
            "published": True,
            "registration_opens_at": None,
            "registration_closes_at": None,
            "waitlist_enabled": True,
            "approval_required": data.approval_required,
            "organiser_name": ORGANISER_NAME,
            "organiser_email": ORGANISER_EMAIL,
        },
    )
    summary.count("events", changed)

    speakers = {}
    for person in data.speakers:
        speaker, changed = _upsert(
            Speaker,
            {"event": event, "name": person.name},
            {"affiliation": person.affiliation, "bio": person.bio},
        )
        summary.count("speakers", changed)
        speakers[person.name] = speaker

    today = now.astimezone(event.zone).date()
    for item in data.sessions:
        starts_at, ends_at = _times(item, today=today, zone=event.zone, now=now)
        if item.live:
            status = Session.Status.LIVE
        elif ends_at <= now:
            status = Session.Status.ENDED
        else:
            status = Session.Status.SCHEDULED
        session, changed = _upsert(
            Session,
            {"event": event, "title": item.title},
            {
                "description": item.description,
                "starts_at": starts_at,
                "ends_at": ends_at,
                "location": item.location,
                "status": status,
                "capacity": item.capacity,
                "stream_kind": Session.StreamKind.HLS if item.stream else Session.StreamKind.NONE,
                "stream_url": f"{settings.SITE_URL}/static/demo/stream.m3u8" if item.stream else "",
                "qa_moderated": True,
                "live_started_at": starts_at if status != Session.Status.SCHEDULED else None,
                "live_ended_at": ends_at if status == Session.Status.ENDED else None,
            },
        )
        if changed and set(changed) & set(INVITE_FIELDS):
            # Invites already handed out must be superseded by the new times.
            session.ical_sequence += 1
            session.save(update_fields=["ical_sequence"])
        session.speakers.set([speakers[name] for name in item.speakers])
        summary.count("sessions", changed)
        if item.live:
            summary.live_session = session
    return event


def _times(
    item: SessionData, *, today: date, zone: ZoneInfo, now: datetime
) -> tuple[datetime, datetime]:
    if item.live:
        # Whole minutes, so two runs within a minute write identical rows.
        starts_at = (now - LIVE_FOR).astimezone(UTC).replace(second=0, microsecond=0)
        return starts_at, starts_at + LIVE_LENGTH
    day = today + timedelta(days=item.day)
    # Wall-clock time in the event's zone first, then UTC: "14:30" means
    # 14:30 in Beijing whatever zone the server runs in.
    starts_at = datetime.combine(day, item.start, tzinfo=zone).astimezone(UTC)
    ends_at = datetime.combine(day, item.end, tzinfo=zone).astimezone(UTC)
    return starts_at, ends_at


def _load_registration(
    *,
    registrant: Registrant,
    session: Session,
    summary: DemoSummary,
    status: str = Registration.Status.CONFIRMED,
) -> None:
    registration = Registration.objects.filter(registrant=registrant, session=session).first()
    if registration is None:
        Registration.objects.create(registrant=registrant, session=session, status=status)
        summary.count("registrations", None)
    elif status == Registration.Status.PENDING:
        # An organiser's approval or rejection while trying the demo stands.
        summary.count("registrations", [])
    elif registration.status != Registration.Status.CONFIRMED:
        # Someone cancelled while trying the demo; the revision keeps their
        # invite's SEQUENCE growing, as the services would.
        registration.status = Registration.Status.CONFIRMED
        registration.ical_revision += 1
        registration.save(update_fields=["status", "ical_revision", "updated_at"])
        summary.count("registrations", ["status"])
    else:
        summary.count("registrations", [])


def _load_demo_user(events: list[Event], *, summary: DemoSummary) -> None:
    user_model = get_user_model()
    user = user_model.objects.filter(**{user_model.USERNAME_FIELD: DEMO_USERNAME}).first()
    # The demo organiser tries everything an organiser does, creating events
    # included (SPEC.md §1): the permission an administrator would grant.
    may_create = Permission.objects.get(
        content_type=ContentType.objects.get_for_model(Event), codename="add_event"
    )
    if user is None:
        user = user_model.objects.create_user(
            DEMO_USERNAME, email="demo@example.org", password=DEMO_PASSWORD
        )
        user.user_permissions.add(may_create)
        summary.count("users", None)
    else:
        changed = [] if user.check_password(DEMO_PASSWORD) and user.is_active else ["password"]
        if changed:
            user.set_password(DEMO_PASSWORD)
            user.is_active = True
            user.save()
        if not user.user_permissions.filter(pk=may_create.pk).exists():
            user.user_permissions.add(may_create)
            changed.append("permissions")
        summary.count("users", changed)
    for event in events:
        _, created = EventRole.objects.get_or_create(
            event=event, user=user, role=EventRole.Role.ORGANISER
        )
        summary.count("roles", None if created else [])


def _demo_user_has_known_password() -> bool:
    user_model = get_user_model()
    user = user_model.objects.filter(**{user_model.USERNAME_FIELD: DEMO_USERNAME}).first()
    return bool(user and user.is_active and user.check_password(DEMO_PASSWORD))


def _upsert(
    model: type[models.Model], lookup: dict[str, Any], values: dict[str, Any]
) -> tuple[Any, list[str] | None]:
    """Find the row matching ``lookup`` and bring it to ``values``.

    Returns the row and the names of the fields that changed, or ``None``
    when it was created. Rows are validated, so a typo in the data fails
    here rather than on a page.
    """
    obj = model._default_manager.filter(**lookup).order_by("pk").first()
    if obj is None:
        obj = model(**lookup, **values)
        obj.full_clean()
        obj.save()
        return obj, None
    changed = [name for name, value in values.items() if getattr(obj, name) != value]
    if changed:
        for name in changed:
            setattr(obj, name, values[name])
        obj.full_clean()
        obj.save()
    return obj, changed
