//! A job's history on its page: where its result came from (provenance) and every
//! attempt (worker, release, times, outcome), refreshed as the job changes.

use super::operations::short_image;
use super::server_fns::job_attempts;
use super::{error_text, short_time};
use leptos::prelude::*;
use quarry_domain::{JobAttempt, JobStatus, Provenance};

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

/// The attempts table; `status` refetches it whenever the job changes state.
#[component]
pub fn AttemptsView(id: String, status: Memo<JobStatus>) -> impl IntoView {
    let attempts = Resource::new(
        move || (id.clone(), status.get()),
        |(id, _)| job_attempts(id),
    );
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
