//! Latest-value slots: a setting the UI changes many times a second (a slider being dragged)
//! is written into a slot that holds only the newest value, and a wake-up is posted on a
//! one-place channel. Nothing is ever refused or lost: a slot cannot be full, and a wake-up
//! already pending is as good as a new one. The trainer takes the slot between two steps.

use std::sync::{Mutex, PoisonError};

use crossbeam_channel::{Receiver, Sender, bounded};

/// Holds the newest value put, until taken.
#[derive(Debug)]
pub struct Slot<T> {
    value: Mutex<Option<T>>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self {
            value: Mutex::new(None),
        }
    }
}

impl<T> Slot<T> {
    /// Replaces whatever is pending with `value`.
    pub fn put(&self, value: T) {
        self.update(|pending| *pending = Some(value));
    }

    /// Changes the pending value in place (to merge a partial update into it).
    pub fn update(&self, change: impl FnOnce(&mut Option<T>)) {
        // A panic while holding this lock cannot leave the Option half-written.
        let mut pending = self.value.lock().unwrap_or_else(PoisonError::into_inner);
        change(&mut pending);
    }

    /// The pending value, if any, leaving the slot empty.
    pub fn take(&self) -> Option<T> {
        self.value
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// A wake-up call: at most one pending, never blocks the sender.
#[derive(Clone, Debug)]
pub struct Bell {
    sender: Sender<()>,
    receiver: Receiver<()>,
}

impl Default for Bell {
    fn default() -> Self {
        let (sender, receiver) = bounded(1);
        Self { sender, receiver }
    }
}

impl Bell {
    pub fn ring(&self) {
        // Full means a ring is already pending: nothing is lost.
        let _ = self.sender.try_send(());
    }

    pub fn receiver(&self) -> &Receiver<()> {
        &self.receiver
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_keeps_the_newest_value_and_empties_when_taken() {
        let slot = Slot::default();
        assert_eq!(slot.take(), None::<u32>);
        for value in 0..1000 {
            slot.put(value);
        }
        assert_eq!(slot.take(), Some(999));
        assert_eq!(slot.take(), None);
        slot.update(|v| *v = Some(v.unwrap_or(10) + 1));
        assert_eq!(slot.take(), Some(11));
    }

    #[test]
    fn a_bell_never_blocks_and_rings_once() {
        let bell = Bell::default();
        for _ in 0..100 {
            bell.ring();
        }
        assert!(bell.receiver().try_recv().is_ok());
        assert!(bell.receiver().try_recv().is_err());
    }
}
