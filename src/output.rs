//! The one place that writes for people and scripts. Commands return a [`Report`]:
//! text blocks for people, one JSON value for scripts, metric gauges for Prometheus;
//! [`emit`] prints it. Only this module knows about terminals and colour: tables are
//! coloured, and progress bars drawn on stderr, only when a person is watching.

use std::io::{self, IsTerminal, Write};

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, Color, ContentArrangement, Table};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use serde_json::Value;

use crate::config::{ColorWhen, Config};
use crate::error::Failure;
use crate::metrics::RunGauges;

/// A piece of text for people.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// One line (or several, already broken).
    Line(String),
    /// A table.
    Table {
        /// Column titles.
        headers: Vec<String>,
        /// The rows, one string per cell.
        rows: Vec<Vec<String>>,
    },
}

/// What a command has to say.
#[derive(Debug)]
pub struct Report {
    /// For people.
    pub blocks: Vec<Block>,
    /// For scripts (`--json`): exactly this document.
    pub json: Value,
    /// Whether the text is the command's answer (shown even with `--quiet`), rather
    /// than a summary of work done (which `--quiet` hides).
    pub is_answer: bool,
    /// For Prometheus, when the run pushes metrics.
    pub gauges: RunGauges,
    /// A failure to exit with once the report is shown.
    pub failure: Option<Failure>,
}

impl Report {
    /// A report whose JSON is `value`.
    pub fn json(value: &impl Serialize) -> serde_json::Result<Self> {
        Ok(Report {
            blocks: Vec::new(),
            json: serde_json::to_value(value)?,
            is_answer: false,
            gauges: RunGauges::default(),
            failure: None,
        })
    }

    /// Adds a line for people.
    pub fn line(mut self, text: impl Into<String>) -> Self {
        self.blocks.push(Block::Line(text.into()));
        self
    }

    /// Adds a table for people.
    pub fn table(mut self, headers: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> Self {
        self.blocks.push(Block::Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: rows.into_iter().collect(),
        });
        self
    }

    /// Marks the text as the command's answer: `--quiet` does not hide it.
    pub fn answer(mut self) -> Self {
        self.is_answer = true;
        self
    }

    /// The text for people, coloured or not.
    pub fn text(&self, color: bool) -> String {
        let parts: Vec<String> = self
            .blocks
            .iter()
            .map(|b| match b {
                Block::Line(l) => l.clone(),
                Block::Table { headers, rows } => table(headers, rows, color).to_string(),
            })
            .collect();
        parts.join("\n")
    }
}

/// Prints a report as the configuration asks: its JSON with `--json`; else its text,
/// unless `--quiet` hides a summary that reports no failure.
pub fn emit(cfg: &Config, report: &Report) -> io::Result<()> {
    if cfg.json {
        let text = serde_json::to_string_pretty(&report.json).map_err(io::Error::other)?;
        return line(&text);
    }
    if cfg.quiet && !report.is_answer && report.failure.is_none() {
        return Ok(());
    }
    if report.blocks.is_empty() {
        return Ok(());
    }
    line(&report.text(colour(cfg)))
}

fn line(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()
}

/// Whether tables get colour: asked for, or `auto` on a terminal that wants it.
fn colour(cfg: &Config) -> bool {
    match cfg.color {
        ColorWhen::Always => true,
        ColorWhen::Never => false,
        ColorWhen::Auto => io::stdout().is_terminal() && !cfg.env_refuses_color,
    }
}

fn table(headers: &[String], rows: &[Vec<String>], color: bool) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    // The colour decision is made here; comfy-table must not redo it.
    if color {
        t.enforce_styling();
    } else {
        t.force_no_tty();
    }
    t.set_header(headers.iter().map(|h| {
        let c = Cell::new(h);
        if color { c.fg(Color::Cyan) } else { c }
    }));
    for r in rows {
        t.add_row(r.clone());
    }
    t
}

/// A progress bar of `len` steps on stderr, drawn only for a person watching (stderr
/// a terminal, neither `--json` nor `--quiet`), so cron mail and scripts stay clean.
pub fn progress(cfg: &Config, len: u64, what: &str) -> ProgressBar {
    if cfg.json || cfg.quiet || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} ({per_sec}, eta {eta})")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_string());
    pb
}

/// A note for the operator on stderr, whatever the output mode.
pub fn notice(text: &str) {
    eprintln!("acaso-mail: {text}");
}

/// The error that ends a run, with its whole chain, on stderr.
pub fn error(err: &anyhow::Error) {
    eprintln!("acaso-mail: error: {err:#}");
}

/// A command line clap refused, on stderr, in the same form as every other error
/// (`acaso-mail: error: ...`, then clap's usage line and hint).
pub fn usage_error(rendered: &str) {
    let text = rendered.strip_prefix("error: ").unwrap_or(rendered);
    eprint!("acaso-mail: error: {text}");
}

/// Whether an error is a closed stdout (`acaso-mail peek | head -1`).
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|e| e.downcast_ref::<io::Error>())
        .any(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_joins_lines_and_tables_and_colours_only_when_asked() {
        let r = Report::json(&serde_json::json!({"n": 1}))
            .expect("json")
            .line("two mails")
            .table(&["#", "to"], [vec!["1".into(), "a@example.org".into()]]);
        let plain = r.text(false);
        assert!(plain.starts_with("two mails\n"), "{plain}");
        assert!(
            plain.contains("a@example.org") && !plain.contains('\u{1b}'),
            "{plain}"
        );
        assert!(r.text(true).contains('\u{1b}'));
        assert_eq!(r.json["n"], 1);
    }
}
