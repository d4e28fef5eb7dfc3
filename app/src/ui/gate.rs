//! A promotion's reference gate on its page: every pinned reference analysis run on
//! the candidate, with its state; for one whose result differed, the first differing
//! rows side by side (expected above, the candidate's below); and, while the gate
//! blocks, an admin's override with a reason.

use super::control_fns::OverrideGate;
use super::operations::{StateBadge, short_image};
use super::results::cell_text;
use super::short_time;
use leptos::prelude::*;
use quarry_domain::gate::{Comparison, GateCheckView, GateView};

#[component]
pub fn GateSection(
    #[prop(into)] gate: Signal<GateView>,
    id: String,
    is_admin: bool,
    open: Signal<bool>,
    overriding: ServerAction<OverrideGate>,
) -> impl IntoView {
    let status = Memo::new(move |_| gate.with(|g| g.status.clone()));
    let id = StoredValue::new(id);
    view! {
        <h2>"Reference analyses"</h2>
        <div class="gate" data-testid="gate" data-gate=move || status.get()>
            {move || {
                let g = gate.get();
                if g.status == "none" {
                    return view! {
                        <p class="hint" data-testid="gate-none">
                            "No reference analyses were pinned when this promotion was requested: nothing was checked. Pin one from a job that ran on production (POST /api/v1/references)."
                        </p>
                    }.into_any();
                }
                view! {
                    <p class="meta">
                        <StateBadge state=g.status.clone()/>
                        " on release "<code title=g.release.clone()>{short_image(&g.release)}</code>
                        ": each pinned analysis ran on the candidate and its result was compared with production's, rows in canonical order, floats within a relative 1e-9."
                    </p>
                    {g.override_.clone().map(|m| view! {
                        <p class="guard" data-testid="gate-override">
                            <strong>"Overridden"</strong>" by "{m.by}" at "{short_time(&m.at)}": "{m.reason}
                        </p>
                    })}
                    <ul class="checks">
                        {g.checks.into_iter().map(|c| view! { <CheckItem c/> }).collect_view()}
                    </ul>
                }.into_any()
            }}
            <Show when=move || is_admin && open.get() && status.get() == "blocked">
                <ActionForm action=overriding attr:class="override" attr:data-testid="override-form">
                    <input type="hidden" name="id" value=id.get_value()/>
                    <textarea name="reason" required maxlength="2000"
                        placeholder="Why this promotion may go ahead although a result differs (recorded)"></textarea>
                    <button type="submit" class="danger" data-testid="override-gate">"Override the gate"</button>
                </ActionForm>
            </Show>
        </div>
    }
}

#[component]
fn CheckItem(c: GateCheckView) -> impl IntoView {
    let analysis = c.analysis.to_string();
    view! {
        <li data-testid="gate-check" data-status=c.status.clone()>
            <StateBadge state=c.status.clone()/>" "<strong>{c.name.clone()}</strong>
            " · "<code class="analysis">{analysis}</code>
            {match (c.job_id.clone(), c.environment.clone()) {
                (Some(j), None) => Some(view! { " · "<a href=format!("/jobs/{j}")>"the candidate's job"</a> }.into_any()),
                (j, Some(env)) => Some(view! {
                    " · "<span data-testid="check-environment">{format!("ran in {env}")}
                    {j.map(|j| format!(" (job {j} there)"))}</span>
                }.into_any()),
                (None, None) => None,
            }}
            {c.error.clone().map(|e| view! { <p class="error" data-testid="check-error">{e}</p> })}
            {c.comparison.clone().filter(|cmp| !cmp.identical).map(|cmp| view! { <Differences cmp/> })}
        </li>
    }
}

/// The first differing rows: for each, the expected row and the candidate's.
#[component]
pub(super) fn Differences(cmp: Comparison) -> impl IntoView {
    let summary = format!(
        "{} of {} rows differ (the candidate has {} rows).",
        cmp.differing_rows, cmp.expected_rows, cmp.actual_rows
    );
    let width = cmp.columns.len();
    let row = move |values: Option<Vec<serde_json::Value>>| match values {
        Some(v) => v
            .iter()
            .map(|x| view! { <td>{cell_text(x)}</td> })
            .collect_view()
            .into_any(),
        None => view! { <td colspan=width.max(1) class="hint">"no such row"</td> }.into_any(),
    };
    view! {
        <div class="differences" data-testid="differences">
            {cmp.schema_difference.clone().map(|s| view! { <p class="error" data-testid="schema-difference">{s}</p> })}
            <p class="hint">{summary}</p>
            {(!cmp.first_differences.is_empty()).then(|| view! {
                <table class="data diff-rows" data-testid="differing-rows">
                    <thead><tr><th>"row"</th><th></th>
                        {cmp.columns.iter().map(|c| view! { <th>{c.clone()}</th> }).collect_view()}
                    </tr></thead>
                    <tbody>
                        {cmp.first_differences.iter().map(|d| view! {
                            <tr class="expected" data-testid="expected-row"><td rowspan="2">{d.row}</td><td>"expected"</td>{row(d.expected.clone())}</tr>
                            <tr class="actual" data-testid="actual-row"><td>"candidate"</td>{row(d.actual.clone())}</tr>
                        }).collect_view()}
                    </tbody>
                </table>
            })}
        </div>
    }
}
