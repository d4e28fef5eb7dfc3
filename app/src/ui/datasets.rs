//! The datasets page: upload a file, see your datasets and their columns, delete them.

use super::error_text;
use super::server_fns::{DeleteDataset, list_datasets};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;
use quarry_domain::Dataset;

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Asks the user to confirm in the browser (always yes while rendering on the server,
/// where nothing is clicked).
fn confirm(message: &str) -> bool {
    #[cfg(feature = "hydrate")]
    {
        web_sys::window()
            .and_then(|w| w.confirm_with_message(message).ok())
            .unwrap_or(false)
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = message;
        true
    }
}

#[component]
pub fn DatasetsPage() -> impl IntoView {
    let query = use_query_map();
    let delete = ServerAction::<DeleteDataset>::new();
    let refreshes = RwSignal::new(0_u32);
    let datasets = Resource::new(
        move || (delete.version().get(), refreshes.get()),
        |_| list_datasets(),
    );

    view! {
        <Title text="Datasets"/>
        <section class="page">
            <h1>"Datasets"</h1>
            {move || query.read().get("uploaded").map(|name| view! {
                <p class="notice" role="status">"Uploaded "<strong>{name}</strong>"."</p>
            })}
            {move || query.read().get("error").map(|e| view! { <p class="error" role="alert">{e}</p> })}
            {move || delete.value().get().and_then(Result::err).map(|e| view! {
                <p class="error" role="alert">{error_text(&e)}</p>
            })}
            <form class="upload" method="post" action="/datasets/upload" enctype="multipart/form-data">
                <input type="text" name="name" placeholder="Name (default: the file name)"/>
                <input type="file" name="file" required accept=".csv,.parquet,.ndjson,.jsonl,.json"/>
                <button type="submit">"Upload"</button>
                <span class="hint">"CSV, Parquet or newline-delimited JSON"</span>
            </form>
            <div class="toolbar">
                <button type="button" data-testid="refresh" on:click=move |_| refreshes.update(|n| *n += 1)>
                    "Refresh"
                </button>
            </div>
            <Transition fallback=|| view! { <p class="hint">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match datasets.await {
                        Ok(list) if list.is_empty() => view! {
                            <p class="empty">"No datasets yet: upload a CSV, Parquet or NDJSON file."</p>
                        }.into_any(),
                        Ok(list) => view! { <DatasetTable list delete/> }.into_any(),
                        Err(e) => view! {
                            <p class="error">{error_text(&e)}" "<a href="/login">"Sign in"</a></p>
                        }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn DatasetTable(list: Vec<Dataset>, delete: ServerAction<DeleteDataset>) -> impl IntoView {
    view! {
        <table class="datasets">
            <thead>
                <tr><th>"Name"</th><th>"Format"</th><th class="num">"Rows"</th><th class="num">"Size"</th>
                    <th>"Columns"</th><th>"Owner"</th><th>"Uploaded"</th><th></th></tr>
            </thead>
            <tbody>
                {list.into_iter().map(|d| view! { <DatasetRow d delete/> }).collect_view()}
            </tbody>
        </table>
    }
}

#[component]
fn DatasetRow(d: Dataset, delete: ServerAction<DeleteDataset>) -> impl IntoView {
    let open = RwSignal::new(false);
    let id = d.id.clone();
    let name = d.name.clone();
    let column_count = d.columns.len();
    let columns = d.columns.clone();
    view! {
        <tr data-testid="dataset-row" data-name=d.name.clone()>
            <td class="name"><a href=format!("/datasets/{}", d.id) data-testid="open">{d.name.clone()}</a></td>
            <td>{d.format.to_string()}</td>
            <td class="num" data-testid="rows">{d.rows}</td>
            <td class="num">{human_bytes(d.bytes)}</td>
            <td>
                <button type="button" class="link" data-testid="toggle-columns"
                    on:click=move |_| open.update(|o| *o = !*o)>
                    {move || if open.get() { format!("Hide {column_count} columns") } else { format!("{column_count} columns") }}
                </button>
            </td>
            <td>{d.owner.clone()}</td>
            <td><time datetime=d.created_at.clone()>{d.created_at.replace('T', " ").chars().take(19).collect::<String>()}</time></td>
            <td>
                <button type="button" class="danger" data-testid="delete"
                    on:click=move |_| {
                        if confirm(&format!("Delete the dataset {name}? Its file is removed for good.")) {
                            delete.dispatch(DeleteDataset { id: id.clone() });
                        }
                    }>
                    "Delete"
                </button>
            </td>
        </tr>
        <Show when=move || open.get()>
            <tr class="columns" data-testid="columns">
                <td colspan="8">
                    <ul class="columns">
                        {columns.iter().map(|c| view! {
                            <li><code>{c.name.clone()}</code>" "<span class="type">{c.r#type.clone()}</span></li>
                        }).collect_view()}
                    </ul>
                </td>
            </tr>
        </Show>
    }
}
