//! "Did you mean ..?": the closest of a few known names to a misspelt one.

/// The candidate closest to `name`: one that differs only in case, or one
/// within two edits (and fewer edits than `name` has characters, so that
/// `ab` does not suggest `id`).
pub(crate) fn closest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let name_len = name.chars().count();
    candidates
        .into_iter()
        .filter(|&candidate| candidate != name)
        .filter_map(|candidate| {
            if candidate.eq_ignore_ascii_case(name) {
                return Some((0, candidate));
            }
            let distance = levenshtein(name, candidate);
            (distance <= 2 && distance < name_len).then_some((distance, candidate))
        })
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

/// The number of single-character insertions, deletions and substitutions
/// that turn `a` into `b`.
fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("ttll", "ttl"), 1);
        assert_eq!(levenshtein("tenat", "tenant"), 1);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
    }

    #[test]
    fn suggestions() {
        assert_eq!(closest("ttll", ["ttl", "key", "tier"]), Some("ttl"));
        assert_eq!(closest("tenat", ["tenant", "id"]), Some("tenant"));
        assert_eq!(closest("ID", ["tenant", "id"]), Some("id"));
        assert_eq!(closest("ab", ["id"]), None);
        assert_eq!(closest("zzzzzz", ["ttl"]), None);
    }
}
