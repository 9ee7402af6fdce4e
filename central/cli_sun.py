"""``nyckelfri-central tag-keys``: the SUN master keys, the tag policy and the URL base.

Thin commands over :class:`central.cases.sun.SunAuthority`; like ``device`` they act
with the database's authority (no ``--as``). A master key is never printed: ``list``
shows versions, dates and how many tags use each.

These commands add themselves to :data:`central.cli.main` when :mod:`central.cli` is
imported (it imports this module at its end).
"""

from __future__ import annotations

import click

from central.cases import sun
from central.cli_base import _when, emit_json, json_option, main, routine_store


@main.group("tag-keys")
def tag_keys() -> None:
    """SUN tags (NTAG 424 DNA): master key versions, the tag policy, the URL base."""


@tag_keys.command("rotate")
@json_option
@click.pass_context
def rotate_cmd(ctx: click.Context, as_json: bool) -> None:
    """Add a master key version: tags provisioned from now on use it; every tag keeps
    its version until it is provisioned again ('nyckelfri tag provision')."""
    with routine_store(ctx) as routine:
        version = routine.sun.rotate()
        versions = routine.sun.key_versions()
    older = sum(v.active_tags for v in versions if v.version != version)
    if as_json:
        emit_json({"version": version, "tags_on_older_versions": older})
        return
    click.echo(f"master key version {version} created; new provisioning uses it. {older} "
               "active tag(s) keep an older version until provisioned again.")


@tag_keys.command("list")
@json_option
@click.pass_context
def list_cmd(ctx: click.Context, as_json: bool) -> None:
    """List the master key versions (never the keys) and how many tags use each."""
    with routine_store(ctx) as routine:
        versions = routine.sun.key_versions()
    if as_json:
        emit_json({"versions": versions})
        return
    if not versions:
        click.echo("no master key yet: the first provisioning makes version 1")
        return
    click.echo(f"{'version':>7} {'created':<17} {'tags':>6} {'active':>6} {'pending':>7}")
    for v in versions:
        click.echo(f"{v.version:>7} {_when(v.created_at):<17} {v.tags:>6} {v.active_tags:>6} "
                   f"{v.pending:>7}{'  (newest)' if v.newest else ''}")


@tag_keys.command("policy")
@click.argument("policy", required=False, type=click.Choice(sun.POLICY_CHOICES))
@json_option
@click.pass_context
def policy_cmd(ctx: click.Context, policy: str | None, as_json: bool) -> None:
    """Show the tag policy agents are told, or set it: auto (sun_required once every
    active tag is a SUN tag, signature before), sun_required, signature or uid_only."""
    with routine_store(ctx) as routine:
        state = routine.sun.set_policy(policy) if policy else routine.sun.policy()
    if as_json:
        emit_json(state)
        return
    click.echo(f"tag policy {state.setting}: agents are told {state.effective.value} "
               f"({state.sun_tags} of {state.active_tags} active tag(s) are SUN tags)")


@tag_keys.command("url-base")
@click.argument("url", required=False)
@json_option
@click.pass_context
def url_base_cmd(ctx: click.Context, url: str | None, as_json: bool) -> None:
    """Show or set the URL written to tags provisioned from now on (the tag appends its
    SUN parameters, ?e=...&c=..., to it)."""
    with routine_store(ctx) as routine:
        value = routine.sun.set_url_base(url) if url else routine.sun.url_base()
    if as_json:
        emit_json({"url_base": value})
    else:
        click.echo(f"SUN URL base: {value}")
