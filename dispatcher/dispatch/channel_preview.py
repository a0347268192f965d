"""What a dry run says about channels beyond SMS and email: each tier's steps per
volunteer (with the steps they would miss), and each WhatsApp message's language,
form (template or free text) and cost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dispatcher.dispatch.targeting import Target
from dispatcher.dispatch.whatsapp import COST_UNITS, template_for
from dispatcher.domain import Channel
from dispatcher.escalation.policy import EscalationPolicy


def policy_steps(policy: EscalationPolicy) -> list[dict[str, Any]]:
    return [{"after_seconds": s.delay_seconds, "channels": list(s.channels)}
            for s in policy.tier_steps()]


def recipient_steps(policy: EscalationPolicy, target: Target,
                    configured: list[str]) -> list[dict[str, Any]]:
    """Each step's channels this volunteer would get, and those skipped, with why."""
    have = {c.channel for c in target.contacts}
    out = []
    for step in policy.tier_steps():
        skipped = [{"channel": c, "reason": "no provider configured" if configured
                    and c not in configured else "no live contact"}
                   for c in step.channels if c not in have]
        out.append({"after_seconds": step.delay_seconds,
                    "channels": [c for c in step.channels if c in have],
                    "skipped": skipped})
    return out


def whatsapp_message(config_dir: Path, language: str, session_open: bool) -> dict[str, Any]:
    """How a WhatsApp alert would go: free text in a session, else the language's template."""
    if session_open:
        return {"language": language, "form": "free text", "content_sid": None,
                "cost_units": COST_UNITS}
    tpl = template_for(config_dir, language)
    if tpl is None:
        return {"language": language, "form": "none (no template: other channels take over)",
                "content_sid": None, "cost_units": 0}
    return {"language": tpl.language, "form": "template", "content_sid": tpl.content_sid,
            "cost_units": COST_UNITS}


def uses_whatsapp(steps: list[dict[str, Any]]) -> bool:
    return any(Channel.WHATSAPP.value in s["channels"] for s in steps)
