"""Questions asked in a live room, and the votes on them."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from events.models import Registrant, Session


class Question(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", _("Awaiting approval")
        VISIBLE = "visible", _("Visible")
        REJECTED = "rejected", _("Rejected")

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="questions")
    text = models.TextField(_("question"), max_length=500)
    # Exactly one of the two authors is set: registrants ask with their
    # personal link, staff and event roles with their login.
    author_registrant = models.ForeignKey(
        Registrant, on_delete=models.CASCADE, null=True, blank=True, related_name="questions"
    )
    author_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="questions",
    )
    author_name = models.CharField(_("author"), max_length=200)
    anonymous = models.BooleanField(_("anonymous"), default=False)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices)
    answered = models.BooleanField(_("answered"), default=False)
    answer = models.TextField(_("answer"), blank=True)
    pinned = models.BooleanField(_("pinned"), default=False)
    votes = models.PositiveIntegerField(_("votes"), default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("question")
        verbose_name_plural = _("questions")
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["session"],
                condition=models.Q(pinned=True),
                name="question_one_pinned_per_session",
            ),
        ]
        indexes = [models.Index(fields=["session", "status"])]

    def __str__(self) -> str:
        return self.text[:60]


class Vote(models.Model):
    """One upvote. A registrant votes once per question, whatever their tabs;
    so does a signed-in user without a registration."""

    question = models.ForeignKey(Question, on_delete=models.CASCADE, related_name="vote_set")
    registrant = models.ForeignKey(
        Registrant, on_delete=models.CASCADE, null=True, blank=True, related_name="votes"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("vote")
        verbose_name_plural = _("votes")
        constraints = [
            models.UniqueConstraint(
                fields=["question", "registrant"],
                condition=models.Q(registrant__isnull=False),
                name="vote_once_per_registrant",
            ),
            models.UniqueConstraint(
                fields=["question", "user"],
                condition=models.Q(user__isnull=False),
                name="vote_once_per_user",
            ),
            models.CheckConstraint(
                condition=models.Q(registrant__isnull=False, user__isnull=True)
                | models.Q(registrant__isnull=True, user__isnull=False),
                name="vote_has_one_voter",
            ),
        ]

    def __str__(self) -> str:
        return f"vote on {self.question_id}"
