//! The system page for engineering leads: the engine's graphs over a chosen range,
//! read from the metrics port.

use super::charts::LineChart;
use super::error_text;
use super::server_fns::system_graphs;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

/// The ranges offered: (query value, minutes, label).
const RANGES: [(&str, u32, &str); 3] = [
    ("15m", 15, "15 min"),
    ("1h", 60, "1 hour"),
    ("24h", 1440, "24 hours"),
];

#[component]
pub fn SystemPage() -> impl IntoView {
    let query = use_query_map();
    let range = move || query.read().get("range").unwrap_or_else(|| "1h".to_owned());
    let minutes = move || RANGES.iter().find(|r| r.0 == range()).map_or(60, |r| r.1);
    let graphs = Resource::new(minutes, system_graphs);
    view! {
        <Title text="System"/>
        <section class="page">
            <h1>"System"</h1>
            <nav class="ranges" data-testid="ranges">
                "Last: "
                {RANGES.into_iter().map(|(value, _, label)| view! {
                    <a href={format!("/system?range={value}")} class:active={move || range() == value}>{label}</a>
                }).collect_view()}
            </nav>
            <Transition fallback=|| view! { <p class="hint">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match graphs.await {
                        Ok(g) => view! {
                            <p class="meta">"Environment "<strong>{g.environment.clone()}</strong></p>
                            <div class="graphs">
                                {g.graphs.into_iter().map(|graph| view! {
                                    <LineChart title=graph.title unit=graph.unit series=graph.series from=g.from to=g.to/>
                                }).collect_view()}
                            </div>
                        }.into_any(),
                        Err(e) => view! { <p class="error" role="alert">{error_text(&e)}</p> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}
