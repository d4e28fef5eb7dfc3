//! The system page for engineering leads: the engine's graphs of one environment over a
//! chosen range. The environment picker offers `local` (this server's own metrics
//! port) and every stack environment (its CloudWatch series); both choices live in the
//! URL (`/system?env=staging&range=1h`), so a view can be shared and the links work
//! without JavaScript.

use super::charts::LineChart;
use super::error_text;
use super::fleet::FleetByRelease;
use super::prescale::PreScalingPanel;
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

/// The environment shown when the URL names none.
const LOCAL: &str = quarry_domain::environments::LOCAL;

/// The page's address for an environment and a range.
fn href(env: &str, range: &str) -> String {
    format!("/system?env={env}&range={range}")
}

#[component]
pub fn SystemPage() -> impl IntoView {
    let query = use_query_map();
    let range = move || query.read().get("range").unwrap_or_else(|| "1h".to_owned());
    let env = move || {
        query
            .read()
            .get("env")
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| LOCAL.to_owned())
    };
    let minutes = move || RANGES.iter().find(|r| r.0 == range()).map_or(60, |r| r.1);
    let graphs = Resource::new(
        move || (minutes(), env()),
        |(minutes, env)| system_graphs(minutes, Some(env)),
    );
    view! {
        <Title text="System"/>
        <section class="page">
            <h1>"System"</h1>
            <nav class="ranges" data-testid="ranges">
                "Last: "
                {RANGES.into_iter().map(|(value, _, label)| view! {
                    <a href=move || href(&env(), value) class:active={move || range() == value}>{label}</a>
                }).collect_view()}
            </nav>
            <Transition fallback=|| view! { <p class="hint">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match graphs.await {
                        Ok(g) => view! {
                            <nav class="ranges" data-testid="environments" aria-label="Environment">
                                "Environment: "
                                {g.environments.iter().map(|name| {
                                    let active = *name == g.environment;
                                    view! {
                                        <a href=href(name, &range()) data-testid=format!("env-{name}")
                                            class:active=active aria-current=active.then_some("page")>{name.clone()}</a>
                                    }
                                }).collect_view()}
                            </nav>
                            <p class="meta" data-testid="origin" data-environment=g.environment.clone()>
                                "Environment "<strong>{g.environment.clone()}</strong>" · "{g.origin.clone()}
                            </p>
                            {g.unavailable.clone().map(|why| view! {
                                <p class="error" role="alert" data-testid="metrics-unavailable">{why}</p>
                            })}
                            <div class="graphs">
                                {g.graphs.into_iter().map(|graph| view! {
                                    <LineChart title=graph.title unit=graph.unit series=graph.series from=g.from to=g.to/>
                                }).collect_view()}
                            </div>
                            {(g.environment == LOCAL).then(|| view! { <FleetByRelease/><PreScalingPanel/> })}
                        }.into_any(),
                        Err(e) => view! {
                            <p class="error" role="alert">{error_text(&e)}</p>
                            <p><a href=href(LOCAL, &range()) data-testid="env-local">"Show this server's graphs"</a></p>
                        }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}
