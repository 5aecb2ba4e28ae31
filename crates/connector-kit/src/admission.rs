//! Admission of calls to one connector: at most `limit` in flight, and a
//! call waiting for a slot is admitted urgent first, then in arrival order
//! (issue #21: an urgent leaver must not wait behind queued joiners at the
//! client's concurrency limit).
//!
//! A slot is handed from the call that frees it directly to the next waiter,
//! so a newly arriving ordinary call never takes a slot an urgent waiter is
//! owed. A waiter that gives up (its future dropped) loses its place; a slot
//! handed to it in that instant goes to the next waiter.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

/// How a call is admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Priority {
    /// In arrival order.
    #[default]
    Ordinary,
    /// Ahead of every ordinary call waiting (an urgent leaver).
    Urgent,
}

/// The slots of one connector, shared by every clone of its client.
#[derive(Debug)]
pub struct Admission {
    state: Mutex<Slots>,
}

#[derive(Debug)]
struct Slots {
    free: usize,
    urgent: VecDeque<oneshot::Sender<Slot>>,
    ordinary: VecDeque<oneshot::Sender<Slot>>,
}

/// One slot, held for the whole call; dropping it admits the next waiter.
#[derive(Debug)]
pub struct Slot {
    admission: Option<Arc<Admission>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(admission) = self.admission.take() {
            admission.release();
        }
    }
}

impl Admission {
    /// At most `limit` (at least one) calls in flight.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(Slots { free: limit.max(1), urgent: VecDeque::new(), ordinary: VecDeque::new() }),
        })
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for a slot.
    pub async fn admit(self: &Arc<Self>, priority: Priority) -> Slot {
        loop {
            let waiting = {
                let mut slots = self.slots();
                if slots.free > 0 {
                    slots.free -= 1;
                    return Slot { admission: Some(self.clone()) };
                }
                let (sender, receiver) = oneshot::channel();
                match priority {
                    Priority::Urgent => slots.urgent.push_back(sender),
                    Priority::Ordinary => slots.ordinary.push_back(sender),
                }
                receiver
            };
            // A sender is dropped unsent only if the queue itself went away,
            // which `self` prevents; asking again is still the safe answer.
            if let Ok(slot) = waiting.await {
                return slot;
            }
        }
    }

    /// Calls waiting for a slot: (urgent, ordinary).
    pub fn waiting(&self) -> (usize, usize) {
        let slots = self.slots();
        (slots.urgent.len(), slots.ordinary.len())
    }

    /// Hands a freed slot to the next waiter (urgent first), or frees it.
    fn release(self: &Arc<Self>) {
        loop {
            let next = {
                let mut slots = self.slots();
                match slots.urgent.pop_front().or_else(|| slots.ordinary.pop_front()) {
                    Some(next) => next,
                    None => {
                        slots.free += 1;
                        return;
                    }
                }
            };
            match next.send(Slot { admission: Some(self.clone()) }) {
                Ok(()) => return,
                // That waiter gave up: disarm the slot (its drop must not
                // release it a second time) and try the next one.
                Err(mut slot) => {
                    slot.admission = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_urgent_waiter_is_admitted_before_earlier_ordinary_ones() {
        let admission = Admission::new(1);
        let held = admission.admit(Priority::Ordinary).await;
        let (order_tx, mut order) = tokio::sync::mpsc::unbounded_channel();
        let mut waiters = Vec::new();
        for (name, priority) in [("joiner-1", Priority::Ordinary), ("joiner-2", Priority::Ordinary)] {
            let (admission, order_tx) = (admission.clone(), order_tx.clone());
            waiters.push(tokio::spawn(async move {
                let slot = admission.admit(priority).await;
                order_tx.send(name).ok();
                slot
            }));
        }
        // Both joiners are queued before the leaver arrives.
        while admission.waiting() != (0, 2) {
            tokio::task::yield_now().await;
        }
        let (leaver_admission, leaver_tx) = (admission.clone(), order_tx.clone());
        let leaver = tokio::spawn(async move {
            let slot = leaver_admission.admit(Priority::Urgent).await;
            leaver_tx.send("leaver").ok();
            slot
        });
        while admission.waiting() != (1, 2) {
            tokio::task::yield_now().await;
        }
        drop(held);
        assert_eq!(order.recv().await, Some("leaver"));
        drop(leaver.await.expect("leaver"));
        assert_eq!(order.recv().await, Some("joiner-1"));
        drop(waiters.remove(0).await.expect("joiner-1"));
        assert_eq!(order.recv().await, Some("joiner-2"));
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_passes_its_slot_on() {
        let admission = Admission::new(1);
        let held = admission.admit(Priority::Ordinary).await;
        let gone = tokio::spawn({
            let admission = admission.clone();
            async move { drop(admission.admit(Priority::Urgent).await) }
        });
        while admission.waiting() != (1, 0) {
            tokio::task::yield_now().await;
        }
        gone.abort();
        let _ = gone.await;
        drop(held);
        // The slot came back: it can be taken again at once.
        let again = admission.admit(Priority::Ordinary).await;
        drop(again);
        assert_eq!(admission.waiting(), (0, 0));
    }
}
