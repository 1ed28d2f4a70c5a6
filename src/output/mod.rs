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
use crate::gauges::RunGauges;

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

/// Stdout was closed by its reader (`acaso-mail peek | head -1`): not a failure.
#[derive(Debug, thiserror::Error)]
#[error("stdout was closed")]
pub struct StdoutClosed;

/// Prints a report as the configuration asks: its JSON with `--json`; else its text,
/// unless `--quiet` hides a summary that reports no failure.
pub fn emit(cfg: &Config, report: &Report) -> anyhow::Result<()> {
    if cfg.json {
        return line(&serde_json::to_string_pretty(&report.json)?);
    }
    if cfg.quiet && !report.is_answer && report.failure.is_none() {
        return Ok(());
    }
    if report.blocks.is_empty() {
        return Ok(());
    }
    line(&report.text(colour(cfg)))
}

fn line(text: &str) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .map_err(|e| match e.kind() {
            io::ErrorKind::BrokenPipe => anyhow::Error::new(StdoutClosed),
            _ => anyhow::Error::new(e).context("writing to stdout"),
        })
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
        ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} ({rate}, eta {eta})")
    {
        let style = style.with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = w.write_str(&rate(state.per_sec()));
            },
        );
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_string());
    pb
}

/// The terminal's bar follows a drain.
impl crate::drain::Progress for ProgressBar {
    fn step(&self) {
        self.inc(1);
    }
    fn done(&self) {
        self.finish_and_clear();
    }
}

/// A rate as the progress bar shows it: whole steps per second, thousands grouped
/// (`1,509/s`); indicatif's own `{per_sec}` shows four decimals.
pub fn rate(per_sec: f64) -> String {
    let whole = if per_sec.is_finite() && per_sec > 0.0 {
        per_sec.round() as u64
    } else {
        0
    };
    format!("{}/s", indicatif::HumanCount(whole))
}

/// Whether a run ended because its reader closed stdout. Only a write to stdout says
/// so: a broken pipe anywhere else (a socket to RabbitMQ) is a real failure.
pub fn is_stdout_closed(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.is::<StdoutClosed>())
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

    #[test]
    fn the_progress_rate_is_whole_steps_per_second() {
        assert_eq!(rate(1509.1423), "1,509/s");
        assert_eq!(rate(0.4), "0/s");
        assert_eq!(rate(f64::NAN), "0/s");
        assert_eq!(rate(2_000_000.6), "2,000,001/s");
    }

    #[test]
    fn only_a_closed_stdout_ends_a_run_quietly() {
        let closed = anyhow::Error::new(StdoutClosed).context("printing the table");
        assert!(is_stdout_closed(&closed));
        // A broken pipe to RabbitMQ (or anything else) is a failure, not success.
        let socket = io::Error::new(io::ErrorKind::BrokenPipe, "Broken pipe (os error 32)");
        let broker = anyhow::Error::new(socket).context("publishing to acaso.mail");
        assert!(!is_stdout_closed(&broker));
    }
}
