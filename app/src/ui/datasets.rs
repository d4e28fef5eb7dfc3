//! The datasets page: upload a file, see your datasets and their columns, delete them.

use super::server_fns::{DeleteDataset, list_datasets};
use super::{error_text, short_time};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;
use quarry_domain::Dataset;

pub(crate) fn human_bytes(n: u64) -> String {
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

/// Sends the upload form with XMLHttpRequest so the page can show how much has been
/// sent; the server answers as it does for the plain form (a redirect carrying the
/// outcome), and the page follows it. Without the WASM bundle the form posts itself.
#[cfg(feature = "hydrate")]
fn upload_with_progress(
    ev: leptos::ev::SubmitEvent,
    form: NodeRef<leptos::html::Form>,
    progress: RwSignal<Option<f64>>,
) {
    use wasm_bindgen::JsCast as _;
    use wasm_bindgen::closure::Closure;
    let Some(form) = form.get_untracked() else {
        return;
    };
    let (Ok(data), Ok(xhr)) = (
        web_sys::FormData::new_with_form(&form),
        web_sys::XmlHttpRequest::new(),
    ) else {
        return; // the browser posts the form itself
    };
    if xhr.open("POST", "/datasets/upload").is_err() {
        return;
    }
    ev.prevent_default();
    progress.set(Some(0.0));
    if let Ok(upload) = xhr.upload() {
        let on_progress =
            Closure::<dyn FnMut(web_sys::ProgressEvent)>::new(move |e: web_sys::ProgressEvent| {
                if e.length_computable() && e.total() > 0.0 {
                    progress.set(Some(e.loaded() / e.total()));
                }
            });
        upload.set_onprogress(Some(on_progress.as_ref().unchecked_ref()));
        on_progress.forget();
    }
    let done = xhr.clone();
    let on_done = Closure::<dyn FnMut()>::new(move || {
        // The final URL after the server's redirect says what happened.
        let target = done.response_url();
        let target = if target.is_empty() {
            "/datasets".to_owned()
        } else {
            target
        };
        if let Some(window) = web_sys::window() {
            let _ = window.location().assign(&target);
        }
    });
    xhr.set_onloadend(Some(on_done.as_ref().unchecked_ref()));
    on_done.forget();
    if xhr.send_with_opt_form_data(Some(&data)).is_err() {
        progress.set(None);
    }
}

#[cfg(not(feature = "hydrate"))]
fn upload_with_progress(
    _ev: leptos::ev::SubmitEvent,
    _form: NodeRef<leptos::html::Form>,
    _progress: RwSignal<Option<f64>>,
) {
}

/// A file dropped on the upload form becomes the form's file.
#[cfg(feature = "hydrate")]
fn take_dropped_file(ev: leptos::ev::DragEvent, input: NodeRef<leptos::html::Input>) {
    ev.prevent_default();
    let files = ev.data_transfer().and_then(|d| d.files());
    if let (Some(files), Some(input)) = (files, input.get_untracked())
        && files.length() > 0
    {
        input.set_files(Some(&files));
    }
}

#[cfg(not(feature = "hydrate"))]
fn take_dropped_file(_ev: leptos::ev::DragEvent, _input: NodeRef<leptos::html::Input>) {}

#[component]
pub fn DatasetsPage() -> impl IntoView {
    let query = use_query_map();
    let delete = ServerAction::<DeleteDataset>::new();
    let refreshes = RwSignal::new(0_u32);
    let datasets = Resource::new(
        move || (delete.version().get(), refreshes.get()),
        |_| list_datasets(),
    );

    let form = NodeRef::<leptos::html::Form>::new();
    let file_input = NodeRef::<leptos::html::Input>::new();
    let progress = RwSignal::new(None::<f64>);
    let dragging = RwSignal::new(false);
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
            <form class="upload" class:dragging=move || dragging.get() method="post" action="/datasets/upload"
                enctype="multipart/form-data" data-testid="upload-form" node_ref=form
                on:submit=move |ev| upload_with_progress(ev, form, progress)
                on:dragover=move |ev: leptos::ev::DragEvent| { ev.prevent_default(); dragging.set(true); }
                on:dragleave=move |_| dragging.set(false)
                on:drop=move |ev| { dragging.set(false); take_dropped_file(ev, file_input); }>
                <input type="text" name="name" placeholder="Name (default: the file name)"/>
                // Options precede the file: the server reads them before the bytes.
                <details class="upload-options" data-testid="upload-options">
                    <summary>"Reading options"</summary>
                    <label>"Delimiter "
                        <select name="delimiter" data-testid="opt-delimiter">
                            <option value="">"detect"</option>
                            <option value=",">","</option>
                            <option value=";">";"</option>
                            <option value="tab">"tab"</option>
                            <option value="|">"|"</option>
                        </select>
                    </label>
                    <label>"Encoding "
                        <select name="encoding" data-testid="opt-encoding">
                            <option value="">"UTF-8"</option>
                            <option value="latin1">"Latin-1 / Windows-1252"</option>
                        </select>
                    </label>
                    <label>"First row is a header "
                        <select name="has_header">
                            <option value="">"yes"</option>
                            <option value="false">"no"</option>
                        </select>
                    </label>
                    <label>"Missing-value markers "
                        <input type="text" name="null_values" data-testid="opt-null-values"
                            placeholder="default: NA, N/A, NULL, NaN, empty…"/>
                    </label>
                    <label>"Sheet (Excel) "
                        <input type="text" name="sheet" placeholder="default: the first"/>
                    </label>
                    <span class="hint">"Column types can be changed on the dataset's page after the upload."</span>
                </details>
                <input type="file" name="file" required accept=".csv,.tsv,.txt,.parquet,.ndjson,.jsonl,.json,.xlsx" node_ref=file_input/>
                <button type="submit" disabled=move || progress.get().is_some()>"Upload"</button>
                <span class="hint">"or drop a file here · CSV, Parquet, newline-delimited JSON or Excel (.xlsx)"</span>
                {move || progress.get().map(|p| view! {
                    <progress max="100" value={(p * 100.0).round()} data-testid="upload-progress"></progress>
                    <span class="hint">{format!("{:.0}% sent", p * 100.0)}</span>
                })}
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
                <tr><th>"Name"</th><th>"Format"</th><th class="num">"Rows"</th><th class="num">"Size (typed copy)"</th>
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
            <td class="num">{match d.stored_bytes {
                Some(typed) => format!("{} ({})", human_bytes(d.bytes), human_bytes(typed)),
                None => human_bytes(d.bytes),
            }}</td>
            <td>
                <button type="button" class="link" data-testid="toggle-columns"
                    on:click=move |_| open.update(|o| *o = !*o)>
                    {move || if open.get() { format!("Hide {column_count} columns") } else { format!("{column_count} columns") }}
                </button>
            </td>
            <td>{d.owner.clone()}</td>
            <td><time datetime=d.created_at.clone()>{short_time(&d.created_at)}</time></td>
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
