//! `strata explain CODE`: the long explanation of a diagnostic code, as `rustc --explain` gives
//! one — the code's section of docs/diagnostics.md, which is compiled into the binary. The code
//! may be written with or without `strata::`, and with `::` or `.` (`layer.unknown`, the
//! fixture folders' spelling). Without a code, every code with the first sentence of its
//! section.

use super::output::OutputFormat;
use super::{EXIT_OK, EXIT_USAGE};
use serde_json::json;

/// docs/diagnostics.md, one `## strata::…` section per code.
const DIAGNOSTICS_MD: &str = include_str!("../../docs/diagnostics.md");

/// The prefix every code starts with.
const PREFIX: &str = "strata::";

/// Prints the explanation of `code`, or the list of codes; returns the exit status (2 for an
/// unknown code).
pub fn run(code: Option<&str>, format: OutputFormat) -> u8 {
    let Some(code) = code else {
        return list(format);
    };
    let wanted = normalise(code);
    let Some(text) = explanation(&wanted) else {
        eprintln!("error: unknown diagnostic code `{}`", code.trim());
        // Compared without the common prefix, which would make every code look close.
        let codes: Vec<&str> = sections()
            .iter()
            .map(|(code, _)| code.trim_start_matches(PREFIX))
            .collect();
        let written = wanted.trim_start_matches(PREFIX);
        match crate::suggest::did_you_mean(written, codes.iter().copied()) {
            Some(best) => eprintln!("help: did you mean `{PREFIX}{}`?", best.word),
            None => eprintln!("help: `strata explain` lists every code"),
        }
        return EXIT_USAGE;
    };
    match format {
        OutputFormat::Json => println!("{}", json!({ "code": wanted, "explanation": text })),
        OutputFormat::Human { .. } | OutputFormat::Github => println!("{wanted}\n\n{text}"),
    }
    EXIT_OK
}

/// `layer.unknown`, `Strata::Layer::Unknown`, `strata.layer.unknown` → `strata::layer::unknown`.
pub fn normalise(code: &str) -> String {
    let code = code.trim().to_ascii_lowercase().replace('.', "::");
    let code = code.trim_start_matches(':');
    if code.starts_with(PREFIX) {
        code.to_string()
    } else {
        format!("{PREFIX}{code}")
    }
}

/// Every `## strata::…` section of the page: the code and the text under its heading, up to
/// the next heading.
pub fn sections() -> Vec<(&'static str, &'static str)> {
    let mut found: Vec<(&'static str, usize, usize)> = Vec::new();
    let mut offset = 0;
    for line in DIAGNOSTICS_MD.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        if let Some(heading) = line.strip_prefix("## ") {
            if let Some((_, _, end)) = found.last_mut() {
                *end = start;
            }
            let heading = heading.trim();
            if heading.starts_with(PREFIX) {
                found.push((heading, offset, DIAGNOSTICS_MD.len()));
            }
        }
    }
    found
        .into_iter()
        .filter_map(|(code, start, end)| Some((code, DIAGNOSTICS_MD.get(start..end)?)))
        .collect()
}

/// The explanation of a normalised code: its section without the page's test markers
/// (`<!-- error: … -->` lines), trimmed.
pub fn explanation(code: &str) -> Option<String> {
    let (_, body) = sections().into_iter().find(|(known, _)| *known == code)?;
    let kept: Vec<&str> = body
        .lines()
        .filter(|line| !(line.trim_start().starts_with("<!--") && line.trim_end().ends_with("-->")))
        .collect();
    Some(kept.join("\n").trim().to_string())
}

/// The first sentence of an explanation, for the list of codes.
fn summary(text: &str) -> String {
    let paragraph = text.split("\n\n").next().unwrap_or_default();
    let joined = paragraph.split_whitespace().collect::<Vec<_>>().join(" ");
    let sentence = match joined.find(". ") {
        Some(end) => joined[..=end].to_string(),
        None => joined,
    };
    if sentence.chars().count() <= SUMMARY_WIDTH {
        return sentence;
    }
    let cut: String = sentence.chars().take(SUMMARY_WIDTH).collect();
    let cut = cut.rsplit_once(' ').map_or(cut.as_str(), |(head, _)| head);
    format!("{}…", cut.trim_end_matches([',', ':', ';']))
}

/// The longest summary in the list of codes, in characters.
const SUMMARY_WIDTH: usize = 80;

fn list(format: OutputFormat) -> u8 {
    let entries: Vec<(&str, String)> = sections()
        .into_iter()
        .map(|(code, _)| (code, summary(&explanation(code).unwrap_or_default())))
        .collect();
    match format {
        OutputFormat::Json => {
            let array: Vec<_> = entries
                .iter()
                .map(|(code, summary)| json!({ "code": code, "summary": summary }))
                .collect();
            println!("{}", json!(array));
        }
        OutputFormat::Human { .. } | OutputFormat::Github => {
            let width = entries
                .iter()
                .map(|(code, _)| code.len())
                .max()
                .unwrap_or(0);
            for (code, summary) in &entries {
                println!("{code:width$}  {summary}");
            }
            println!("\n`strata explain CODE` prints one in full.");
        }
    }
    EXIT_OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_normalised() {
        for written in [
            "strata::layer::unknown",
            "layer::unknown",
            "layer.unknown",
            "strata.layer.unknown",
            " Layer::Unknown ",
        ] {
            assert_eq!(normalise(written), "strata::layer::unknown", "{written}");
        }
    }

    #[test]
    fn every_code_has_a_section() {
        let codes = crate::diagnostics::codes::ALL
            .iter()
            .chain(crate::diagnostics::codes::DATA)
            .chain(crate::diagnostics::codes::RUN)
            .chain(crate::diagnostics::codes::CHECKPOINT);
        for code in codes {
            let text = explanation(code).unwrap_or_default();
            assert!(!text.is_empty(), "{code}");
            assert!(!text.contains("\n## "), "{code} runs into the next section");
        }
    }
}
