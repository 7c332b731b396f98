"""The AsyncAPI 3.0 document of the v1 NATS subjects, committed as ``docs/asyncapi.json``.

Built from the contracts themselves (subjects, event types, payload models), so it cannot say
anything the code does not do; a test fails when the committed file drifts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from contracts import CONTRACTS_VERSION
from contracts.documents.generated import GeneratedFile
from contracts.envelope import EventEnvelope
from contracts.events.registry import ATTEMPT_ENDINGS, PAYLOADS, EventType, job_event_name

ASYNCAPI_PATH = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"

_CHANNELS: dict[str, tuple[str, str, list[EventType]]] = {
    "jobEvents": (
        "jobs.{tenant}.{job_id}.{event}",
        "Every job event; {event} is the last part of the type (job.progress → progress). Published (and "
        "seen by core NATS subscribers) on this subject; stream JOBS stores it as "
        "jobs.{tenant}.{job_id}.{event}.{slot} (a subject transform; the slot, 0-31, a hash of tenant and job), "
        "the subject JetStream consumers, message gets and expected-last-subject-sequence fences see.",
        [t for t in EventType if t.startswith("job.")],
    ),
    "uploadCompleted": (
        "uploads.{tenant}.{upload_id}.completed",
        "An upload verified in storage.",
        [EventType.UPLOAD_COMPLETED],
    ),
    "robotJoints": (
        "robots.{tenant}.{robot_id}.joints",
        "Joint-angle samples (stream TELEMETRY).",
        [EventType.ROBOT_JOINTS],
    ),
    "webhookDead": (
        "webhooks.{tenant}.{endpoint_id}.dead",
        "Webhook deliveries that exhausted their retries (stream DEADLETTER).",
        [EventType.WEBHOOK_DEAD_LETTERED],
    ),
}


def _message_name(event: EventType) -> str:
    return event.value.replace(".", "_")


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    return schema


def _msg_id_doc(event: EventType) -> str:
    if event in ATTEMPT_ENDINGS:
        return "end-{job}-a{attempt} (dedup: one ending per attempt, the worker's or the dispatcher's)."
    if event is EventType.JOB_CANCELED:
        return (
            "end-{job}-a{attempt} of the attempt it ends (dedup against that attempt's other endings); "
            "stored once per job (Nats-Expected-Last-Subject-Sequence 0 on its stored subject)."
        )
    return "The envelope id (dedup)."


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document: channels, messages (envelope + typed data), operations."""
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for event, model in PAYLOADS.items():
        payload = _schema(model)
        schemas.update(payload.pop("$defs", {}))
        schemas[model.__name__] = payload
        messages[_message_name(event)] = {
            "name": event.value,
            "title": event.value,
            "summary": (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else event.value,
            "contentType": "application/json",
            "headers": {
                "type": "object",
                "properties": {"Nats-Msg-Id": {"type": "string", "description": _msg_id_doc(event)}},
            },
            "payload": {
                "allOf": [
                    {"$ref": "#/components/schemas/EventEnvelope"},
                    {
                        "type": "object",
                        "properties": {
                            "type": {"const": event.value},
                            "data": {"$ref": f"#/components/schemas/{model.__name__}"},
                        },
                    },
                ]
            },
        }
    envelope = _schema(EventEnvelope)
    schemas.update(envelope.pop("$defs", {}))
    schemas["EventEnvelope"] = envelope
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for channel_id, (address, description, events) in _CHANNELS.items():
        names = [p.strip("{}") for p in address.split(".") if p.startswith("{")]
        params: dict[str, Any] = {n: {"description": "A safe token: [A-Za-z0-9_-]{1,64}."} for n in names}
        if "event" in params:
            params["event"] = {"enum": sorted(job_event_name(e) for e in events)}
        channels[channel_id] = {
            "address": address,
            "description": description,
            "parameters": params,
            "messages": {_message_name(e): {"$ref": f"#/components/messages/{_message_name(e)}"} for e in events},
        }
        operations[f"publish_{channel_id}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel_id}"},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "gpurelay events",
            "version": CONTRACTS_VERSION,
            "description": "NATS JetStream subjects of gpurelay. Every message is an EventEnvelope "
            "(CloudEvents 1.0 attribute names) published with Nats-Msg-Id = its id; an attempt's ending "
            "(job.succeeded, job.failed, job.retrying) with its attempt's, end-{job}-a{attempt}, whoever "
            "publishes it, so one ending per attempt is stored.",
        },
        "defaultContentType": "application/json",
        "servers": {"nats": {"host": "localhost:4222", "protocol": "nats"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": dict(sorted(schemas.items()))},
    }


ASYNCAPI = GeneratedFile(ASYNCAPI_PATH, asyncapi_document)
"""``docs/asyncapi.json``: ``gpurelay schema`` writes it, a test checks its drift."""
