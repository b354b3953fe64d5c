"""Key custodian page (read-only): key versions, data keys and rows per version of each protected
table. Rotation, rewrap and retirement stay in ``ztcp keys``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

import keymgmt
from console import guard
from console.web import Console


def add_routes(router: APIRouter, console: Console) -> None:
    rt = console.runtime

    @router.get("/keys")
    def keys(request: Request) -> Response:
        ctx = console.ctx(request)
        console.require(ctx, guard.KEYS)
        infos = rt.key_provider.list()
        tables, problems = [], []
        engine = rt.protected_engine
        for spec in keymgmt.registered_specs(engine):
            # Counting rows per key version needs no key material: the blind-index keys are not opened.
            table = keymgmt.EncryptedTable(engine, spec, keymgmt.Envelope(rt.key_provider, engine),
                                           keymgmt.BlindIndexKeys(rt.key_provider, length=spec.bi_length)
                                           if spec.blind_index else None)
            try:
                tables.append(keymgmt.table_status(table))
            except keymgmt.KeyMgmtError as exc:
                problems.append({"table": spec.table, "error": str(exc)})
        return console.render(ctx, "keys.html.j2", keys=infos, tables=tables, problems=problems,
                              provider=getattr(rt.key_provider, "provider_name", ""))
