//! The operations overview for operators (and leads, read-only): one card per stack
//! environment, upstream first (staging → production), with its artifact, stack status,
//! freeze and hold, its last release and who made it; a "promote" button on an
//! environment whose upstream runs something it does not; and the newest promotions.
//! Also the pieces the environment and promotion pages share.

use super::control_fns::{EnvironmentCard, OperationsData, RequestPromotion, operations};
use super::{error_text, short_time};
use leptos::prelude::*;
use leptos_meta::Title;
use quarry_domain::control::{DiffRow, MarkView, PromotionView, ReleaseView};

/// `quarry@sha256:1111111111…`: an image by digest, short enough for a card (the full
/// reference is in the title).
pub fn short_image(image: &str) -> String {
    let name = image.rsplit('/').next().unwrap_or(image);
    match name.split_once("@sha256:") {
        Some((repo, digest)) => format!("{repo}@sha256:{}…", &digest[..digest.len().min(12)]),
        None => name.to_owned(),
    }
}

/// A state (`succeeded`, `awaiting_approval`, `UPDATE_COMPLETE`…) as a coloured badge.
#[component]
pub fn StateBadge(#[prop(into)] state: String) -> impl IntoView {
    let lower = state.to_ascii_lowercase();
    let tone = if lower.contains("fail")
        || lower.contains("rollback")
        || lower == "rejected"
        || lower == "expired"
        || lower == "blocked"
        || lower == "differed"
    {
        "failed"
    } else if lower.ends_with("succeeded")
        || lower.ends_with("_complete")
        || lower == "in_sync"
        || lower == "passed"
    {
        "succeeded"
    } else if lower.contains("progress")
        || lower == "deploying"
        || lower == "awaiting_approval"
        || lower == "running"
        || lower == "pending"
    {
        "running"
    } else {
        ""
    };
    let text = state.replace('_', " ");
    view! { <span class=format!("status {tone}") data-testid="state" data-state=state>{text}</span> }
}

/// A freeze or a hold: who set it, when and why.
#[component]
pub fn MarkNote(what: &'static str, mark: MarkView) -> impl IntoView {
    view! {
        <p class="guard" data-testid=format!("{what}-note")>
            <strong>{if what == "frozen" { "Frozen" } else { "Held" }}</strong>
            " by "{mark.by.clone()}" at "{short_time(&mark.at)}": "{mark.reason.clone()}
        </p>
    }
}

/// The rows of a change set: what a deploy changes.
#[component]
pub fn DiffTable(rows: Vec<DiffRow>) -> impl IntoView {
    if rows.is_empty() {
        return view! { <p class="hint" data-testid="diff-empty">"No resource changes: only parameters differ."</p> }.into_any();
    }
    view! {
        <table class="jobs diff" data-testid="diff">
            <thead><tr><th>"Action"</th><th>"Logical id"</th><th>"Type"</th><th>"Replacement"</th></tr></thead>
            <tbody>
                {rows.into_iter().map(|r| view! {
                    <tr data-testid="diff-row" data-action=r.action.clone()>
                        <td class=format!("action {}", r.action.to_ascii_lowercase())>{r.action.clone()}</td>
                        <td><code>{r.logical_id.clone()}</code></td>
                        <td>{r.resource_type.clone()}</td>
                        <td>{if r.replacement.is_empty() { "–".to_owned() } else { r.replacement.clone() }}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }.into_any()
}

/// "deploy by olga at 2026-12-01 10:02:11".
pub fn release_line(r: &ReleaseView) -> String {
    format!(
        "{} by {} at {}",
        r.kind,
        r.deployed_by,
        short_time(&r.started_at)
    )
}

#[component]
pub fn OperationsPage() -> impl IntoView {
    let request = ServerAction::<RequestPromotion>::new();
    let overview = Resource::new(move || request.version().get(), |_| operations());
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| {
        if let Some(Ok(id)) = request.value().get() {
            leptos_router::hooks::use_navigate()(
                &format!("/operations/promotions/{id}"),
                Default::default(),
            );
        }
    });
    view! {
        <Title text="Operations"/>
        <section class="page">
            <h1>"Operations"</h1>
            <Transition fallback=|| view! { <p class="hint">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match overview.await {
                        Ok(o) => view! { <Overview o request/> }.into_any(),
                        Err(e) => view! { <p class="error" role="alert">{error_text(&e)}</p> }.into_any(),
                    }
                })}
            </Transition>
            {move || request.value().get().and_then(Result::err).map(|e| view! {
                <p class="error" role="alert" data-testid="promote-error">{error_text(&e)}</p>
            })}
        </section>
    }
}

#[component]
fn Overview(o: OperationsData, request: ServerAction<RequestPromotion>) -> impl IntoView {
    let can_operate = o.can_operate;
    view! {
        <div class="pipeline" data-testid="pipeline">
            {o.cards.into_iter().enumerate().map(|(i, card)| view! {
                {(i > 0).then(|| view! { <span class="arrow" aria-hidden="true">"→"</span> })}
                <EnvCard card can_operate request/>
            }).collect_view()}
        </div>
        <h2>"Promotions"</h2>
        {if o.promotions.is_empty() {
            view! { <p class="empty">"No promotion yet. Promote what runs on staging from production's card."</p> }.into_any()
        } else {
            view! { <PromotionTable list=o.promotions/> }.into_any()
        }}
    }
}

#[component]
fn EnvCard(
    card: EnvironmentCard,
    can_operate: bool,
    request: ServerAction<RequestPromotion>,
) -> impl IntoView {
    let env = card.environment;
    let name = env.name.clone();
    let (card_id, link, target) = (
        format!("env-card-{name}"),
        format!("/operations/environments/{name}"),
        name.clone(),
    );
    let upstream = env.upstream.clone();
    view! {
        <article class="card env-card" data-testid=card_id data-environment=name.clone()>
            <h3><a href=link>{name.clone()}</a>
                " "<span class="type">{env.stack.clone()}</span></h3>
            <p><StateBadge state=env.status.clone()/></p>
            {env.status_reason.clone().map(|r| view! { <p class="hint" data-testid="status-reason">{r}</p> })}
            <dl>
                <dt>"Artifact"</dt>
                <dd data-testid="artifact" title=env.artifact.clone().unwrap_or_default()>
                    {env.artifact.as_deref().map(short_image).unwrap_or_else(|| "none yet".to_owned())}
                </dd>
                <dt>"Upstream"</dt><dd>{upstream.clone().unwrap_or_else(|| "deployed directly".to_owned())}</dd>
                <dt>"Approvals"</dt><dd>{env.approvals_required}</dd>
                <dt>"Last release"</dt>
                <dd data-testid="last-release">{match card.last_release.as_ref() {
                    Some(r) => view! { {release_line(r)}" "<StateBadge state=r.outcome.clone()/> }.into_any(),
                    None => "none yet".into_any(),
                }}</dd>
            </dl>
            {env.frozen.clone().map(|m| view! { <MarkNote what="frozen" mark=m/> })}
            {env.hold.clone().map(|m| view! { <MarkNote what="held" mark=m/> })}
            {card.open_promotion.clone().map(|p| view! {
                <p class="notice"><a href=format!("/operations/promotions/{}", p.id) data-testid="open-promotion">
                    {format!("Promotion of {} {}", short_image(&p.artifact), p.status.replace('_', " "))}
                </a></p>
            })}
            {match (card.promotable.clone(), upstream, card.open_promotion.is_none()) {
                (Some(artifact), Some(from), true) => Some(view! {
                    <ActionForm action=request attr:class="promote" attr:data-testid="promote-form">
                        <input type="hidden" name="from" value=from.clone()/>
                        <input type="hidden" name="to" value=target.clone()/>
                        <p class="hint">{format!("{from} runs {}, which {target} does not.", short_image(&artifact))}</p>
                        <button type="submit" data-testid="promote" disabled={!can_operate}
                            title={(!can_operate).then_some("Only operators and admins promote.")}>
                            {format!("Promote {from} → {target}")}
                        </button>
                    </ActionForm>
                }),
                _ => None,
            }}
        </article>
    }
}

#[component]
pub fn PromotionTable(list: Vec<PromotionView>) -> impl IntoView {
    view! {
        <table class="jobs promotions" data-testid="promotions">
            <thead><tr><th>"Promotion"</th><th>"Artifact"</th><th>"Status"</th><th>"Requested by"</th><th>"When"</th></tr></thead>
            <tbody>
                {list.into_iter().map(|p| view! {
                    <tr data-testid="promotion-row" data-status=p.status.clone()>
                        <td><a href=format!("/operations/promotions/{}", p.id)>{format!("{} → {}", p.from, p.to)}</a></td>
                        <td title=p.artifact.clone()><code>{short_image(&p.artifact)}</code></td>
                        <td><StateBadge state=p.status.clone()/></td>
                        <td>{p.requested_by.clone()}</td>
                        <td>{short_time(&p.requested_at)}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
}

#[cfg(test)]
mod tests {
    use super::short_image;

    #[test]
    fn an_image_is_shown_by_its_name_and_the_start_of_its_digest() {
        let image = format!(
            "123.dkr.ecr.eu-west-1.amazonaws.com/quarry@sha256:{}",
            "ab".repeat(32)
        );
        assert_eq!(short_image(&image), "quarry@sha256:abababababab…");
        assert_eq!(short_image("quarry:latest"), "quarry:latest");
    }
}
