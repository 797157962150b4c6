//! mdp-recv: see `mdp-recv --help` and README.md.

use mdp_cli::recv::{run, RecvPlan};

fn main() {
    let args: mdp_cli::recv::Args = mdp_cli::config::parse(mdp_cli::config::Defaults {
        program: "mdp-recv",
        path: "/etc/mdp/recv.toml",
        env: "MDP_RECV_CONFIG",
    });
    mdp_cli::main("mdp-recv", &args.out, || {
        if let Some(done) = args.identity.run("mdp-recv") {
            return done;
        }
        run(RecvPlan::from_args(&args)?)
    });
}
