//! The parts of each program's manual that clap does not derive from its
//! options: examples, exit status, environment, files and notes.
//!
//! One source for two readers: [`help_text`] renders them at the end of
//! `--help`, and `cargo xtask dist` renders the same [`Section`]s as man
//! page sections (EXAMPLES, EXIT STATUS, ENVIRONMENT, FILES).

/// One section of a manual.
#[derive(Clone, Copy, Debug)]
pub struct Section {
    /// The man page's section name, in capitals (`EXIT STATUS`).
    pub title: &'static str,
    /// Its paragraphs, examples and entries, in order.
    pub items: &'static [Item],
}

/// One entry of a [`Section`].
#[derive(Clone, Copy, Debug)]
pub enum Item {
    /// A paragraph of prose.
    Para(&'static str),
    /// A command line and what it does.
    Example {
        /// What it does, as a sentence ending in a colon.
        what: &'static str,
        /// The command line (continued lines included).
        command: &'static str,
    },
    /// A term (an exit code, a variable, a path) and what it means.
    Entry {
        /// The term.
        term: &'static str,
        /// Its meaning.
        text: &'static str,
    },
}

/// Exit status 2, the same for both programs.
pub const EXIT_USAGE: Item = Item::Entry {
    term: "2",
    text: "usage error, bad configuration file, or local I/O error",
};

/// `RUST_LOG`, the same for both programs.
pub const ENV_RUST_LOG: Item = Item::Entry {
    term: "RUST_LOG",
    text: "log filter (info by default, warn with --quiet or --json), e.g. mdp=debug",
};

/// `JOURNAL_STREAM`, the same for both programs.
pub const ENV_JOURNAL_STREAM: Item = Item::Entry {
    term: "JOURNAL_STREAM",
    text: "set by systemd: log lines then carry no timestamp of their own",
};

/// The sections as the end of `--help` shows them.
pub fn help_text(sections: &[Section]) -> String {
    let mut out = String::new();
    for (i, section) in sections.iter().enumerate() {
        if i > 0 {
            out.truncate(out.trim_end().len());
            out.push_str("\n\n");
        }
        out.push_str(&title_case(section.title));
        out.push_str(":\n");
        for item in section.items {
            match item {
                Item::Para(text) => {
                    out.push_str(&indent(text, "  "));
                }
                Item::Example { what, command } => {
                    out.push_str(&indent(what, "  "));
                    out.push_str(&indent(command, "    "));
                    out.push('\n');
                }
                Item::Entry { term, text } => {
                    let pad = 6usize.saturating_sub(term.len()).max(1);
                    if term.len() < 6 {
                        let body = indent(text, &" ".repeat(8));
                        out.push_str(&format!("  {term}{}{}", " ".repeat(pad), &body[8..]));
                    } else {
                        out.push_str(&format!("  {term}\n"));
                        out.push_str(&indent(text, &" ".repeat(8)));
                    }
                }
            }
        }
    }
    out.truncate(out.trim_end().len());
    out
}

/// `EXIT STATUS` as `Exit status`.
fn title_case(title: &str) -> String {
    let lower = title.to_lowercase();
    let mut chars = lower.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn indent(text: &str, by: &str) -> String {
    text.lines().map(|l| format!("{by}{l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_text_lays_out_examples_and_entries() {
        const S: &[Section] = &[
            Section {
                title: "EXAMPLES",
                items: &[Item::Example {
                    what: "Push a tree:",
                    command: "mdp-send tree/",
                }],
            },
            Section {
                title: "EXIT STATUS",
                items: &[
                    Item::Entry {
                        term: "0",
                        text: "all confirmed\nevery file",
                    },
                    Item::Entry {
                        term: "MDP_SENDER",
                        text: "the sender",
                    },
                ],
            },
        ];
        assert_eq!(
            help_text(S),
            "Examples:\n  Push a tree:\n    mdp-send tree/\n\nExit status:\n  0     all confirmed\n        every file\n  MDP_SENDER\n        the sender"
        );
    }
}
