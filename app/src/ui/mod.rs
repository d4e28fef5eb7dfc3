//! Pages and components, shared by the server (SSR) and the browser (hydration).

pub mod charts;
mod column_types;
pub mod control_fns;
mod dataset;
mod datasets;
mod environment;
mod fleet;
mod gate;
mod job_history;
mod jobs;
#[cfg(feature = "hydrate")]
mod live;
mod login;
pub(crate) mod operations;
mod prescale;
mod promotion;
mod results;
pub mod server_fns;
mod settings;
mod system;
mod timeline;

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::components::{A, Redirect, Route, Router, Routes};
use leptos_router::{SsrMode, path};

/// The HTML document around the app.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <link rel="icon" type="image/svg+xml" href="/favicon.svg"/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The app: navigation plus the routed pages. Pages that read data render
/// asynchronously on the server: the response waits for their data, so its status
/// says what happened (401 signed out, 403 not your role, 404 not yours or gone).
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
                    <A href="/jobs">"Jobs"</A>
                    <LeadLinks/>
                </nav>
                <UserBadge/>
            </header>
            <main>
                <Routes fallback=|| view! { <section class="page"><h1>"Not found"</h1><p>"There is no page here."</p></section> }>
                    <Route path=path!("") view=|| view! { <Redirect path="/datasets"/> }/>
                    <Route path=path!("/login") view=login::LoginPage/>
                    <Route path=path!("/datasets") view=datasets::DatasetsPage ssr=SsrMode::Async/>
                    <Route path=path!("/datasets/:id") view=dataset::DatasetPage ssr=SsrMode::Async/>
                    <Route path=path!("/jobs") view=jobs::JobsPage ssr=SsrMode::Async/>
                    <Route path=path!("/jobs/:id") view=jobs::JobPage ssr=SsrMode::Async/>
                    <Route path=path!("/system") view=system::SystemPage ssr=SsrMode::Async/>
                    <Route path=path!("/settings") view=settings::SettingsPage ssr=SsrMode::Async/>
                    <Route path=path!("/operations") view=operations::OperationsPage ssr=SsrMode::Async/>
                    <Route path=path!("/operations/environments/:env") view=environment::EnvironmentPageView ssr=SsrMode::Async/>
                    <Route path=path!("/operations/promotions/:id") view=promotion::PromotionPageView ssr=SsrMode::Async/>
                </Routes>
            </main>
        </Router>
    }
}

/// The system and operations pages' links, for the roles that may open them (leads,
/// operators and admins; the server checks again).
#[component]
fn LeadLinks() -> impl IntoView {
    let me = Resource::new(|| (), |_| server_fns::current_user());
    view! {
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                me.await.ok().flatten().filter(|u| u.role != quarry_domain::Role::Analyst).map(|_| view! {
                    <A href="/system">"System"</A>
                    <A href="/operations">"Operations"</A>
                })
            })}
        </Suspense>
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
                        Ok(Some(user)) => view! {
                            <a href="/settings" class="who" data-testid="who" title="Settings and API tokens">{user.name}" · "{user.role.to_string()}</a>
                            <form method="post" action="/session/logout">
                                <button type="submit" class="link">"Sign out"</button>
                            </form>
                        }.into_any(),
                        Ok(None) | Err(_) => view! { <A href="/login">"Sign in"</A> }.into_any(),
                    }
                })}
            </Suspense>
        </div>
    }
}

/// An RFC 3339 timestamp as the pages show it: `2026-11-23 19:52:41` (UTC).
pub fn short_time(rfc3339: &str) -> String {
    rfc3339.replace('T', " ").chars().take(19).collect()
}

/// The message of a server function error, without the framework's prefix.
pub fn error_text(e: &ServerFnError) -> String {
    match e {
        ServerFnError::ServerError(m) => m.clone(),
        other => other.to_string(),
    }
}
