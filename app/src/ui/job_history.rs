//! A job's history on its page: where its result came from (provenance), every
//! attempt (worker, release, times, outcome), refreshed as the job changes, and its
//! re-runs on another release: a button that re-runs it on the release the workers
//! run now, the re-runs made, and on a re-run's page how its result compares with the
//! original's.

use super::gate::Differences;
use super::operations::short_image;
use super::server_fns::{RerunJob, job_attempts, job_reruns};
use super::{error_text, short_time};
use leptos::prelude::*;
use leptos_router::hooks::use_navigate;
use quarry_domain::{Job, JobAttempt, JobStatus, Provenance};

/// The release as a short label: an image by digest shortened, a build id as is.
fn release_label(release: &str) -> String {
    short_image(release)
}

#[component]
pub fn ProvenanceView(p: Provenance) -> impl IntoView {
    let input = p.dataset.clone();
    let ingest = input
        .ingest
        .as_ref()
        .and_then(|i| serde_json::to_string(i).ok())
        .unwrap_or_else(|| "–".to_owned());
    view! {
        <section class="provenance" data-testid="provenance">
            <h2>"Provenance"</h2>
            <dl class="facts">
                <dt>"Release"</dt>
                <dd data-testid="provenance-release" title=p.release.clone()>{release_label(&p.release)}</dd>
                <dt>"Image"</dt>
                <dd title=p.image.clone().unwrap_or_default()>
                    {p.image.as_deref().map(short_image).unwrap_or_else(|| "none (embedded)".to_owned())}
                </dd>
                <dt>"Engine"</dt><dd data-testid="provenance-engine">{p.engine.clone()}</dd>
                <dt>"Worker"</dt><dd><code>{p.worker.clone()}</code>{format!(" · attempt {}", p.attempt)}</dd>
                <dt>"Input"</dt>
                <dd>
                    <a href=format!("/datasets/{}", input.id)>{input.format.to_string()}</a>
                    {format!(", {} rows, read from the {}", input.rows,
                        if input.read == "typed_copy" { "typed copy" } else { "original" })}
                </dd>
                <dt>"Input SHA-256"</dt>
                <dd><code data-testid="provenance-sha256">{input.sha256.clone().unwrap_or_else(|| "not recorded".to_owned())}</code></dd>
                <dt>"Read with"</dt><dd><code>{ingest}</code></dd>
                <dt>"Computed"</dt><dd>{short_time(&p.computed_at)}</dd>
            </dl>
        </section>
    }
}

/// The attempts table; `status` refetches it whenever the job changes state. A job
/// that ran in another environment (`elsewhere`) has its attempts there.
#[component]
pub fn AttemptsView(
    id: String,
    status: Memo<JobStatus>,
    elsewhere: Option<String>,
) -> impl IntoView {
    let attempts = Resource::new(
        move || (id.clone(), status.get()),
        |(id, _)| job_attempts(id),
    );
    if let Some(env) = elsewhere {
        return view! {
            <h2>"Attempts"</h2>
            <p class="hint" data-testid="attempts-elsewhere">
                {format!("It runs in {env}, through {env}'s API: its attempts are in {env}'s records.")}
            </p>
        }
        .into_any();
    }
    view! {
        <h2>"Attempts"</h2>
        <Transition fallback=|| view! { <p class="hint">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match attempts.await {
                    Ok(list) if list.is_empty() => view! {
                        <p class="empty" data-testid="no-attempts">"Not started yet."</p>
                    }.into_any(),
                    Ok(list) => view! { <AttemptTable list/> }.into_any(),
                    Err(e) => view! { <p class="error" role="alert">{error_text(&e)}</p> }.into_any(),
                }
            })}
        </Transition>
    }
    .into_any()
}

#[component]
fn AttemptTable(list: Vec<JobAttempt>) -> impl IntoView {
    view! {
        <table class="jobs" data-testid="attempts-table">
            <thead><tr><th class="num">"#"</th><th>"Worker"</th><th>"Release"</th><th>"Started"</th>
                <th>"Ended"</th><th>"Outcome"</th><th>"Error"</th></tr></thead>
            <tbody>
                {list.into_iter().map(|a| {
                    let outcome = a.outcome.clone().unwrap_or_else(|| "running".to_owned());
                    view! {
                        <tr data-testid="attempt-row" data-outcome=outcome.clone()>
                            <td class="num">{a.attempt}</td>
                            <td><code>{a.worker.unwrap_or_default()}</code></td>
                            <td title=a.release.clone().unwrap_or_default()>
                                {a.release.as_deref().map(release_label).unwrap_or_else(|| "–".to_owned())}
                            </td>
                            <td>{short_time(&a.started_at)}</td>
                            <td>{a.ended_at.as_deref().map(short_time).unwrap_or_else(|| "–".to_owned())}</td>
                            <td><span class=format!("status {outcome}")>{outcome.replace('_', " ")}</span></td>
                            <td>{a.error.unwrap_or_default()}</td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
}

/// Re-running the job on the release the workers run now, its re-runs, and for a
/// re-run the comparison with the original. Read again when the job changes state.
#[component]
pub fn RerunsView(job: Job, status: Memo<JobStatus>) -> impl IntoView {
    let id = job.id.clone();
    let info = Resource::new(move || (id.clone(), status.get()), |(id, _)| job_reruns(id));
    let rerun = ServerAction::<RerunJob>::new();
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(id)) = rerun.value().get() {
            navigate(&format!("/jobs/{id}"), Default::default());
        }
    });
    let ran_on = job.provenance.as_ref().map(|p| p.release.clone());
    let original = job.rerun_of.clone();
    let job_id = job.id.clone();
    view! {
        <section class="reruns" data-testid="reruns">
            <h2>"Re-runs"</h2>
            {original.clone().map(|o| view! {
                <p class="meta" data-testid="rerun-of">"A re-run of "
                    <a href=format!("/jobs/{o}")><code>{o.chars().take(8).collect::<String>()}</code></a>
                    {job.required_release.clone().map(|r| format!(", on release {}", release_label(&r)))}
                    {job.environment.clone().map(|env| view! {
                        ", run in "<strong data-testid="rerun-environment">{env}</strong>
                        " (the environment that runs that release), its result brought back here"
                    })}
                </p>
            })}
            <Transition fallback=|| view! { <p class="hint">"Loading…"</p> }>
                {move || {
                    let ran_on = ran_on.clone();
                    let job_id = job_id.clone();
                    let original = original.clone();
                    Suspend::new(async move {
                        match info.await {
                            Ok(r) => {
                                let terminal = status.get_untracked().is_terminal();
                                let same = ran_on.as_deref() == Some(r.current_release.as_str());
                                view! {
                                    {original.is_some().then(|| match r.comparison.clone() {
                                        Some(c) if c.identical => view! {
                                            <p class="notice" data-testid="rerun-identical">
                                                {format!("Identical to the original's result: {} rows in canonical order, floats within a relative 1e-9.", c.actual_rows)}
                                            </p>
                                        }.into_any(),
                                        Some(c) => view! {
                                            <p class="error" data-testid="rerun-differs">"The result differs from the original's (expected: the original; candidate: this re-run)."</p>
                                            <Differences cmp=c/>
                                        }.into_any(),
                                        None => view! { <p class="hint">"Compared with the original once both have succeeded."</p> }.into_any(),
                                    })}
                                    {terminal.then(|| view! {
                                        <p class="hint">{if same {
                                            format!("The workers run release {} now, the one this result was computed on: a re-run checks that it computes the same again.", release_label(&r.current_release))
                                        } else {
                                            format!("The workers run release {} now.", release_label(&r.current_release))
                                        }}</p>
                                        <button type="button" data-testid="rerun" on:click={
                                            let id = job_id.clone();
                                            move |_| { rerun.dispatch(RerunJob { id: id.clone(), release: None }); }
                                        }>{format!("Re-run on release {}", release_label(&r.current_release))}</button>
                                        {r.elsewhere.iter().map(|(env, release)| {
                                            let id = job_id.clone();
                                            let wanted = release.clone();
                                            view! {
                                                " "<button type="button" data-testid="rerun-elsewhere" on:click=move |_| {
                                                    rerun.dispatch(RerunJob { id: id.clone(), release: Some(wanted.clone()) });
                                                }>{format!("Re-run on release {} (runs in {env})", release_label(release))}</button>
                                            }
                                        }).collect_view()}
                                    })}
                                    {(!r.reruns.is_empty()).then(|| view! {
                                        <ul class="rerun-list" data-testid="rerun-list">
                                            {r.reruns.into_iter().map(|j| view! {
                                                <li><a href=format!("/jobs/{}", j.id)><code>{j.id.chars().take(8).collect::<String>()}</code></a>
                                                    {format!(" · {} · {}{}", j.status,
                                                        j.required_release.as_deref().map(release_label).unwrap_or_default(),
                                                        j.environment.as_deref().map(|e| format!(" · in {e}")).unwrap_or_default())}
                                                </li>
                                            }).collect_view()}
                                        </ul>
                                    })}
                                }.into_any()
                            }
                            Err(e) => view! { <p class="error">{error_text(&e)}</p> }.into_any(),
                        }
                    })
                }}
            </Transition>
            {move || rerun.value().get().and_then(Result::err).map(|e| view! {
                <p class="error" role="alert" data-testid="rerun-error">{error_text(&e)}</p>
            })}
        </section>
    }
}
