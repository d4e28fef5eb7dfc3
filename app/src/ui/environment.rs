//! An environment's page: its stack's status and resources, its stack events live, its
//! release history (who, when, what, outcome, and the diff deployed), and the freeze,
//! rollback and lift-hold actions, each asking for a reason.

use super::control_fns::{
    EnvironmentData, FreezeEnvironment, LiftHold, RollbackEnvironment, UnfreezeEnvironment,
    environment_page,
};
use super::fleet::FleetByRelease;
use super::operations::{DiffTable, MarkNote, StateBadge, release_line, short_image};
use super::timeline::EnvironmentTimeline;
use super::{error_text, short_time};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;
use quarry_domain::control::{ReleaseView, StackEventView};

/// The actions of the page, each refreshing it once done.
#[derive(Clone, Copy)]
struct Actions {
    freeze: ServerAction<FreezeEnvironment>,
    unfreeze: ServerAction<UnfreezeEnvironment>,
    lift: ServerAction<LiftHold>,
    rollback: ServerAction<RollbackEnvironment>,
}

impl Actions {
    fn version(&self) -> (usize, usize, usize, usize) {
        (
            self.freeze.version().get(),
            self.unfreeze.version().get(),
            self.lift.version().get(),
            self.rollback.version().get(),
        )
    }

    /// The newest failure of any action, in words.
    fn error(&self) -> Option<String> {
        let err =
            |r: Option<Result<(), ServerFnError>>| r.and_then(Result::err).map(|e| error_text(&e));
        err(self.freeze.value().get())
            .or_else(|| err(self.unfreeze.value().get()))
            .or_else(|| err(self.lift.value().get()))
            .or_else(|| {
                self.rollback
                    .value()
                    .get()
                    .and_then(Result::err)
                    .map(|e| error_text(&e))
            })
    }
}

#[component]
pub fn EnvironmentPageView() -> impl IntoView {
    let params = use_params_map();
    let name = move || params.read().get("env").unwrap_or_default();
    let actions = Actions {
        freeze: ServerAction::new(),
        unfreeze: ServerAction::new(),
        lift: ServerAction::new(),
        rollback: ServerAction::new(),
    };
    let page = Resource::new(
        move || (name(), actions.version()),
        |(name, _)| environment_page(name),
    );
    view! {
        <Title text=move || format!("Environment {}", name())/>
        <section class="page">
            <p class="meta"><a href="/operations">"Operations"</a></p>
            <Transition fallback=|| view! { <p class="hint">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match page.await {
                        Ok(p) => view! { <Environment p actions/> }.into_any(),
                        Err(e) => view! {
                            <h1>{name()}</h1>
                            <p class="error" role="alert">{error_text(&e)}</p>
                        }.into_any(),
                    }
                })}
            </Transition>
            {move || actions.error().map(|e| view! { <p class="error" role="alert" data-testid="action-error">{e}</p> })}
        </section>
    }
}

#[component]
fn Environment(p: EnvironmentData, actions: Actions) -> impl IntoView {
    let d = p.detail;
    let env = d.environment.clone();
    let name = env.name.clone();
    let status = RwSignal::new(env.status.clone());
    let events = RwSignal::new(d.recent_events.clone());
    let releases = RwSignal::new(p.releases.clone());
    #[cfg(feature = "hydrate")]
    follow(&name, status, events, releases);
    let operate = p.can_operate;
    view! {
        <h1>"Environment "{name.clone()}</h1>
        <div class="job-status" data-testid="env-status">
            "Stack "<code>{env.stack.clone()}</code>" "
            {move || view! { <StateBadge state=status.get()/> }}
            " · drift: "<span data-testid="drift">{d.drift.clone()}</span>
            {env.upstream.clone().map(|u| view! { " · promoted from "<strong>{u}</strong> })}
        </div>
        {env.status_reason.clone().map(|r| view! { <p class="hint" data-testid="status-reason">{r}</p> })}
        <dl class="facts">
            <dt>"Artifact"</dt>
            <dd data-testid="artifact" title=env.artifact.clone().unwrap_or_default()>
                {env.artifact.as_deref().map(short_image).unwrap_or_else(|| "none yet".to_owned())}
            </dd>
            <dt>"Release"</dt><dd><code>{env.release_id.clone().unwrap_or_else(|| "–".to_owned())}</code></dd>
            <dt>"Approvals"</dt><dd>{env.approvals_required}</dd>
        </dl>
        {env.frozen.clone().map(|m| view! { <MarkNote what="frozen" mark=m/> })}
        {env.hold.clone().map(|m| view! { <MarkNote what="held" mark=m/> })}
        <Guards name=name.clone() frozen=env.frozen.is_some() held=env.hold.is_some()
            operate is_admin=p.is_admin releases=p.releases.clone() actions/>
        <h2>"Releases"</h2>
        {move || {
            let list = releases.get();
            if list.is_empty() {
                view! { <p class="empty">"Nothing deployed yet."</p> }.into_any()
            } else {
                view! { <ReleaseHistory list/> }.into_any()
            }
        }}
        <EnvironmentTimeline name=name.clone()/>
        {p.is_this_server.then(|| view! { <FleetByRelease/> })}
        <h2>"Stack events"</h2>
        {move || view! { <EventTable list=events.get()/> }}
        <h2>"Resources"</h2>
        <table class="jobs" data-testid="resources">
            <thead><tr><th>"Logical id"</th><th>"Type"</th><th>"Status"</th><th>"Physical id"</th></tr></thead>
            <tbody>
                {d.resources.into_iter().map(|r| view! {
                    <tr data-testid="resource-row">
                        <td><code>{r.logical_id}</code></td><td>{r.resource_type}</td>
                        <td><StateBadge state=r.status/></td><td class="physical">{r.physical_id}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
        {(!d.outputs.is_empty()).then(|| view! {
            <h2>"Outputs"</h2>
            <dl class="facts" data-testid="outputs">
                {d.outputs.into_iter().map(|(k, v)| view! { <dt>{k}</dt><dd><code>{v}</code></dd> }).collect_view()}
            </dl>
        })}
        {(!d.overrides.is_empty()).then(|| view! {
            <h2>"Overrides and lifted guards"</h2>
            <ul data-testid="overrides">
                {d.overrides.into_iter().map(|o| view! {
                    <li>{format!("{} by {} at {}: {}", o.action, o.by, short_time(&o.at), o.reason)}</li>
                }).collect_view()}
            </ul>
        })}
    }
}

/// Follows the environment's events: stack events go on top of the list (and a stack's
/// own event sets its status), releases replace their row.
#[cfg(feature = "hydrate")]
fn follow(
    name: &str,
    status: RwSignal<String>,
    events: RwSignal<Vec<StackEventView>>,
    releases: RwSignal<Vec<ReleaseView>>,
) {
    let env = name.to_owned();
    let fresh = super::live::Freshness::new();
    let _ = super::live::listen(
        &format!("/api/v1/environments/{name}/events"),
        &["stack", "release", super::live::OPENED],
        fresh,
        move |kind, text| match kind {
            super::live::OPENED => {
                // What happened before the stream opened (or while it was down).
                let env = env.clone();
                super::live::reread(
                    fresh,
                    move || {
                        let env = env.clone();
                        async move { environment_page(env).await.ok() }
                    },
                    move |page| {
                        status.set(page.detail.environment.status);
                        events.set(page.detail.recent_events);
                        releases.set(page.releases);
                    },
                );
            }
            "stack" => {
                if let Ok(e) = serde_json::from_str::<StackEventView>(&text) {
                    if e.resource_type == "AWS::CloudFormation::Stack" {
                        status.set(e.status.clone());
                    }
                    events.update(|list| {
                        list.insert(0, e);
                        list.truncate(super::environment::SHOWN_EVENTS);
                    });
                }
            }
            _ => {
                if let Ok(r) = serde_json::from_str::<ReleaseView>(&text) {
                    releases.update(|list| match list.iter_mut().find(|x| x.id == r.id) {
                        Some(x) => *x = r,
                        None => list.insert(0, r),
                    });
                }
            }
        },
    );
}

/// Freeze (or unfreeze), roll back, and lift the hold; each asks for a reason.
#[component]
fn Guards(
    name: String,
    frozen: bool,
    held: bool,
    operate: bool,
    is_admin: bool,
    releases: Vec<ReleaseView>,
    actions: Actions,
) -> impl IntoView {
    if !operate {
        return view! { <p class="hint" data-testid="read-only">"Operators and admins freeze, roll back and lift holds here."</p> }.into_any();
    }
    // The releases a rollback can return to: earlier ones that ran well.
    let targets: Vec<ReleaseView> = releases
        .into_iter()
        .skip(1)
        .filter(|r| {
            matches!(
                r.outcome.as_str(),
                "succeeded" | "superseded" | "rolled_back" | "no_changes"
            )
        })
        .collect();
    let (unfreeze_name, freeze_name, hold_name) = (name.clone(), name.clone(), name.clone());
    view! {
        <div class="guards" data-testid="guards">
            {if frozen {
                view! {
                    <ActionForm action=actions.unfreeze attr:class="guard-form" attr:data-testid="unfreeze-form">
                        <input type="hidden" name="name" value=unfreeze_name/>
                        <input name="reason" placeholder="Why it may move again (optional)" maxlength="500"/>
                        <button type="submit" data-testid="unfreeze">"Unfreeze"</button>
                    </ActionForm>
                }.into_any()
            } else {
                view! {
                    <ActionForm action=actions.freeze attr:class="guard-form" attr:data-testid="freeze-form">
                        <input type="hidden" name="name" value=freeze_name/>
                        <input name="reason" placeholder="Why nothing may be deployed (required)" required maxlength="500"/>
                        <button type="submit" class="danger" data-testid="freeze">"Freeze"</button>
                    </ActionForm>
                }.into_any()
            }}
            {held.then(|| view! {
                <ActionForm action=actions.lift attr:class="guard-form" attr:data-testid="lift-hold-form">
                    <input type="hidden" name="name" value=hold_name/>
                    <input name="reason" placeholder="Why promotions may land again (required)" required maxlength="500"/>
                    <button type="submit" data-testid="lift-hold">"Lift hold"</button>
                </ActionForm>
            })}
            <ActionForm action=actions.rollback attr:class="guard-form rollback" attr:data-testid="rollback-form">
                <input type="hidden" name="name" value=name/>
                <select name="to" aria-label="Release to return to">
                    <option value="">"the last good release"</option>
                    {targets.into_iter().map(|r| view! {
                        <option value=r.id.clone()>{format!("{} · {}", short_image(&r.artifact), release_line(&r))}</option>
                    }).collect_view()}
                </select>
                <input name="reason" placeholder="Why roll back (required)" required maxlength="500"/>
                <label class="check"><input type="checkbox" name="reject_artifact"/>" reject the artifact running now"</label>
                {(is_admin && frozen).then(|| view! {
                    <label class="check"><input type="checkbox" name="override_freeze"/>" override the freeze (recorded)"</label>
                })}
                <button type="submit" class="danger" data-testid="rollback">"Roll back"</button>
            </ActionForm>
        </div>
    }.into_any()
}

#[component]
fn ReleaseHistory(list: Vec<ReleaseView>) -> impl IntoView {
    view! {
        <table class="jobs releases" data-testid="releases">
            <thead><tr><th>"When"</th><th>"Kind"</th><th>"Artifact"</th><th>"Who"</th><th>"Outcome"</th><th>"Diff deployed"</th></tr></thead>
            <tbody>
                {list.into_iter().map(|r| {
                    let changes = r.diff.len();
                    view! {
                        <tr data-testid="release-row" data-kind=r.kind.clone() data-outcome=r.outcome.clone()>
                            <td>{short_time(&r.started_at)}</td>
                            <td>{r.kind.clone()}
                                {r.promotion_id.clone().map(|p| view! { " "<a href=format!("/operations/promotions/{p}")>"(promotion)"</a> })}
                            </td>
                            <td title=r.artifact.clone()><code>{short_image(&r.artifact)}</code></td>
                            <td>{r.deployed_by.clone()}</td>
                            <td><StateBadge state=r.outcome.clone()/>
                                {r.detail.clone().map(|d| view! { <div class="hint">{d}</div> })}</td>
                            <td>
                                <details>
                                    <summary>{format!("{changes} change{}", if changes == 1 { "" } else { "s" })}</summary>
                                    <DiffTable rows=r.diff.clone()/>
                                </details>
                            </td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
}

/// How many stack events a page keeps and shows (a long deploy streams more).
pub const SHOWN_EVENTS: usize = 100;

#[component]
pub fn EventTable(list: Vec<StackEventView>) -> impl IntoView {
    if list.is_empty() {
        return view! { <p class="empty" data-testid="no-events">"No stack events."</p> }
            .into_any();
    }
    view! {
        <table class="jobs events" data-testid="stack-events">
            <thead><tr><th>"When"</th><th>"Logical id"</th><th>"Type"</th><th>"Status"</th><th>"Reason"</th></tr></thead>
            <tbody>
                {list.into_iter().take(SHOWN_EVENTS).map(|e| view! {
                    <tr data-testid="stack-event">
                        <td>{short_time(&e.at)}</td><td><code>{e.logical_id}</code></td><td>{e.resource_type}</td>
                        <td><StateBadge state=e.status/></td><td>{e.reason}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }.into_any()
}
