"""The channel contract: one small interface every provider implements.

The rest of the engine speaks `Message`, `Receipt` and the errors of
`channels.errors`; no provider SDK is imported outside this package.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, Protocol, runtime_checkable

from channels.errors import ChannelError


class ChannelKind(StrEnum):
    SMS = "sms"
    WHATSAPP = "whatsapp"
    EMAIL = "email"
    VOICE = "voice"


@dataclass(frozen=True)
class Message:
    """One message to one contact path.

    `substitutions` maps literal tags in body/html/subject to per-recipient values: the
    SMS channel applies them locally, the email channel sends them per personalization
    so that otherwise identical emails travel in one request.
    """

    channel: ChannelKind
    to: str
    body: str
    subject: str | None = None
    html: str | None = None
    reference: str = ""
    custom: Mapping[str, str] = field(default_factory=dict)
    substitutions: Mapping[str, str] = field(default_factory=dict)
    validity_seconds: int | None = None
    #: A call: the language `body` is read in (our code, "en", "es"...), the question
    #: asked after it ("press 1 to confirm, 9 for help"; None asks nothing), and what is
    #: said when nobody presses a key (a voicemail), e.g. the reply code to text back.
    language: str | None = None
    prompt: str | None = None
    voicemail: str | None = None
    #: WhatsApp: an approved Content template (`HX...`) and its numbered variables, for a
    #: message outside the 24-hour session; `free_text` says a session is open, so the
    #: body may go as it is (the template is the fallback when the provider says no).
    template_sid: str | None = None
    template_variables: Mapping[str, str] = field(default_factory=dict)
    free_text: bool = True

    def rendered(self, text: str | None) -> str | None:
        if text is None:
            return None
        for tag, value in self.substitutions.items():
            text = text.replace(tag, value)
        return text


@dataclass(frozen=True)
class Receipt:
    """The provider took the message: its id, its status, and how many segments it bills."""

    provider_id: str
    status: str
    segments: int = 1


@runtime_checkable
class Channel(Protocol):
    """A provider behind our vocabulary. Errors are `ChannelError`s after retries gave up."""

    kind: ClassVar[ChannelKind]
    #: Most messages one provider request may carry.
    max_batch: ClassVar[int]

    async def send(self, message: Message) -> Receipt: ...

    async def send_many(self, messages: Sequence[Message]) -> list[Receipt | ChannelError]: ...

    async def aclose(self) -> None: ...
