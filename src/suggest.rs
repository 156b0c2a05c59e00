//! The one did-you-mean helper, shared by keys, layer names, arguments and activations, and
//! the wording helpers every message uses: `` `a`, `b` or `c` `` lists and grouped numbers.

/// A did-you-mean candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Suggestion<'a> {
    /// The candidate.
    pub word: &'a str,
    /// Whether the word is a near-certain typo of the candidate (one swapped, changed or
    /// dropped letter inside the word, or another case), so that replacing it cannot change
    /// what the user meant. Editors apply only these as quick fixes; the rest is help text:
    /// `adamw` is not a typo of `adam`, nor `relu6` of `relu`.
    pub certain: bool,
}

/// The candidate closest to `word`, if one is close enough to be a likely typo.
///
/// Closeness is Jaro-Winkler similarity (good at typos and shared prefixes) with a
/// Levenshtein fallback for short words; ties keep the first candidate.
pub fn did_you_mean<'a, I>(word: &str, candidates: I) -> Option<Suggestion<'a>>
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
    best.map(|(candidate, _)| Suggestion {
        word: candidate,
        certain: is_typo(word, candidate),
    })
}

/// Whether `word` is `candidate` with one typing slip: another case, two neighbours swapped,
/// one letter changed (in a word of four or more, not the first), or one letter dropped or
/// doubled inside the word, or a plural `s` at its end (elsewhere at the ends a different
/// word usually starts or ends).
fn is_typo(word: &str, candidate: &str) -> bool {
    if word.eq_ignore_ascii_case(candidate) {
        return true;
    }
    let word: Vec<char> = word.to_lowercase().chars().collect();
    let candidate: Vec<char> = candidate.to_lowercase().chars().collect();
    let prefix = word
        .iter()
        .zip(&candidate)
        .take_while(|(a, b)| a == b)
        .count();
    let suffix = word
        .iter()
        .rev()
        .zip(candidate.iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let (shorter, longer) = if word.len() <= candidate.len() {
        (&word, &candidate)
    } else {
        (&candidate, &word)
    };
    match longer.len() - shorter.len() {
        0 => {
            let differing: Vec<usize> = (0..word.len())
                .filter(|&i| word[i] != candidate[i])
                .collect();
            match differing.as_slice() {
                [i] => word.len() >= 4 && *i > 0,
                [i, j] => *j == i + 1 && word[*i] == candidate[*j] && word[*j] == candidate[*i],
                _ => false,
            }
        }
        1 => {
            let inside = prefix > 0 && prefix < shorter.len();
            // A plural `s` dropped or added at the end is a slip (`filter` for `filters`);
            // another letter there makes another word (`adamw`, `relu6`).
            let plural = prefix == shorter.len() && longer.last() == Some(&'s');
            prefix + suffix >= shorter.len() && shorter.len() >= 4 && (inside || plural)
        }
        _ => false,
    }
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
    did_you_mean(word, candidates.iter().copied())
        .map(|best| format!("did you mean `{}`?", best.word))
}

/// `a, b or c`: items joined with commas and a final `or`.
pub fn either<S: AsRef<str>>(items: &[S]) -> String {
    match items.split_last() {
        None => String::new(),
        Some((last, [])) => last.as_ref().to_string(),
        Some((last, rest)) => {
            let rest: Vec<&str> = rest.iter().map(AsRef::as_ref).collect();
            format!("{} or {}", rest.join(", "), last.as_ref())
        }
    }
}

/// `` `a`, `b` or `c` ``: words in backticks, for messages.
pub fn one_of<S: AsRef<str>>(words: &[S]) -> String {
    let quoted: Vec<String> = words
        .iter()
        .map(|word| format!("`{}`", word.as_ref()))
        .collect();
    either(&quoted)
}

/// `301,070`: a count with thousands separators.
pub fn grouped(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (idx, ch) in digits.chars().enumerate() {
        if idx > 0 && (digits.len() - idx).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::did_you_mean;

    fn best<'a>(word: &str, names: [&'a str; 7]) -> Option<(&'a str, bool)> {
        did_you_mean(word, names).map(|best| (best.word, best.certain))
    }

    #[test]
    fn suggests_close_names_and_not_far_ones() {
        let names = ["conv", "pool", "dense", "dropout", "relu", "adam", "kernel"];
        assert_eq!(best("cnov", names), Some(("conv", true)));
        assert_eq!(best("desne", names), Some(("dense", true)));
        assert_eq!(best("Dense", names), Some(("dense", true)));
        assert_eq!(best("dence", names), Some(("dense", true)));
        assert_eq!(best("dropot", names), Some(("dropout", true)));
        assert_eq!(best("kernels", names), Some(("kernel", true)));
        assert_eq!(best("transformer", names), None);
    }

    #[test]
    fn different_words_are_suggested_but_not_certain() {
        let names = ["conv", "pool", "dense", "dropout", "relu", "adam", "kernel"];
        assert_eq!(best("adamw", names), Some(("adam", false)));
        assert_eq!(best("relu6", names), Some(("relu", false)));
        assert_eq!(
            best("conv2d", names).map(|(_, certain)| certain),
            Some(false)
        );
        assert_ne!(best("kernel_regularizer", names), Some(("kernel", true)));
    }
}
