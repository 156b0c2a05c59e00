//! The one did-you-mean helper, shared by keys, layer names, arguments and activations.

/// The candidate closest to `word`, if one is close enough to be a likely typo.
///
/// Closeness is Jaro-Winkler similarity (good at typos and shared prefixes) with a
/// Levenshtein fallback for short words; ties keep the first candidate.
pub fn did_you_mean<'a, I>(word: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let lower = word.to_ascii_lowercase();
    let mut best: Option<(&'a str, f64)> = None;
    for candidate in candidates {
        if candidate == word {
            continue;
        }
        let score = similarity(&lower, candidate);
        if score >= 0.8 && best.is_none_or(|(_, best_score)| score > best_score) {
            best = Some((candidate, score));
        }
    }
    best.map(|(candidate, _)| candidate)
}

/// A similarity in 0..=1 between a typed word and a candidate.
fn similarity(word: &str, candidate: &str) -> f64 {
    if word == candidate {
        return 1.0;
    }
    let jaro = strsim::jaro_winkler(word, candidate);
    let edits = strsim::levenshtein(word, candidate);
    let max_edits = (candidate.len().max(word.len()) / 3).max(1);
    if edits <= max_edits {
        jaro.max(0.8 + 0.01 * (max_edits - edits) as f64)
    } else {
        jaro
    }
}

/// `help: did you mean \`x\`?` text for a suggestion, or `None`.
pub fn help_for(word: &str, candidates: &[&'static str]) -> Option<String> {
    did_you_mean(word, candidates.iter().copied()).map(|best| format!("did you mean `{best}`?"))
}

#[cfg(test)]
mod tests {
    use super::did_you_mean;

    #[test]
    fn suggests_close_names_and_not_far_ones() {
        let names = ["conv", "pool", "dense", "dropout", "relu"];
        assert_eq!(did_you_mean("cnov", names), Some("conv"));
        assert_eq!(did_you_mean("desne", names), Some("dense"));
        assert_eq!(did_you_mean("Dense", names), Some("dense"));
        assert_eq!(did_you_mean("transformer", names), None);
    }
}
