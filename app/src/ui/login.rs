//! Sign in with a name and password (or an API token). The forms post to `/session`,
//! which starts a server-side session in an HttpOnly cookie; they work with or
//! without JavaScript.

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
            {move || error().map(|e| view! { <p class="error" role="alert">{e}</p> })}
            <form method="post" action="/session" class="stack" data-testid="password-form">
                <label for="name">"Name"</label>
                <input id="name" name="name" autocomplete="username" required/>
                <label for="password">"Password"</label>
                <input id="password" name="password" type="password" autocomplete="current-password" required/>
                <button type="submit">"Sign in"</button>
            </form>
            <details class="alt-signin">
                <summary>"Sign in with an API token instead"</summary>
                <form method="post" action="/session" class="stack" data-testid="token-form">
                    <label for="token">"API token"</label>
                    <input id="token" name="token" type="password" autocomplete="off" required placeholder="qry_…"/>
                    <button type="submit">"Sign in with token"</button>
                </form>
                <p class="hint">
                    "On the embedded default the admin's token is in "<code>".quarry/admin.token"</code>
                    "; "<code>"quarry user add NAME --role analyst --password-stdin"</code>
                    " makes more users."
                </p>
            </details>
        </section>
    }
}
