//! An environment's timeline on its page: job health (throughput, failure rate, p95
//! duration) over one range, each chart with the environment's deploys, promotions and
//! rollbacks marked at the same times, so a change in job health lines up with the
//! release that caused it.

use super::charts::LineChart;
use super::control_fns::environment_timeline;
use super::error_text;
use leptos::prelude::*;

/// The ranges offered: (minutes, label).
const RANGES: [(u32, &str); 3] = [(60, "1 hour"), (360, "6 hours"), (1440, "24 hours")];

#[component]
pub fn EnvironmentTimeline(name: String) -> impl IntoView {
    let minutes = RwSignal::new(360_u32);
    let timeline = Resource::new(
        move || (name.clone(), minutes.get()),
        |(name, minutes)| environment_timeline(name, minutes),
    );
    view! {
        <h2>"Timeline"</h2>
        <nav class="ranges" data-testid="timeline-ranges">
            "Last: "
            {RANGES.into_iter().map(|(m, label)| view! {
                <button type="button" class="link" class:active=move || minutes.get() == m
                    on:click=move |_| minutes.set(m)>{label}</button>
            }).collect_view()}
        </nav>
        <Transition fallback=|| view! { <p class="hint">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match timeline.await {
                    Ok(t) => view! {
                        <p class="meta" data-testid="timeline-origin">
                            {format!("{} release events in this range · series from {}", t.markers.len(), t.origin)}
                        </p>
                        {t.unavailable.clone().map(|why| view! { <p class="error" role="alert">{why}</p> })}
                        <div class="timeline" data-testid="timeline" data-markers=t.markers.len()>
                            {t.graphs.into_iter().map(|g| view! {
                                <LineChart title=g.title unit=g.unit series=g.series from=t.from to=t.to markers=t.markers.clone()/>
                            }).collect_view()}
                        </div>
                    }.into_any(),
                    Err(e) => view! { <p class="error" role="alert">{error_text(&e)}</p> }.into_any(),
                }
            })}
        </Transition>
    }
}
