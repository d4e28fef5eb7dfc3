//! The fleet by release, live: the release this server's environment runs now and
//! every live worker under its release, with the job it runs. After a deploy the old
//! release's workers show as draining until the last one has finished its job and
//! exited. Shown on the system page and on the page of this server's environment.

use super::error_text;
use super::operations::short_image;
use super::server_fns::fleet_releases;
use leptos::prelude::*;
use quarry_domain::ReleaseFleet;

/// How often the table is read again while the page is open.
#[cfg(feature = "hydrate")]
const REFRESH: std::time::Duration = std::time::Duration::from_secs(2);

#[component]
pub fn FleetByRelease() -> impl IntoView {
    let tick = RwSignal::new(0_u32);
    #[cfg(feature = "hydrate")]
    {
        if let Ok(handle) = set_interval_with_handle(move || tick.update(|n| *n += 1), REFRESH) {
            on_cleanup(move || handle.clear());
        }
    }
    let fleet = Resource::new(move || tick.get(), |_| fleet_releases());
    view! {
        <h2>"Workers by release"</h2>
        <Transition fallback=|| view! { <p class="hint">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match fleet.await {
                    Ok(f) => view! {
                        <p class="meta" data-testid="current-release" data-release=f.current_release.clone().unwrap_or_default()>
                            "Current release: "
                            {f.current_release.as_deref().map(short_image).unwrap_or_else(|| "none declared yet".to_owned())}
                        </p>
                        <ReleaseTable groups=f.releases/>
                    }.into_any(),
                    Err(e) => view! { <p class="error" role="alert">{error_text(&e)}</p> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn ReleaseTable(groups: Vec<ReleaseFleet>) -> impl IntoView {
    if groups.is_empty() {
        return view! { <p class="empty" data-testid="no-workers">"No worker is running."</p> }
            .into_any();
    }
    view! {
        <table class="jobs" data-testid="fleet-releases">
            <thead><tr><th>"Release"</th><th>"State"</th><th>"Worker"</th><th>"Jobs"</th></tr></thead>
            <tbody>
                {groups.into_iter().flat_map(|g| {
                    let label = g.release.as_deref().map(short_image).unwrap_or_else(|| "starting".to_owned());
                    let role = if g.current { "current" } else if g.release.is_some() { "draining" } else { "starting" };
                    g.workers.into_iter().map(move |w| view! {
                        <tr data-testid="fleet-worker" data-role=role>
                            <td title=g.release.clone().unwrap_or_default()>{label.clone()}" "
                                <span class=format!("status {role}")>{role}</span></td>
                            <td>{w.state}</td>
                            <td><code>{w.id}</code></td>
                            <td>{w.job_ids.into_iter().map(|j| view! {
                                <a href=format!("/jobs/{j}")><code>{j.chars().take(8).collect::<String>()}</code></a>" "
                            }).collect_view()}</td>
                        </tr>
                    }).collect::<Vec<_>>()
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}
