//! Server-sent events in the browser: a page follows a stream (a job's, an
//! environment's) and updates its signals as events arrive, without reloading. The
//! browser reconnects by itself if the connection drops.

use leptos::prelude::*;
use std::rc::Rc;

/// The pseudo-kind of the connection's opening.
pub const OPENED: &str = "open";

/// An open event stream; closed when the component that opened it is cleaned up, or
/// earlier with [`Live::close`].
#[derive(Debug, Clone, Copy)]
pub struct Live {
    source: StoredValue<Option<web_sys::EventSource>, LocalStorage>,
}

impl Live {
    pub fn close(&self) {
        self.source.update_value(|s| {
            if let Some(s) = s.take() {
                s.close();
            }
        });
    }
}

/// Counts the events a stream delivered, so that a page's re-read on (re)connection
/// can tell whether newer events arrived while it was in flight (see [`reread`]).
#[derive(Debug, Clone, Copy)]
pub struct Freshness(StoredValue<u64, LocalStorage>);

impl Freshness {
    pub fn new() -> Self {
        Self(StoredValue::new_local(0))
    }
    fn bump(self) {
        self.0.update_value(|n| *n += 1);
    }
    fn mark(self) -> u64 {
        self.0.get_value()
    }
}

impl Default for Freshness {
    fn default() -> Self {
        Self::new()
    }
}

/// Reads the page's state again (after the stream opened) and applies it, unless an
/// event arrived while the read was in flight: the event is newer than what the read
/// saw, so the read is made again instead of overwriting it with older state.
pub fn reread<T, F, Fut>(fresh: Freshness, read: F, apply: impl Fn(T) + 'static)
where
    T: 'static,
    F: Fn() -> Fut + 'static,
    Fut: std::future::Future<Output = Option<T>> + 'static,
{
    leptos::task::spawn_local(async move {
        for _ in 0..5 {
            let mark = fresh.mark();
            let Some(state) = read().await else { return };
            if fresh.mark() == mark {
                apply(state);
                return;
            }
        }
    });
}

/// Opens an `EventSource` on `url` and calls `on(kind, data)` for every event whose
/// name is one of `kinds`, with the event's data text; each event counts in `fresh`.
/// The kind [`OPENED`] is called (with no data) each time the connection opens, the
/// first time and after every reconnection, so a page can read again what it may
/// have missed meanwhile (with [`reread`]).
pub fn listen(
    url: &str,
    kinds: &[&'static str],
    fresh: Freshness,
    on: impl Fn(&'static str, String) + 'static,
) -> Option<Live> {
    use wasm_bindgen::JsCast as _;
    use wasm_bindgen::closure::Closure;
    let source = web_sys::EventSource::new(url).ok()?;
    let on = Rc::new(on);
    for &kind in kinds {
        let on = on.clone();
        if kind == OPENED {
            let handler =
                Closure::<dyn FnMut(web_sys::Event)>::new(move |_| on(OPENED, String::new()));
            let _ =
                source.add_event_listener_with_callback("open", handler.as_ref().unchecked_ref());
            handler.forget();
            continue;
        }
        let handler =
            Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |e: web_sys::MessageEvent| {
                if let Some(text) = e.data().as_string() {
                    fresh.bump();
                    on(kind, text);
                }
            });
        let _ = source.add_event_listener_with_callback(kind, handler.as_ref().unchecked_ref());
        // The handler lives as long as the page; the source is closed on clean-up.
        handler.forget();
    }
    let live = Live {
        source: StoredValue::new_local(Some(source)),
    };
    on_cleanup(move || live.close());
    Some(live)
}
