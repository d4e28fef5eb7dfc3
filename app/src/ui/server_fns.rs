//! Server functions: the web app's calls into the server. Their bodies run on the
//! server only; the browser gets a typed HTTP stub. Errors carry client-safe text only
//! (see `quarry_app::server::error`).

use leptos::prelude::*;
use quarry_domain::{Dataset, Role};
use serde::{Deserialize, Serialize};

/// The signed-in user as the pages show them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionUser {
    pub name: String,
    pub role: Role,
}

#[cfg(feature = "ssr")]
mod backend {
    use crate::server::auth::session_principal;
    use crate::server::error::AppError;
    use crate::server::state::Services;
    use leptos::prelude::*;
    use quarry_core::auth::Principal;
    use std::sync::Arc;

    pub fn fail(e: AppError) -> ServerFnError {
        ServerFnError::new(e.parts().2)
    }

    pub async fn caller() -> Result<(Arc<Services>, Principal), ServerFnError> {
        let services = use_context::<Arc<Services>>().ok_or_else(|| {
            fail(AppError::from(anyhow::anyhow!(
                "server function called without the services in context"
            )))
        })?;
        let headers: axum::http::HeaderMap = leptos_axum::extract().await?;
        let who = session_principal(&services.db, &headers)
            .await
            .map_err(fail)?;
        Ok((services, who))
    }
}

/// Who is signed in.
#[server]
pub async fn current_user() -> Result<SessionUser, ServerFnError> {
    let (_, who) = backend::caller().await?;
    Ok(SessionUser {
        name: who.name,
        role: who.role,
    })
}

/// The caller's datasets, newest first.
#[server]
pub async fn list_datasets() -> Result<Vec<Dataset>, ServerFnError> {
    let (services, who) = backend::caller().await?;
    let all = quarry_core::datasets::list(&services.db, &who)
        .await
        .map_err(|e| backend::fail(e.into()))?;
    Ok(all.into_iter().map(|d| d.view).collect())
}

/// Deletes one of the caller's datasets.
#[server]
pub async fn delete_dataset(id: String) -> Result<(), ServerFnError> {
    let (services, who) = backend::caller().await?;
    crate::server::uploads::delete(&services, &who, &id)
        .await
        .map_err(backend::fail)
}
