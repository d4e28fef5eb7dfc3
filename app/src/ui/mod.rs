//! Pages and components, shared by the server (SSR) and the browser (hydration).

mod datasets;
mod login;
pub mod server_fns;

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::components::{A, Redirect, Route, Router, Routes};
use leptos_router::path;

/// The HTML document around the app.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The app: navigation plus the routed pages.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Stylesheet id="quarry-style" href="/style.css"/>
        <Title formatter=|page: String| if page.is_empty() { "Quarry".to_owned() } else { format!("{page} · Quarry") }/>
        <Router>
            <header class="topbar">
                <A href="/" attr:class="brand">"Quarry"</A>
                <nav>
                    <A href="/datasets">"Datasets"</A>
                </nav>
                <UserBadge/>
            </header>
            <main>
                <Routes fallback=|| view! { <section class="page"><h1>"Not found"</h1><p>"There is no page here."</p></section> }>
                    <Route path=path!("") view=|| view! { <Redirect path="/datasets"/> }/>
                    <Route path=path!("/login") view=login::LoginPage/>
                    <Route path=path!("/datasets") view=datasets::DatasetsPage/>
                </Routes>
            </main>
        </Router>
    }
}

/// Who is signed in, with a sign-out button; or a sign-in link.
#[component]
fn UserBadge() -> impl IntoView {
    let me = Resource::new(|| (), |_| server_fns::current_user());
    view! {
        <div class="user">
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    match me.await {
                        Ok(user) => view! {
                            <span class="who" data-testid="who">{user.name}" · "{user.role.to_string()}</span>
                            <form method="post" action="/session/logout">
                                <button type="submit" class="link">"Sign out"</button>
                            </form>
                        }.into_any(),
                        Err(_) => view! { <A href="/login">"Sign in"</A> }.into_any(),
                    }
                })}
            </Suspense>
        </div>
    }
}

/// The message of a server function error, without the framework's prefix.
pub fn error_text(e: &ServerFnError) -> String {
    match e {
        ServerFnError::ServerError(m) => m.clone(),
        other => other.to_string(),
    }
}
