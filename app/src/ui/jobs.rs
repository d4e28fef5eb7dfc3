//! The jobs list and a job's page, whose status follows the server live (server-sent
//! events) without reloading.

use super::job_history::{AttemptsView, ProvenanceView, RerunsView};
use super::results::ResultView;
use super::server_fns::{CancelJob, JobRow, job_detail, list_jobs};
use super::{error_text, short_time};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};
use quarry_domain::{JobEvent, JobStatus, Waiting};

/// `3.2 s`, `4 min 05 s`, `1 h 02 min`.
pub fn duration_text(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.1} s")
    } else if secs < 3600.0 {
        let s = secs.round() as u64;
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        let m = (secs / 60.0).round() as u64;
        format!("{} h {:02} min", m / 60, m % 60)
    }
}

fn kind_of(analysis: &quarry_domain::Analysis) -> String {
    analysis.kind().to_owned()
}

#[component]
fn StatusBadge(status: JobStatus) -> impl IntoView {
    view! { <span class=format!("status {status}") data-testid="status">{status.to_string()}</span> }
}

#[component]
pub fn JobsPage() -> impl IntoView {
    let query = use_query_map();
    let status = move || query.read().get("status").filter(|s| !s.is_empty());
    let jobs = Resource::new(status, list_jobs);
    view! {
        <Title text="Jobs"/>
        <section class="page">
            <h1>"Jobs"</h1>
            <form method="get" action="/jobs" class="toolbar filters">
                <label for="status">"Status"</label>
                <select id="status" name="status">
                    <option value="">"all"</option>
                    {JobStatus::ALL.into_iter().map(|s| view! {
                        <option value={s.as_str()} selected={move || status().as_deref() == Some(s.as_str())}>{s.as_str()}</option>
                    }).collect_view()}
                </select>
                <button type="submit">"Filter"</button>
            </form>
            <Transition fallback=|| view! { <p class="hint">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match jobs.await {
                        Ok(list) if list.is_empty() => view! {
                            <p class="empty">"No jobs here. Open a dataset to launch an analysis."</p>
                        }.into_any(),
                        Ok(list) => view! { <JobTable list/> }.into_any(),
                        Err(e) => view! { <p class="error" role="alert">{error_text(&e)}</p> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn JobTable(list: Vec<JobRow>) -> impl IntoView {
    view! {
        <table class="jobs">
            <thead><tr><th>"Job"</th><th>"Dataset"</th><th>"Analysis"</th><th>"Status"</th>
                <th class="num">"Attempts"</th><th class="num">"Duration"</th><th>"Submitted"</th></tr></thead>
            <tbody>
                {list.into_iter().map(|r| {
                    let j = r.job;
                    view! {
                        <tr data-testid="job-row" data-status=j.status.to_string()>
                            <td><a href=format!("/jobs/{}", j.id)><code>{j.id.chars().take(8).collect::<String>()}</code></a></td>
                            <td>{r.dataset_name.unwrap_or_else(|| "(deleted)".to_owned())}</td>
                            <td>{kind_of(&j.analysis)}</td>
                            <td><StatusBadge status=j.status/></td>
                            <td class="num">{j.attempts}</td>
                            <td class="num">{r.duration_secs.map(duration_text).unwrap_or_default()}</td>
                            <td><time datetime=j.created_at.clone()>{short_time(&j.created_at)}</time></td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
}

/// Follows the job's events into `live` until the job has finished.
#[cfg(feature = "hydrate")]
fn follow(id: &str, live: RwSignal<Option<JobEvent>>) {
    let stream = StoredValue::new_local(None::<super::live::Live>);
    // Each connection starts with the job's current state: nothing to read again.
    let opened = super::live::listen(
        &format!("/api/v1/jobs/{id}/events"),
        &["job"],
        super::live::Freshness::new(),
        move |_, text| {
            let Ok(event) = serde_json::from_str::<JobEvent>(&text) else {
                return;
            };
            let finished = event.job.status.is_terminal();
            live.set(Some(event));
            if finished && let Some(s) = stream.get_value() {
                s.close();
            }
        },
    );
    stream.set_value(opened);
}

#[component]
pub fn JobPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").unwrap_or_default();
    let detail = Resource::new(id, job_detail);
    view! {
        <Title text="Job"/>
        <section class="page">
            <Suspense fallback=|| view! { <p class="hint">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match detail.await {
                        Ok(initial) => view! { <JobView initial/> }.into_any(),
                        Err(e) => view! {
                            <h1>"Job"</h1>
                            <p class="error" role="alert">{error_text(&e)}</p>
                        }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

#[component]
fn JobView(initial: JobEvent) -> impl IntoView {
    let live = RwSignal::new(None::<JobEvent>);
    let id = initial.job.id.clone();
    #[cfg(feature = "hydrate")]
    if !initial.job.status.is_terminal() {
        follow(&id, live);
    }
    let fallback = initial.clone();
    let current = Memo::new(move |_| live.get().unwrap_or_else(|| fallback.clone()));
    let status = Memo::new(move |_| current.with(|e| e.job.status));
    let cancel = ServerAction::<CancelJob>::new();
    let analysis = initial.job.analysis.clone();
    let dataset_id = initial.job.dataset_id.clone();
    let kind = kind_of(&analysis);
    let result_id = id.clone();
    let attempts_id = id.clone();
    let rerun_source = initial.job.clone();
    view! {
        <h1>"Job "<code>{id.chars().take(8).collect::<String>()}</code>" · "{kind.clone()}</h1>
        <p class="meta">
            <a href=format!("/datasets/{dataset_id}")>"Dataset"</a>" · "
            <a href="/jobs">"All jobs"</a>
        </p>
        <div class="job-status" data-testid="job-status" data-status={move || status.get().to_string()}>
            {move || view! { <StatusBadge status=status.get()/> }}
            {move || {
                let e = current.get();
                let percent = (e.job.progress * 100.0).round();
                (e.job.status == JobStatus::Running).then(|| view! {
                    <progress max="100" value={percent} data-testid="progress">{format!("{percent}%")}</progress>
                    <span class="hint">{format!("{percent}%")}</span>
                })
            }}
            {move || current.get().waiting.map(|w| view! { <WaitingInfo w/> })}
        </div>
        <dl class="facts">
            {move || {
                let j = current.get().job;
                view! {
                    {match j.environment.clone() {
                        None => view! { <dt>"Attempts"</dt><dd data-testid="attempts">{j.attempts}</dd> }.into_any(),
                        Some(env) => view! { <dt>"Ran in"</dt><dd data-testid="ran-in">{env}</dd> }.into_any(),
                    }}
                    <dt>"Submitted"</dt><dd>{short_time(&j.created_at)}</dd>
                    <dt>"Started"</dt><dd>{j.started_at.as_deref().map(short_time).unwrap_or_else(|| "–".into())}</dd>
                    <dt>"Finished"</dt><dd>{j.finished_at.as_deref().map(short_time).unwrap_or_else(|| "–".into())}</dd>
                }
            }}
        </dl>
        {move || current.get().job.error.map(|e| view! {
            <div class="error" role="alert" data-testid="job-error">
                <strong>{if current.get().job.dead_letter { "Gave up: " } else { "Last attempt failed: " }}</strong>{e}
            </div>
        })}
        <details class="analysis"><summary>"Analysis"</summary>
            <pre>{serde_json::to_string_pretty(&analysis).unwrap_or_default()}</pre>
        </details>
        <Show when=move || !status.get().is_terminal()>
            <button type="button" class="danger" data-testid="cancel" on:click={
                let id = id.clone();
                move |_| { cancel.dispatch(CancelJob { id: id.clone() }); }
            }>"Cancel"</button>
        </Show>
        {move || cancel.value().get().and_then(Result::err).map(|e| view! { <p class="error" role="alert">{error_text(&e)}</p> })}
        <Show when=move || status.get() == JobStatus::Succeeded>
            <ResultView id=result_id.clone() analysis=initial.job.analysis.clone()/>
        </Show>
        {move || current.get().job.provenance.map(|p| view! { <ProvenanceView p/> })}
        <AttemptsView id=attempts_id.clone() status elsewhere=initial.job.environment.clone()/>
        <RerunsView job=rerun_source status/>
    }
}

#[component]
fn WaitingInfo(w: Waiting) -> impl IntoView {
    let ahead = w.position.saturating_sub(1);
    let when = match w.estimated_start_secs {
        Some(0) => "should start within seconds".to_owned(),
        Some(s) => format!("should start in about {}", duration_text(s as f64)),
        None => "no estimate yet: no job has finished recently".to_owned(),
    };
    view! {
        <div class="waiting" data-testid="waiting">
            <strong>"Why is it waiting? "</strong>
            {format!(
                "{} ahead in the queue; {} of at most {} workers running, {} starting; {}.",
                if ahead == 0 { "no job".to_owned() } else if ahead == 1 { "1 job".to_owned() } else { format!("{ahead} jobs") },
                w.workers_running, w.max_workers, w.workers_starting, when
            )}
            {w.reason.clone().map(|r| view! { <p class="hint" data-testid="waiting-reason">{r}</p> })}
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration_text(3.21), "3.2 s");
        assert_eq!(duration_text(245.0), "4 min 05 s");
        assert_eq!(duration_text(3725.0), "1 h 02 min");
    }
}
