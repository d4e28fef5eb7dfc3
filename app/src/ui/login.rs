//! Sign in with an API token. The form posts to `/session`, which sets an HttpOnly
//! cookie; it works with or without JavaScript.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

#[component]
pub fn LoginPage() -> impl IntoView {
    let query = use_query_map();
    let error = move || query.read().get("error");
    view! {
        <Title text="Sign in"/>
        <section class="page narrow">
            <h1>"Sign in"</h1>
            <p class="hint">
                "Paste your API token. On the embedded default the admin's token is in "
                <code>".quarry/admin.token"</code>"; "<code>"quarry user add NAME --role analyst"</code>
                " makes more."
            </p>
            {move || error().map(|e| view! { <p class="error" role="alert">{e}</p> })}
            <form method="post" action="/session" class="stack">
                <label for="token">"API token"</label>
                <input id="token" name="token" type="password" autocomplete="off" required placeholder="qry_…"/>
                <button type="submit">"Sign in"</button>
            </form>
        </section>
    }
}
