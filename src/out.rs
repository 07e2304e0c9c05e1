//! Standard output and standard error that may be a closed pipe
//! (`flow runs | head`, `flow validate bad.yaml 2>&1 | head -1`): a write
//! that fails ends that stream quietly, where `println!` or `eprintln!`
//! would panic (exit 101), and the command goes on (a run still finishes and
//! writes its report, a bad spec still exits 2).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set at the first write that fails: nothing more is written there.
static CLOSED: AtomicBool = AtomicBool::new(false);
static ERR_CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes to standard output, and flushes, unless it has been closed.
pub fn write(args: std::fmt::Arguments<'_>) {
    write_to(&mut std::io::stdout().lock(), &CLOSED, args);
}

/// Writes to standard error, unless it has been closed.
pub fn write_err(args: std::fmt::Arguments<'_>) {
    write_to(&mut std::io::stderr().lock(), &ERR_CLOSED, args);
}

fn write_to(out: &mut impl Write, closed: &AtomicBool, args: std::fmt::Arguments<'_>) {
    if closed.load(Ordering::Relaxed) {
        return;
    }
    if out.write_fmt(args).and_then(|()| out.flush()).is_err() {
        closed.store(true, Ordering::Relaxed);
    }
}

/// An error and its causes, `: `-joined as `{:#}` does, leaving out a
/// cause whose text the message already holds: the store's and the
/// memo's errors name their OS error in their own message, and it read
/// twice (`create X: No such file or directory (os error 2): No such file
/// or directory (os error 2)`).
pub fn chain(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
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

/// `eprint!` to a standard error that may be closed.
macro_rules! err {
    ($($arg:tt)*) => { $crate::out::write_err(format_args!($($arg)*)) };
}

/// `eprintln!` to a standard error that may be closed.
macro_rules! errln {
    ($($arg:tt)*) => { $crate::out::write_err(format_args!("{}\n", format_args!($($arg)*))) };
}

pub(crate) use {err, errln, out, outln};
