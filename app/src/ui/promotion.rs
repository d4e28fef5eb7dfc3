//! A promotion's page: the change-set rows stored when it was requested (exactly what
//! the approver approves), the approval panel (disabled for the requester, with the
//! reason), its reference gate (the pinned analyses run on the candidate, with the
//! first differing rows of any that differed), the approvals given, and the deploy's
//! progress live: its stack events and its status, which reaches `succeeded` or
//! `failed` without a reload.

use super::control_fns::{
    CancelPromotion, DecidePromotion, OverrideGate, PromotionData, gate_blocks, promotion_page,
};
use super::environment::EventTable;
use super::gate::GateSection;
use super::operations::{DiffTable, StateBadge, short_image};
use super::{error_text, short_time};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;
use quarry_domain::control::{PromotionView, StackEventView};

#[component]
pub fn PromotionPageView() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").unwrap_or_default();
    let decide = ServerAction::<DecidePromotion>::new();
    let cancel = ServerAction::<CancelPromotion>::new();
    let overriding = ServerAction::<OverrideGate>::new();
    // Bumped when the gate decides while the page is open: the page is read again, so
    // the approval panel says what may be done now.
    let refresh = RwSignal::new(0_u32);
    // The finished promotion a stream of this page delivered. A read of the page made
    // before it finished can resolve after that (an approval's re-read races the
    // deploy); a finished promotion does not change any more, so it is what is shown.
    let settled = StoredValue::new(None::<PromotionView>);
    let page = Resource::new(
        move || {
            (
                id(),
                decide.version().get(),
                cancel.version().get(),
                overriding.version().get(),
                refresh.get(),
            )
        },
        |(id, ..)| promotion_page(id),
    );
    view! {
        <Title text="Promotion"/>
        <section class="page">
            <p class="meta"><a href="/operations">"Operations"</a></p>
            <Transition fallback=|| view! { <p class="hint">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match page.await {
                        Ok(p) => view! { <Promotion p decide cancel overriding refresh settled/> }.into_any(),
                        Err(e) => view! {
                            <h1>"Promotion"</h1>
                            <p class="error" role="alert">{error_text(&e)}</p>
                        }.into_any(),
                    }
                })}
            </Transition>
            {move || {
                let decided = decide.value().get().and_then(Result::err);
                decided
                    .or_else(|| cancel.value().get().and_then(Result::err))
                    .or_else(|| overriding.value().get().and_then(Result::err))
                    .map(|e| view! {
                    <p class="error" role="alert" data-testid="decision-error">{error_text(&e)}</p>
                })
            }}
        </section>
    }
}

#[component]
fn Promotion(
    p: PromotionData,
    decide: ServerAction<DecidePromotion>,
    cancel: ServerAction<CancelPromotion>,
    overriding: ServerAction<OverrideGate>,
    refresh: RwSignal<u32>,
    settled: StoredValue<Option<PromotionView>>,
) -> impl IntoView {
    let initial = newest(p.promotion.clone(), settled.get_value());
    let live = RwSignal::new(initial.clone());
    let events = RwSignal::new(Vec::<StackEventView>::new());
    #[cfg(feature = "hydrate")]
    if !initial.is_finished() {
        follow(&initial, live, events, settled);
    }
    let status = Memo::new(move |_| live.with(|p| p.status.clone()));
    let gate = Memo::new(move |_| live.with(|p| p.gate.clone()));
    let first_gate = initial.gate.status.clone();
    Effect::new(move |_| {
        if gate.with(|g| g.status != first_gate) {
            refresh.update(|n| *n += 1);
        }
    });
    let open = Signal::derive(move || status.get() == "awaiting_approval");
    let gate_id = initial.id.clone();
    let is_admin = p.is_admin;
    let id = initial.id.clone();
    let release = p.release.clone();
    view! {
        <h1>"Promotion "{initial.from.clone()}" → "{initial.to.clone()}</h1>
        <div class="job-status" data-testid="promotion-status" data-status=move || status.get()>
            {move || view! { <StateBadge state=status.get()/> }}
            <span title=initial.artifact.clone()>" "<code>{short_image(&initial.artifact)}</code></span>
        </div>
        <dl class="facts">
            <dt>"Requested by"</dt><dd data-testid="requested-by">{initial.requested_by.clone()}</dd>
            <dt>"Requested"</dt><dd>{short_time(&initial.requested_at)}</dd>
            <dt>"Approval expires"</dt><dd>{short_time(&initial.expires_at)}</dd>
            <dt>"Artifact"</dt><dd><code>{initial.artifact.clone()}</code></dd>
            <dt>"Into"</dt><dd><a href=format!("/operations/environments/{}", initial.to)>{initial.to.clone()}</a></dd>
        </dl>
        {move || live.get().detail.map(|d| view! {
            <p class={if status.get() == "failed" { "error" } else { "notice" }} role="status" data-testid="promotion-detail">{d}</p>
        })}
        <h2>"Changes"</h2>
        <p class="hint">"The change set computed when the promotion was requested: what an approval deploys. It is checked again before it runs; if it changed, the promotion asks for approval again."</p>
        {move || view! { <DiffTable rows=live.get().diff/> }}
        <GateSection gate=gate id=gate_id is_admin open overriding/>
        <h2>"Approval"</h2>
        {move || if status.get() == "awaiting_approval" {
            let blocked = live.with(gate_blocks);
            view! { <ApprovalPanel p=p.clone() decide cancel id=id.clone() blocked/> }.into_any()
        } else {
            view! {
                <p class="hint" data-testid="approval-closed">
                    {format!("This promotion is {}: there is nothing left to decide.", status.get().replace('_', " "))}
                </p>
            }.into_any()
        }}
        {move || {
            let approvals = live.get().approvals;
            (!approvals.is_empty()).then(|| view! {
                <ul class="approvals" data-testid="approvals">
                    {approvals.into_iter().map(|a| view! {
                        <li data-decision=a.decision.clone()>
                            <strong>{match a.decision.as_str() {
                                "approve" => "Approved",
                                "override_gate" => "Gate overridden",
                                _ => "Rejected",
                            }}</strong>
                            " by "{a.by}" at "{short_time(&a.at)}
                            {(!a.comment.is_empty()).then(|| format!(": {}", a.comment))}
                        </li>
                    }).collect_view()}
                </ul>
            })
        }}
        <Show when=move || status.get() != "awaiting_approval">
            <h2>"Deploy"</h2>
            {release.clone().map(|r| view! {
                <p class="meta" data-testid="release">"Release "<code>{r.id}</code>" · started "{short_time(&r.started_at)}</p>
            })}
            {move || view! { <EventTable list=events.get()/> }}
        </Show>
    }
}

/// Approve or reject with a comment, or cancel. Disabled, with the reason shown, for
/// whoever may not decide now (the requester, a lead, a decided promotion).
#[component]
fn ApprovalPanel(
    p: PromotionData,
    decide: ServerAction<DecidePromotion>,
    cancel: ServerAction<CancelPromotion>,
    id: String,
    /// Why the reference gate refuses an approval now, if it does (a rejection is
    /// still possible).
    blocked: Option<String>,
) -> impl IntoView {
    let open = p.promotion.is_open();
    let why_not = p.decide.clone().err();
    let disabled = why_not.is_some();
    let no_approval = disabled || blocked.is_some();
    let form_id = id.clone();
    view! {
        <div class="approval" data-testid="approval-panel" data-enabled={(!no_approval).to_string()}>
            {why_not.clone().map(|w| view! { <p class="hint" data-testid="approval-disabled">{w}</p> })}
            {blocked.filter(|_| !disabled).map(|w| view! { <p class="hint" data-testid="approval-gated">{w}</p> })}
            <ActionForm action=decide attr:class="decide" attr:data-testid="decide-form">
                <input type="hidden" name="id" value=form_id/>
                <textarea name="comment" placeholder="What you checked (recorded with your decision)"
                    maxlength="2000" disabled=disabled></textarea>
                {(p.is_admin).then(|| view! {
                    <label class="check"><input type="checkbox" name="override_freeze" disabled=disabled/>
                        " override a freeze (recorded)"</label>
                })}
                <div class="toolbar">
                    <button type="submit" name="decision" value="approve" data-testid="approve" disabled=no_approval>"Approve"</button>
                    <button type="submit" name="decision" value="reject" class="danger" data-testid="reject" disabled=disabled>"Reject"</button>
                </div>
            </ActionForm>
            {(open && p.can_operate).then(|| view! {
                <button type="button" class="link" data-testid="cancel-promotion" on:click={
                    let id = id.clone();
                    move |_| { cancel.dispatch(CancelPromotion { id: id.clone() }); }
                }>"Cancel this promotion"</button>
            })}
        </div>
    }
}

/// What the page shows of a promotion it read: the read, unless a stream already
/// delivered the same promotion finished (which the read, made earlier, has not seen).
fn newest(read: PromotionView, settled: Option<PromotionView>) -> PromotionView {
    match settled {
        Some(s) if s.id == read.id && !read.is_finished() => s,
        _ => read,
    }
}

/// Follows the target environment's events: this promotion's changes replace it, and
/// the stack's events are listed as the deploy goes; closed once it has finished (and
/// the finished promotion kept in `settled`, for the page's later reads).
#[cfg(feature = "hydrate")]
fn follow(
    p: &PromotionView,
    live: RwSignal<PromotionView>,
    events: RwSignal<Vec<StackEventView>>,
    settled: StoredValue<Option<PromotionView>>,
) {
    let stream = StoredValue::new_local(None::<super::live::Live>);
    let finish = move |p: PromotionView| {
        let finished = p.is_finished();
        if finished {
            settled.set_value(Some(p.clone()));
        }
        live.set(p);
        if finished && let Some(s) = stream.get_value() {
            s.close();
        }
    };
    let id = p.id.clone();
    let fresh = super::live::Freshness::new();
    let opened = super::live::listen(
        &format!("/api/v1/environments/{}/events", p.to),
        &["promotion", "stack", super::live::OPENED],
        fresh,
        move |kind, text| {
            if kind == super::live::OPENED {
                // What happened before the stream opened (or while it was down).
                let id = id.clone();
                super::live::reread(
                    fresh,
                    move || {
                        let id = id.clone();
                        async move { promotion_page(id).await.ok() }
                    },
                    move |page| finish(newest(page.promotion, settled.get_value())),
                );
                return;
            }
            if kind == "stack" {
                if let Ok(e) = serde_json::from_str::<StackEventView>(&text) {
                    events.update(|list| {
                        list.insert(0, e);
                        list.truncate(super::environment::SHOWN_EVENTS);
                    });
                }
                return;
            }
            let Ok(p) = serde_json::from_str::<PromotionView>(&text) else {
                return;
            };
            if p.id != id {
                return;
            }
            finish(p);
        },
    );
    stream.set_value(opened);
}
