//! One module per subcommand. Each gathers what its work needs from the adapters
//! (the Mailbox, Brevo, the state store), does it, and returns a
//! [`Report`](crate::output::Report); none prints, and none calls another.

pub mod credits;
pub mod dead_letters;
pub mod drain;
pub mod peek;
pub mod publish;
pub mod reprioritize;
pub mod stats;
