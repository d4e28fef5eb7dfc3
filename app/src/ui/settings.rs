//! Settings: the caller's API tokens, created and revoked here.

use super::server_fns::{ApiToken, CreateToken, RevokeToken, list_tokens};
use super::{error_text, short_time};
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn SettingsPage() -> impl IntoView {
    let create = ServerAction::<CreateToken>::new();
    let revoke = ServerAction::<RevokeToken>::new();
    let tokens = Resource::new(
        move || (create.version().get(), revoke.version().get()),
        |_| list_tokens(),
    );
    view! {
        <Title text="Settings"/>
        <section class="page">
            <h1>"API tokens"</h1>
            <p class="hint">
                "Tokens let scripts use the REST API as you: "
                <code>"Authorization: Bearer qry_…"</code>". A token is shown once, when it is made."
            </p>
            <ActionForm action=create attr:class="token-form" attr:data-testid="create-token">
                <input name="label" placeholder="What it is for (e.g. laptop)" required maxlength="64"/>
                <select name="expires_in_days">
                    <option value="30">"expires in 30 days"</option>
                    <option value="7">"expires in 7 days"</option>
                    <option value="90">"expires in 90 days"</option>
                    <option value="0">"never expires"</option>
                </select>
                <button type="submit">"Create token"</button>
            </ActionForm>
            {move || create.value().get().map(|r| match r {
                Ok(token) => view! {
                    <div class="notice new-token" role="status">
                        "Your new token (copy it now; it will not be shown again): "
                        <code data-testid="new-token">{token}</code>
                    </div>
                }.into_any(),
                Err(e) => view! { <p class="error" role="alert">{error_text(&e)}</p> }.into_any(),
            })}
            {move || revoke.value().get().and_then(Result::err).map(|e| view! {
                <p class="error" role="alert">{error_text(&e)}</p>
            })}
            <Transition fallback=|| view! { <p class="hint">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match tokens.await {
                        Ok(list) => view! { <TokenTable list revoke/> }.into_any(),
                        Err(e) => view! { <p class="error" role="alert">{error_text(&e)}</p> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn TokenTable(list: Vec<ApiToken>, revoke: ServerAction<RevokeToken>) -> impl IntoView {
    view! {
        <table class="jobs tokens">
            <thead><tr><th>"Name"</th><th>"Created"</th><th>"Expires"</th><th>"State"</th><th></th></tr></thead>
            <tbody>
                {list.into_iter().map(|t| {
                    let id = t.id.clone();
                    view! {
                        <tr data-testid="token-row" data-label=t.label.clone()>
                            <td>{t.label.clone()}</td>
                            <td>{short_time(&t.created_at)}</td>
                            <td>{t.expires_at.as_deref().map(short_time).unwrap_or_else(|| "never".to_owned())}</td>
                            <td>{if t.revoked { "revoked" } else { "active" }}</td>
                            <td>
                                <Show when=move || !t.revoked>
                                    <button type="button" class="danger" data-testid="revoke" on:click={
                                        let id = id.clone();
                                        move |_| { revoke.dispatch(RevokeToken { id: id.clone() }); }
                                    }>"Revoke"</button>
                                </Show>
                            </td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
}
