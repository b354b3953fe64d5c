"""Security officer pages: revisions, one revision, its diff, a simulation against logged decisions,
and approve / publish / roll back — the revision store's own operations, so the maker-checker rules
are the CLI's (an officer cannot approve their own proposal; unapproved revisions do not publish).
Emergency publishing stays in the CLI (it needs a written reason and raises an alert)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from console import guard
from console.web import PREFIX, Console, PageError
from policy import LifecycleRefused, PolicyError, RevisionNotFound, diff_packs, simulate

SIMULATE_LAST = (100, 1000, 10000)


def _rev_or_404(store, ref: str):  # noqa: ANN001, ANN202
    try:
        return store.get(ref)
    except RevisionNotFound:
        raise PageError(404, "policy.not_found") from None


def add_routes(router: APIRouter, console: Console) -> None:
    rt = console.runtime

    @router.get("/policy")
    def revisions(request: Request) -> Response:
        ctx = console.ctx(request)
        console.require(ctx, guard.REVISIONS)
        store = rt.revision_store
        return console.render(ctx, "policy_list.html.j2", revisions=store.history(100), state=store.state())

    @router.get("/policy/{rev}")
    def show(request: Request, rev: str) -> Response:
        ctx = console.ctx(request)
        s = console.require(ctx, guard.REVISIONS)
        store = rt.revision_store
        revision = _rev_or_404(store, rev)
        events = [e for e in store.iter_since(None) if e.revision == revision.id]
        return console.render(ctx, "policy_show.html.j2", rev=revision, events=events, state=store.state(),
                              own=revision.author == s.subject, simulate_last=SIMULATE_LAST,
                              can_change=console.shows(ctx, guard.REVISION_CHANGE),
                              done=request.query_params.get("done", ""))

    @router.get("/policy/{rev}/diff")
    def diff(request: Request, rev: str) -> Response:
        ctx = console.ctx(request)
        console.require(ctx, guard.REVISIONS)
        store = rt.revision_store
        revision = _rev_or_404(store, rev)
        against = request.query_params.get("against") or revision.parent or store.state().active
        if not against or against == revision.id:
            lines, old_label = [], None
        else:
            old = _rev_or_404(store, against)
            text = diff_packs(store.pack(old.id), store.pack(revision.id), old.id, revision.id)
            lines, old_label = text.splitlines(), old.id
        return console.render(ctx, "policy_diff.html.j2", rev=revision, against=old_label, lines=lines)

    @router.post("/policy/{rev}/simulate")
    async def simulation(request: Request, rev: str) -> Response:
        ctx = console.ctx(request)
        form = await console.form(request)
        console.check_csrf(ctx, form)
        try:
            last = int(form.get("last", "1000"))
        except ValueError:
            raise PageError(400, "policy.bad_last") from None
        if last not in SIMULATE_LAST:
            raise PageError(400, "policy.bad_last")

        def run():  # noqa: ANN202
            console.require(ctx, guard.REVISIONS)
            store = rt.revision_store
            revision = _rev_or_404(store, rev)
            pack = store.pack(revision.id)
            entries = rt.decision_log.entries(last=last)
            # The PDP's own engine kind and bureau data, so the replay matches production (as the CLI).
            engine = rt.build_active(pack, revision="candidate").engine
            return revision, simulate(pack, entries, lambda _p, doc: engine.evaluate(doc), samples=5)

        revision, report = await run_in_threadpool(run)
        return console.render(ctx, "policy_simulate.html.j2", rev=revision, report=report, last=last)

    @router.post("/policy/{rev}/{action}")
    async def change(request: Request, rev: str, action: str) -> Response:
        ctx = console.ctx(request)
        if action not in ("approve", "publish", "rollback"):
            raise PageError(404, "policy.not_found")
        form = await console.form(request)
        s = console.check_csrf(ctx, form)
        note = form.get("comment", "")[:500] or None

        def apply() -> str:
            console.require(ctx, guard.REVISION_CHANGE, record_id=rev[:128])
            store = rt.revision_store
            try:
                if action == "approve":
                    return store.approve(rev, approver=s.subject, comment=note).id
                if action == "publish":
                    done = store.publish(rev, actor=s.subject, signer=rt.keys.bundle_signing,
                                         shadow=form.get("shadow") == "1").id
                else:
                    done = store.rollback(rev, actor=s.subject, reason=note).id
                rt.reloader.check()  # this process follows the store at once (other PDPs within seconds)
                return done
            except RevisionNotFound:
                raise PageError(404, "policy.not_found") from None
            except LifecycleRefused as exc:
                raise PageError(409, "policy.refused", detail=str(exc)) from None
            except PolicyError as exc:  # messages name revisions and files, never policy inputs
                raise PageError(409, "policy.failed", detail=str(exc)) from None

        done = await run_in_threadpool(apply)
        return console.redirect(ctx, f"{PREFIX}/policy/{done}?done={action}")
