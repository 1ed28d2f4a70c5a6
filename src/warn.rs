//! Notes for the operator and the error that ends a run, on stderr, whatever the
//! output mode. The one writer outside `src/output/`: a leaf at the bottom of the layers
//! (it imports nothing of the crate), so that any layer may warn without importing the
//! output machinery above it.

use std::io::{self, Write};

/// A note for the operator. A closed stderr is ignored: there is no one left to tell.
pub fn notice(text: &str) {
    let _ = writeln!(io::stderr(), "acaso-mail: {text}");
}

/// A warning for the operator.
pub fn warning(text: &str) {
    notice(&format!("warning: {text}"));
}

/// The error that ends a run, with its whole chain.
pub fn error(err: &anyhow::Error) {
    let _ = writeln!(io::stderr(), "acaso-mail: error: {err:#}");
}

/// A command line clap refused, in the same form as every other error
/// (`acaso-mail: error: ...`, then clap's usage line and hint).
pub fn usage_error(rendered: &str) {
    let text = rendered.strip_prefix("error: ").unwrap_or(rendered);
    let _ = write!(io::stderr(), "acaso-mail: error: {text}");
}
