//! `train.class_weight` turned into one weight per class when training starts, counted on the
//! training images (after any validation split), and the check of its class names against the
//! data's classes (`strata::data::unknown_class`).

use crate::diagnostics::{codes, Diagnostic, Span};
use crate::settings::ClassWeight;
use crate::spec::SpecFile;

/// Each class's weight, by label, for `setting`; empty when there is none (every class
/// weighs 1). `counts[label]` is the number of training images of each class.
///
/// `balanced` is `n_images / (n_classes * n_images_of_class)` (scikit-learn's
/// `compute_class_weight("balanced")`); a class without training images weighs 1, as it never
/// appears in the loss. A map names classes by folder name; classes it leaves out weigh 1,
/// and names that are not classes are one diagnostic each, at the name in the spec.
pub fn class_weights(
    setting: Option<&ClassWeight>,
    classes: &[String],
    counts: &[usize],
    spec: Option<&SpecFile>,
) -> Result<Vec<f32>, Vec<Diagnostic>> {
    match setting {
        None => Ok(Vec::new()),
        Some(ClassWeight::Balanced) => {
            let total: usize = counts.iter().sum();
            let n_classes = counts.len() as f64;
            Ok(counts
                .iter()
                .map(|&count| match count {
                    0 => 1.0,
                    _ => (total as f64 / (n_classes * count as f64)) as f32,
                })
                .collect())
        }
        Some(ClassWeight::ByName(named)) => {
            let unknown: Vec<Diagnostic> = named
                .iter()
                .filter(|(name, _)| !classes.contains(name))
                .map(|(name, _)| {
                    let own =
                        spec.and_then(|spec| spec.key_span(&format!("train.class_weight.{name}")));
                    let span = own.or_else(|| spec?.key_span("train.class_weight"));
                    unknown_class(name, classes, span.unwrap_or_default(), own.is_some())
                })
                .collect();
            if !unknown.is_empty() {
                return Err(unknown);
            }
            Ok(classes
                .iter()
                .map(|class| {
                    named
                        .iter()
                        .find(|(name, _)| name == class)
                        .map_or(1.0, |(_, weight)| *weight as f32)
                })
                .collect())
        }
    }
}

/// `class_weight` names a class the training data does not have. `span` is the name's key
/// when `at_name`, else the `class_weight` key; at the name, a near-certain typo of a class
/// comes with the edit that fixes it.
pub fn unknown_class(name: &str, classes: &[String], span: Span, at_name: bool) -> Diagnostic {
    let diagnostic = Diagnostic::error(
        codes::DATA_UNKNOWN_CLASS,
        format!("`class_weight` names `{name}`, which is not a class of the training data"),
    )
    .with_primary(span, "no class folder has this name");
    match crate::suggest::did_you_mean(name, classes.iter().map(String::as_str)) {
        Some(best) if best.certain && at_name => diagnostic
            .with_help(format!("did you mean `{}`?", best.word))
            .with_replacement(span, best.word),
        Some(best) => diagnostic.with_help(format!("did you mean `{}`?", best.word)),
        None => diagnostic.with_help(format!(
            "the name must be one of {}",
            crate::suggest::one_of(classes)
        )),
    }
}
