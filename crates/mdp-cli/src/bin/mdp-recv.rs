//! mdp-recv: see `mdp-recv --help` and README.md.

use clap::Parser;
use mdp_cli::recv::{run, RecvPlan};

fn main() {
    let args = mdp_cli::recv::Args::parse();
    mdp_cli::main("mdp-recv", &args.out, || {
        if let Some(done) = args.identity.run("mdp-recv") {
            return done;
        }
        run(RecvPlan::from_args(&args)?)
    });
}
