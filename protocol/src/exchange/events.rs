//! A machine's queue of events not yet polled. Almost every exchange has one
//! event pending at a time (the request, the response), so the oldest waits
//! inline and only a second one allocates: a request costs no queue
//! allocation on either side.

use std::collections::VecDeque;

/// Events in the order they were pushed.
#[derive(Debug)]
pub(crate) struct Events<T> {
    /// The oldest event, when `rest` was empty as it arrived.
    first: Option<T>,
    /// Events that arrived while an older one was pending.
    rest: VecDeque<T>,
}

impl<T> Default for Events<T> {
    fn default() -> Self {
        Events { first: None, rest: VecDeque::new() }
    }
}

impl<T> Events<T> {
    pub(crate) fn push(&mut self, event: T) {
        if self.first.is_none() && self.rest.is_empty() {
            self.first = Some(event);
        } else {
            self.rest.push_back(event);
        }
    }

    pub(crate) fn pop(&mut self) -> Option<T> {
        self.first.take().or_else(|| self.rest.pop_front())
    }
}

#[cfg(test)]
mod tests {
    use super::Events;

    #[test]
    fn events_come_out_in_the_order_they_went_in() {
        let mut e = Events::default();
        assert_eq!(e.pop(), None::<u32>);
        e.push(1);
        e.push(2);
        assert_eq!(e.pop(), Some(1));
        e.push(3);
        assert_eq!(e.pop(), Some(2));
        e.push(4);
        assert_eq!(e.pop(), Some(3));
        assert_eq!(e.pop(), Some(4));
        assert_eq!(e.pop(), None);
        e.push(5);
        assert_eq!(e.pop(), Some(5));
        assert_eq!(e.pop(), None);
    }
}
