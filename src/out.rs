//! Standard output that may be a closed pipe (`flow runs | head`): a write
//! that fails ends the output quietly, where `println!` would panic, and
//! the command goes on (a run still finishes and writes its report).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set at the first write that fails: nothing more is written.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes to standard output, and flushes, unless it has been closed.
pub fn write(args: std::fmt::Arguments<'_>) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if out.write_fmt(args).and_then(|()| out.flush()).is_err() {
        CLOSED.store(true, Ordering::Relaxed);
    }
}

/// `print!` to a standard output that may be closed.
macro_rules! out {
    ($($arg:tt)*) => { $crate::out::write(format_args!($($arg)*)) };
}

/// `println!` to a standard output that may be closed.
macro_rules! outln {
    () => { $crate::out::write(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::out::write(format_args!("{}\n", format_args!($($arg)*))) };
}

pub(crate) use {out, outln};
