//! mdp-send: see `mdp-send --help` and README.md.

use clap::Parser;
use mdp_cli::send::{run, SendPlan};

fn main() {
    let args = mdp_cli::send::Args::parse();
    mdp_cli::main("mdp-send", &args.out, || {
        if let Some(done) = args.identity.run("mdp-send") {
            return done;
        }
        run(SendPlan::from_args(&args)?)
    });
}
