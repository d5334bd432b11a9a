//! Group commit: the requests of one process waiting for their turn on the same item are
//! decided together by whichever of them gets the turn, and written in one transaction. A
//! process serving many shoppers at once (`inventory dev`, a container) then pays one round
//! trip for a queue of buyers instead of one each; a Lambda environment, which serves one
//! request at a time, always decides alone.
//!
//! Each request joins the list of its item at its location ([`Waiting`]), then waits for its answer or for the turn,
//! whichever comes first. The one that gets the turn takes the whole list and answers everyone
//! on it before the turn is passed on, so a request that gets the turn later finds its answer
//! already there.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use tokio::sync::oneshot;

use crate::domain::StreamId;

/// A request waiting in its item's list, and where its answer goes.
pub(crate) struct Member<T, A> {
    ticket: u64,
    pub(crate) job: T,
    answer: oneshot::Sender<A>,
}

impl<T, A> Member<T, A> {
    /// Gives the member its answer (dropped if it no longer waits: it cannot be, as a member
    /// is taken only from the list, and it leaves the list before it stops waiting).
    pub(crate) fn answer(self, answer: A) {
        let _ = self.answer.send(answer);
    }
}

/// What one item's waiting requests are, per item.
pub(crate) struct Waiting<T, A> {
    lists: Mutex<HashMap<StreamId, Vec<Member<T, A>>>>,
    next_ticket: std::sync::atomic::AtomicU64,
}

impl<T, A> Default for Waiting<T, A> {
    fn default() -> Self {
        Self {
            lists: Mutex::default(),
            next_ticket: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

/// A place in an item's list, and the answer to wait for.
pub(crate) struct Ticket<A> {
    number: u64,
    pub(crate) answer: oneshot::Receiver<A>,
}

impl<T, A> Waiting<T, A> {
    /// Puts `job` on `item`'s list.
    pub(crate) fn join(&self, item: &StreamId, job: T) -> Ticket<A> {
        let number = self
            .next_ticket
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (sender, answer) = oneshot::channel();
        self.lock().entry(item.clone()).or_default().push(Member {
            ticket: number,
            job,
            answer: sender,
        });
        Ticket { number, answer }
    }

    /// Takes every request on `item`'s list, in the order they joined.
    pub(crate) fn take_all(&self, item: &StreamId) -> Vec<Member<T, A>> {
        self.lock().remove(item).unwrap_or_default()
    }

    /// Takes `ticket` off `item`'s list; `false` if it was taken already (its answer is
    /// coming).
    pub(crate) fn leave(&self, item: &StreamId, ticket: &Ticket<A>) -> bool {
        let mut lists = self.lock();
        let Some(list) = lists.get_mut(item) else {
            return false;
        };
        let before = list.len();
        list.retain(|member| member.ticket != ticket.number);
        let left = list.len() < before;
        if list.is_empty() {
            lists.remove(item);
        }
        left
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StreamId, Vec<Member<T, A>>>> {
        self.lists.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sku(text: &str) -> StreamId {
        StreamId::of(&crate::domain::Sku::parse(text).unwrap())
    }

    #[test]
    fn the_turn_holder_takes_everyone_waiting_on_the_item_in_order_and_a_taken_ticket_cannot_leave()
    {
        let waiting: Waiting<&str, u32> = Waiting::default();
        let first = waiting.join(&sku("A"), "first");
        let second = waiting.join(&sku("A"), "second");
        let other = waiting.join(&sku("B"), "other");

        let taken = waiting.take_all(&sku("A"));
        let jobs: Vec<&str> = taken.iter().map(|member| member.job).collect();
        assert_eq!(jobs, ["first", "second"]);
        assert!(
            !waiting.leave(&sku("A"), &first),
            "taken: its answer is coming"
        );
        for (n, member) in taken.into_iter().enumerate() {
            member.answer(n as u32);
        }
        assert_eq!(second.answer.blocking_recv(), Ok(1));

        assert!(
            waiting.leave(&sku("B"), &other),
            "still waiting: it may leave"
        );
        assert!(waiting.take_all(&sku("B")).is_empty());
    }
}
