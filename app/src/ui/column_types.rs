//! The dataset page's column types: what was detected for each column, how the file
//! was read, and a form to fix a column's type or the null markers, which reads the
//! original again into a new typed copy.

use super::datasets::human_bytes;
use super::error_text;
use super::server_fns::RetypeDataset;
use leptos::prelude::*;
use quarry_domain::Dataset;
use quarry_domain::dataset::TYPE_NAMES;
use std::collections::BTreeMap;

/// How the original was read, in a line.
fn how_read(d: &Dataset) -> String {
    let Some(o) = &d.ingest else {
        return "read before typed copies existed".to_owned();
    };
    let mut parts = Vec::new();
    if let Some(delimiter) = o.delimiter {
        let shown = match delimiter {
            '\t' => "tab".to_owned(),
            c => format!("`{c}`"),
        };
        parts.push(format!("delimiter {shown}"));
    }
    if let Some(encoding) = o.encoding {
        parts.push(format!("{encoding:?}").to_lowercase());
    }
    if o.decimal_comma == Some(true) {
        parts.push("decimal comma".to_owned());
    }
    if o.has_header == Some(false) {
        parts.push("no header row".to_owned());
    }
    if let Some(sheet) = &o.sheet {
        parts.push(format!("sheet `{sheet}`"));
    }
    parts.join(" · ")
}

#[component]
pub fn ColumnTypes(dataset: Dataset, on_done: Callback<()>) -> impl IntoView {
    let retype = ServerAction::<RetypeDataset>::new();
    let id = dataset.id.clone();
    let detected: Vec<(String, String)> = dataset
        .columns
        .iter()
        .map(|c| (c.name.clone(), c.r#type.clone()))
        .collect();
    let chosen = RwSignal::new(detected.iter().cloned().collect::<BTreeMap<_, _>>());
    let markers = dataset
        .ingest
        .as_ref()
        .map(|o| o.null_markers().join(","))
        .unwrap_or_else(|| quarry_domain::dataset::DEFAULT_NULL_VALUES.join(","));
    let nulls = RwSignal::new(markers);
    let detected_map: BTreeMap<String, String> = detected.iter().cloned().collect();
    Effect::new(move |_| {
        if let Some(Ok(_)) = retype.value().get() {
            on_done.run(());
        }
    });
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        // Only the columns the user changed become overrides.
        let overrides: BTreeMap<String, String> = chosen
            .get_untracked()
            .into_iter()
            .filter(|(name, t)| detected_map.get(name) != Some(t))
            .collect();
        retype.dispatch(RetypeDataset {
            id: id.clone(),
            schema: serde_json::to_string(&overrides).unwrap_or_default(),
            null_values: nulls.get_untracked(),
        });
    };
    let sizes = match dataset.stored_bytes {
        Some(typed) => format!(
            "original {} · typed Parquet copy {}",
            human_bytes(dataset.bytes),
            human_bytes(typed)
        ),
        None => format!("original {}", human_bytes(dataset.bytes)),
    };
    view! {
        <h2>"Column types"</h2>
        <p class="meta" data-testid="stored-sizes">
            {sizes}" · "{how_read(&dataset)}" · "
            <a href=format!("/api/v1/datasets/{}/download", dataset.id) data-testid="download-original">"Download the original"</a>
        </p>
        <form class="retype stack" data-testid="retype-form" on:submit=on_submit>
            <div class="table-wrap">
                <table>
                    <thead><tr><th>"Column"</th><th>"Type"</th></tr></thead>
                    <tbody>
                        {detected.into_iter().map(|(name, _)| {
                            let key = name.clone();
                            let current = { let key = key.clone(); move || chosen.with(|c| c.get(&key).cloned().unwrap_or_default()) };
                            view! {
                                <tr>
                                    <td><code>{name.clone()}</code></td>
                                    <td>
                                        <select data-testid=format!("type-{name}") prop:value=current
                                            on:change=move |ev| { let v = event_target_value(&ev); chosen.update(|c| { c.insert(key.clone(), v); }) }>
                                            {TYPE_NAMES.iter().filter(|t| **t != "decimal").map(|t| view! { <option value=*t>{*t}</option> }).collect_view()}
                                        </select>
                                    </td>
                                </tr>
                            }
                        }).collect_view()}
                    </tbody>
                </table>
            </div>
            <label for="null-values">"Missing-value markers (comma-separated)"</label>
            <input id="null-values" data-testid="null-values" prop:value=move || nulls.get()
                on:input=move |ev| nulls.set(event_target_value(&ev))/>
            <button type="submit" data-testid="retype" disabled=move || retype.pending().get()>
                {move || if retype.pending().get() { "Reading the file again…" } else { "Read again with these types" }}
            </button>
            {move || retype.value().get().and_then(|r| r.err()).map(|e| view! {
                <p class="error" role="alert" data-testid="retype-error">{error_text(&e)}</p>
            })}
        </form>
    }
}
