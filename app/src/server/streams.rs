//! The open event streams of each user, bounded: a signed-in client that opens
//! stream after stream (`GET /api/v1/jobs/{id}/events`,
//! `GET /api/v1/environments/{env}/events`) gets `429` past
//! `auth.max_streams_per_user` instead of holding the server's memory and tasks. A
//! stream gives its slot back when it ends, however it ends (finished job, closed
//! connection, ended credential, shutdown).

use super::error::AppError;
use axum::http::StatusCode;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How many streams each user has open.
#[derive(Debug)]
pub struct StreamSlots {
    limit: u32,
    open: Mutex<HashMap<String, u32>>,
}

/// One open stream's place; dropped with the stream.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<StreamSlots>,
    user: String,
}

impl StreamSlots {
    pub fn new(limit: u32) -> Arc<Self> {
        Arc::new(Self {
            limit: limit.max(1),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more stream of `user`, or 429 saying the limit.
    pub fn take(self: &Arc<Self>, user: &str) -> Result<Slot, AppError> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(user.to_owned()).or_default();
        if *n >= self.limit {
            return Err(AppError::Rejected(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "you have {} event streams open, the most auth.max_streams_per_user \
                     allows: close one (a browser tab following a job or an environment) \
                     and try again",
                    self.limit
                ),
            ));
        }
        *n += 1;
        Ok(Slot {
            slots: self.clone(),
            user: user.to_owned(),
        })
    }

    /// How many streams `user` has open.
    pub fn open(&self, user: &str) -> u32 {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(user).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_user_and_given_back_when_dropped() {
        let slots = StreamSlots::new(2);
        let a = slots.take("ana").expect("first");
        let b = slots.take("ana").expect("second");
        let refused = slots.take("ana").expect_err("a third is refused");
        assert_eq!(refused.parts().0, StatusCode::TOO_MANY_REQUESTS);
        assert!(
            refused.to_string().contains("auth.max_streams_per_user"),
            "{refused}"
        );
        let other = slots.take("bob").expect("others have their own");
        drop(a);
        assert_eq!(slots.open("ana"), 1);
        let _c = slots.take("ana").expect("a slot came back");
        drop((b, other));
        assert_eq!((slots.open("ana"), slots.open("bob")), (1, 0));
    }
}
