//! mdp-send: see `mdp-send --help` and README.md.

use mdp_cli::send::{run, SendPlan};

fn main() {
    let args: mdp_cli::send::Args = mdp_cli::config::parse(mdp_cli::config::Defaults {
        program: "mdp-send",
        path: "/etc/mdp/send.toml",
        env: "MDP_SEND_CONFIG",
    });
    mdp_cli::main("mdp-send", &args.out, || {
        if let Some(done) = args.identity.run("mdp-send") {
            return done;
        }
        run(SendPlan::from_args(&args)?)
    });
}
