//! A dataset's page: its schema and first rows, and the form that launches an
//! analysis of it. The form's column pickers come from the schema (only numeric
//! columns where numbers are needed) and it says what is missing before it is sent;
//! the server validates again.

use super::column_types::ColumnTypes;
use super::error_text;
use super::server_fns::{SubmitJob, dataset_detail};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_navigate, use_params_map};
use quarry_domain::{AggOp, ColumnInfo, Dataset, ResultPage};
use serde_json::{Value, json};

#[component]
pub fn DatasetPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").unwrap_or_default();
    let detail = Resource::new(id, dataset_detail);
    view! {
        <Title text="Dataset"/>
        <section class="page">
            <Suspense fallback=|| view! { <p class="hint">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match detail.await {
                        Ok(d) => view! {
                            <DatasetHeader d=d.dataset.clone()/>
                            <Preview page=d.preview/>
                            <ColumnTypes dataset=d.dataset.clone() on_done=Callback::new(move |_| detail.refetch())/>
                            <LaunchForm dataset=d.dataset/>
                        }.into_any(),
                        Err(e) => view! {
                            <h1>"Dataset"</h1>
                            <p class="error" role="alert" data-testid="dataset-error">{error_text(&e)}</p>
                            <p><a href="/datasets">"Back to your datasets"</a></p>
                        }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

#[component]
fn DatasetHeader(d: Dataset) -> impl IntoView {
    view! {
        <h1 data-testid="dataset-name">{d.name.clone()}</h1>
        <p class="meta">
            {format!("{} · {} rows · {} columns · uploaded by {}", d.format, d.rows, d.columns.len(), d.owner)}
        </p>
    }
}

#[component]
fn Preview(page: ResultPage) -> impl IntoView {
    let cell = |v: &Value| match v {
        Value::Null => "–".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    view! {
        <h2>"Schema and first rows"</h2>
        <div class="table-wrap">
            <table class="preview" data-testid="preview">
                <thead>
                    <tr>{page.columns.iter().map(|c| view! {
                        <th><code>{c.name.clone()}</code><span class="type">{c.r#type.clone()}</span></th>
                    }).collect_view()}</tr>
                </thead>
                <tbody>
                    {page.rows.iter().map(|r| view! {
                        <tr>{r.iter().map(|v| view! { <td class:num=v.is_number()>{cell(v)}</td> }).collect_view()}</tr>
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
}

/// The kinds the form offers, with a line on what each does.
const KINDS: [(&str, &str); 5] = [
    (
        "aggregate",
        "Group rows by columns and compute counts, sums, means…",
    ),
    (
        "histogram",
        "Distribution of one numeric column in equal-width bins",
    ),
    ("correlation", "Pearson correlation between numeric columns"),
    (
        "profile",
        "Per-column statistics: nulls, distinct values, quantiles",
    ),
    ("sql", "Any SELECT over the table `data`"),
];

/// The analysis the form describes, or what is missing. Pure, so it is unit-tested.
#[expect(
    clippy::too_many_arguments,
    reason = "one argument per form field keeps the form and its tests readable"
)]
pub fn build_analysis(
    kind: &str,
    columns: &[ColumnInfo],
    group_by: &[String],
    aggregations: &[(String, String)],
    numeric_pick: &[String],
    histogram_column: &str,
    bins: &str,
    query: &str,
) -> Result<Value, Vec<String>> {
    let mut problems = Vec::new();
    let find = |name: &str| columns.iter().find(|c| c.name == name);
    let analysis = match kind {
        "aggregate" => {
            if group_by.is_empty() {
                problems.push("Pick at least one column to group by.".to_owned());
            }
            if aggregations.is_empty() {
                problems.push("Add at least one aggregation.".to_owned());
            }
            let mut aggs = Vec::new();
            for (i, (column, op)) in aggregations.iter().enumerate() {
                let n = i + 1;
                let Some(c) = find(column) else {
                    problems.push(format!("Aggregation {n}: pick a column."));
                    continue;
                };
                let Some(op) = AggOp::ALL.into_iter().find(|o| o.as_str() == op) else {
                    problems.push(format!("Aggregation {n}: pick an operation."));
                    continue;
                };
                if op.numeric_only() && !c.is_numeric() {
                    problems.push(format!(
                        "Aggregation {n}: {} needs a numeric column, and `{}` is {}.",
                        op.as_str(),
                        c.name,
                        c.r#type
                    ));
                }
                aggs.push(json!({"column": c.name, "op": op.as_str()}));
            }
            json!({"kind": "aggregate", "group_by": group_by, "aggregations": aggs})
        }
        "histogram" => {
            match find(histogram_column) {
                Some(c) if c.is_numeric() && c.r#type != "bool" => {}
                Some(c) => problems.push(format!(
                    "`{}` is {}: pick a numeric column.",
                    c.name, c.r#type
                )),
                None => problems.push("Pick a numeric column.".to_owned()),
            }
            let bins = match bins.trim().parse::<u32>() {
                Ok(b) if (1..=1000).contains(&b) => b,
                _ => {
                    problems.push("Bins must be a whole number from 1 to 1000.".to_owned());
                    0
                }
            };
            json!({"kind": "histogram", "column": histogram_column, "bins": bins})
        }
        "correlation" => {
            if numeric_pick.len() < 2 {
                problems.push("Pick at least two numeric columns.".to_owned());
            }
            json!({"kind": "correlation", "columns": numeric_pick})
        }
        "profile" => json!({"kind": "profile"}),
        "sql" => {
            if !query.trim().to_ascii_lowercase().starts_with("select")
                && !query.trim().to_ascii_lowercase().starts_with("with")
            {
                problems.push("Write a SELECT query over the table `data`.".to_owned());
            }
            json!({"kind": "sql", "query": query})
        }
        other => {
            problems.push(format!("Unknown analysis `{other}`."));
            Value::Null
        }
    };
    if problems.is_empty() {
        Ok(analysis)
    } else {
        Err(problems)
    }
}

#[component]
fn LaunchForm(dataset: Dataset) -> impl IntoView {
    let columns = StoredValue::new(dataset.columns.clone());
    let numeric: Vec<ColumnInfo> = dataset
        .columns
        .iter()
        .filter(|c| c.is_numeric() && c.r#type != "bool")
        .cloned()
        .collect();
    let numeric = StoredValue::new(numeric);
    let kind = RwSignal::new("aggregate".to_owned());
    let group_by = RwSignal::new(Vec::<String>::new());
    let aggregations = RwSignal::new(vec![(String::new(), "mean".to_owned())]);
    let numeric_pick = RwSignal::new(Vec::<String>::new());
    let histogram_column = RwSignal::new(String::new());
    let bins = RwSignal::new("20".to_owned());
    let query = RwSignal::new("SELECT * FROM data LIMIT 100".to_owned());
    let tried = RwSignal::new(false);
    let built = Memo::new(move |_| {
        columns.with_value(|cols| {
            build_analysis(
                &kind.get(),
                cols,
                &group_by.get(),
                &aggregations.get(),
                &numeric_pick.get(),
                &histogram_column.get(),
                &bins.get(),
                &query.get(),
            )
        })
    });
    let submit = ServerAction::<SubmitJob>::new();
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(id)) = submit.value().get() {
            navigate(&format!("/jobs/{id}"), Default::default());
        }
    });
    let dataset_id = dataset.id.clone();
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        tried.set(true);
        if let Ok(analysis) = built.get_untracked() {
            submit.dispatch(SubmitJob {
                dataset_id: dataset_id.clone(),
                analysis: analysis.to_string(),
            });
        }
    };
    let toggle = |list: RwSignal<Vec<String>>, name: String| {
        list.update(|l| {
            if let Some(i) = l.iter().position(|n| *n == name) {
                l.remove(i);
            } else {
                l.push(name);
            }
        })
    };
    let column_options = move |only_numeric: bool| {
        let list = if only_numeric {
            numeric.get_value()
        } else {
            columns.get_value()
        };
        list.into_iter()
            .map(|c| view! { <option value=c.name.clone()>{format!("{} ({})", c.name, c.r#type)}</option> })
            .collect_view()
    };
    view! {
        <h2>"Launch an analysis"</h2>
        <form class="launch stack" data-testid="launch-form" on:submit=on_submit>
            <label for="kind">"Analysis"</label>
            <select id="kind" data-testid="kind" prop:value=move || kind.get()
                on:change=move |ev| kind.set(event_target_value(&ev))>
                {KINDS.iter().map(|(k, _)| view! { <option value=*k>{*k}</option> }).collect_view()}
            </select>
            <p class="hint">{move || KINDS.iter().find(|(k, _)| *k == kind.get()).map(|(_, d)| *d)}</p>

            <Show when=move || kind.get() == "aggregate">
                <fieldset data-testid="group-by">
                    <legend>"Group by"</legend>
                    {columns.get_value().into_iter().map(|c| {
                        let name = c.name.clone();
                        let checked = { let name = name.clone(); move || group_by.with(|g| g.contains(&name)) };
                        view! {
                            <label class="check">
                                <input type="checkbox" name="group_by" value=c.name.clone() prop:checked=checked
                                    on:change=move |_| toggle(group_by, name.clone())/>
                                {c.name.clone()}
                            </label>
                        }
                    }).collect_view()}
                </fieldset>
                <fieldset data-testid="aggregations">
                    <legend>"Aggregations"</legend>
                    {move || (0..aggregations.with(Vec::len)).map(|i| {
                        let (column, op) = aggregations.with(|a| a[i].clone());
                        let numeric_needed = AggOp::ALL.iter().any(|o| o.as_str() == op && o.numeric_only());
                        view! {
                            <div class="agg-row">
                                <select data-testid=format!("agg-op-{i}") prop:value=op.clone()
                                    on:change=move |ev| { let v = event_target_value(&ev); aggregations.update(|a| a[i].1 = v) }>
                                    {AggOp::ALL.into_iter().map(|o| view! { <option value=o.as_str()>{o.as_str()}</option> }).collect_view()}
                                </select>
                                " of "
                                <select data-testid=format!("agg-column-{i}") prop:value=column.clone()
                                    on:change=move |ev| { let v = event_target_value(&ev); aggregations.update(|a| a[i].0 = v) }>
                                    <option value="">"— column —"</option>
                                    {column_options(numeric_needed)}
                                </select>
                                <button type="button" class="link" on:click=move |_| aggregations.update(|a| { a.remove(i); })>"Remove"</button>
                            </div>
                        }
                    }).collect_view()}
                    <button type="button" class="link" data-testid="add-aggregation"
                        on:click=move |_| aggregations.update(|a| a.push((String::new(), "count".to_owned())))>"Add aggregation"</button>
                </fieldset>
            </Show>

            <Show when=move || kind.get() == "histogram">
                <label for="hist-column">"Column (numeric)"</label>
                <select id="hist-column" data-testid="hist-column" prop:value=move || histogram_column.get()
                    on:change=move |ev| histogram_column.set(event_target_value(&ev))>
                    <option value="">"— column —"</option>
                    {column_options(true)}
                </select>
                <label for="bins">"Bins"</label>
                <input id="bins" type="number" min="1" max="1000" prop:value=move || bins.get()
                    on:input=move |ev| bins.set(event_target_value(&ev))/>
            </Show>

            <Show when=move || kind.get() == "correlation">
                <fieldset>
                    <legend>"Columns (numeric)"</legend>
                    {numeric.get_value().into_iter().map(|c| {
                        let name = c.name.clone();
                        view! {
                            <label class="check">
                                <input type="checkbox" value=c.name.clone() on:change=move |_| toggle(numeric_pick, name.clone())/>
                                {c.name.clone()}
                            </label>
                        }
                    }).collect_view()}
                </fieldset>
            </Show>

            <Show when=move || kind.get() == "sql">
                <label for="query">"Query"</label>
                <textarea id="query" rows="5" prop:value=move || query.get()
                    on:input=move |ev| query.set(event_target_value(&ev))></textarea>
            </Show>

            {move || match built.get() {
                Err(problems) if tried.get() => Some(view! {
                    <ul class="problems" role="alert" data-testid="problems">
                        {problems.into_iter().map(|p| view! { <li>{p}</li> }).collect_view()}
                    </ul>
                }),
                _ => None,
            }}
            {move || submit.value().get().and_then(Result::err).map(|e| view! {
                <p class="error" role="alert" data-testid="submit-error">{error_text(&e)}</p>
            })}
            <button type="submit" data-testid="launch" disabled={move || submit.pending().get()}>
                {move || if submit.pending().get() { "Launching…" } else { "Launch" }}
            </button>
        </form>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> Vec<ColumnInfo> {
        [
            ("city", "string"),
            ("amount", "float64"),
            ("n", "int64"),
            ("ok", "bool"),
        ]
        .into_iter()
        .map(|(n, t)| ColumnInfo {
            name: n.into(),
            r#type: t.into(),
        })
        .collect()
    }

    fn build(
        kind: &str,
        group: &[&str],
        aggs: &[(&str, &str)],
        pick: &[&str],
        hist: &str,
        bins: &str,
    ) -> Result<Value, Vec<String>> {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        let aggs: Vec<(String, String)> = aggs
            .iter()
            .map(|(c, o)| ((*c).into(), (*o).into()))
            .collect();
        build_analysis(
            kind,
            &cols(),
            &s(group),
            &aggs,
            &s(pick),
            hist,
            bins,
            "SELECT 1",
        )
    }

    #[test]
    fn a_complete_aggregate_builds_the_api_json() {
        assert_eq!(
            build("aggregate", &["city"], &[("amount", "mean")], &[], "", ""),
            Ok(
                json!({"kind": "aggregate", "group_by": ["city"], "aggregations": [{"column": "amount", "op": "mean"}]})
            )
        );
    }

    #[test]
    fn missing_and_wrong_choices_are_named_before_submit() {
        let e = build(
            "aggregate",
            &[],
            &[("city", "mean"), ("", "count")],
            &[],
            "",
            "",
        )
        .unwrap_err();
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].contains("group by"));
        assert!(e[1].contains("mean needs a numeric column") && e[1].contains("`city` is string"));
        assert!(e[2].contains("Aggregation 2: pick a column"));
        let e = build("histogram", &[], &[], &[], "ok", "0").unwrap_err();
        assert!(
            e[0].contains("`ok` is bool") && e[1].contains("Bins"),
            "{e:?}"
        );
        assert!(build("correlation", &[], &[], &["amount"], "", "").is_err());
        assert!(build("correlation", &[], &[], &["amount", "n"], "", "").is_ok());
        assert!(build("histogram", &[], &[], &[], "n", "10").is_ok());
    }
}
