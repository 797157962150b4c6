//! Configuration files: every setting a program's command line takes, as a
//! TOML key.
//!
//! `mdp-recv` reads `/etc/mdp/recv.toml` and `mdp-send` reads
//! `/etc/mdp/send.toml` when they exist, or the file `--config` (or else
//! `MDP_RECV_CONFIG` / `MDP_SEND_CONFIG`) names. A one-off command
//! (`--gen-identity`, `--fingerprint`) reads none. A key is an option's long
//! name and its value the option's value: `interface = "192.168.1.20"`,
//! `json = true` for a switch, `trust = ["a.pub", "b.pub"]` for an option
//! given several times; `mdp-send`'s files to push are `paths`. An option
//! given on the command line replaces the file's. `mdp-send`'s
//! `[profile.NAME]` tables hold settings that `--profile NAME` lays over
//! the file's top-level ones, so a cron line stays short.
//!
//! Nothing is guessed: an unknown key, a table or date where a value
//! belongs, a list for a single option, and a value its option refuses are
//! errors that name the file and line.
//!
//! **Invariant:** the file becomes command-line arguments placed *before*
//! the real ones and parsed by the same clap definition, so a setting is
//! checked exactly as its option is, and the help, the man page and the
//! file can never disagree about what exists.

use clap::error::{ContextKind, ContextValue};
use clap::parser::ValueSource;
use clap::{ArgAction, Command};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// Where a program looks for its configuration file.
#[derive(Clone, Copy, Debug)]
pub struct Defaults {
    /// The program's name, for messages.
    pub program: &'static str,
    /// The file read when it exists and no other is named.
    pub path: &'static str,
    /// The environment variable that names another file (below
    /// `--config`, above `path`).
    pub env: &'static str,
}

/// What went wrong while reading the command line and the file.
#[derive(Debug)]
pub enum ParseError {
    /// The command line alone is wrong, or asks for help or the version.
    Clap(clap::Error),
    /// The file is wrong: the message names its path and line.
    Config(String),
}

/// Parses the command line of `A` over its configuration file, exiting
/// (status 2) with one line on an error, as clap does.
pub fn parse<A: clap::Parser>(defaults: Defaults) -> A {
    match parse_from(std::env::args_os().collect(), defaults) {
        Ok(args) => args,
        Err(ParseError::Clap(e)) => e.exit(),
        Err(ParseError::Config(msg)) => {
            eprintln!("{}: error: {msg}", defaults.program);
            std::process::exit(crate::EXIT_ERROR);
        }
    }
}

/// [`parse`] of the given arguments (the first is the program's name).
pub fn parse_from<A: clap::Parser>(
    argv: Vec<OsString>,
    defaults: Defaults,
) -> Result<A, ParseError> {
    let cmd = A::command();
    // A first look at the command line alone: which file, which profile,
    // and which options it sets (those the file must not).
    let given = cmd
        .clone()
        .ignore_errors(true)
        .try_get_matches_from(&argv)
        .map_err(ParseError::Clap)?;
    // A command (`--gen-identity`, `--fingerprint`) stands alone: no
    // setting applies to it, and clap would refuse it beside any.
    let command = cmd.get_arguments().any(|a| {
        a.is_exclusive_set()
            && given.value_source(a.get_id().as_str()) == Some(ValueSource::CommandLine)
    });
    let named = given
        .try_get_one::<PathBuf>("config")
        .ok()
        .flatten()
        .cloned()
        .or_else(|| {
            std::env::var_os(defaults.env)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
    let path = match named {
        _ if command => return A::try_parse_from(argv).map_err(ParseError::Clap),
        Some(path) => path,
        None if Path::new(defaults.path).exists() => PathBuf::from(defaults.path),
        None => return A::try_parse_from(argv).map_err(ParseError::Clap),
    };
    let profile = given.try_get_one::<String>("profile").ok().flatten();
    let text = std::fs::read_to_string(&path).map_err(|e| {
        ParseError::Config(format!(
            "cannot read the configuration file {}: {e} (name another with --config, or create it)",
            path.display()
        ))
    })?;
    let file =
        File::parse(&path, &text, &cmd, profile.map(String::as_str)).map_err(ParseError::Config)?;
    let on_command_line = |id: &str| given.value_source(id) == Some(ValueSource::CommandLine);
    let mut full = vec![argv.first().cloned().unwrap_or_default()];
    let mut positionals = Vec::new();
    let mut used = Vec::new();
    for setting in file.settings {
        if on_command_line(&setting.id) {
            continue;
        }
        if setting.positional {
            positionals.extend(setting.args.iter().cloned());
        } else {
            full.extend(setting.args.iter().cloned());
        }
        used.push(setting);
    }
    full.extend(argv.iter().skip(1).cloned());
    if !positionals.is_empty() && !argv.iter().any(|a| a == "--") {
        // The file's paths are paths, even one that starts with `-`.
        full.push(OsString::from("--"));
    }
    full.extend(positionals);
    A::try_parse_from(full).map_err(|e| blame(e, &path, &text, &used))
}

/// A clap error about a value that came from the file names its line.
fn blame(e: clap::Error, path: &Path, text: &str, used: &[Setting]) -> ParseError {
    let arg = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => s.clone(),
        _ => return ParseError::Clap(e),
    };
    let long = arg
        .trim_start_matches('-')
        .split([' ', '='])
        .next()
        .unwrap_or_default();
    let Some(setting) = used.iter().find(|s| s.long.as_deref() == Some(long)) else {
        return ParseError::Clap(e);
    };
    let first = e.render().to_string();
    let first = first.lines().next().unwrap_or_default();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    ParseError::Config(format!(
        "{}:{}: {}: {first}",
        path.display(),
        line_of(text, setting.at),
        setting.key
    ))
}

/// One setting of a file: the option it sets, the arguments it stands for.
#[derive(Debug)]
struct Setting {
    /// The clap argument's id.
    id: String,
    /// The key as written.
    key: String,
    /// The option's long name (none for a positional).
    long: Option<String>,
    args: Vec<OsString>,
    positional: bool,
    /// Byte offset of the key in the file.
    at: usize,
}

/// A configuration file, checked against a program's options.
#[derive(Debug)]
struct File {
    settings: Vec<Setting>,
}

impl File {
    fn parse(
        path: &Path,
        text: &str,
        cmd: &Command,
        profile: Option<&str>,
    ) -> Result<File, String> {
        let here = |at: usize| format!("{}:{}", path.display(), line_of(text, at));
        let table = DeTable::parse(text).map_err(|e| {
            let at = e.span().map_or(0, |s| s.start);
            format!("{}: {} (TOML syntax)", here(at), e.message().trim())
        })?;
        let mut settings = Vec::new();
        let mut profiles = None;
        for (key, value) in table.get_ref() {
            if key.get_ref() == "profile" && cmd.get_arguments().any(|a| a.get_id() == "profile") {
                profiles = Some(value);
                continue;
            }
            settings.push(
                setting(key, value, cmd).map_err(|m| format!("{}: {m}", here(key.span().start)))?,
            );
        }
        if let Some(name) = profile {
            let chosen = profiles.and_then(|p| match p.get_ref() {
                DeValue::Table(t) => t.iter().find(|(k, _)| k.get_ref() == name),
                _ => None,
            });
            let Some((_, chosen)) = chosen else {
                return Err(format!(
                    "{} has no [profile.{name}] table: add one, or give another --profile",
                    path.display()
                ));
            };
            let DeValue::Table(over) = chosen.get_ref() else {
                return Err(format!(
                    "{}: profile.{name} must be a table",
                    here(chosen.span().start)
                ));
            };
            for (key, value) in over {
                let s = setting(key, value, cmd)
                    .map_err(|m| format!("{}: {m}", here(key.span().start)))?;
                settings.retain(|old| old.id != s.id);
                settings.push(s);
            }
        }
        Ok(File { settings })
    }
}

/// Settings that the file may not hold: they choose the file, or they are
/// one-off commands rather than settings.
const NOT_SETTINGS: &[&str] = &["config", "profile", "help", "version"];

/// Turns one `key = value` into the arguments it stands for.
fn setting(
    key: &Spanned<std::borrow::Cow<'_, str>>,
    value: &Spanned<DeValue<'_>>,
    cmd: &Command,
) -> Result<Setting, String> {
    let name = key.get_ref().as_ref();
    let arg = cmd
        .get_arguments()
        .find(|a| {
            let id = a.get_id().as_str();
            if a.is_positional() {
                id == name
            } else {
                a.get_long() == Some(name)
                    || a.get_all_aliases().is_some_and(|al| al.contains(&name))
            }
        })
        .filter(|a| !a.is_hide_set() || a.is_positional());
    let Some(arg) = arg.filter(|a| !NOT_SETTINGS.contains(&a.get_id().as_str())) else {
        let hint = closest(name, cmd)
            .map(|n| format!(" (did you mean `{n}`?)"))
            .unwrap_or_default();
        return Err(format!("unknown setting `{name}`{hint}"));
    };
    if arg.is_exclusive_set() {
        return Err(format!(
            "`{name}` is a command, not a setting: give it on the command line"
        ));
    }
    let positional = arg.is_positional();
    let flag = matches!(
        arg.get_action(),
        ArgAction::SetTrue | ArgAction::SetFalse | ArgAction::Count
    );
    let many = matches!(arg.get_action(), ArgAction::Append) || positional;
    let option = format!("--{}", arg.get_long().unwrap_or(name));
    let mut args = Vec::new();
    // `--option=value`, one argument, so a value that starts with `-` is
    // taken as the value it is, never as another option.
    let mut push = |v: OsString| {
        if positional {
            args.push(v);
        } else {
            let mut joined = OsString::from(format!("{option}="));
            joined.push(v);
            args.push(joined);
        }
    };
    match value.get_ref() {
        DeValue::Boolean(on) if flag => {
            if *on {
                args.push(OsString::from(&option));
            }
        }
        _ if flag => {
            return Err(format!(
                "`{name}` is a switch: write `{name} = true` or `{name} = false`"
            ));
        }
        DeValue::Array(items) if many => {
            for item in items {
                push(scalar(name, item.get_ref())?);
            }
        }
        DeValue::Array(_) => {
            return Err(format!("`{name}` takes one value, not a list"));
        }
        other => push(scalar(name, other)?),
    }
    Ok(Setting {
        id: arg.get_id().to_string(),
        key: name.to_string(),
        long: arg.get_long().map(str::to_string),
        args,
        positional,
        at: key.span().start,
    })
}

/// A single value as the command line would spell it.
fn scalar(name: &str, value: &DeValue<'_>) -> Result<OsString, String> {
    Ok(match value {
        DeValue::String(s) => OsString::from(s.as_ref()),
        DeValue::Integer(i) => {
            let n = i128::from_str_radix(i.as_str(), i.radix())
                .map_err(|_| format!("`{name}`: {i} is out of range"))?;
            OsString::from(n.to_string())
        }
        DeValue::Float(f) => OsString::from(f.as_str()),
        DeValue::Boolean(b) => {
            return Err(format!(
                "`{name}` takes a value, not {b}: write it as on the command line, in quotes"
            ))
        }
        DeValue::Datetime(_) | DeValue::Table(_) | DeValue::Array(_) => {
            return Err(format!(
                "`{name}` takes a value as the command line spells it, in quotes"
            ))
        }
    })
}

/// The setting whose name is nearest `name`, when it is near enough to be
/// a typo.
fn closest(name: &str, cmd: &Command) -> Option<String> {
    cmd.get_arguments()
        .filter(|a| !a.is_hide_set() && !a.is_exclusive_set())
        .filter(|a| !NOT_SETTINGS.contains(&a.get_id().as_str()))
        .filter_map(|a| {
            if a.is_positional() {
                Some(a.get_id().to_string())
            } else {
                a.get_long().map(str::to_string)
            }
        })
        .map(|n| (edit_distance(name, &n), n))
        .filter(|(d, n)| *d <= 2.max(n.len() / 4))
        .min()
        .map(|(_, n)| n)
}

/// Levenshtein distance, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diagonal + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests;
