"""Request models of the REST server, with the limits a public endpoint needs.

Why limits here and not only in the Memory API: a request that breaks one is refused (422, naming the field)
before it reaches the policy, so it costs no embedding, no LM call and no store write. The byte limit on the
whole body is enforced earlier still, by FastAPI's body limit (413), before the JSON is parsed.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_BODY_BYTES = 1_000_000  # whole request body; larger -> 413 before parsing
MAX_MESSAGES = 100  # messages per add request (a turn pair is 2; a batch import of a session fits)
MAX_MESSAGE_CHARS = 20_000  # chars per message (a long turn is ~2k)
MAX_QUERY_CHARS = 4_000
MAX_ID_CHARS = 256  # scope values and memory ids
MAX_TOP_K = 100
MAX_LIMIT = 10_000  # get_all page size

ScopeValue = Annotated[str, Field(default="", max_length=MAX_ID_CHARS)]


def check_id(value: str, field: str) -> str:
    """Refuse control characters in ids and scope values (they never belong there, and the store refuses them
    too); everything else, quotes and unicode included, is plain data."""
    for ch in value:
        if unicodedata.category(ch) == "Cc":
            raise ValueError(
                f"{field} contains control character U+{ord(ch):04X}; ids may not contain control characters"
            )
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not silently ignored


class ScopeIn(_Strict):
    user_id: ScopeValue
    agent_id: ScopeValue
    run_id: ScopeValue

    @field_validator("user_id", "agent_id", "run_id")
    @classmethod
    def _no_control(cls, value: str, info) -> str:
        return check_id(value, info.field_name)

    def scope(self) -> dict[str, str]:
        return {"user_id": self.user_id, "agent_id": self.agent_id, "run_id": self.run_id}

    def require_scope(self) -> ScopeIn:
        """Memories always belong to someone: an all-empty scope would read or write across every user."""
        if not (self.user_id or self.agent_id or self.run_id):
            raise ValueError(
                "give at least one of user_id, agent_id, run_id (an empty scope would act on every user's memories)"
            )
        return self


class ScopeQuery(ScopeIn):
    """The caller's scope on a read or on an id-addressed call: at least one field. `cross_user` opts in to a scope
    without user_id, which matches every user's memories (the Memory API refuses it otherwise, with 400)."""

    cross_user: bool = Field(False, description="true: allow a scope without user_id (it spans every user)")

    @model_validator(mode="after")
    def _scoped(self):
        return self.require_scope()

    def call_scope(self) -> dict[str, Any]:
        return {**self.scope(), "cross_user": self.cross_user}


class MessageIn(_Strict):
    """One turn. `role` and `content` are mem0's names; `speaker` and `text` are accepted too."""

    role: str = Field(validation_alias=AliasChoices("role", "speaker"), min_length=1, max_length=MAX_ID_CHARS)
    content: str = Field(validation_alias=AliasChoices("content", "text"), min_length=1, max_length=MAX_MESSAGE_CHARS)
    dia_id: str = Field(default="", max_length=MAX_ID_CHARS)
    timestamp: str = Field(default="", max_length=MAX_ID_CHARS)

    def as_dict(self) -> dict[str, str]:
        out = {"role": self.role, "content": self.content}
        if self.dia_id:
            out["dia_id"] = self.dia_id
        if self.timestamp:
            out["timestamp"] = self.timestamp
        return out


class AddRequest(ScopeIn):
    messages: str | list[MessageIn] = Field(
        description=f"a string (one user message) or 1-{MAX_MESSAGES} messages {{role, content}}"
    )
    metadata: dict[str, Any] | None = None
    infer: bool = Field(True, description="false: store the messages verbatim, no extraction")

    @field_validator("messages")
    @classmethod
    def _size(cls, value):
        if isinstance(value, str):
            if not value.strip():
                raise ValueError("messages is an empty string: send the text of at least one message")
            if len(value) > MAX_MESSAGE_CHARS:
                raise ValueError(f"messages is {len(value)} chars, the limit is {MAX_MESSAGE_CHARS}")
        elif not value:
            raise ValueError("messages is an empty list: send at least one {role, content} message")
        elif len(value) > MAX_MESSAGES:
            raise ValueError(f"messages has {len(value)} items, the limit is {MAX_MESSAGES}: split the request")
        return value

    @model_validator(mode="after")
    def _scoped(self):
        return self.require_scope()

    def payload(self) -> str | list[dict]:
        return self.messages if isinstance(self.messages, str) else [m.as_dict() for m in self.messages]


class SearchRequest(ScopeQuery):
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    top_k: int | None = Field(None, ge=1, le=MAX_TOP_K)
    filters: dict[str, Any] | None = None
    threshold: float | None = Field(None, ge=-1.0, le=1.0)
    include_history: bool | None = Field(
        None,
        description="true: also memories that no longer hold (superseded), marked valid=false; false: only those "
        "that hold; null: as the policy's retriever says",
    )


class UpdateRequest(_Strict):
    text: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)
    metadata: dict[str, Any] | None = None


class ResetRequest(_Strict):
    confirm: str = Field(description='must be "delete all memories"')

    @field_validator("confirm")
    @classmethod
    def _confirmed(cls, value: str) -> str:
        if value != "delete all memories":
            raise ValueError('to reset the whole store send {"confirm": "delete all memories"}')
        return value
