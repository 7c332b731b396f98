"""The ``gpurelay replay`` command: options, their checks, and the summary it prints."""

from __future__ import annotations

import asyncio
import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from contracts.route_table import DEFAULT_ROUTES
from contracts.streams import DEADLETTER, FRAMES, JOBS, TELEMETRY
from services.cli.client import cli_settings, nats_connection
from services.cli.replay.reader import Bounds, consumer_config, parse_since, parse_until, replay_to
from services.cli.replay.rebuild import Rebuild, rebuild_jobs, route_prices
from services.cli.replay.targets import StdoutTarget, SubjectTarget, Tally, Target, WebhookTarget
from services.common.config import BaseServiceSettings

err = Console(stderr=True)
Opt = typer.Option


class ReplayStream(StrEnum):
    """The streams a replay reads (``--stream``, any case): the others are work queues, read only by their
    services (a name outside these was a NATS permission error, then a time-out, for the CLI's user)."""

    JOBS = JOBS
    TELEMETRY = TELEMETRY
    FRAMES = FRAMES
    DEADLETTER = DEADLETTER


def _check(
    since: str | None, from_seq: int | None, targets: dict[str, str | None], follow: bool, rebuild: str | None
) -> None:
    """Refuse option combinations that mean nothing."""
    if since is not None and from_seq is not None:
        raise typer.BadParameter("give --since or --from, not both", param_hint="--since")
    chosen = [name for name, value in targets.items() if value]
    if len(chosen) > 1:
        raise typer.BadParameter(f"one target at a time, not {' and '.join(chosen)}", param_hint=chosen[0])
    if follow and chosen:
        raise typer.BadParameter("--follow prints to stdout only", param_hint="--follow")
    if rebuild is not None and rebuild != "jobs":
        raise typer.BadParameter("only the jobs projection can be rebuilt", param_hint="--rebuild")


def replay(
    subject: Annotated[
        str | None, Opt("--subject", help="Subject filter without the namespace: 'jobs.acme.>'.")
    ] = None,
    since: Annotated[str | None, Opt(help="Start at this time: ISO 8601, or 10m / 2h / 1d ago.")] = None,
    from_seq: Annotated[int | None, Opt("--from", min=1, help="Start at this stream sequence.")] = None,
    until: Annotated[str | None, Opt(help="Stop after this sequence (digits) or time (as --since).")] = None,
    limit: Annotated[int | None, Opt(min=1, help="At most this many messages.")] = None,
    stream_name: Annotated[
        ReplayStream, Opt("--stream", case_sensitive=False, help="The stream to read.")
    ] = ReplayStream.JOBS,
    follow: Annotated[bool, Opt("--follow/--no-follow", help="Keep reading new messages (stdout only).")] = False,
    to_subject: Annotated[str | None, Opt("--to-subject", help="Republish on this subject, marked.")] = None,
    to_webhook: Annotated[str | None, Opt("--to-webhook", help="Deliver to this endpoint (whe_...).")] = None,
    rebuild: Annotated[str | None, Opt("--rebuild", help="Rebuild a projection from its stream: 'jobs'.")] = None,
    apply_rebuild: Annotated[bool, Opt("--apply", help="With --rebuild: swap the rebuilt records in.")] = False,
    dry_run: Annotated[bool, Opt("--dry-run", help="Only count what would be replayed.")] = False,
    routes: Annotated[Path, Opt(envvar="GPURELAY_ROUTE_TABLE", help="Route table (prices of --rebuild).")] = Path(
        "deploy/routes.yaml"
    ),
    route_profile: Annotated[str, Opt(envvar="GPURELAY_ROUTE_PROFILE", help="Its profile.")] = "dev",
    data_dir: Annotated[Path | None, Opt("--data-dir", help="Read dev.env from this data dir.")] = None,
) -> None:
    """Replay a stream, from a sequence or a time, filtered by subject, to stdout (JSON lines), a
    subject, a webhook endpoint, or rebuild the jobs projection from it."""
    stream = stream_name.value
    targets = {"--to-subject": to_subject, "--to-webhook": to_webhook, "--rebuild": rebuild}
    _check(since, from_seq, targets, follow, rebuild)
    if apply_rebuild and (rebuild is None or dry_run):
        raise typer.BadParameter("--apply swaps a --rebuild in (and a dry run changes nothing)", param_hint="--apply")
    settings = cli_settings(data_dir)
    if rebuild is not None:
        if since or from_seq or until or limit or stream != JOBS or not (subject or "jobs.").startswith("jobs."):
            raise typer.BadParameter("a rebuild folds all of JOBS (--subject 'jobs.TENANT.>' at most)")
        pricing = route_prices(routes if routes.exists() else DEFAULT_ROUTES, route_profile)
        result = _run(_rebuild(settings, subject or "jobs.>", pricing, apply_rebuild))
        _show_rebuild(result)
        return
    bounds = parse_until(until, limit)
    config = consumer_config(from_seq, parse_since(since) if since is not None else None)
    selection = (stream, subject, config, bounds)
    tally = _run(_replay(settings, selection, to_subject, to_webhook, dry_run, follow))
    if to_subject or to_webhook or dry_run:
        name = f"subject {to_subject}" if to_subject else f"webhook {to_webhook}" if to_webhook else "stdout"
        typer.echo(json.dumps(tally.summary(name, dry_run), separators=(",", ":")))
    else:
        err.print(f"[dim]{tally.sent} messages[/]")


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


async def _replay(
    settings: BaseServiceSettings,
    selection: tuple[str, str | None, Any, Bounds],
    to_subject: str | None,
    to_webhook: str | None,
    dry_run: bool,
    follow: bool,
) -> Tally:
    nc = await nats_connection(settings, "cli-replay")
    try:
        target: Target
        if to_subject:
            target = SubjectTarget(nc, settings, selection[0], to_subject)
            await target.check()
        elif to_webhook:
            target = WebhookTarget(nc, settings, selection[0], to_webhook)
            record = await target.load()
            if not record.enabled:
                err.print(f"[yellow]{to_webhook} is disabled[/]: its deliveries wait until it is enabled")
        else:
            target = StdoutTarget(settings)
        return await replay_to(nc, settings, target, selection, dry_run=dry_run, follow=follow)
    finally:
        await nc.close()


async def _rebuild(settings: BaseServiceSettings, subject: str, pricing: Any, apply_changes: bool) -> Rebuild:
    nc = await nats_connection(settings, "cli-rebuild")
    try:
        return await rebuild_jobs(nc, settings, subject, pricing, apply_changes=apply_changes)
    finally:
        await nc.close()


def _show_rebuild(result: Rebuild) -> None:
    """The differences as a table on stderr; the summary as JSON on stdout."""
    if result.different or result.missing or result.only_live:
        table = Table("key", "difference", title="jobs: live vs rebuilt")
        for key, fields in result.different.items():
            table.add_row(key, "differs: " + ", ".join(fields))
        for key in result.missing:
            table.add_row(key, "missing from the live bucket")
        for key in result.only_live:
            table.add_row(key, "only in the live bucket (left alone)")
        err.print(table)
    err.print(
        f"{result.rebuilt} rebuilt, {result.same} the same, {len(result.different)} different, "
        f"{len(result.missing)} missing, {len(result.only_live)} only live; {len(result.applied)} applied"
        + (f"; the rebuild is in bucket {result.projection}" if result.projection else "")
    )
    typer.echo(json.dumps(result.summary(), separators=(",", ":")))
