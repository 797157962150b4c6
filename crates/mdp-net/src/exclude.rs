//! `mdp-send --exclude PATTERN` and `--exclude-from FILE`: gitignore-style
//! patterns, matched by the `ignore` crate (ripgrep's matcher) against the
//! paths as the push names them, i.e. as they land under the receiver's
//! directory (`site/cache/x.tmp` for a file below the pushed `site`).
//!
//! As in a `.gitignore`: `*.tmp` matches a name at any depth, `/site/cache`
//! is anchored at the top of the push, `cache/` matches directories only,
//! `**` spans directories, and `!keep.tmp` takes a path back in. An
//! excluded directory is not walked at all.

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use std::path::{Path, PathBuf};

/// The patterns of a push (none by default).
#[derive(Debug, Default)]
pub struct Exclude {
    matcher: Option<Gitignore>,
}

impl Exclude {
    /// No pattern: nothing is excluded.
    pub fn none() -> Exclude {
        Exclude::default()
    }

    /// The `patterns` given one by one, then the lines of each of `files`
    /// (blank lines and `#` comments skipped); the error names the pattern,
    /// or the file and line, that is not valid.
    pub fn new(patterns: &[String], files: &[PathBuf]) -> Result<Exclude, String> {
        if patterns.is_empty() && files.is_empty() {
            return Ok(Exclude::none());
        }
        let mut b = GitignoreBuilder::new("");
        for p in patterns {
            b.add_line(None, p)
                .map_err(|e| format!("--exclude {p:?} is not a valid pattern: {e}"))?;
        }
        for f in files {
            let text = std::fs::read_to_string(f).map_err(|e| {
                format!(
                    "cannot read --exclude-from {}: {e}{}",
                    f.display(),
                    crate::sys::io_fix(&e)
                )
            })?;
            for (n, line) in text.lines().enumerate() {
                b.add_line(Some(f.clone()), line).map_err(|e| {
                    format!(
                        "{}:{}: {line:?} is not a valid pattern: {e}",
                        f.display(),
                        n + 1
                    )
                })?;
            }
        }
        let matcher = b
            .build()
            .map_err(|e| format!("the --exclude patterns do not build: {e}"))?;
        Ok(Exclude {
            matcher: Some(matcher),
        })
    }

    /// True when the push leaves out `path` (a manifest path, `/`
    /// separated), a directory when `is_dir`.
    pub fn excludes(&self, path: &str, is_dir: bool) -> bool {
        match &self.matcher {
            Some(m) => m.matched(Path::new(path), is_dir).is_ignore(),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(patterns: &[&str]) -> Exclude {
        let p: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
        Exclude::new(&p, &[]).unwrap()
    }

    #[test]
    fn patterns_match_as_in_a_gitignore() {
        let e = ex(&["*.tmp", "/site/cache", "logs/", "!keep.tmp", "**/build/*.o"]);
        assert!(e.excludes("site/a.tmp", false));
        assert!(e.excludes("site/deep/er/b.tmp", false));
        assert!(
            !e.excludes("site/keep.tmp", false),
            "negation takes it back"
        );
        assert!(e.excludes("site/cache", true));
        assert!(!e.excludes("other/site/cache", true), "anchored at the top");
        assert!(e.excludes("site/logs", true));
        assert!(!e.excludes("site/logs", false), "logs/ is for directories");
        assert!(e.excludes("site/x/build/main.o", false));
        assert!(!e.excludes("site/main.rs", false));
        assert!(!Exclude::none().excludes("anything", false));
    }

    #[test]
    fn a_pattern_file_skips_comments_and_names_a_bad_line() {
        let d = crate::test_dir("exclude-from");
        let f = d.join("excludes");
        std::fs::write(&f, "# caches\n\n*.cache\n").unwrap();
        let e = Exclude::new(&[], std::slice::from_ref(&f)).unwrap();
        assert!(e.excludes("site/x.cache", false));
        std::fs::write(&f, "ok\n[z-a]\n").unwrap();
        let err = Exclude::new(&[], std::slice::from_ref(&f)).unwrap_err();
        assert!(err.starts_with(&format!("{}:2: ", f.display())), "{err}");
        let err = Exclude::new(&[], &[d.join("missing")]).unwrap_err();
        assert!(err.contains("check the path"), "{err}");
    }
}
