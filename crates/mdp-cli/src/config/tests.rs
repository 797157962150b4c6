use super::*;
use clap::Parser;

/// Every kind of option the programs have.
#[derive(Parser, Debug, PartialEq)]
#[command(name = "prog")]
struct Args {
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    profile: Option<String>,
    #[arg(long)]
    dir: Option<PathBuf>,
    #[arg(long)]
    trust: Vec<String>,
    #[arg(long, value_delimiter = ',')]
    expect: Vec<String>,
    #[arg(long)]
    json: bool,
    #[arg(long, default_value_t = 40)]
    buffer: usize,
    #[arg(long = "node-id", visible_alias = "name")]
    name: Option<String>,
    #[arg(long, exclusive = true)]
    gen_identity: Option<PathBuf>,
    paths: Vec<PathBuf>,
}

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str, text: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("mdp-config-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("prog.toml");
        std::fs::write(&path, text).unwrap();
        Scratch(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0.parent().unwrap());
    }
}

const NOWHERE: Defaults = Defaults {
    program: "prog",
    path: "/nonexistent/mdp/prog.toml",
    env: "MDP_TEST_NO_SUCH_VARIABLE",
};

fn with(file: &Scratch, cli: &[&str]) -> Result<Args, ParseError> {
    let mut argv: Vec<OsString> = vec!["prog".into(), "--config".into(), file.0.clone().into()];
    argv.extend(cli.iter().map(OsString::from));
    parse_from(argv, NOWHERE)
}

fn message(r: Result<Args, ParseError>) -> String {
    match r {
        Err(ParseError::Config(m)) => m,
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[test]
fn every_kind_of_setting_becomes_its_option() {
    let f = Scratch::new(
        "kinds",
        "dir = \"/srv/www\"\ntrust = [\"a.pub\", \"b.pub\"]\nexpect = [\"web1\", \"web2\"]\njson = true\nbuffer = 0x20\nname = \"web1\"\npaths = [\"site\", \"conf\"]\n",
    );
    let a = with(&f, &[]).unwrap();
    assert_eq!(a.dir, Some(PathBuf::from("/srv/www")));
    assert_eq!(a.trust, ["a.pub", "b.pub"]);
    assert_eq!(a.expect, ["web1", "web2"]);
    assert!(a.json);
    assert_eq!(a.buffer, 32);
    assert_eq!(a.name.as_deref(), Some("web1"));
    assert_eq!(a.paths, [PathBuf::from("site"), PathBuf::from("conf")]);
}

#[test]
fn the_command_line_replaces_the_files_values_lists_included() {
    let f = Scratch::new(
        "override",
        "dir = \"/srv/www\"\ntrust = [\"a.pub\", \"b.pub\"]\nbuffer = 8\npaths = [\"site\"]\n",
    );
    let a = with(&f, &["--dir", "/tmp/x", "--trust", "c.pub", "other"]).unwrap();
    assert_eq!(a.dir, Some(PathBuf::from("/tmp/x")));
    assert_eq!(a.trust, ["c.pub"]);
    assert_eq!(a.buffer, 8, "a setting the command line leaves alone stays");
    assert_eq!(a.paths, [PathBuf::from("other")]);
    // A default is no command-line value: the file's still counts.
    let a = with(&f, &["--json"]).unwrap();
    assert_eq!(a.buffer, 8);
    assert!(a.json);
}

#[test]
fn a_typo_names_its_line_and_the_setting_meant() {
    let f = Scratch::new(
        "typo",
        "dir = \"/srv\"\n\n# the trust file\ntrsut = \"a.pub\"\n",
    );
    let m = message(with(&f, &[]));
    assert!(
        m.ends_with(":4: unknown setting `trsut` (did you mean `trust`?)"),
        "{m}"
    );
    assert!(m.starts_with(&f.0.display().to_string()), "{m}");
}

#[test]
fn a_value_its_option_refuses_names_its_line() {
    let f = Scratch::new("value", "dir = \"/srv\"\nbuffer = \"lots\"\n");
    let m = message(with(&f, &[]));
    assert!(m.contains(":2: buffer: invalid value 'lots'"), "{m}");
    // The same value on the command line is clap's own error, not the file's.
    assert!(matches!(
        with(&Scratch::new("value-cli", ""), &["--buffer", "lots"]),
        Err(ParseError::Clap(_))
    ));
}

#[test]
fn wrong_shapes_are_errors_that_say_what_to_write() {
    for (text, want) in [
        (
            "json = \"yes\"\n",
            ":1: `json` is a switch: write `json = true`",
        ),
        (
            "dir = [\"a\", \"b\"]\n",
            ":1: `dir` takes one value, not a list",
        ),
        ("dir = true\n", ":1: `dir` takes a value, not true"),
        (
            "[dir]\nx = 1\n",
            ":1: `dir` takes a value as the command line spells it",
        ),
        (
            "gen-identity = \"/k\"\n",
            ":1: `gen-identity` is a command, not a setting",
        ),
        ("config = \"/other.toml\"\n", ":1: unknown setting `config`"),
        ("dir = \n", ":1: "),
    ] {
        let f = Scratch::new("shapes", text);
        let m = message(with(&f, &[]));
        assert!(m.contains(want), "{text:?}: {m}");
    }
}

#[test]
fn a_profile_lays_its_settings_over_the_top_level_ones() {
    let f = Scratch::new(
        "profile",
        "dir = \"/srv\"\nbuffer = 8\n\n[profile.web]\nbuffer = 16\ntrust = [\"web.pub\"]\n\n[profile.db]\nbufer = 1\n",
    );
    let a = with(&f, &["--profile", "web"]).unwrap();
    assert_eq!(
        (a.buffer, a.trust.as_slice()),
        (16, &["web.pub".to_string()][..])
    );
    assert_eq!(a.dir, Some(PathBuf::from("/srv")));
    let a = with(&f, &["--profile", "web", "--buffer", "4"]).unwrap();
    assert_eq!(a.buffer, 4, "the command line still wins");
    let m = message(with(&f, &["--profile", "db"]));
    assert!(m.contains(":9: unknown setting `bufer`"), "{m}");
    let m = message(with(&f, &["--profile", "nope"]));
    assert!(m.contains("has no [profile.nope] table"), "{m}");
    // Without --profile the profiles are not read.
    assert_eq!(with(&f, &[]).unwrap().buffer, 8);
}

#[test]
fn no_file_at_the_default_path_is_no_configuration_but_a_named_one_must_exist() {
    let argv = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
    let a: Args = parse_from(argv(&["prog", "--dir", "/d"]), NOWHERE).unwrap();
    assert_eq!(a.dir, Some(PathBuf::from("/d")));
    let m = message(parse_from(
        argv(&["prog", "--config", "/nonexistent/x.toml"]),
        NOWHERE,
    ));
    assert!(
        m.starts_with("cannot read the configuration file /nonexistent/x.toml"),
        "{m}"
    );
    // The default path is read when it exists.
    let f = Scratch::new("default", "buffer = 3\n");
    let path: &'static str = Box::leak(f.0.display().to_string().into_boxed_str());
    let a: Args = parse_from(
        argv(&["prog"]),
        Defaults {
            program: "prog",
            path,
            env: "MDP_TEST_NO_SUCH_VARIABLE",
        },
    )
    .unwrap();
    assert_eq!(a.buffer, 3);
}

#[test]
fn a_value_or_path_that_starts_with_a_dash_is_never_an_option() {
    let f = Scratch::new("dash", "name = \"--json\"\npaths = [\"--json\", \"-x\"]\n");
    let a = with(&f, &[]).unwrap();
    assert_eq!(a.name.as_deref(), Some("--json"));
    assert_eq!(a.paths, [PathBuf::from("--json"), PathBuf::from("-x")]);
    assert!(!a.json, "no value became a switch");
}

#[test]
fn a_one_off_command_reads_no_file() {
    // With settings in the file, clap would refuse the exclusive command
    // beside them (as it did when the demo set MDP_SEND_CONFIG).
    let f = Scratch::new("command", "dir = \"/srv\"\nbuffer = 3\n");
    let path: &'static str = Box::leak(f.0.display().to_string().into_boxed_str());
    let defaults = Defaults {
        program: "prog",
        path,
        env: "MDP_TEST_NO_SUCH_VARIABLE",
    };
    let argv = ["prog", "--gen-identity", "/tmp/k"]
        .map(OsString::from)
        .to_vec();
    let a: Args = parse_from(argv, defaults).unwrap();
    assert_eq!(a.gen_identity, Some(PathBuf::from("/tmp/k")));
    assert_eq!(a.dir, None);
}

#[test]
fn edit_distance_counts_single_character_edits() {
    assert_eq!(edit_distance("trsut", "trust"), 2);
    assert_eq!(edit_distance("interfac", "interface"), 1);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(edit_distance("same", "same"), 0);
}
