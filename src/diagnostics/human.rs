//! Terminal rendering through miette: fancy with colour on a terminal, plain when piped,
//! and a fixed ASCII style for snapshot tests.

use super::{Diagnostic, Severity, SourceFile};
use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource};
use std::fmt;

/// How the terminal renderer draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HumanStyle {
    /// Unicode and colour, for a terminal.
    Fancy,
    /// Unicode without colour, for pipes and files.
    Plain,
    /// ASCII, no colour, 80 columns: deterministic, for tests.
    Test,
}

/// Renders `diagnostic` against `source` as miette draws it.
pub fn render_human(diagnostic: &Diagnostic, source: &SourceFile, style: HumanStyle) -> String {
    let theme = match style {
        HumanStyle::Fancy => GraphicalTheme::unicode(),
        HumanStyle::Plain => GraphicalTheme::unicode_nocolor(),
        HumanStyle::Test => GraphicalTheme::none(),
    };
    let mut handler = GraphicalReportHandler::new_themed(theme)
        .with_links(false)
        .with_width(if style == HumanStyle::Test { 80 } else { 100 });
    if style != HumanStyle::Fancy {
        handler = handler.without_syntax_highlighting();
    }
    let report = Report {
        diagnostic,
        source: NamedSource::new(source.name.clone(), source.text.to_string()),
    };
    let mut out = String::new();
    if handler.render_report(&mut out, &report).is_err() {
        out = format!("{}: {}\n", diagnostic.code, diagnostic.message);
    }
    out
}

/// Adapter that presents a [`Diagnostic`] to miette.
struct Report<'a> {
    diagnostic: &'a Diagnostic,
    source: NamedSource<String>,
}

impl fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Report")
            .field("diagnostic", self.diagnostic)
            .finish()
    }
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diagnostic.message)
    }
}

impl std::error::Error for Report<'_> {}

impl miette::Diagnostic for Report<'_> {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.diagnostic.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.diagnostic.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        let mut lines: Vec<String> = self.diagnostic.help.iter().cloned().collect();
        lines.extend(
            self.diagnostic
                .notes
                .iter()
                .map(|note| format!("note: {note}")),
        );
        if lines.is_empty() {
            None
        } else {
            Some(Box::new(lines.join("\n")))
        }
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        if self.diagnostic.labels.is_empty() {
            None
        } else {
            Some(&self.source)
        }
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.diagnostic.labels.is_empty() {
            return None;
        }
        Some(Box::new(self.diagnostic.labels.iter().map(|label| {
            let text = (!label.message.is_empty()).then(|| label.message.clone());
            let span = (label.span.offset, label.span.len);
            if label.primary {
                LabeledSpan::new_primary_with_span(text, span)
            } else {
                LabeledSpan::new_with_span(text, span)
            }
        })))
    }
}
