//! Quarry's web app: Leptos pages rendered on the server and hydrated in the browser,
//! plus (with the `ssr` feature) the REST API, the web server and the operator
//! control plane. The `quarry` binary that runs it lives in `quarry-cli`.
//!
//! The `hydrate` build (WASM) compiles only [`ui`] and `quarry-domain`: no polars,
//! sqlx or AWS SDK reaches the browser.

// Leptos views are deeply nested types; the WASM build needs more room than the default.
#![recursion_limit = "512"]

pub mod ui;

#[cfg(feature = "ssr")]
pub mod control;
#[cfg(feature = "ssr")]
pub mod server;

/// The browser entry point, called by the script Leptos puts in every page.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(ui::App);
    // A marker for tests and tooling: the page is live from here on.
    if let Some(body) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.body())
    {
        let _ = body.set_attribute("data-hydrated", "true");
    }
}
