//! GitHub Actions workflow annotations (`::error file=…,line=…::message`).

use super::{Diagnostic, LineIndex, Severity, SourceFile};

/// One workflow command line for `diagnostic`, without the trailing newline.
pub fn render_github(diagnostic: &Diagnostic, source: &SourceFile) -> String {
    let index = LineIndex::new(&source.text);
    let level = match diagnostic.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let mut properties = vec![format!("file={}", escape_property(&source.name))];
    if let Some(label) = diagnostic.primary() {
        let (line, column) = index.line_column(&source.text, label.span.offset);
        let (end_line, end_column) = index.line_column(&source.text, label.span.end());
        properties.push(format!("line={line}"));
        properties.push(format!("col={column}"));
        properties.push(format!("endLine={end_line}"));
        properties.push(format!("endColumn={end_column}"));
    }
    properties.push(format!("title={}", escape_property(diagnostic.code)));
    let mut message = diagnostic.message.clone();
    if let Some(label) = diagnostic
        .primary()
        .filter(|label| !label.message.is_empty())
    {
        message.push_str(": ");
        message.push_str(&label.message);
    }
    if let Some(help) = &diagnostic.help {
        message.push_str("\nhelp: ");
        message.push_str(help);
    }
    format!(
        "::{level} {}::{}",
        properties.join(","),
        escape_data(&message)
    )
}

/// Escapes a workflow command's message.
fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a workflow command's property value.
fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}
