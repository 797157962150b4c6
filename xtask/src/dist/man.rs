//! Man pages: clap's NAME, SYNOPSIS, DESCRIPTION and OPTIONS, then the
//! program's [`Section`]s (EXAMPLES, EXIT STATUS, ENVIRONMENT, FILES, ...)
//! and VERSION.

use anyhow::Result;
use mdp_cli::manual::{Item, Section};
use roff::{bold, roman, Roff};

/// The man page of `cmd` with `manual`'s sections.
pub fn render(cmd: clap::Command, manual: &[Section]) -> Result<Vec<u8>> {
    let man = clap_mangen::Man::new(cmd.clone()).date(env!("CARGO_PKG_VERSION"));
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    let mut roff = Roff::default();
    for section in manual {
        roff.control("SH", [section.title]);
        for item in section.items {
            match item {
                Item::Para(text) => {
                    roff.control("PP", []);
                    roff.text([roman(join(text))]);
                }
                Item::Example { what, command } => {
                    roff.control("PP", []);
                    roff.text([roman(join(what))]);
                    roff.control("RS", ["4"]);
                    roff.control("nf", []);
                    for line in command.lines() {
                        roff.text([bold(line)]);
                    }
                    roff.control("fi", []);
                    roff.control("RE", []);
                }
                Item::Entry { term, text } => {
                    roff.control("TP", []);
                    roff.text([bold(*term)]);
                    roff.text([roman(join(text))]);
                }
            }
        }
    }
    roff.to_writer(&mut page)?;
    man.render_version_section(&mut page)?;
    Ok(page)
}

/// A paragraph's lines as one, for the formatter to fill.
fn join(text: &str) -> String {
    text.lines().map(str::trim).collect::<Vec<_>>().join(" ")
}
