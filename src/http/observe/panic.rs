//! Panic capture: a handler that panics becomes a generic 500 problem
//! response carrying what was caught (message and a stack of at most
//! [`MAX_PANIC_STACK_BYTES`]), for the middleware to log, count and trace.
//! The stack is taken by a process-wide panic hook while a handler is being
//! polled, since it is gone by the time `catch_unwind` returns.

use std::any::Any;
use std::backtrace::Backtrace;
use std::cell::{Cell, RefCell};
use std::sync::Once;

use poem::Response;

use crate::http::problem::Problem;

/// Longest stack kept in a panic's log record (CONTRACT 8).
pub const MAX_PANIC_STACK_BYTES: usize = 4 * 1024;

/// What the panic catcher calls with a caught panic's payload.
pub(super) type PanicHandler = fn(Box<dyn Any + Send + 'static>) -> Response;

/// A panic caught in a handler, attached to the 500 it became.
#[derive(Debug, Clone)]
pub(super) struct CaughtPanic {
    pub(super) message: String,
    pub(super) stack: String,
}

/// The 500 a caught panic becomes: a generic problem response, with what
/// was caught attached for the middleware to log.
pub(super) fn panic_response(payload: Box<dyn Any + Send + 'static>) -> Response {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned());
    let stack = LAST_PANIC_STACK
        .with(|s| s.borrow_mut().take())
        .unwrap_or_default();
    let mut response = Problem::internal().into_response();
    response
        .extensions_mut()
        .insert(CaughtPanic { message, stack });
    response
}

thread_local! {
    /// Set while a request's handler is being polled on this thread.
    static IN_HANDLER: Cell<bool> = const { Cell::new(false) };
    /// The stack of the last handler panic on this thread, for the catcher.
    static LAST_PANIC_STACK: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Marks this thread as polling a handler until dropped; restores the
/// previous mark, so nested handlers (none today) would also be right.
pub(super) struct InHandler(bool);

impl InHandler {
    pub(super) fn enter() -> Self {
        Self(IN_HANDLER.with(|f| f.replace(true)))
    }
}

impl Drop for InHandler {
    fn drop(&mut self) {
        IN_HANDLER.with(|f| f.set(self.0));
    }
}

/// Installs, once per process, a panic hook that keeps the stack of a
/// handler panic for the catcher (the stack is gone by the time
/// `catch_unwind` returns). Panics elsewhere go to the previous hook.
pub(super) fn install_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_HANDLER.with(Cell::get) {
                let stack = format!("{info}\n{}", Backtrace::force_capture());
                let stack = truncate_utf8(stack, MAX_PANIC_STACK_BYTES);
                LAST_PANIC_STACK.with(|s| *s.borrow_mut() = Some(stack));
            } else {
                previous(info);
            }
        }));
    });
}

/// Cuts `text` to at most `max` bytes on a character boundary.
fn truncate_utf8(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacks_are_cut_on_a_character_boundary() {
        let text = "é".repeat(3000);
        let cut = truncate_utf8(text, MAX_PANIC_STACK_BYTES);
        assert!(cut.len() <= MAX_PANIC_STACK_BYTES);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
