//! "Did you mean …?" for misspelt keys, zone names and cron names.

/// The candidate closest to `input`, if it is close enough to be a likely typo.
pub fn closest<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    ranked(input, candidates, 0.8).into_iter().next()
}

/// Up to `n` candidates close to `input`, best first.
pub fn closest_n<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>, n: usize) -> Vec<&'a str> {
    let mut close = ranked(input, candidates, 0.75);
    close.truncate(n);
    close
}

/// Candidates whose similarity to `input` (Jaro-Winkler, ignoring case) is at least `min`, best first.
fn ranked<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>, min: f64) -> Vec<&'a str> {
    let input = input.to_lowercase();
    let mut scored: Vec<_> = candidates
        .into_iter()
        .map(|candidate| (strsim::jaro_winkler(&input, &candidate.to_lowercase()), candidate))
        .filter(|(score, _)| *score >= min)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.into_iter().map(|(_, candidate)| candidate).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_typos_and_ignores_strangers() {
        assert_eq!(closest("cronn", ["cron", "ref", "timezone"]), Some("cron"));
        assert_eq!(closest("time_zone", ["cron", "ref", "timezone"]), Some("timezone"));
        assert_eq!(closest("xyz", ["cron", "ref", "timezone"]), None);
        assert_eq!(closest_n("Europe/Berln", ["Europe/Berlin", "Europe/Bern", "Asia/Tokyo"], 3)[0], "Europe/Berlin");
    }
}
