//! One module per subcommand. Each gathers what its work needs from the adapters
//! (the Mailbox, Brevo, the state store), does it, and returns a
//! [`Report`](crate::output::Report); none prints, and none calls another. Two steps
//! that several commands share are not commands: `brevo_day` and `staging`.

pub mod brevo_day;
pub mod credits;
pub mod dead_letters;
pub mod doctor;
pub mod drain;
pub mod events;
pub mod peek;
pub mod publish;
pub mod reprioritize;
pub mod staging;
pub mod stats;

/// The JSON Schema of every `--json` output, generated from the output types, with the
/// name of its file in `schemas/` (a test keeps those files fresh).
pub fn json_schemas() -> Vec<(&'static str, schemars::Schema)> {
    use schemars::schema_for;
    vec![
        ("credits", schema_for!(credits::Credits)),
        ("dead-letters", schema_for!(dead_letters::Listing)),
        ("dead-letters-recheck", schema_for!(dead_letters::Recheck)),
        ("doctor", schema_for!(doctor::Doctor)),
        ("drain", schema_for!(crate::drain::Summary)),
        ("drain-dry-run", schema_for!(crate::drain::Plan)),
        ("events", schema_for!(events::Summary)),
        ("delivery-outcome", schema_for!(crate::delivery::Outcome)),
        ("peek", schema_for!(peek::Peek)),
        ("publish", schema_for!(publish::Summary)),
        ("reprioritize", schema_for!(reprioritize::Summary)),
        ("reprioritize-dry-run", schema_for!(reprioritize::Plan)),
        ("stats", schema_for!(stats::Stats)),
    ]
}
