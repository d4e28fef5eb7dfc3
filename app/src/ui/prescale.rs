//! The pre-scaler on the system page: whether it is on, the orchestrator's last
//! decision (which explains a pre-scale), and the learned week: jobs expected per
//! weekday and hour (UTC), each cell shaded by how many, its peak in the tooltip.

use super::error_text;
use super::server_fns::pre_scaling;
use leptos::prelude::*;
use quarry_domain::PreScaling;

const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

#[component]
pub fn PreScalingPanel() -> impl IntoView {
    let data = Resource::new(|| (), |()| pre_scaling());
    view! {
        <h2>"Pre-scaling"</h2>
        <Transition fallback=|| view! { <p class="hint">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(v) => {
                        let p = v.pre_scaling;
                        view! {
                            <p class="meta" data-testid="prescale-state" data-enabled=p.enabled.to_string()>
                                {if p.enabled {
                                    format!(
                                        "On: workers start {} s before an hour expecting {} or more jobs at once, and wait {} s into it for work.",
                                        p.lead_secs, p.min_workers, p.patience_secs
                                    )
                                } else {
                                    "Off (fleet.prescale.enabled): the profile below is what it would use.".to_owned()
                                }}
                                " Learned "{p.learned_at.clone()}" from "{p.jobs}" jobs of the last "{p.history_weeks}
                                " weeks; median run time "{format!("{:.0}", p.median_secs)}" s."
                            </p>
                            <p class="meta" data-testid="last-decision">
                                "Last decision: "
                                {v.last_decision.map_or_else(|| "none yet".to_owned(), |d| format!("{} — {}", d.at, d.reason))}
                            </p>
                            <WeekTable p=p/>
                        }.into_any()
                    }
                    Err(e) => view! { <p class="error" role="alert">{error_text(&e)}</p> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn WeekTable(p: PreScaling) -> impl IntoView {
    if p.hours.is_empty() {
        return view! { <p class="empty" data-testid="prescale-empty">"No job history yet."</p> }
            .into_any();
    }
    let top = p.hours.iter().map(|h| h.arrivals).fold(1.0_f64, f64::max);
    let cell = move |day: u8, hour: u8| {
        p.hours
            .iter()
            .find(|h| h.weekday == day && h.hour == hour)
            .cloned()
    };
    view! {
        <table class="prescale" data-testid="prescale-week">
            <thead><tr><th>"UTC"</th>{(0..24).map(|h| view! { <th>{format!("{h:02}")}</th> }).collect_view()}</tr></thead>
            <tbody>
                {(0..7u8).map(|day| view! {
                    <tr>
                        <th>{WEEKDAYS[day as usize]}</th>
                        {(0..24u8).map(|hour| match cell(day, hour) {
                            Some(h) => {
                                let shade = (h.arrivals / top * 100.0).round();
                                view! {
                                    <td data-testid="prescale-hour" data-weekday=day data-hour=hour data-arrivals=h.arrivals
                                        style=format!("background: color-mix(in srgb, var(--accent) {shade}%, transparent)")
                                        title=format!("{} {hour:02}:00: {:.1} jobs expected, {:.1} at once at the peak", WEEKDAYS[day as usize], h.arrivals, h.peak)>
                                        {format!("{:.0}", h.arrivals)}
                                    </td>
                                }.into_any()
                            }
                            None => view! { <td></td> }.into_any(),
                        }).collect_view()}
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}
