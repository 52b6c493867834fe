//! Glob patterns of policies (subject selectors) and grant policies, with
//! the two common forms matched without a regex: `*` and a plain name.
//! Every decision asks each policy whether it selects each subject it
//! gathers, and a compiled glob runs a regex each time: a tenth of a
//! decision's instructions at 10k bindings went to `kube-system` and `*`.

use globset::GlobMatcher;

#[derive(Debug, Clone)]
pub struct Pattern {
    glob: GlobMatcher,
    fast: Fast,
}

#[derive(Debug, Clone)]
enum Fast {
    /// `*`: any string.
    Any,
    /// No glob syntax: the pattern's own text alone.
    Literal,
    /// Anything else: the compiled glob.
    Glob,
}

/// The characters with a meaning in `globset`'s default syntax; a pattern
/// without any is a literal (case-sensitive, whole string).
const SYNTAX: &[char] = &['*', '?', '[', ']', '{', '}', '\\', '!', ','];

impl Pattern {
    pub fn is_match(&self, s: &str) -> bool {
        match &self.fast {
            Fast::Any => true,
            Fast::Literal => self.glob.glob().glob() == s,
            Fast::Glob => self.glob.is_match(s),
        }
    }
}

impl From<GlobMatcher> for Pattern {
    fn from(glob: GlobMatcher) -> Self {
        let p = glob.glob().glob();
        let fast = if p == "*" {
            Fast::Any
        } else if !p.contains(SYNTAX) {
            Fast::Literal
        } else {
            Fast::Glob
        };
        Pattern { glob, fast }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pattern(p: &str) -> Option<(Pattern, GlobMatcher)> {
        let g = globset::Glob::new(p).ok()?.compile_matcher();
        Some((Pattern::from(g.clone()), g))
    }

    #[test]
    fn the_common_forms_take_the_fast_path() {
        let (any, _) = pattern("*").unwrap();
        assert!(matches!(any.fast, Fast::Any));
        let (lit, _) = pattern("kube-system").unwrap();
        assert!(matches!(lit.fast, Fast::Literal));
        assert!(lit.is_match("kube-system") && !lit.is_match("kube-system2"));
        assert!(!lit.is_match("Kube-system"), "case matters, as in the glob");
        let (glob, _) = pattern("team-*").unwrap();
        assert!(matches!(glob.fast, Fast::Glob));
    }

    proptest! {
        /// Whatever the pattern, the fast path answers as the glob does.
        #[test]
        fn a_pattern_matches_what_its_glob_matches(
            p in "[a-c*?\\[\\]{},!\\\\/.-]{0,6}",
            s in "[a-c/.*?-]{0,6}",
        ) {
            if let Some((fast, glob)) = pattern(&p) {
                prop_assert_eq!(fast.is_match(&s), glob.is_match(&s), "{:?} on {:?}", p, s);
                prop_assert_eq!(fast.is_match(&p), glob.is_match(&p), "{:?} on itself", p);
            }
        }
    }
}
